//! Properties of the invoice state machine over generated histories of one invoice.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use proptest::sample::subsequence;
use relance_domain::{
    apply_invoice_event, payment_behaviour, BehaviourChange, Book, BookEvent, EscalationTarget,
    Invoice, InvoiceEvent, InvoiceFact, PaymentBehaviour, RefundKind,
};

use crate::{at, date, eur, event};

fn day() -> impl Strategy<Value = NaiveDate> {
    (0u64..90).prop_map(|offset| date("2026-10-01") + Days::new(offset))
}

fn amount() -> impl Strategy<Value = i64> {
    // Small enough that no generated history overflows: overflow has its own test.
    0i64..5_000_000
}

/// Every kind of fact; ledger ids come from the event's index, so each is distinct.
fn fact(index: usize) -> impl Strategy<Value = InvoiceFact> {
    let id = move |prefix: &str| format!("{prefix}{index}");
    prop_oneof![
        3 => (amount(), day(), day()).prop_map(|(total, issued_on, due_on)| InvoiceFact::Issued {
            number: "F-1".into(),
            issued_on,
            due_on,
            total: eur(total),
            order_reference: None,
            payment_url: None,
            contact: None,
            description: None,
        }),
        2 => (proptest::option::of(amount()), proptest::option::of(day())).prop_map(|(total, due_on)| InvoiceFact::Updated {
            total: total.map(eur),
            due_on,
            contact: None,
            order_reference: Some("PO".into()),
            payment_url: None,
        }),
        1 => Just(InvoiceFact::Voided),
        3 => amount().prop_map(move |amount| InvoiceFact::CreditApplied { credit_note_id: id("cn"), amount: eur(amount) }),
        2 => (0usize..3, any::<bool>()).prop_map(|(dispute, resolved)| InvoiceFact::Disputed {
            dispute_id: format!("d{dispute}"),
            resolved,
            amount: None,
        }),
        5 => (amount(), 1u32..28).prop_map(move |(amount, paid_day)| InvoiceFact::PaymentSucceeded {
            payment_id: id("p"),
            amount: eur(amount),
            paid_at: at(paid_day, 10),
        }),
        1 => amount().prop_map(move |amount| InvoiceFact::PaymentFailed {
            payment_id: id("pf"),
            amount: eur(amount),
            failed_at: at(2, 6),
            failure_code: "card_declined".into(),
            recurring: true,
            attempt: 1,
            next_retry_at: None,
        }),
        2 => (amount(), any::<bool>()).prop_map(move |(amount, chargeback)| InvoiceFact::Refunded {
            refund_id: id("r"),
            payment_id: "p0".into(),
            amount: eur(amount),
            kind: if chargeback { RefundKind::Chargeback } else { RefundKind::Refund },
            refunded_at: at(20, 10),
        }),
        1 => (day(), 0u32..10).prop_map(|(promised_on, grace_days)| InvoiceFact::PromisedToPay { promised_on, grace_days }),
        1 => Just(InvoiceFact::PromiseCancelled),
        1 => proptest::option::of(day()).prop_map(|until| InvoiceFact::HoldPlaced { until, by: "marie".into(), note: None }),
        1 => Just(InvoiceFact::HoldReleased),
        1 => Just(InvoiceFact::ApprovalRequested { step: "final".into() }),
        1 => Just(InvoiceFact::ApprovalSettled),
        1 => Just(InvoiceFact::PaymentClaimed { reference: None }),
        1 => Just(InvoiceFact::PaymentClaimSettled),
        1 => Just(InvoiceFact::Escalated { to: EscalationTarget::Person }),
        1 => Just(InvoiceFact::WrittenOff { by: "cfo".into() }),
    ]
}

/// A history of one invoice: distinct event ids, arbitrary times and revisions.
fn history() -> impl Strategy<Value = Vec<InvoiceEvent>> {
    (1usize..14).prop_flat_map(|length| {
        let events: Vec<_> = (0..length)
            .map(|index| {
                (
                    fact(index),
                    1u32..28,
                    0u32..24,
                    proptest::option::of(1i64..20),
                )
                    .prop_map(move |(fact, day, hour, revision)| {
                        let mut event = event(&format!("e{index}"), at(day, hour), fact);
                        event.revision = revision;
                        event
                    })
            })
            .collect();
        events
    })
}

