//! `relancectl policy simulate`: the planned timeline of an invoice for a customer.

use std::path::PathBuf;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use relance_domain::{
    apply_customer_event, apply_invoice_event, Contact, Currency, CustomerEvent, CustomerFacts,
    CustomerProfile, Invoice, InvoiceEvent, InvoiceFact, Money, RiskLevel, Segment,
};
use relance_policy::commands::CustomerContext;
use relance_policy::{
    parse_policy, simulate, Adjustment, CustomerSnapshot, DoneReason, Risk, SkipReason,
    TimelineEntry, Trigger,
};

use crate::amounts::{format_amount, parse_amount};

/// What to simulate.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The policy file.
    #[arg(long, default_value = "config/policies/default.yaml")]
    policy: PathBuf,
    /// The invoice's due date, YYYY-MM-DD.
    #[arg(long)]
    due_on: String,
    /// The invoice's issue date (default: 30 days before the due date).
    #[arg(long)]
    issued_on: Option<String>,
    /// The amount due, as written (1234.56).
    #[arg(long, default_value = "1000.00")]
    amount: String,
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// The customer's id (it decides A/B variants).
    #[arg(long, default_value = "cus_simulated")]
    customer_id: String,
    #[arg(long)]
    vip: bool,
    /// low, medium or high.
    #[arg(long)]
    risk: Option<String>,
    /// When the relationship started, YYYY-MM-DD.
    #[arg(long)]
    customer_since: Option<String>,
    #[arg(long)]
    on_time_percent: Option<u32>,
    #[arg(long)]
    average_days_late: Option<i64>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value = "FR")]
    country: String,
    /// IANA time zone (default: the policy's).
    #[arg(long)]
    timezone: Option<String>,
    /// Start of the simulation, YYYY-MM-DD (default: the issue date).
    #[arg(long)]
    from: Option<String>,
    /// Days to simulate.
    #[arg(long, default_value_t = 120)]
    days: u64,
    /// A recurring payment failed on this date, YYYY-MM-DD.
    #[arg(long)]
    payment_failed_on: Option<String>,
    /// The customer promised to pay by this date, YYYY-MM-DD.
    #[arg(long)]
    promise: Option<String>,
    /// The invoice is disputed (and stays so).
    #[arg(long)]
    disputed: bool,
    /// The customer's language (it picks the templates' locale).
    #[arg(long, default_value = "fr-FR")]
    locale: String,
}

fn date(text: &str, flag: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("--{flag} {text:?}: expected YYYY-MM-DD"))
}

fn apply(
    invoice: Option<&Invoice>,
    id: &str,
    time: DateTime<Utc>,
    fact: InvoiceFact,
) -> Result<Invoice, String> {
    apply_invoice_event(
        invoice,
        &InvoiceEvent {
            event_id: id.into(),
            tenant: "simulation".into(),
            customer_id: "customer".into(),
            invoice_id: "invoice".into(),
            time,
            revision: None,
            fact,
        },
    )
    .map_err(|rejection| rejection.to_string())
}

