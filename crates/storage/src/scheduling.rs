//! What the scheduler and the admin API read and write: due invoices, reminders, holds, manual
//! actions.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use relance_domain::{CustomerFacts, Invoice};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::error::StorageError;
use crate::{decode_facts, key_columns, RawFacts, Scoped};

/// Marks invoices for planning again at `at` (the ingestor does it on every change).
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn mark_for_replanning(
    connection: &mut PgConnection,
    keys: &[Scoped],
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    if keys.is_empty() {
        return Ok(());
    }
    let (tenants, ids) = key_columns(keys);
    sqlx::query(
        "UPDATE invoices SET next_action_at = $3
         WHERE (tenant, invoice_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(at)
    .execute(connection)
    .await
    .map_err(StorageError::query("marking invoices for planning"))?;
    Ok(())
}

/// The windows of most overdue invoices a claim reads, first the narrow one and then, when
/// that found too few customers while more invoices were due, the wide one: invoices looked at
/// per customer wanted, and per invoice the round may still take (see
/// [`claim_due_customers_among`]).
const CLAIM_WINDOWS: [(i64, i64); 2] = [(5, 1), (20, 4)];
/// Candidates tried per customer claimed: enough to pass over those other workers hold (nine
/// other workers claiming as many), few enough that the list is not mostly sent back unused
/// (make bench: 3,860 candidates for a claim of 200).
const CLAIM_CANDIDATES_PER_CUSTOMER: i64 = 10;

/// How much one planning round takes on: at most `customers` customers, and no customer whose
/// due invoices would take the round past `invoices` (a round always takes its first customer,
/// however many invoices they have due). The invoices bound the round's memory; the customers
/// its statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundLimits {
    pub customers: i64,
    pub invoices: i64,
}

impl RoundLimits {
    /// Up to `customers` customers, whatever their invoices.
    #[must_use]
    pub fn customers(customers: i64) -> Self {
        Self {
            customers,
            invoices: i64::MAX,
        }
    }
}

/// The customers a claim locked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// To plan in this round, most overdue first, within both limits; locked until the
    /// round's transaction ends.
    pub customers: Vec<Scoped>,
    /// Due invoices of `customers`.
    pub invoices: i64,
    /// A limit stopped the claim: more customers may be due at once.
    pub full: bool,
}

/// Claims up to `limit` customers with an invoice due for planning at `now`, most overdue
/// first, locking their rows; customers another scheduler holds are skipped, so replicas never
/// plan the same customer at once.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn claim_due_customers(
    connection: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Scoped>, StorageError> {
    claim_due_customers_among(
        connection,
        now,
        RoundLimits::customers(limit),
        None,
        &HashSet::new(),
    )
    .await
    .map(|claimed| claimed.customers)
}

/// [`claim_due_customers`] within `limits`, among `only` (all when `None`), passing over
/// `held_here`: the customers this process's other workers are planning, which the database
/// would only skip as locked, one lock attempt each (when workers share the most overdue
/// customers, those attempts were most of the claim's time).
///
/// The most overdue invoices are read first in a narrow window ([`CLAIM_WINDOWS`]), and again
/// in a wide one only when that finds too few customers while more invoices are due (customers
/// with many due invoices, or many held elsewhere): the window's cost grows with its size, and
/// with one due invoice a customer the wide one was a quarter of the database's time (make
/// bench, 100,000 due invoices among 1,000,000).
///
/// Candidates are locked while their invoices in the window fit the round's invoices. The
/// lock counts each one's due invoices; when the window undercounted, the first customer the
/// round has no room for and every one after it are let go again (see [`lock_within`]) and
/// the round is full: a later round, of any worker or replica, takes them.
///
/// # Errors
/// [`StorageError::Query`] when a query fails.
pub async fn claim_due_customers_among(
    connection: &mut PgConnection,
    now: DateTime<Utc>,
    limits: RoundLimits,
    only: Option<&[Scoped]>,
    held_here: &HashSet<Scoped>,
) -> Result<Claimed, StorageError> {
    let mut claimed = Claimed::default();
    let mut tried: HashSet<Scoped> = HashSet::new();
    for (per_customer, per_invoice) in CLAIM_WINDOWS {
        let customers_left = limits.customers - count(claimed.customers.len());
        let invoices_left = limits.invoices - claimed.invoices;
        let window = customers_left
            .saturating_mul(per_customer)
            .min(invoices_left.saturating_mul(per_invoice));
        let (candidates, window_rows) =
            due_candidates(connection, now, window, customers_left, only, held_here).await?;
        let untried: Vec<(Scoped, i64)> = candidates
            .into_iter()
            .filter(|(customer, _)| !tried.contains(customer))
            .collect();
        tried.extend(untried.iter().map(|(customer, _)| customer.clone()));
        // As many as fit by their invoices seen in the window, a lower bound of their due
        // invoices: the lock below counts them and has the last word. Every candidate is
        // offered, in order, so that the lock passes over those another replica holds (two
        // replicas claiming at once offer the same customers) and takes the next ones.
        let mut seen = 0_i64;
        let mut fitting = 0_i64;
        let mut more_than_fit = false;
        for (_, in_window) in &untried {
            let first = claimed.customers.is_empty() && fitting == 0;
            if !first && claimed.invoices + seen + in_window > limits.invoices {
                more_than_fit = true;
                break;
            }
            seen += in_window;
            fitting += 1;
        }
        let to_lock: Vec<Scoped> = untried.into_iter().map(|(customer, _)| customer).collect();
        let limit = fitting.min(customers_left);
        if limit > 0 {
            lock_within(connection, &to_lock, limit, now, limits, &mut claimed).await?;
        }
        // Stopped by a limit with customers in hand; with none (every one offered was held
        // elsewhere), the wide window looks further.
        if !claimed.customers.is_empty()
            && (more_than_fit
                || count(claimed.customers.len()) >= limits.customers
                || claimed.invoices >= limits.invoices)
        {
            claimed.full = true;
        }
        if claimed.full || window_rows < window {
            break;
        }
    }
    Ok(claimed)
}

