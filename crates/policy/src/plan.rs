//! The next action of one invoice: which step, when, and why not sooner.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use relance_domain::{DunningState, Invoice, PauseReason};
use serde::{Deserialize, Serialize};

use crate::ab::assign_variant;
use crate::calendar::{local_date, local_instant, next_send_time};
use crate::model::{
    AfterPause, Condition, Policy, Priority, Risk, Segment, Step, StepChannel, TaskChannel, Tone,
};

/// What the policy needs to know about a customer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    pub customer_id: String,
    pub vip: bool,
    pub risk_level: Option<Risk>,
    pub customer_since: Option<NaiveDate>,
    pub on_time_percent: Option<u32>,
    pub average_days_late: Option<i64>,
    pub tags: Vec<String>,
    pub country: Option<String>,
    /// IANA time zone; the policy's default when absent or unknown.
    pub timezone: Option<String>,
    /// When the customer last answered (an action on a reminder), if ever.
    pub last_reply_at: Option<DateTime<Utc>>,
    /// A hold a person placed on all the customer's invoices: until the end of that date, or
    /// until lifted (`Some(None)`).
    pub hold: Option<Option<NaiveDate>>,
}

/// Which sequence a step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    DueDate,
    PaymentFailed { payment_id: String },
}

/// What a past action was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PastActionKind {
    /// A reminder or a step task: counts toward the minimum gap and the caps.
    Reminder,
    /// A hand-over to a person after the sequence.
    Escalation,
}

/// An action already taken for a customer (any of their invoices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastAction {
    pub invoice_ids: Vec<String>,
    pub trigger: Trigger,
    pub step_id: String,
    pub at: DateTime<Utc>,
    pub kind: PastActionKind,
}

/// The template a step uses for a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateChoice {
    pub template: String,
    pub variant: Option<String>,
    pub experiment: Option<String>,
}

/// Why a step goes out later than its nominal time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Adjustment {
    /// Its time had passed (the invoice arrived late, or dunning resumed): as soon as possible.
    CatchUp,
    /// Moved into the send window.
    SendWindow,
    /// Moved past a public holiday.
    Holiday { date: NaiveDate },
    /// Waits for the minimum gap after the customer's last reminder.
    MinimumGap { last_at: DateTime<Utc> },
    /// Waits for the rolling cap on reminders to allow one more.
    Cap { count: u32, window_days: u32 },
}

/// The next step to take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub trigger: Trigger,
    /// Index of the step in its sequence.
    pub index: usize,
    pub step_id: String,
    pub offset_days: i32,
    pub channel: StepChannel,
    pub tone: Tone,
    pub approval: bool,
    pub template: TemplateChoice,
    /// The step's template for large amounts, if it has one.
    pub personal_template: Option<String>,
    /// When it was due by the policy alone.
    pub nominal_at: DateTime<Utc>,
    /// When it goes out.
    pub at: DateTime<Utc>,
    pub adjustments: Vec<Adjustment>,
}

/// Why a step is not taken at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// A later step was already due (after a pause, or an invoice that arrived late).
    SupersededByLaterStep { step_id: String },
    /// Waiting for the window, the gap or the cap would push it past the next step.
    DelayedPastNextStep { adjustments: Vec<Adjustment> },
}

/// A step passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStep {
    pub trigger: Trigger,
    pub step_id: String,
    pub nominal_at: DateTime<Utc>,
    pub reason: SkipReason,
}

/// Why there is nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DoneReason {
    Closed,
    AwaitingInvoice,
    Paused {
        reason: PauseReason,
    },
    Escalated,
    SequenceFinished,
    /// Steps cannot be placed: the send window and holidays leave no day within a year.
    NoSendableDay,
}

/// The decision for an invoice now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Take this step at `step.at`.
    Send { step: PlannedStep },
    /// Hand over to a person.
    Escalate {
        at: DateTime<Utc>,
        task: TaskChannel,
        priority: Priority,
        /// `customer_replied` or `sequence_finished`.
        cause: String,
    },
    /// Nothing now; look again at `until` (a pause with an end).
    Wait {
        until: DateTime<Utc>,
        reason: DoneReason,
    },
    /// Nothing to do until something changes.
    Done { reason: DoneReason },
}

