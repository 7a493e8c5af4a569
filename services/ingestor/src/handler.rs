//! Where billing events meet the domain and the database: one transaction per batch.
//!
//! For a batch: decode every record (bad ones become dead letters); in one transaction, record
//! the events' ids in the processed-events ledger (those already there are duplicates), load
//! and lock the invoices and customers the new events touch, apply the events in order through
//! the domain's [`Book`] (refused ones become dead letters), write the changed invoices and
//! customers with multi-row statements, and put the dunning events and dead letters in the
//! outbox; commit. Only then does the consumer commit the offsets. A crash anywhere before the
//! database commit redoes the batch; after it, the ledger makes the redelivered events no-ops.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use relance_contracts::dead_letter::EventIdentity;
use relance_contracts::{decode_record, BillingEvent, DecodeError, Envelope, EventFamily};
use relance_domain::calendar::UNKNOWN_ZONE;
use relance_domain::{scoped, BehaviourChange, Book, BookEvent, DunningState, Invoice, Scoped};
use relance_kafka::{
    BatchHandler, ConsumedRecord, DeadLetter, DeadLetterWriter, HandlerError, KafkaMetrics,
};
use relance_links::payment::PaymentHosts;
use relance_runtime::Clock;
use relance_storage::outbox::OutboxRecord;
use relance_storage::processed::{conflicting_payloads, forget, record_new_events, EventKey};
use relance_storage::{customers, invoices, outbox, scheduling, StorageError};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::convert::to_book_event;
use crate::metrics::{IngestMetrics, Outcome, CONVERSION_FAILED};
use relance_events::{state_changed_record, CauseRef};

/// The consumer name under which the ingestor records processed events.
pub const CONSUMER: &str = "ingestor";

/// What a record turned out to be once decoded.
enum Planned {
    /// Not a contract event: dead-lettered.
    Undecodable(DecodeError),
    /// A contract event the domain refuses to represent, or that must not be offered to
    /// customers: dead-lettered with `reason`.
    Unconvertible {
        envelope: Box<Envelope<BillingEvent>>,
        reason: &'static str,
        detail: String,
    },
    /// A billing event to apply.
    Event {
        key: EventKey,
        event_type: &'static str,
        event: Box<BookEvent>,
        partitionkey: Option<String>,
    },
}

/// Applies batches of billing events. Clones share everything (pool, metrics): one a lane of
/// the consumer runner.
#[derive(Clone)]
pub struct IngestHandler {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    dead_letters: DeadLetterWriter,
    events_topic: String,
    metrics: IngestMetrics,
    kafka_metrics: KafkaMetrics,
    relay: Arc<Notify>,
    payment_hosts: PaymentHosts,
}