/// Locks up to `limit` of `candidates` (see [`lock_due_customers`]) and adds to `claimed` those
/// whose due invoices fit `limits`, in order (the round's first customer always). The lock is
/// taken under a savepoint: when a customer turns out not to fit, the savepoint is rolled back,
/// which lets go of every lock it took, and only the customers that fit are locked again.
/// Holding the others to the end of the round would keep their events waiting (the ingestor
/// locks a customer to apply them) for a round that does not plan them; with due invoices
/// spread in time, a window of 500 can show 200 customers one invoice each who have ten.
async fn lock_within(
    connection: &mut PgConnection,
    candidates: &[Scoped],
    limit: i64,
    now: DateTime<Utc>,
    limits: RoundLimits,
    claimed: &mut Claimed,
) -> Result<(), StorageError> {
    let mut attempt = connection
        .begin()
        .await
        .map_err(StorageError::query("claiming due customers"))?;
    let mut fit: Vec<(Scoped, i64)> = Vec::new();
    let mut invoices = claimed.invoices;
    let mut let_go = false;
    for (customer, due) in lock_due_customers(&mut attempt, candidates, limit, now).await? {
        let first = claimed.customers.is_empty() && fit.is_empty();
        if !first && invoices + due > limits.invoices {
            let_go = true;
            break;
        }
        invoices += due;
        fit.push((customer, due));
    }
    if let_go {
        attempt
            .rollback()
            .await
            .map_err(StorageError::query("claiming due customers"))?;
        let keys: Vec<Scoped> = fit.into_iter().map(|(customer, _)| customer).collect();
        // Another worker may take one of them in between: the round then has fewer.
        fit = lock_due_customers(connection, &keys, count(keys.len()), now).await?;
        claimed.full = true;
    } else {
        attempt
            .commit()
            .await
            .map_err(StorageError::query("claiming due customers"))?;
    }
    for (customer, due) in fit {
        claimed.invoices += due;
        claimed.customers.push(customer);
    }
    Ok(())
}

fn count(length: usize) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

/// Customers of the `window` most overdue invoices (among `only`), most overdue first, each
/// with how many of its invoices the window held, and how many invoices the window held in all
/// (fewer than `window`: every due invoice was in it).
async fn due_candidates(
    connection: &mut PgConnection,
    now: DateTime<Utc>,
    window: i64,
    limit: i64,
    only: Option<&[Scoped]>,
    held_here: &HashSet<Scoped>,
) -> Result<(Vec<(Scoped, i64)>, i64), StorageError> {
    let (tenants, ids) = only.map(key_columns).unzip();
    let (held_tenants, held_ids): (Vec<&str>, Vec<&str>) = held_here
        .iter()
        .map(|(tenant, id)| (tenant.as_str(), id.as_str()))
        .unzip();
    // Only the most overdue invoices are looked at (an index scan in time order, however long
    // the backlog): aggregating every due invoice on every claim made draining a backlog
    // quadratic. A claim that finds fewer customers than it wants simply comes back.
    // Ties are left unordered: which of two equally overdue customers comes first does not
    // matter, and ordering them by text made the sort the slowest part of the claim.
    // The invoices of customers held here do not count in the window: siblings hold the most
    // overdue customers, and with many due invoices each they filled the window, so rounds
    // came back short and their workers waited for the next tick.
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT tenant, customer_id, invoices, sum(invoices) OVER ()::bigint
         FROM (SELECT tenant, customer_id, min(next_action_at) AS due, count(*) AS invoices
               FROM (SELECT tenant, customer_id, next_action_at FROM invoices
                     WHERE next_action_at <= $1
                       AND ($3::text[] IS NULL
                            OR (tenant, customer_id) IN
                               (SELECT * FROM unnest($3::text[], $4::text[])))
                       AND (tenant, customer_id) NOT IN
                           (SELECT * FROM unnest($6::text[], $7::text[]))
                     ORDER BY next_action_at
                     LIMIT $2) AS most_overdue
               GROUP BY tenant, customer_id) AS due
         ORDER BY due
         LIMIT $5",
    )
    .bind(now)
    .bind(window)
    .bind(tenants)
    .bind(ids)
    .bind(limit.saturating_mul(CLAIM_CANDIDATES_PER_CUSTOMER))
    .bind(&held_tenants)
    .bind(&held_ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(StorageError::query("finding customers with due invoices"))?;
    let window_rows = rows.first().map_or(0, |row| row.3);
    Ok((
        rows.into_iter()
            .map(|(tenant, customer_id, invoices, _)| ((tenant, customer_id), invoices))
            .collect(),
        window_rows,
    ))
}

