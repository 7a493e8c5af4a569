//! Turning the policy's decisions into reminder commands and tasks: the contract events the
//! sender and people receive, and the rows that record them.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_contracts::commands::{
    Approval, CreateTaskV1, MessageChannel, PaymentFailure, PolicyRef, ReminderInvoice,
    SendReminderV1, TaskKind, TaskPriority,
};
use relance_contracts::{
    Code, Currency, Email, Envelope, EventPayload, Id, InvalidValue, InvoiceNumber, Locale, Money,
    Name, Phone, Recipient, Reference, StepRef, StepTrigger, TemplateRef, Text, TimeZoneName, Tone,
    Url,
};
use relance_domain::Invoice;
use relance_events::{cloudevent_headers, EventBuildError};
use relance_policy::{
    PlannedStep, Policy, Priority, ReminderGroup, StepChannel, TaskChannel, TemplateChoice, Trigger,
};
use relance_storage::outbox::OutboxRecord;
use relance_storage::scheduling::{ReminderRow, SchedulingCustomer};

/// The `source` of what the scheduler publishes.
pub const SOURCE: &str = "urn:relance:scheduler";

const REMINDER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2b7e_1516_28ae_d2a6_abf7_1588_09cf_4f3c);

/// What every command of one customer needs.
pub struct CommandContext<'a> {
    pub customer: &'a SchedulingCustomer,
    pub policy: &'a Policy,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub reminders_topic: &'a str,
    pub tasks_topic: &'a str,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The trigger as text, for keys and rows.
pub fn trigger_key(trigger: &Trigger) -> String {
    match trigger {
        Trigger::DueDate => "due_date".into(),
        Trigger::PaymentFailed { payment_id } => format!("payment_failed:{payment_id}"),
    }
}

/// The idempotency key of a reminder: tenant, step, attempt and a hash of the trigger and the
/// sorted invoice ids. The same decision always gets the same key.
pub fn idempotency_key(
    tenant: &str,
    step_id: &str,
    trigger: &Trigger,
    invoice_ids: &[String],
    attempt: u32,
) -> String {
    let mut sorted = invoice_ids.to_vec();
    sorted.sort();
    let material = format!("{}\u{1f}{}", trigger_key(trigger), sorted.join("\u{1f}"));
    format!(
        "{tenant}:{step_id}:{attempt}:{:016x}",
        fnv1a(material.as_bytes())
    )
}

/// Which attempt a reminder of `step_id` for these invoices is: one more than the reminders
/// (of any status) already decided for the same step, trigger and any of these invoices.
pub fn attempt_of(
    history: &[ReminderRow],
    step_id: &str,
    trigger: &Trigger,
    invoice_ids: &[String],
) -> u32 {
    let trigger = serde_json::to_value(trigger).unwrap_or_default();
    let earlier = history
        .iter()
        .filter(|row| row.step_id == step_id && row.trigger == trigger)
        .filter(|row| row.invoice_ids.iter().any(|id| invoice_ids.contains(id)))
        .count();
    u32::try_from(earlier).unwrap_or(u32::MAX - 1) + 1
}

fn build_error(subject: &str) -> impl Fn(InvalidValue) -> EventBuildError + '_ {
    move |source| EventBuildError {
        subject: subject.to_string(),
        source,
    }
}