impl IngestHandler {
    pub fn new(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        dead_letters: DeadLetterWriter,
        events_topic: String,
        metrics: IngestMetrics,
        kafka_metrics: KafkaMetrics,
        relay: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            clock,
            dead_letters,
            events_topic,
            metrics,
            kafka_metrics,
            relay,
            payment_hosts: PaymentHosts::default(),
        }
    }

    /// Refuses payment URLs off the hosts each tenant takes payments on (any https host by
    /// default).
    #[must_use]
    pub fn with_payment_hosts(mut self, payment_hosts: PaymentHosts) -> Self {
        self.payment_hosts = payment_hosts;
        self
    }

    /// Why the event's payment URL must not be offered to customers, if it must not.
    fn refused_payment_url(&self, envelope: &Envelope<BillingEvent>) -> Option<String> {
        let url = match &envelope.data {
            BillingEvent::InvoiceIssued(event) => event.payment_url.as_ref(),
            BillingEvent::InvoiceUpdated(event) => event.payment_url.as_ref(),
            _ => None,
        }?;
        self.payment_hosts
            .check(envelope.tenant.as_str(), url.as_str())
            .err()
            .map(|error| format!("payment_url {:?} is refused: {error}.", url.as_str()))
    }

    fn plan(&self, record: &ConsumedRecord) -> Planned {
        // Structured or binary content mode (the CloudEvents Kafka binding).
        match decode_record::<BillingEvent>(&record.headers, record.payload.as_deref()) {
            Err(error) => Planned::Undecodable(error),
            Ok((envelope, _)) => match self.refused_payment_url(&envelope) {
                Some(detail) => Planned::Unconvertible {
                    envelope: Box::new(envelope),
                    reason: PAYMENT_URL_REFUSED,
                    detail,
                },
                None => convert(envelope),
            },
        }
    }

    async fn apply(
        &self,
        batch: &[ConsumedRecord],
        plans: &[Planned],
    ) -> Result<Applied, BatchError> {
        let now = self.clock.now();
        let mut applied = Applied::default();

        // The first copy of an event in the batch is the candidate; later copies are duplicates
        // (or, saying something else, conflicting duplicates).
        let mut seen: HashMap<(&str, &str), Option<&str>> = HashMap::new();
        let mut candidates: Vec<&EventKey> = Vec::new();
        let first_copy: Vec<bool> = plans
            .iter()
            .map(|plan| match plan {
                Planned::Event { key, .. } => {
                    // Keep the first copy's digest: later copies are judged against it.
                    let id = (key.source.as_str(), key.id.as_str());
                    let first = !seen.contains_key(&id);
                    if first {
                        seen.insert(id, key.payload_sha256.as_deref());
                        candidates.push(key);
                    }
                    first
                }
                _ => false,
            })
            .collect();

        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let recorded = record_new_events(&mut transaction, CONSUMER, &candidates).await?;
        // Looked up without building owned keys: once or twice for every record.
        let new: HashSet<(&str, &str)> = recorded
            .iter()
            .map(|(source, id)| (source.as_str(), id.as_str()))
            .collect();
        let redelivered: Vec<&EventKey> = candidates
            .iter()
            .copied()
            .filter(|key| !new.contains(&(key.source.as_str(), key.id.as_str())))
            .collect();
        let mut conflicting =
            conflicting_payloads(&mut transaction, CONSUMER, &redelivered).await?;
        for (index, plan) in plans.iter().enumerate() {
            if first_copy[index] {
                continue;
            }
            if let Planned::Event { key, .. } = plan {
                let first = seen
                    .get(&(key.source.as_str(), key.id.as_str()))
                    .copied()
                    .flatten();
                if first.is_some() && first != key.payload_sha256.as_deref() {
                    conflicting
                        .entry((key.source.clone(), key.id.clone()))
                        .or_insert_with(|| first.unwrap_or_default().to_string());
                }
            }
        }
        let mut refused_events: Vec<(String, String)> = Vec::new();
        // Whether each record is the first copy of an event the ledger had not seen, looked up
        // once a record (each lookup builds its key).
        let new_at: Vec<bool> = plans
            .iter()
            .enumerate()
            .map(|(index, plan)| match plan {
                Planned::Event { key, .. } => {
                    first_copy[index] && new.contains(&(key.source.as_str(), key.id.as_str()))
                }
                _ => false,
            })
            .collect();
        let is_new = |index: usize| new_at[index];

        let mut invoice_ids = Vec::new();
        let mut customer_ids = Vec::new();
        for (index, plan) in plans.iter().enumerate() {
            if let Planned::Event { event, .. } = plan {
                if is_new(index) {
                    match event.as_ref() {
                        BookEvent::Invoice(event) => {
                            invoice_ids.push(scoped(&event.tenant, &event.invoice_id));
                            customer_ids.push(scoped(&event.tenant, &event.customer_id));
                        }
                        BookEvent::Customer(event) => {
                            customer_ids.push(scoped(&event.tenant, &event.customer_id));
                        }
                    }
                }
            }
        }
        // Customers before invoices: the scheduler locks in the same order, so the two never
        // deadlock.
        let loaded_customers =
            customers::load_for_update_with_behaviour(&mut transaction, &customer_ids).await?;
        let loaded_invoices = invoices::load_for_update(&mut transaction, &invoice_ids).await?;
        let mut stored_behaviours = HashMap::with_capacity(loaded_customers.len());
        let mut book = Book {
            invoices: loaded_invoices.into_iter().collect(),
            customers: loaded_customers
                .into_iter()
                .map(|(key, (facts, behaviour))| {
                    stored_behaviours.insert(key.clone(), behaviour);
                    (key, facts)
                })
                .collect(),
        };
        // What the invoices counted for in their customers' stored behaviour before the batch.
        let outcomes_before = book.outcomes(now, UNKNOWN_ZONE);

        let mut outbox_records: Vec<OutboxRecord> = Vec::new();
        let mut touched_invoices = BTreeSet::new();
        let mut touched_customers = BTreeSet::new();
        let mut changed_profiles = BTreeSet::new();
        for (index, (record, plan)) in batch.iter().zip(plans).enumerate() {
            match plan {
                Planned::Undecodable(error) => {
                    let event_type = known_type(error.identity.event_type.as_deref());
                    outbox_records.push(self.dead_letter_record(
                        record,
                        error.kind.code(),
                        &error.detail,
                        Some(error.identity.clone()),
                    ));
                    applied.dead_letters.push((event_type, error.kind.code()));
                }
                Planned::Unconvertible {
                    envelope,
                    reason,
                    detail,
                } => {
                    outbox_records.push(self.dead_letter_record(
                        record,
                        reason,
                        detail,
                        Some(identity(envelope)),
                    ));
                    applied
                        .dead_letters
                        .push((envelope.data.event_type(), *reason));
                }
                Planned::Event {
                    key, event_type, ..
                } if !is_new(index) => {
                    let id = (key.source.clone(), key.id.clone());
                    match conflicting.get(&id) {
                        Some(first) if key.payload_sha256.as_ref() != Some(first) => {
                            let detail = format!(
                                "Event {} from {} was already processed with data of SHA-256 {first}; this one says something else (SHA-256 {}). An event id must name one event: the later one is not applied.",
                                key.id,
                                key.source,
                                key.payload_sha256.as_deref().unwrap_or_default()
                            );
                            outbox_records.push(self.dead_letter_record(
                                record,
                                CONFLICTING_DUPLICATE,
                                &detail,
                                Some(EventIdentity {
                                    id: relance_contracts::Id::parse(&key.id).ok(),
                                    event_type: Some(key.event_type.clone()),
                                    tenant: relance_contracts::Id::parse(&key.tenant).ok(),
                                }),
                            ));
                            applied
                                .dead_letters
                                .push((event_type, CONFLICTING_DUPLICATE));
                        }
                        _ => applied.duplicates.push(event_type),
                    }
                }
                Planned::Event {
                    key,
                    event_type,
                    event,
                    ..
                } => {
                    let conflicts = |book: &Book| match event.as_ref() {
                        BookEvent::Invoice(event) => book
                            .invoices
                            .get(&scoped(&event.tenant, &event.invoice_id))
                            .map_or(0, Invoice::conflicting_amounts),
                        BookEvent::Customer(_) => 0,
                    };
                    let conflicts_before = conflicts(&book);
                    match book.apply_at(event, now, UNKNOWN_ZONE) {
                        Ok(change) => {
                            if conflicts(&book) > conflicts_before {
                                tracing::warn!(event_id = %key.id, event_type, "An amount in another currency than its invoice's is kept but left out of the sums; a person must look (relance_ingest_conflicting_amounts_total).");
                                applied.conflicting_amounts.push(event_type);
                            }
                            match event.as_ref() {
                                BookEvent::Invoice(event) => {
                                    touched_invoices
                                        .insert(scoped(&event.tenant, &event.invoice_id));
                                    touched_customers
                                        .insert(scoped(&event.tenant, &event.customer_id));
                                }
                                BookEvent::Customer(event) => {
                                    touched_customers
                                        .insert(scoped(&event.tenant, &event.customer_id));
                                    changed_profiles
                                        .insert(scoped(&event.tenant, &event.customer_id));
                                }
                            }
                            if let Some(change) = change {
                                let cause = CauseRef {
                                    source: &key.source,
                                    id: &key.id,
                                    event_type,
                                };
                                if let Some(record) = state_changed_record(
                                    &change,
                                    &cause,
                                    now,
                                    &self.events_topic,
                                    crate::SOURCE,
                                )? {
                                    applied.state_changes.push(change.to.state.name());
                                    outbox_records.push(record);
                                }
                            }
                            applied.applied.push(event_type);
                        }
                        Err(rejection) => {
                            // Not applied: a replay of its dead letter, once the cause is fixed,
                            // must apply it rather than find it already processed.
                            refused_events.push((key.source.clone(), key.id.clone()));
                            let identity = EventIdentity {
                                id: relance_contracts::Id::parse(&key.id).ok(),
                                event_type: Some(key.event_type.clone()),
                                tenant: relance_contracts::Id::parse(&key.tenant).ok(),
                            };
                            outbox_records.push(self.dead_letter_record(
                                record,
                                rejection.reason.code(),
                                &rejection.detail,
                                Some(identity),
                            ));
                            applied
                                .dead_letters
                                .push((event_type, rejection.reason.code()));
                        }
                    }
                }
            }
        }

        let changed: Vec<_> = touched_invoices
            .iter()
            .filter_map(|key| book.invoices.get(key))
            .map(|invoice| {
                let today = book.today_of_invoice(invoice, now, UNKNOWN_ZONE);
                (invoice, invoice.view(today), today)
            })
            .collect();
        let rows: Vec<_> = changed
            .iter()
            .map(|(invoice, view, today)| (*invoice, view, *today))
            .collect();
        // Written and marked for planning at once: the scheduler plans every changed invoice
        // again now. Commands already queued for an invoice that can no longer be dunned (paid,
        // voided, credited, disputed, paused, escalated) are cancelled here, in the transaction
        // that records why, so they are never published.
        invoices::upsert(&mut transaction, &rows, Some(now)).await?;
        // The scheduler reads only due invoices: a customer's new profile (segment, VIP, time
        // zone) reaches all their open invoices' plans now, not when each comes due.
        let profiles: Vec<Scoped> = changed_profiles.iter().cloned().collect();
        scheduling::mark_customers_for_replanning(&mut transaction, &profiles, now).await?;
        let stopped: Vec<Scoped> = changed
            .iter()
            .filter(|(_, view, _)| {
                matches!(
                    view.state,
                    DunningState::Closed { .. }
                        | DunningState::Paused { .. }
                        | DunningState::Escalated { .. }
                )
            })
            .map(|(invoice, _, _)| scoped(&invoice.tenant, &invoice.invoice_id))
            .collect();
        let cancelled = outbox::cancel_pending_for_invoices(&mut transaction, &stopped).await?;
        applied.cancelled_commands =
            scheduling::cancel_reminders(&mut transaction, &stopped, &cancelled, now).await?;

        // Payment behaviour is stored as sums: each touched customer's sums get what the batch
        // changed of their invoices, without reading their other invoices (only their first
        // issue date, when the batch moved it later). A customer locked above gets its new sums
        // as whole values, and its profile if that changed; a new one is written whole, its
        // sums added to in the database (another transaction may create it at once).
        let touched: Vec<Scoped> = touched_customers.into_iter().collect();
        let changes = book.behaviour_changes(&outcomes_before, &touched, now, UNKNOWN_ZONE);
        let recount: Vec<Scoped> = changes
            .iter()
            .filter(|(key, change)| {
                stored_behaviours
                    .get(key)
                    .is_some_and(|stored| change.needs_first_issue_recount(stored))
            })
            .map(|(key, _)| key.clone())
            .collect();
        let first_issues = invoices::first_issue_dates(&mut transaction, &recount).await?;
        let unchanged = BehaviourChange::default();
        let mut new_sums = Vec::new();
        let mut customer_rows = Vec::new();
        for (key, change) in &changes {
            let Some(facts) = book.customers.get(key) else {
                continue;
            };
            match stored_behaviours.get(key) {
                Some(stored) => {
                    if changed_profiles.contains(key) {
                        customer_rows.push((facts, &unchanged));
                    }
                    if !change.is_none() {
                        let mut sums = change.applied_to(stored);
                        if let Some(first) = first_issues.get(key) {
                            sums.first_invoice_on = *first;
                        }
                        new_sums.push((key, sums));
                    }
                }
                None => customer_rows.push((facts, change)),
            }
        }
        customers::upsert(&mut transaction, &customer_rows).await?;
        customers::write_behaviours(&mut transaction, &new_sums).await?;

        forget(&mut transaction, CONSUMER, &refused_events).await?;
        outbox::enqueue(&mut transaction, &outbox_records).await?;
        applied.published = !outbox_records.is_empty();
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing the batch",
                source,
            })?;
        Ok(applied)
    }

    fn dead_letter_record(
        &self,
        record: &ConsumedRecord,
        reason: &'static str,
        detail: &str,
        identity: Option<EventIdentity>,
    ) -> OutboxRecord {
        relance_events::dead_letter_outbox(
            &self.dead_letters,
            record,
            &DeadLetter {
                reason,
                detail: detail.to_string(),
                identity,
            },
        )
    }
}

