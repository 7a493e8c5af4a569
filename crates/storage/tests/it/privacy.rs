//! Issue 14, item 3: erasure removes a customer's contact data from every table relance keeps
//! and leaves the money; retention deletes what is past its period and nothing else.

use chrono::{Duration, TimeZone, Utc};
use relance_domain::{
    apply_customer_event, apply_invoice_event, Contact, Currency, CustomerEvent, CustomerProfile,
    InvoiceContact, InvoiceEvent, InvoiceFact, Money, Segment,
};
use relance_storage::retention::{purge, RetentionPeriods};
use relance_storage::{customers, erasure, invoices};
use sqlx::PgPool;

const PERSONAL: [&str; 5] = [
    "Camille",
    "Durand",
    "camille@durand.example",
    "+33612345678",
    "Mozilla/5.0 (Durand",
];

async fn seed_customer(pool: &PgPool) {
    let facts = apply_customer_event(
        None,
        &CustomerEvent {
            event_id: "c1".into(),
            tenant: "acme".into(),
            customer_id: "cus_1".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
            revision: None,
            profile: CustomerProfile {
                legal_name: "Durand SARL".into(),
                contact: Contact {
                    first_name: Some("Camille".into()),
                    last_name: Some("Durand".into()),
                    email: Some("camille@durand.example".into()),
                    phone: Some("+33612345678".into()),
                },
                locale: "fr-FR".into(),
                timezone: "Europe/Paris".into(),
                country: "FR".into(),
                segment: Segment::default(),
            },
        },
    )
    .unwrap();
    let invoice = apply_invoice_event(
        None,
        &InvoiceEvent {
            event_id: "i1".into(),
            tenant: "acme".into(),
            customer_id: "cus_1".into(),
            invoice_id: "inv_1".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
            revision: Some(1),
            fact: InvoiceFact::Issued {
                number: "F-1".into(),
                issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                due_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                total: Money::new(10_000, Currency::parse("EUR").unwrap()).unwrap(),
                order_reference: None,
                payment_url: None,
                contact: Some(InvoiceContact {
                    first_name: Some("Camille".into()),
                    last_name: Some("Durand".into()),
                    email: Some("camille@durand.example".into()),
                    phone: None,
                }),
                description: Some("Pain pour Camille Durand".into()),
            },
        },
    )
    .unwrap();
    let mut connection = pool.acquire().await.unwrap();
    customers::upsert(
        &mut connection,
        &[(&facts, &relance_domain::BehaviourChange::default())],
    )
    .await
    .unwrap();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    invoices::upsert(
        &mut connection,
        &[(&invoice, &invoice.view(today), today)],
        None,
    )
    .await
    .unwrap();
    let command = serde_json::json!({"data": {"reminder_id": "r", "recipient": {
        "first_name": "Camille", "last_name": "Durand", "email": "camille@durand.example",
        "phone": "+33612345678"}}});
    let reminder = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids, kind,
                                trigger, step_id, channel, segment, status, scheduled_for,
                                policy_id, policy_version, topic, command)
         VALUES ($1, 'k1', 'acme', 'cus_1', ARRAY['inv_1'], 'message', '{}', 'first', 'email',
                 'standard', 'queued', now(), 'default', 1, 'relance.reminders', $2)",
    )
    .bind(reminder)
    .bind(&command)
    .execute(pool)
    .await
    .unwrap();
    for (key, status) in [("d-sent", "sent"), ("d-pending", "pending")] {
        sqlx::query(
            "INSERT INTO deliveries (delivery_id, idempotency_key, reminder_id, tenant, customer_id,
                                     invoice_ids, channel, segment, step_id, template, status,
                                     next_attempt_at, recipient, subject, command, source,
                                     received_at)
             VALUES ($1, $2, $3, 'acme', 'cus_1', ARRAY['inv_1'], 'email', 'standard', 'first',
                     'first', $4, CASE WHEN $4 = 'pending' THEN now() END,
                     'camille@durand.example', 'Facture F-1, Camille Durand', $5, '{}', now())",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(key)
        .bind(reminder)
        .bind(status)
        .bind(&command)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO interactions (tenant, reminder_id, customer_id, invoice_id, kind,
                                   classification, source, user_agent, occurred_at)
         VALUES ('acme', $1, 'cus_1', 'inv_1', 'open', 'human', 'tracking_pixel',
                 'Mozilla/5.0 (Durand laptop)', now())",
    )
    .bind(reminder)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO customer_actions (action_id, tenant, customer_id, invoice_id, action,
                                       message, acted_at)
         VALUES ($1, 'acme', 'cus_1', 'inv_1', 'payment_plan_request',
                 'Camille Durand here, can I pay in three times?', now())",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(pool)
    .await
    .unwrap();
}

/// Rows of `table` about cus_1 whose text holds personal data.
async fn personal_rows(pool: &PgPool, table: &str) -> i64 {
    let mut found = 0;
    for personal in PERSONAL {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} t WHERE t.customer_id = 'cus_1'
               AND position(lower($1) in lower(t::text)) > 0"
        ))
        .bind(personal)
        .fetch_one(pool)
        .await
        .unwrap();
        found += count;
    }
    found
}

