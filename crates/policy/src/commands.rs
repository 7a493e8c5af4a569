//! What a decision becomes: the reminder command or task a sender or a person receives, with
//! its idempotency key, recipient, amounts and deadline. Pure: the scheduler wraps these in
//! envelopes and stores them; the simulator shows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_contracts::commands::{
    CreateTaskV1, MessageChannel, PaymentFailure, PolicyRef, ReminderInvoice, SendReminderV1,
    TaskKind, TaskPriority,
};
use relance_contracts::{
    Code, Currency, Email, Id, InvalidValue, InvoiceNumber, Locale, Money, Name, Phone, Recipient,
    Reference, StepRef, StepTrigger, TemplateRef, Text, TimeZoneName, Tone as ContractTone, Url,
};
use relance_domain::calendar::local_date;
use relance_domain::{CustomerFacts, Invoice};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::consolidate::ReminderGroup;
use crate::model::{Policy, Priority, StepChannel, TaskChannel, Tone};
use crate::plan::{PlannedStep, TemplateChoice, Trigger};

const REMINDER_NAMESPACE: Uuid = Uuid::from_u128(0x2b7e_1516_28ae_d2a6_abf7_1588_09cf_4f3c);

/// A value the contracts refuse (a malformed id, number or currency in the customer's data).
#[derive(Debug, thiserror::Error)]
#[error("cannot build a command about {subject}: {source}")]
pub struct CommandError {
    pub subject: String,
    #[source]
    pub source: InvalidValue,
}

fn build_error(subject: &str) -> impl Fn(InvalidValue) -> CommandError + '_ {
    move |source| CommandError {
        subject: subject.to_string(),
        source,
    }
}

/// What a decided reminder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// A message to the customer (email, SMS).
    Message,
    /// A step of the sequence carried out by a person (a call, a letter, a formal notice).
    Task,
    /// The hand-over to a person after the sequence.
    Escalation,
}

impl ReminderKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Task => "task",
            Self::Escalation => "escalation",
        }
    }
}

/// The command of a reminder.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    Message(Box<SendReminderV1>),
    Task(Box<CreateTaskV1>),
}

/// A reminder, step task or escalation the planner decided, with its command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecidedReminder {
    pub reminder_id: Uuid,
    pub idempotency_key: String,
    pub kind: ReminderKind,
    pub trigger: Trigger,
    pub step_id: String,
    /// The channel code (`email`, `sms`, `phone_call`…).
    pub channel: String,
    pub segment: String,
    pub template: Option<String>,
    pub variant: Option<String>,
    pub experiment: Option<String>,
    /// A person must approve it before it goes.
    pub awaiting_approval: bool,
    pub scheduled_for: DateTime<Utc>,
    pub invoice_ids: Vec<String>,
    /// The step it takes (none for an escalation).
    pub step: Option<PlannedStep>,
    /// What an escalation is (none for a reminder).
    pub escalation: Option<EscalationKind>,
    pub payload: Payload,
    /// relance's own facts this decision records on its invoices (approval requested,
    /// escalated); the planner already applied them to the invoices it planned on.
    pub facts: Vec<relance_domain::InvoiceEvent>,
}

/// An escalation's task, priority and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscalationKind {
    pub task: TaskChannel,
    pub priority: Priority,
    /// `customer_replied` or `sequence_finished`.
    pub cause: String,
}

/// Who the commands are about.
#[derive(Debug, Clone, Copy)]
pub struct CustomerContext<'a> {
    pub tenant: &'a str,
    pub customer_id: &'a str,
    /// The customer's profile, once known (names, contact, locale).
    pub facts: Option<&'a CustomerFacts>,
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

/// The id of the reminder with this key.
pub fn reminder_id(key: &str) -> Uuid {
    Uuid::new_v5(&REMINDER_NAMESPACE, key.as_bytes())
}

