//! The right to erasure (GDPR article 17): a customer's contact data removed from everything
//! relance keeps, in one transaction, leaving the money and the audit. What stays: amounts,
//! dates, states, ids (the claim itself, which the business keeps for its legal obligations),
//! the suppression of the customer's addresses (honouring a bounce or an opt-out is itself an
//! obligation, and the address is kept for that sole purpose), and the erasure's own audit row.

use sqlx::PgConnection;

use crate::StorageError;

/// The text that replaces a customer's legal name.
pub const ERASED: &str = "[erased]";

/// What an erasure changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub customers: u64,
    pub invoices: u64,
    pub reminders: u64,
    pub deliveries: u64,
    pub interactions: u64,
    pub customer_actions: u64,
    pub queued_commands: u64,
}

/// Removes the contact data of `customer_id` of `tenant` and holds its dunning for good (it
/// can no longer be contacted). Returns `None` when the customer does not exist for `tenant`.
///
/// # Errors
/// [`StorageError::Query`] when a statement fails.
pub async fn erase_customer(
    connection: &mut PgConnection,
    tenant: &str,
    customer_id: &str,
    by: &str,
) -> Result<Option<Erased>, StorageError> {
    let mut erased = Erased::default();
    let run = |sql: &'static str| sqlx::query(sql).bind(tenant).bind(customer_id);
    erased.customers = run(
        "UPDATE customers SET
             legal_name = CASE WHEN legal_name IS NULL THEN NULL ELSE '[erased]' END,
             first_name = NULL, last_name = NULL, email = NULL, phone = NULL,
             held = true, held_until = NULL, held_by = $3, hold_reason = 'erased',
             facts = CASE WHEN jsonb_typeof(facts->'profile') = 'object'
                 THEN jsonb_set(jsonb_set(facts, '{profile,value,legal_name}', '\"[erased]\"'),
                                '{profile,value,contact}',
                                '{\"first_name\": null, \"last_name\": null, \"email\": null, \"phone\": null}')
                 ELSE facts END,
             updated_at = now()
         WHERE tenant = $1 AND customer_id = $2",
    )
    .bind(by)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("erasing a customer"))?
    .rows_affected();
    if erased.customers == 0 {
        return Ok(None);
    }
    erased.invoices = run("UPDATE invoices AS i SET
             facts = CASE WHEN jsonb_typeof(c.facts->'description') = 'object'
                          THEN jsonb_set(c.facts, '{description,value}', 'null') ELSE c.facts END,
             updated_at = now()
         FROM (SELECT invoice_id,
                      CASE WHEN jsonb_typeof(facts->'contact') = 'object'
                           THEN jsonb_set(facts, '{contact,value}', 'null') ELSE facts END AS facts
               FROM invoices WHERE tenant = $1 AND customer_id = $2) AS c
         WHERE i.tenant = $1 AND i.invoice_id = c.invoice_id")
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("erasing a customer's invoices"))?
    .rows_affected();
    // Commands keep their shape (a delivery's command is read again on a retry) with the
    // recipient's data gone.
    let recipient = "jsonb_set(command, '{data,recipient}', '{}'::jsonb)";
    erased.reminders = sqlx::query(&format!(
        "UPDATE reminders SET command = CASE WHEN command->'data' ? 'recipient' THEN {recipient} ELSE command END,
                              updated_at = now()
         WHERE tenant = $1 AND customer_id = $2"
    ))
    .bind(tenant)
    .bind(customer_id)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("erasing a customer's reminders"))?
    .rows_affected();
    erased.deliveries = sqlx::query(&format!(
        "UPDATE deliveries SET recipient = NULL, subject = NULL, error_message = NULL,
             command = CASE WHEN command->'data' ? 'recipient' THEN {recipient} ELSE command END,
             status = CASE WHEN status IN ('pending', 'in_flight') THEN 'skipped' ELSE status END,
             skip_reason = CASE WHEN status IN ('pending', 'in_flight') THEN 'customer_erased' ELSE skip_reason END,
             finished_at = CASE WHEN status IN ('pending', 'in_flight') THEN now() ELSE finished_at END,
             next_attempt_at = CASE WHEN status IN ('pending', 'in_flight') THEN NULL ELSE next_attempt_at END,
             updated_at = now()
         WHERE tenant = $1 AND customer_id = $2"
    ))
    .bind(tenant)
    .bind(customer_id)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("erasing a customer's deliveries"))?
    .rows_affected();
    erased.interactions =
        run("UPDATE interactions SET user_agent = NULL WHERE tenant = $1 AND customer_id = $2")
            .execute(&mut *connection)
            .await
            .map_err(StorageError::query("erasing a customer's interactions"))?
            .rows_affected();
    erased.customer_actions = run(
        "UPDATE customer_actions SET reference = NULL, message = NULL
         WHERE tenant = $1 AND customer_id = $2",
    )
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("erasing a customer's answers"))?
    .rows_affected();
    // Commands not yet published would carry the data out: they go.
    erased.queued_commands = run(
        "DELETE FROM outbox WHERE published_at IS NULL AND cancel_keys && ARRAY(
             SELECT tenant || ' ' || invoice_id FROM invoices
             WHERE tenant = $1 AND customer_id = $2)",
    )
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query(
        "cancelling a customer's queued commands",
    ))?
    .rows_affected();
    sqlx::query(
        "UPDATE reminders SET status = 'cancelled', updated_at = now()
         WHERE tenant = $1 AND customer_id = $2 AND status IN ('awaiting_approval')",
    )
    .bind(tenant)
    .bind(customer_id)
    .execute(&mut *connection)
    .await
    .map_err(StorageError::query("cancelling a customer's approvals"))?;
    Ok(Some(erased))
}
