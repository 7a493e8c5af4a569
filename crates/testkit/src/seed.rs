//! Putting invoices and customers straight into a test database, as the ingestor would have.

use chrono::{DateTime, Utc};
use relance_config::Settings;
use relance_domain::{Book, BookEvent, CustomerEvent, InvoiceEvent};

/// Applies `events` through the domain, writes the invoices and customers, and marks every
/// invoice for planning at `now`. Returns the book.
pub async fn seed(settings: &Settings, events: Vec<BookEvent>, now: DateTime<Utc>) -> Book {
    let today = now.date_naive();
    let mut book = Book::default();
    for event in &events {
        book.apply(event, today)
            .unwrap_or_else(|rejection| panic!("seed event refused: {rejection}"));
    }
    let pool = relance_storage::lazy_pool(&settings.database, "testkit-seed");
    let mut connection = pool.acquire().await.expect("connection");
    let invoice_rows: Vec<_> = book
        .invoices
        .values()
        .map(|invoice| (invoice, invoice.view(today)))
        .collect();
    for chunk in invoice_rows.chunks(2000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(invoice, view)| (*invoice, view))
            .collect();
        relance_storage::invoices::upsert(&mut connection, &rows, today)
            .await
            .expect("invoices");
    }
    let behaviours: Vec<_> = book
        .customers
        .values()
        .map(|customer| (customer, book.behaviour_of(&customer.customer_id, today)))
        .collect();
    for chunk in behaviours.chunks(2000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(customer, behaviour)| (*customer, behaviour))
            .collect();
        relance_storage::customers::upsert(&mut connection, &rows)
            .await
            .expect("customers");
    }
    let ids: Vec<String> = book.invoices.keys().cloned().collect();
    relance_storage::scheduling::mark_for_replanning(&mut connection, &ids, now)
        .await
        .expect("mark");
    book
}

/// An invoice event shortcut.
pub fn invoice_event(
    tenant: &str,
    customer_id: &str,
    invoice_id: &str,
    id: &str,
    time: DateTime<Utc>,
    fact: relance_domain::InvoiceFact,
) -> BookEvent {
    BookEvent::Invoice(InvoiceEvent {
        event_id: id.to_string(),
        tenant: tenant.to_string(),
        customer_id: customer_id.to_string(),
        invoice_id: invoice_id.to_string(),
        time,
        revision: None,
        fact,
    })
}

/// A customer profile event for a customer in France (Europe/Paris).
pub fn customer_event(
    tenant: &str,
    customer_id: &str,
    vip: bool,
    time: DateTime<Utc>,
) -> BookEvent {
    BookEvent::Customer(CustomerEvent {
        event_id: format!("profile-{customer_id}"),
        tenant: tenant.to_string(),
        customer_id: customer_id.to_string(),
        time,
        revision: Some(1),
        profile: relance_domain::CustomerProfile {
            legal_name: format!("Customer {customer_id}"),
            contact: relance_domain::Contact {
                first_name: Some("Camille".into()),
                last_name: Some("Durand".into()),
                email: Some(format!("{customer_id}@example.com")),
                phone: Some("+33612345678".into()),
            },
            locale: "fr-FR".into(),
            timezone: "Europe/Paris".into(),
            country: "FR".into(),
            segment: relance_domain::Segment {
                vip,
                ..relance_domain::Segment::default()
            },
        },
    })
}
