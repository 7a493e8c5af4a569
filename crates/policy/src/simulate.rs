//! Simulation: a customer's whole planned timeline, by running the scheduler's own loop
//! ([`plan_customer`]) again and again with a clock that jumps to each next action. The
//! scheduler runs the same loop with the real clock, so the two agree: consolidation, personal
//! templates for large amounts, the gap and the caps across invoices, escalations.

use chrono::{DateTime, Utc};
use relance_domain::{apply_invoice_event, Invoice, InvoiceFact};
use serde::{Deserialize, Serialize};

use crate::commands::{CommandError, CustomerContext, DecidedReminder, ReminderKind};
use crate::customer::{plan_customer, PastReminder};
use crate::model::{Policy, Priority, TaskChannel};
use crate::plan::{
    CustomerSnapshot, Decision, DoneReason, PastAction, PastActionKind, PlannedStep, SkippedStep,
    TemplateChoice, Trigger,
};

/// One line of a simulated timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum TimelineEntry {
    /// A reminder or a step task, about these invoices, with the template it uses.
    Step {
        segment: String,
        step: Box<PlannedStep>,
        template: TemplateChoice,
        invoice_ids: Vec<String>,
    },
    Skipped {
        step: SkippedStep,
    },
    Escalation {
        at: DateTime<Utc>,
        task: TaskChannel,
        priority: Priority,
        cause: String,
        invoice_ids: Vec<String>,
    },
    Waiting {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        reason: DoneReason,
    },
    End {
        at: DateTime<Utc>,
        reason: DoneReason,
    },
}

fn past(decided: &DecidedReminder) -> PastReminder {
    PastReminder {
        action: PastAction {
            invoice_ids: decided.invoice_ids.clone(),
            trigger: decided.trigger.clone(),
            step_id: decided.step_id.clone(),
            at: decided.scheduled_for,
            kind: if decided.kind == ReminderKind::Escalation {
                PastActionKind::Escalation
            } else {
                PastActionKind::Reminder
            },
        },
        active: true,
    }
}

fn entry(decided: &DecidedReminder) -> Option<TimelineEntry> {
    if let Some(step) = &decided.step {
        return Some(TimelineEntry::Step {
            segment: decided.segment.clone(),
            step: Box::new(step.clone()),
            template: TemplateChoice {
                template: decided.template.clone().unwrap_or_default(),
                variant: decided.variant.clone(),
                experiment: decided.experiment.clone(),
            },
            invoice_ids: decided.invoice_ids.clone(),
        });
    }
    let escalation = decided.escalation.as_ref()?;
    Some(TimelineEntry::Escalation {
        at: decided.scheduled_for,
        task: escalation.task,
        priority: escalation.priority,
        cause: escalation.cause.clone(),
        invoice_ids: decided.invoice_ids.clone(),
    })
}

/// The timeline of a customer's `invoices` from `from` to `until`, given the reminders already
/// decided (`history`). Every approval asked for is assumed given at once.
///
/// # Errors
/// [`CommandError`] when the customer's data cannot form a valid command.
pub fn simulate(
    policy: &Policy,
    customer: CustomerContext<'_>,
    snapshot: &CustomerSnapshot,
    invoices: &[Invoice],
    mut history: Vec<PastReminder>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<TimelineEntry>, CommandError> {
    let mut invoices = invoices.to_vec();
    let mut timeline = Vec::new();
    let mut now = from;
    for _ in 0..500 {
        let mut planned = plan_customer(policy, customer, snapshot, &invoices, &history, now)?;
        for decided in &planned.decided {
            history.push(past(decided));
            if let Some(entry) = entry(decided) {
                timeline.push(entry);
            }
        }
        if planned
            .decided
            .iter()
            .any(|decided| decided.awaiting_approval)
        {
            // The approval is taken as given: plan what follows on the invoices as they are,
            // not paused for approval (the decisions are in the history now).
            planned.plans =
                plan_customer(policy, customer, snapshot, &invoices, &history, now)?.plans;
        }
        // Escalations change the invoice; approvals are taken as given.
        for event in planned.decided.iter().flat_map(|decided| &decided.facts) {
            if matches!(event.fact, InvoiceFact::Escalated { .. }) {
                if let Some(invoice) = invoices
                    .iter_mut()
                    .find(|i| i.invoice_id == event.invoice_id)
                {
                    if let Ok(updated) = apply_invoice_event(Some(invoice), event) {
                        *invoice = updated;
                    }
                }
            }
        }
        for plan in planned.plans.values() {
            for skipped in &plan.skipped {
                let known = timeline.iter().any(|entry| {
                    matches!(entry, TimelineEntry::Skipped { step } if step.step_id == skipped.step_id && step.trigger == skipped.trigger)
                });
                if !known {
                    timeline.push(TimelineEntry::Skipped {
                        step: skipped.clone(),
                    });
                }
            }
        }
        let next = planned
            .plans
            .values()
            .filter_map(|plan| plan.decision.next_time().map(|at| (at, &plan.decision)))
            .filter(|(at, _)| *at > now)
            .min_by_key(|(at, _)| *at);
        match next {
            None => {
                let reason = planned
                    .plans
                    .values()
                    .find_map(|plan| match &plan.decision {
                        Decision::Done { reason } => Some(reason.clone()),
                        _ => None,
                    })
                    .unwrap_or(DoneReason::SequenceFinished);
                timeline.push(TimelineEntry::End { at: now, reason });
                break;
            }
            Some((at, Decision::Wait { reason, .. })) => {
                timeline.push(TimelineEntry::Waiting {
                    from: now,
                    until: at,
                    reason: reason.clone(),
                });
                if at > until {
                    break;
                }
                now = at;
            }
            Some((at, _)) => {
                if at > until {
                    break;
                }
                now = at;
            }
        }
    }
    Ok(timeline)
}

/// A trigger shown to people.
pub fn trigger_name(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::DueDate => "due date",
        Trigger::PaymentFailed { .. } => "failed payment",
    }
}
