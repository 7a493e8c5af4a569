//! From a command and what the guard kept to what a customer reads: the template context
//! (names, amounts and dates written for the locale, signed links) and the outgoing message.
//! Pure, apart from the signature of links.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use relance_channels::{Mailbox, OutgoingEmail, OutgoingSms};
use relance_config::{LinkSettings, SenderIdentity};
use relance_contracts::commands::{ReminderInvoice, SendReminderV1};
use relance_contracts::{PaymentMethod, PaymentMethodKind, Tone};
use relance_delivery::text::{header_text, one_line};
use relance_links::{LinkAction, LinkClaims, LinkSigner};
use relance_templates::format::{date, money};
use relance_templates::{
    Company, Contact, InvoiceLine, Links, MessageContext, RenderedMessage, StepInfo, Texts,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Everything a message is made of.
pub struct Inputs<'a> {
    pub tenant: &'a str,
    pub command: &'a SendReminderV1,
    /// The invoices the guard kept, with their amounts due now.
    pub invoices: &'a [ReminderInvoice],
    pub identity: &'a SenderIdentity,
    pub texts: &'a Texts,
    pub links: &'a LinkSettings,
    pub signer: &'a LinkSigner,
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
}

/// When links of a message stop working: at least `min_valid_days` from now, until
/// `valid_days_after_deadline` after the deadline, never beyond `max_valid_days`.
pub fn link_expiry(links: &LinkSettings, now: DateTime<Utc>, deadline: NaiveDate) -> i64 {
    let days = |count: u32| chrono::Duration::days(i64::from(count));
    let earliest = now + days(links.min_valid_days);
    let after_deadline = deadline
        .checked_add_days(Days::new(u64::from(links.valid_days_after_deadline)))
        .and_then(|day| day.and_hms_opt(23, 59, 59))
        .map(|at| at.and_utc())
        .unwrap_or(earliest);
    let latest = now + days(links.max_valid_days);
    earliest.max(after_deadline).min(latest).timestamp()
}

