//! Every query of the repositories, against real PostgreSQL.

use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone, Utc};
use relance_domain::{
    apply_customer_event, apply_invoice_event, BehaviourChange, Contact, Currency, CustomerEvent,
    CustomerFacts, CustomerProfile, InvoiceEvent, InvoiceFact, Money, PaymentBehaviour, Segment,
};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::processed::{record_new_events, EventKey};
use relance_storage::{customers, invoices};
use sqlx::PgPool;

fn key(id: &str) -> EventKey {
    EventKey {
        payload_sha256: None,
        source: "/billing/acme".into(),
        id: id.into(),
        tenant: "acme".into(),
        event_type: "billing.invoice.issued".into(),
    }
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn only_events_not_seen_before_are_reported_new(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let first = record_new_events(&mut connection, "ingestor", &[&key("e1"), &key("e2")])
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let second = record_new_events(
        &mut connection,
        "ingestor",
        &[&key("e2"), &key("e3"), &key("e3")],
    )
    .await
    .unwrap();
    assert_eq!(
        second.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        vec!["e3".to_string()]
    );
    let other_consumer = record_new_events(&mut connection, "tracker", &[&key("e1")])
        .await
        .unwrap();
    assert_eq!(other_consumer.len(), 1, "each consumer has its own ledger");
}

fn record(topic: &str, payload: &str) -> OutboxRecord {
    OutboxRecord {
        topic: topic.into(),
        key: Some(vec![0xff, b'k']),
        payload: payload.as_bytes().to_vec(),
        headers: vec![
            ("content-type".into(), Some(b"application/json".to_vec())),
            ("empty".into(), None),
        ],
        ..OutboxRecord::default()
    }
}

/// Records for a topic the broker says is missing or not writable are held: a claim neither
/// takes nor reads them, however many there are, while the other topics' records behind them
/// go out; a record written for the topic meanwhile is held by the claim that meets it, never
/// returned; when the hold ends the whole topic is released and claimed again oldest first;
/// a publication ends the hold for good.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_held_topic_is_neither_claimed_nor_read_and_comes_back_in_order(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    let mut records: Vec<OutboxRecord> = (0..3_000)
        .map(|n| record("missing", &format!("m{n}")))
        .collect();
    records.push(record("fine", "f0"));
    outbox::enqueue(&mut connection, &records).await.unwrap();
    let first: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM outbox WHERE topic = 'missing' ORDER BY id LIMIT 2")
            .fetch_all(&mut *connection)
            .await
            .unwrap();
    let mut relay = pool.begin().await.unwrap();
    assert_eq!(
        outbox::last_topic_hold(&mut relay, &me, "missing")
            .await
            .unwrap(),
        None
    );
    let held = outbox::hold_topic(
        &mut relay,
        &me,
        "missing",
        30.0,
        &first,
        "Broker: Unknown topic",
    )
    .await
    .unwrap();
    assert_eq!(held, 3_000);
    relay.commit().await.unwrap();
    let tried: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT attempts, last_error FROM outbox WHERE topic = 'missing' ORDER BY id LIMIT 3",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    assert_eq!(
        tried,
        [
            (1, Some("Broker: Unknown topic".to_string())),
            (1, Some("Broker: Unknown topic".to_string())),
            (0, None)
        ]
    );
    // Written after the hold, between records of another topic: the held topic's one is
    // never returned, not even by the first claim after it was written.
    outbox::enqueue(
        &mut connection,
        &[
            record("fine", "f1"),
            record("missing", "m-late"),
            record("fine", "f2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(outbox::pending_count(&pool, &me).await.unwrap(), 3_004);

    let payloads = |claimed: &[outbox::PendingRecord]| {
        claimed
            .iter()
            .map(|pending| String::from_utf8(pending.record.payload.clone()).unwrap())
            .collect::<Vec<_>>()
    };
    // A connection of its own: the statistics read below are the claim's alone (PostgreSQL 15
    // counts, in those of the transaction, what the backend did before and has not flushed).
    use sqlx::{ConnectOptions, Connection};
    let mut fresh = pool.connect_options().connect().await.unwrap();
    sqlx::query(&format!("SET application_name = '{me}'"))
        .execute(&mut fresh)
        .await
        .unwrap();
    let mut relay = fresh.begin().await.unwrap();
    let claim = outbox::claim_pending(&mut relay, &me, 10).await.unwrap();
    assert_eq!(payloads(&claim.records), ["f0", "f1", "f2"]);
    assert!(claim.released.is_empty());
    assert_eq!(claim.known_holds, ["missing"]);
    let read: i64 = sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
         FROM pg_stat_xact_user_tables WHERE relname = 'outbox'",
    )
    .fetch_one(&mut *relay)
    .await
    .unwrap();
    assert!(
        read <= 100,
        "claiming past 3,001 held records read {read} rows of the outbox"
    );
    relay.commit().await.unwrap();
    let late_held: bool =
        sqlx::query_scalar("SELECT held_until IS NOT NULL FROM outbox WHERE payload = 'm-late'")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
    assert!(late_held, "the claim held the late record with its topic");

    // Failing again soon after: the relay reads the last hold to double it.
    let mut relay = pool.begin().await.unwrap();
    let last = outbox::last_topic_hold(&mut relay, &me, "missing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.seconds, 30.0);
    assert!((-31.0..-29.0).contains(&last.ended_seconds_ago), "{last:?}");
    relay.rollback().await.unwrap();

    // The hold ends (as ops end it by hand): the whole topic is released, oldest first.
    sqlx::query("UPDATE outbox_topic_holds SET held_until = now() WHERE topic = 'missing'")
        .execute(&mut *connection)
        .await
        .unwrap();
    let mut relay = pool.begin().await.unwrap();
    let claim = outbox::claim_pending(&mut relay, &me, 3).await.unwrap();
    assert_eq!(payloads(&claim.records), ["m0", "m1", "m2"]);
    assert_eq!(claim.released, ["missing"]);
    relay.commit().await.unwrap();
    let still_held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE held_until IS NOT NULL")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
    assert_eq!(still_held, 0);
    // Released, not forgotten: until a record of it is published, failing again doubles.
    let mut relay = pool.begin().await.unwrap();
    let claim = outbox::claim_pending(&mut relay, &me, 3).await.unwrap();
    assert!(claim.released.is_empty());
    assert_eq!(claim.known_holds, ["missing"]);
    assert!(outbox::last_topic_hold(&mut relay, &me, "missing")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        outbox::topics_accept(&mut relay, &me, &["missing", "fine"])
            .await
            .unwrap(),
        ["missing"]
    );
    assert_eq!(
        outbox::last_topic_hold(&mut relay, &me, "missing")
            .await
            .unwrap(),
        None
    );
    relay.commit().await.unwrap();
}

/// A claim that meets more records of a held topic than it may return holds them and claims
/// past them, so the round still carries other topics' records.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_holds_a_held_topics_new_records_and_claims_past_them(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    outbox::enqueue(&mut connection, &[record("missing", "m0")])
        .await
        .unwrap();
    let mut relay = pool.begin().await.unwrap();
    outbox::hold_topic(
        &mut relay,
        &me,
        "missing",
        30.0,
        &[],
        "Broker: Unknown topic",
    )
    .await
    .unwrap();
    relay.commit().await.unwrap();
    let mut late: Vec<OutboxRecord> = (0..25)
        .map(|n| record("missing", &format!("late{n}")))
        .collect();
    late.push(record("fine", "f0"));
    outbox::enqueue(&mut connection, &late).await.unwrap();
    let mut relay = pool.begin().await.unwrap();
    let claim = outbox::claim_pending(&mut relay, &me, 10).await.unwrap();
    let payloads: Vec<String> = claim
        .records
        .iter()
        .map(|pending| String::from_utf8(pending.record.payload.clone()).unwrap())
        .collect();
    assert_eq!(payloads, ["f0"]);
    relay.commit().await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE held_until IS NOT NULL")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(held, 26);
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn the_outbox_gives_records_back_in_order_to_one_relay_at_a_time(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    // Records belong to the service whose connection wrote them (its application name).
    let me: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    outbox::enqueue(
        &mut connection,
        &[record("a", "1"), record("b", "2"), record("a", "3")],
    )
    .await
    .unwrap();
    sqlx::query("SET application_name = 'relance-other'")
        .execute(&mut *connection)
        .await
        .unwrap();
    outbox::enqueue(&mut connection, &[record("a", "other service")])
        .await
        .unwrap();
    drop(connection);
    assert_eq!(outbox::pending_count(&pool, &me).await.unwrap(), 3);
    assert_eq!(
        outbox::pending_count(&pool, "relance-other").await.unwrap(),
        1
    );

    let mut relay = pool.begin().await.unwrap();
    let claimed = outbox::claim_pending(&mut relay, &me, 2)
        .await
        .unwrap()
        .records;
    assert_eq!(
        claimed
            .iter()
            .map(|pending| pending.record.payload.clone())
            .collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"2".to_vec()]
    );
    assert_eq!(
        claimed[0].record,
        record("a", "1"),
        "key and headers survive, bytes included"
    );

    // A second relay of the same service gets nothing while the first holds the lock; another
    // service's relay publishes its own records meanwhile.
    let mut other = pool.begin().await.unwrap();
    assert!(outbox::claim_pending(&mut other, &me, 10)
        .await
        .unwrap()
        .records
        .is_empty());
    other.rollback().await.unwrap();
    let mut other_service = pool.begin().await.unwrap();
    let theirs = outbox::claim_pending(&mut other_service, "relance-other", 10)
        .await
        .unwrap()
        .records;
    assert_eq!(theirs.len(), 1);
    other_service.rollback().await.unwrap();

    let ids: Vec<i64> = claimed.iter().map(|pending| pending.id).collect();
    outbox::mark_published(&mut relay, &ids).await.unwrap();
    relay.commit().await.unwrap();
    assert_eq!(outbox::pending_count(&pool, &me).await.unwrap(), 1);

    let mut relay = pool.begin().await.unwrap();
    let rest = outbox::claim_pending(&mut relay, &me, 10)
        .await
        .unwrap()
        .records;
    assert_eq!(rest.len(), 1);

    relay.rollback().await.unwrap();
    outbox::record_failure(&pool, rest[0].id, "broker down", false)
        .await
        .unwrap();
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE id = $1")
            .bind(rest[0].id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((attempts, error.as_deref()), (1, Some("broker down")));

    // A record the broker refuses for good is set aside: never claimed again.
    outbox::record_failure(&pool, rest[0].id, "MessageSizeTooLarge", true)
        .await
        .unwrap();
    assert_eq!(outbox::pending_count(&pool, &me).await.unwrap(), 0);
    let mut relay = pool.begin().await.unwrap();
    assert!(outbox::claim_pending(&mut relay, &me, 10)
        .await
        .unwrap()
        .records
        .is_empty());
    relay.rollback().await.unwrap();

    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '2 days' WHERE published_at IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(outbox::purge_published(&pool, 24).await.unwrap(), 2);
    assert_eq!(
        outbox::pending_count(&pool, "relance-other").await.unwrap(),
        1
    );

    // A relay that keeps nothing deletes what it published, and only that.
    let mut relay = pool.begin().await.unwrap();
    let theirs = outbox::claim_pending(&mut relay, "relance-other", 10)
        .await
        .unwrap()
        .records;
    outbox::delete_published(&mut relay, &[theirs[0].id])
        .await
        .unwrap();
    relay.commit().await.unwrap();
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec![rest[0].id], "only the record set aside is left");
}

fn invoice_event(id: &str, invoice_id: &str, customer_id: &str, fact: InvoiceFact) -> InvoiceEvent {
    InvoiceEvent {
        event_id: id.into(),
        tenant: "acme".into(),
        customer_id: customer_id.into(),
        invoice_id: invoice_id.into(),
        time: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
        revision: Some(1),
        fact,
    }
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// An outbox is empty most of the time, so PostgreSQL's statistics say it is: the claim must
/// not read a backlog to take the oldest few records of it (a relay catching up would then
/// read it again on every round).
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_reads_the_records_it_takes_not_the_whole_backlog(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    let backlog: Vec<OutboxRecord> = (0..3_000).map(|n| record("a", &n.to_string())).collect();
    outbox::enqueue(&mut connection, &backlog).await.unwrap();
    // A record written before records had producers goes with any relay, in its place.
    sqlx::query("UPDATE outbox SET producer = NULL WHERE id = (SELECT min(id) + 3 FROM outbox)")
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);

    let mut relay = pool.begin().await.unwrap();
    let claimed = outbox::claim_pending(&mut relay, &me, 10)
        .await
        .unwrap()
        .records;
    assert_eq!(
        claimed
            .iter()
            .map(|pending| String::from_utf8(pending.record.payload.clone()).unwrap())
            .collect::<Vec<_>>(),
        (0..10).map(|n| n.to_string()).collect::<Vec<_>>(),
        "the oldest ten, the one without a producer in its place"
    );
    let read: i64 = sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
         FROM pg_stat_xact_user_tables WHERE relname = 'outbox'",
    )
    .fetch_one(&mut *relay)
    .await
    .unwrap();
    assert!(
        read <= 100,
        "claiming 10 of 3,000 pending records read {read} rows of the outbox"
    );
    relay.rollback().await.unwrap();
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn invoices_round_trip_with_their_derived_state(pool: PgPool) {
    let issued = apply_invoice_event(
        None,
        &invoice_event(
            "e1",
            "inv_1",
            "cus_1",
            InvoiceFact::Issued {
                number: "F-1".into(),
                issued_on: day("2026-11-01"),
                due_on: day("2026-11-20"),
                total: eur(10_000),
                order_reference: None,
                payment_url: None,
                contact: None,
                description: None,
            },
        ),
    )
    .unwrap();
    let paid = apply_invoice_event(
        Some(&issued),
        &invoice_event(
            "e2",
            "inv_1",
            "cus_1",
            InvoiceFact::PaymentSucceeded {
                payment_id: "p1".into(),
                amount: eur(4_000),
                paid_at: Utc.with_ymd_and_hms(2026, 11, 5, 9, 0, 0).unwrap(),
            },
        ),
    )
    .unwrap();
    let other = apply_invoice_event(
        None,
        &invoice_event("e3", "inv_2", "cus_1", InvoiceFact::Voided),
    )
    .unwrap();
    let today = day("2026-11-25");
    let mut transaction = pool.begin().await.unwrap();
    invoices::upsert(
        &mut transaction,
        &[
            (&issued, &issued.view(today), today),
            (&other, &other.view(today), today),
        ],
        None,
    )
    .await
    .unwrap();
    invoices::upsert(&mut transaction, &[(&paid, &paid.view(today), today)], None)
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    let mut transaction = pool.begin().await.unwrap();
    let loaded = invoices::load_for_update(
        &mut transaction,
        &[
            relance_storage::scoped("acme", "inv_1"),
            relance_storage::scoped("acme", "inv_9"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[&relance_storage::scoped("acme", "inv_1")], paid);
    transaction.commit().await.unwrap();

    let (state, due, amount_due, net_paid): (String, NaiveDate, i64, i64) =
        sqlx::query_as("SELECT state, due_on, amount_due_minor, net_paid_minor FROM invoices WHERE invoice_id = 'inv_1'")
            .fetch_one(&pool).await.unwrap();
    assert_eq!(
        (state.as_str(), due, amount_due, net_paid),
        ("partially_paid", day("2026-11-20"), 6_000, 4_000)
    );
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn customers_round_trip_with_profile_columns_and_behaviour(pool: PgPool) {
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
                    email: Some("c@durand.fr".into()),
                    phone: None,
                },
                locale: "fr-FR".into(),
                timezone: "Europe/Paris".into(),
                country: "FR".into(),
                segment: Segment {
                    vip: true,
                    tags: vec!["smb".into(), "bakery".into()],
                    ..Segment::default()
                },
            },
        },
    )
    .unwrap();
    let behaviour = BehaviourChange::default();
    let mut connection = pool.acquire().await.unwrap();
    customers::upsert(&mut connection, &[(&facts, &behaviour)])
        .await
        .unwrap();
    customers::upsert(&mut connection, &[(&facts, &behaviour)])
        .await
        .unwrap();
    let loaded: HashMap<_, _> =
        customers::load_for_update(&mut connection, &[relance_storage::scoped("acme", "cus_1")])
            .await
            .unwrap();
    assert_eq!(loaded[&relance_storage::scoped("acme", "cus_1")], facts);
    let (vip, tags, email): (bool, Vec<String>, Option<String>) =
        sqlx::query_as("SELECT vip, tags, email FROM customers WHERE customer_id = 'cus_1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(vip);
    assert_eq!(tags, vec!["smb".to_string(), "bakery".to_string()]);
    assert_eq!(email.as_deref(), Some("c@durand.fr"));
}

fn change(
    counts: [i64; 4],
    open_balance: &[(&str, i64)],
    lifetime_paid: &[(&str, i64)],
    earliest_issue: Option<&str>,
) -> BehaviourChange {
    let amounts = |pairs: &[(&str, i64)]| {
        pairs
            .iter()
            .map(|(code, amount)| (Currency::parse(*code).unwrap(), *amount))
            .collect()
    };
    BehaviourChange {
        paid_invoices: counts[0],
        paid_on_time: counts[1],
        total_days_late: counts[2],
        open_invoices: counts[3],
        open_balance: amounts(open_balance),
        lifetime_paid: amounts(lifetime_paid),
        earliest_issue: earliest_issue.map(day),
        withdrawn_issue: None,
    }
}

async fn stored_behaviour(pool: &PgPool) -> (PaymentBehaviour, Option<NaiveDate>) {
    let (paid_invoices, paid_on_time, total_days_late, open_invoices, open_balance, lifetime_paid, first_invoice_on): (i32, i32, i64, i32, serde_json::Value, serde_json::Value, Option<NaiveDate>) =
        sqlx::query_as("SELECT paid_invoices, paid_on_time, total_days_late, open_invoices, open_balance, lifetime_paid, first_invoice_on FROM customers WHERE customer_id = 'cus_1'")
            .fetch_one(pool).await.unwrap();
    let mut connection = pool.acquire().await.unwrap();
    let scheduled = relance_storage::scheduling::load_customers(
        &mut connection,
        &[relance_storage::scoped("acme", "cus_1")],
    )
    .await
    .unwrap();
    (
        PaymentBehaviour {
            paid_invoices: paid_invoices.try_into().unwrap(),
            paid_on_time: paid_on_time.try_into().unwrap(),
            total_days_late,
            open_invoices: open_invoices.try_into().unwrap(),
            open_balance: serde_json::from_value(open_balance).unwrap(),
            lifetime_paid: serde_json::from_value(lifetime_paid).unwrap(),
            first_invoice_on,
        },
        scheduled[0].customer_since,
    )
}

/// The database adds changes of payment behaviour as `BehaviourChange::applied_to` does, through
/// every writer (the ingestor's upsert of new customers, its write of locked customers' sums,
/// and the facts' update), and the scheduler reads the first
/// invoice's date as `customer_since` when the profile does not say it.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn behaviour_changes_add_up_in_the_database_as_in_the_domain(pool: PgPool) {
    let facts = CustomerFacts {
        tenant: "acme".into(),
        customer_id: "cus_1".into(),
        profile: None,
    };
    let changes = [
        change([0, 0, 0, 2], &[("EUR", 15_000)], &[], Some("2026-10-05")),
        change(
            [1, 0, 4, -1],
            &[("EUR", -10_000), ("USD", 700)],
            &[("EUR", 10_000)],
            Some("2026-09-30"),
        ),
        change([0, 0, 0, 0], &[], &[], None),
        change(
            [1, 1, 0, -1],
            &[("EUR", -5_000)],
            &[("EUR", 5_000), ("USD", 300)],
            Some("2026-11-02"),
        ),
        change([0, 0, 0, 0], &[], &[("USD", -300)], None),
    ];
    let mut expected = PaymentBehaviour::default();
    let mut connection = pool.acquire().await.unwrap();
    for (index, change) in changes.iter().enumerate() {
        let key = relance_storage::scoped("acme", "cus_1");
        match index % 3 {
            0 => customers::upsert(&mut connection, &[(&facts, change)])
                .await
                .unwrap(),
            1 => customers::add_behaviour_changes(&mut connection, &[(key, change.clone())])
                .await
                .unwrap(),
            _ => {
                let mut transaction = pool.begin().await.unwrap();
                let locked = customers::load_for_update_with_behaviour(
                    &mut transaction,
                    std::slice::from_ref(&key),
                )
                .await
                .unwrap();
                let (loaded_facts, stored) = &locked[&key];
                assert_eq!(loaded_facts, &facts);
                customers::write_behaviours(&mut transaction, &[(&key, change.applied_to(stored))])
                    .await
                    .unwrap();
                transaction.commit().await.unwrap();
            }
        }
        expected = change.applied_to(&expected);
        let (stored, customer_since) = stored_behaviour(&pool).await;
        assert_eq!(stored, expected, "after change {index}");
        assert_eq!(customer_since, expected.first_invoice_on);
    }
    // Nothing owed in euros and nothing left paid in dollars: those currencies are left out.
    assert_eq!(expected.open_balance.len(), 1);
    assert_eq!(expected.lifetime_paid.len(), 1);
    assert_eq!(expected.first_invoice_on, Some(day("2026-09-30")));
}