impl Decision {
    /// When the scheduler must look at the invoice again, if ever (without a new event).
    pub fn next_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Send { step } => Some(step.at),
            Self::Escalate { at, .. } => Some(*at),
            Self::Wait { until, .. } => Some(*until),
            Self::Done { .. } => None,
        }
    }
}

/// An invoice's plan: its segment, the decision, and the steps passed over to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub segment: String,
    pub decision: Decision,
    pub skipped: Vec<SkippedStep>,
}

/// The customer's time zone, or the policy's default.
pub fn customer_zone(policy: &Policy, customer: &CustomerSnapshot) -> Tz {
    customer
        .timezone
        .as_deref()
        .and_then(relance_domain::calendar::zone)
        .or_else(|| relance_domain::calendar::zone(&policy.rules.default_timezone))
        .unwrap_or(relance_domain::calendar::UNKNOWN_ZONE)
}

fn matches(
    condition: &Condition,
    customer: &CustomerSnapshot,
    invoice: &Invoice,
    today: NaiveDate,
) -> bool {
    let view = invoice.view(today);
    let amount = view.amount_due_minor;
    let currency = view.currency.as_ref().map(ToString::to_string);
    let amount_threshold = |thresholds: &std::collections::BTreeMap<String, i64>| {
        currency
            .as_ref()
            .and_then(|currency| thresholds.get(currency))
            .copied()
    };
    condition.vip.is_none_or(|vip| customer.vip == vip)
        && condition.risk_level.as_ref().is_none_or(|levels| {
            customer
                .risk_level
                .is_some_and(|risk| levels.contains(&risk))
        })
        && condition.customer_since_within_days.is_none_or(|days| {
            customer
                .customer_since
                .is_some_and(|since| (today - since).num_days() <= i64::from(days))
        })
        && condition.on_time_percent_at_least.is_none_or(|percent| {
            customer
                .on_time_percent
                .is_some_and(|value| value >= percent)
        })
        && condition.on_time_percent_below.is_none_or(|percent| {
            customer
                .on_time_percent
                .is_some_and(|value| value < percent)
        })
        && condition.average_days_late_above.is_none_or(|days| {
            customer
                .average_days_late
                .is_some_and(|value| value > i64::from(days))
        })
        && condition.amount_at_least.as_ref().is_none_or(|thresholds| {
            amount_threshold(thresholds).is_some_and(|minimum| amount >= minimum)
        })
        && condition.amount_below.as_ref().is_none_or(|thresholds| {
            amount_threshold(thresholds).is_some_and(|maximum| amount < maximum)
        })
        && condition
            .tags_any
            .as_ref()
            .is_none_or(|tags| tags.iter().any(|tag| customer.tags.contains(tag)))
        && condition.country.as_ref().is_none_or(|countries| {
            customer
                .country
                .as_ref()
                .is_some_and(|country| countries.contains(country))
        })
}

/// The segment that applies: the first whose condition matches (validation guarantees the last
/// one matches everyone).
pub(crate) fn segment_for<'a>(
    policy: &'a Policy,
    customer: &CustomerSnapshot,
    invoice: &Invoice,
    today: NaiveDate,
) -> Option<&'a Segment> {
    policy.segments.iter().find(|segment| {
        segment
            .when
            .as_ref()
            .is_none_or(|condition| matches(condition, customer, invoice, today))
    })
}

/// The payment failure that drives dunning, if any: the latest one not followed by a
/// successful payment of the same id.
fn active_failure(invoice: &Invoice) -> Option<(String, DateTime<Utc>)> {
    invoice
        .payment_failures
        .iter()
        .filter(|(payment_id, _)| !invoice.payments.contains_key(*payment_id))
        .max_by_key(|(_, failure)| failure.failed_at)
        .map(|(payment_id, failure)| (payment_id.clone(), failure.failed_at))
}

struct Planner<'a> {
    policy: &'a Policy,
    customer: &'a CustomerSnapshot,
    history: &'a [PastAction],
    tz: Tz,
    holidays: &'a [NaiveDate],
}

