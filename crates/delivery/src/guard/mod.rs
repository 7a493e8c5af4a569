//! The guard: the last look before a reminder goes out. It reads what the database says now
//! (not what the command said when it was published) and decides to send, to send about fewer
//! invoices, or to skip. Pure: the dispatcher loads the facts, in the transaction that records
//! the attempt, and this decides.

use std::collections::HashMap;

use chrono::NaiveDate;
use relance_contracts::commands::{ReminderInvoice, SendReminderV1};
use relance_domain::{ClosedReason, DunningState, Invoice, PauseReason};

/// A customer's hold and recent messages, as the database has them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardCustomer {
    pub tenant: String,
    pub customer_id: String,
    pub held: bool,
    pub held_until: Option<NaiveDate>,
    /// Messages sent to the customer since the start of the frequency-cap window, and
    /// attempts whose outcome is not known yet (they may have reached the customer).
    pub sent_recently: i64,
    /// When the oldest message still in the cap's window was sent.
    pub oldest_recent: Option<chrono::DateTime<chrono::Utc>>,
}

/// When the scheduler should plan a skipped step again, or `None` when the skip is final:
/// once the cap's window has let the oldest message go, or at once for a pause, a dispute or
/// a hold (the planner then waits for its end itself).
pub fn replan_at(
    reason: SkipReason,
    customer: Option<&GuardCustomer>,
    cap_window: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if reason.is_final() {
        return None;
    }
    if reason == SkipReason::FrequencyCap {
        let frees = customer
            .and_then(|customer| customer.oldest_recent)
            .map_or(now + cap_window, |oldest| oldest + cap_window);
        return Some(frees.max(now));
    }
    Some(now)
}

/// Why a reminder is not sent (a metric label and the audit trail's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    InvoicePaid,
    InvoiceVoided,
    InvoiceCredited,
    InvoiceWrittenOff,
    InvoiceDisputed,
    InvoicePaused,
    InvoiceEscalated,
    NothingDue,
    InvoiceUnknown,
    CustomerHeld,
    ContactBounced,
    ContactComplained,
    ContactOptedOut,
    ContactInactive,
    NoContactAddress,
    FrequencyCap,
    /// The reminder was cancelled (a payment, void, credit or dispute of one of its invoices
    /// removed its command) after the command had already left: the scheduler plans what is
    /// still due, so sending this one would be a second reminder.
    ReminderCancelled,
}

impl SkipReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvoicePaid => "invoice_paid",
            Self::InvoiceVoided => "invoice_voided",
            Self::InvoiceCredited => "invoice_credited",
            Self::InvoiceWrittenOff => "invoice_written_off",
            Self::InvoiceDisputed => "invoice_disputed",
            Self::InvoicePaused => "invoice_paused",
            Self::InvoiceEscalated => "invoice_escalated",
            Self::NothingDue => "nothing_due",
            Self::InvoiceUnknown => "invoice_unknown",
            Self::CustomerHeld => "customer_held",
            Self::ContactBounced => "contact_bounced",
            Self::ContactComplained => "contact_complained",
            Self::ContactOptedOut => "contact_opted_out",
            Self::ContactInactive => "contact_inactive",
            Self::NoContactAddress => "no_contact_address",
            Self::FrequencyCap => "frequency_cap",
            Self::ReminderCancelled => "reminder_cancelled",
        }
    }

    /// Whether the skip ends the step for good: dunning of the invoice is over (paid, closed,
    /// escalated, unknown), or the address cannot be used. A cap, a pause, a dispute or a hold
    /// passes: the scheduler plans the step again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Self::FrequencyCap | Self::InvoicePaused | Self::InvoiceDisputed | Self::CustomerHeld
        )
    }

    /// Every reason, so their counters exist from the start.
    pub const ALL: [SkipReason; 17] = [
        Self::InvoicePaid,
        Self::InvoiceVoided,
        Self::InvoiceCredited,
        Self::InvoiceWrittenOff,
        Self::InvoiceDisputed,
        Self::InvoicePaused,
        Self::InvoiceEscalated,
        Self::NothingDue,
        Self::InvoiceUnknown,
        Self::CustomerHeld,
        Self::ContactBounced,
        Self::ContactComplained,
        Self::ContactOptedOut,
        Self::ContactInactive,
        Self::NoContactAddress,
        Self::FrequencyCap,
        Self::ReminderCancelled,
    ];
}