/// What a committed batch did, for metrics and logs.
#[derive(Default)]
struct Applied {
    applied: Vec<&'static str>,
    duplicates: Vec<&'static str>,
    dead_letters: Vec<(&'static str, &'static str)>,
    state_changes: Vec<&'static str>,
    conflicting_amounts: Vec<&'static str>,
    published: bool,
    cancelled_commands: u64,
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Event(#[from] relance_events::EventBuildError),
}

/// A metric label for an event type read from a bad record: only types the contracts define,
/// so junk cannot multiply label values.
fn known_type(event_type: Option<&str>) -> &'static str {
    event_type
        .and_then(|event_type| {
            relance_contracts::schema::EVENT_SPECS
                .iter()
                .find(|spec| spec.event_type == event_type)
                .map(|spec| spec.event_type)
        })
        .unwrap_or("unknown")
}

fn identity(envelope: &Envelope<BillingEvent>) -> EventIdentity {
    EventIdentity {
        id: Some(envelope.id.clone()),
        event_type: Some(envelope.event_type.clone()),
        tenant: Some(envelope.tenant.clone()),
    }
}

impl BatchHandler for IngestHandler {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let started = Instant::now();
        let plans: Vec<Planned> = batch.iter().map(|record| self.plan(record)).collect();
        for (record, plan) in batch.iter().zip(&plans) {
            if let Planned::Event {
                key, partitionkey, ..
            } = plan
            {
                self.kafka_metrics.check_key(
                    &record.topic,
                    record.partition,
                    record.offset,
                    record.key.as_deref(),
                    partitionkey.as_deref(),
                    &key.id,
                );
            }
        }
        match self.apply(batch, &plans).await {
            Ok(applied) => {
                for event_type in &applied.applied {
                    self.metrics.record_event(event_type, Outcome::Applied);
                }
                for event_type in &applied.duplicates {
                    self.metrics.record_event(event_type, Outcome::Duplicate);
                }
                for (event_type, reason) in &applied.dead_letters {
                    self.metrics.record_dead_letter(event_type, reason);
                }
                for state in &applied.state_changes {
                    self.metrics.record_state_change(state);
                }
                for event_type in &applied.conflicting_amounts {
                    self.metrics.record_conflicting_amount(event_type);
                }
                self.metrics
                    .record_batch(batch.len(), started.elapsed().as_secs_f64());
                if applied.published {
                    self.relay.notify_one();
                }
                tracing::debug!(
                    records = batch.len(),
                    applied = applied.applied.len(),
                    duplicates = applied.duplicates.len(),
                    dead_lettered = applied.dead_letters.len(),
                    cancelled_commands = applied.cancelled_commands,
                    "Batch applied."
                );
                Ok(())
            }
            Err(BatchError::Storage(error)) if error.is_transient() => {
                Err(HandlerError::Transient(Box::new(error)))
            }
            Err(BatchError::Storage(error)) if error.is_refused_content() => {
                Err(HandlerError::Refused(refusal(&error).into()))
            }
            Err(error) => Err(HandlerError::Fatal(Box::new(error))),
        }
    }

    async fn dead_letter(
        &mut self,
        record: &ConsumedRecord,
        detail: String,
    ) -> Result<(), HandlerError> {
        let plan = self.plan(record);
        let (event_type, identity) = match &plan {
            Planned::Event {
                key, event_type, ..
            } => (
                *event_type,
                Some(EventIdentity {
                    id: relance_contracts::Id::parse(&key.id).ok(),
                    event_type: Some(key.event_type.clone()),
                    tenant: relance_contracts::Id::parse(&key.tenant).ok(),
                }),
            ),
            _ => ("unknown", None),
        };
        let outbox_record = self.dead_letter_record(record, DATABASE_REFUSED, &detail, identity);
        let write = async {
            let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
            outbox::enqueue(&mut transaction, &[outbox_record]).await?;
            transaction
                .commit()
                .await
                .map_err(StorageError::Unreachable)
        };
        match write.await {
            Ok(()) => {
                self.metrics
                    .record_dead_letter(event_type, DATABASE_REFUSED);
                self.relay.notify_one();
                Ok(())
            }
            Err(error) if error.is_transient() => Err(HandlerError::Transient(Box::new(error))),
            Err(error) => Err(HandlerError::Fatal(Box::new(error))),
        }
    }
}