impl Planner<'_> {
    /// The earliest time at or after `at` in the send window: for tasks given to people, which
    /// are not customer contacts and so not subject to the gap and the caps.
    fn window_only(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_send_time(at, self.tz, &self.policy.rules.send_window, self.holidays)
    }

    fn contacts(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.history
            .iter()
            .filter(|action| action.kind == PastActionKind::Reminder)
            .map(|action| action.at)
    }

    /// The earliest sendable time at or after `at` that respects the gap, the cap, the window
    /// and the holidays, and what moved it.
    fn adjust(&self, mut at: DateTime<Utc>) -> Option<(DateTime<Utc>, Vec<Adjustment>)> {
        let rules = &self.policy.rules;
        let mut adjustments: Vec<Adjustment> = Vec::new();
        let mut note = |adjustment: Adjustment| {
            if !adjustments
                .iter()
                .any(|known| std::mem::discriminant(known) == std::mem::discriminant(&adjustment))
            {
                adjustments.push(adjustment);
            }
        };
        for _ in 0..64 {
            let before = at;
            // Both sides of `at`: a reminder decided a moment ago by another replica, whose
            // clock read later than this one, may lie just after `at`.
            let gap = Duration::days(i64::from(rules.min_days_between_reminders));
            if let Some(last) = self.contacts().filter(|contact| *contact < at + gap).max() {
                let earliest = last + gap;
                if at < earliest {
                    at = earliest;
                    note(Adjustment::MinimumGap { last_at: last });
                }
            }
            if let Some(cap) = rules.max_reminders {
                let window = Duration::days(i64::from(cap.window_days));
                let mut recent: Vec<DateTime<Utc>> = self
                    .contacts()
                    // Later contacts count too: they will be in a window with this one.
                    .filter(|contact| *contact > at - window)
                    .collect();
                let allowed = cap.count as usize;
                if recent.len() >= allowed {
                    recent.sort();
                    at = recent[recent.len() - allowed] + window;
                    note(Adjustment::Cap {
                        count: cap.count,
                        window_days: cap.window_days,
                    });
                }
            }
            let sendable = next_send_time(at, self.tz, &rules.send_window, self.holidays)?;
            if sendable != at {
                let date = local_date(self.tz, at);
                if self.holidays.contains(&date) {
                    note(Adjustment::Holiday { date });
                } else {
                    note(Adjustment::SendWindow);
                }
                at = sendable;
            }
            if at == before {
                return Some((at, adjustments));
            }
        }
        Some((at, adjustments))
    }

    /// When a step is due by the policy alone: the trigger date plus its offset, at the window's
    /// opening, in the customer's time zone.
    fn nominal(&self, trigger_date: NaiveDate, step: &Step) -> DateTime<Utc> {
        let date = if step.offset_days >= 0 {
            trigger_date.checked_add_days(Days::new(step.offset_days.unsigned_abs().into()))
        } else {
            trigger_date.checked_sub_days(Days::new(step.offset_days.unsigned_abs().into()))
        }
        .unwrap_or(trigger_date);
        local_instant(self.tz, date, self.policy.rules.send_window.start)
    }

    fn template(&self, step: &Step) -> TemplateChoice {
        match step.experiment.as_ref().and_then(|experiment| {
            assign_variant(experiment, &self.customer.customer_id)
                .map(|variant| (experiment, variant))
        }) {
            Some((experiment, variant)) => TemplateChoice {
                template: variant.template.clone(),
                variant: Some(variant.id.clone()),
                experiment: Some(experiment.id.clone()),
            },
            None => TemplateChoice {
                template: step.template.clone(),
                variant: None,
                experiment: None,
            },
        }
    }

    /// The next step of a sequence for `invoice_id`, or `None` when every step is taken.
    fn next_in_sequence(
        &self,
        invoice_id: &str,
        trigger: &Trigger,
        trigger_date: NaiveDate,
        steps: &[Step],
        now: DateTime<Utc>,
        skipped: &mut Vec<SkippedStep>,
    ) -> Option<Result<PlannedStep, DoneReason>> {
        let done_here = |step: &Step| {
            self.history.iter().any(|action| {
                action.kind == PastActionKind::Reminder
                    && &action.trigger == trigger
                    && action.step_id == step.id
                    && action.invoice_ids.iter().any(|id| id == invoice_id)
            })
        };
        // Never go back: the candidates follow the last step taken.
        let start = steps.iter().rposition(done_here).map_or(0, |last| last + 1);
        let candidates = &steps[start..];
        if candidates.is_empty() {
            return None;
        }
        let nominals: Vec<DateTime<Utc>> = candidates
            .iter()
            .map(|step| self.nominal(trigger_date, step))
            .collect();
        let mut index = 0;
        let due: Vec<usize> = (0..candidates.len())
            .filter(|i| nominals[*i] <= now)
            .collect();
        if due.len() > 1 && self.policy.rules.pauses.after_pause == AfterPause::LatestDue {
            let latest = *due.last().unwrap_or(&0);
            for passed in &due[..due.len() - 1] {
                skipped.push(SkippedStep {
                    trigger: trigger.clone(),
                    step_id: candidates[*passed].id.clone(),
                    nominal_at: nominals[*passed],
                    reason: SkipReason::SupersededByLaterStep {
                        step_id: candidates[latest].id.clone(),
                    },
                });
            }
            index = latest;
        }
        loop {
            let step = &candidates[index];
            let nominal = nominals[index];
            // Where the rules put the step from its own date; only if that is already past is
            // it a catch-up (a step moved to Monday and planned again on Monday is not late).
            let Some((on_time, adjusted)) = self.adjust(nominal) else {
                return Some(Err(DoneReason::NoSendableDay));
            };
            let (at, adjustments) = if on_time >= now {
                (on_time, adjusted)
            } else {
                let Some((at, mut adjustments)) = self.adjust(now) else {
                    return Some(Err(DoneReason::NoSendableDay));
                };
                adjustments.insert(0, Adjustment::CatchUp);
                (at, adjustments)
            };
            let next_nominal = nominals.get(index + 1);
            if let Some(next_nominal) = next_nominal {
                if at >= *next_nominal {
                    skipped.push(SkippedStep {
                        trigger: trigger.clone(),
                        step_id: step.id.clone(),
                        nominal_at: nominal,
                        reason: SkipReason::DelayedPastNextStep { adjustments },
                    });
                    index += 1;
                    continue;
                }
            }
            return Some(Ok(PlannedStep {
                trigger: trigger.clone(),
                index: start + index,
                step_id: step.id.clone(),
                offset_days: step.offset_days,
                channel: step.channel,
                tone: step.tone,
                approval: step.approval,
                template: self.template(step),
                personal_template: step.personal_template.clone(),
                nominal_at: nominal,
                at,
                adjustments,
            }));
        }
    }
}

