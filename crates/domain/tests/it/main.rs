//! The dunning domain: scenarios people can read, and properties over generated histories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // Test code: a panic is a failed test.

mod customers;
mod properties;
mod scenarios;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use relance_domain::{apply_invoice_event, Currency, Invoice, InvoiceEvent, InvoiceFact, Money};

pub fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("EUR").unwrap()).unwrap()
}

pub fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("USD").unwrap()).unwrap()
}

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

pub fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

/// An event about invoice `inv_1` of customer `cus_1` of tenant `acme`.
pub fn event(id: &str, time: DateTime<Utc>, fact: InvoiceFact) -> InvoiceEvent {
    InvoiceEvent {
        event_id: id.to_string(),
        tenant: "acme".into(),
        customer_id: "cus_1".into(),
        invoice_id: "inv_1".into(),
        time,
        revision: None,
        fact,
    }
}

pub fn issued(total: Money, due_on: &str) -> InvoiceFact {
    InvoiceFact::Issued {
        number: "F-1".into(),
        issued_on: date("2026-11-01"),
        due_on: date(due_on),
        total,
        order_reference: Some("PO-1".into()),
        payment_url: None,
        contact: None,
        description: None,
    }
}

/// Applies events in order, panicking on a rejection.
pub fn replay(events: &[InvoiceEvent]) -> Invoice {
    let mut invoice: Option<Invoice> = None;
    for event in events {
        invoice = Some(
            apply_invoice_event(invoice.as_ref(), event)
                .unwrap_or_else(|rejection| panic!("{rejection}")),
        );
    }
    invoice.expect("at least one event")
}