/// A per-currency sum past BIGINT saturates, in the database as in the domain, instead of
/// making every later write of the customer fail.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn per_currency_sums_saturate_in_the_database_as_in_the_domain(pool: PgPool) {
    let facts = CustomerFacts {
        tenant: "acme".into(),
        customer_id: "cus_1".into(),
        profile: None,
    };
    let huge = change([0, 0, 0, 1], &[("EUR", i64::MAX - 5)], &[], None);
    let more = change([0, 0, 0, 1], &[("EUR", 1_000)], &[], None);
    let mut connection = pool.acquire().await.unwrap();
    customers::upsert(&mut connection, &[(&facts, &huge)])
        .await
        .unwrap();
    customers::upsert(&mut connection, &[(&facts, &more)])
        .await
        .unwrap();
    let expected = more.applied_to(&huge.applied_to(&PaymentBehaviour::default()));
    assert_eq!(
        expected.open_balance.values().copied().collect::<Vec<_>>(),
        vec![i64::MAX]
    );
    let (stored, _) = stored_behaviour(&pool).await;
    assert_eq!(stored, expected);
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn cancelling_a_queued_command_never_waits_for_a_publication_in_flight(pool: PgPool) {
    let mut connection = pool.acquire().await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    let reminder = uuid::Uuid::new_v4();
    outbox::enqueue(
        &mut connection,
        &[OutboxRecord {
            cancel_keys: vec![outbox::cancel_key("acme", "inv_1")],
            reminder_id: Some(reminder),
            ..record("relance.reminders", "command")
        }],
    )
    .await
    .unwrap();
    // The relay has claimed the command and is sending it (its transaction is open).
    let mut relay = pool.begin().await.unwrap();
    let claimed = outbox::claim_pending(&mut relay, &me, 10)
        .await
        .unwrap()
        .records;
    assert_eq!(claimed.len(), 1);

    // A payment arrives: its transaction cancels the command at once.
    let mut payment = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *payment)
        .await
        .unwrap();
    let cancelled = outbox::cancel_pending_for_invoices(
        &mut payment,
        &[relance_storage::scoped("acme", "inv_1")],
    )
    .await
    .expect("the payment does not wait for the relay");
    assert_eq!(cancelled, vec![reminder]);
    payment.commit().await.unwrap();

    // The relay finishes; marking a cancelled record changes nothing.
    outbox::mark_published(&mut relay, &[claimed[0].id])
        .await
        .unwrap();
    relay.commit().await.unwrap();
    assert_eq!(outbox::pending_count(&pool, &me).await.unwrap(), 0);
}