/// What the guard knows.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub tenant: &'a str,
    pub command: &'a SendReminderV1,
    /// The command's invoices as the database has them now (missing ones are unknown).
    pub invoices: &'a [GuardInvoice],
    pub customer: Option<&'a GuardCustomer>,
    /// Why the recipient's address is suppressed, if it is (`hard_bounce`, `complaint`,
    /// `opt_out`, `inactive`).
    pub suppression: Option<&'a str>,
    pub today: NaiveDate,
    /// At most this many messages to one customer in the window (0: no cap).
    pub cap_count: u32,
}

/// The guard's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send, about these invoices, with their amounts due as of now. Invoices of the command
    /// that no longer need a reminder are listed in `dropped`.
    Send {
        invoices: Vec<ReminderInvoice>,
        dropped: Vec<(String, SkipReason)>,
    },
    Skip {
        reason: SkipReason,
        detail: String,
    },
}

/// What the guard knows of an invoice: its dunning state derived from its facts for today, not
/// a stored state derived on some earlier day (a promise or a timed hold may have ended since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardInvoice {
    pub invoice_id: String,
    pub tenant: String,
    pub state: DunningState,
    pub currency: Option<String>,
    pub amount_due_minor: i64,
}

impl GuardInvoice {
    /// The invoice as of `today`.
    pub fn of(invoice: &Invoice, today: NaiveDate) -> Self {
        let view = invoice.view(today);
        Self {
            invoice_id: invoice.invoice_id.clone(),
            tenant: invoice.tenant.clone(),
            state: view.state,
            currency: view.currency.map(|currency| currency.as_str().to_string()),
            amount_due_minor: view.amount_due_minor,
        }
    }
}

/// Why one invoice no longer takes a reminder, if it does not.
fn invoice_reason(invoice: Option<&GuardInvoice>, tenant: &str) -> Option<SkipReason> {
    let Some(invoice) = invoice else {
        return Some(SkipReason::InvoiceUnknown);
    };
    if invoice.tenant != tenant {
        return Some(SkipReason::InvoiceUnknown);
    }
    match invoice.state {
        DunningState::Closed { reason } => Some(match reason {
            ClosedReason::Paid => SkipReason::InvoicePaid,
            ClosedReason::Voided => SkipReason::InvoiceVoided,
            ClosedReason::Credited => SkipReason::InvoiceCredited,
            ClosedReason::WrittenOff => SkipReason::InvoiceWrittenOff,
        }),
        DunningState::Paused {
            reason: PauseReason::Dispute,
            ..
        } => Some(SkipReason::InvoiceDisputed),
        DunningState::Paused { .. } => Some(SkipReason::InvoicePaused),
        DunningState::Escalated { .. } => Some(SkipReason::InvoiceEscalated),
        _ if invoice.amount_due_minor <= 0 => Some(SkipReason::NothingDue),
        _ => None,
    }
}

