use chrono::Duration;
use chrono_tz::Tz;
use relance_domain::{InvoiceFact, PauseReason};
use relance_policy::{
    assign_variant, consolidate, plan, Adjustment, Decision, DoneReason, DueStep, PastAction,
    PastActionKind, SkipReason, StepChannel, TaskChannel, TimelineEntry, Trigger,
};

use crate::{customer, date, default_policy, eur, invoice, simulate_one, utc, with};

fn step_times(timeline: &[TimelineEntry]) -> Vec<(String, String)> {
    timeline
        .iter()
        .filter_map(|entry| match entry {
            TimelineEntry::Step { step, .. } => Some((step.step_id.clone(), step.at.to_rfc3339())),
            TimelineEntry::Escalation { at, task, .. } => {
                Some((format!("escalation:{}", task.code()), at.to_rfc3339()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_standard_sequence_avoids_weekends_and_holidays_and_ends_with_a_call() {
    let policy = default_policy();
    // Due on Wednesday 2 December 2026; Paris is UTC+1 in winter.
    let invoice = invoice("inv_1", 120_000, "2026-12-02");
    let timeline = simulate_one(
        &policy,
        &customer("cus_1"),
        &invoice,
        utc("2026-11-01T00:00:00Z"),
        utc("2027-03-01T00:00:00Z"),
    );
    assert_eq!(
        step_times(&timeline),
        vec![
            // -3 is Sunday 29 November: Monday at opening time.
            (
                "courtesy".to_string(),
                "2026-11-30T08:00:00+00:00".to_string()
            ),
            // +3 is Saturday 5 December: Monday.
            ("first_reminder".into(), "2026-12-07T08:00:00+00:00".into()),
            ("second_reminder".into(), "2026-12-14T08:00:00+00:00".into()),
            ("sms_reminder".into(), "2026-12-21T08:00:00+00:00".into()),
            // +30 is New Year's Day, a French holiday: Monday 4 January.
            ("final_notice".into(), "2027-01-04T08:00:00+00:00".into()),
            (
                "escalation:phone_call".into(),
                "2027-01-11T08:00:00+00:00".into()
            ),
        ]
    );
    let TimelineEntry::Step { step, segment, .. } = &timeline[0] else {
        panic!("a step first")
    };
    assert_eq!(segment, "standard");
    assert!(step.adjustments.contains(&Adjustment::SendWindow));
    assert_eq!(
        step.template.experiment.as_deref(),
        Some("courtesy_subject_2026")
    );
    let holiday = timeline.iter().find_map(|entry| match entry {
        TimelineEntry::Step { step, .. } if step.step_id == "final_notice" => {
            Some(step.adjustments.clone())
        }
        _ => None,
    });
    assert!(holiday.unwrap().contains(&Adjustment::Holiday {
        date: date("2027-01-01")
    }));
    assert!(matches!(
        timeline.last(),
        Some(TimelineEntry::End {
            reason: DoneReason::Escalated,
            ..
        })
    ));
}

#[test]
fn a_vip_customer_gets_approval_gated_gentle_steps() {
    let policy = default_policy();
    let mut vip = customer("cus_vip");
    vip.vip = true;
    let planned = plan(
        &policy,
        &vip,
        &invoice("inv_1", 120_000, "2026-12-02"),
        &[],
        utc("2026-12-10T10:00:00Z"),
    );
    assert_eq!(planned.segment, "vip");
    let Decision::Send { step } = planned.decision else {
        panic!("{:?}", planned.decision)
    };
    assert_eq!(step.step_id, "first_reminder");
    assert!(step.approval);
    assert_eq!(step.template.template, "first_reminder_vip");
}

#[test]
fn a_large_amount_gets_its_segment_with_a_phone_call_task() {
    let policy = default_policy();
    let large = invoice("inv_1", 1_500_000, "2026-12-02");
    let timeline = simulate_one(
        &policy,
        &customer("cus_1"),
        &large,
        utc("2026-11-01T00:00:00Z"),
        utc("2027-03-01T00:00:00Z"),
    );
    let channels: Vec<StepChannel> = timeline
        .iter()
        .filter_map(|entry| match entry {
            TimelineEntry::Step { step, segment, .. } => {
                assert_eq!(segment, "large_amount");
                Some(step.channel)
            }
            _ => None,
        })
        .collect();
    assert!(channels.contains(&StepChannel::PhoneCall), "{channels:?}");
    assert!(
        channels.contains(&StepChannel::FormalNotice),
        "{channels:?}"
    );
}

#[test]
fn a_paid_invoice_has_no_next_action() {
    let policy = default_policy();
    let paid = with(
        &invoice("inv_1", 10_000, "2026-12-02"),
        "pay",
        InvoiceFact::PaymentSucceeded {
            payment_id: "p1".into(),
            amount: eur(10_000),
            paid_at: utc("2026-12-01T10:00:00Z"),
        },
    );
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &paid,
        &[],
        utc("2026-12-10T10:00:00Z"),
    );
    assert_eq!(
        planned.decision,
        Decision::Done {
            reason: DoneReason::Closed
        }
    );
}

#[test]
fn a_disputed_invoice_waits_for_the_resolution_and_a_promise_for_its_date_plus_grace() {
    let policy = default_policy();
    let due = invoice("inv_1", 10_000, "2026-12-02");
    let disputed = with(
        &due,
        "d",
        InvoiceFact::Disputed {
            dispute_id: "d1".into(),
            resolved: false,
            amount: None,
        },
    );
    assert_eq!(
        plan(
            &policy,
            &customer("cus_1"),
            &disputed,
            &[],
            utc("2026-12-10T10:00:00Z")
        )
        .decision,
        Decision::Done {
            reason: DoneReason::Paused {
                reason: PauseReason::Dispute
            }
        }
    );
    let promised = with(
        &due,
        "p",
        InvoiceFact::PromisedToPay {
            promised_on: date("2026-12-15"),
            grace_days: 3,
        },
    );
    assert_eq!(
        plan(
            &policy,
            &customer("cus_1"),
            &promised,
            &[],
            utc("2026-12-10T10:00:00Z")
        )
        .decision,
        Decision::Wait {
            // Paused through the 18th (15 + 3 days of grace); dunning looks again on the 19th.
            until: utc("2026-12-19T08:00:00Z"),
            reason: DoneReason::Paused {
                reason: PauseReason::PromiseToPay
            },
        }
    );
}

#[test]
fn after_a_long_pause_only_the_latest_due_step_goes_out() {
    let policy = default_policy();
    let overdue = invoice("inv_1", 10_000, "2026-10-01");
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &overdue,
        &[],
        utc("2026-10-22T10:00:00Z"),
    );
    let Decision::Send { step } = planned.decision else {
        panic!()
    };
    assert_eq!(
        step.step_id, "sms_reminder",
        "+17 is the latest step due on day 21"
    );
    assert!(step.adjustments.contains(&Adjustment::CatchUp));
    let skipped: Vec<&str> = planned
        .skipped
        .iter()
        .map(|skipped| skipped.step_id.as_str())
        .collect();
    assert_eq!(skipped, ["courtesy", "first_reminder", "second_reminder"]);
    assert!(
        matches!(&planned.skipped[0].reason, SkipReason::SupersededByLaterStep { step_id } if step_id == "sms_reminder")
    );
}

#[test]
fn a_failed_recurring_payment_starts_its_own_sequence() {
    let policy = default_policy();
    let failed = with(
        &invoice("inv_1", 4_900, "2026-12-02"),
        "f",
        InvoiceFact::PaymentFailed {
            payment_id: "pay_1".into(),
            amount: eur(4_900),
            failed_at: utc("2026-11-24T06:00:00Z"),
            failure_code: "expired_card".into(),
            recurring: true,
            attempt: 1,
            next_retry_at: None,
        },
    );
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &failed,
        &[],
        utc("2026-11-24T06:00:00Z"),
    );
    let Decision::Send { step } = planned.decision else {
        panic!()
    };
    assert_eq!(
        step.trigger,
        Trigger::PaymentFailed {
            payment_id: "pay_1".into()
        }
    );
    assert_eq!(step.step_id, "update_payment_method");
    assert_eq!(
        step.at,
        utc("2026-11-24T08:00:00Z"),
        "at the window's opening the same day"
    );
}

#[test]
fn the_minimum_gap_and_the_cap_hold_across_a_customers_invoices() {
    let policy = default_policy();
    let history = vec![PastAction {
        invoice_ids: vec!["inv_other".into()],
        trigger: Trigger::DueDate,
        step_id: "first_reminder".into(),
        at: utc("2026-11-30T08:00:00Z"),
        kind: PastActionKind::Reminder,
    }];
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &invoice("inv_1", 10_000, "2026-12-03"),
        &history,
        utc("2026-11-30T09:00:00Z"),
    );
    let Decision::Send { step } = planned.decision else {
        panic!()
    };
    // The courtesy note was due on 30 November, the day of the other reminder: three days later.
    assert_eq!(step.step_id, "courtesy");
    assert_eq!(step.at, utc("2026-12-03T08:00:00Z"));
    assert!(step
        .adjustments
        .iter()
        .any(|adjustment| matches!(adjustment, Adjustment::MinimumGap { .. })));
}

/// Found by `make chaos` (issue 13): two scheduler replicas planned one customer milliseconds
/// apart; the one whose clock read earlier locked the customer second, saw the other's reminder
/// a few minutes *after* its own "now", and planned another at once: the gap only looked back.
#[test]
fn a_reminder_planned_just_after_now_counts_for_the_gap_and_the_cap() {
    let policy = default_policy();
    let reminder = |at: &str, invoice: &str| PastAction {
        invoice_ids: vec![invoice.into()],
        trigger: Trigger::DueDate,
        step_id: "first_reminder".into(),
        at: utc(at),
        kind: PastActionKind::Reminder,
    };
    let now = utc("2026-12-03T09:00:00Z");
    // The other replica's reminder, five minutes ahead of this replica's clock.
    let history = vec![reminder("2026-12-03T09:05:00Z", "inv_other")];
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &invoice("inv_1", 10_000, "2026-12-03"),
        &history,
        now,
    );
    match planned.decision {
        Decision::Send { step } => {
            assert!(
                step.at >= utc("2026-12-06T09:05:00Z"),
                "{} is within the gap of the reminder at 09:05",
                step.at
            );
        }
        Decision::Wait { until, .. } => assert!(until >= utc("2026-12-06T09:05:00Z"), "{until}"),
        other => panic!("{other:?}"),
    }
    // The cap counts it too: three before now and this one make four in thirty days.
    let history = vec![
        reminder("2026-11-10T08:00:00Z", "inv_a"),
        reminder("2026-11-15T08:00:00Z", "inv_b"),
        reminder("2026-11-20T08:00:00Z", "inv_c"),
        reminder("2026-12-03T09:05:00Z", "inv_other"),
    ];
    let planned = plan(
        &policy,
        &customer("cus_1"),
        &invoice("inv_1", 10_000, "2026-12-03"),
        &history,
        now,
    );
    if let Decision::Send { step } = planned.decision {
        assert!(
            step.at >= utc("2026-12-10T08:00:00Z"),
            "{}: over the cap",
            step.at
        );
    }
}

#[test]
fn a_reply_after_a_stop_on_reply_step_hands_over_to_a_person() {
    let policy = default_policy();
    let history = vec![PastAction {
        invoice_ids: vec!["inv_1".into()],
        trigger: Trigger::DueDate,
        step_id: "first_reminder".into(),
        at: utc("2026-12-07T08:00:00Z"),
        kind: PastActionKind::Reminder,
    }];
    let mut replied = customer("cus_1");
    replied.last_reply_at = Some(utc("2026-12-08T12:00:00Z"));
    let planned = plan(
        &policy,
        &replied,
        &invoice("inv_1", 10_000, "2026-12-02"),
        &history,
        utc("2026-12-09T10:00:00Z"),
    );
    assert!(
        matches!(
            planned.decision,
            Decision::Escalate {
                task: TaskChannel::ManualReview,
                ..
            }
        ),
        "{:?}",
        planned.decision
    );
}

#[test]
fn variants_are_stable_per_customer_and_follow_their_weights() {
    let policy = default_policy();
    let experiment = policy.segments[5].steps[0].experiment.as_ref().unwrap();
    let first = assign_variant(experiment, "cus_42").unwrap();
    assert_eq!(
        assign_variant(experiment, "cus_42").unwrap(),
        first,
        "the same customer, the same variant"
    );
    let date_first = (0..10_000)
        .filter(|index| {
            assign_variant(experiment, &format!("cus_{index}"))
                .unwrap()
                .id
                == "date_first"
        })
        .count();
    assert!(
        (4_500..5_500).contains(&date_first),
        "50/50 weights: {date_first}"
    );
}

#[test]
fn invoices_due_for_the_same_step_the_same_day_become_one_reminder_and_large_totals_get_the_personal_template(
) {
    let policy = default_policy();
    let now = utc("2027-01-04T08:00:00Z");
    let dues: Vec<DueStep> = ["inv_1", "inv_2", "inv_3"]
        .iter()
        .map(|id| {
            let invoice = invoice(id, 200_000, "2026-12-05");
            let planned = plan(&policy, &customer("cus_1"), &invoice, &[], now);
            let Decision::Send { step } = planned.decision else {
                panic!()
            };
            DueStep {
                invoice_id: (*id).into(),
                segment: planned.segment,
                amount_due_minor: 200_000,
                currency: Some("EUR".into()),
                step,
            }
        })
        .collect();
    let groups = consolidate(&policy, Tz::Europe__Paris, dues);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].invoice_ids, ["inv_1", "inv_2", "inv_3"]);
    assert_eq!(groups[0].totals["EUR"], 600_000);
    assert!(
        groups[0].personal,
        "6,000.00 EUR is above the 5,000.00 threshold"
    );
    assert_eq!(groups[0].template.template, "final_notice_personal");
    let _ = Duration::zero();
}