/// The dead-letter reason of an event whose id was already processed with other data.
pub const CONFLICTING_DUPLICATE: &str = "conflicting_duplicate";

/// SHA-256 of what an event says: its data as the contract types write it (field order
/// fixed), so a redelivery has the same digest whatever its JSON layout.
fn data_sha256(data: &BillingEvent) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(data).unwrap_or_default(),
    ))
}

/// The dead-letter reason of an invoice whose payment page is not https or not on a host its
/// tenant takes payments on.
pub const PAYMENT_URL_REFUSED: &str = "payment_url_refused";

/// The dead-letter reason of a record the database refused for its content.
pub const DATABASE_REFUSED: &str = "database_refused";

/// What the database said, for the dead letter and the logs.
fn refusal(error: &StorageError) -> String {
    format!("{:?}", relance_telemetry::ErrorChain(error))
}

/// The billing event as the domain's, or why the domain cannot represent it.
fn convert(envelope: Envelope<BillingEvent>) -> Planned {
    match to_book_event(&envelope) {
        Ok(event) => Planned::Event {
            key: EventKey {
                source: envelope.source.clone(),
                id: envelope.id.to_string(),
                tenant: envelope.tenant.to_string(),
                event_type: envelope.event_type.clone(),
                payload_sha256: Some(data_sha256(&envelope.data)),
            },
            event_type: envelope.data.event_type(),
            event: Box::new(event),
            partitionkey: envelope.partitionkey.clone(),
        },
        Err(error) => Planned::Unconvertible {
            detail: error.to_string(),
            reason: CONVERSION_FAILED,
            envelope: Box::new(envelope),
        },
    }
}
