//! One planning loop for a customer, shared by the scheduler and the simulator: every decision
//! about a customer at an instant — the reminders due (consolidated), the step tasks and
//! escalations, their commands with idempotency keys and recipients, relance's own facts they
//! record, and each invoice's next action.
//!
//! A reminder is a contact with the customer: the loop decides one per round and plans again
//! with it in the history, so the minimum gap and the caps hold across all of a customer's
//! invoices decided at once (two steps of two invoices due in the same tick never both go).
//! Escalations hand an invoice to a person; they are not contacts and all go.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use relance_domain::calendar::local_date;
use relance_domain::{apply_invoice_event, EscalationTarget, Invoice, InvoiceEvent, InvoiceFact};
use serde::Serialize;

use crate::commands::{
    escalation_task, reminder_for_group, CommandError, CustomerContext, DecidedReminder, Escalation,
};
use crate::consolidate::{consolidate, DueStep};
use crate::model::{Policy, TaskChannel};
use crate::plan::{
    customer_zone, plan, CustomerSnapshot, Decision, PastAction, PastActionKind, Plan, Trigger,
};

/// A reminder already decided for the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastReminder {
    pub action: PastAction,
    /// It counts: for the gap and the caps, and as a step taken. A reminder cancelled (the
    /// invoice was paid before it went) or deferred (the sender held it back for a reason that
    /// passes: a cap, a pause) does not; its step is planned again.
    pub active: bool,
}

/// Everything decided about a customer at one instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CustomerPlan {
    /// Reminders, step tasks and escalations to record and publish, in order, each with the
    /// facts it records.
    pub decided: Vec<DecidedReminder>,
    /// Each invoice's plan once the decisions are taken: its next action and why.
    pub plans: BTreeMap<String, Plan>,
}

/// Which attempt a reminder of `step_id` for these invoices is: one more than the reminders
/// (counted or not) already decided for the same step, trigger and any of these invoices.
pub fn attempt_of(
    history: &[PastReminder],
    step_id: &str,
    trigger: &Trigger,
    invoice_ids: &[String],
) -> u32 {
    let earlier = history
        .iter()
        .filter(|past| past.action.step_id == step_id && &past.action.trigger == trigger)
        .filter(|past| {
            past.action
                .invoice_ids
                .iter()
                .any(|id| invoice_ids.contains(id))
        })
        .count();
    u32::try_from(earlier).unwrap_or(u32::MAX - 1) + 1
}

fn counted(history: &[PastReminder]) -> Vec<PastAction> {
    history
        .iter()
        .filter(|past| past.active)
        .map(|past| past.action.clone())
        .collect()
}

