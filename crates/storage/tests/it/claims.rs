//! Claiming customers with due invoices: most overdue first, never a customer held elsewhere
//! or by a sibling worker, and past the first window when it holds too few customers.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use relance_storage::scheduling::{claim_due_customers_among, RoundLimits};
use relance_storage::Scoped;
use sqlx::PgPool;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap()
}

fn customer(index: usize) -> Scoped {
    ("acme".to_string(), format!("C{index:02}"))
}

/// Customer `index` with `due` invoices due for planning, the customer with the lower index
/// more overdue, and one invoice planned for next week.
async fn seed(pool: &PgPool, index: usize, due: usize) {
    let (tenant, customer_id) = customer(index);
    sqlx::query("INSERT INTO customers (tenant, customer_id, facts) VALUES ($1, $2, '{}')")
        .bind(&tenant)
        .bind(&customer_id)
        .execute(pool)
        .await
        .unwrap();
    let minutes = i64::try_from(index).unwrap();
    let times = (0..due)
        .map(|_| Some(now() - Duration::hours(2) + Duration::minutes(minutes)))
        .chain([Some(now() + Duration::days(7))]);
    for (number, next_action_at) in times.enumerate() {
        sqlx::query(
            "INSERT INTO invoices (tenant, invoice_id, customer_id, state, total_minor,
                 amount_due_minor, overpaid_minor, net_paid_minor, state_as_of, facts,
                 next_action_at)
             VALUES ($1, $2, $3, 'overdue', 1000, 1000, 0, 0, DATE '2026-12-01', '{}', $4)",
        )
        .bind(&tenant)
        .bind(format!("{customer_id}-{number}"))
        .bind(&customer_id)
        .bind(next_action_at)
        .execute(pool)
        .await
        .unwrap();
    }
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_takes_the_most_overdue_customers_past_a_short_first_window(pool: PgPool) {
    // Ten due invoices a customer: the first window (five invoices a customer wanted) holds
    // two customers, so the claim reads a wider one to find four.
    for index in 0..6 {
        seed(&pool, index, 10).await;
    }
    let mut transaction = pool.begin().await.unwrap();
    let claimed = claim_due_customers_among(
        &mut transaction,
        now(),
        RoundLimits::customers(4),
        None,
        &HashSet::new(),
    )
    .await
    .unwrap()
    .customers;
    assert_eq!(claimed, (0..4).map(customer).collect::<Vec<_>>());
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_passes_over_customers_held_elsewhere_or_by_a_sibling(pool: PgPool) {
    for index in 0..6 {
        seed(&pool, index, 1).await;
    }
    // Another replica holds C00; a sibling worker of this process holds C01 (its lock is not
    // taken here: a sibling's customers are passed over without trying their lock).
    let mut elsewhere = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE customer_id = 'C00' FOR UPDATE")
        .execute(&mut *elsewhere)
        .await
        .unwrap();
    let sibling: HashSet<Scoped> = [customer(1)].into();
    let mut transaction = pool.begin().await.unwrap();
    let claimed = claim_due_customers_among(
        &mut transaction,
        now(),
        RoundLimits::customers(3),
        None,
        &sibling,
    )
    .await
    .unwrap()
    .customers;
    assert_eq!(claimed, vec![customer(2), customer(3), customer(4)]);
    let sibling_row_free: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM customers WHERE customer_id = 'C01' FOR UPDATE NOWAIT")
            .fetch_optional(&mut *elsewhere)
            .await
            .unwrap();
    assert_eq!(sibling_row_free, Some(1), "C01 was not locked by the claim");
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_takes_every_due_customer_when_fewer_are_due_than_wanted(pool: PgPool) {
    for index in 0..3 {
        seed(&pool, index, 2).await;
    }
    // C03 has only an invoice planned for next week.
    seed(&pool, 3, 0).await;
    let mut transaction = pool.begin().await.unwrap();
    let claimed = claim_due_customers_among(
        &mut transaction,
        now(),
        RoundLimits::customers(100),
        None,
        &HashSet::new(),
    )
    .await
    .unwrap()
    .customers;
    assert_eq!(claimed, (0..3).map(customer).collect::<Vec<_>>());
    let only = [customer(2)];
    let mut other = pool.begin().await.unwrap();
    let among = claim_due_customers_among(
        &mut other,
        now(),
        RoundLimits::customers(100),
        Some(&only),
        &HashSet::new(),
    )
    .await
    .unwrap()
    .customers;
    assert!(
        among.is_empty(),
        "C02 is held by the first claim: {among:?}"
    );
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn invoices_of_customers_held_by_siblings_do_not_fill_the_window(pool: PgPool) {
    // Siblings hold the five most overdue customers, ten due invoices each: fifty invoices
    // ahead of the others, more than even the wide window of a claim of two (forty).
    for index in 0..8 {
        seed(&pool, index, 10).await;
    }
    let siblings: HashSet<Scoped> = (0..5).map(customer).collect();
    let mut transaction = pool.begin().await.unwrap();
    let claimed = claim_due_customers_among(
        &mut transaction,
        now(),
        RoundLimits::customers(2),
        None,
        &siblings,
    )
    .await
    .unwrap()
    .customers;
    assert_eq!(claimed, vec![customer(5), customer(6)]);
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_claim_stops_at_the_rounds_invoices_and_lets_go_of_a_customer_the_window_undercounted(
    pool: PgPool,
) {
    // Ten due invoices a customer. A round of 25 invoices reads the 25 most overdue: all of
    // C00's and C01's, five of C02's. C02 looks as if it fits; the lock counts its ten, so
    // the round takes C00 and C01, says it is full, and lets go of C02.
    for index in 0..6 {
        seed(&pool, index, 10).await;
    }
    let limits = RoundLimits {
        customers: 100,
        invoices: 25,
    };
    let mut transaction = pool.begin().await.unwrap();
    let claimed = claim_due_customers_among(&mut transaction, now(), limits, None, &HashSet::new())
        .await
        .unwrap();
    assert_eq!(claimed.customers, vec![customer(0), customer(1)]);
    assert_eq!(claimed.invoices, 20);
    assert!(claimed.full);
    // Let go at once: another replica takes C02 while the round goes on, not after it.
    let mut other = pool.begin().await.unwrap();
    let elsewhere = claim_due_customers_among(
        &mut other,
        now(),
        RoundLimits::customers(100),
        Some(&[customer(2)]),
        &HashSet::new(),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.customers, vec![customer(2)]);
    // The round's own customers stay locked.
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM customers WHERE customer_id IN ('C00', 'C01') FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *other)
    .await
    .unwrap();
    assert_eq!(held, None);
}

#[sqlx::test(migrator = "relance_storage::MIGRATOR")]
async fn a_round_takes_its_first_customer_whatever_their_invoices_and_many_with_few(pool: PgPool) {
    seed(&pool, 0, 30).await;
    for index in 1..8 {
        seed(&pool, index, 1).await;
    }
    let limits = RoundLimits {
        customers: 100,
        invoices: 10,
    };
    let mut transaction = pool.begin().await.unwrap();
    let first = claim_due_customers_among(&mut transaction, now(), limits, None, &HashSet::new())
        .await
        .unwrap();
    assert_eq!(first.customers, vec![customer(0)]);
    assert_eq!(first.invoices, 30);
    assert!(first.full);
    transaction.commit().await.unwrap();
    // C00 still due (nothing planned it): held by a sibling, the next round takes the seven
    // customers of one invoice each, all of them, and is not full.
    let sibling: HashSet<Scoped> = [customer(0)].into();
    let mut transaction = pool.begin().await.unwrap();
    let next = claim_due_customers_among(&mut transaction, now(), limits, None, &sibling)
        .await
        .unwrap();
    assert_eq!(next.customers, (1..8).map(customer).collect::<Vec<_>>());
    assert_eq!(next.invoices, 7);
    assert!(!next.full);
}
