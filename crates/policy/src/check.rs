//! What a valid policy may still get wrong: steps its own gap or cap rules can never let
//! through, and options that cannot take effect. `relancectl policy check` and the scheduler's
//! start-up report these; the templates a policy names are listed for the template check.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDate, TimeZone, Utc};
use relance_domain::{apply_invoice_event, Currency, InvoiceEvent, InvoiceFact, Money};

use crate::commands::CustomerContext;
use crate::model::{Policy, Segment, Step, StepChannel};
use crate::plan::{Adjustment, CustomerSnapshot, SkipReason};
use crate::simulate::{simulate, TimelineEntry};

/// A template a policy sends, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TemplateUse {
    pub template: String,
    pub channel: StepChannel,
    /// `segment vip, step first_reminder` (for messages).
    pub used_by: String,
}

fn step_templates(step: &Step, used_by: &str, uses: &mut BTreeSet<TemplateUse>) {
    if step.channel.is_task() {
        // A person carries out task steps; no message template is rendered for them.
        return;
    }
    let mut names = vec![step.template.clone()];
    names.extend(step.personal_template.clone());
    if let Some(experiment) = &step.experiment {
        names.extend(
            experiment
                .variants
                .iter()
                .map(|variant| variant.template.clone()),
        );
    }
    for template in names {
        uses.insert(TemplateUse {
            template,
            channel: step.channel,
            used_by: format!("{used_by}, step {}", step.id),
        });
    }
}

/// Every message template the policy names, with its channel.
pub fn templates_used(policy: &Policy) -> Vec<TemplateUse> {
    let mut uses = BTreeSet::new();
    for segment in &policy.segments {
        for step in &segment.steps {
            step_templates(step, &format!("segment {}", segment.id), &mut uses);
        }
    }
    if let Some(sequence) = &policy.payment_failure {
        for step in &sequence.steps {
            step_templates(step, "payment_failure", &mut uses);
        }
    }
    uses.into_iter().collect()
}

/// The steps of `segment` never taken, whatever the weekday of the due date, for a customer
/// with no other invoice: the gap, the cap or the send window always push them past the next
/// step. Each with why.
fn unreachable_steps(policy: &Policy, segment: &Segment) -> Vec<(String, String)> {
    let mut alone = policy.clone();
    alone.segments = vec![Segment {
        when: None,
        ..segment.clone()
    }];
    alone.payment_failure = None;
    let snapshot = CustomerSnapshot {
        customer_id: "policy-check".into(),
        timezone: Some(policy.rules.default_timezone.clone()),
        ..CustomerSnapshot::default()
    };
    let customer = CustomerContext {
        tenant: "policy-check",
        customer_id: "policy-check",
        facts: None,
    };
    let mut ever_taken: BTreeSet<String> = BTreeSet::new();
    let mut why: Vec<(String, String)> = Vec::new();
    // A week of due dates, so every weekday gets its chance.
    for offset in 0..7u64 {
        let Some(due_on) = NaiveDate::from_ymd_opt(2027, 3, 1)
            .and_then(|day| day.checked_add_days(Days::new(offset)))
        else {
            continue;
        };
        let Some(issued_on) = due_on.checked_sub_days(Days::new(60)) else {
            continue;
        };
        let Some(issued_at) = Utc
            .from_local_datetime(&issued_on.and_hms_opt(0, 0, 0).unwrap_or_default())
            .single()
        else {
            continue;
        };
        let Some(total) = Currency::parse("EUR")
            .ok()
            .and_then(|currency| Money::new(10_000, currency).ok())
        else {
            continue;
        };
        let Ok(invoice) = apply_invoice_event(
            None,
            &InvoiceEvent {
                event_id: "issued".into(),
                tenant: "policy-check".into(),
                customer_id: "policy-check".into(),
                invoice_id: "policy-check".into(),
                time: issued_at,
                revision: None,
                fact: InvoiceFact::Issued {
                    number: "CHECK".into(),
                    issued_on,
                    due_on,
                    total,
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            },
        ) else {
            continue;
        };
        let Ok(timeline) = simulate(
            &alone,
            customer,
            &snapshot,
            &[invoice],
            Vec::new(),
            issued_at,
            issued_at + chrono::Duration::days(400),
        ) else {
            continue;
        };
        for entry in timeline {
            match entry {
                TimelineEntry::Step { step, .. } => {
                    ever_taken.insert(step.step_id);
                }
                TimelineEntry::Skipped { step } => {
                    let reason = match step.reason {
                        SkipReason::SupersededByLaterStep { step_id } => {
                            format!("{step_id} was due at the same time")
                        }
                        SkipReason::DelayedPastNextStep { adjustments } => {
                            let causes: Vec<&str> = adjustments
                                .iter()
                                .filter_map(|adjustment| match adjustment {
                                    Adjustment::MinimumGap { .. } => Some("the minimum gap"),
                                    Adjustment::Cap { .. } => Some("the cap on reminders"),
                                    Adjustment::SendWindow => Some("the send window"),
                                    Adjustment::Holiday { .. } => Some("a holiday"),
                                    Adjustment::CatchUp => None,
                                })
                                .collect();
                            format!(
                                "waiting for {} pushes it past the next step",
                                causes.join(" and ")
                            )
                        }
                    };
                    if !why.iter().any(|(id, _)| id == &step.step_id) {
                        why.push((step.step_id, reason));
                    }
                }
                _ => {}
            }
        }
    }
    segment
        .steps
        .iter()
        .filter(|step| !ever_taken.contains(&step.id))
        .map(|step| {
            let reason = why.iter().find(|(id, _)| id == &step.id).map_or_else(
                || "it is never planned".to_string(),
                |(_, reason)| reason.clone(),
            );
            (step.id.clone(), reason)
        })
        .collect()
}

/// What a person should know about a valid policy: steps that can never go out, and options
/// that cannot take effect. Empty when there is nothing to say.
pub fn warnings(policy: &Policy) -> Vec<String> {
    let mut found = Vec::new();
    for segment in &policy.segments {
        for (step, reason) in unreachable_steps(policy, segment) {
            found.push(format!(
                "segment {}: step {step} is never sent for a customer with only this invoice: {reason} (rules.min_days_between_reminders, rules.max_reminders, rules.send_window)",
                segment.id
            ));
        }
    }
    let replying: Vec<String> = policy
        .segments
        .iter()
        .flat_map(|segment| {
            segment
                .steps
                .iter()
                .filter(|step| step.stop_on_reply)
                .map(move |step| format!("{}.{}", segment.id, step.id))
        })
        .chain(policy.payment_failure.iter().flat_map(|sequence| {
            sequence
                .steps
                .iter()
                .filter(|step| step.stop_on_reply)
                .map(|step| format!("payment_failure.{}", step.id))
        }))
        .collect();
    if !replying.is_empty() {
        found.push(format!(
            "stop_on_reply is set on {} but relance does not read customers' replies yet: it has no effect (docs/policy.md)",
            replying.join(", ")
        ));
    }
    found
}
