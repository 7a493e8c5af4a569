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
            .map(|(invoice, view)| (*invoice, view, today))
            .collect();
        relance_storage::invoices::upsert(&mut connection, &rows, Some(now))
            .await
            .expect("invoices");
    }
    let behaviours: Vec<_> = book
        .customers
        .values()
        .map(|customer| {
            // Seeded customers are new: their sums start from nothing.
            (
                customer,
                relance_domain::BehaviourChange::from_nothing_to(&book.behaviour_of(
                    &customer.tenant,
                    &customer.customer_id,
                    today,
                )),
            )
        })
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
    customer_event_in(tenant, customer_id, vip, time, "Europe/Paris")
}

/// A customer profile event for a customer living in time zone `timezone`.
pub fn customer_event_in(
    tenant: &str,
    customer_id: &str,
    vip: bool,
    time: DateTime<Utc>,
    timezone: &str,
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
            timezone: timezone.into(),
            country: "FR".into(),
            segment: relance_domain::Segment {
                vip,
                ..relance_domain::Segment::default()
            },
        },
    })
}

/// An open invoice of `amount_minor` EUR, issued on 2 November 2026 and due on 2 December 2026
/// (number `F-<invoice>`, order `PO-77812`, a payment page), and its customer in France.
pub async fn seed_open_invoice(
    settings: &Settings,
    tenant: &str,
    customer: &str,
    invoice: &str,
    amount_minor: i64,
) {
    let now = chrono::Utc::now();
    seed(
        settings,
        vec![
            customer_event(tenant, customer, false, now),
            invoice_event(
                tenant,
                customer,
                invoice,
                &format!("issued-{invoice}"),
                now,
                relance_domain::InvoiceFact::Issued {
                    number: format!("F-{invoice}"),
                    issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("date"),
                    due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).expect("date"),
                    total: relance_domain::Money::new(
                        amount_minor,
                        relance_domain::Currency::parse("EUR").expect("EUR"),
                    )
                    .expect("amount"),
                    order_reference: Some("PO-77812".into()),
                    payment_url: Some(format!("https://pay.acme.example/i/{invoice}")),
                    contact: None,
                    description: None,
                },
            ),
        ],
        now,
    )
    .await;
}

/// A `relance.reminder.send` command (the contract's example) for `invoice` of `customer` of
/// `tenant`, to `email`, for `amount_minor` EUR, with the `first_reminder` template.
pub fn reminder_command(
    tenant: &str,
    customer: &str,
    invoice: &str,
    email: &str,
    amount_minor: i64,
) -> serde_json::Value {
    use serde_json::json;
    let text = std::fs::read_to_string(
        crate::repo_root().join("proto/examples/relance.reminder.send.v1.json"),
    )
    .expect("example");
    let mut command: serde_json::Value = serde_json::from_str(&text).expect("example JSON");
    command["id"] = json!(uuid::Uuid::new_v4().to_string());
    command["tenant"] = json!(tenant);
    command["subject"] = json!(invoice);
    command["partitionkey"] = json!(customer);
    let data = command["data"].as_object_mut().expect("data");
    data.insert(
        "reminder_id".into(),
        json!(uuid::Uuid::new_v4().to_string()),
    );
    data.insert(
        "idempotency_key".into(),
        json!(format!("{tenant}:{invoice}:first_reminder:1")),
    );
    data.insert("customer_id".into(), json!(customer));
    data.insert("template".into(), json!({"id": "first_reminder"}));
    data.remove("payment_failure");
    data["recipient"]["email"] = json!(email);
    data["invoices"][0]["invoice_id"] = json!(invoice);
    data["invoices"][0]["number"] = json!(format!("F-{invoice}"));
    data["invoices"][0]["payment_url"] = json!(format!("https://pay.acme.example/i/{invoice}"));
    data["invoices"][0]["amount_due"] = json!({"amount_minor": amount_minor, "currency": "EUR"});
    data["invoices"][0]["total"] = json!({"amount_minor": amount_minor, "currency": "EUR"});
    command
}
