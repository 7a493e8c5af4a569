//! Migrations against a real PostgreSQL server (`DATABASE_URL`, started by `make up`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

mod claims;
mod dispatch;
mod privacy;
mod repositories;

use relance_storage::{migrate, ping, MIGRATOR};
use sqlx::PgPool;

async fn table_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .expect("list tables")
}

#[sqlx::test(migrations = false)]
async fn migrations_apply_on_an_empty_database(pool: PgPool) {
    assert!(
        table_names(&pool).await.is_empty(),
        "the database starts empty"
    );
    migrate(&pool).await.expect("migrations apply");
    let tables = table_names(&pool).await;
    for expected in ["_sqlx_migrations", "outbox", "processed_events"] {
        assert!(
            tables.contains(&expected.to_string()),
            "{expected} missing from {tables:?}"
        );
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
}

#[sqlx::test(migrations = false)]
async fn migrations_are_idempotent(pool: PgPool) {
    migrate(&pool).await.expect("first run");
    let before = table_names(&pool).await;
    migrate(&pool).await.expect("second run is a no-op");
    assert_eq!(table_names(&pool).await, before);
}

#[sqlx::test(migrations = false)]
async fn concurrent_migrations_take_turns(pool: PgPool) {
    let (first, second) = tokio::join!(migrate(&pool), migrate(&pool));
    first.expect("first replica migrates");
    second.expect("second replica migrates");
}

#[sqlx::test(migrations = false)]
async fn ping_succeeds_on_a_live_database(pool: PgPool) {
    ping(&pool).await.expect("database answers");
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn large_facts_are_compressed_with_lz4(pool: PgPool) {
    // A row past about 2 KB has its largest value compressed: with LZ4, not pglz (four times
    // slower to write; see the migration).
    let facts =
        serde_json::json!({ "lines": vec!["Maintenance of the boiler, second floor"; 100] });
    sqlx::query(
        "INSERT INTO invoices (tenant, invoice_id, customer_id, state, total_minor,
             amount_due_minor, overpaid_minor, net_paid_minor, state_as_of, facts)
         VALUES ('acme', 'F-1', 'C-1', 'overdue', 1000, 1000, 0, 0, DATE '2026-12-01', $1)",
    )
    .bind(&facts)
    .execute(&pool)
    .await
    .expect("insert");
    let method: Option<String> =
        sqlx::query_scalar("SELECT pg_column_compression(facts) FROM invoices")
            .fetch_one(&pool)
            .await
            .expect("compression");
    assert_eq!(method.as_deref(), Some("lz4"));
}
