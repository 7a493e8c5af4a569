//! Properties of the sender's decisions, whatever the inputs: the cap holds across a wave, the
//! bucket never lets more through than its rate, a half-open breaker lets one message through,
//! an attempt in doubt is never sent again without asking, and only an answer that says
//! nothing was received leads to sending.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use proptest::prelude::*;
use relance_contracts::commands::SendReminderV1;
use relance_contracts::Envelope;
use relance_delivery::guard::{decide_wave, Candidate, GuardCustomer, GuardInvoice, Verdict};
use relance_delivery::resilience::{Allowance, Backoff, BucketState, CircuitBreaker, SharedBucket};
use relance_delivery::transition::{
    after_attempt, after_lookup, AfterAttempt, AfterLookup, GiveUpReason, RetryPolicy,
};
use relance_delivery::{Lookup, Outcome};
use relance_domain::DunningState;

fn command(invoice: &str) -> SendReminderV1 {
    let envelope: Envelope<SendReminderV1> = serde_json::from_str(include_str!(
        "../../../proto/examples/relance.reminder.send.v1.json"
    ))
    .unwrap();
    let mut command = envelope.data;
    command.invoices[0].invoice_id = relance_contracts::Id::parse(invoice).unwrap();
    command
}

fn policy(max_attempts: u32, escalate_after: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        },
        reconcile_delay: Duration::from_secs(30),
        config_pause: Duration::from_secs(300),
        escalate_after,
    }
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Accepted { message_id: None }),
        any::<bool>().prop_map(|inactive| Outcome::Rejected {
            code: "300".into(),
            message: "refused".into(),
            recipient_inactive: inactive,
        }),
        proptest::option::of(0u64..100_000).prop_map(|hint| Outcome::Transient {
            code: "500".into(),
            message: "down".into(),
            retry_after: hint.map(Duration::from_secs),
        }),
        Just(Outcome::Ambiguous {
            message: "timeout".into()
        }),
        Just(Outcome::Misconfigured {
            code: "10".into(),
            message: "bad token".into()
        }),
    ]
}

