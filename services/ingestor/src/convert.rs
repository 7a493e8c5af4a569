//! From contract events to domain events: the edge where wire types become domain values.

use relance_contracts::billing::{
    CustomerUpsertedV1, DisputeStatus, PreferredChannel, RefundKind, RiskLevel,
};
use relance_contracts::{BillingEvent, Envelope};
use relance_domain::{
    BookEvent, Contact, Currency, CustomerEvent, CustomerProfile, InvoiceContact, InvoiceEvent,
    InvoiceFact, Money, Segment,
};

/// A contract value the domain refuses. The contracts check the same rules, so this only
/// happens if the two disagree; the event is dead-lettered rather than trusted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConversionError(#[from] relance_domain::MoneyError);

fn money(amount: &relance_contracts::Money) -> Result<Money, ConversionError> {
    let currency = Currency::parse(amount.currency().as_str())?;
    Ok(Money::new(amount.amount_minor(), currency)?)
}

fn contact(contact: &relance_contracts::InvoiceContact) -> InvoiceContact {
    InvoiceContact {
        first_name: contact.first_name.as_ref().map(ToString::to_string),
        last_name: contact.last_name.as_ref().map(ToString::to_string),
        email: contact.email.as_ref().map(ToString::to_string),
        phone: contact.phone.as_ref().map(ToString::to_string),
    }
}

fn text<T: ToString>(value: Option<&T>) -> Option<String> {
    value.map(ToString::to_string)
}

/// The domain event of a decoded billing event.
///
/// # Errors
/// [`ConversionError`] if a value checked by the contract is refused by the domain.
pub fn to_book_event(envelope: &Envelope<BillingEvent>) -> Result<BookEvent, ConversionError> {
    let invoice = |invoice_id: &relance_contracts::Id,
                   customer_id: &relance_contracts::Id,
                   revision: Option<relance_contracts::Revision>,
                   fact: InvoiceFact| {
        BookEvent::Invoice(InvoiceEvent {
            event_id: envelope.id.to_string(),
            tenant: envelope.tenant.to_string(),
            customer_id: customer_id.to_string(),
            invoice_id: invoice_id.to_string(),
            time: envelope.time,
            revision: revision.map(relance_contracts::Revision::get),
            fact,
        })
    };
    Ok(match &envelope.data {
        BillingEvent::InvoiceIssued(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            event.revision,
            InvoiceFact::Issued {
                number: event.number.to_string(),
                issued_on: event.issued_on,
                due_on: event.due_on,
                total: money(&event.total)?,
                order_reference: text(event.order_reference.as_ref()),
                payment_url: text(event.payment_url.as_ref()),
                contact: event.contact.as_ref().map(contact),
                description: text(event.description.as_ref()),
            },
        ),
        BillingEvent::InvoiceUpdated(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            event.revision,
            InvoiceFact::Updated {
                total: event.total.as_ref().map(money).transpose()?,
                due_on: event.due_on,
                contact: event.contact.as_ref().map(contact),
                order_reference: text(event.order_reference.as_ref()),
                payment_url: text(event.payment_url.as_ref()),
            },
        ),
        BillingEvent::InvoiceVoided(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            event.revision,
            InvoiceFact::Voided,
        ),
        BillingEvent::CreditNoteApplied(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            None,
            InvoiceFact::CreditApplied {
                credit_note_id: event.credit_note_id.to_string(),
                amount: money(&event.amount)?,
            },
        ),
        BillingEvent::InvoiceDisputed(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            None,
            InvoiceFact::Disputed {
                dispute_id: event.dispute_id.to_string(),
                resolved: event.status == DisputeStatus::Resolved,
                amount: event.amount.as_ref().map(money).transpose()?,
            },
        ),
        BillingEvent::PaymentSucceeded(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            None,
            InvoiceFact::PaymentSucceeded {
                payment_id: event.payment_id.to_string(),
                amount: money(&event.amount)?,
                paid_at: event.paid_at,
            },
        ),
        BillingEvent::PaymentFailed(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            None,
            InvoiceFact::PaymentFailed {
                payment_id: event.payment_id.to_string(),
                amount: money(&event.amount)?,
                failed_at: event.failed_at,
                failure_code: event.failure_code.to_string(),
                recurring: event.recurring,
                attempt: event.attempt,
                next_retry_at: event.next_retry_at,
            },
        ),
        BillingEvent::PaymentRefunded(event) => invoice(
            &event.invoice_id,
            &event.customer_id,
            None,
            InvoiceFact::Refunded {
                refund_id: event.refund_id.to_string(),
                payment_id: event.payment_id.to_string(),
                amount: money(&event.amount)?,
                kind: match event.kind {
                    RefundKind::Refund => relance_domain::RefundKind::Refund,
                    RefundKind::Chargeback => relance_domain::RefundKind::Chargeback,
                },
                refunded_at: event.refunded_at,
            },
        ),
        BillingEvent::CustomerUpserted(event) => customer(envelope, event),
    })
}

fn customer(envelope: &Envelope<BillingEvent>, event: &CustomerUpsertedV1) -> BookEvent {
    let segment = event.segment.clone().unwrap_or_default();
    BookEvent::Customer(CustomerEvent {
        event_id: envelope.id.to_string(),
        tenant: envelope.tenant.to_string(),
        customer_id: event.customer_id.to_string(),
        time: envelope.time,
        revision: event.revision.map(relance_contracts::Revision::get),
        profile: CustomerProfile {
            legal_name: event.legal_name.to_string(),
            contact: Contact {
                first_name: text(event.contact.first_name.as_ref()),
                last_name: text(event.contact.last_name.as_ref()),
                email: text(event.contact.email.as_ref()),
                phone: text(event.contact.phone.as_ref()),
            },
            locale: event.locale.to_string(),
            timezone: event.timezone.to_string(),
            country: event.country.to_string(),
            segment: Segment {
                vip: segment.vip.unwrap_or(false),
                risk_level: segment.risk_level.map(|risk| match risk {
                    RiskLevel::Low => relance_domain::RiskLevel::Low,
                    RiskLevel::Medium => relance_domain::RiskLevel::Medium,
                    RiskLevel::High => relance_domain::RiskLevel::High,
                }),
                customer_since: segment.customer_since,
                tags: segment.tags.unwrap_or_default(),
                preferred_channel: segment.preferred_channel.map(|channel| match channel {
                    PreferredChannel::Email => relance_domain::PreferredChannel::Email,
                    PreferredChannel::Sms => relance_domain::PreferredChannel::Sms,
                    PreferredChannel::PhoneCall => relance_domain::PreferredChannel::PhoneCall,
                    PreferredChannel::Letter => relance_domain::PreferredChannel::Letter,
                }),
            },
        },
    })
}