fn apply_all(events: &[InvoiceEvent]) -> Invoice {
    let mut invoice: Option<Invoice> = None;
    for event in events {
        invoice = Some(
            apply_invoice_event(invoice.as_ref(), event)
                .expect("same tenant, customer and currency"),
        );
    }
    invoice.expect("non-empty history")
}

fn today() -> impl Strategy<Value = NaiveDate> {
    day()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_an_event_twice_equals_applying_it_once(events in history(), pick in any::<prop::sample::Index>()) {
        let split = pick.index(events.len());
        let once = apply_all(&events[..=split]);
        let twice = apply_invoice_event(Some(&once), &events[split]).expect("applies");
        prop_assert_eq!(&twice, &once);
        // And redelivering it after later events changes nothing either.
        let all = apply_all(&events);
        let again = apply_invoice_event(Some(&all), &events[split]).expect("applies");
        prop_assert_eq!(again, all);
    }

    #[test]
    fn every_permutation_of_an_invoices_events_reaches_the_same_state(
        events in history(),
        seed in any::<u64>(),
        today in today(),
    ) {
        let mut permuted = events.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with a xorshift generator).
        let mut state = seed | 1;
        for index in (1..permuted.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            permuted.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let in_order = apply_all(&events);
        let out_of_order = apply_all(&permuted);
        prop_assert_eq!(&in_order, &out_of_order);
        prop_assert_eq!(in_order.view(today), out_of_order.view(today));
    }

    #[test]
    fn the_amount_due_is_never_negative_and_equals_invoice_minus_credits_minus_payments_plus_refunds(
        events in history(),
        today in today(),
    ) {
        let invoice = apply_all(&events);
        let view = invoice.view(today);
        prop_assert!(view.amount_due_minor >= 0);
        prop_assert!(view.overpaid_minor >= 0);
        prop_assert!(view.amount_due_minor == 0 || view.overpaid_minor == 0);

        // Recompute from the events alone: the newest total, each ledger entry once.
        let mut total: Option<(relance_domain::Version, i64)> = None;
        let (mut credits, mut payments, mut refunds) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for event in &events {
            let version = relance_domain::Version::new(event.revision, event.time, event.event_id.clone());
            match &event.fact {
                InvoiceFact::Issued { total: amount, .. } | InvoiceFact::Updated { total: Some(amount), .. }
                    if total.as_ref().is_none_or(|(best, _)| version > *best) =>
                {
                    total = Some((version, amount.amount_minor));
                }
                InvoiceFact::CreditApplied { credit_note_id, amount } => { credits.insert(credit_note_id.clone(), amount.amount_minor); }
                InvoiceFact::PaymentSucceeded { payment_id, amount, .. } => { payments.insert(payment_id.clone(), amount.amount_minor); }
                InvoiceFact::Refunded { refund_id, amount, .. } => { refunds.insert(refund_id.clone(), amount.amount_minor); }
                _ => {}
            }
        }
        let expected = total.map_or(0, |(_, amount)| amount) - credits.values().sum::<i64>()
            - payments.values().sum::<i64>() + refunds.values().sum::<i64>();
        prop_assert_eq!(view.amount_due_minor - view.overpaid_minor, expected);
    }

    #[test]
    fn a_closed_invoice_stays_closed_under_anything_but_a_refund_or_a_reopening_update(
        events in history(),
        next in (100usize..200).prop_flat_map(|index| (fact(index), Just(index))),
        today in today(),
    ) {
        let invoice = apply_all(&events);
        prop_assume!(invoice.view(today).state.is_closed());
        let (fact, index) = next;
        let reopening = matches!(fact, InvoiceFact::Refunded { .. }) || fact.sets_total();
        prop_assume!(!reopening);
        let after = apply_invoice_event(Some(&invoice), &event(&format!("e{index}"), at(27, 23), fact)).expect("applies");
        prop_assert!(after.view(today).state.is_closed(), "{:?}", after.view(today).state);
    }

    #[test]
    fn a_subset_of_events_applied_in_any_order_converges_with_its_own_replays(
        events in history().prop_flat_map(|events| { let length = events.len(); subsequence(events, 0..=length) }),
    ) {
        prop_assume!(!events.is_empty());
        let forward = apply_all(&events);
        let mut backward = events.clone();
        backward.reverse();
        prop_assert_eq!(forward, apply_all(&backward));
    }
}

