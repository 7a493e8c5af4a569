//! The scheduler's work: claim customers with due invoices, plan every open invoice of each
//! with its tenant's policy, decide the reminders and tasks that are due (consolidated), and
//! record them with their commands in the outbox, in one transaction per batch.
//!
//! Customers are claimed with `FOR UPDATE SKIP LOCKED`, so any number of replicas share the
//! work and never plan one customer at the same time; a reminder's idempotency key is unique
//! in the database, so even a repeated decision is recorded once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use relance_config::{SchedulerSettings, TopicSettings};
use relance_domain::{Book, BookEvent, EscalationTarget, Invoice, InvoiceEvent, InvoiceFact};
use relance_events::{state_changed_record, CauseRef, EventBuildError};
use relance_policy::{
    consolidate, plan, CustomerSnapshot, Decision, DueStep, PastAction, PastActionKind, Plan, Risk,
    TaskChannel, Trigger,
};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::scheduling::{self, ReminderRow, SchedulingCustomer};
use relance_storage::{invoices, StorageError};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::commands::{escalation_task, reminder_for_group, CommandContext, SOURCE};
use crate::metrics::SchedulerMetrics;
use crate::policies::PolicySet;

/// Why a tick failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Event(#[from] EventBuildError),
}

/// Plans due invoices.
#[derive(Clone)]
pub struct Scheduler {
    pub pool: PgPool,
    pub policies: Arc<PolicySet>,
    pub settings: SchedulerSettings,
    pub topics: TopicSettings,
    pub metrics: SchedulerMetrics,
    pub relay: Arc<Notify>,
}

/// The customer as the policy sees it.
pub fn customer_snapshot(customer: &SchedulingCustomer) -> CustomerSnapshot {
    let profile = customer
        .facts
        .profile
        .as_ref()
        .map(|profile| &profile.value);
    CustomerSnapshot {
        customer_id: customer.customer_id.clone(),
        vip: profile.is_some_and(|profile| profile.segment.vip),
        risk_level: profile
            .and_then(|profile| profile.segment.risk_level)
            .map(|risk| match risk {
                relance_domain::RiskLevel::Low => Risk::Low,
                relance_domain::RiskLevel::Medium => Risk::Medium,
                relance_domain::RiskLevel::High => Risk::High,
            }),
        customer_since: customer.customer_since,
        on_time_percent: (customer.paid_invoices > 0).then(|| {
            u32::try_from(customer.paid_on_time * 100 / customer.paid_invoices).unwrap_or(0)
        }),
        average_days_late: (customer.paid_invoices > 0)
            .then(|| customer.total_days_late / i64::from(customer.paid_invoices)),
        tags: profile
            .map(|profile| profile.segment.tags.clone())
            .unwrap_or_default(),
        country: profile.map(|profile| profile.country.clone()),
        timezone: profile.map(|profile| profile.timezone.clone()),
        last_reply_at: None,
        hold: customer.hold.as_ref().map(|hold| hold.until),
    }
}

/// Past reminders as the policy sees them: cancelled ones never happened.
pub fn past_actions(rows: &[ReminderRow]) -> Vec<PastAction> {
    rows.iter()
        .filter(|row| row.status != "cancelled")
        .filter_map(|row| {
            Some(PastAction {
                invoice_ids: row.invoice_ids.clone(),
                trigger: serde_json::from_value::<Trigger>(row.trigger.clone()).ok()?,
                step_id: row.step_id.clone(),
                at: row.scheduled_for,
                kind: if row.kind == "escalation" {
                    PastActionKind::Escalation
                } else {
                    PastActionKind::Reminder
                },
            })
        })
        .collect()
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy)]
pub struct TickReport {
    pub customers: usize,
    pub queued: usize,
    pub awaiting_approval: usize,
    pub escalations: usize,
}

/// Work of one transaction, gathered before it is written.
struct Batch {
    book: Book,
    changed: BTreeSet<String>,
    outbox: Vec<OutboxRecord>,
    next_actions: Vec<(String, Option<DateTime<Utc>>, serde_json::Value)>,
    report: TickReport,
}

