//! The customers table: profiles and payment behaviour.

use std::collections::HashMap;

use relance_domain::{
    BehaviourChange, CustomerFacts, PaymentBehaviour, PreferredChannel, RiskLevel,
};
use sqlx::PgConnection;

use crate::error::StorageError;
use crate::{decode_facts, key_columns, RawFacts, Scoped};

/// Loads and locks the customers among `keys` (tenant, customer id) that exist.
///
/// # Errors
/// [`StorageError`] when the query fails or a stored customer is unreadable.
pub async fn load_for_update(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<HashMap<Scoped, CustomerFacts>, StorageError> {
    Ok(load_for_update_with_behaviour(connection, keys)
        .await?
        .into_iter()
        .map(|(key, (facts, _))| (key, facts))
        .collect())
}

type CustomerRow = (
    String,
    String,
    RawFacts,
    i32,
    i32,
    i64,
    i32,
    String,
    String,
    Option<chrono::NaiveDate>,
);

/// Loads and locks the customers among `keys` that exist, with their stored payment
/// behaviour: locked, it can be written back as whole values ([`write_behaviours`]).
///
/// # Errors
/// [`StorageError`] when the query fails or a stored customer is unreadable.
pub async fn load_for_update_with_behaviour(
    connection: &mut PgConnection,
    keys: &[Scoped],
) -> Result<HashMap<Scoped, (CustomerFacts, PaymentBehaviour)>, StorageError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, ids) = key_columns(keys);
    let rows: Vec<CustomerRow> = sqlx::query_as(
        "SELECT tenant, customer_id, facts, paid_invoices, paid_on_time, total_days_late,
                open_invoices, open_balance::text, lifetime_paid::text, first_invoice_on
         FROM customers
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, customer_id FOR UPDATE",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading customers"))?;
    rows.into_iter()
        .map(
            |(
                tenant,
                id,
                facts,
                paid_invoices,
                paid_on_time,
                total_days_late,
                open_invoices,
                open_balance,
                lifetime_paid,
                first_invoice_on,
            )| {
                let facts = decode_facts("customer", &id, &facts)?;
                let amounts = |text: &str| {
                    serde_json::from_str(text).map_err(|error| StorageError::Unreadable {
                        what: "payment behaviour of customer",
                        id: id.clone(),
                        detail: error.to_string(),
                    })
                };
                let count = |value: i32| u32::try_from(value).unwrap_or(0);
                let behaviour = PaymentBehaviour {
                    paid_invoices: count(paid_invoices),
                    paid_on_time: count(paid_on_time),
                    total_days_late,
                    open_invoices: count(open_invoices),
                    open_balance: amounts(&open_balance)?,
                    lifetime_paid: amounts(&lifetime_paid)?,
                    first_invoice_on,
                };
                Ok(((tenant, id), (facts, behaviour)))
            },
        )
        .collect()
}

/// Writes the payment behaviour of customers locked by [`load_for_update_with_behaviour`] in
/// this transaction, as whole values (their profiles unchanged).
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn write_behaviours(
    connection: &mut PgConnection,
    behaviours: &[(&Scoped, PaymentBehaviour)],
) -> Result<(), StorageError> {
    if behaviours.is_empty() {
        return Ok(());
    }
    let mut tenant = Vec::new();
    let mut customer_id = Vec::new();
    let mut columns = BehaviourColumns::default();
    for ((tenant_of, customer), behaviour) in behaviours {
        tenant.push(tenant_of.clone());
        customer_id.push(customer.clone());
        columns.push(&BehaviourChange::from_nothing_to(behaviour));
    }
    sqlx::query(
        "UPDATE customers SET
             paid_invoices = c.paid_invoices, paid_on_time = c.paid_on_time,
             total_days_late = c.total_days_late, open_invoices = c.open_invoices,
             open_balance = c.open_balance, lifetime_paid = c.lifetime_paid,
             first_invoice_on = c.first_invoice_on, updated_at = now()
         FROM UNNEST($1::text[], $2::text[], $3::int[], $4::int[], $5::bigint[], $6::int[],
             $7::jsonb[], $8::jsonb[], $9::date[])
             AS c(tenant, customer_id, paid_invoices, paid_on_time, total_days_late,
                  open_invoices, open_balance, lifetime_paid, first_invoice_on)
         WHERE customers.tenant = c.tenant AND customers.customer_id = c.customer_id",
    )
    .bind(&tenant)
    .bind(&customer_id)
    .bind(&columns.paid_invoices)
    .bind(&columns.paid_on_time)
    .bind(&columns.total_days_late)
    .bind(&columns.open_invoices)
    .bind(&columns.open_balance)
    .bind(&columns.lifetime_paid)
    .bind(&columns.first_invoice_on)
    .execute(connection)
    .await
    .map_err(StorageError::query("writing customers' payment behaviour"))?;
    Ok(())
}

fn risk_code(risk: RiskLevel) -> &'static str {
    match risk {
        RiskLevel::Low => "low",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
    }
}