/// `1 234,56 €`, or several currencies joined with ` + `.
fn total_due(invoices: &[ReminderInvoice], locale: &str) -> String {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for invoice in invoices {
        *totals
            .entry(invoice.amount_due.currency().as_str().to_string())
            .or_default() += invoice.amount_due.amount_minor();
    }
    totals
        .iter()
        .map(|(currency, amount)| money(*amount, currency, locale))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn payment_method(method: &PaymentMethod, locale: &str) -> String {
    let french = locale.starts_with("fr");
    let brand = method.brand.as_deref().map(|brand| {
        let mut characters = brand.chars();
        characters
            .next()
            .map(|first| first.to_uppercase().collect::<String>() + characters.as_str())
            .unwrap_or_default()
    });
    let kind = match (method.kind, french) {
        (PaymentMethodKind::Card, true) => "carte",
        (PaymentMethodKind::Card, false) => "card",
        (PaymentMethodKind::DirectDebit, true) => "prélèvement",
        (PaymentMethodKind::DirectDebit, false) => "direct debit",
        (PaymentMethodKind::BankTransfer, true) => "virement",
        (PaymentMethodKind::BankTransfer, false) => "bank transfer",
        (PaymentMethodKind::Wallet, true) => "portefeuille",
        (PaymentMethodKind::Wallet, false) => "wallet",
        (PaymentMethodKind::Other, true) => "moyen de paiement",
        (PaymentMethodKind::Other, false) => "payment method",
    };
    let named = match (brand, french) {
        (Some(brand), true) => format!("{kind} {brand}"),
        (Some(brand), false) => format!("{brand} {kind}"),
        (None, _) => kind.to_string(),
    };
    match (&method.last4, french) {
        (Some(last4), true) => format!("{named} se terminant par {last4}"),
        (Some(last4), false) => format!("{named} ending in {last4}"),
        (None, _) => named,
    }
}

/// The template context of the message.
pub fn context(inputs: &Inputs<'_>) -> MessageContext {
    let command = inputs.command;
    let locale = command.locale.as_str();
    let first_invoice = inputs
        .invoices
        .first()
        .map(|invoice| invoice.invoice_id.as_str().to_string())
        .unwrap_or_default();
    let exp = link_expiry(inputs.links, inputs.now, command.response_deadline);
    let link = |action: LinkAction, target: Option<String>| {
        inputs.signer.url(
            &inputs.links.public_base_url,
            &LinkClaims {
                t: inputs.tenant.to_string(),
                i: first_invoice.clone(),
                c: command.customer_id.as_str().to_string(),
                r: command.reminder_id,
                a: action,
                exp,
                u: target,
            },
        )
    };
    let lines: Vec<InvoiceLine> = inputs
        .invoices
        .iter()
        .map(|invoice| InvoiceLine {
            number: one_line(invoice.number.as_str()),
            issued_on: date(invoice.issued_on, locale),
            due_on: date(invoice.due_on, locale),
            days_late: inputs
                .today
                .signed_duration_since(invoice.due_on)
                .num_days()
                .max(0),
            amount_due: money(
                invoice.amount_due.amount_minor(),
                invoice.amount_due.currency().as_str(),
                locale,
            ),
            total: money(
                invoice.total.amount_minor(),
                invoice.total.currency().as_str(),
                locale,
            ),
            partially_settled: settled_minor(invoice) > 0 && invoice.amount_due.amount_minor() > 0,
            settled: match settled_minor(invoice) {
                0 => String::new(),
                settled => money(settled, invoice.total.currency().as_str(), locale),
            },
            order_reference: invoice
                .order_reference
                .as_ref()
                .map(|reference| reference.as_str().to_string()),
            payment_url: invoice
                .payment_url
                .as_ref()
                .map(|url| link(LinkAction::Click, Some(url.as_str().to_string()))),
        })
        .collect();
    let names = relance_delivery::recipient::names(&command.recipient);
    let identity = inputs.identity;
    let optional = |value: &str| Some(value.trim().to_string()).filter(|value| !value.is_empty());
    let failure = command.payment_failure.as_ref();
    MessageContext {
        locale: locale.to_string(),
        contact: Contact {
            first_name: command
                .recipient
                .first_name
                .as_ref()
                .map(|name| one_line(name.as_str())),
            last_name: command
                .recipient
                .last_name
                .as_ref()
                .map(|name| one_line(name.as_str())),
            full_name: names.full.clone(),
            company: command
                .recipient
                .company
                .as_ref()
                .map(|name| one_line(name.as_str())),
            greeting_name: names.greeting,
        },
        company: Company {
            name: identity.company_name.clone(),
            email: identity.company_email.clone(),
            phone: optional(&identity.company_phone),
            website: optional(&identity.company_website),
            address: optional(&identity.company_address),
        },
        invoice: lines.first().cloned().unwrap_or_default(),
        consolidated: lines.len() > 1,
        any_partially_settled: lines.iter().any(|line| line.partially_settled),
        invoices: lines,
        total_due: total_due(inputs.invoices, locale),
        days_late: inputs
            .invoices
            .iter()
            .map(|invoice| {
                inputs
                    .today
                    .signed_duration_since(invoice.due_on)
                    .num_days()
                    .max(0)
            })
            .max()
            .unwrap_or(0),
        deadline: date(command.response_deadline, locale),
        links: Links {
            pay: link(LinkAction::Pay, None),
            already_paid: link(LinkAction::AlreadyPaid, None),
            dispute: link(LinkAction::Dispute, None),
            promise: link(LinkAction::PromiseToPay, None),
            payment_plan: link(LinkAction::PaymentPlan, None),
            pixel: link(LinkAction::Open, None),
        },
        payment_options: inputs.texts.payment_options.clone(),
        consequences: inputs.texts.consequences.clone(),
        step: StepInfo {
            id: command.step.id.as_str().to_string(),
            tone: match command.step.tone {
                Tone::Friendly => "friendly",
                Tone::Firm => "firm",
                Tone::Final => "final",
            }
            .to_string(),
        },
        update_payment_method_url: failure
            .and_then(|failure| failure.update_payment_method_url.as_ref())
            .map(|url| link(LinkAction::Click, Some(url.as_str().to_string()))),
        payment_method: failure
            .and_then(|failure| failure.payment_method.as_ref())
            .map(|method| payment_method(method, locale)),
    }
}

/// Lower-case hex SHA-256 of what the customer receives (HTML and text of an email).
pub fn body_sha256(message: &RenderedMessage) -> String {
    let mut hasher = Sha256::new();
    if let Some(html) = &message.html {
        hasher.update(html.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(message.text.as_bytes());
    hex::encode(hasher.finalize())
}

/// The correlation values every provider gets: ids only, never personal data.
fn metadata(tenant: &str, command: &SendReminderV1) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    metadata.insert("tenant".to_string(), tenant.chars().take(80).collect());
    metadata.insert("reminder".to_string(), command.reminder_id.to_string());
    if let Some(invoice) = command.invoices.first() {
        metadata.insert(
            "invoice".to_string(),
            invoice.invoice_id.as_str().chars().take(80).collect(),
        );
    }
    metadata.insert(
        "step".to_string(),
        command.step.id.as_str().chars().take(80).collect(),
    );
    metadata
}

/// The email to hand to a provider.
pub fn email(
    send_id: Uuid,
    tenant: &str,
    command: &SendReminderV1,
    identity: &SenderIdentity,
    rendered: &RenderedMessage,
    now: DateTime<Utc>,
) -> Option<OutgoingEmail> {
    let address = command.recipient.email.as_ref()?.as_str().to_string();
    let names = relance_delivery::recipient::names(&command.recipient);
    Some(OutgoingEmail {
        send_id,
        from: Mailbox::new(
            identity.from_email.clone(),
            Some(header_text(&identity.from_name)),
        ),
        reply_to: Some(identity.reply_to.trim().to_string())
            .filter(|reply_to| !reply_to.is_empty()),
        to: Mailbox::new(address, names.display().map(|name| header_text(&name))),
        // Data in the subject (an invoice number) must not pass for an encoded word.
        subject: header_text(&rendered.subject),
        html: rendered.html.clone().unwrap_or_default(),
        text: rendered.text.clone(),
        tag: Some(format!(
            "dunning-{}-{}",
            command.policy.id.as_str(),
            command.step.id.as_str()
        )),
        metadata: metadata(tenant, command),
        date: now,
    })
}

/// The SMS to hand to a provider.
pub fn sms(
    send_id: Uuid,
    command: &SendReminderV1,
    rendered: &RenderedMessage,
    now: DateTime<Utc>,
) -> Option<OutgoingSms> {
    Some(OutgoingSms {
        send_id,
        to: command.recipient.phone.as_ref()?.as_str().to_string(),
        body: rendered.text.clone(),
        date: now,
    })
}

/// What is settled of an invoice (paid or credited): its total less what is due, never
/// negative (an amount due above the total is late fees or a correction, not a refund).
fn settled_minor(invoice: &ReminderInvoice) -> i64 {
    invoice
        .total
        .amount_minor()
        .saturating_sub(invoice.amount_due.amount_minor())
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn settings() -> LinkSettings {
        LinkSettings {
            public_base_url: "https://relance.acme.example".into(),
            signing_keys_file: String::new(),
            min_valid_days: 14,
            valid_days_after_deadline: 30,
            max_valid_days: 120,
        }
    }

    #[test]
    fn links_live_from_two_weeks_to_a_month_after_the_deadline_within_120_days() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 5, 8, 0, 0)
            .single()
            .unwrap_or_default();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let at = |date: NaiveDate| {
            date.and_hms_opt(23, 59, 59)
                .unwrap_or_default()
                .and_utc()
                .timestamp()
        };
        assert_eq!(
            link_expiry(&settings(), now, day(2026, 12, 12)),
            at(day(2027, 1, 11))
        );
        // A deadline in the past still leaves the customer two weeks.
        assert_eq!(
            link_expiry(&settings(), now, day(2026, 1, 1)),
            (now + chrono::Duration::days(14)).timestamp()
        );
        // Never beyond 120 days.
        assert_eq!(
            link_expiry(&settings(), now, day(2027, 12, 1)),
            (now + chrono::Duration::days(120)).timestamp()
        );
    }

    #[test]
    fn payment_methods_are_named_as_customers_know_them() {
        let card = PaymentMethod {
            kind: PaymentMethodKind::Card,
            brand: Some("visa".into()),
            last4: Some("4242".into()),
            expiry: None,
        };
        assert_eq!(
            payment_method(&card, "fr-FR"),
            "carte Visa se terminant par 4242"
        );
        assert_eq!(payment_method(&card, "en"), "Visa card ending in 4242");
        let debit = PaymentMethod {
            kind: PaymentMethodKind::DirectDebit,
            brand: None,
            last4: None,
            expiry: None,
        };
        assert_eq!(payment_method(&debit, "en-GB"), "direct debit");
    }
}