/// Who a reminder goes to: the invoice's own contact where it names one, the customer's
/// otherwise, field by field.
pub fn recipient(facts: Option<&CustomerFacts>, invoice: Option<&Invoice>) -> Recipient {
    let profile = facts
        .and_then(|facts| facts.profile.as_ref())
        .map(|profile| &profile.value);
    let override_contact = invoice
        .and_then(|invoice| invoice.contact.as_ref())
        .and_then(|contact| contact.value.clone());
    let pick = |own: Option<String>, customer: Option<String>| own.or(customer);
    let first_name = pick(
        override_contact.as_ref().and_then(|c| c.first_name.clone()),
        profile.and_then(|p| p.contact.first_name.clone()),
    );
    let last_name = pick(
        override_contact.as_ref().and_then(|c| c.last_name.clone()),
        profile.and_then(|p| p.contact.last_name.clone()),
    );
    let email = pick(
        override_contact.as_ref().and_then(|c| c.email.clone()),
        profile.and_then(|p| p.contact.email.clone()),
    );
    let phone = pick(
        override_contact.as_ref().and_then(|c| c.phone.clone()),
        profile.and_then(|p| p.contact.phone.clone()),
    );
    Recipient {
        first_name: first_name.and_then(|name| Name::parse(name).ok()),
        last_name: last_name.and_then(|name| Name::parse(name).ok()),
        company: profile.and_then(|profile| Name::parse(profile.legal_name.clone()).ok()),
        email: email.and_then(|email| Email::parse(email).ok()),
        phone: phone.and_then(|phone| Phone::parse(phone).ok()),
    }
}

fn money(amount_minor: i64, currency: &str, subject: &str) -> Result<Money, CommandError> {
    let fail = build_error(subject);
    Money::new(
        amount_minor.max(0),
        Currency::parse(currency).map_err(&fail)?,
    )
    .map_err(fail)
}

fn step_ref(step: &PlannedStep) -> Result<StepRef, CommandError> {
    Ok(StepRef {
        id: Code::parse(&step.step_id).map_err(build_error(&step.step_id))?,
        index: u32::try_from(step.index).unwrap_or(u32::MAX),
        trigger: match step.trigger {
            Trigger::DueDate => StepTrigger::DueDate,
            Trigger::PaymentFailed { .. } => StepTrigger::PaymentFailed,
        },
        offset_days: step.offset_days,
        tone: match step.tone {
            Tone::Friendly => ContractTone::Friendly,
            Tone::Firm => ContractTone::Firm,
            Tone::Final => ContractTone::Final,
        },
    })
}