fn channel_code(channel: PreferredChannel) -> &'static str {
    match channel {
        PreferredChannel::Email => "email",
        PreferredChannel::Sms => "sms",
        PreferredChannel::PhoneCall => "phone_call",
        PreferredChannel::Letter => "letter",
    }
}

/// Writes customers, adding each one's change of payment behaviour to the sums stored (a new
/// customer starts from nothing), in one statement. Changes add up in the database, so two
/// writers of one customer never overwrite each other's.
///
/// # Errors
/// [`StorageError::Query`] when the upsert fails.
pub async fn upsert(
    connection: &mut PgConnection,
    customers: &[(&CustomerFacts, &BehaviourChange)],
) -> Result<(), StorageError> {
    if customers.is_empty() {
        return Ok(());
    }
    let mut customer_id = Vec::new();
    let mut tenant = Vec::new();
    let mut legal_name = Vec::new();
    let mut first_name = Vec::new();
    let mut last_name = Vec::new();
    let mut email = Vec::new();
    let mut phone = Vec::new();
    let mut locale = Vec::new();
    let mut timezone = Vec::new();
    let mut country = Vec::new();
    let mut vip = Vec::new();
    let mut risk_level = Vec::new();
    let mut customer_since = Vec::new();
    let mut tags = Vec::new();
    let mut preferred_channel = Vec::new();
    let mut changes = BehaviourColumns::default();
    let mut facts = Vec::new();
    for (customer, change) in customers {
        let profile = customer.profile.as_ref().map(|profile| &profile.value);
        customer_id.push(customer.customer_id.clone());
        tenant.push(customer.tenant.clone());
        legal_name.push(profile.map(|profile| profile.legal_name.clone()));
        first_name.push(profile.and_then(|profile| profile.contact.first_name.clone()));
        last_name.push(profile.and_then(|profile| profile.contact.last_name.clone()));
        email.push(profile.and_then(|profile| profile.contact.email.clone()));
        phone.push(profile.and_then(|profile| profile.contact.phone.clone()));
        locale.push(profile.map(|profile| profile.locale.clone()));
        timezone.push(profile.map(|profile| profile.timezone.clone()));
        country.push(profile.map(|profile| profile.country.clone()));
        vip.push(profile.is_some_and(|profile| profile.segment.vip));
        risk_level.push(profile.and_then(|profile| profile.segment.risk_level.map(risk_code)));
        customer_since.push(profile.and_then(|profile| profile.segment.customer_since));
        // Postgres arrays cannot nest arrays of different lengths, so each customer's tags
        // travel as one JSON array and become text[] in SQL.
        tags.push(serde_json::json!(profile
            .map(|profile| profile.segment.tags.clone())
            .unwrap_or_default()));
        preferred_channel
            .push(profile.and_then(|profile| profile.segment.preferred_channel.map(channel_code)));
        changes.push(change);
        // JSON text, without a `serde_json::Value` tree between (as invoices' facts).
        facts.push(serde_json::to_string(customer).unwrap_or_else(|_| "null".to_string()));
    }
    // `customer_since` is what the profile says; readers fall back on `first_invoice_on`.
    sqlx::query(
        "INSERT INTO customers (customer_id, tenant, legal_name, first_name, last_name, email, phone,
             locale, timezone, country, vip, risk_level, customer_since, tags, preferred_channel,
             paid_invoices, paid_on_time, total_days_late, open_invoices,
             open_balance, lifetime_paid, first_invoice_on, facts)
         SELECT customer_id, tenant, legal_name, first_name, last_name, email, phone, locale,
             timezone, country, vip, risk_level, customer_since,
             ARRAY(SELECT jsonb_array_elements_text(tags)), preferred_channel, paid_invoices,
             paid_on_time, total_days_late, open_invoices, open_balance,
             lifetime_paid, first_invoice_on, facts::jsonb
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::text[],
             $13::date[], $14::jsonb[], $15::text[], $16::int[], $17::int[], $18::bigint[],
             $19::int[], $20::jsonb[], $21::jsonb[], $22::date[], $23::text[])
             AS t(customer_id, tenant, legal_name, first_name, last_name, email, phone, locale,
                  timezone, country, vip, risk_level, customer_since, tags, preferred_channel,
                  paid_invoices, paid_on_time, total_days_late, open_invoices,
                  open_balance, lifetime_paid, first_invoice_on, facts)
         ON CONFLICT (tenant, customer_id) DO UPDATE SET
             legal_name = EXCLUDED.legal_name, first_name = EXCLUDED.first_name,
             last_name = EXCLUDED.last_name, email = EXCLUDED.email, phone = EXCLUDED.phone,
             locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, country = EXCLUDED.country,
             vip = EXCLUDED.vip, risk_level = EXCLUDED.risk_level,
             customer_since = EXCLUDED.customer_since, tags = EXCLUDED.tags,
             preferred_channel = EXCLUDED.preferred_channel,
             paid_invoices = customers.paid_invoices + EXCLUDED.paid_invoices,
             paid_on_time = customers.paid_on_time + EXCLUDED.paid_on_time,
             total_days_late = customers.total_days_late + EXCLUDED.total_days_late,
             open_invoices = customers.open_invoices + EXCLUDED.open_invoices,
             open_balance = CASE WHEN EXCLUDED.open_balance = '{}'::jsonb
                 THEN customers.open_balance
                 ELSE relance_add_amounts(customers.open_balance, EXCLUDED.open_balance) END,
             lifetime_paid = CASE WHEN EXCLUDED.lifetime_paid = '{}'::jsonb
                 THEN customers.lifetime_paid
                 ELSE relance_add_amounts(customers.lifetime_paid, EXCLUDED.lifetime_paid) END,
             first_invoice_on = least(customers.first_invoice_on, EXCLUDED.first_invoice_on),
             facts = EXCLUDED.facts, updated_at = now()",
    )
    .bind(&customer_id)
    .bind(&tenant)
    .bind(&legal_name)
    .bind(&first_name)
    .bind(&last_name)
    .bind(&email)
    .bind(&phone)
    .bind(&locale)
    .bind(&timezone)
    .bind(&country)
    .bind(&vip)
    .bind(&risk_level)
    .bind(&customer_since)
    .bind(&tags)
    .bind(&preferred_channel)
    .bind(&changes.paid_invoices)
    .bind(&changes.paid_on_time)
    .bind(&changes.total_days_late)
    .bind(&changes.open_invoices)
    .bind(&changes.open_balance)
    .bind(&changes.lifetime_paid)
    .bind(&changes.first_invoice_on)
    .bind(&facts)
    .execute(connection)
    .await
    .map_err(StorageError::query("writing customers"))?;
    Ok(())
}