fn describe(adjustments: &[Adjustment]) -> String {
    adjustments
        .iter()
        .map(|adjustment| match adjustment {
            Adjustment::CatchUp => "its date had passed".to_string(),
            Adjustment::SendWindow => "moved into the send window".to_string(),
            Adjustment::Holiday { date } => format!("moved past the holiday of {date}"),
            Adjustment::MinimumGap { .. } => "waits for the minimum gap".to_string(),
            Adjustment::Cap { count, window_days } => {
                format!("waits for the cap of {count} in {window_days} days")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn done(reason: &DoneReason) -> String {
    match reason {
        DoneReason::Closed => "closed: nothing is owed".into(),
        DoneReason::AwaitingInvoice => "waiting for the invoice".into(),
        DoneReason::Paused { reason } => format!("paused ({})", reason.code()),
        DoneReason::Escalated => "handed over to a person".into(),
        DoneReason::SequenceFinished => "sequence finished".into(),
        DoneReason::NoSendableDay => {
            "no day to send on within a year (check the send window and holidays)".into()
        }
    }
}

/// The simulated customer's profile, as the billing system would publish it.
fn profile(
    arguments: &SimulateArgs,
    customer: &CustomerSnapshot,
    zone_name: &str,
    at: DateTime<Utc>,
) -> Result<CustomerFacts, String> {
    apply_customer_event(
        None,
        &CustomerEvent {
            event_id: "profile".into(),
            tenant: "simulation".into(),
            customer_id: "customer".into(),
            time: at,
            revision: None,
            profile: CustomerProfile {
                legal_name: "Simulated customer".into(),
                contact: Contact::default(),
                locale: arguments.locale.clone(),
                timezone: zone_name.to_string(),
                country: arguments.country.to_uppercase(),
                segment: Segment {
                    vip: arguments.vip,
                    risk_level: customer.risk_level.map(|risk| match risk {
                        Risk::Low => RiskLevel::Low,
                        Risk::Medium => RiskLevel::Medium,
                        Risk::High => RiskLevel::High,
                    }),
                    customer_since: customer.customer_since,
                    tags: customer.tags.clone(),
                    preferred_channel: None,
                },
            },
        },
    )
    .map_err(|rejection| rejection.to_string())
}

/// Runs the simulation and prints it.
///
/// # Errors
/// A message naming the bad argument or the policy problems.
pub fn run(arguments: &SimulateArgs, json: bool) -> Result<(), String> {
    let name = arguments.policy.display().to_string();
    let text = std::fs::read_to_string(&arguments.policy)
        .map_err(|error| format!("{name}: cannot be read: {error}"))?;
    let policy = parse_policy(&name, &text).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let currency = arguments.currency.to_uppercase();
    let amount = parse_amount(&arguments.amount, &currency)?;
    let due_on = date(&arguments.due_on, "due-on")?;
    let issued_on = match &arguments.issued_on {
        Some(text) => date(text, "issued-on")?,
        None => due_on.checked_sub_days(Days::new(30)).unwrap_or(due_on),
    };
    let zone_name = arguments
        .timezone
        .clone()
        .unwrap_or_else(|| policy.rules.default_timezone.clone());
    let tz: Tz = zone_name
        .parse()
        .map_err(|_| format!("--timezone {zone_name:?}: not an IANA time zone"))?;
    let start_of = |day: NaiveDate| {
        tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let money = Money::new(
        amount,
        Currency::parse(currency.clone()).map_err(|error| error.to_string())?,
    )
    .map_err(|error| error.to_string())?;
    let mut invoice = apply(
        None,
        "issued",
        start_of(issued_on),
        InvoiceFact::Issued {
            number: "SIMULATED".into(),
            issued_on,
            due_on,
            total: money.clone(),
            order_reference: None,
            payment_url: None,
            contact: None,
            description: None,
        },
    )?;
    if let Some(failed_on) = &arguments.payment_failed_on {
        let at = start_of(date(failed_on, "payment-failed-on")?) + chrono::Duration::hours(6);
        invoice = apply(
            Some(&invoice),
            "failed",
            at,
            InvoiceFact::PaymentFailed {
                payment_id: "payment".into(),
                amount: money.clone(),
                failed_at: at,
                failure_code: "card_declined".into(),
                recurring: true,
                attempt: 1,
                next_retry_at: None,
            },
        )?;
    }
    if let Some(promise) = &arguments.promise {
        let promised_on = date(promise, "promise")?;
        // The promise is made when the simulation starts, through the same window the
        // customer's action page offers: from tomorrow to max_promise_days ahead.
        let made_on = match &arguments.from {
            Some(text) => date(text, "from")?,
            None => issued_on,
        };
        let latest = made_on
            .checked_add_days(Days::new(u64::from(
                policy.rules.pauses.max_promise_days.max(1),
            )))
            .unwrap_or(made_on);
        if promised_on <= made_on || promised_on > latest {
            return Err(format!(
                "--promise {promised_on}: a customer can promise a date from {} to {latest} when asked on {made_on} (pauses.max_promise_days = {} in {name})",
                made_on.succ_opt().unwrap_or(made_on),
                policy.rules.pauses.max_promise_days
            ));
        }
        invoice = apply(
            Some(&invoice),
            "promise",
            start_of(made_on),
            InvoiceFact::PromisedToPay {
                promised_on,
                grace_days: policy.rules.pauses.promise_grace_days,
            },
        )?;
    }
    if arguments.disputed {
        invoice = apply(
            Some(&invoice),
            "dispute",
            start_of(issued_on),
            InvoiceFact::Disputed {
                dispute_id: "dispute".into(),
                resolved: false,
                amount: None,
            },
        )?;
    }
    let customer = CustomerSnapshot {
        customer_id: arguments.customer_id.clone(),
        vip: arguments.vip,
        risk_level: match arguments.risk.as_deref() {
            None => None,
            Some("low") => Some(Risk::Low),
            Some("medium") => Some(Risk::Medium),
            Some("high") => Some(Risk::High),
            Some(other) => return Err(format!("--risk {other:?}: expected low, medium or high")),
        },
        customer_since: arguments
            .customer_since
            .as_deref()
            .map(|text| date(text, "customer-since"))
            .transpose()?,
        on_time_percent: arguments.on_time_percent,
        average_days_late: arguments.average_days_late,
        tags: arguments.tags.clone(),
        country: Some(arguments.country.to_uppercase()),
        timezone: Some(zone_name.clone()),
        last_reply_at: None,
        hold: None,
    };
    let from = match &arguments.from {
        Some(text) => start_of(date(text, "from")?),
        None => start_of(issued_on),
    };
    let until = from + chrono::Duration::days(i64::try_from(arguments.days).unwrap_or(3650));
    let facts = profile(arguments, &customer, &zone_name, start_of(issued_on))?;
    let timeline = simulate(
        &policy,
        CustomerContext {
            tenant: "simulation",
            customer_id: "customer",
            facts: Some(&facts),
        },
        &customer,
        std::slice::from_ref(&invoice),
        Vec::new(),
        from,
        until,
    )
    .map_err(|error| error.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&timeline).map_err(|error| error.to_string())?
        );
        return Ok(());
    }
    let local = |at: DateTime<Utc>| {
        at.with_timezone(&tz)
            .format("%a %Y-%m-%d %H:%M")
            .to_string()
    };
    let segment = timeline.iter().find_map(|entry| match entry {
        TimelineEntry::Step { segment, .. } => Some(segment.clone()),
        _ => None,
    });
    println!(
        "Policy {} v{} · segment {} · customer {} ({zone_name}, {})",
        policy.policy,
        policy.version,
        segment.as_deref().unwrap_or("-"),
        customer.customer_id,
        arguments.country.to_uppercase()
    );
    println!(
        "Invoice of {} issued {issued_on}, due {}",
        format_amount(amount, &currency),
        due_on.format("%a %Y-%m-%d")
    );
    println!();
    println!(
        "{:<22} {:<24} {:<14} {:<44} {:<9} Notes",
        format!("When ({zone_name})"),
        "Step",
        "Channel",
        "Template (variant)",
        "Tone"
    );
    for entry in &timeline {
        match entry {
            TimelineEntry::Step { step, template, .. } => {
                let shown = match &template.variant {
                    Some(variant) => format!("{} ({variant})", template.template),
                    None => template.template.clone(),
                };
                let mut notes = describe(&step.adjustments);
                if step.personal_template.as_deref() == Some(template.template.as_str()) {
                    notes = if notes.is_empty() {
                        "personal template: a large amount".into()
                    } else {
                        format!("personal template: a large amount; {notes}")
                    };
                }
                if step.approval {
                    notes = if notes.is_empty() {
                        "needs approval".into()
                    } else {
                        format!("needs approval; {notes}")
                    };
                }
                if let Trigger::PaymentFailed { .. } = step.trigger {
                    notes = if notes.is_empty() {
                        "payment failure sequence".into()
                    } else {
                        format!("payment failure sequence; {notes}")
                    };
                }
                let tone = format!("{:?}", step.tone).to_lowercase();
                println!(
                    "{:<22} {:<24} {:<14} {:<44} {:<9} {notes}",
                    local(step.at),
                    step.step_id,
                    step.channel.code(),
                    shown,
                    tone
                );
            }
            TimelineEntry::Escalation {
                at,
                task,
                priority,
                cause,
                ..
            } => {
                let priority = format!("{priority:?}").to_lowercase();
                println!(
                    "{:<22} {:<24} {:<14} {:<44} {:<9} task for a person ({})",
                    local(*at),
                    "escalation",
                    task.code(),
                    "-",
                    priority,
                    cause.replace('_', " ")
                );
            }
            TimelineEntry::Skipped { step } => {
                let why = match &step.reason {
                    SkipReason::SupersededByLaterStep { step_id } => {
                        format!("{step_id} was due too")
                    }
                    SkipReason::DelayedPastNextStep { adjustments } => format!(
                        "it would go out after the next step ({})",
                        describe(adjustments)
                    ),
                };
                println!(
                    "{:<22} {:<24} skipped: {why}",
                    local(step.nominal_at),
                    step.step_id
                );
            }
            TimelineEntry::Waiting { until, reason, .. } => println!(
                "{:<22} {:<24} {} until {}",
                "",
                "(waiting)",
                done(reason),
                local(*until)
            ),
            TimelineEntry::End { at, reason } => {
                println!("{:<22} {:<24} {}", local(*at), "(end)", done(reason))
            }
        }
    }
    Ok(())
}
