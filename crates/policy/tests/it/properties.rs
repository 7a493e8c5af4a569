//! Properties of the evaluation over generated policies, customers, invoices and histories.

use chrono::{DateTime, Days, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use relance_domain::{DunningState, Invoice, InvoiceFact};
use relance_policy::{
    is_sendable, plan, AfterPause, CustomerSnapshot, Day, Decision, PastAction, PastActionKind,
    Policy, ReminderCap, Risk, TimelineEntry, Trigger,
};

use crate::{date, default_policy, eur, invoice, simulate_one, utc, with};

const ZONES: [&str; 6] = [
    "Europe/Paris",
    "America/New_York",
    "Asia/Tokyo",
    "Pacific/Auckland",
    "UTC",
    "America/Sao_Paulo",
];
const DAYS: [Day; 7] = [
    Day::Mon,
    Day::Tue,
    Day::Wed,
    Day::Thu,
    Day::Fri,
    Day::Sat,
    Day::Sun,
];

fn policy() -> impl Strategy<Value = Policy> {
    (
        0u32..8,
        proptest::option::of((1u32..6, 5u32..31)),
        proptest::sample::subsequence(DAYS.to_vec(), 1..=7),
        6u32..13,
        1u32..10,
        proptest::collection::vec(0u64..200, 0..12),
        any::<bool>(),
    )
        .prop_map(|(gap, cap, days, start, length, holidays, latest_due)| {
            let mut policy = default_policy();
            let rules = &mut policy.rules;
            rules.min_days_between_reminders = gap;
            rules.max_reminders =
                cap.map(|(count, window_days)| ReminderCap { count, window_days });
            rules.send_window.days = days;
            rules.send_window.start = NaiveTime::from_hms_opt(start, 0, 0).unwrap();
            rules.send_window.end =
                NaiveTime::from_hms_opt((start + length).min(23), 30, 0).unwrap();
            let extra: Vec<_> = holidays
                .into_iter()
                .map(|offset| date("2026-10-01") + Days::new(offset))
                .collect();
            rules.holidays.entry("FR".into()).or_default().extend(extra);
            rules.pauses.after_pause = if latest_due {
                AfterPause::LatestDue
            } else {
                AfterPause::NextStep
            };
            policy
        })
}

fn customer() -> impl Strategy<Value = CustomerSnapshot> {
    (
        proptest::sample::select(ZONES.to_vec()),
        proptest::sample::select(vec![Some("FR"), Some("US"), Some("GB"), None]),
        any::<bool>(),
        proptest::option::of(proptest::sample::select(vec![
            Risk::Low,
            Risk::Medium,
            Risk::High,
        ])),
        proptest::option::of(0u32..=100),
        proptest::option::of(proptest::option::of(
            (0u64..120).prop_map(|days| date("2026-10-01") + Days::new(days)),
        )),
    )
        .prop_map(
            |(zone, country, vip, risk_level, on_time_percent, hold)| CustomerSnapshot {
                hold,
                customer_id: "cus_1".into(),
                vip,
                risk_level,
                on_time_percent,
                timezone: Some(zone.into()),
                country: country.map(Into::into),
                ..CustomerSnapshot::default()
            },
        )
}

/// An invoice with some of: a partial or full payment, a dispute, a promise, a void, a hold.
fn an_invoice(id: &'static str) -> impl Strategy<Value = Invoice> {
    (0u64..60, 1_000i64..3_000_000, 0u8..8, 0u64..90).prop_map(
        move |(due_offset, total, extra, day)| {
            let due = date("2026-10-15") + Days::new(due_offset);
            let base = invoice(id, total, &due.to_string());
            let when = date("2026-10-15") + Days::new(day);
            match extra {
                0 => with(
                    &base,
                    "x",
                    InvoiceFact::PaymentSucceeded {
                        payment_id: "p".into(),
                        amount: eur(total / 2),
                        paid_at: utc("2026-11-01T10:00:00Z"),
                    },
                ),
                1 => with(
                    &base,
                    "x",
                    InvoiceFact::PaymentSucceeded {
                        payment_id: "p".into(),
                        amount: eur(total),
                        paid_at: utc("2026-11-01T10:00:00Z"),
                    },
                ),
                2 => with(
                    &base,
                    "x",
                    InvoiceFact::Disputed {
                        dispute_id: "d".into(),
                        resolved: false,
                        amount: None,
                    },
                ),
                3 => with(
                    &base,
                    "x",
                    InvoiceFact::PromisedToPay {
                        promised_on: when,
                        grace_days: 3,
                    },
                ),
                4 => with(&base, "x", InvoiceFact::Voided),
                5 => with(
                    &base,
                    "x",
                    InvoiceFact::HoldPlaced {
                        until: Some(when),
                        by: "marie".into(),
                        note: None,
                    },
                ),
                _ => base,
            }
        },
    )
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..120 * 24 * 60)
        .prop_map(|minutes| utc("2026-09-20T00:00:00Z") + Duration::minutes(minutes))
}