const TABLES: [&str; 6] = [
    "customers",
    "invoices",
    "reminders",
    "deliveries",
    "interactions",
    "customer_actions",
];

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn erasure_leaves_no_contact_data_and_keeps_the_money(pool: PgPool) {
    seed_customer(&pool).await;
    for table in TABLES {
        assert!(
            personal_rows(&pool, table).await > 0,
            "{table} holds the data before"
        );
    }
    let mut transaction = pool.begin().await.unwrap();
    assert!(
        erasure::erase_customer(&mut transaction, "globex", "cus_1", "dpo")
            .await
            .unwrap()
            .is_none()
    );
    let erased = erasure::erase_customer(&mut transaction, "acme", "cus_1", "dpo")
        .await
        .unwrap()
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        (erased.customers, erased.invoices, erased.deliveries),
        (1, 1, 2)
    );
    for table in TABLES {
        assert_eq!(
            personal_rows(&pool, table).await,
            0,
            "{table} still holds personal data"
        );
    }
    // The records still read, with the money intact; dunning is held for good.
    let mut connection = pool.acquire().await.unwrap();
    let customer =
        customers::load_for_update(&mut connection, &[relance_storage::scoped("acme", "cus_1")])
            .await
            .unwrap();
    let profile = &customer[&relance_storage::scoped("acme", "cus_1")]
        .profile
        .as_ref()
        .unwrap()
        .value;
    assert_eq!(profile.contact, Contact::default());
    let invoice =
        invoices::load_for_update(&mut connection, &[relance_storage::scoped("acme", "inv_1")])
            .await
            .unwrap();
    assert_eq!(
        invoice[&relance_storage::scoped("acme", "inv_1")]
            .total
            .as_ref()
            .unwrap()
            .value
            .amount_minor,
        10_000
    );
    let (held, reason): (bool, Option<String>) =
        sqlx::query_as("SELECT held, hold_reason FROM customers WHERE customer_id = 'cus_1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((held, reason.as_deref()), (true, Some("erased")));
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'in_flight')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 0, "nothing left to send to an erased customer");
}

/// Found by review: the invoices' update matched on the invoice id alone, so erasing acme's
/// customer copied acme's invoice (tenant, customer, amounts) over another tenant's invoice of
/// the same number.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn erasure_leaves_another_tenants_invoice_of_the_same_id_alone(pool: PgPool) {
    seed_customer(&pool).await;
    let theirs = apply_invoice_event(
        None,
        &InvoiceEvent {
            event_id: "g1".into(),
            tenant: "globex".into(),
            customer_id: "cus_9".into(),
            invoice_id: "inv_1".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
            revision: Some(1),
            fact: InvoiceFact::Issued {
                number: "G-1".into(),
                issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
                due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                total: Money::new(5_000, Currency::parse("USD").unwrap()).unwrap(),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: Some("Globex's own".into()),
            },
        },
    )
    .unwrap();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    let mut connection = pool.acquire().await.unwrap();
    invoices::upsert(
        &mut connection,
        &[(&theirs, &theirs.view(today), today)],
        None,
    )
    .await
    .unwrap();
    let mut transaction = pool.begin().await.unwrap();
    let erased = erasure::erase_customer(&mut transaction, "acme", "cus_1", "dpo")
        .await
        .unwrap()
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(erased.invoices, 1, "acme's invoice only");
    let key = relance_storage::scoped("globex", "inv_1");
    let stored = invoices::load_for_update(&mut connection, std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(stored[&key], theirs, "globex's invoice is as it was");
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn retention_deletes_what_is_past_its_period_and_nothing_else(pool: PgPool) {
    seed_customer(&pool).await;
    let now = Utc::now();
    let long_ago = now - Duration::days(1_000);
    // The finished delivery and the interaction are old; the pending delivery is old too but
    // not finished: it stays.
    sqlx::query(
        "UPDATE deliveries SET finished_at = $1, updated_at = $1 WHERE idempotency_key = 'd-sent'",
    )
    .bind(long_ago)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE deliveries SET updated_at = $1 WHERE idempotency_key = 'd-pending'")
        .bind(long_ago)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, provider)
         SELECT delivery_id, 1, $1, 'postmark' FROM deliveries WHERE idempotency_key = 'd-sent'",
    )
    .bind(long_ago)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE interactions SET occurred_at = $1")
        .bind(long_ago)
        .execute(&pool)
        .await
        .unwrap();
    for (id, at) in [("old", long_ago), ("new", now)] {
        sqlx::query(
            "INSERT INTO processed_events (consumer, event_source, event_id, tenant, event_type, processed_at)
             VALUES ('ingestor', '/billing/acme', $1, 'acme', 'billing.invoice.issued', $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO dead_letters (service, reason, detail, source_topic, source_partition,
                                       source_offset, original_sha256, failed_at)
             VALUES ('ingestor', 'invalid_json', $1, 'billing.invoices', 0, 0, 'x', $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    let periods = RetentionPeriods {
        deliveries_days: 730,
        interactions_days: 395,
        processed_events_days: 90,
        dead_letters_days: 180,
    };
    // A simulated clock far ahead ages nothing the database stamped beyond its own time.
    let purged = purge(&pool, &periods, now + Duration::days(10_000), 1)
        .await
        .unwrap();
    assert_eq!(
        (
            purged.deliveries,
            purged.delivery_attempts,
            purged.interactions,
            purged.processed_events,
            purged.dead_letters
        ),
        (1, 1, 1, 1, 1)
    );
    let again = purge(&pool, &periods, now, 1000).await.unwrap();
    assert_eq!(again.total(), 0);
    let left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM processed_events),
                (SELECT count(*) FROM dead_letters)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        (1, 1, 1),
        "the pending delivery and the recent rows stay"
    );
}