/// The next action for `invoice` of `customer` at `now`, given every action already taken for
/// the customer (`history`, all invoices).
pub fn plan(
    policy: &Policy,
    customer: &CustomerSnapshot,
    invoice: &Invoice,
    history: &[PastAction],
    now: DateTime<Utc>,
) -> Plan {
    let tz = customer_zone(policy, customer);
    let today = local_date(tz, now);
    let Some(segment) = segment_for(policy, customer, invoice, today) else {
        return Plan {
            segment: String::new(),
            decision: Decision::Done {
                reason: DoneReason::SequenceFinished,
            },
            skipped: Vec::new(),
        };
    };
    let holidays: &[NaiveDate] = customer
        .country
        .as_ref()
        .and_then(|country| policy.rules.holidays.get(country))
        .map_or(&[], Vec::as_slice);
    let planner = Planner {
        policy,
        customer,
        history,
        tz,
        holidays,
    };
    let mut skipped = Vec::new();
    let decision = decide(&planner, segment, invoice, now, today, &mut skipped);
    Plan {
        segment: segment.id.clone(),
        decision,
        skipped,
    }
}

fn decide(
    planner: &Planner<'_>,
    segment: &Segment,
    invoice: &Invoice,
    now: DateTime<Utc>,
    today: NaiveDate,
    skipped: &mut Vec<SkippedStep>,
) -> Decision {
    let policy = planner.policy;
    let view = invoice.view(today);
    match view.state {
        DunningState::Closed { .. } => {
            return Decision::Done {
                reason: DoneReason::Closed,
            }
        }
        DunningState::AwaitingInvoice => {
            return Decision::Done {
                reason: DoneReason::AwaitingInvoice,
            }
        }
        DunningState::Escalated { .. } => {
            return Decision::Done {
                reason: DoneReason::Escalated,
            }
        }
        DunningState::Paused { reason, until } => {
            let reason = DoneReason::Paused { reason };
            return match until.and_then(|until| until.checked_add_days(Days::new(1))) {
                Some(resumes) => Decision::Wait {
                    until: local_instant(planner.tz, resumes, policy.rules.send_window.start),
                    reason,
                },
                None => Decision::Done { reason },
            };
        }
        DunningState::NotDue | DunningState::Overdue | DunningState::PartiallyPaid => {}
    }
    if let Some(until) = planner.customer.hold {
        let reason = DoneReason::Paused {
            reason: PauseReason::ManualHold,
        };
        match until {
            None => return Decision::Done { reason },
            Some(until) if today <= until => {
                let resumes = until.checked_add_days(Days::new(1)).unwrap_or(until);
                return Decision::Wait {
                    until: local_instant(planner.tz, resumes, policy.rules.send_window.start),
                    reason,
                };
            }
            Some(_) => {}
        }
    }
    let invoice_id = invoice.invoice_id.as_str();
    let escalated_already = planner.history.iter().any(|action| {
        action.kind == PastActionKind::Escalation
            && action.invoice_ids.iter().any(|id| id == invoice_id)
    });
    if escalated_already {
        return Decision::Done {
            reason: DoneReason::Escalated,
        };
    }
    // A reply after a step that stops on replies hands the invoice over to a person.
    let last_step = planner
        .history
        .iter()
        .filter(|action| {
            action.kind == PastActionKind::Reminder
                && action.invoice_ids.iter().any(|id| id == invoice_id)
        })
        .max_by_key(|action| action.at);
    if let (Some(last), Some(replied)) = (last_step, planner.customer.last_reply_at) {
        let stops = segment
            .steps
            .iter()
            .chain(
                policy
                    .payment_failure
                    .iter()
                    .flat_map(|sequence| sequence.steps.iter()),
            )
            .any(|step| step.id == last.step_id && step.stop_on_reply);
        if stops && replied > last.at {
            if let Some(at) = planner.window_only(now) {
                return Decision::Escalate {
                    at,
                    task: TaskChannel::ManualReview,
                    priority: Priority::Normal,
                    cause: "customer_replied".into(),
                };
            }
        }
    }
    if let (Some(sequence), Some((payment_id, failed_at))) =
        (&policy.payment_failure, active_failure(invoice))
    {
        let trigger = Trigger::PaymentFailed { payment_id };
        let trigger_date = local_date(planner.tz, failed_at);
        if let Some(result) = planner.next_in_sequence(
            invoice_id,
            &trigger,
            trigger_date,
            &sequence.steps,
            now,
            skipped,
        ) {
            return match result {
                Ok(step) => Decision::Send { step },
                Err(reason) => Decision::Done { reason },
            };
        }
    }
    let Some(due_on) = view.due_on else {
        return Decision::Done {
            reason: DoneReason::AwaitingInvoice,
        };
    };
    match planner.next_in_sequence(
        invoice_id,
        &Trigger::DueDate,
        due_on,
        &segment.steps,
        now,
        skipped,
    ) {
        Some(Ok(step)) => Decision::Send { step },
        Some(Err(reason)) => Decision::Done { reason },
        None => match &policy.rules.escalation {
            Some(escalation) => {
                let last_at = last_step.map_or(now, |action| action.at);
                let nominal = last_at + Duration::days(i64::from(escalation.after_days));
                match planner.window_only(nominal.max(now)) {
                    Some(at) => Decision::Escalate {
                        at,
                        task: escalation.task,
                        priority: escalation.priority,
                        cause: "sequence_finished".into(),
                    },
                    None => Decision::Done {
                        reason: DoneReason::NoSendableDay,
                    },
                }
            }
            None => Decision::Done {
                reason: DoneReason::SequenceFinished,
            },
        },
    }
}