fn history() -> impl Strategy<Value = Vec<PastAction>> {
    proptest::collection::vec(
        (
            instant(),
            proptest::sample::select(vec!["inv_1", "inv_2", "inv_x"]),
        ),
        0..5,
    )
    .prop_map(|entries| {
        entries
            .into_iter()
            .enumerate()
            .map(|(index, (at, invoice))| PastAction {
                invoice_ids: vec![invoice.into()],
                trigger: Trigger::DueDate,
                step_id: ["courtesy", "first_reminder", "second_reminder"][index % 3].into(),
                at,
                kind: PastActionKind::Reminder,
            })
            .collect()
    })
}

fn zone(policy: &Policy, customer: &CustomerSnapshot) -> Tz {
    customer
        .timezone
        .as_deref()
        .unwrap_or(&policy.rules.default_timezone)
        .parse()
        .unwrap()
}

fn holidays<'a>(policy: &'a Policy, customer: &CustomerSnapshot) -> &'a [chrono::NaiveDate] {
    customer
        .country
        .as_ref()
        .and_then(|country| policy.rules.holidays.get(country))
        .map_or(&[], Vec::as_slice)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_planned_action_is_inside_the_send_window_and_never_on_a_holiday(
        policy in policy(), customer in customer(), invoice in an_invoice("inv_1"), history in history(), now in instant(),
    ) {
        let planned = plan(&policy, &customer, &invoice, &history, now);
        let at = match &planned.decision {
            Decision::Send { step } => Some(step.at),
            Decision::Escalate { at, .. } => Some(*at),
            _ => None,
        };
        if let Some(at) = at {
            prop_assert!(at >= now, "{at} before {now}");
            prop_assert!(is_sendable(at, zone(&policy, &customer), &policy.rules.send_window, holidays(&policy, &customer)), "{at}");
        }
    }

    #[test]
    fn a_closed_or_paused_invoice_has_no_next_action(
        policy in policy(), customer in customer(), invoice in an_invoice("inv_1"), history in history(), now in instant(),
    ) {
        let today = now.with_timezone(&zone(&policy, &customer)).date_naive();
        let state = invoice.view(today).state;
        let customer_held = customer.hold.is_some_and(|until| until.is_none_or(|until| today <= until));
        prop_assume!(customer_held || matches!(state, DunningState::Closed { .. } | DunningState::Paused { .. }));
        let planned = plan(&policy, &customer, &invoice, &history, now);
        prop_assert!(matches!(planned.decision, Decision::Done { .. } | Decision::Wait { .. }), "{:?} for {:?}", planned.decision, state);
    }

    #[test]
    fn planning_again_at_the_planned_time_takes_the_same_step_then(
        policy in policy(), customer in customer(), invoice in an_invoice("inv_1"), history in history(), now in instant(),
    ) {
        let first = plan(&policy, &customer, &invoice, &history, now);
        prop_assert_eq!(&plan(&policy, &customer, &invoice, &history, now), &first, "planning is deterministic");
        if let Decision::Send { step } = &first.decision {
            let again = plan(&policy, &customer, &invoice, &history, step.at);
            match again.decision {
                Decision::Send { step: later } => {
                    prop_assert_eq!(&later.step_id, &step.step_id);
                    prop_assert_eq!(later.at, step.at);
                }
                other => prop_assert!(false, "planned {:?} but at its time got {:?}", step, other),
            }
        }
    }

    #[test]
    fn the_steps_of_one_invoice_are_monotone_in_time(
        policy in policy(), customer in customer(), invoice in an_invoice("inv_1"), now in instant(),
    ) {
        let timeline = simulate_one(&policy, &customer, &invoice, now, now + Duration::days(400));
        let times: Vec<DateTime<Utc>> = timeline
            .iter()
            .filter_map(|entry| match entry {
                TimelineEntry::Step { step, .. } => Some(step.at),
                TimelineEntry::Escalation { at, .. } => Some(*at),
                _ => None,
            })
            .collect();
        prop_assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "{times:?}");
    }

    #[test]
    fn a_customers_reminders_never_break_the_gap_or_the_cap(
        policy in policy(),
        customer in customer(),
        invoices in (an_invoice("inv_1"), an_invoice("inv_2"), an_invoice("inv_3")),
        now in instant(),
    ) {
        // Three invoices of one customer, each step taken when due, one at a time.
        let invoices = [invoices.0, invoices.1, invoices.2];
        let mut history: Vec<PastAction> = Vec::new();
        let mut clock = now;
        for _ in 0..60 {
            let next = invoices
                .iter()
                .filter_map(|invoice| match plan(&policy, &customer, invoice, &history, clock).decision {
                    Decision::Send { step } => Some((step.at, invoice.invoice_id.clone(), step.step_id, step.trigger, PastActionKind::Reminder)),
                    Decision::Escalate { at, .. } => Some((at, invoice.invoice_id.clone(), "escalation".into(), Trigger::DueDate, PastActionKind::Escalation)),
                    _ => None,
                })
                .min_by_key(|next| next.0);
            let Some((at, invoice_id, step_id, trigger, kind)) = next else { break };
            prop_assert!(at >= clock);
            clock = at;
            history.push(PastAction { invoice_ids: vec![invoice_id], trigger, step_id, at, kind });
        }
        let mut contacts: Vec<DateTime<Utc>> = history.iter().filter(|action| action.kind == PastActionKind::Reminder).map(|action| action.at).collect();
        contacts.sort();
        let gap = Duration::days(i64::from(policy.rules.min_days_between_reminders));
        for pair in contacts.windows(2) {
            prop_assert!(pair[1] - pair[0] >= gap, "{} then {}: less than {} days", pair[0], pair[1], policy.rules.min_days_between_reminders);
        }
        if let Some(cap) = policy.rules.max_reminders {
            let window = Duration::days(i64::from(cap.window_days));
            for contact in &contacts {
                let within = contacts.iter().filter(|other| **other > *contact - window && **other <= *contact).count();
                prop_assert!(within <= cap.count as usize, "{within} reminders in {} days up to {contact}", cap.window_days);
            }
        }
    }
}

