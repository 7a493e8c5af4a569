//! Attribution: the tracker reads payments from the billing payments topic (its own consumer
//! group) and credits each to the reminders sent about the invoice within the window before it,
//! under the configured model. Each credit is stored once (payment, reminder), published as
//! `relance.dunning.payment_attributed` and counted as recovered amount. Records that are not
//! successful payments are ignored here: the ingestor dead-letters what is malformed.

use std::sync::Arc;

use relance_contracts::commands::SendReminderV1;
use relance_contracts::dunning::{AttributionModel, PaymentAttributedV1};
use relance_contracts::{decode_record, BillingEvent, Channel, Envelope, Money};
use relance_kafka::{BatchHandler, ConsumedRecord, HandlerError};
use relance_runtime::Clock;
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::tracking::{self, NewAttribution, TrackedDelivery};
use relance_storage::StorageError;
use relance_tracking::attribution::{attribute, Model, Touch};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::events;
use crate::metrics::TrackerMetrics;

/// Credits payments to reminders.
pub struct AttributionHandler {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub model: Model,
    pub window_days: u32,
    pub events_topic: String,
    pub metrics: TrackerMetrics,
    pub relay: Arc<Notify>,
}

struct Credited {
    delivery: TrackedDelivery,
    amount_minor: i64,
    currency: String,
    seconds_to_payment: Option<f64>,
}

impl AttributionHandler {
    async fn attribute_payment(
        &self,
        envelope: &Envelope<BillingEvent>,
    ) -> Result<Vec<Credited>, StorageError> {
        let BillingEvent::PaymentSucceeded(payment) = &envelope.data else {
            return Ok(Vec::new());
        };
        let tenant = envelope.tenant.as_str();
        let sent: Vec<TrackedDelivery> =
            tracking::sent_for_invoice(&self.pool, tenant, payment.invoice_id.as_str())
                .await?
                .into_iter()
                .filter(|delivery| delivery.tenant == tenant && delivery.sent_at.is_some())
                .collect();
        let touches: Vec<Touch> = sent
            .iter()
            .filter_map(|delivery| {
                delivery.sent_at.map(|sent_at| Touch {
                    reminder_id: delivery.reminder_id,
                    sent_at,
                })
            })
            .collect();
        let window = chrono::Duration::days(i64::from(self.window_days));
        let amount = payment.amount.amount_minor();
        let credits = attribute(amount, payment.paid_at, &touches, self.model, window);
        if credits.is_empty() {
            return Ok(Vec::new());
        }
        let first_reminder_at = touches
            .iter()
            .map(|touch| touch.sent_at)
            .filter(|sent| *sent <= payment.paid_at)
            .min();
        let now = self.clock.now();
        let currency = payment.amount.currency().as_str().to_string();
        let mut rows = Vec::new();
        let mut records: Vec<OutboxRecord> = Vec::new();
        let mut credited = Vec::new();
        for credit in &credits {
            let Some(delivery) = sent
                .iter()
                .find(|delivery| delivery.reminder_id == credit.reminder_id)
            else {
                continue;
            };
            rows.push(NewAttribution {
                payment_id: payment.payment_id.as_str().to_string(),
                reminder_id: credit.reminder_id,
                tenant: tenant.to_string(),
                invoice_id: payment.invoice_id.as_str().to_string(),
                customer_id: payment.customer_id.as_str().to_string(),
                model: self.model.code(),
                credited_minor: credit.amount_minor,
                currency: currency.clone(),
                paid_at: payment.paid_at,
                reminder_sent_at: credit.sent_at,
                first_reminder_at,
                attributed_at: now,
            });
            if let (Ok(command), Ok(credited_amount)) = (
                serde_json::from_value::<Envelope<SendReminderV1>>(delivery.command.clone()),
                Money::new(credit.amount_minor, payment.amount.currency().clone()),
            ) {
                let data = PaymentAttributedV1 {
                    payment_id: payment.payment_id.clone(),
                    invoice_id: payment.invoice_id.clone(),
                    customer_id: payment.customer_id.clone(),
                    reminder_id: credit.reminder_id,
                    model: match self.model {
                        Model::LastTouch => AttributionModel::LastTouch,
                        Model::FirstTouch => AttributionModel::FirstTouch,
                        Model::Linear => AttributionModel::Linear,
                    },
                    credited_amount,
                    paid_at: payment.paid_at,
                    reminder_sent_at: credit.sent_at,
                    first_reminder_at,
                    channel: if delivery.channel == "sms" {
                        Channel::Sms
                    } else {
                        Channel::Email
                    },
                    segment: command.data.segment.clone(),
                    step: command.data.step.clone(),
                    template: command.data.template.clone(),
                };
                let id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!(
                        "attribution:{}:{}",
                        payment.payment_id.as_str(),
                        credit.reminder_id
                    )
                    .as_bytes(),
                );
                records.extend(events::record(
                    &self.events_topic,
                    tenant,
                    payment.customer_id.as_str(),
                    id,
                    now,
                    data,
                ));
            }
            credited.push(Credited {
                delivery: delivery.clone(),
                amount_minor: credit.amount_minor,
                currency: currency.clone(),
                seconds_to_payment: first_reminder_at
                    .map(|first| (payment.paid_at - first).num_seconds().max(0) as f64),
            });
        }
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let first_time = tracking::record_attributions(&mut transaction, &rows).await?;
        if !first_time {
            return Ok(Vec::new());
        }
        outbox::enqueue(&mut transaction, &records).await?;
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing attributions",
                source,
            })?;
        Ok(credited)
    }
}

impl BatchHandler for AttributionHandler {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        for record in batch {
            // Structured or binary content mode (the CloudEvents Kafka binding).
            let envelope = match decode_record::<BillingEvent>(
                &record.headers,
                record.payload.as_deref(),
            ) {
                Ok((envelope, _)) => envelope,
                Err(error) => {
                    // The ingestor reads the same record and dead-letters it with this
                    // reason; here it is only counted and logged, never silently skipped.
                    self.metrics.unreadable(error.kind.code());
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, reason = error.kind.code(), "A billing record cannot be read for attribution; skipped (the ingestor dead-letters it).");
                    continue;
                }
            };
            match self.attribute_payment(&envelope).await {
                Ok(credited) => {
                    let last = credited.len().saturating_sub(1);
                    for (index, credit) in credited.iter().enumerate() {
                        self.metrics.attributed(
                            &credit.delivery,
                            self.model.code(),
                            &credit.currency,
                            credit.amount_minor,
                        );
                        if index == last {
                            if let Some(seconds) = credit.seconds_to_payment {
                                self.metrics.time_to_payment(&credit.delivery, seconds);
                            }
                        }
                    }
                    if !credited.is_empty() {
                        self.relay.notify_one();
                        tracing::info!(payment = %envelope.id, reminders = credited.len(), "Payment attributed.");
                    }
                }
                Err(error) if error.is_transient() => {
                    return Err(HandlerError::Transient(Box::new(error)))
                }
                Err(error) => return Err(HandlerError::Fatal(Box::new(error))),
            }
        }
        Ok(())
    }
}
