//! The records relance publishes through the outbox: dunning events, and helpers shared by the
//! services that publish commands and dead letters.

mod facts;

pub use facts::{apply_invoice_fact, ApplyError, FactSource};

use chrono::{DateTime, Utc};
use relance_contracts::dunning::{
    Cause, ClosedReason, DunningStateName, Pause, PauseReason, StateChangedV1,
};
use relance_contracts::{Envelope, Id, InvalidValue, CLOUDEVENTS_CONTENT_TYPE};
use relance_domain::{DunningState, DunningView, StateChange};
use relance_kafka::OutgoingRecord;
use relance_storage::outbox::OutboxRecord;

/// Namespace of the ids of published events: the same change always gets the same id, so a
/// consumer recognises a republished event.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1c_2f0e_8d4b_4e52_9b0f_3c6d_1e7a_5b90);

/// The event that caused a change.
pub struct CauseRef<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub event_type: &'a str,
}

fn state_name(state: &DunningState) -> Option<DunningStateName> {
    Some(match state {
        DunningState::AwaitingInvoice => return None,
        DunningState::NotDue => DunningStateName::NotDue,
        DunningState::Overdue => DunningStateName::Overdue,
        DunningState::PartiallyPaid => DunningStateName::PartiallyPaid,
        DunningState::Paused { .. } => DunningStateName::Paused,
        DunningState::Escalated { .. } => DunningStateName::Escalated,
        DunningState::Closed { .. } => DunningStateName::Closed,
    })
}

fn pause(view: &DunningView) -> Option<Pause> {
    match view.state {
        DunningState::Paused { reason, until } => Some(Pause {
            reason: match reason {
                relance_domain::PauseReason::Dispute => PauseReason::Dispute,
                relance_domain::PauseReason::PromiseToPay => PauseReason::PromiseToPay,
                relance_domain::PauseReason::ManualHold => PauseReason::ManualHold,
                relance_domain::PauseReason::AwaitingApproval => PauseReason::AwaitingApproval,
                relance_domain::PauseReason::PaymentClaimed => PauseReason::PaymentClaimed,
            },
            until,
        }),
        _ => None,
    }
}

fn closed_reason(view: &DunningView) -> Option<ClosedReason> {
    match view.state {
        DunningState::Closed { reason } => Some(match reason {
            relance_domain::ClosedReason::Paid => ClosedReason::Paid,
            relance_domain::ClosedReason::Voided => ClosedReason::Voided,
            relance_domain::ClosedReason::Credited => ClosedReason::Credited,
            relance_domain::ClosedReason::WrittenOff => ClosedReason::WrittenOff,
        }),
        _ => None,
    }
}

/// Why a change could not be turned into a contract event (a bug: the values came from
/// contract events).
#[derive(Debug, thiserror::Error)]
#[error("building an event about {subject}: {source}")]
pub struct EventBuildError {
    pub subject: String,
    #[source]
    pub source: InvalidValue,
}

/// The `relance.dunning.state_changed` record of a change, for `topic`, published by `source`
/// (`urn:relance:<service>`).
///
/// # Errors
/// [`EventBuildError`] if an id or amount does not meet the contract.
pub fn state_changed_record(
    change: &StateChange,
    cause: &CauseRef<'_>,
    now: DateTime<Utc>,
    topic: &str,
    source: &str,
) -> Result<Option<OutboxRecord>, EventBuildError> {
    let fail = |source| EventBuildError {
        subject: change.invoice_id.clone(),
        source,
    };
    let (Some(to), Some(currency)) = (state_name(&change.to.state), change.to.currency.as_ref())
    else {
        return Ok(None);
    };
    let amount_due = relance_contracts::Money::new(
        change.to.amount_due_minor,
        relance_contracts::Currency::parse(currency.as_str()).map_err(fail)?,
    )
    .map_err(fail)?;
    let data = StateChangedV1 {
        invoice_id: Id::parse(&change.invoice_id).map_err(fail)?,
        customer_id: Id::parse(&change.customer_id).map_err(fail)?,
        from: change
            .from
            .as_ref()
            .and_then(|from| state_name(&from.state)),
        to,
        amount_due,
        pause: pause(&change.to),
        closed_reason: closed_reason(&change.to),
        cause: Some(Cause {
            event_id: Id::parse(cause.id).map_err(fail)?,
            event_type: cause.event_type.to_string(),
        }),
    };
    let id = uuid::Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!(
            "{}\u{1f}{}\u{1f}{}",
            change.invoice_id, cause.source, cause.id
        )
        .as_bytes(),
    );
    let envelope = Envelope::new(
        Id::parse(id.to_string()).map_err(fail)?,
        source,
        Id::parse(&change.tenant).map_err(fail)?,
        now,
        change.customer_id.clone(),
        data,
    )
    .with_subject(change.invoice_id.clone());
    let payload = envelope.to_json_bytes().unwrap_or_default();
    Ok(Some(OutboxRecord {
        topic: topic.to_string(),
        key: Some(change.customer_id.as_bytes().to_vec()),
        payload,
        headers: cloudevent_headers(&envelope.event_type, envelope.id.as_str(), &change.tenant),
        ..OutboxRecord::default()
    }))
}