/// Decides whether the reminder goes out.
pub fn decide(facts: &Facts<'_>) -> Verdict {
    let command = facts.command;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for line in &command.invoices {
        let current = facts.invoices.iter().find(|invoice| {
            invoice.tenant == facts.tenant && invoice.invoice_id == line.invoice_id.as_str()
        });
        match invoice_reason(current, facts.tenant) {
            Some(reason) => dropped.push((line.invoice_id.as_str().to_string(), reason)),
            None => {
                let mut line = line.clone();
                if let Some(current) = current {
                    // Partial payments since the command: say what is due now.
                    if let Ok(amount) = relance_contracts::Money::new(
                        current.amount_due_minor,
                        line.amount_due.currency().clone(),
                    ) {
                        if current.currency.as_deref() == Some(line.amount_due.currency().as_str())
                        {
                            line.amount_due = amount;
                        }
                    }
                }
                kept.push(line);
            }
        }
    }
    if kept.is_empty() {
        // The most telling reason: the order of SkipReason (paid first).
        let (invoice, reason) = dropped
            .iter()
            .min_by_key(|(_, reason)| *reason)
            .cloned()
            .unwrap_or((String::new(), SkipReason::InvoiceUnknown));
        return Verdict::Skip {
            reason,
            detail: format!("invoice {invoice}: {}", reason.code()),
        };
    }
    if let Some(customer) = facts.customer {
        if customer.held && customer.held_until.is_none_or(|until| facts.today <= until) {
            return Verdict::Skip {
                reason: SkipReason::CustomerHeld,
                detail: match customer.held_until {
                    Some(until) => format!("the customer is on hold until {until}"),
                    None => "the customer is on hold".into(),
                },
            };
        }
    }
    let Some(_address) = crate::recipient::address(command) else {
        return Verdict::Skip {
            reason: SkipReason::NoContactAddress,
            detail: "the command has no address for its channel".into(),
        };
    };
    if let Some(suppression) = facts.suppression {
        let reason = match suppression {
            "hard_bounce" => SkipReason::ContactBounced,
            "complaint" => SkipReason::ContactComplained,
            "opt_out" => SkipReason::ContactOptedOut,
            _ => SkipReason::ContactInactive,
        };
        return Verdict::Skip {
            reason,
            // The reason, never the address: details are logged and published.
            detail: format!("the recipient's address is suppressed ({suppression})"),
        };
    }
    if facts.cap_count > 0 {
        if let Some(customer) = facts.customer {
            if customer.sent_recently >= i64::from(facts.cap_count) {
                return Verdict::Skip {
                    reason: SkipReason::FrequencyCap,
                    detail: format!(
                        "{} messages already sent to this customer within the cap's window (at most {})",
                        customer.sent_recently, facts.cap_count
                    ),
                };
            }
        }
    }
    Verdict::Send {
        invoices: kept,
        dropped,
    }
}

/// One reminder of a wave, with the customer's day and the address's suppression.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub tenant: &'a str,
    pub command: &'a SendReminderV1,
    /// The customer's local date now.
    pub today: NaiveDate,
    pub suppression: Option<&'a str>,
    /// Whether the reminder is cancelled in the database now.
    pub reminder_cancelled: bool,
}

/// Decides a wave of reminders at once, in order: a reminder the guard lets through counts
/// against its customer's cap for the ones after it, as if it were already sent.
pub fn decide_wave(
    candidates: &[Candidate<'_>],
    invoices: &[GuardInvoice],
    customers: &[GuardCustomer],
    cap_count: u32,
) -> Vec<Verdict> {
    let mut let_through: HashMap<(&str, &str), i64> = HashMap::new();
    candidates
        .iter()
        .map(|candidate| {
            let key = (candidate.tenant, candidate.command.customer_id.as_str());
            let customer = customers
                .iter()
                .find(|customer| (customer.tenant.as_str(), customer.customer_id.as_str()) == key)
                .map(|customer| GuardCustomer {
                    sent_recently: customer.sent_recently
                        + let_through.get(&key).copied().unwrap_or(0),
                    ..customer.clone()
                });
            if candidate.reminder_cancelled {
                return Verdict::Skip {
                    reason: SkipReason::ReminderCancelled,
                    detail: "the reminder was cancelled after its command left: the scheduler plans what is still due".into(),
                };
            }
            let verdict = decide(&Facts {
                tenant: candidate.tenant,
                command: candidate.command,
                invoices,
                customer: customer.as_ref(),
                suppression: candidate.suppression,
                today: candidate.today,
                cap_count,
            });
            if matches!(verdict, Verdict::Send { .. }) {
                *let_through.entry(key).or_default() += 1;
            }
            verdict
        })
        .collect()
}

#[cfg(test)]
mod tests;