/// Locks up to `limit` of `candidates` that still have an invoice due at `now`, in their order,
/// skipping those another transaction holds; with how many invoices each has due.
async fn lock_due_customers(
    connection: &mut PgConnection,
    candidates: &[Scoped],
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(Scoped, i64)>, StorageError> {
    // In the candidates' order: key_columns would sort them.
    let (tenants, ids): (Vec<&str>, Vec<&str>) = candidates
        .iter()
        .map(|(tenant, id)| (tenant.as_str(), id.as_str()))
        .unzip();
    // Locked in that order, one primary-key lookup each, stopping at `limit`: joined in one
    // statement, PostgreSQL read every customer (a sequential scan growing with the
    // portfolio) to lock a few hundred. Without ORDER BY the rows come in the array's order.
    // A customer another worker planned since the candidates were read is passed over. The
    // count reads the customer's due entries of `invoices_by_customer`, as the load will.
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.tenant, c.customer_id, d.due
         FROM unnest($1::text[], $2::text[]) AS k(tenant, customer_id)
         JOIN customers c ON c.tenant = k.tenant AND c.customer_id = k.customer_id
         CROSS JOIN LATERAL (SELECT count(*) AS due FROM invoices i
                             WHERE i.tenant = c.tenant AND i.customer_id = c.customer_id
                               AND i.next_action_at <= $4) AS d
         WHERE d.due > 0
         LIMIT $3
         FOR UPDATE OF c SKIP LOCKED",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(limit)
    .bind(now)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("claiming due customers"))?;
    Ok(rows
        .into_iter()
        .map(|(tenant, customer_id, due)| ((tenant, customer_id), due))
        .collect())
}

/// A hold on all of a customer's invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerHold {
    pub until: Option<NaiveDate>,
    pub by: String,
    pub reason: Option<String>,
}

/// A customer as the scheduler needs it.
#[derive(Debug, Clone)]
pub struct SchedulingCustomer {
    pub customer_id: String,
    pub tenant: String,
    pub facts: CustomerFacts,
    pub paid_invoices: i32,
    pub paid_on_time: i32,
    pub total_days_late: i64,
    pub customer_since: Option<NaiveDate>,
    pub hold: Option<CustomerHold>,
}

type CustomerRow = (
    String,
    String,
    RawFacts,
    i32,
    i32,
    i64,
    Option<NaiveDate>,
    bool,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
);

/// Loads customers with their behaviour and hold.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored customer is unreadable.
pub async fn load_customers(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<Vec<SchedulingCustomer>, StorageError> {
    let (tenants, ids) = key_columns(keys);
    let rows: Vec<CustomerRow> = sqlx::query_as(
        "SELECT customer_id, tenant, facts, paid_invoices, paid_on_time, total_days_late,
                coalesce(customer_since, first_invoice_on), held, held_until, held_by,
                hold_reason
         FROM customers
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading customers to schedule"))?;
    rows.into_iter()
        .map(
            |(
                customer_id,
                tenant,
                facts,
                paid_invoices,
                paid_on_time,
                total_days_late,
                customer_since,
                held,
                held_until,
                held_by,
                hold_reason,
            )| {
                let facts = decode_facts("customer", &customer_id, &facts)?;
                Ok(SchedulingCustomer {
                    customer_id,
                    tenant,
                    facts,
                    paid_invoices,
                    paid_on_time,
                    total_days_late,
                    customer_since,
                    hold: held.then(|| CustomerHold {
                        until: held_until,
                        by: held_by.unwrap_or_default(),
                        reason: hold_reason,
                    }),
                })
            },
        )
        .collect()
}

/// Loads and locks the invoices of `customer_keys` whose next action is due at `now`: the only
/// ones a planning round can act on. An invoice not due has no step due now, and a round's
/// decisions only ever delay the others (a gap, a cap, a step taken), so its stored next
/// action stays right; anything that can bring one forward (an event, a hold lifted, a
/// reminder deferred, a customer's profile) marks the invoice due
/// (`planning_only_the_due_invoices_decides_what_planning_all_of_them_decides` in
/// relance-policy). Reading only these keeps a round's cost to what is due, however many
/// invoices the customers have open.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored invoice is unreadable.
pub async fn load_due_invoices(
    connection: &mut PgConnection,
    customer_keys: &[Scoped],
    now: DateTime<Utc>,
) -> Result<Vec<Invoice>, StorageError> {
    let (tenants, ids) = key_columns(customer_keys);
    let rows: Vec<(String, RawFacts)> = sqlx::query_as(
        "SELECT invoice_id, facts FROM invoices
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           AND next_action_at <= $3
         ORDER BY tenant, invoice_id FOR UPDATE",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(now)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading due invoices"))?;
    rows.into_iter()
        .map(|(id, facts)| decode_facts("invoice", &id, &facts))
        .collect()
}

/// Marks every invoice of `customer_keys` still in dunning for planning at `at`: a change of
/// the customer (profile, segment, time zone, VIP) can bring any of their next actions forward.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn mark_customers_for_replanning(
    connection: &mut PgConnection,
    customer_keys: &[Scoped],
    at: DateTime<Utc>,
) -> Result<u64, StorageError> {
    if customer_keys.is_empty() {
        return Ok(0);
    }
    let (tenants, ids) = key_columns(customer_keys);
    sqlx::query(
        "UPDATE invoices SET next_action_at = $3
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           AND state NOT IN ('closed', 'awaiting_invoice')
           AND next_action_at IS DISTINCT FROM $3",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(at)
    .execute(connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query(
        "marking customers' invoices for planning",
    ))
}

/// Which tenants' invoices a policy governs.
#[derive(Debug, Clone, Copy)]
pub enum PolicyScope<'a> {
    /// A tenant with its own policy file.
    Tenant(&'a str),
    /// The default policy: every tenant but those with their own.
    DefaultExcept(&'a [String]),
}

/// What recording a policy's fingerprint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRecorded {
    /// The first fingerprint of this deployment: recorded, nothing re-planned, since what
    /// the invoices were planned with is unknown.
    First,
    /// The same content as at the last start.
    Unchanged,
    /// The content changed, or a tenant's own policy appeared: the governed open invoices
    /// were marked for planning now.
    Changed { invoices_marked: u64 },
}

/// Records `fingerprint` as what the policy `key` says now and, when it differs from what was
/// recorded, marks the open invoices the policy governs for planning at `at`, in one
/// transaction. A policy seen for the first time marks them too when `known_deployment` (a
/// tenant's new file replaces the default it was planned with). Replicas starting together
/// re-plan once: only the one whose statement changes the row marks the invoices.
///
/// # Errors
/// [`StorageError::Query`] when a statement fails.
pub async fn record_policy(
    connection: &mut PgConnection,
    key: &str,
    fingerprint: &str,
    scope: PolicyScope<'_>,
    known_deployment: bool,
    at: DateTime<Utc>,
) -> Result<PolicyRecorded, StorageError> {
    let mut transaction = sqlx::Connection::begin(&mut *connection)
        .await
        .map_err(StorageError::query("starting to record a policy"))?;
    let updated: Option<bool> = sqlx::query_scalar(
        "INSERT INTO policy_fingerprints (policy_key, fingerprint, recorded_at)
         VALUES ($1, $2, $3)
         ON CONFLICT (policy_key) DO UPDATE
             SET fingerprint = EXCLUDED.fingerprint, recorded_at = EXCLUDED.recorded_at
             WHERE policy_fingerprints.fingerprint <> EXCLUDED.fingerprint
         RETURNING xmax <> 0",
    )
    .bind(key)
    .bind(fingerprint)
    .bind(at)
    .fetch_optional(&mut *transaction)
    .await
    .map_err(StorageError::query("recording a policy's fingerprint"))?;
    let recorded = match updated {
        None => PolicyRecorded::Unchanged,
        Some(false) if !known_deployment => PolicyRecorded::First,
        Some(_) => PolicyRecorded::Changed {
            invoices_marked: mark_governed(&mut transaction, scope, at).await?,
        },
    };
    transaction
        .commit()
        .await
        .map_err(StorageError::query("committing a policy's fingerprint"))?;
    Ok(recorded)
}

/// Whether any policy fingerprint was ever recorded (a deployment that started before).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn policies_recorded(connection: &mut PgConnection) -> Result<bool, StorageError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM policy_fingerprints)")
        .fetch_one(connection)
        .await
        .map_err(StorageError::query("reading the policy fingerprints"))
}