/// Histories of three invoices of one customer, interleaved, cut into batches applied at times
/// days apart.
fn batched_histories() -> impl Strategy<Value = Vec<(u32, Vec<InvoiceEvent>)>> {
    (history(), history(), history(), any::<u64>(), 1usize..6).prop_map(
        |(first, second, third, seed, batches)| {
            let mut events: Vec<InvoiceEvent> = Vec::new();
            for (number, history) in [first, second, third].into_iter().enumerate() {
                for mut event in history {
                    event.invoice_id = format!("inv_{number}");
                    event.event_id = format!("{}-{}", event.invoice_id, event.event_id);
                    events.push(event);
                }
            }
            // A deterministic shuffle from the seed keeps each invoice's own order random too.
            let mut state = seed | 1;
            for index in (1..events.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let other = usize::try_from(state % (index as u64 + 1)).unwrap_or(0);
                events.swap(index, other);
            }
            let size = events.len().div_ceil(batches);
            events
                .chunks(size)
                .enumerate()
                .map(|(batch, events)| (u32::try_from(batch).unwrap_or(0) * 5 + 1, events.to_vec()))
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The ingestor stores behaviour as sums and adds each batch's change, finding the first
    /// issue date again when the change says so: whatever the batches and however many days
    /// pass between them, the sums equal the behaviour computed from all the invoices.
    #[test]
    fn behaviour_changes_added_batch_by_batch_equal_the_behaviour_of_all_invoices(
        batches in batched_histories(),
    ) {
        let customer = ("acme".to_string(), "cus_1".to_string());
        let mut book = Book::default();
        let mut stored = PaymentBehaviour::default();
        for (day, events) in &batches {
            let now = at(*day, 12);
            let before = book.outcomes(now, chrono_tz::UTC);
            for event in events {
                // A rejected event leaves the book as it was, as in the ingestor.
                let _ = book.apply_at(&BookEvent::Invoice(event.clone()), now, chrono_tz::UTC);
            }
            let changes = book.behaviour_changes(&before, std::slice::from_ref(&customer), now, chrono_tz::UTC);
            prop_assert_eq!(changes.len(), 1);
            let change = &changes[0].1;
            let recount = change.needs_first_issue_recount(&stored);
            stored = change.applied_to(&stored);
            if recount {
                // What the ingestor reads from the invoices table: the earliest issue date.
                stored.first_invoice_on = book
                    .outcomes(now, chrono_tz::UTC)
                    .values()
                    .filter_map(|outcome| outcome.issued_on)
                    .min();
            }
            prop_assert_eq!(&stored, &book.behaviour_of("acme", "cus_1", date("2026-12-31")));
            // The repair's recount (POST /v1/customers/{id}/recount-behaviour) finds nothing to
            // repair in sums kept this way.
            let recounted = book.recount_behaviours(std::slice::from_ref(&customer), now, chrono_tz::UTC);
            prop_assert_eq!(recounted.len(), 1);
            prop_assert_eq!(&stored, &recounted[0].1);
        }
    }

    #[test]
    fn a_change_from_nothing_builds_the_behaviour_and_no_change_changes_nothing(
        batches in batched_histories(),
    ) {
        let mut book = Book::default();
        for (day, events) in &batches {
            for event in events {
                let _ = book.apply_at(&BookEvent::Invoice(event.clone()), at(*day, 12), chrono_tz::UTC);
            }
        }
        let outcomes: Vec<_> = book.outcomes(at(28, 12), chrono_tz::UTC).into_values().collect();
        let behaviour = payment_behaviour(&outcomes);
        prop_assert_eq!(BehaviourChange::from_nothing_to(&behaviour).applied_to(&PaymentBehaviour::default()), behaviour.clone());
        let unchanged = BehaviourChange::between(&outcomes, &outcomes);
        prop_assert!(unchanged.is_none());
        prop_assert_eq!(unchanged.applied_to(&behaviour), behaviour);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The tracker and the scheduler apply such facts without touching payment behaviour.
    #[test]
    fn a_fact_said_not_to_change_payment_behaviour_never_changes_the_invoices_outcome(
        events in history(),
        next in (100usize..200).prop_flat_map(|index| (fact(index), Just(index))),
        today in today(),
    ) {
        let invoice = apply_all(&events);
        let (fact, index) = next;
        prop_assume!(!fact.changes_payment_behaviour());
        let after = apply_invoice_event(Some(&invoice), &event(&format!("e{index}"), at(27, 23), fact)).expect("applies");
        prop_assert_eq!(after.outcome(today), invoice.outcome(today));
    }
}