/// The fact a decision records on an invoice, as an event of the invoice's own history.
fn own_fact(
    invoice: &Invoice,
    fact: InvoiceFact,
    reminder_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> InvoiceEvent {
    InvoiceEvent {
        event_id: format!("{}:{reminder_id}:{}", fact.name(), invoice.invoice_id),
        tenant: invoice.tenant.clone(),
        customer_id: invoice.customer_id.clone(),
        invoice_id: invoice.invoice_id.clone(),
        time: now,
        revision: None,
        fact,
    }
}

/// Applies one of relance's own facts to the invoice it is about, and keeps it with the
/// decision that records it.
fn record_fact(
    book: &mut BTreeMap<String, Invoice>,
    decided: &mut DecidedReminder,
    event: InvoiceEvent,
) {
    if let Some(invoice) = book.get(&event.invoice_id) {
        if let Ok(updated) = apply_invoice_event(Some(invoice), &event) {
            book.insert(event.invoice_id.clone(), updated);
            decided.facts.push(event);
        }
    }
}

/// Everything due for `customer` at `now`, given their open `invoices` and the reminders
/// already decided (`history`, all invoices).
///
/// # Errors
/// [`CommandError`] when the customer's data cannot form a valid command (a malformed id).
pub fn plan_customer(
    policy: &Policy,
    customer: CustomerContext<'_>,
    snapshot: &CustomerSnapshot,
    invoices: &[Invoice],
    history: &[PastReminder],
    now: DateTime<Utc>,
) -> Result<CustomerPlan, CommandError> {
    let tz = customer_zone(policy, snapshot);
    let today = local_date(tz, now);
    let mut book: BTreeMap<String, Invoice> = invoices
        .iter()
        .map(|invoice| (invoice.invoice_id.clone(), invoice.clone()))
        .collect();
    let mut history = history.to_vec();
    let mut decided_plan = CustomerPlan::default();
    // A round decides at most one contact; rounds are bounded by the steps that can be due.
    for _ in 0..64 {
        let past = counted(&history);
        let mut dues: Vec<DueStep> = Vec::new();
        let mut escalations = Vec::new();
        for invoice in book.values() {
            let planned = plan(policy, snapshot, invoice, &past, now);
            match planned.decision {
                Decision::Send { step } if step.at <= now => {
                    let view = invoice.view(today);
                    dues.push(DueStep {
                        invoice_id: invoice.invoice_id.clone(),
                        segment: planned.segment,
                        amount_due_minor: view.amount_due_minor,
                        currency: view.currency.map(|currency| currency.to_string()),
                        step,
                    });
                }
                Decision::Escalate {
                    at,
                    task,
                    priority,
                    cause,
                } if at <= now => {
                    escalations.push((
                        invoice.invoice_id.clone(),
                        planned.segment,
                        at,
                        task,
                        priority,
                        cause,
                    ));
                }
                _ => {}
            }
        }
        if dues.is_empty() && escalations.is_empty() {
            break;
        }
        if let Some(group) = consolidate(policy, tz, dues).into_iter().next() {
            let group_invoices: Vec<&Invoice> = group
                .invoice_ids
                .iter()
                .filter_map(|id| book.get(id))
                .collect();
            let attempt = attempt_of(
                &history,
                &group.step.step_id,
                &group.step.trigger,
                &group.invoice_ids,
            );
            let mut decided =
                reminder_for_group(policy, customer, tz, now, &group, &group_invoices, attempt)?;
            history.push(PastReminder {
                action: PastAction {
                    invoice_ids: group.invoice_ids.clone(),
                    trigger: group.step.trigger.clone(),
                    step_id: group.step.step_id.clone(),
                    at: group.step.at,
                    kind: PastActionKind::Reminder,
                },
                active: true,
            });
            if decided.awaiting_approval {
                for id in &group.invoice_ids {
                    if let Some(invoice) = book.get(id) {
                        let event = own_fact(
                            invoice,
                            InvoiceFact::ApprovalRequested {
                                step: group.step.step_id.clone(),
                            },
                            decided.reminder_id,
                            now,
                        );
                        record_fact(&mut book, &mut decided, event);
                    }
                }
            }
            decided_plan.decided.push(decided);
        }
        for (invoice_id, segment, at, task, priority, cause) in escalations {
            let Some(invoice) = book.get(&invoice_id) else {
                continue;
            };
            let step_id = crate::commands::escalation_step_id(task);
            let ids = vec![invoice_id.clone()];
            let attempt = attempt_of(&history, &step_id, &Trigger::DueDate, &ids);
            let mut decided = escalation_task(
                customer,
                tz,
                now,
                invoice,
                &Escalation {
                    segment: &segment,
                    at,
                    task,
                    priority,
                    cause: &cause,
                },
                attempt,
            )?;
            history.push(PastReminder {
                action: PastAction {
                    invoice_ids: ids,
                    trigger: Trigger::DueDate,
                    step_id,
                    at,
                    kind: PastActionKind::Escalation,
                },
                active: true,
            });
            let to = if task == TaskChannel::CollectionAgency {
                EscalationTarget::Agency
            } else {
                EscalationTarget::Person
            };
            let event = own_fact(
                invoice,
                InvoiceFact::Escalated { to },
                decided.reminder_id,
                now,
            );
            record_fact(&mut book, &mut decided, event);
            decided_plan.decided.push(decided);
        }
    }
    let past = counted(&history);
    decided_plan.plans = book
        .values()
        .map(|invoice| {
            (
                invoice.invoice_id.clone(),
                plan(policy, snapshot, invoice, &past, now),
            )
        })
        .collect();
    Ok(decided_plan)
}
