//! The customers table: profiles and payment behaviour.

use std::collections::HashMap;

use relance_domain::{CustomerFacts, PaymentBehaviour, PreferredChannel, RiskLevel};
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
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, ids) = key_columns(keys);
    let rows: Vec<(String, String, RawFacts)> = sqlx::query_as(
        "SELECT tenant, customer_id, facts FROM customers
         WHERE (tenant, customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, customer_id FOR UPDATE",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(connection)
    .await
    .map_err(StorageError::query("loading customers"))?;
    rows.into_iter()
        .map(|(tenant, id, facts)| {
            decode_facts("customer", &id, &facts).map(|facts| ((tenant, id), facts))
        })
        .collect()
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

/// Writes customers with their payment behaviour, in one statement.
///
/// # Errors
/// [`StorageError::Query`] when the upsert fails.
pub async fn upsert(
    connection: &mut PgConnection,
    customers: &[(&CustomerFacts, &PaymentBehaviour)],
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
    let mut paid_invoices = Vec::new();
    let mut paid_on_time = Vec::new();
    let mut total_days_late = Vec::new();
    let mut open_invoices = Vec::new();
    let mut overdue_invoices = Vec::new();
    let mut open_balance = Vec::new();
    let mut lifetime_paid = Vec::new();
    let mut first_invoice_on = Vec::new();
    let mut facts = Vec::new();
    for (customer, behaviour) in customers {
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
        customer_since.push(behaviour.customer_since(profile));
        // Postgres arrays cannot nest arrays of different lengths, so each customer's tags
        // travel as one JSON array and become text[] in SQL.
        tags.push(serde_json::json!(profile
            .map(|profile| profile.segment.tags.clone())
            .unwrap_or_default()));
        preferred_channel
            .push(profile.and_then(|profile| profile.segment.preferred_channel.map(channel_code)));
        paid_invoices.push(i32::try_from(behaviour.paid_invoices).unwrap_or(i32::MAX));
        paid_on_time.push(i32::try_from(behaviour.paid_on_time).unwrap_or(i32::MAX));
        total_days_late.push(behaviour.total_days_late);
        open_invoices.push(i32::try_from(behaviour.open_invoices).unwrap_or(i32::MAX));
        overdue_invoices.push(i32::try_from(behaviour.overdue_invoices).unwrap_or(i32::MAX));
        open_balance.push(serde_json::to_value(&behaviour.open_balance).unwrap_or_default());
        lifetime_paid.push(serde_json::to_value(&behaviour.lifetime_paid).unwrap_or_default());
        first_invoice_on.push(behaviour.first_invoice_on);
        // JSON text, without a `serde_json::Value` tree between (as invoices' facts).
        facts.push(serde_json::to_string(customer).unwrap_or_else(|_| "null".to_string()));
    }
    sqlx::query(
        "INSERT INTO customers (customer_id, tenant, legal_name, first_name, last_name, email, phone,
             locale, timezone, country, vip, risk_level, customer_since, tags, preferred_channel,
             paid_invoices, paid_on_time, total_days_late, open_invoices, overdue_invoices,
             open_balance, lifetime_paid, first_invoice_on, facts)
         SELECT customer_id, tenant, legal_name, first_name, last_name, email, phone, locale,
             timezone, country, vip, risk_level, customer_since,
             ARRAY(SELECT jsonb_array_elements_text(tags)), preferred_channel, paid_invoices,
             paid_on_time, total_days_late, open_invoices, overdue_invoices, open_balance,
             lifetime_paid, first_invoice_on, facts::jsonb
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::text[],
             $13::date[], $14::jsonb[], $15::text[], $16::int[], $17::int[], $18::bigint[],
             $19::int[], $20::int[], $21::jsonb[], $22::jsonb[], $23::date[], $24::text[])
             AS t(customer_id, tenant, legal_name, first_name, last_name, email, phone, locale,
                  timezone, country, vip, risk_level, customer_since, tags, preferred_channel,
                  paid_invoices, paid_on_time, total_days_late, open_invoices, overdue_invoices,
                  open_balance, lifetime_paid, first_invoice_on, facts)
         ON CONFLICT (tenant, customer_id) DO UPDATE SET
             legal_name = EXCLUDED.legal_name, first_name = EXCLUDED.first_name,
             last_name = EXCLUDED.last_name, email = EXCLUDED.email, phone = EXCLUDED.phone,
             locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, country = EXCLUDED.country,
             vip = EXCLUDED.vip, risk_level = EXCLUDED.risk_level,
             customer_since = EXCLUDED.customer_since, tags = EXCLUDED.tags,
             preferred_channel = EXCLUDED.preferred_channel,
             paid_invoices = EXCLUDED.paid_invoices, paid_on_time = EXCLUDED.paid_on_time,
             total_days_late = EXCLUDED.total_days_late, open_invoices = EXCLUDED.open_invoices,
             overdue_invoices = EXCLUDED.overdue_invoices, open_balance = EXCLUDED.open_balance,
             lifetime_paid = EXCLUDED.lifetime_paid, first_invoice_on = EXCLUDED.first_invoice_on,
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
    .bind(&paid_invoices)
    .bind(&paid_on_time)
    .bind(&total_days_late)
    .bind(&open_invoices)
    .bind(&overdue_invoices)
    .bind(&open_balance)
    .bind(&lifetime_paid)
    .bind(&first_invoice_on)
    .bind(&facts)
    .execute(connection)
    .await
    .map_err(StorageError::query("writing customers"))?;
    Ok(())
}
