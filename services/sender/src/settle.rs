//! Turning the pure crate's decisions into what is stored: a delivery's new state, the audit
//! events and tasks it publishes, and the counts to make once it is committed. Every write is
//! fenced by the claim's token; a settlement whose claim was taken over is dropped with its
//! events, because the new holder records its own.

use chrono::{DateTime, Utc};
use relance_contracts::commands::SendReminderV1;
use relance_contracts::Envelope;
use relance_delivery::guard::SkipReason;
use relance_delivery::transition::{AfterAttempt, GiveUpReason};
use relance_kafka::{DeadLetter, DeadLetterWriter};
use relance_storage::deliveries::{self, ClaimedDelivery, DeliveryUpdate};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::scheduling;
use relance_storage::StorageError;
use sqlx::PgConnection;

use crate::audit;
use crate::intake::Source;
use crate::metrics::{DeliveryLabels, SenderMetrics};

/// A claimed delivery with its command.
pub struct Job {
    pub claimed: ClaimedDelivery,
    pub envelope: Envelope<SendReminderV1>,
    pub labels: DeliveryLabels,
}

impl Job {
    pub fn new(claimed: ClaimedDelivery, envelope: Envelope<SendReminderV1>) -> Self {
        let labels = DeliveryLabels {
            tenant: claimed.tenant.clone(),
            segment: claimed.segment.clone(),
            step: claimed.step_id.clone(),
            channel: claimed.channel.clone(),
            template: claimed.template.clone(),
            variant: claimed.variant.clone().unwrap_or_default(),
        };
        Self {
            claimed,
            envelope,
            labels,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.claimed.tenant
    }

    pub fn command(&self) -> &SendReminderV1 {
        &self.envelope.data
    }

    pub fn recipient(&self) -> Option<String> {
        relance_delivery::recipient::address(self.command())
    }

    /// The customer's date at `now`, in the time zone the scheduler planned the reminder in:
    /// the guard judges pauses and holds on the same day the planner did.
    pub fn today(&self, now: DateTime<Utc>) -> chrono::NaiveDate {
        let zone = relance_domain::calendar::zone(self.command().timezone.as_str())
            .unwrap_or(relance_domain::calendar::UNKNOWN_ZONE);
        relance_domain::calendar::local_date(zone, now)
    }

    pub fn channel(&self) -> &'static str {
        relance_delivery::recipient::channel_name(self.command().channel)
    }

    /// An update of this delivery under its claim.
    pub fn update(&self, status: &'static str, at: DateTime<Utc>) -> DeliveryUpdate {
        DeliveryUpdate {
            delivery_id: self.claimed.delivery_id,
            claim_token: self.claimed.claim_token,
            status,
            at,
            ..DeliveryUpdate::default()
        }
    }
}