fn template_ref(template: &TemplateChoice) -> Result<TemplateRef, CommandError> {
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

fn reminder_invoice(invoice: &Invoice, today: NaiveDate) -> Result<ReminderInvoice, CommandError> {
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

fn task_kind(channel: TaskChannel) -> TaskKind {
    match channel {
        TaskChannel::PhoneCall => TaskKind::PhoneCall,
        TaskChannel::Letter => TaskKind::Letter,
        TaskChannel::FormalNotice => TaskKind::FormalNotice,
        TaskChannel::CollectionAgency => TaskKind::CollectionAgency,
        TaskChannel::ManualReview => TaskKind::ManualReview,
    }
}

/// The reminder (message or step task) of a group of invoices, attempt number `attempt`.
pub fn reminder_for_group(
    policy: &Policy,
    customer: CustomerContext<'_>,
    tz: Tz,
    now: DateTime<Utc>,
    group: &ReminderGroup,
    invoices: &[&Invoice],
    attempt: u32,
) -> Result<DecidedReminder, CommandError> {
    let step = &group.step;
    let key = idempotency_key(
        customer.tenant,
        &step.step_id,
        &step.trigger,
        &group.invoice_ids,
        attempt,
    );
    let reminder_id = reminder_id(&key);
    let today = local_date(tz, now);
    let subject = group.invoice_ids.first().cloned().unwrap_or_default();
    let fail = build_error(&subject);
    let profile = customer
        .facts
        .and_then(|facts| facts.profile.as_ref())
        .map(|profile| &profile.value);
    let recipient = recipient(customer.facts, invoices.first().copied());
    let customer_id = Id::parse(customer.customer_id).map_err(&fail)?;
    let (kind, payload) = if step.channel.is_task() {
        let task = CreateTaskV1 {
            task_id: reminder_id,
            idempotency_key: key.clone(),
            customer_id,
            kind: match step.channel {
                StepChannel::Letter => TaskKind::Letter,
                StepChannel::FormalNotice => TaskKind::FormalNotice,
                _ => TaskKind::PhoneCall,
            },
            priority: if step.tone == Tone::Final {
                TaskPriority::High
            } else {
                TaskPriority::Normal
            },
            due_on: local_date(tz, step.at),
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
            approval: None,
        };
        (ReminderKind::Task, Payload::Task(Box::new(task)))
    } else {
        let failure = match &step.trigger {
            Trigger::PaymentFailed { payment_id } => invoices
                .iter()
                .find_map(|invoice| invoice.payment_failures.get(payment_id))
                .map(|failure| -> Result<PaymentFailure, CommandError> {
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
            customer_id,
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
            timezone: TimeZoneName::parse(tz.name()).map_err(&fail)?,
            segment: Code::parse(&group.segment).map_err(&fail)?,
            step: step_ref(step)?,
            template: template_ref(&group.template)?,
            invoices: invoices
                .iter()
                .map(|invoice| reminder_invoice(invoice, today))
                .collect::<Result<_, _>>()?,
            response_deadline: local_date(tz, step.at)
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
        (ReminderKind::Message, Payload::Message(Box::new(message)))
    };
    Ok(DecidedReminder {
        reminder_id,
        idempotency_key: key,
        kind,
        trigger: step.trigger.clone(),
        step_id: step.step_id.clone(),
        channel: step.channel.code().into(),
        segment: group.segment.clone(),
        template: Some(group.template.template.clone()),
        variant: group.template.variant.clone(),
        experiment: group.template.experiment.clone(),
        awaiting_approval: step.approval,
        scheduled_for: step.at,
        invoice_ids: group.invoice_ids.clone(),
        step: Some(step.clone()),
        escalation: None,
        payload,
        facts: Vec::new(),
    })
}

/// What an escalation is about.
#[derive(Debug, Clone)]
pub struct Escalation<'a> {
    pub segment: &'a str,
    pub at: DateTime<Utc>,
    pub task: TaskChannel,
    pub priority: Priority,
    /// `customer_replied` or `sequence_finished`.
    pub cause: &'a str,
}

/// The task handing an invoice over to a person, attempt number `attempt`.
pub fn escalation_task(
    customer: CustomerContext<'_>,
    tz: Tz,
    now: DateTime<Utc>,
    invoice: &Invoice,
    escalation: &Escalation<'_>,
    attempt: u32,
) -> Result<DecidedReminder, CommandError> {
    let invoice_ids = vec![invoice.invoice_id.clone()];
    let step_id = escalation_step_id(escalation.task);
    let key = idempotency_key(
        customer.tenant,
        &step_id,
        &Trigger::DueDate,
        &invoice_ids,
        attempt,
    );
    let task_id = reminder_id(&key);
    let view = invoice.view(local_date(tz, now));
    let fail = build_error(&invoice.invoice_id);
    let mut amount_due = BTreeMap::new();
    if let Some(currency) = &view.currency {
        amount_due.insert(currency.to_string(), view.amount_due_minor);
    }
    let segment = escalation.segment;
    let data = CreateTaskV1 {
        task_id,
        idempotency_key: key.clone(),
        customer_id: Id::parse(customer.customer_id).map_err(&fail)?,
        kind: task_kind(escalation.task),
        priority: match escalation.priority {
            Priority::Low => TaskPriority::Low,
            Priority::Normal => TaskPriority::Normal,
            Priority::High => TaskPriority::High,
        },
        due_on: local_date(tz, escalation.at),
        invoice_ids: vec![Id::parse(&invoice.invoice_id).map_err(&fail)?],
        amount_due: Some(
            amount_due
                .iter()
                .map(|(currency, amount)| money(*amount, currency, &invoice.invoice_id))
                .collect::<Result<_, _>>()?,
        ),
        contact: Some(recipient(customer.facts, Some(invoice))),
        reason: Text::parse(match escalation.cause {
            "customer_replied" => {
                "The customer answered a reminder: a person takes over.".to_string()
            }
            _ => format!("No payment after the last step of the {segment} sequence."),
        })
        .ok(),
        segment: Code::parse(segment).ok(),
        step: None,
        customer_note: None,
        approval: None,
    };
    Ok(DecidedReminder {
        reminder_id: task_id,
        idempotency_key: key,
        kind: ReminderKind::Escalation,
        trigger: Trigger::DueDate,
        step_id,
        channel: escalation.task.code().into(),
        segment: segment.to_string(),
        template: None,
        variant: None,
        experiment: None,
        awaiting_approval: false,
        scheduled_for: escalation.at,
        invoice_ids,
        step: None,
        escalation: Some(EscalationKind {
            task: escalation.task,
            priority: escalation.priority,
            cause: escalation.cause.to_string(),
        }),
        payload: Payload::Task(Box::new(data)),
        facts: Vec::new(),
    })
}

/// The step id under which an escalation is recorded.
pub fn escalation_step_id(task: TaskChannel) -> String {
    format!("escalation_{}", task.code())
}
