//! The policy: parsing and validation, readable scenarios, and properties of the evaluation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // Test code.

mod parsing;
mod properties;
mod scenarios;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use relance_domain::{apply_invoice_event, Currency, Invoice, InvoiceEvent, InvoiceFact, Money};
use relance_policy::{parse_policy, CustomerSnapshot, Policy};

pub fn default_policy() -> Policy {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/policies/default.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    parse_policy("config/policies/default.yaml", &text).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn customer(id: &str) -> CustomerSnapshot {
    CustomerSnapshot {
        customer_id: id.into(),
        country: Some("FR".into()),
        timezone: Some("Europe/Paris".into()),
        ..CustomerSnapshot::default()
    }
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

pub fn invoice_event(id: &str, invoice_id: &str, fact: InvoiceFact) -> InvoiceEvent {
    InvoiceEvent {
        event_id: id.into(),
        tenant: "acme".into(),
        customer_id: "cus_1".into(),
        invoice_id: invoice_id.into(),
        time: Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap(),
        revision: None,
        fact,
    }
}

/// An invoice of `total` cents due on `due_on`.
pub fn invoice(invoice_id: &str, total: i64, due_on: &str) -> Invoice {
    apply_invoice_event(
        None,
        &invoice_event(
            &format!("issued-{invoice_id}"),
            invoice_id,
            InvoiceFact::Issued {
                number: format!("F-{invoice_id}"),
                issued_on: date("2026-10-01"),
                due_on: date(due_on),
                total: eur(total),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: None,
            },
        ),
    )
    .unwrap()
}

pub fn with(invoice: &Invoice, id: &str, fact: InvoiceFact) -> Invoice {
    apply_invoice_event(Some(invoice), &invoice_event(id, &invoice.invoice_id, fact)).unwrap()
}

/// The timeline of one invoice of `customer`, with no reminder before (the simulator the
/// scheduler shares).
pub fn simulate_one(
    policy: &Policy,
    customer: &CustomerSnapshot,
    invoice: &Invoice,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<relance_policy::TimelineEntry> {
    relance_policy::simulate(
        policy,
        relance_policy::commands::CustomerContext {
            tenant: "acme",
            customer_id: &invoice.customer_id,
            facts: None,
        },
        customer,
        std::slice::from_ref(invoice),
        vec![],
        from,
        until,
    )
    .unwrap()
}