/// Forgets the tenants' own policies that are gone (not in `current`), marking those tenants'
/// open invoices for planning at `at`: the default governs them now. Returns each tenant with
/// the invoices marked.
///
/// # Errors
/// [`StorageError::Query`] when a statement fails.
pub async fn forget_removed_policies(
    connection: &mut PgConnection,
    current: &[String],
    at: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, StorageError> {
    let mut transaction = sqlx::Connection::begin(&mut *connection)
        .await
        .map_err(StorageError::query("starting to forget removed policies"))?;
    let removed: Vec<String> = sqlx::query_scalar(
        "DELETE FROM policy_fingerprints
         WHERE policy_key <> 'default' AND policy_key <> ALL($1::text[])
         RETURNING policy_key",
    )
    .bind(current)
    .fetch_all(&mut *transaction)
    .await
    .map_err(StorageError::query("forgetting removed policies"))?;
    let mut marked = Vec::new();
    for tenant in removed {
        let count = mark_governed(&mut transaction, PolicyScope::Tenant(&tenant), at).await?;
        marked.push((tenant, count));
    }
    transaction
        .commit()
        .await
        .map_err(StorageError::query("committing removed policies"))?;
    Ok(marked)
}

async fn mark_governed(
    connection: &mut PgConnection,
    scope: PolicyScope<'_>,
    at: DateTime<Utc>,
) -> Result<u64, StorageError> {
    let (tenant, excluded): (Option<&str>, &[String]) = match scope {
        PolicyScope::Tenant(tenant) => (Some(tenant), &[]),
        PolicyScope::DefaultExcept(tenants) => (None, tenants),
    };
    sqlx::query(
        "UPDATE invoices SET next_action_at = $3
         WHERE ($1::text IS NULL OR tenant = $1)
           AND tenant <> ALL($2::text[])
           AND state NOT IN ('closed', 'awaiting_invoice')
           AND next_action_at IS DISTINCT FROM $3",
    )
    .bind(tenant)
    .bind(excluded)
    .bind(at)
    .execute(connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query(
        "marking a changed policy's invoices for planning",
    ))
}

/// How many plans one statement writes. A planning round of 200 customers with ten due invoices
/// each wrote 2,000 plans in one Bind message of several megabytes, and each pooled connection
/// keeps its write buffer at the largest size it has sent: 10 MB of the scheduler's heap at its
/// peak (heaptrack, make bench). Smaller statements cost nothing measurable beside the rows.
const PLANS_PER_STATEMENT: usize = 250;

/// Sets each invoice's next planning time and last plan (JSON text), in statements of
/// [`PLANS_PER_STATEMENT`] invoices. A customer's invoices are all planned together; those whose
/// plan did not change are not rewritten.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn set_next_actions(
    connection: &mut PgConnection,
    rows: &[(Scoped, Option<DateTime<Utc>>, String)],
) -> Result<(), StorageError> {
    for chunk in rows.chunks(PLANS_PER_STATEMENT) {
        set_next_actions_of(connection, chunk).await?;
    }
    Ok(())
}