/// A count to make once its settlement is committed.
pub enum Metric {
    Sent(DeliveryLabels, String),
    Skipped(DeliveryLabels, &'static str),
    Failed(DeliveryLabels, &'static str),
    Retry(String, &'static str),
}

/// A delivery's new state, what it publishes, and what to count once it is committed.
pub struct Settlement {
    pub update: DeliveryUpdate,
    pub records: Vec<OutboxRecord>,
    /// Suppress the recipient's address (tenant, channel, address, detail).
    pub suppression: Option<(String, &'static str, String, String)>,
    pub metric: Option<Metric>,
    /// A skip for a reason that passes: the scheduler plans the step again.
    pub replan: Option<Replan>,
}

/// A reminder held back for a reason that passes, to plan again.
pub struct Replan {
    pub reminder_id: uuid::Uuid,
    pub tenant: String,
    pub invoice_ids: Vec<String>,
    pub at: DateTime<Utc>,
}

/// Where settlements are written: the topics and the dead-letter writer.
pub struct Settler<'a> {
    pub events_topic: &'a str,
    pub tasks_topic: &'a str,
    pub dead_letters: &'a DeadLetterWriter,
}

/// What was sent, as recorded.
pub struct Delivered<'a> {
    pub provider: &'a str,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub body_sha256: Option<String>,
    /// `accepted`, or `reconciled` when the provider was found to have it.
    pub outcome: &'static str,
}

/// A give-up for reasons other than a provider's answer (a template, a stored command).
pub struct Refusal<'a> {
    pub reason: &'static str,
    pub code: &'a str,
    pub message: &'a str,
    pub dead_letter: bool,
}

fn clip(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

impl Settler<'_> {
    pub fn sent(&self, job: &Job, delivered: Delivered<'_>, now: DateTime<Utc>) -> Settlement {
        let recipient = job.recipient();
        let update = DeliveryUpdate {
            provider_message_id: delivered.message_id.clone(),
            recipient: recipient.clone(),
            subject: delivered.subject.clone(),
            body_sha256: delivered.body_sha256.clone(),
            outcome: Some(delivered.outcome.into()),
            ..job.update("sent", now)
        };
        let event = audit::sent(
            self.events_topic,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            &audit::Sent {
                provider: delivered.provider,
                provider_message_id: delivered.message_id.as_deref(),
                recipient: recipient.as_deref(),
                subject: delivered.subject.as_deref(),
                body_sha256: delivered.body_sha256.as_deref(),
            },
            now,
        );
        Settlement {
            update,
            records: event.into_iter().collect(),
            suppression: None,
            replan: None,
            metric: Some(Metric::Sent(
                job.labels.clone(),
                delivered.provider.to_string(),
            )),
        }
    }

    pub fn skipped(
        &self,
        job: &Job,
        reason: SkipReason,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Settlement {
        tracing::info!(delivery = %job.claimed.delivery_id, reason = reason.code(), detail, "Reminder skipped by the guard.");
        let update = DeliveryUpdate {
            skip_reason: Some(reason.code().into()),
            outcome: Some("skipped".into()),
            error_message: Some(clip(detail, 2000)),
            ..job.update("skipped", now)
        };
        let event = audit::skipped(
            self.events_topic,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            reason.code(),
            detail,
            now,
        );
        Settlement {
            update,
            records: event.into_iter().collect(),
            suppression: None,
            replan: None,
            metric: Some(Metric::Skipped(job.labels.clone(), reason.code())),
        }
    }

    /// What an attempt numbered `attempt` through `provider` led to (anything but `Sent`).
    pub fn after_attempt(
        &self,
        job: &Job,
        provider: &str,
        attempt: i32,
        next: AfterAttempt,
        now: DateTime<Utc>,
        later: impl Fn(std::time::Duration) -> DateTime<Utc>,
    ) -> Settlement {
        let send_id = job.claimed.delivery_id;
        let retryable = next.retryable();
        let failed = |code: &str, message: &str| {
            audit::failed(
                self.events_topic,
                job.tenant(),
                send_id,
                job.command(),
                &audit::Failure {
                    provider,
                    code,
                    message,
                    retryable,
                    attempt,
                },
                now,
            )
        };
        match next {
            AfterAttempt::Sent { message_id } => self.sent(
                job,
                Delivered {
                    provider,
                    message_id,
                    subject: None,
                    body_sha256: None,
                    outcome: "accepted",
                },
                now,
            ),
            AfterAttempt::Retry {
                after,
                code,
                message,
            } => {
                let next = later(after);
                tracing::warn!(delivery = %send_id, provider, code, message, attempt, next = %next, "Delivery failed for now; retrying later.");
                Settlement {
                    update: DeliveryUpdate {
                        next_attempt_at: Some(next),
                        outcome: Some("transient".into()),
                        error_code: Some(code.clone()),
                        error_message: Some(clip(&message, 2000)),
                        ..job.update("pending", now)
                    },
                    records: failed(&code, &message).into_iter().collect(),
                    suppression: None,
                    replan: None,
                    metric: Some(Metric::Retry(provider.to_string(), "transient")),
                }
            }
            AfterAttempt::Reconcile { after, message } => {
                let next = later(after);
                tracing::warn!(delivery = %send_id, provider, message, next = %next, "No clear answer from the provider; will ask it before sending again.");
                Settlement {
                    update: DeliveryUpdate {
                        next_attempt_at: Some(next),
                        in_doubt: true,
                        outcome: Some("ambiguous".into()),
                        error_code: Some("ambiguous".into()),
                        error_message: Some(clip(&message, 2000)),
                        ..job.update("pending", now)
                    },
                    records: failed("ambiguous", &message).into_iter().collect(),
                    suppression: None,
                    replan: None,
                    metric: Some(Metric::Retry(provider.to_string(), "ambiguous")),
                }
            }
            AfterAttempt::Hold {
                after,
                code,
                message,
            } => Settlement {
                update: DeliveryUpdate {
                    next_attempt_at: Some(later(after)),
                    uncount_attempt: true,
                    outcome: Some("config".into()),
                    error_code: Some(code),
                    error_message: Some(clip(&message, 2000)),
                    ..job.update("pending", now)
                },
                records: Vec::new(),
                suppression: None,
                replan: None,
                metric: None,
            },
            AfterAttempt::GiveUp {
                reason,
                code,
                message,
                dead_letter,
                suppress,
            } => {
                let mut settlement = self.give_up(
                    job,
                    provider,
                    attempt,
                    &Refusal {
                        reason: reason.code(),
                        code: &code,
                        message: &message,
                        dead_letter,
                    },
                    reason == GiveUpReason::AttemptsExhausted,
                    now,
                );
                if suppress {
                    if let Some(address) = job.recipient() {
                        settlement.suppression = Some((
                            job.tenant().to_string(),
                            job.channel(),
                            address,
                            message.clone(),
                        ));
                    }
                }
                settlement
            }
        }
    }

    /// Gives a delivery up for good: failed, with the event, the original command in the
    /// dead-letter topic if the message is at fault, and a task for a person.
    pub fn give_up(
        &self,
        job: &Job,
        provider: &str,
        attempt: i32,
        refusal: &Refusal<'_>,
        retryable: bool,
        now: DateTime<Utc>,
    ) -> Settlement {
        let Refusal {
            reason,
            code,
            message,
            dead_letter,
        } = *refusal;
        let update = DeliveryUpdate {
            outcome: Some(if retryable { "transient" } else { "permanent" }.into()),
            error_code: Some(clip(code, 200)),
            error_message: Some(clip(message, 2000)),
            ..job.update("failed", now)
        };
        let mut records: Vec<Option<OutboxRecord>> = vec![audit::failed(
            self.events_topic,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            &audit::Failure {
                provider,
                code,
                message,
                retryable,
                attempt,
            },
            now,
        )];
        if dead_letter {
            records.push(self.dead_letter(job, reason, format!("{provider} {code}: {message}")));
        }
        let task_reason = format!("The reminder could not be delivered ({reason}: {provider} {code}: {message}). Contact the customer another way or correct the contact details.");
        records.push(audit::task(
            self.tasks_topic,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            &task_reason,
            now,
        ));
        tracing::warn!(delivery = %job.claimed.delivery_id, reason, provider, code, message, "Reminder failed for good; a task was created.");
        Settlement {
            update,
            records: records.into_iter().flatten().collect(),
            suppression: None,
            replan: None,
            metric: Some(Metric::Failed(job.labels.clone(), reason)),
        }
    }

    /// Nobody can tell whether an attempt reached the customer: `unknown`, and a person asked.
    pub fn unknown(
        &self,
        job: &Job,
        provider: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Settlement {
        tracing::warn!(delivery = %job.claimed.delivery_id, provider, "Outcome of an attempt unknown; handed to a person.");
        let update = DeliveryUpdate {
            outcome: Some("ambiguous".into()),
            error_code: Some("outcome_unknown".into()),
            error_message: Some(message.to_string()),
            ..job.update("unknown", now)
        };
        let records = [
            audit::failed(
                self.events_topic,
                job.tenant(),
                job.claimed.delivery_id,
                job.command(),
                &audit::Failure {
                    provider,
                    code: "outcome_unknown",
                    message,
                    retryable: false,
                    attempt: job.claimed.attempts,
                },
                now,
            ),
            audit::task(
                self.tasks_topic,
                job.tenant(),
                job.claimed.delivery_id,
                job.command(),
                message,
                now,
            ),
        ];
        Settlement {
            update,
            records: records.into_iter().flatten().collect(),
            suppression: None,
            replan: None,
            metric: Some(Metric::Failed(job.labels.clone(), "outcome_unknown")),
        }
    }

    fn dead_letter(&self, job: &Job, reason: &'static str, detail: String) -> Option<OutboxRecord> {
        let source: Source = serde_json::from_value(job.claimed.source.clone()).ok()?;
        let identity = relance_contracts::dead_letter::EventIdentity {
            id: Some(job.envelope.id.clone()),
            event_type: Some(job.envelope.event_type.clone()),
            tenant: Some(job.envelope.tenant.clone()),
        };
        Some(relance_events::dead_letter_outbox(
            self.dead_letters,
            &source.record(),
            &DeadLetter {
                reason,
                detail,
                identity: Some(identity),
            },
        ))
    }
}

/// A stored command that cannot be read back: failed, without events (there is no command to
/// describe).
pub fn unreadable(claimed: &ClaimedDelivery, error: &str, now: DateTime<Utc>) -> Settlement {
    tracing::error!(delivery = %claimed.delivery_id, error, "A stored command cannot be read back; the delivery is failed.");
    Settlement {
        update: DeliveryUpdate {
            delivery_id: claimed.delivery_id,
            claim_token: claimed.claim_token,
            status: "failed",
            outcome: Some("permanent".into()),
            error_code: Some("unreadable_command".into()),
            error_message: Some(clip(error, 2000)),
            at: now,
            ..DeliveryUpdate::default()
        },
        records: Vec::new(),
        suppression: None,
        replan: None,
        metric: None,
    }
}

/// Writes settlements in `transaction`; returns those that applied (their claim still holds).
///
/// # Errors
/// [`StorageError`] when the database fails.
pub async fn store(
    transaction: &mut PgConnection,
    settlements: Vec<Settlement>,
    metrics: &SenderMetrics,
) -> Result<Vec<Settlement>, StorageError> {
    let mut applied = Vec::with_capacity(settlements.len());
    let mut records = Vec::new();
    for settlement in settlements {
        if !deliveries::apply_update(transaction, &settlement.update).await? {
            metrics.stale_write();
            tracing::warn!(delivery = %settlement.update.delivery_id, status = settlement.update.status, "The delivery was claimed again after this dispatcher's lease ran out; its newer holder decides, this outcome is not recorded.");
            continue;
        }
        if let Some((tenant, channel, address, detail)) = &settlement.suppression {
            deliveries::suppress(
                transaction,
                tenant,
                channel,
                address,
                "inactive",
                "sender",
                Some(detail),
            )
            .await?;
        }
        if let Some(replan) = &settlement.replan {
            scheduling::defer_reminder(
                transaction,
                replan.reminder_id,
                &replan.tenant,
                &replan.invoice_ids,
                replan.at,
            )
            .await?;
        }
        records.extend(settlement.records.iter().cloned());
        applied.push(settlement);
    }
    outbox::enqueue(transaction, &records).await?;
    Ok(applied)
}

/// Counts committed settlements.
pub fn count(applied: &[Settlement], metrics: &SenderMetrics) {
    for settlement in applied {
        match &settlement.metric {
            Some(Metric::Sent(labels, provider)) => metrics.sent(labels, provider),
            Some(Metric::Skipped(labels, reason)) => metrics.skipped(labels, reason),
            Some(Metric::Failed(labels, reason)) => metrics.failed(labels, reason),
            Some(Metric::Retry(provider, class)) => metrics.retry(provider, class),
            None => {}
        }
    }
}