/// Headers of a structured-mode CloudEvent, plus the type, id and tenant for filtering without
/// parsing the value.
pub fn cloudevent_headers(
    event_type: &str,
    id: &str,
    tenant: &str,
) -> Vec<(String, Option<Vec<u8>>)> {
    vec![
        (
            "content-type".into(),
            Some(CLOUDEVENTS_CONTENT_TYPE.as_bytes().to_vec()),
        ),
        ("ce_type".into(), Some(event_type.as_bytes().to_vec())),
        ("ce_id".into(), Some(id.as_bytes().to_vec())),
        ("ce_tenant".into(), Some(tenant.as_bytes().to_vec())),
    ]
}

/// A Kafka record as an outbox record.
pub fn to_outbox(record: OutgoingRecord) -> OutboxRecord {
    OutboxRecord {
        topic: record.topic,
        key: record.key,
        payload: record.payload,
        headers: record.headers,
        ..OutboxRecord::default()
    }
}

/// The outbox record of the dead letter of `record`, cut to the topic's size limit if it must
/// be, with the whole original kept beside it in `dead_letters` when the outbox is written.
pub fn dead_letter_outbox(
    writer: &relance_kafka::DeadLetterWriter,
    record: &relance_kafka::ConsumedRecord,
    dead_letter: &relance_kafka::DeadLetter,
) -> OutboxRecord {
    let built = writer.build_fitted(record, dead_letter);
    let identity = dead_letter.identity.as_ref();
    let stored = relance_storage::outbox::StoredDeadLetter {
        service: writer.service().to_string(),
        reason: dead_letter.reason.to_string(),
        detail: dead_letter.detail.clone(),
        source_topic: record.topic.clone(),
        source_partition: record.partition,
        source_offset: record.offset,
        event_id: identity.and_then(|identity| identity.id.as_ref().map(ToString::to_string)),
        event_type: identity.and_then(|identity| identity.event_type.clone()),
        tenant: identity.and_then(|identity| identity.tenant.as_ref().map(ToString::to_string)),
        original_key: record.key.clone(),
        original_payload: record.payload.clone(),
        original_headers: record.headers.clone(),
        original_sha256: built.original_sha256,
        truncated: built.truncated,
    };
    OutboxRecord {
        dead_letter: Some(Box::new(stored)),
        ..to_outbox(built.record)
    }
}

/// The outbox record of a contract event or command about a customer, published by `source`
/// (`urn:relance:<service>`), keyed by the customer so their records stay in order. `None` when
/// the tenant, customer or id is not a valid contract id (a bug upstream: they came from
/// contract events).
pub fn customer_record<T: relance_contracts::EventPayload + serde::Serialize>(
    topic: &str,
    source: &str,
    tenant: &str,
    customer_id: &str,
    id: uuid::Uuid,
    now: DateTime<Utc>,
    data: T,
) -> Option<OutboxRecord> {
    let envelope = Envelope::new(
        Id::parse(id.to_string()).ok()?,
        source,
        Id::parse(tenant).ok()?,
        now,
        customer_id.to_string(),
        data,
    );
    let payload = envelope.to_json_bytes().ok()?;
    Some(OutboxRecord {
        topic: topic.to_string(),
        key: Some(customer_id.as_bytes().to_vec()),
        payload,
        headers: cloudevent_headers(&envelope.event_type, envelope.id.as_str(), tenant),
        ..OutboxRecord::default()
    })
}
