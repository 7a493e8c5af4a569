//! The admin API's repair of customers' payment behaviour: count it again from all of a
//! customer's invoices and write the recount where the stored sums drifted
//! (`relance_storage::behaviour`). An operator's act, recorded as a manual action on each
//! customer it repaired; `dry_run` only reports.

use axum::extract::State;
use axum::{Extension, Json};
use relance_config::AdminRole;
use relance_storage::behaviour::{self, NotRecounted, Recount};
use relance_storage::{scheduling, scoped};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use crate::admin::{
    manual_action, resolve_tenant, Actor, AdminState, ApiError, Reason, TenantQuery,
};
use crate::extract::{page_limit, ApiJson, ApiPath, ApiQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecountCustomer {
    reason: Reason,
    /// Report what differs without writing anything.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct RecountedCustomer {
    /// `repaired`, `unchanged`, or `drifted` (a dry run that found sums to repair).
    status: &'static str,
    subject: String,
    actor: String,
    #[serde(flatten)]
    recount: Recount,
}

/// `POST /v1/customers/{id}/recount-behaviour`.
pub(crate) async fn recount_customer(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TenantQuery>,
    ApiJson(request): ApiJson<RecountCustomer>,
) -> Result<Json<RecountedCustomer>, ApiError> {
    actor.require(AdminRole::Operator)?;
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    // Not `customer_tenant`: it reads the customer's stored behaviour, which may be what no
    // longer reads; the recount locks the customer and reads its sums raw.
    let tenant = resolve_tenant(
        &mut transaction,
        &actor,
        scheduling::IdTable::Customers,
        &customer_id,
        query.tenant,
    )
    .await?;
    let key = scoped(&tenant, &customer_id);
    let mut recounted = behaviour::recount(
        &mut transaction,
        std::slice::from_ref(&key),
        now,
        !request.dry_run,
    )
    .await?;
    if let Some(not) = recounted.not_recounted.first() {
        return Err(ApiError::conflict(format!(
            "the customer's invoice {} does not read, so their behaviour cannot be counted: {}",
            not.invoice_id, not.detail
        )));
    }
    let recount = recounted
        .recounts
        .pop()
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let status = status(&recount, request.dry_run);
    if status == "repaired" {
        record(&mut transaction, &recount, &actor, &request.reason, now).await?;
    }
    transaction.commit().await?;
    if status != "unchanged" {
        tracing::warn!(customer_id = %customer_id, drifted = ?recount.drifted, dry_run = request.dry_run, actor = %actor.0, "Customer's payment behaviour had drifted from their invoices.");
    }
    Ok(Json(RecountedCustomer {
        status,
        subject: customer_id,
        actor: actor.0,
        recount,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecountTenant {
    tenant: String,
    reason: Reason,
    /// The last customer id of the previous page (`next_after` of its answer).
    after: Option<String>,
    /// A JSON number: `100.0` is the integer the contract allows as well as `100`.
    limit: Option<serde_json::Number>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct RecountedPage {
    tenant: String,
    /// Customers recounted in this page.
    checked: usize,
    /// Those whose stored sums differed from their invoices (repaired unless a dry run).
    drifted: Vec<Recount>,
    /// Those left as stored: one of their invoices no longer reads.
    not_recounted: Vec<NotRecounted>,
    dry_run: bool,
    /// Where the next page starts; `null` after the last.
    next_after: Option<String>,
}

/// `POST /v1/behaviour-recounts`: one page of a tenant's customers, in id order, each page in
/// its own transaction so a sweep of a large tenant never holds many locks for long.
pub(crate) async fn recount_tenant(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    ApiJson(request): ApiJson<RecountTenant>,
) -> Result<Json<RecountedPage>, ApiError> {
    actor.require(AdminRole::Operator)?;
    if !actor.sees(&request.tenant) {
        return Err(ApiError::not_found("tenant"));
    }
    let limit = page_limit(request.limit.as_ref().map(whole_number).transpose()?)?;
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let keys = behaviour::customers_after(
        &mut transaction,
        &request.tenant,
        request.after.as_deref(),
        limit,
    )
    .await?;
    let recounted = behaviour::recount(&mut transaction, &keys, now, !request.dry_run).await?;
    let checked = recounted.recounts.len() + recounted.not_recounted.len();
    let drifted: Vec<Recount> = recounted
        .recounts
        .into_iter()
        .filter(|recount| !recount.drifted.is_empty())
        .collect();
    if !request.dry_run {
        for recount in &drifted {
            record(&mut transaction, recount, &actor, &request.reason, now).await?;
        }
    }
    transaction.commit().await?;
    if !drifted.is_empty() {
        tracing::warn!(tenant = %request.tenant, customers = drifted.len(), dry_run = request.dry_run, actor = %actor.0, "Customers' payment behaviour had drifted from their invoices.");
    }
    let full = i64::try_from(keys.len()).unwrap_or(i64::MAX) == limit;
    Ok(Json(RecountedPage {
        tenant: request.tenant,
        checked,
        drifted,
        not_recounted: recounted.not_recounted,
        dry_run: request.dry_run,
        next_after: full
            .then(|| keys.last().map(|(_, id)| id.clone()))
            .flatten(),
    }))
}

/// A JSON number that is a whole number (`36` or `36.0`), as an integer.
fn whole_number(number: &serde_json::Number) -> Result<i64, ApiError> {
    number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|value| value.fract() == 0.0 && value.abs() < 1e15)
                // Whole and well inside i64: the conversion is exact.
                .map(|value| value as i64)
        })
        .ok_or_else(|| ApiError::bad_request(format!("limit must be a whole number, not {number}")))
}

fn status(recount: &Recount, dry_run: bool) -> &'static str {
    match (recount.drifted.is_empty(), dry_run) {
        (true, _) => "unchanged",
        (false, true) => "drifted",
        (false, false) => "repaired",
    }
}

async fn record(
    connection: &mut PgConnection,
    recount: &Recount,
    actor: &Actor,
    reason: &Reason,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    scheduling::record_manual_action(
        connection,
        &manual_action(
            [&recount.tenant, "customer", &recount.customer_id],
            "recount_behaviour",
            actor,
            Some(reason.0.clone()),
            json!({
                "drifted": recount.drifted,
                "stored": recount.stored,
                "recounted": recount.recounted,
            }),
            now,
        ),
    )
    .await?;
    Ok(())
}