/// Found by `make chaos` (issue 13): a payment deletes a command a relay has just published;
/// the reminder is cancelled only while no message of it may have left.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_reminder_whose_message_may_have_left_is_never_cancelled(pool: PgPool) {
    use relance_storage::scheduling;
    let mut connection = pool.acquire().await.unwrap();
    let mut reminders = Vec::new();
    for (name, delivery) in [
        ("no_delivery", None),
        ("pending", Some(("pending", false))),
        ("skipped", Some(("skipped", false))),
        ("in_flight", Some(("in_flight", false))),
        ("sent", Some(("sent", false))),
        ("unknown", Some(("unknown", false))),
        ("in_doubt", Some(("pending", true))),
    ] {
        let reminder = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids,
                                    kind, trigger, step_id, channel, segment, status,
                                    scheduled_for, policy_id, policy_version, topic, command)
             VALUES ($1, $2, 'acme', 'cus_1', ARRAY['inv_1'], 'message', '{}', 'courtesy',
                     'email', 'standard', 'queued', now(), 'default', 1, 'relance.reminders', '{}')",
        )
        .bind(reminder)
        .bind(name)
        .execute(&mut *connection)
        .await
        .unwrap();
        if let Some((status, reconcile)) = delivery {
            let pending = matches!(status, "pending" | "in_flight");
            sqlx::query(
                "INSERT INTO deliveries (delivery_id, idempotency_key, reminder_id, tenant,
                                         customer_id, invoice_ids, channel, segment, step_id,
                                         template, status, next_attempt_at, sending_since,
                                         command, source, received_at)
                 VALUES ($1, $2, $3, 'acme', 'cus_1', ARRAY['inv_1'], 'email', 'standard',
                         'courtesy', 'courtesy', $4, CASE WHEN $5 THEN now() END,
                         CASE WHEN $6 THEN now() END, '{}', '{}', now())",
            )
            .bind(uuid::Uuid::new_v4())
            .bind(name)
            .bind(reminder)
            .bind(status)
            .bind(pending)
            .bind(reconcile)
            .execute(&mut *connection)
            .await
            .unwrap();
        }
        reminders.push((name, reminder));
    }
    let ids: Vec<uuid::Uuid> = reminders.iter().map(|(_, id)| *id).collect();
    scheduling::cancel_reminders(
        &mut connection,
        &[relance_storage::scoped("acme", "inv_1")],
        &ids,
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
    )
    .await
    .unwrap();
    let cancelled = scheduling::cancelled_among(&mut connection, &ids)
        .await
        .unwrap();
    let names: Vec<&str> = reminders
        .iter()
        .filter(|(_, id)| cancelled.contains(id))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(names, ["no_delivery", "pending", "skipped"]);
}