proptest! {
    /// Whatever a customer already received and however many of their reminders one wave
    /// holds, the wave lets through no more than the cap leaves.
    #[test]
    fn the_cap_holds_across_a_wave(reminders in 1usize..12, already in 0i64..5, cap in 0u32..5) {
        let ids: Vec<String> = (0..reminders).map(|index| format!("inv_{index}")).collect();
        let commands: Vec<SendReminderV1> = ids.iter().map(|id| command(id)).collect();
        let invoices: Vec<GuardInvoice> = ids
            .iter()
            .map(|id| GuardInvoice {
                invoice_id: id.clone(),
                tenant: "acme".into(),
                state: DunningState::Overdue,
                currency: Some("EUR".into()),
                amount_due_minor: 1_000,
            })
            .collect();
        let customer = GuardCustomer {
            tenant: "acme".into(),
            customer_id: commands[0].customer_id.as_str().to_string(),
            held: false,
            held_until: None,
            sent_recently: already,
            oldest_recent: None,
        };
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let candidates: Vec<Candidate<'_>> = commands
            .iter()
            .map(|command| Candidate { tenant: "acme", command, today, suppression: None, reminder_cancelled: false })
            .collect();
        let verdicts = decide_wave(&candidates, &invoices, &[customer], cap);
        let sent = verdicts.iter().filter(|verdict| matches!(verdict, Verdict::Send { .. })).count();
        if cap == 0 {
            prop_assert_eq!(sent, reminders);
        } else {
            prop_assert_eq!(sent as i64, (i64::from(cap) - already).clamp(0, reminders as i64));
        }
    }

    /// Whatever the pace of requests, between any two draws the bucket grants no more than it
    /// held plus what the rate refilled meanwhile, and never more than asked.
    #[test]
    fn the_bucket_never_lets_more_through_than_its_rate(
        rate in 0.1f64..50.0,
        steps in proptest::collection::vec((0.0f64..2.0, 0u32..40), 1..60),
    ) {
        let bucket = SharedBucket::for_rate(rate);
        let mut state: Option<BucketState> = None;
        let mut now = 1_000.0;
        let mut draws: Vec<(f64, u32)> = Vec::new();
        for (pause, want) in steps {
            now += pause;
            let draw = bucket.take(state, now, want);
            prop_assert!(draw.granted <= want);
            if draw.granted == 0 && want > 0 {
                prop_assert!(draw.wait > Duration::ZERO);
            }
            state = Some(draw.state);
            draws.push((now, draw.granted));
        }
        for first in 0..draws.len() {
            let mut granted = 0.0;
            for draw in &draws[first..] {
                granted += f64::from(draw.1);
                let allowed = bucket.burst + rate * (draw.0 - draws[first].0);
                prop_assert!(granted <= allowed + 1e-6, "{granted} > {allowed}");
            }
        }
    }

    /// Whatever happened before, a breaker never allows more than one message while half-open,
    /// and none while that one is out.
    #[test]
    fn a_half_open_breaker_lets_exactly_one_message_through(
        events in proptest::collection::vec((0u64..3_000, 0u8..3), 1..80),
    ) {
        let start = Instant::now();
        let mut now = start;
        let mut breaker = CircuitBreaker::new(3, Duration::from_secs(1));
        for (pause, event) in events {
            now += Duration::from_millis(pause);
            let half_open = breaker.state(now) == relance_delivery::resilience::BreakerState::HalfOpen;
            match breaker.allowance(now, 100) {
                Allowance::Send(count) if half_open => {
                    prop_assert_eq!(count, 1);
                    prop_assert!(breaker.permit(now).is_ok());
                    prop_assert!(matches!(breaker.allowance(now, 100), Allowance::Wait(_)));
                }
                Allowance::Send(count) => {
                    prop_assert_eq!(count, 100);
                    prop_assert!(breaker.permit(now).is_ok());
                }
                Allowance::Wait(_) => prop_assert!(breaker.permit(now).is_err()),
            }
            match event {
                0 => breaker.record_success(),
                1 => breaker.record_failure(now),
                _ => {}
            }
        }
    }

    /// An attempt whose answer is ambiguous is never retried blindly; a transient failure is
    /// retried until the last attempt, never sooner than the provider asked (within an hour);
    /// a configuration error spends no attempt.
    #[test]
    fn every_outcome_leads_where_it_should(outcome in any_outcome(), attempt in 1u32..15, unit in 0.0f64..1.0) {
        let policy = policy(10, Duration::from_secs(4 * 3600));
        let next = after_attempt(outcome.clone(), attempt, &policy, unit);
        match (&outcome, &next) {
            (Outcome::Accepted { .. }, AfterAttempt::Sent { .. }) => {}
            (Outcome::Rejected { recipient_inactive, .. }, AfterAttempt::GiveUp { reason, dead_letter, suppress, .. }) => {
                prop_assert_eq!(*reason, GiveUpReason::ProviderRejected);
                prop_assert!(*dead_letter);
                prop_assert_eq!(suppress, recipient_inactive);
            }
            (Outcome::Transient { retry_after, .. }, AfterAttempt::Retry { after, .. }) => {
                prop_assert!(attempt < policy.max_attempts);
                prop_assert!(*after <= policy.backoff.max.max(retry_after.unwrap_or_default().min(Duration::from_secs(3600))));
                if let Some(hint) = retry_after {
                    prop_assert!(*after >= (*hint).min(Duration::from_secs(3600)));
                }
            }
            (Outcome::Transient { .. }, AfterAttempt::GiveUp { reason, .. }) => {
                prop_assert!(attempt >= policy.max_attempts);
                prop_assert_eq!(*reason, GiveUpReason::AttemptsExhausted);
                prop_assert!(next.retryable());
            }
            (Outcome::Ambiguous { .. }, AfterAttempt::Reconcile { .. }) => {}
            (Outcome::Misconfigured { .. }, AfterAttempt::Hold { .. }) => {}
            (outcome, next) => prop_assert!(false, "{outcome:?} led to {next:?}"),
        }
    }

    /// Only a provider that says it has no such message leads to sending again; one that
    /// cannot tell is asked again until the attempt has been in doubt too long, then a person
    /// settles it.
    #[test]
    fn only_a_clear_not_found_sends_again(
        lookup in prop_oneof![
            Just(Lookup::Found { message_id: Some("m".into()) }),
            Just(Lookup::NotFound),
            Just(Lookup::Unsupported),
            Just(Lookup::Unavailable("503".into())),
        ],
        in_doubt_minutes in 0u64..1_000,
        escalate_minutes in 1u64..600,
    ) {
        let policy = policy(10, Duration::from_secs(escalate_minutes * 60));
        let in_doubt_for = Duration::from_secs(in_doubt_minutes * 60);
        let next = after_lookup(lookup.clone(), "postmark", in_doubt_for, &policy);
        match (&lookup, &next) {
            (Lookup::NotFound, AfterLookup::Send)
            | (Lookup::Found { .. }, AfterLookup::Sent { .. })
            | (Lookup::Unsupported, AfterLookup::HandToPerson { .. }) => {}
            (Lookup::Unavailable(_), AfterLookup::AskAgain { .. }) => {
                prop_assert!(in_doubt_for < policy.escalate_after);
            }
            (Lookup::Unavailable(_), AfterLookup::HandToPerson { .. }) => {
                prop_assert!(in_doubt_for >= policy.escalate_after);
            }
            (lookup, next) => prop_assert!(false, "{lookup:?} led to {next:?}"),
        }
    }
}