fn recipient(customer: &SchedulingCustomer, invoice: Option<&Invoice>) -> Recipient {
    let profile = customer
        .facts
        .profile
        .as_ref()
        .map(|profile| &profile.value);
    let override_contact = invoice
        .and_then(|invoice| invoice.contact.as_ref())
        .and_then(|contact| contact.value.clone());
    let first_name = override_contact
        .as_ref()
        .and_then(|contact| contact.first_name.clone())
        .or_else(|| profile.and_then(|profile| profile.contact.first_name.clone()));
    let last_name = override_contact
        .as_ref()
        .and_then(|contact| contact.last_name.clone())
        .or_else(|| profile.and_then(|profile| profile.contact.last_name.clone()));
    let email = override_contact
        .as_ref()
        .and_then(|contact| contact.email.clone())
        .or_else(|| profile.and_then(|profile| profile.contact.email.clone()));
    let phone = override_contact
        .as_ref()
        .and_then(|contact| contact.phone.clone())
        .or_else(|| profile.and_then(|profile| profile.contact.phone.clone()));
    Recipient {
        first_name: first_name.and_then(|name| Name::parse(name).ok()),
        last_name: last_name.and_then(|name| Name::parse(name).ok()),
        company: profile.and_then(|profile| Name::parse(profile.legal_name.clone()).ok()),
        email: email.and_then(|email| Email::parse(email).ok()),
        phone: phone.and_then(|phone| Phone::parse(phone).ok()),
    }
}

fn money(amount_minor: i64, currency: &str, subject: &str) -> Result<Money, EventBuildError> {
    let fail = build_error(subject);
    Money::new(
        amount_minor.max(0),
        Currency::parse(currency).map_err(&fail)?,
    )
    .map_err(fail)
}

fn step_ref(step: &PlannedStep) -> Result<StepRef, EventBuildError> {
    Ok(StepRef {
        id: Code::parse(&step.step_id).map_err(build_error(&step.step_id))?,
        index: u32::try_from(step.index).unwrap_or(u32::MAX),
        trigger: match step.trigger {
            Trigger::DueDate => StepTrigger::DueDate,
            Trigger::PaymentFailed { .. } => StepTrigger::PaymentFailed,
        },
        offset_days: step.offset_days,
        tone: match step.tone {
            relance_policy::Tone::Friendly => Tone::Friendly,
            relance_policy::Tone::Firm => Tone::Firm,
            relance_policy::Tone::Final => Tone::Final,
        },
    })
}

fn template_ref(template: &TemplateChoice) -> Result<TemplateRef, EventBuildError> {
    let fail = build_error(&template.template);
    Ok(TemplateRef {
        id: Code::parse(&template.template).map_err(&fail)?,
        variant: template
            .variant
            .as_ref()
            .map(Code::parse)
            .transpose()
            .map_err(&fail)?,
        experiment: template
            .experiment
            .as_ref()
            .map(Code::parse)
            .transpose()
            .map_err(&fail)?,
    })
}

fn reminder_invoice(
    invoice: &Invoice,
    today: NaiveDate,
) -> Result<ReminderInvoice, EventBuildError> {
    let view = invoice.view(today);
    let subject = invoice.invoice_id.as_str();
    let fail = build_error(subject);
    let currency = view
        .currency
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let due_on = view.due_on.unwrap_or(today);
    Ok(ReminderInvoice {
        invoice_id: Id::parse(&invoice.invoice_id).map_err(&fail)?,
        number: InvoiceNumber::parse(
            invoice
                .number
                .as_ref()
                .map_or(invoice.invoice_id.clone(), |number| number.value.clone()),
        )
        .map_err(&fail)?,
        issued_on: invoice
            .issued_on
            .as_ref()
            .map_or(due_on, |issued| issued.value),
        due_on,
        total: money(view.total_minor, &currency, subject)?,
        amount_due: money(view.amount_due_minor, &currency, subject)?,
        order_reference: invoice
            .order_reference
            .as_ref()
            .and_then(|reference| reference.value.clone())
            .and_then(|reference| Reference::parse(reference).ok()),
        payment_url: invoice
            .payment_url
            .as_ref()
            .and_then(|url| url.value.clone())
            .and_then(|url| Url::parse(url).ok()),
    })
}

fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

fn task_kind(channel: TaskChannel) -> TaskKind {
    match channel {
        TaskChannel::PhoneCall => TaskKind::PhoneCall,
        TaskChannel::Letter => TaskKind::Letter,
        TaskChannel::FormalNotice => TaskKind::FormalNotice,
        TaskChannel::CollectionAgency => TaskKind::CollectionAgency,
        TaskChannel::ManualReview => TaskKind::ManualReview,
    }
}

