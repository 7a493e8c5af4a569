//! The scheduler's work: claim customers with due invoices, ask the policy's planning loop
//! (`relance_policy::plan_customer`, the one the simulator runs) what is due for each — given
//! their due invoices only (`scheduling::load_due_invoices` says why that suffices) — and
//! record every decision — reminder rows, commands in the outbox, relance's own facts on the
//! invoices, each invoice's next action — in one transaction per batch.
//!
//! Customers are claimed with `FOR UPDATE SKIP LOCKED`, so any number of replicas share the
//! work and never plan one customer at the same time; a reminder's idempotency key is unique
//! in the database, so even a repeated decision is recorded once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use relance_config::{SchedulerSettings, TopicSettings};
use relance_domain::{scoped, Book, BookEvent, Invoice, Scoped};
use relance_events::{state_changed_record, CauseRef, EventBuildError};
use relance_policy::commands::CustomerContext;
use relance_policy::{
    plan_customer, CustomerSnapshot, PastAction, PastActionKind, PastReminder, Risk, Trigger,
};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::scheduling::{self, PastReminderRow, ReminderRow, SchedulingCustomer};
use relance_storage::{invoices, StorageError};
use sqlx::PgPool;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::commands::{stored, Stored, SOURCE};
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
    /// Customers this process's workers are planning right now.
    pub in_flight: InFlight,
}

/// The customers a process's planning workers hold, so that a worker's claim passes over its
/// siblings' customers without asking PostgreSQL to try their locks (workers all claim the
/// most overdue customers first, so without it most of a claim went on lock attempts on a
/// sibling's customers). Only a shortcut: the row locks still keep workers and replicas
/// apart.
#[derive(Clone, Default)]
pub struct InFlight(Arc<std::sync::Mutex<HashSet<Scoped>>>);

impl InFlight {
    fn snapshot(&self) -> HashSet<Scoped> {
        self.0.lock().map(|held| held.clone()).unwrap_or_default()
    }

    fn hold<'a>(&self, customers: impl Iterator<Item = &'a Scoped>) -> Held {
        let customers: Vec<Scoped> = customers.cloned().collect();
        if let Ok(mut held) = self.0.lock() {
            held.extend(customers.iter().cloned());
        }
        Held {
            in_flight: self.clone(),
            customers,
        }
    }
}

/// Customers held by one round; released when the round ends, however it ends.
struct Held {
    in_flight: InFlight,
    customers: Vec<Scoped>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = self.in_flight.0.lock() {
            for customer in &self.customers {
                held.remove(customer);
            }
        }
    }
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
        // No reply reaches relance yet (docs/policy.md): stop_on_reply cannot take effect.
        last_reply_at: None,
        hold: customer.hold.as_ref().map(|hold| hold.until),
    }
}

/// A past reminder as the policy sees it: cancelled and deferred ones do not count, and a row
/// whose trigger cannot be read is left out.
pub fn past_reminder(row: PastReminderRow) -> Option<PastReminder> {
    Some(PastReminder {
        active: !matches!(row.status.as_str(), "cancelled" | "deferred"),
        action: PastAction {
            trigger: serde_json::from_value::<Trigger>(row.trigger).ok()?,
            kind: if row.kind == "escalation" {
                PastActionKind::Escalation
            } else {
                PastActionKind::Reminder
            },
            invoice_ids: row.invoice_ids,
            step_id: row.step_id,
            at: row.scheduled_for,
        },
    })
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy)]
pub struct TickReport {
    pub customers: usize,
    pub queued: usize,
    pub awaiting_approval: usize,
    pub escalations: usize,
    /// Customers whose data cannot form a valid command: left for a person.
    pub quarantined: usize,
    /// The round stopped at `batch_customers` or `batch_invoices`: more may be due now.
    pub full: bool,
}

/// What a tick writes, gathered before it is written once.
#[derive(Default)]
struct Writes {
    reminders: Vec<(
        ReminderRow<String>,
        OutboxRecord,
        Vec<relance_domain::InvoiceEvent>,
    )>,
    /// Each plan as JSON text, serialised without a `serde_json::Value` tree between (those
    /// trees were the largest part of the scheduler's heap at its peak, by heaptrack).
    next_actions: Vec<(Scoped, Option<DateTime<Utc>>, String)>,
}

