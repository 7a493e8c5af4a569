//! The admin API's dead letters: list them, and replay them once their cause is fixed. A replay
//! publishes each original record again, unchanged, to the topic it was read from (with a
//! `relance_replay_of` header), through the outbox; the consumer then processes it as any
//! record — applied if the cause is gone, dead-lettered again with the reason otherwise.

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use relance_storage::dead_letters::{self, DeadLetterFilter, DeadLetterSummary};
use relance_storage::{outbox, scheduling};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{manual_action, Actor, AdminState, ApiError};

/// Most dead letters one replay request publishes; ask again for more.
const REPLAY_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    reason: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    not_replayed: bool,
    limit: Option<i64>,
}

/// `GET /v1/dead-letters`: newest first.
pub(crate) async fn list(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<ListQuery>,
) -> Result<Json<Vec<DeadLetterSummary>>, ApiError> {
    // Dead letters are records the services could not read: many have no tenant at all.
    actor.require(relance_config::AdminRole::Operator)?;
    actor.require_all_tenants()?;
    let filter = DeadLetterFilter {
        ids: Vec::new(),
        reason: query.reason,
        since: query.since,
        until: query.until,
        not_replayed: query.not_replayed,
    };
    let limit = crate::extract::page_limit(query.limit)?;
    Ok(Json(dead_letters::list(&state.pool, &filter, limit).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    #[serde(default)]
    ids: Option<Vec<i64>>,
    reason: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Why: what was fixed.
    note: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Replayed {
    replayed: usize,
    ids: Vec<i64>,
    actor: String,
}

/// `POST /v1/dead-letters/replay`: at least one of ids, reason, since, until.
pub(crate) async fn replay(
    State(state): State<AdminState>,
    Extension(actor): Extension<Actor>,
    crate::extract::ApiJson(request): crate::extract::ApiJson<ReplayRequest>,
) -> Result<Json<Replayed>, ApiError> {
    actor.require(relance_config::AdminRole::Operator)?;
    actor.require_all_tenants()?;
    if request.ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request(
            "ids: name at least one, or leave it out",
        ));
    }
    let filter = DeadLetterFilter {
        ids: request.ids.unwrap_or_default(),
        reason: request.reason,
        since: request.since,
        until: request.until,
        not_replayed: false,
    };
    if filter.is_empty() {
        return Err(ApiError::bad_request(
            "name the dead letters to replay: ids, reason, since or until",
        ));
    }
    if request.note.trim().is_empty() {
        return Err(ApiError::bad_request("note: say what was fixed"));
    }
    let now = state.clock.now();
    let mut transaction = state.pool.begin().await?;
    let taken = dead_letters::take_for_replay(&mut transaction, &filter, REPLAY_LIMIT).await?;
    let ids: Vec<i64> = taken.iter().map(|(id, _)| *id).collect();
    let records: Vec<_> = taken.into_iter().map(|(_, record)| record).collect();
    outbox::enqueue(&mut transaction, &records).await?;
    if !ids.is_empty() {
        scheduling::record_manual_action(
            &mut transaction,
            &manual_action(
                [
                    "-",
                    "dead_letter",
                    &ids.first().map(ToString::to_string).unwrap_or_default(),
                ],
                "replay",
                &actor,
                Some(request.note),
                json!({"ids": ids}),
                now,
            ),
        )
        .await?;
    }
    transaction.commit().await?;
    state.relay.notify_one();
    tracing::info!(count = ids.len(), actor = %actor.0, "Dead letters replayed.");
    Ok(Json(Replayed {
        replayed: ids.len(),
        ids,
        actor: actor.0,
    }))
}