fn envelope_record<T: EventPayload>(
    context: &CommandContext<'_>,
    id: uuid::Uuid,
    topic: &str,
    subject: &str,
    invoice_ids: &[String],
    data: T,
) -> Result<(serde_json::Value, OutboxRecord), EventBuildError> {
    let customer = context.customer;
    let fail = build_error(subject);
    let envelope = Envelope::new(
        Id::parse(id.to_string()).map_err(&fail)?,
        SOURCE,
        Id::parse(&customer.tenant).map_err(&fail)?,
        context.now,
        customer.customer_id.clone(),
        data,
    )
    .with_subject(subject.to_string());
    let json = serde_json::to_value(&envelope).unwrap_or_default();
    let record = OutboxRecord {
        topic: topic.to_string(),
        key: Some(customer.customer_id.as_bytes().to_vec()),
        payload: serde_json::to_vec(&json).unwrap_or_default(),
        headers: cloudevent_headers(T::EVENT_TYPE, &id.to_string(), &customer.tenant),
        cancel_keys: invoice_ids.to_vec(),
        reminder_id: Some(id),
    };
    Ok((json, record))
}

/// The outbox record of a command stored in a reminder row (for approved reminders).
pub fn record_of(row: &ReminderRow) -> OutboxRecord {
    let event_type = row
        .command
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    OutboxRecord {
        topic: row.topic.clone(),
        key: Some(row.customer_id.as_bytes().to_vec()),
        payload: serde_json::to_vec(&row.command).unwrap_or_default(),
        headers: cloudevent_headers(event_type, &row.reminder_id.to_string(), &row.tenant),
        cancel_keys: row.invoice_ids.clone(),
        reminder_id: Some(row.reminder_id),
    }
}

/// Adds the approval to a stored reminder command.
pub fn with_approval(
    command: &mut serde_json::Value,
    approved_by: &str,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), EventBuildError> {
    let fail = build_error(approved_by);
    let approval = Approval {
        approved_by: Name::parse(approved_by).map_err(&fail)?,
        approved_at: at,
        note: note.map(Text::parse).transpose().map_err(&fail)?,
    };
    if command.get("type").and_then(serde_json::Value::as_str) == Some(SendReminderV1::EVENT_TYPE) {
        command["data"]["approval"] = serde_json::to_value(approval).unwrap_or_default();
    }
    Ok(())
}

/// A decided reminder: its row, and the record to publish unless it awaits approval.
pub struct Decided {
    pub row: ReminderRow,
    pub record: OutboxRecord,
}