async fn set_next_actions_of(
    connection: &mut PgConnection,
    rows: &[(Scoped, Option<DateTime<Utc>>, String)],
) -> Result<(), StorageError> {
    let tenants: Vec<&str> = rows.iter().map(|row| row.0 .0.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|row| row.0 .1.as_str()).collect();
    let times: Vec<Option<DateTime<Utc>>> = rows.iter().map(|row| row.1).collect();
    let plans: Vec<&str> = rows.iter().map(|row| row.2.as_str()).collect();
    sqlx::query(
        "UPDATE invoices i SET next_action_at = t.next_action_at, plan = t.plan
         FROM (SELECT tenant, invoice_id, next_action_at, plan::jsonb AS plan
               FROM UNNEST($4::text[], $1::text[], $2::timestamptz[], $3::text[])
                    AS u(tenant, invoice_id, next_action_at, plan)) AS t
         WHERE i.tenant = t.tenant AND i.invoice_id = t.invoice_id
           AND (i.next_action_at IS DISTINCT FROM t.next_action_at
                OR i.plan IS DISTINCT FROM t.plan)",
    )
    .bind(&ids)
    .bind(&times)
    .bind(&plans)
    .bind(&tenants)
    .execute(connection)
    .await
    .map_err(StorageError::query("setting next actions"))?;
    Ok(())
}

/// A reminder or task the scheduler decided. Its command is read as a JSON tree (`C` =
/// `serde_json::Value`, for those that change it: approvals, edits); the scheduler records the
/// ones it decides with the command as JSON text (`C` = `String`), the same text the outbox
/// publishes, serialised once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReminderRow<C = serde_json::Value> {
    pub reminder_id: Uuid,
    pub idempotency_key: String,
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    /// `message`, `task` or `escalation`.
    pub kind: String,
    pub trigger: serde_json::Value,
    pub step_id: String,
    pub channel: String,
    pub segment: String,
    pub template: Option<String>,
    pub variant: Option<String>,
    pub experiment: Option<String>,
    /// `awaiting_approval`, `queued`, `rejected` or `cancelled`.
    pub status: String,
    pub scheduled_for: DateTime<Utc>,
    pub policy_id: String,
    pub policy_version: i32,
    pub topic: String,
    pub command: C,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
}

const REMINDER_COLUMNS: &str =
    "reminder_id, idempotency_key, tenant, customer_id, invoice_ids, kind, trigger,
    step_id, channel, segment, template, variant, experiment, status, scheduled_for, policy_id,
    policy_version, topic, command, decided_by, decided_at, decision_note";

/// What planning reads of a past reminder: not its command, a few kilobytes of JSON a row
/// that planning never looks at.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PastReminderRow {
    pub tenant: String,
    pub customer_id: String,
    pub invoice_ids: Vec<String>,
    /// `message`, `task` or `escalation`.
    pub kind: String,
    pub trigger: serde_json::Value,
    pub step_id: String,
    /// `awaiting_approval`, `queued`, `rejected`, `cancelled` or `deferred`.
    pub status: String,
    pub scheduled_for: DateTime<Utc>,
}

/// The reminders of `customer_ids` since `since`, of every status (cancelled ones count for
/// attempt numbers, not as taken), oldest first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn reminder_history(
    connection: &mut PgConnection,
    customer_keys: &[Scoped],
    since: DateTime<Utc>,
) -> Result<Vec<PastReminderRow>, StorageError> {
    let (tenants, ids) = key_columns(customer_keys);
    sqlx::query_as(
        "SELECT tenant, customer_id, invoice_ids, kind, trigger, step_id, status, scheduled_for
         FROM reminders
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $3::text[]))
           AND scheduled_for >= $2
         ORDER BY scheduled_for",
    )
    .bind(&tenants)
    .bind(since)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading reminder history"))
}
/// A reminder's command as the JSON text that is stored.
pub trait CommandJson {
    fn json_text(&self) -> std::borrow::Cow<'_, str>;
}

impl CommandJson for serde_json::Value {
    fn json_text(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Owned(self.to_string())
    }
}

/// Already JSON text: stored as it is.
impl CommandJson for String {
    fn json_text(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(self)
    }
}

/// Records reminders; those whose idempotency key is already known are left alone. Returns
/// the keys recorded now (only their commands may be published).
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn insert_reminders<C: CommandJson, R: std::borrow::Borrow<ReminderRow<C>>>(
    connection: &mut PgConnection,
    rows: &[R],
) -> Result<Vec<String>, StorageError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<&ReminderRow<C>> = rows.iter().map(std::borrow::Borrow::borrow).collect();
    let column =
        |f: fn(&ReminderRow<C>) -> String| rows.iter().map(|row| f(row)).collect::<Vec<_>>();
    let optional = |f: fn(&ReminderRow<C>) -> Option<String>| {
        rows.iter().map(|row| f(row)).collect::<Vec<_>>()
    };
    let ids: Vec<Uuid> = rows.iter().map(|row| row.reminder_id).collect();
    let invoice_ids: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| serde_json::json!(row.invoice_ids))
        .collect();
    // Borrowed, not cloned: copies of every command's tree were a part of the scheduler's heap
    // at its peak (heaptrack).
    let triggers: Vec<&serde_json::Value> = rows.iter().map(|row| &row.trigger).collect();
    // As text: a command bound as a JSON tree was serialised again here, after the outbox's
    // copy (a tenth of the scheduler's CPU with one reminder a customer, by perf).
    let commands: Vec<std::borrow::Cow<'_, str>> =
        rows.iter().map(|row| row.command.json_text()).collect();
    let scheduled: Vec<DateTime<Utc>> = rows.iter().map(|row| row.scheduled_for).collect();
    let versions: Vec<i32> = rows.iter().map(|row| row.policy_version).collect();
    let decided_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|row| row.decided_at).collect();
    sqlx::query_scalar(
        "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids, kind,
             trigger, step_id, channel, segment, template, variant, experiment, status,
             scheduled_for, policy_id, policy_version, topic, command, decided_by, decided_at,
             decision_note)
         SELECT id, key, tenant, customer, ARRAY(SELECT jsonb_array_elements_text(invoices)), kind,
             trigger, step, channel, segment, template, variant, experiment, status, scheduled,
             policy, version, topic, command::jsonb, decided_by, decided_at, note
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                     $7::jsonb[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[], $15::timestamptz[], $16::text[], $17::int[],
                     $18::text[], $19::text[], $20::text[], $21::timestamptz[], $22::text[])
              AS t(id, key, tenant, customer, invoices, kind, trigger, step, channel, segment,
                   template, variant, experiment, status, scheduled, policy, version, topic,
                   command, decided_by, decided_at, note)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING idempotency_key",
    )
    .bind(&ids)
    .bind(column(|row| row.idempotency_key.clone()))
    .bind(column(|row| row.tenant.clone()))
    .bind(column(|row| row.customer_id.clone()))
    .bind(&invoice_ids)
    .bind(column(|row| row.kind.clone()))
    .bind(&triggers)
    .bind(column(|row| row.step_id.clone()))
    .bind(column(|row| row.channel.clone()))
    .bind(column(|row| row.segment.clone()))
    .bind(optional(|row| row.template.clone()))
    .bind(optional(|row| row.variant.clone()))
    .bind(optional(|row| row.experiment.clone()))
    .bind(column(|row| row.status.clone()))
    .bind(&scheduled)
    .bind(column(|row| row.policy_id.clone()))
    .bind(&versions)
    .bind(column(|row| row.topic.clone()))
    .bind(&commands)
    .bind(optional(|row| row.decided_by.clone()))
    .bind(&decided_at)
    .bind(optional(|row| row.decision_note.clone()))
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("recording reminders"))
}

