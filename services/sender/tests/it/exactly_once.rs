//! Every reminder exactly once, never after its invoice's payment committed: under two
//! replicas and a lease shorter than a slow provider's round, a rate-limited provider racing a
//! payment, a provider outage, and a sender stopped between attempts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relance_testkit::wait_for;

use crate::helpers::{
    command, fresh_settings, ingest, payment_record, pool, postmark_env, publish, seed_invoice,
    sendgrid_env, settled, spawn_sender_with, FakePostmark, FakeSendGrid,
};

/// `postmark_env` with owned keys, then `extra` (later keys win).
fn env_with(uri: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = postmark_env(uri)
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    env.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_string(), (*value).to_string())),
    );
    env
}

fn statuses(rows: &[crate::helpers::Row]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.status.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn two_replicas_with_a_lease_shorter_than_a_slow_providers_round_never_send_twice() {
    const SLOW: usize = 24;
    const FAST: usize = 10;
    let settings = fresh_settings("lease").await;
    let slow = FakeSendGrid {
        delay: Duration::from_millis(1000),
        ..FakeSendGrid::default()
    };
    let slow_server = slow.clone().start().await;
    let fast = FakePostmark::default();
    let fast_server = fast.clone().start().await;
    let mut commands = Vec::new();
    for index in 0..SLOW {
        let (customer, invoice) = (format!("cus_slow_{index}"), format!("inv_slow_{index}"));
        seed_invoice(&settings, &customer, &invoice).await;
        commands.push(command(
            &customer,
            &invoice,
            &format!("slow{index}@example.fr"),
        ));
    }
    for index in 0..FAST {
        let (customer, invoice) = (format!("cus_fast_{index}"), format!("inv_fast_{index}"));
        relance_testkit::seed_open_invoice(&settings, "beta", &customer, &invoice, 73_456).await;
        commands.push(relance_testkit::reminder_command(
            "beta",
            &customer,
            &invoice,
            &format!("fast{index}@example.fr"),
            73_456,
        ));
    }
    publish(&settings, &commands).await;
    // Tenant acme sends through a slow SendGrid (1 s a message), tenant beta through Postmark;
    // a dispatcher's claim lasts 7 s, less than the slow provider's round (24 messages, 4 at a
    // time: 6 s of waves, and a wave starts only while its timeout still fits in the lease).
    // The timeout leaves 1.5 s beyond the delay: with 0.5 s, a CI machine running eight tests
    // on two cores let answers arrive late, and a timed-out request is rightly in doubt.
    let mut env = env_with(
        &fast_server.uri(),
        &[
            ("RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER", "a_slow"),
            ("RELANCE__SENDER__TENANTS__BETA__EMAIL_PROVIDER", "postmark"),
            ("RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS", "1500"),
            ("RELANCE__SENDER__LEASE_MS", "7000"),
        ],
    );
    env.extend(sendgrid_env("a_slow", &slow_server.uri(), 2500));
    let mut first = spawn_sender_with(&settings, &env).await;
    wait_for(
        Duration::from_secs(30),
        "the slow provider's first request",
        || async { (!slow.arrivals.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let mut second = spawn_sender_with(&settings, &env).await;

    let rows = settled(&pool(&settings), SLOW + FAST, Duration::from_secs(120)).await;
    assert_eq!(
        statuses(&rows),
        BTreeMap::from([("sent".to_string(), SLOW + FAST)]),
        "nothing was in doubt, so nothing is handed to a person: {rows:?}"
    );
    let slow_counts = slow.accepted_counts();
    assert_eq!(slow_counts.len(), SLOW, "every slow reminder went out");
    assert!(
        slow_counts.values().all(|count| *count == 1),
        "none twice through the slow provider: {slow_counts:?}"
    );
    let fast_counts = fast.accepted_counts();
    assert_eq!(fast_counts.len(), FAST, "every fast reminder went out");
    assert!(
        fast_counts.values().all(|count| *count == 1),
        "none twice through Postmark: {fast_counts:?}"
    );
    first.signal_and_wait("TERM", Duration::from_secs(20)).await;
    second
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_rate_limited_provider_keeps_its_rate_and_nothing_goes_whose_payment_committed_first() {
    const COUNT: usize = 16;
    const RATE: f64 = 1.0;
    let settings = fresh_settings("race").await;
    let fake = FakePostmark::default();
    let server = fake.clone().start().await;
    let mut commands = Vec::new();
    for index in 0..COUNT {
        let (customer, invoice) = (format!("cus_race_{index}"), format!("inv_race_{index}"));
        seed_invoice(&settings, &customer, &invoice).await;
        commands.push(command(
            &customer,
            &invoice,
            &format!("race{index}@example.fr"),
        ));
    }
    publish(&settings, &commands).await;
    let env = env_with(
        &server.uri(),
        &[("RELANCE__SENDER__PROVIDERS__POSTMARK__RATE_PER_SECOND", "1")],
    );
    let mut sender = spawn_sender_with(&settings, &env).await;
    wait_for(Duration::from_secs(30), "a first message", || async {
        (!fake.accepted.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // The billing system reports every invoice paid; the ingestor commits the payments.
    let payments: Vec<_> = (0..COUNT)
        .map(|index| {
            payment_record(
                &settings,
                &format!("inv_race_{index}"),
                &format!("cus_race_{index}"),
            )
        })
        .collect();
    ingest(&settings, &payments).await;
    let paid_at = chrono::Utc::now();

    let rows = settled(&pool(&settings), COUNT, Duration::from_secs(60)).await;
    let late: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT d.idempotency_key, a.started_at FROM deliveries d
         JOIN delivery_attempts a USING (delivery_id)
         WHERE d.status = 'sent' AND a.started_at >= $1",
    )
    .bind(paid_at)
    .fetch_all(&pool(&settings))
    .await
    .unwrap();
    assert!(
        late.is_empty(),
        "messages whose attempt was recorded after the payment committed: {late:?}"
    );
    let paid_skips = rows
        .iter()
        .filter(|row| row.skip_reason.as_deref() == Some("invoice_paid"))
        .count();
    // However long the payments took to commit, what had not gone by then was stopped.
    assert!(
        paid_skips >= 1,
        "the payments stopped what had not gone yet: {rows:?}"
    );
    let sent = rows.iter().filter(|row| row.status == "sent").count();
    assert_eq!(sent + paid_skips, COUNT, "{rows:?}");

    // No faster than the rate: at most a second's worth in one request, and between any two
    // messages no more than the bucket (one second's worth) plus what refilled meanwhile.
    let arrivals = fake.arrivals.lock().unwrap().clone();
    assert!(
        arrivals
            .iter()
            .all(|(_, messages)| *messages <= RATE as usize),
        "{arrivals:?}"
    );
    let times: Vec<Instant> = arrivals
        .iter()
        .flat_map(|(at, messages)| std::iter::repeat_n(*at, *messages))
        .collect();
    for (first, earlier) in times.iter().enumerate() {
        for (offset, later) in times[first..].iter().enumerate() {
            let allowed = RATE + RATE * later.duration_since(*earlier).as_secs_f64() + 0.5;
            assert!(
                (offset + 1) as f64 <= allowed,
                "{} messages in {:?}",
                offset + 1,
                later.duration_since(*earlier)
            );
        }
    }
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn during_an_outage_each_half_open_trial_carries_one_message_and_waiting_spends_no_attempt() {
    const COUNT: usize = 20;
    let settings = fresh_settings("outage").await;
    let fake = FakePostmark {
        outage: Some(Duration::from_secs(6)),
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    let mut commands = Vec::new();
    for index in 0..COUNT {
        let (customer, invoice) = (format!("cus_out_{index}"), format!("inv_out_{index}"));
        seed_invoice(&settings, &customer, &invoice).await;
        commands.push(command(
            &customer,
            &invoice,
            &format!("out{index}@example.fr"),
        ));
    }
    publish(&settings, &commands).await;
    let env = env_with(
        &server.uri(),
        &[
            ("RELANCE__SENDER__BREAKER_THRESHOLD", "2"),
            ("RELANCE__SENDER__BREAKER_COOLDOWN_MS", "1000"),
            ("RELANCE__SENDER__BACKOFF_INITIAL_MS", "100"),
            ("RELANCE__SENDER__BACKOFF_MAX_MS", "200"),
        ],
    );
    let mut sender = spawn_sender_with(&settings, &env).await;

    let rows = settled(&pool(&settings), COUNT, Duration::from_secs(60)).await;
    assert_eq!(
        statuses(&rows),
        BTreeMap::from([("sent".to_string(), COUNT)]),
        "an outage delays reminders, it loses none: {rows:?}"
    );
    let back_at = fake.down_until.lock().unwrap().expect("the outage began");
    let arrivals = fake.arrivals.lock().unwrap().clone();
    let during: Vec<usize> = arrivals
        .iter()
        .filter(|(at, _)| *at < back_at)
        .map(|(_, messages)| *messages)
        .collect();
    assert!(during.len() >= 4, "the breaker tried again: {during:?}");
    assert!(
        during[2..].iter().all(|messages| *messages == 1),
        "after two failures the circuit opened; each half-open trial carried one message: {during:?}"
    );
    // Every attempt counted is a message the provider received: none was spent waiting.
    let attempts: i64 = rows.iter().map(|row| i64::from(row.attempts)).sum();
    let messages: usize = arrivals.iter().map(|(_, messages)| messages).sum();
    assert_eq!(attempts, messages as i64, "{rows:?} {arrivals:?}");
    let most = rows.iter().map(|row| row.attempts).max().unwrap_or(0);
    assert!(
        most <= 4,
        "no reminder burnt its attempts on trials: {most}"
    );
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_sender_stopped_between_a_transient_failure_and_the_next_attempt_sends_it_without_asking_a_person(
) {
    let settings = fresh_settings("between").await;
    let fake = FakeSendGrid {
        fail_first: std::sync::Arc::new(std::sync::Mutex::new(1)),
        ..FakeSendGrid::default()
    };
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_between", "inv_between").await;
    publish(
        &settings,
        &[command("cus_between", "inv_between", "between@example.fr")],
    )
    .await;
    let mut env = sendgrid_env("sendgrid", &server.uri(), 1000);
    env.push((
        "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER".into(),
        "sendgrid".into(),
    ));
    let mut sender = spawn_sender_with(&settings, &env).await;
    let pool = pool(&settings);
    wait_for(
        Duration::from_secs(30),
        "the first attempt to fail for now",
        || async {
            let row: Option<(String, i32)> =
                sqlx::query_as("SELECT status, attempts FROM deliveries")
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            (row == Some(("pending".to_string(), 1))).then_some(())
        },
    )
    .await;
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
    // What a sender leaves behind when it claims the retry and dies before calling SendGrid:
    // the delivery in flight, its lease over, the last attempt settled as transient.
    let changed = sqlx::query(
        "UPDATE deliveries SET status = 'in_flight', next_attempt_at = now() - interval '1 second'
         WHERE status = 'pending'",
    )
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);

    let mut restarted = spawn_sender_with(&settings, &env).await;
    let rows = settled(&pool, 1, Duration::from_secs(60)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 2),
        "nothing was in doubt: the retry goes out, no person is asked: {rows:?}"
    );
    assert_eq!(fake.accepted_counts().values().sum::<usize>(), 1);
    restarted
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn an_attempt_in_doubt_that_postmark_cannot_be_asked_about_goes_to_a_person_in_time() {
    let settings = fresh_settings("unavailable").await;
    let fake = FakePostmark {
        delay: Duration::from_secs(3),
        search_down: true,
        ..FakePostmark::default()
    };
    let server = fake.clone().start().await;
    seed_invoice(&settings, "cus_doubt", "inv_doubt").await;
    publish(
        &settings,
        &[command("cus_doubt", "inv_doubt", "doubt@example.fr")],
    )
    .await;
    let env = env_with(
        &server.uri(),
        &[
            ("RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS", "500"),
            ("RELANCE__SENDER__LEASE_MS", "5000"),
            ("RELANCE__SENDER__RECONCILE_DELAY_MS", "300"),
            ("RELANCE__SENDER__RECONCILE_ESCALATE_AFTER_MS", "3000"),
        ],
    );
    let mut sender = spawn_sender_with(&settings, &env).await;
    let rows = settled(&pool(&settings), 1, Duration::from_secs(30)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].error_code.as_deref()),
        ("unknown", Some("outcome_unknown")),
        "{rows:?}"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
        .fetch_one(&pool(&settings))
        .await
        .unwrap();
    assert_eq!(attempts, 1, "never sent again while in doubt");
    sender
        .signal_and_wait("TERM", Duration::from_secs(20))
        .await;
}
