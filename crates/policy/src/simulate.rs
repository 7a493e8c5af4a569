//! Simulation: the whole planned timeline of an invoice, by asking [`plan`] again and again
//! with a clock that jumps to each action. The scheduler asks the same function with the real
//! clock, so the two agree.

use chrono::{DateTime, Utc};
use relance_domain::Invoice;
use serde::{Deserialize, Serialize};

use crate::model::{Policy, Priority, TaskChannel};
use crate::plan::{
    plan, CustomerSnapshot, Decision, DoneReason, PastAction, PastActionKind, PlannedStep,
    SkippedStep,
};

/// One line of a simulated timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum TimelineEntry {
    Step {
        segment: String,
        step: PlannedStep,
    },
    Skipped {
        step: SkippedStep,
    },
    Escalation {
        at: DateTime<Utc>,
        task: TaskChannel,
        priority: Priority,
        cause: String,
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

/// The timeline of `invoice` from `from` to `until`, given the actions already taken for the
/// customer (`history`). Each step taken is added to the history before the next is planned.
pub fn simulate(
    policy: &Policy,
    customer: &CustomerSnapshot,
    invoice: &Invoice,
    mut history: Vec<PastAction>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<TimelineEntry> {
    let mut timeline = Vec::new();
    let mut now = from;
    for _ in 0..500 {
        let planned = plan(policy, customer, invoice, &history, now);
        for skipped in planned.skipped {
            if !timeline.iter().any(|entry| matches!(entry, TimelineEntry::Skipped { step } if step.step_id == skipped.step_id && step.trigger == skipped.trigger)) {
                timeline.push(TimelineEntry::Skipped { step: skipped });
            }
        }
        match planned.decision {
            Decision::Send { step } => {
                if step.at > until {
                    break;
                }
                now = step.at;
                history.push(PastAction {
                    invoice_ids: vec![invoice.invoice_id.clone()],
                    trigger: step.trigger.clone(),
                    step_id: step.step_id.clone(),
                    at: step.at,
                    kind: PastActionKind::Reminder,
                });
                timeline.push(TimelineEntry::Step {
                    segment: planned.segment,
                    step,
                });
            }
            Decision::Escalate {
                at,
                task,
                priority,
                cause,
            } => {
                if at > until {
                    break;
                }
                now = at;
                history.push(PastAction {
                    invoice_ids: vec![invoice.invoice_id.clone()],
                    trigger: crate::plan::Trigger::DueDate,
                    step_id: format!("escalation_{}", task.code()),
                    at,
                    kind: PastActionKind::Escalation,
                });
                timeline.push(TimelineEntry::Escalation {
                    at,
                    task,
                    priority,
                    cause,
                });
            }
            Decision::Wait {
                until: resumes,
                reason,
            } => {
                timeline.push(TimelineEntry::Waiting {
                    from: now,
                    until: resumes,
                    reason,
                });
                if resumes > until || resumes <= now {
                    break;
                }
                now = resumes;
            }
            Decision::Done { reason } => {
                timeline.push(TimelineEntry::End { at: now, reason });
                break;
            }
        }
    }
    timeline
}