/// The reminder (message or step task) of a group of invoices.
pub fn reminder_for_group(
    context: &CommandContext<'_>,
    group: &ReminderGroup,
    invoices: &[&Invoice],
    history: &[ReminderRow],
) -> Result<Decided, EventBuildError> {
    let customer = context.customer;
    let step = &group.step;
    let attempt = attempt_of(history, &step.step_id, &step.trigger, &group.invoice_ids);
    let key = idempotency_key(
        &customer.tenant,
        &step.step_id,
        &step.trigger,
        &group.invoice_ids,
        attempt,
    );
    let reminder_id = uuid::Uuid::new_v5(&REMINDER_NAMESPACE, key.as_bytes());
    let today = local_date(context.tz, context.now);
    let subject = group.invoice_ids.first().cloned().unwrap_or_default();
    let fail = build_error(&subject);
    let policy = context.policy;
    let profile = customer
        .facts
        .profile
        .as_ref()
        .map(|profile| &profile.value);
    let recipient = recipient(customer, invoices.first().copied());
    let (kind, topic, command, record) = if step.channel.is_task() {
        let task = CreateTaskV1 {
            task_id: reminder_id,
            idempotency_key: key.clone(),
            customer_id: Id::parse(&customer.customer_id).map_err(&fail)?,
            kind: match step.channel {
                StepChannel::Letter => TaskKind::Letter,
                StepChannel::FormalNotice => TaskKind::FormalNotice,
                _ => TaskKind::PhoneCall,
            },
            priority: if step.tone == relance_policy::Tone::Final {
                TaskPriority::High
            } else {
                TaskPriority::Normal
            },
            due_on: local_date(context.tz, step.at),
            invoice_ids: group
                .invoice_ids
                .iter()
                .map(Id::parse)
                .collect::<Result<_, _>>()
                .map_err(&fail)?,
            amount_due: Some(
                group
                    .totals
                    .iter()
                    .map(|(currency, total)| money(*total, currency, &subject))
                    .collect::<Result<_, _>>()?,
            ),
            contact: Some(recipient),
            reason: Text::parse(format!(
                "Step {} of the {} sequence.",
                step.step_id, group.segment
            ))
            .ok(),
            segment: Some(Code::parse(&group.segment).map_err(&fail)?),
            step: Some(step_ref(step)?),
            customer_note: None,
        };
        let (json, record) = envelope_record(
            context,
            reminder_id,
            context.tasks_topic,
            &subject,
            &group.invoice_ids,
            task,
        )?;
        ("task", context.tasks_topic, json, record)
    } else {
        let failure = match &step.trigger {
            Trigger::PaymentFailed { payment_id } => invoices
                .iter()
                .find_map(|invoice| invoice.payment_failures.get(payment_id))
                .map(|failure| -> Result<PaymentFailure, EventBuildError> {
                    Ok(PaymentFailure {
                        payment_id: Id::parse(payment_id).map_err(&fail)?,
                        failure_code: Code::parse(&failure.failure_code).map_err(&fail)?,
                        failure_message: None,
                        payment_method: None,
                        update_payment_method_url: None,
                    })
                })
                .transpose()?,
            Trigger::DueDate => None,
        };
        let message = SendReminderV1 {
            reminder_id,
            idempotency_key: key.clone(),
            customer_id: Id::parse(&customer.customer_id).map_err(&fail)?,
            attempt,
            channel: if step.channel == StepChannel::Sms {
                MessageChannel::Sms
            } else {
                MessageChannel::Email
            },
            recipient,
            locale: profile
                .and_then(|profile| Locale::parse(profile.locale.clone()).ok())
                .unwrap_or(Locale::parse("en").map_err(&fail)?),
            timezone: TimeZoneName::parse(context.tz.name()).map_err(&fail)?,
            segment: Code::parse(&group.segment).map_err(&fail)?,
            step: step_ref(step)?,
            template: template_ref(&group.template)?,
            invoices: invoices
                .iter()
                .map(|invoice| reminder_invoice(invoice, today))
                .collect::<Result<_, _>>()?,
            response_deadline: local_date(context.tz, step.at)
                .checked_add_days(Days::new(u64::from(policy.rules.response_deadline_days)))
                .unwrap_or(today),
            scheduled_for: step.at,
            policy: PolicyRef {
                id: Code::parse(&policy.policy).map_err(&fail)?,
                version: policy.version,
            },
            payment_failure: failure,
            approval: None,
        };
        let (json, record) = envelope_record(
            context,
            reminder_id,
            context.reminders_topic,
            &subject,
            &group.invoice_ids,
            message,
        )?;
        ("message", context.reminders_topic, json, record)
    };
    Ok(Decided {
        row: ReminderRow {
            reminder_id,
            idempotency_key: key,
            tenant: customer.tenant.clone(),
            customer_id: customer.customer_id.clone(),
            invoice_ids: group.invoice_ids.clone(),
            kind: kind.into(),
            trigger: serde_json::to_value(&step.trigger).unwrap_or_default(),
            step_id: step.step_id.clone(),
            channel: step.channel.code().into(),
            segment: group.segment.clone(),
            template: Some(group.template.template.clone()),
            variant: group.template.variant.clone(),
            experiment: group.template.experiment.clone(),
            status: if step.approval {
                "awaiting_approval"
            } else {
                "queued"
            }
            .into(),
            scheduled_for: step.at,
            policy_id: policy.policy.clone(),
            policy_version: i32::try_from(policy.version).unwrap_or(i32::MAX),
            topic: topic.to_string(),
            command,
            decided_by: None,
            decided_at: None,
            decision_note: None,
        },
        record,
    })
}