impl Scheduler {
    /// One round: claims up to `batch_customers` customers with due invoices at `now` and plans
    /// them. Returns what it did; zero customers means nothing was due.
    ///
    /// # Errors
    /// [`SchedulerError`] when the database fails (the transaction rolls back and the
    /// customers are planned again on a later tick).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let started = Instant::now();
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let customer_ids = scheduling::claim_due_customers(
            &mut transaction,
            now,
            i64::from(self.settings.batch_customers),
        )
        .await?;
        if customer_ids.is_empty() {
            transaction
                .commit()
                .await
                .map_err(StorageError::Unreachable)?;
            return Ok(TickReport::default());
        }
        let customers = scheduling::load_customers(&mut transaction, &customer_ids).await?;
        let invoices =
            scheduling::load_schedulable_invoices(&mut transaction, &customer_ids).await?;
        let since = now - Duration::days(i64::from(self.settings.history_days));
        let history = scheduling::reminder_history(&mut transaction, &customer_ids, since).await?;
        let mut batch = Batch {
            book: Book {
                invoices: invoices
                    .into_iter()
                    .map(|invoice| (invoice.invoice_id.clone(), invoice))
                    .collect(),
                customers: customers
                    .iter()
                    .map(|customer| (customer.customer_id.clone(), customer.facts.clone()))
                    .collect(),
            },
            changed: BTreeSet::new(),
            outbox: Vec::new(),
            next_actions: Vec::new(),
            report: TickReport {
                customers: customers.len(),
                ..TickReport::default()
            },
        };
        for customer in &customers {
            let mut rows: Vec<ReminderRow> = history
                .iter()
                .filter(|row| row.customer_id == customer.customer_id)
                .cloned()
                .collect();
            self.plan_customer(&mut transaction, customer, &mut rows, &mut batch, now)
                .await?;
        }
        let today = now.date_naive();
        let changed: Vec<(&Invoice, relance_domain::DunningView)> = batch
            .changed
            .iter()
            .filter_map(|id| batch.book.invoices.get(id))
            .map(|invoice| (invoice, invoice.view(today)))
            .collect();
        let rows: Vec<_> = changed
            .iter()
            .map(|(invoice, view)| (*invoice, view))
            .collect();
        invoices::upsert(&mut transaction, &rows, today).await?;
        scheduling::set_next_actions(&mut transaction, &batch.next_actions).await?;
        outbox::enqueue(&mut transaction, &batch.outbox).await?;
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing the scheduling batch",
                source,
            })?;
        if !batch.outbox.is_empty() {
            self.relay.notify_one();
        }
        self.metrics
            .record_tick(batch.report.customers, started.elapsed().as_secs_f64());
        Ok(batch.report)
    }

    async fn plan_customer(
        &self,
        transaction: &mut sqlx::PgConnection,
        customer: &SchedulingCustomer,
        rows: &mut Vec<ReminderRow>,
        batch: &mut Batch,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let policy = self.policies.for_tenant(&customer.tenant);
        let snapshot = customer_snapshot(customer);
        let tz: Tz = snapshot
            .timezone
            .as_deref()
            .and_then(|zone| zone.parse().ok())
            .or_else(|| policy.rules.default_timezone.parse().ok())
            .unwrap_or(Tz::UTC);
        let context = CommandContext {
            customer,
            policy,
            tz,
            now,
            reminders_topic: &self.topics.reminders,
            tasks_topic: &self.topics.tasks,
        };
        let invoice_ids: Vec<String> = batch
            .book
            .invoices
            .values()
            .filter(|invoice| invoice.customer_id == customer.customer_id)
            .map(|invoice| invoice.invoice_id.clone())
            .collect();
        // Each round takes what is due now; a step taken can make the next one due (after a
        // pause), so plan again until nothing is due. Rounds are few: the gap rule spaces steps.
        for _ in 0..16 {
            let past = past_actions(rows);
            let mut dues: Vec<DueStep> = Vec::new();
            let mut escalations = Vec::new();
            for id in &invoice_ids {
                let Some(invoice) = batch.book.invoices.get(id) else {
                    continue;
                };
                let planned = plan(policy, &snapshot, invoice, &past, now);
                match planned.decision {
                    Decision::Send { step } if step.at <= now => {
                        let view = invoice.view(now.with_timezone(&tz).date_naive());
                        dues.push(DueStep {
                            invoice_id: id.clone(),
                            segment: planned.segment,
                            amount_due_minor: view.amount_due_minor,
                            currency: view.currency.map(|currency| currency.to_string()),
                            step,
                        });
                    }
                    Decision::Escalate {
                        at,
                        task,
                        priority,
                        cause,
                    } if at <= now => {
                        escalations.push((id.clone(), planned.segment, at, task, priority, cause));
                    }
                    _ => {}
                }
            }
            if dues.is_empty() && escalations.is_empty() {
                break;
            }
            for group in consolidate(policy, tz, dues) {
                let group_invoices: Vec<&Invoice> = group
                    .invoice_ids
                    .iter()
                    .filter_map(|id| batch.book.invoices.get(id))
                    .collect();
                let decided = reminder_for_group(&context, &group, &group_invoices, rows)?;
                let inserted = scheduling::insert_reminder(transaction, &decided.row).await?;
                rows.push(decided.row.clone());
                if !inserted {
                    continue;
                }
                let row = &decided.row;
                self.metrics
                    .record_decided(&row.kind, &row.channel, &row.step_id, &row.status);
                if row.status == "awaiting_approval" {
                    batch.report.awaiting_approval += 1;
                    let fact = InvoiceFact::ApprovalRequested {
                        step: row.step_id.clone(),
                    };
                    self.apply_fact(
                        batch,
                        customer,
                        &row.invoice_ids,
                        &fact,
                        row.reminder_id,
                        "relance.reminder.approval_requested",
                        now,
                    )?;
                } else {
                    batch.report.queued += 1;
                    batch.outbox.push(decided.record);
                }
            }
            for (invoice_id, segment, at, task, priority, cause) in escalations {
                let Some(invoice) = batch.book.invoices.get(&invoice_id) else {
                    continue;
                };
                let decided = escalation_task(
                    &context, invoice, &segment, at, task, priority, &cause, rows,
                )?;
                let inserted = scheduling::insert_reminder(transaction, &decided.row).await?;
                rows.push(decided.row.clone());
                if !inserted {
                    continue;
                }
                self.metrics.record_decided(
                    "escalation",
                    task.code(),
                    &decided.row.step_id,
                    "queued",
                );
                batch.report.escalations += 1;
                batch.outbox.push(decided.record);
                let to = if task == TaskChannel::CollectionAgency {
                    EscalationTarget::Agency
                } else {
                    EscalationTarget::Person
                };
                self.apply_fact(
                    batch,
                    customer,
                    &[invoice_id],
                    &InvoiceFact::Escalated { to },
                    decided.row.reminder_id,
                    "relance.task.create",
                    now,
                )?;
            }
        }
        let past = past_actions(rows);
        for id in &invoice_ids {
            let Some(invoice) = batch.book.invoices.get(id) else {
                continue;
            };
            let planned: Plan = plan(policy, &snapshot, invoice, &past, now);
            let next = planned.decision.next_time();
            batch.next_actions.push((
                id.clone(),
                next,
                serde_json::to_value(&planned).unwrap_or_default(),
            ));
        }
        Ok(())
    }

    /// Applies one of relance's own facts to invoices and reports the state changes.
    #[allow(clippy::too_many_arguments)]
    fn apply_fact(
        &self,
        batch: &mut Batch,
        customer: &SchedulingCustomer,
        invoice_ids: &[String],
        fact: &InvoiceFact,
        reminder_id: uuid::Uuid,
        cause_type: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        for invoice_id in invoice_ids {
            let event_id = format!("{}:{reminder_id}:{invoice_id}", fact.name());
            let event = BookEvent::Invoice(InvoiceEvent {
                event_id: event_id.clone(),
                tenant: customer.tenant.clone(),
                customer_id: customer.customer_id.clone(),
                invoice_id: invoice_id.clone(),
                time: now,
                revision: None,
                fact: fact.clone(),
            });
            match batch.book.apply(&event, now.date_naive()) {
                Ok(change) => {
                    batch.changed.insert(invoice_id.clone());
                    if let Some(change) = change {
                        let cause = CauseRef {
                            source: SOURCE,
                            id: &event_id,
                            event_type: cause_type,
                        };
                        if let Some(record) =
                            state_changed_record(&change, &cause, now, &self.topics.events, SOURCE)?
                        {
                            batch.outbox.push(record);
                        }
                    }
                }
                Err(rejection) => {
                    tracing::error!(invoice_id = %invoice_id, error = %rejection, "The scheduler's own fact was refused.");
                }
            }
        }
        Ok(())
    }
}