impl Scheduler {
    fn round_limits(&self) -> scheduling::RoundLimits {
        scheduling::RoundLimits {
            customers: i64::from(self.settings.batch_customers),
            invoices: i64::from(self.settings.batch_invoices),
        }
    }

    /// One round: claims up to `batch_customers` customers with due invoices at `now` (no more
    /// than `batch_invoices` due invoices, but at least one customer) and plans them. Returns
    /// what it did; zero customers means nothing was due that another worker or replica did
    /// not hold.
    ///
    /// # Errors
    /// [`SchedulerError`] when the database fails (the transaction rolls back and the
    /// customers are planned again on a later tick).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        self.tick_among(now, None).await
    }

    /// A round that failed for good (the database refused what planning one customer wrote)
    /// again, a customer at a time: the customers that fail alone are set aside for an hour,
    /// with a metric and the reason in their invoices' plan, and everyone else is planned.
    ///
    /// # Errors
    /// [`SchedulerError`] when the database is unavailable.
    pub async fn tick_isolating(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let candidates = scheduling::claim_due_customers_among(
            &mut transaction,
            now,
            self.round_limits(),
            None,
            &self.in_flight.snapshot(),
        )
        .await?
        .customers;
        transaction
            .rollback()
            .await
            .map_err(StorageError::Unreachable)?;
        let mut report = TickReport::default();
        for customer in candidates {
            match self
                .tick_among(now, Some(std::slice::from_ref(&customer)))
                .await
            {
                Ok(one) => {
                    report.customers += one.customers;
                    report.queued += one.queued;
                    report.awaiting_approval += one.awaiting_approval;
                    report.escalations += one.escalations;
                    report.quarantined += one.quarantined;
                }
                Err(SchedulerError::Storage(error)) if error.is_transient() => {
                    return Err(SchedulerError::Storage(error))
                }
                Err(error) => {
                    let reason = format!("{:?}", relance_telemetry::ErrorChain(&error));
                    tracing::error!(tenant = %customer.0, customer = %customer.1, error = %reason, "A customer cannot be planned; set aside for an hour, everyone else goes on.");
                    let mut connection = self
                        .pool
                        .acquire()
                        .await
                        .map_err(StorageError::Unreachable)?;
                    scheduling::quarantine_customer(
                        &mut connection,
                        &customer,
                        now,
                        now + Duration::hours(1),
                        &reason,
                    )
                    .await?;
                    self.metrics.record_quarantined();
                    report.quarantined += 1;
                }
            }
        }
        Ok(report)
    }

    async fn tick_among(
        &self,
        now: DateTime<Utc>,
        only: Option<&[Scoped]>,
    ) -> Result<TickReport, SchedulerError> {
        let started = Instant::now();
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let span = tracing::info_span!(
            "scheduler.batch",
            customers = tracing::field::Empty,
            queued = tracing::field::Empty,
        );
        // Released after the commit or the rollback below, when the rows are unlocked.
        let mut held = None;
        let planned = self
            .plan_claimed(&mut transaction, now, only, &mut held)
            .instrument(span.clone())
            .await;
        if let Ok((report, _)) = &planned {
            span.record("customers", report.customers);
            span.record("queued", report.queued);
        }
        let (report, outbox) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                // Rolled back here, not when the connection is dropped: a dropped transaction
                // keeps its row locks until the pool gets round to it, and the round that
                // isolates customers one by one would then skip them as held elsewhere.
                if let Err(rollback) = transaction.rollback().await {
                    tracing::warn!(error = %rollback, "Rolling back a failed scheduling batch failed; the connection is closed.");
                }
                return Err(error);
            }
        };
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing the scheduling batch",
                source,
            })?;
        if outbox {
            self.relay.notify_one();
        }
        if report.customers > 0 {
            self.metrics
                .record_tick(report.customers, started.elapsed().as_secs_f64());
        }
        Ok(report)
    }

    /// Claims and plans the due customers (among `only`) inside `transaction`; tells whether
    /// anything was put in the outbox.
    async fn plan_claimed(
        &self,
        transaction: &mut sqlx::PgConnection,
        now: DateTime<Utc>,
        only: Option<&[Scoped]>,
        held: &mut Option<Held>,
    ) -> Result<(TickReport, bool), SchedulerError> {
        let claimed = scheduling::claim_due_customers_among(
            transaction,
            now,
            self.round_limits(),
            only,
            &self.in_flight.snapshot(),
        )
        .await?;
        *held = Some(self.in_flight.hold(claimed.customers.iter()));
        let full = claimed.full;
        let customer_ids = claimed.customers;
        if customer_ids.is_empty() {
            return Ok((
                TickReport {
                    full,
                    ..TickReport::default()
                },
                false,
            ));
        }
        let customers = scheduling::load_customers(transaction, &customer_ids).await?;
        let loaded = scheduling::load_due_invoices(transaction, &customer_ids, now).await?;
        let since = now - Duration::days(i64::from(self.settings.history_days));
        let history = scheduling::reminder_history(transaction, &customer_ids, since).await?;
        let mut book = Book {
            invoices: loaded
                .into_iter()
                .map(|invoice| (scoped(&invoice.tenant, &invoice.invoice_id), invoice))
                .collect(),
            customers: customers
                .iter()
                .map(|customer| {
                    (
                        scoped(&customer.tenant, &customer.customer_id),
                        customer.facts.clone(),
                    )
                })
                .collect(),
        };
        let mut report = TickReport {
            customers: customers.len(),
            full,
            ..TickReport::default()
        };
        let mut writes = Writes::default();
        // Grouped once: a batch holds hundreds of customers. Moved, not cloned.
        let mut history_of: HashMap<(String, String), Vec<PastReminder>> = HashMap::new();
        for mut row in history {
            let key = (
                std::mem::take(&mut row.tenant),
                std::mem::take(&mut row.customer_id),
            );
            if let Some(past) = past_reminder(row) {
                history_of.entry(key).or_default().push(past);
            }
        }
        let mut invoices_of: HashMap<(&str, &str), Vec<Invoice>> = HashMap::new();
        for invoice in book.invoices.values() {
            invoices_of
                .entry((invoice.tenant.as_str(), invoice.customer_id.as_str()))
                .or_default()
                .push(invoice.clone());
        }
        for customer in &customers {
            let key = (customer.tenant.as_str(), customer.customer_id.as_str());
            let past = history_of
                .remove(&(customer.tenant.clone(), customer.customer_id.clone()))
                .unwrap_or_default();
            let invoices = invoices_of.remove(&key).unwrap_or_default();
            let _customer = tracing::info_span!(
                "plan.customer",
                tenant = %customer.tenant,
                customer_id = %customer.customer_id,
            )
            .entered();
            self.plan(customer, invoices, &past, now, &mut writes, &mut report)?;
        }
        let outbox = self
            .record(transaction, &mut book, writes, now, &mut report)
            .await?;
        Ok((report, outbox))
    }

    /// Asks the planning loop about one customer and gathers what it decided.
    fn plan(
        &self,
        customer: &SchedulingCustomer,
        invoices: Vec<Invoice>,
        past: &[PastReminder],
        now: DateTime<Utc>,
        writes: &mut Writes,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let policy = self.policies.for_tenant(&customer.tenant);
        let snapshot = customer_snapshot(customer);
        let context = CustomerContext {
            tenant: &customer.tenant,
            customer_id: &customer.customer_id,
            facts: Some(&customer.facts),
        };
        let planned = match plan_customer(policy, context, &snapshot, &invoices, past, now) {
            Ok(planned) => planned,
            Err(error) => {
                // Left for a person rather than stopping everyone else's dunning.
                tracing::error!(customer = %customer.customer_id, error = %error, "A customer cannot be planned: their data cannot form a valid command. Planning them again in an hour.");
                self.metrics.record_quarantined();
                report.quarantined += 1;
                let retry = now + Duration::hours(1);
                for invoice in &invoices {
                    writes.next_actions.push((
                        scoped(&invoice.tenant, &invoice.invoice_id),
                        Some(retry),
                        serde_json::json!({"quarantined": error.to_string()}).to_string(),
                    ));
                }
                return Ok(());
            }
        };
        for decided in &planned.decided {
            let Stored { row, record } = stored(
                decided,
                policy,
                &customer.tenant,
                &customer.customer_id,
                &self.topics,
                now,
            )?;
            writes.reminders.push((row, record, decided.facts.clone()));
        }
        for (invoice_id, plan) in &planned.plans {
            writes.next_actions.push((
                scoped(&customer.tenant, invoice_id),
                plan.decision.next_time(),
                serde_json::to_string(plan).unwrap_or_else(|_| "null".to_string()),
            ));
        }
        Ok(())
    }

    /// Writes what the tick decided, once: the reminders (only those recorded now are
    /// published, and only their facts applied), the invoices they changed, every next action.
    /// Returns whether anything went to the outbox.
    async fn record(
        &self,
        transaction: &mut sqlx::PgConnection,
        book: &mut Book,
        writes: Writes,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<bool, SchedulerError> {
        let rows: Vec<&ReminderRow<String>> =
            writes.reminders.iter().map(|(row, _, _)| row).collect();
        let inserted: HashSet<String> = scheduling::insert_reminders(transaction, &rows)
            .await?
            .into_iter()
            .collect();
        let mut outbox_records = Vec::new();
        let mut changed = BTreeSet::new();
        for (row, record, facts) in writes.reminders {
            if !inserted.contains(&row.idempotency_key) {
                continue;
            }
            self.metrics
                .record_decided(&row.kind, &row.channel, &row.step_id, &row.status);
            match (row.kind.as_str(), row.status.as_str()) {
                ("escalation", _) => report.escalations += 1,
                (_, "awaiting_approval") => report.awaiting_approval += 1,
                _ => report.queued += 1,
            }
            if row.status != "awaiting_approval" {
                outbox_records.push(record);
            }
            let cause_type = if row.kind == "escalation" {
                "relance.task.create"
            } else {
                "relance.reminder.approval_requested"
            };
            for event in facts {
                // Approval requests and escalations leave payment behaviour alone (property
                // tested in relance-domain), so the customers' sums need no change here.
                debug_assert!(!event.fact.changes_payment_behaviour());
                let invoice_id = event.invoice_id.clone();
                let key = scoped(&event.tenant, &event.invoice_id);
                let event_id = event.event_id.clone();
                match book.apply_at(
                    &BookEvent::Invoice(event),
                    now,
                    relance_domain::calendar::UNKNOWN_ZONE,
                ) {
                    Ok(change) => {
                        changed.insert(key);
                        if let Some(change) = change {
                            let cause = CauseRef {
                                source: SOURCE,
                                id: &event_id,
                                event_type: cause_type,
                            };
                            if let Some(record) = state_changed_record(
                                &change,
                                &cause,
                                now,
                                &self.topics.events,
                                SOURCE,
                            )? {
                                outbox_records.push(record);
                            }
                        }
                    }
                    Err(rejection) => {
                        tracing::error!(invoice_id = %invoice_id, error = %rejection, "The scheduler's own fact was refused.");
                    }
                }
            }
        }
        let views: Vec<_> = changed
            .iter()
            .filter_map(|key| book.invoices.get(key))
            .map(|invoice| {
                let today =
                    book.today_of_invoice(invoice, now, relance_domain::calendar::UNKNOWN_ZONE);
                (invoice, invoice.view(today), today)
            })
            .collect();
        let upserts: Vec<_> = views
            .iter()
            .map(|(invoice, view, today)| (*invoice, view, *today))
            .collect();
        invoices::upsert(transaction, &upserts, None).await?;
        scheduling::set_next_actions(transaction, &writes.next_actions).await?;
        outbox::enqueue(transaction, &outbox_records).await?;
        Ok(!outbox_records.is_empty())
    }
}