/// The task handing an invoice over to a person.
#[allow(clippy::too_many_arguments)]
pub fn escalation_task(
    context: &CommandContext<'_>,
    invoice: &Invoice,
    segment: &str,
    at: DateTime<Utc>,
    task: TaskChannel,
    priority: Priority,
    cause: &str,
    history: &[ReminderRow],
) -> Result<Decided, EventBuildError> {
    let customer = context.customer;
    let invoice_ids = vec![invoice.invoice_id.clone()];
    let step_id = format!("escalation_{}", task.code());
    let attempt = attempt_of(history, &step_id, &Trigger::DueDate, &invoice_ids);
    let key = idempotency_key(
        &customer.tenant,
        &step_id,
        &Trigger::DueDate,
        &invoice_ids,
        attempt,
    );
    let task_id = uuid::Uuid::new_v5(&REMINDER_NAMESPACE, key.as_bytes());
    let today = local_date(context.tz, context.now);
    let view = invoice.view(today);
    let fail = build_error(&invoice.invoice_id);
    let mut amount_due = BTreeMap::new();
    if let Some(currency) = &view.currency {
        amount_due.insert(currency.to_string(), view.amount_due_minor);
    }
    let data = CreateTaskV1 {
        task_id,
        idempotency_key: key.clone(),
        customer_id: Id::parse(&customer.customer_id).map_err(&fail)?,
        kind: task_kind(task),
        priority: match priority {
            Priority::Low => TaskPriority::Low,
            Priority::Normal => TaskPriority::Normal,
            Priority::High => TaskPriority::High,
        },
        due_on: local_date(context.tz, at),
        invoice_ids: vec![Id::parse(&invoice.invoice_id).map_err(&fail)?],
        amount_due: Some(
            amount_due
                .iter()
                .map(|(currency, amount)| money(*amount, currency, &invoice.invoice_id))
                .collect::<Result<_, _>>()?,
        ),
        contact: Some(recipient(customer, Some(invoice))),
        reason: Text::parse(match cause {
            "customer_replied" => {
                "The customer answered a reminder: a person takes over.".to_string()
            }
            _ => format!("No payment after the last step of the {segment} sequence."),
        })
        .ok(),
        segment: Code::parse(segment).ok(),
        step: None,
        customer_note: None,
    };
    let (command, record) = envelope_record(
        context,
        task_id,
        context.tasks_topic,
        &invoice.invoice_id,
        &invoice_ids,
        data,
    )?;
    Ok(Decided {
        row: ReminderRow {
            reminder_id: task_id,
            idempotency_key: key,
            tenant: customer.tenant.clone(),
            customer_id: customer.customer_id.clone(),
            invoice_ids,
            kind: "escalation".into(),
            trigger: serde_json::to_value(Trigger::DueDate).unwrap_or_default(),
            step_id,
            channel: task.code().into(),
            segment: segment.to_string(),
            template: None,
            variant: None,
            experiment: None,
            status: "queued".into(),
            scheduled_for: at,
            policy_id: context.policy.policy.clone(),
            policy_version: i32::try_from(context.policy.version).unwrap_or(i32::MAX),
            topic: context.tasks_topic.to_string(),
            command,
            decided_by: None,
            decided_at: None,
            decision_note: None,
        },
        record,
    })
}
