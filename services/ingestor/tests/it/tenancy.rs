//! Ids are each tenant's own: two billing entities numbering an invoice and a customer alike
//! never meet, whatever arrives first.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{TestIngestor, World};
use crate::simulator::envelope;

fn issued(tenant: &str, total: i64, currency: &str) -> Value {
    envelope(
        "billing.invoice.issued",
        &format!("issued-{tenant}"),
        tenant,
        "cus_1",
        chrono::Utc::now(),
        json!({
            "invoice_id": "F-2026-0001", "customer_id": "cus_1", "number": "F-2026-0001",
            "issued_on": "2026-11-01", "due_on": "2026-12-01",
            "total": {"amount_minor": total, "currency": currency}
        }),
    )
}

fn paid(tenant: &str, amount: i64, currency: &str) -> Value {
    envelope(
        "billing.payment.succeeded",
        &format!("paid-{tenant}"),
        tenant,
        "cus_1",
        chrono::Utc::now(),
        json!({
            "payment_id": "pay-1", "invoice_id": "F-2026-0001", "customer_id": "cus_1",
            "amount": {"amount_minor": amount, "currency": currency},
            "paid_at": "2026-11-05T10:00:00Z"
        }),
    )
}

fn profile(tenant: &str, email: &str) -> Value {
    envelope(
        "billing.customer.upserted",
        &format!("profile-{tenant}"),
        tenant,
        "cus_1",
        chrono::Utc::now(),
        json!({
            "customer_id": "cus_1", "legal_name": format!("Client {tenant}"),
            "contact": {"email": email},
            "locale": "fr-FR", "timezone": "Europe/Paris", "country": "FR"
        }),
    )
}

#[tokio::test]
async fn an_early_event_of_one_tenant_never_squats_another_tenants_invoice_or_customer() {
    let ingestor = TestIngestor::spawn("tenancy").await;
    let world: &World = &ingestor.world;
    let topics = world.settings.kafka.topics.clone();
    let publish = |topic: String, value: Value| async move {
        world
            .publish_raw(&topic, b"cus_1", &serde_json::to_vec(&value).unwrap())
            .await;
    };
    // globex's payment comes before its invoice, and before acme's invoice of the same number
    // and customer id: it once made the invoice globex's, and acme's was dead-lettered
    // `tenant_mismatch` and never dunned.
    publish(topics.payments.clone(), paid("globex", 1_000, "USD")).await;
    world.wait_processed(1, Duration::from_secs(30)).await;
    publish(topics.invoices.clone(), issued("acme", 10_000, "EUR")).await;
    publish(topics.payments.clone(), paid("acme", 2_500, "EUR")).await;
    publish(topics.invoices.clone(), issued("globex", 5_000, "USD")).await;
    publish(
        topics.customers.clone(),
        profile("acme", "compta@acme-client.example"),
    )
    .await;
    publish(
        topics.customers.clone(),
        profile("globex", "ap@globex-client.example"),
    )
    .await;
    world.wait_processed(6, Duration::from_secs(60)).await;

    let invoices = world.invoices_by_tenant().await;
    assert_eq!(invoices.len(), 2, "one invoice per tenant: {invoices:?}");
    let acme = &invoices[&("acme".to_string(), "F-2026-0001".to_string())];
    assert_eq!(acme.0.tenant, "acme");
    assert_eq!(acme.1.amount_due_minor, 7_500, "acme's own payment only");
    assert_ne!(acme.1.state, "awaiting_invoice");
    let globex = &invoices[&("globex".to_string(), "F-2026-0001".to_string())];
    assert_eq!(globex.0.tenant, "globex");
    assert_eq!(
        globex.1.amount_due_minor, 4_000,
        "globex's own payment only"
    );

    let customers = world.customers_by_tenant().await;
    assert_eq!(customers.len(), 2, "one customer per tenant");
    for (tenant, email) in [
        ("acme", "compta@acme-client.example"),
        ("globex", "ap@globex-client.example"),
    ] {
        let (facts, behaviour) = &customers[&(tenant.to_string(), "cus_1".to_string())];
        assert_eq!(facts.tenant, tenant);
        let stored = facts
            .profile
            .as_ref()
            .expect("profile")
            .value
            .contact
            .email
            .clone();
        assert_eq!(stored.as_deref(), Some(email), "{tenant}'s own profile");
        assert_eq!(
            behaviour.open_invoices, 1,
            "{tenant} sees its own invoice only"
        );
    }

    let metrics = World::metrics_text(ingestor.ops).await;
    let dead_lettered: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("relance_ingest_dead_lettered_total{"))
        .filter(|line| !line.ends_with(" 0"))
        .collect();
    assert!(
        dead_lettered.is_empty(),
        "nothing dead-lettered: {dead_lettered:?}"
    );
    ingestor.stop().await;
}
