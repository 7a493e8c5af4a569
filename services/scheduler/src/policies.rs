//! The policies of every tenant: `default.yaml` and `<tenant>.yaml` (shared with the tracker,
//! which reads promise limits from them).

use chrono::{DateTime, Utc};
use relance_storage::scheduling::{self, PolicyRecorded, PolicyScope};
use relance_storage::StorageError;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub use relance_policy::PolicySet;

/// The SHA-256 of a policy's content as loaded (not of its file: comments and layout do not
/// count).
pub fn fingerprint(policy: &relance_policy::Policy) -> String {
    let content = serde_json::to_vec(policy).unwrap_or_default();
    format!("{:x}", Sha256::digest(content))
}

/// Records what every policy says now and, for those whose content changed since the last
/// start, marks the open invoices they govern for planning at `now`, so that a new policy
/// applies at once rather than at each invoice's next planned action. A tenant's own policy
/// that appears or disappears re-plans that tenant (it was planned with another policy).
/// Returns each policy's outcome by policy key (`default` or the tenant), removed tenants'
/// policies as `Changed`.
///
/// # Errors
/// [`StorageError`] when the database cannot be read or written.
pub async fn replan_changed(
    pool: &PgPool,
    policies: &PolicySet,
    now: DateTime<Utc>,
) -> Result<Vec<(String, PolicyRecorded)>, StorageError> {
    let own: Vec<String> = policies
        .all()
        .map(|(key, _)| key.to_string())
        .filter(|key| key != "default")
        .collect();
    let mut connection = pool.acquire().await.map_err(|source| StorageError::Query {
        context: "acquiring a connection to record the policies",
        source,
    })?;
    let known_deployment = scheduling::policies_recorded(&mut connection).await?;
    let mut outcomes = Vec::new();
    for (key, policy) in policies.all() {
        let scope = if key == "default" {
            PolicyScope::DefaultExcept(&own)
        } else {
            PolicyScope::Tenant(key)
        };
        let recorded = scheduling::record_policy(
            &mut connection,
            key,
            &fingerprint(policy),
            scope,
            known_deployment,
            now,
        )
        .await?;
        outcomes.push((key.to_string(), recorded));
    }
    for (tenant, invoices_marked) in
        scheduling::forget_removed_policies(&mut connection, &own, now).await?
    {
        outcomes.push((tenant, PolicyRecorded::Changed { invoices_marked }));
    }
    Ok(outcomes)
}