/// The contacts (reminders and step tasks) of a customer's timeline.
fn contacts(timeline: &[TimelineEntry]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = timeline
        .iter()
        .filter_map(|entry| match entry {
            TimelineEntry::Step { step, .. } => Some(step.at),
            _ => None,
        })
        .collect();
    times.sort();
    times
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the invoices of a customer — due the same day or spread, large or small — and
    /// wherever the customer lives, their reminders keep the minimum gap and the cap: the
    /// planning loop decides one contact at a time.
    #[test]
    fn the_gap_and_the_cap_hold_across_all_of_a_customers_invoices(
        dues in proptest::collection::vec((0u64..45, 1_000i64..2_000_000), 1..7),
        zone in proptest::sample::select(ZONES.to_vec()),
    ) {
        let policy = default_policy();
        let invoices: Vec<Invoice> = dues
            .iter()
            .enumerate()
            .map(|(index, (offset, amount))| {
                let due_on = date("2026-11-01") + Days::new(*offset);
                invoice(&format!("inv_{index}"), *amount, &due_on.to_string())
            })
            .collect();
        let customer = CustomerSnapshot {
            customer_id: "cus_1".into(),
            timezone: Some(zone.to_string()),
            ..CustomerSnapshot::default()
        };
        let timeline = relance_policy::simulate(
            &policy,
            relance_policy::commands::CustomerContext { tenant: "acme", customer_id: "cus_1", facts: None },
            &customer,
            &invoices,
            vec![],
            utc("2026-10-25T00:00:00Z"),
            utc("2027-04-01T00:00:00Z"),
        )
        .unwrap();
        let times = contacts(&timeline);
        let gap = Duration::days(i64::from(policy.rules.min_days_between_reminders));
        for pair in times.windows(2) {
            prop_assert!(pair[1] - pair[0] >= gap, "{} then {}", pair[0], pair[1]);
        }
        if let Some(cap) = policy.rules.max_reminders {
            let window = Duration::days(i64::from(cap.window_days));
            for (index, at) in times.iter().enumerate() {
                let within = times[index..].iter().filter(|later| **later < *at + window).count();
                prop_assert!(within <= cap.count as usize, "{within} reminders from {at}");
            }
        }
    }

    /// The scheduler plans a claimed customer with only their invoices whose next action is
    /// due (their stored `next_action_at`), not all their open invoices: whatever the invoices,
    /// history, customer and instant, that decides exactly what planning all of them decides,
    /// and gives the due invoices the same plans. (An invoice not due has no step due now, and
    /// the decisions of a round only ever delay the others: a gap, a cap, a step taken.)
    #[test]
    fn planning_only_the_due_invoices_decides_what_planning_all_of_them_decides(
        policy in policy(),
        customer in customer(),
        invoices in (an_invoice("inv_1"), an_invoice("inv_2"), an_invoice("inv_3"), an_invoice("inv_4")),
        past in history(),
        asked in instant(),
    ) {
        let invoices = vec![invoices.0, invoices.1, invoices.2, invoices.3];
        let history: Vec<relance_policy::PastReminder> = past
            .iter()
            .filter(|action| action.at <= asked)
            .map(|action| relance_policy::PastReminder { action: action.clone(), active: true })
            .collect();
        let counted: Vec<PastAction> = history.iter().map(|past| past.action.clone()).collect();
        // The scheduler wakes when the earliest stored next action comes.
        let now = invoices
            .iter()
            .filter_map(|invoice| plan(&policy, &customer, invoice, &counted, asked).decision.next_time())
            .map(|at| at.max(asked))
            .min()
            .unwrap_or(asked);
        let due: Vec<Invoice> = invoices
            .iter()
            .filter(|invoice| {
                plan(&policy, &customer, invoice, &counted, now)
                    .decision
                    .next_time()
                    .is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        let context = relance_policy::commands::CustomerContext {
            tenant: "acme",
            customer_id: "cus_1",
            facts: None,
        };
        let all = relance_policy::plan_customer(&policy, context, &customer, &invoices, &history, now);
        let only_due = relance_policy::plan_customer(&policy, context, &customer, &due, &history, now);
        match (all, only_due) {
            (Ok(all), Ok(only_due)) => {
                prop_assert_eq!(&all.decided, &only_due.decided);
                for (invoice_id, planned) in &only_due.plans {
                    prop_assert_eq!(all.plans.get(invoice_id), Some(planned), "{}", invoice_id);
                }
            }
            (Err(all), Err(only_due)) => prop_assert_eq!(all.to_string(), only_due.to_string()),
            (all, only_due) => {
                return Err(TestCaseError::fail(format!("{all:?} but with the due invoices only {only_due:?}")))
            }
        }
    }

    /// For any time zone, instant and end of a promise, the instant the planner resumes at is
    /// one the sender's guard lets through: both judge the pause on the customer's own date.
    #[test]
    fn the_planner_resumes_when_the_guard_lets_the_reminder_through(
        zone in proptest::sample::select(vec![
            "Pacific/Kiritimati", "Pacific/Auckland", "Pacific/Noumea", "Australia/Sydney",
            "Asia/Kolkata", "Europe/Paris", "UTC", "America/Los_Angeles", "Pacific/Pago_Pago",
        ]),
        promised_offset in 0u64..40,
        grace in 0u32..5,
        asked_hours in 0i64..72,
    ) {
        let policy = default_policy();
        let promised_on = date("2026-12-10") + Days::new(promised_offset);
        let base = invoice("inv_1", 80_000, "2026-11-20");
        let paused = with(&base, "promise", InvoiceFact::PromisedToPay { promised_on, grace_days: grace });
        let customer = CustomerSnapshot {
            customer_id: "cus_1".into(),
            timezone: Some(zone.to_string()),
            ..CustomerSnapshot::default()
        };
        let tz: Tz = zone.parse().unwrap();
        let asked = utc("2026-12-01T00:00:00Z") + Duration::hours(asked_hours);
        let until = match plan(&policy, &customer, &paused, &[], asked).decision {
            Decision::Wait { until, .. } => until,
            other => return Err(TestCaseError::fail(format!("expected a wait, got {other:?}"))),
        };
        // The guard, at that instant, on the customer's date.
        let today = relance_domain::calendar::local_date(tz, until);
        let guarded = relance_delivery::guard::GuardInvoice::of(&paused, today);
        prop_assert!(
            !matches!(guarded.state, DunningState::Paused { .. }),
            "resumes at {until} ({today} in {zone}) but the guard sees {:?}", guarded.state
        );
        // And the planner, asked at that instant, takes a step.
        let resumed = plan(&policy, &customer, &paused, &[], until).decision;
        prop_assert!(matches!(resumed, Decision::Send { .. }), "{resumed:?}");
    }
}