/// Sets a customer aside whom the scheduler cannot plan: their due invoices are looked at
/// again at `retry_at`, with `reason` in their plan for whoever looks.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn quarantine_customer(
    connection: &mut PgConnection,
    (tenant, customer_id): &Scoped,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
    reason: &str,
) -> Result<u64, StorageError> {
    sqlx::query(
        "UPDATE invoices SET next_action_at = $3,
                             plan = jsonb_build_object('quarantined', $4::text, 'at', $2::timestamptz)
         WHERE tenant = $5 AND customer_id = $1 AND next_action_at <= $2",
    )
    .bind(customer_id)
    .bind(now)
    .bind(retry_at)
    .bind(reason)
    .bind(tenant)
    .execute(connection)
    .await
    .map(|done| done.rows_affected())
    .map_err(StorageError::query("setting a customer aside"))
}

/// Defers queued reminders the sender held back for a reason that passes: they no longer
/// count as taken, and their invoices are planned again at `replan_at` (or sooner if already
/// due). Returns how many were deferred.
///
/// # Errors
/// [`StorageError::Query`] when an update fails.
pub async fn defer_reminder(
    connection: &mut PgConnection,
    reminder_id: Uuid,
    tenant: &str,
    invoice_ids: &[String],
    replan_at: DateTime<Utc>,
) -> Result<u64, StorageError> {
    // The customers first, shared (docs/operations.md#lock-order).
    sqlx::query(
        "SELECT 1 FROM customers WHERE tenant = $2 AND customer_id IN
             (SELECT customer_id FROM invoices WHERE tenant = $2 AND invoice_id = ANY($1))
         ORDER BY tenant, customer_id FOR SHARE",
    )
    .bind(invoice_ids)
    .bind(tenant)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("locking deferred invoices' customers"))?;
    let deferred = sqlx::query(
        "UPDATE reminders SET status = 'deferred', updated_at = now()
         WHERE reminder_id = $1 AND status = 'queued'",
    )
    .bind(reminder_id)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("deferring a reminder"))?
    .rows_affected();
    // All the customer's open invoices, not only the reminder's: a deferred reminder no longer
    // counts for the gap or the cap, so the others' next actions may come sooner too.
    sqlx::query(
        "UPDATE invoices SET next_action_at = least(coalesce(next_action_at, $2), $2)
         WHERE (tenant = $3 AND invoice_id = ANY($1))
            OR ((tenant, customer_id) IN
                    (SELECT tenant, customer_id FROM invoices WHERE tenant = $3 AND invoice_id = ANY($1))
                AND state NOT IN ('closed', 'awaiting_invoice'))",
    )
    .bind(invoice_ids)
    .bind(replan_at)
    .bind(tenant)
    .execute(connection)
    .await
    .map_err(StorageError::query("planning deferred invoices again"))?;
    Ok(deferred)
}