/// Adds changes of payment behaviour to existing customers (their profiles unchanged): for
/// facts relance applies to invoices outside ingest. Changes that change nothing are skipped.
///
/// # Errors
/// [`StorageError::Query`] when the update fails.
pub async fn add_behaviour_changes(
    connection: &mut PgConnection,
    changes: &[(Scoped, BehaviourChange)],
) -> Result<(), StorageError> {
    let changed: Vec<_> = changes
        .iter()
        .filter(|(_, change)| !change.is_none())
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut tenant = Vec::new();
    let mut customer_id = Vec::new();
    let mut columns = BehaviourColumns::default();
    for ((tenant_of, customer), change) in changed {
        tenant.push(tenant_of.clone());
        customer_id.push(customer.clone());
        columns.push(change);
    }
    sqlx::query(
        "UPDATE customers SET
             paid_invoices = customers.paid_invoices + c.paid_invoices,
             paid_on_time = customers.paid_on_time + c.paid_on_time,
             total_days_late = customers.total_days_late + c.total_days_late,
             open_invoices = customers.open_invoices + c.open_invoices,
             open_balance = relance_add_amounts(customers.open_balance, c.open_balance),
             lifetime_paid = relance_add_amounts(customers.lifetime_paid, c.lifetime_paid),
             first_invoice_on = least(customers.first_invoice_on, c.first_invoice_on),
             updated_at = now()
         FROM UNNEST($1::text[], $2::text[], $3::int[], $4::int[], $5::bigint[], $6::int[],
             $7::jsonb[], $8::jsonb[], $9::date[])
             AS c(tenant, customer_id, paid_invoices, paid_on_time, total_days_late,
                  open_invoices, open_balance, lifetime_paid, first_invoice_on)
         WHERE customers.tenant = c.tenant AND customers.customer_id = c.customer_id",
    )
    .bind(&tenant)
    .bind(&customer_id)
    .bind(&columns.paid_invoices)
    .bind(&columns.paid_on_time)
    .bind(&columns.total_days_late)
    .bind(&columns.open_invoices)
    .bind(&columns.open_balance)
    .bind(&columns.lifetime_paid)
    .bind(&columns.first_invoice_on)
    .execute(connection)
    .await
    .map_err(StorageError::query(
        "adding to customers' payment behaviour",
    ))?;
    Ok(())
}

/// Behaviour changes as columns, to bind as arrays.
#[derive(Default)]
struct BehaviourColumns {
    paid_invoices: Vec<i32>,
    paid_on_time: Vec<i32>,
    total_days_late: Vec<i64>,
    open_invoices: Vec<i32>,
    open_balance: Vec<serde_json::Value>,
    lifetime_paid: Vec<serde_json::Value>,
    first_invoice_on: Vec<Option<chrono::NaiveDate>>,
}

impl BehaviourColumns {
    fn push(&mut self, change: &BehaviourChange) {
        let count = |value: i64| {
            i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
        };
        self.paid_invoices.push(count(change.paid_invoices));
        self.paid_on_time.push(count(change.paid_on_time));
        self.total_days_late.push(change.total_days_late);
        self.open_invoices.push(count(change.open_invoices));
        self.open_balance
            .push(serde_json::to_value(&change.open_balance).unwrap_or_default());
        self.lifetime_paid
            .push(serde_json::to_value(&change.lifetime_paid).unwrap_or_default());
        self.first_invoice_on.push(change.earliest_issue);
    }
}
