//! Claiming due deliveries for one provider.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use relance_storage::deliveries::{claim_due, Claim, Routes};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap()
}

/// `count` due email deliveries of `tenant`, named `{tenant}-{n}`, the first `seconds_before`
/// seconds before now and each later one a second more recent.
async fn seed_due(pool: &PgPool, tenant: &str, count: i32, seconds_before: i32) {
    sqlx::query(
        "INSERT INTO deliveries (delivery_id, idempotency_key, reminder_id, tenant, customer_id,
             invoice_ids, channel, segment, step_id, template, status, next_attempt_at,
             command, source, received_at)
         SELECT gen_random_uuid(), $1 || '-' || n, gen_random_uuid(), $1, $1 || '-' || n,
                ARRAY['F-' || n], 'email', 'standard', 'first', 'friendly', 'pending',
                $3 - make_interval(secs => $4 - n), '{}', '{}', $3
         FROM generate_series(0, $2 - 1) AS n",
    )
    .bind(tenant)
    .bind(count)
    .bind(now())
    .bind(f64::from(seconds_before))
    .execute(pool)
    .await
    .unwrap();
}

/// `count` deliveries sent yesterday: the history a deliveries table mostly holds.
async fn seed_sent(pool: &PgPool, count: i32) {
    sqlx::query(
        "INSERT INTO deliveries (delivery_id, idempotency_key, reminder_id, tenant, customer_id,
             invoice_ids, channel, segment, step_id, template, status, command, source,
             received_at, sent_at)
         SELECT gen_random_uuid(), 'sent-' || n, gen_random_uuid(), 'acme', 'sent-' || n,
                ARRAY['F-' || n], 'email', 'standard', 'first', 'friendly', 'sent', '{}', '{}',
                $2 - interval '1 day', $2 - interval '1 day'
         FROM generate_series(0, $1 - 1) AS n",
    )
    .bind(count)
    .bind(now())
    .execute(pool)
    .await
    .unwrap();
}

/// Rows of `deliveries` read so far by this pool's only connection, as the statistics say
/// once it has flushed them.
async fn rows_read(pool: &PgPool) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
         FROM pg_stat_user_tables WHERE relname = 'deliveries'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A morning's reminders, or a provider's backlog after an outage, are claimed a wave at a
/// time: a claim must read the deliveries it takes (and those of other providers before
/// them), not every due delivery again.
#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_delivery_claim_reads_the_deliveries_it_takes_not_the_whole_backlog(pool: PgPool) {
    // Yesterday's history, then today's due deliveries: beta sends through the default
    // provider, acme through its own. A few of beta's are older than all of acme's, the rest
    // newer.
    seed_sent(&pool, 40_000).await;
    seed_due(&pool, "beta", 20, 10_000).await;
    seed_due(&pool, "acme", 20_000, 30_000).await;
    seed_due(&pool, "gamma", 1_000, 1_000).await;
    sqlx::query("ANALYZE deliveries")
        .execute(&pool)
        .await
        .unwrap();
    let routes = Routes {
        default_email: "sendgrid".into(),
        default_sms: "twilio".into(),
        tenants: vec![("acme".into(), "postmark".into(), "twilio".into())],
    };
    let single = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();

    let before = rows_read(&single).await;
    let claimed = claim_due(
        &single,
        &Claim {
            provider: "postmark",
            routes: &routes,
            now: now(),
            lease_until: now() + Duration::minutes(2),
            limit: 100, // sender.dispatch_batch's default
            token: uuid::Uuid::new_v4(),
        },
    )
    .await
    .unwrap();
    let read = rows_read(&single).await - before;

    assert_eq!(
        claimed
            .iter()
            .map(|delivery| delivery.customer_id.clone())
            .collect::<BTreeSet<_>>(),
        (0..100)
            .map(|n| format!("acme-{n}"))
            .collect::<BTreeSet<_>>(),
        "acme's hundred oldest"
    );
    assert!(
        read <= 300,
        "claiming 100 of 21,020 due deliveries read {read} rows of deliveries"
    );
}