/// Marks as cancelled the reminders whose commands were deleted from the outbox, and those
/// awaiting approval for any of the invoices `keys` (tenant, invoice id). The open invoices of
/// their customers are planned again at `now`: a cancelled reminder no longer counts for the
/// gap or the cap, so their next actions may come sooner.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn cancel_reminders(
    connection: &mut PgConnection,
    keys: &[Scoped],
    deleted_commands: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, StorageError> {
    if keys.is_empty() && deleted_commands.is_empty() {
        return Ok(0);
    }
    let (tenants, invoice_ids) = key_columns(keys);
    // A command deleted from the outbox may still have left: a relay can have published it
    // and not yet marked it. Once its message may have gone (an attempt in flight, sent, or
    // in doubt), the reminder stays: it was sent, and the gap counts from it. Otherwise it is
    // cancelled, and the sender's guard skips a copy that reaches it (`reminder_cancelled`).
    sqlx::query_scalar(
        "WITH cancelled AS (
             UPDATE reminders SET status = 'cancelled', updated_at = now()
             WHERE (reminder_id = ANY($2)
                    AND NOT EXISTS (SELECT 1 FROM deliveries d
                                    WHERE d.reminder_id = reminders.reminder_id
                                      AND (d.status IN ('in_flight', 'sent', 'unknown')
                                           OR d.sending_since IS NOT NULL)))
                OR (status = 'awaiting_approval' AND invoice_ids && $1
                    AND EXISTS (SELECT 1 FROM unnest($3::text[], $1::text[]) AS k(tenant, invoice_id)
                                WHERE k.tenant = reminders.tenant
                                  AND k.invoice_id = ANY(reminders.invoice_ids)))
             RETURNING tenant, customer_id),
         replanned AS (
             UPDATE invoices i SET next_action_at = $4
             FROM (SELECT DISTINCT tenant, customer_id FROM cancelled) c
             WHERE i.tenant = c.tenant AND i.customer_id = c.customer_id
               AND i.state NOT IN ('closed', 'awaiting_invoice')
               AND (i.next_action_at IS NULL OR i.next_action_at > $4))
         SELECT count(*) FROM cancelled",
    )
    .bind(&invoice_ids)
    .bind(deleted_commands)
    .bind(&tenants)
    .bind(now)
    .fetch_one(connection)
    .await
    .map(|cancelled: i64| u64::try_from(cancelled).unwrap_or(0))
    .map_err(StorageError::query("cancelling reminders"))
}

/// Which of `reminder_ids` are cancelled now (the sender's guard, after its locks).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn cancelled_among(
    connection: &mut PgConnection,
    reminder_ids: &[Uuid],
) -> Result<Vec<Uuid>, StorageError> {
    if reminder_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "SELECT reminder_id FROM reminders WHERE reminder_id = ANY($1) AND status = 'cancelled'",
    )
    .bind(reminder_ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("reading cancelled reminders"))
}

/// When each reminder of an invoice was decided and last changed status, for its timeline.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn reminder_changes_of_invoice(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<std::collections::HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>, StorageError> {
    let rows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT reminder_id, created_at, updated_at FROM reminders
         WHERE invoice_ids @> ARRAY[$1]::text[] AND tenant = $2",
    )
    .bind(invoice_id)
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("reading when reminders changed"))?;
    Ok(rows
        .into_iter()
        .map(|(id, created, updated)| (id, (created, updated)))
        .collect())
}

/// The queued message nearest to `at` among a customer's other reminders, within `gap` on
/// either side: what an approval "now" would come too close to.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn reminder_within_gap(
    connection: &mut PgConnection,
    tenant: &str,
    customer_id: &str,
    except: Uuid,
    at: DateTime<Utc>,
    gap: chrono::Duration,
) -> Result<Option<DateTime<Utc>>, StorageError> {
    sqlx::query_scalar(
        "SELECT max(scheduled_for) FROM reminders
         WHERE tenant = $1 AND customer_id = $2 AND reminder_id <> $3
           AND status = 'queued' AND kind = 'message'
           AND scheduled_for > $4 - $5 AND scheduled_for < $4 + $5",
    )
    .bind(tenant)
    .bind(customer_id)
    .bind(except)
    .bind(at)
    .bind(gap)
    .fetch_one(connection)
    .await
    .map_err(StorageError::query("looking for reminders within the gap"))
}

/// Reminders awaiting approval, oldest first, optionally of one tenant, and only of `tenants`
/// when given (the tenants an admin token may see).
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn awaiting_approval(
    pool: &PgPool,
    tenant: Option<&str>,
    tenants: Option<&[String]>,
    limit: i64,
) -> Result<Vec<ReminderRow>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders
         WHERE status = 'awaiting_approval' AND ($1::text IS NULL OR tenant = $1)
           AND ($3::text[] IS NULL OR tenant = ANY($3))
         ORDER BY created_at LIMIT $2"
    ))
    .bind(tenant)
    .bind(limit)
    .bind(tenants)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("listing approvals"))
}

/// Loads and locks one reminder.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn reminder_for_update(
    connection: &mut PgConnection,
    reminder_id: Uuid,
) -> Result<Option<ReminderRow>, StorageError> {
    // Its customer first (docs/operations.md#lock-order): deciding a reminder also changes its
    // invoices, and the ingestor locks the customer, its invoices, then their reminders.
    sqlx::query(
        "SELECT 1 FROM customers WHERE (tenant, customer_id) =
             (SELECT tenant, customer_id FROM reminders WHERE reminder_id = $1) FOR UPDATE",
    )
    .bind(reminder_id)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("locking a reminder's customer"))?;
    sqlx::query_as(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders WHERE reminder_id = $1 FOR UPDATE"
    ))
    .bind(reminder_id)
    .fetch_optional(connection)
    .await
    .map_err(StorageError::query("loading a reminder"))
}

/// Records a person's decision on a reminder, with the command as it goes out.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn decide_reminder(
    connection: &mut PgConnection,
    row: &ReminderRow,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE reminders SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5,
             command = $6, template = $7, channel = $8, scheduled_for = $9, updated_at = now()
         WHERE reminder_id = $1",
    )
    .bind(row.reminder_id)
    .bind(&row.status)
    .bind(&row.decided_by)
    .bind(row.decided_at)
    .bind(&row.decision_note)
    .bind(&row.command)
    .bind(&row.template)
    .bind(&row.channel)
    .bind(row.scheduled_for)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a decision"))?;
    Ok(())
}

/// The reminders about one invoice, oldest first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn reminders_of_invoice(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<ReminderRow>, StorageError> {
    sqlx::query_as(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders
         WHERE invoice_ids @> ARRAY[$1]::text[] AND tenant = $2 ORDER BY scheduled_for"
    ))
    .bind(invoice_id)
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("loading an invoice's reminders"))
}

/// A change made by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ManualAction {
    pub tenant: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Records a manual action.
///
/// # Errors
/// [`StorageError::Query`] when the insert fails.
pub async fn record_manual_action(
    connection: &mut PgConnection,
    action: &ManualAction,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO manual_actions (tenant, subject_kind, subject_id, action, actor, reason, details, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&action.tenant)
    .bind(&action.subject_kind)
    .bind(&action.subject_id)
    .bind(&action.action)
    .bind(&action.actor)
    .bind(&action.reason)
    .bind(&action.details)
    .bind(action.at)
    .execute(connection)
    .await
    .map_err(StorageError::query("recording a manual action"))?;
    Ok(())
}

/// The manual actions on a subject, oldest first.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn manual_actions_of(
    pool: &PgPool,
    tenant: &str,
    subject_kind: &str,
    subject_id: &str,
) -> Result<Vec<ManualAction>, StorageError> {
    sqlx::query_as(
        "SELECT tenant, subject_kind, subject_id, action, actor, reason, details, at
         FROM manual_actions WHERE tenant = $3 AND subject_kind = $1 AND subject_id = $2
         ORDER BY at, id",
    )
    .bind(subject_kind)
    .bind(subject_id)
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(StorageError::query("loading manual actions"))
}

/// Places or lifts (`None`) a hold on all of a customer's invoices; returns whether the
/// customer exists.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn set_customer_hold(
    connection: &mut PgConnection,
    tenant: &str,
    customer_id: &str,
    hold: Option<&CustomerHold>,
) -> Result<bool, StorageError> {
    let updated = sqlx::query(
        "UPDATE customers SET held = $2, held_until = $3, held_by = $4, hold_reason = $5, updated_at = now()
         WHERE tenant = $6 AND customer_id = $1",
    )
    .bind(customer_id)
    .bind(hold.is_some())
    .bind(hold.and_then(|hold| hold.until))
    .bind(hold.map(|hold| hold.by.clone()))
    .bind(hold.and_then(|hold| hold.reason.clone()))
    .bind(tenant)
    .execute(connection)
    .await
    .map_err(StorageError::query("setting a customer hold"))?
    .rows_affected();
    Ok(updated == 1)
}

/// The ids of a customer's invoices.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn invoice_ids_of_customer(
    connection: &mut PgConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<String>, StorageError> {
    sqlx::query_scalar(
        "SELECT invoice_id FROM invoices WHERE tenant = $1 AND customer_id = $2 ORDER BY invoice_id",
    )
    .bind(tenant)
    .bind(customer_id)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("listing a customer's invoices"))
}

/// The tenants among `visible` (all when `None`) that have an invoice (`table` = `invoices`)
/// or a customer (`customers`) of this id: how the admin API finds whose record a person
/// means when they name only the id.
///
/// # Errors
/// [`StorageError::Query`] when the query fails.
pub async fn tenants_with_id(
    connection: &mut PgConnection,
    table: IdTable,
    id: &str,
    visible: Option<&[String]>,
) -> Result<Vec<String>, StorageError> {
    let query = match table {
        IdTable::Invoices => {
            "SELECT tenant FROM invoices WHERE invoice_id = $1
               AND ($2::text[] IS NULL OR tenant = ANY($2)) ORDER BY tenant"
        }
        IdTable::Customers => {
            "SELECT tenant FROM customers WHERE customer_id = $1
               AND ($2::text[] IS NULL OR tenant = ANY($2)) ORDER BY tenant"
        }
    };
    sqlx::query_scalar(query)
        .bind(id)
        .bind(visible)
        .fetch_all(connection)
        .await
        .map_err(StorageError::query("finding the tenants of an id"))
}

/// Which records [`tenants_with_id`] looks among.
#[derive(Debug, Clone, Copy)]
pub enum IdTable {
    Invoices,
    Customers,
}

/// An invoice's stored record and scheduling columns, for the admin API.
#[derive(Debug, Clone)]
pub struct InvoiceOverview {
    pub invoice: Invoice,
    pub state: String,
    pub amount_due_minor: i64,
    pub currency: Option<String>,
    pub due_on: Option<NaiveDate>,
    pub next_action_at: Option<DateTime<Utc>>,
    pub plan: Option<serde_json::Value>,
}

type OverviewRow = (
    serde_json::Value,
    String,
    i64,
    Option<String>,
    Option<NaiveDate>,
    Option<DateTime<Utc>>,
    Option<serde_json::Value>,
);

/// One invoice with its scheduling columns, if it exists.
///
/// # Errors
/// [`StorageError`] when the query fails or the invoice is unreadable.
pub async fn invoice_overview(
    pool: &PgPool,
    tenant: &str,
    invoice_id: &str,
) -> Result<Option<InvoiceOverview>, StorageError> {
    let row: Option<OverviewRow> = sqlx::query_as(
        "SELECT facts, state, amount_due_minor, currency, due_on, next_action_at, plan
         FROM invoices WHERE tenant = $1 AND invoice_id = $2",
    )
    .bind(tenant)
    .bind(invoice_id)
    .fetch_optional(pool)
    .await
    .map_err(StorageError::query("loading an invoice overview"))?;
    row.map(
        |(facts, state, amount_due_minor, currency, due_on, next_action_at, plan)| {
            let invoice =
                serde_json::from_value(facts).map_err(|source| StorageError::Corrupt {
                    what: "invoice",
                    id: invoice_id.to_string(),
                    source,
                })?;
            Ok(InvoiceOverview {
                invoice,
                state,
                amount_due_minor,
                currency: currency.map(|currency| currency.trim().to_string()),
                due_on,
                next_action_at,
                plan,
            })
        },
    )
    .transpose()
}
