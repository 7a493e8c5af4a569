use chrono::NaiveDate;
use proptest::prelude::*;
use relance_contracts::commands::SendReminderV1;
use relance_contracts::Envelope;
use relance_domain::{
    Book, BookEvent, ClosedReason, Currency, DunningState, EscalationTarget, InvoiceEvent,
    InvoiceFact, Money, PauseReason,
};

use super::*;

fn command() -> SendReminderV1 {
    let envelope: Envelope<SendReminderV1> = serde_json::from_str(include_str!(
        "../../../../proto/examples/relance.reminder.send.v1.json"
    ))
    .unwrap_or_else(|error| panic!("example: {error}"));
    envelope.data
}

/// The example command about two invoices of the same customer.
fn two_invoice_command() -> SendReminderV1 {
    let mut command = command();
    let mut second = command.invoices[0].clone();
    second.invoice_id =
        relance_contracts::Id::parse("inv_2026_0450").unwrap_or_else(|error| panic!("{error}"));
    command.invoices.push(second);
    command
}

fn open_invoice(id: &str) -> GuardInvoice {
    GuardInvoice {
        invoice_id: id.into(),
        tenant: "acme".into(),
        state: DunningState::Overdue,
        currency: Some("EUR".into()),
        amount_due_minor: 73_456,
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 5).unwrap_or_default()
}

fn decide_with(
    command: &SendReminderV1,
    invoices: &[GuardInvoice],
    customer: Option<&GuardCustomer>,
    suppression: Option<&str>,
) -> Verdict {
    decide(&Facts {
        tenant: "acme",
        command,
        invoices,
        customer,
        suppression,
        today: today(),
        cap_count: 2,
    })
}

fn skip_reason(verdict: &Verdict) -> Option<SkipReason> {
    match verdict {
        Verdict::Skip { reason, .. } => Some(*reason),
        Verdict::Send { .. } => None,
    }
}

#[test]
fn an_open_invoice_is_reminded() {
    let command = command();
    let verdict = decide_with(&command, &[open_invoice("inv_2026_0412")], None, None);
    assert_eq!(
        verdict,
        Verdict::Send {
            invoices: command.invoices.clone(),
            dropped: vec![]
        }
    );
}

#[test]
fn every_closed_or_paused_state_skips_with_its_reason() {
    let command = command();
    let paused = |reason| DunningState::Paused {
        reason,
        until: None,
    };
    let cases = [
        (
            DunningState::Closed {
                reason: ClosedReason::Paid,
            },
            SkipReason::InvoicePaid,
        ),
        (
            DunningState::Closed {
                reason: ClosedReason::Voided,
            },
            SkipReason::InvoiceVoided,
        ),
        (
            DunningState::Closed {
                reason: ClosedReason::Credited,
            },
            SkipReason::InvoiceCredited,
        ),
        (
            DunningState::Closed {
                reason: ClosedReason::WrittenOff,
            },
            SkipReason::InvoiceWrittenOff,
        ),
        (paused(PauseReason::Dispute), SkipReason::InvoiceDisputed),
        (paused(PauseReason::PromiseToPay), SkipReason::InvoicePaused),
        (paused(PauseReason::ManualHold), SkipReason::InvoicePaused),
        (
            paused(PauseReason::PaymentClaimed),
            SkipReason::InvoicePaused,
        ),
        (
            paused(PauseReason::AwaitingApproval),
            SkipReason::InvoicePaused,
        ),
        (
            DunningState::Escalated {
                to: EscalationTarget::Person,
            },
            SkipReason::InvoiceEscalated,
        ),
    ];
    for (state, expected) in cases {
        let mut invoice = open_invoice("inv_2026_0412");
        invoice.state = state;
        let verdict = decide_with(&command, &[invoice], None, None);
        assert_eq!(skip_reason(&verdict), Some(expected), "{state:?}");
    }
    assert_eq!(
        skip_reason(&decide_with(&command, &[], None, None)),
        Some(SkipReason::InvoiceUnknown)
    );
    let mut other_tenant = open_invoice("inv_2026_0412");
    other_tenant.tenant = "globex".into();
    assert_eq!(
        skip_reason(&decide_with(&command, &[other_tenant], None, None)),
        Some(SkipReason::InvoiceUnknown)
    );
    let mut nothing_due = open_invoice("inv_2026_0412");
    nothing_due.amount_due_minor = 0;
    assert_eq!(
        skip_reason(&decide_with(&command, &[nothing_due], None, None)),
        Some(SkipReason::NothingDue)
    );
}

/// The invoice `inv_2026_0412` due on 2 December 2026, with relance's `facts` on top, as the
/// guard sees it on `day`.
fn derived(facts: Vec<InvoiceFact>, day: NaiveDate) -> GuardInvoice {
    let time = chrono::DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .map(|time| time.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let issued = InvoiceFact::Issued {
        number: "F-2026-0412".into(),
        issued_on: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap_or_default(),
        due_on: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap_or_default(),
        total: Money::new(
            73_456,
            Currency::parse("EUR").unwrap_or_else(|error| panic!("{error}")),
        )
        .unwrap_or_else(|error| panic!("{error}")),
        order_reference: None,
        payment_url: None,
        contact: None,
        description: None,
    };
    let mut book = Book::default();
    for (index, fact) in std::iter::once(issued).chain(facts).enumerate() {
        let event = BookEvent::Invoice(InvoiceEvent {
            event_id: format!("fact-{index}"),
            tenant: "acme".into(),
            customer_id: "cus_8Hq2LmT4".into(),
            invoice_id: "inv_2026_0412".into(),
            time: time + chrono::Duration::hours(index as i64),
            revision: None,
            fact,
        });
        book.apply(&event, day)
            .unwrap_or_else(|rejection| panic!("{rejection}"));
    }
    GuardInvoice::of(
        &book.invoices[&relance_domain::scoped("acme", "inv_2026_0412")],
        day,
    )
}

#[test]
fn a_pause_whose_end_date_has_passed_no_longer_holds_the_reminder() {
    let command = command();
    // Promised for 1 December with 3 days of grace: paused through 4 December.
    let promise = || {
        vec![InvoiceFact::PromisedToPay {
            promised_on: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
            grace_days: 3,
        }]
    };
    let check = |invoice: GuardInvoice, day: NaiveDate| {
        skip_reason(&decide(&Facts {
            tenant: "acme",
            command: &command,
            invoices: &[invoice],
            customer: None,
            suppression: None,
            today: day,
            cap_count: 2,
        }))
    };
    assert_eq!(
        check(derived(promise(), today()), today()),
        None,
        "the promise and its grace are over"
    );
    let last_day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap_or_default();
    assert_eq!(
        check(derived(promise(), last_day), last_day),
        Some(SkipReason::InvoicePaused),
        "still paused today"
    );
    let hold = vec![InvoiceFact::HoldPlaced {
        until: None,
        by: "marie.lefevre".into(),
        note: None,
    }];
    assert_eq!(
        check(derived(hold, today()), today()),
        Some(SkipReason::InvoicePaused),
        "no end date: paused"
    );
}

#[test]
fn a_consolidated_reminder_goes_out_about_what_is_still_due() {
    let command = two_invoice_command();
    let mut paid = open_invoice("inv_2026_0412");
    paid.state = DunningState::Closed {
        reason: ClosedReason::Paid,
    };
    let mut partly_paid = open_invoice("inv_2026_0450");
    partly_paid.state = DunningState::PartiallyPaid;
    partly_paid.amount_due_minor = 10_000;
    match decide_with(&command, &[paid, partly_paid], None, None) {
        Verdict::Send { invoices, dropped } => {
            assert_eq!(invoices.len(), 1);
            assert_eq!(invoices[0].invoice_id.as_str(), "inv_2026_0450");
            assert_eq!(
                invoices[0].amount_due.amount_minor(),
                10_000,
                "the amount due now"
            );
            assert_eq!(
                dropped,
                vec![("inv_2026_0412".to_string(), SkipReason::InvoicePaid)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn holds_suppressions_missing_addresses_and_the_cap_skip() {
    let command = command();
    let invoices = [open_invoice("inv_2026_0412")];
    let customer = |held: bool, until: Option<NaiveDate>, sent: i64| GuardCustomer {
        tenant: "acme".into(),
        customer_id: "cus_8Hq2LmT4".into(),
        held,
        held_until: until,
        sent_recently: sent,
        oldest_recent: None,
    };
    let held = customer(true, None, 0);
    assert_eq!(
        skip_reason(&decide_with(&command, &invoices, Some(&held), None)),
        Some(SkipReason::CustomerHeld)
    );
    let held_until_tomorrow = customer(true, today().succ_opt(), 0);
    assert_eq!(
        skip_reason(&decide_with(
            &command,
            &invoices,
            Some(&held_until_tomorrow),
            None
        )),
        Some(SkipReason::CustomerHeld)
    );
    let hold_over = customer(true, today().pred_opt(), 0);
    assert_eq!(
        skip_reason(&decide_with(&command, &invoices, Some(&hold_over), None)),
        None
    );
    for (suppression, reason) in [
        ("hard_bounce", SkipReason::ContactBounced),
        ("complaint", SkipReason::ContactComplained),
        ("opt_out", SkipReason::ContactOptedOut),
        ("inactive", SkipReason::ContactInactive),
    ] {
        assert_eq!(
            skip_reason(&decide_with(&command, &invoices, None, Some(suppression))),
            Some(reason)
        );
    }
    let capped = customer(false, None, 2);
    assert_eq!(
        skip_reason(&decide_with(&command, &invoices, Some(&capped), None)),
        Some(SkipReason::FrequencyCap)
    );
    let under_cap = customer(false, None, 1);
    assert_eq!(
        skip_reason(&decide_with(&command, &invoices, Some(&under_cap), None)),
        None
    );
    let mut no_email = command.clone();
    no_email.recipient.email = None;
    assert_eq!(
        skip_reason(&decide_with(&no_email, &invoices, None, None)),
        Some(SkipReason::NoContactAddress)
    );
    let uncapped = decide(&Facts {
        tenant: "acme",
        command: &command,
        invoices: &invoices,
        customer: Some(&capped),
        suppression: None,
        today: today(),
        cap_count: 0,
    });
    assert_eq!(skip_reason(&uncapped), None, "a cap of 0 is no cap");
}

#[test]
fn reasons_have_distinct_codes() {
    let codes: std::collections::BTreeSet<&str> =
        SkipReason::ALL.iter().map(|reason| reason.code()).collect();
    assert_eq!(codes.len(), SkipReason::ALL.len());
}

fn any_state() -> impl Strategy<Value = (DunningState, i64)> {
    let paused = |reason| DunningState::Paused {
        reason,
        until: None,
    };
    prop_oneof![
        Just((DunningState::Overdue, 100)),
        Just((DunningState::NotDue, 100)),
        Just((DunningState::PartiallyPaid, 50)),
        Just((DunningState::Overdue, 0)),
        Just((
            DunningState::Closed {
                reason: ClosedReason::Paid
            },
            0
        )),
        Just((
            DunningState::Closed {
                reason: ClosedReason::Voided
            },
            0
        )),
        Just((paused(PauseReason::Dispute), 100)),
        Just((paused(PauseReason::PromiseToPay), 100)),
        Just((
            DunningState::Escalated {
                to: EscalationTarget::Person
            },
            100
        )),
    ]
}

proptest! {
    /// Whatever the invoices' states, a reminder never mentions an invoice that is paid,
    /// closed, paused, escalated or has nothing due, and is sent when and only when one invoice
    /// still needs it.
    #[test]
    fn only_invoices_that_need_a_reminder_are_ever_in_one(states in proptest::collection::vec(any_state(), 1..4)) {
        let mut command = command();
        let template = command.invoices[0].clone();
        command.invoices = (0..states.len())
            .map(|index| {
                let mut line = template.clone();
                line.invoice_id = relance_contracts::Id::parse(format!("inv_{index}")).unwrap_or_else(|error| panic!("{error}"));
                line
            })
            .collect();
        let invoices: Vec<GuardInvoice> = states
            .iter()
            .enumerate()
            .map(|(index, (state, due))| GuardInvoice {
                invoice_id: format!("inv_{index}"),
                state: *state,
                amount_due_minor: *due,
                ..open_invoice("x")
            })
            .collect();
        let needs = |invoice: &GuardInvoice| {
            matches!(invoice.state, DunningState::Overdue | DunningState::NotDue | DunningState::PartiallyPaid) && invoice.amount_due_minor > 0
        };
        match decide_with(&command, &invoices, None, None) {
            Verdict::Send { invoices: sent, dropped } => {
                prop_assert!(!sent.is_empty());
                for line in &sent {
                    let current = invoices.iter().find(|invoice| invoice.invoice_id == line.invoice_id.as_str());
                    prop_assert!(current.is_some_and(needs));
                }
                prop_assert_eq!(sent.len() + dropped.len(), invoices.len());
            }
            Verdict::Skip { .. } => prop_assert!(!invoices.iter().any(needs)),
        }
    }
}

/// Found by `make chaos` (issue 13): a payment cancelled a two-invoice reminder whose command
/// was already on its way; the sender sent it about the other invoice and the scheduler, which
/// counts cancelled reminders as never sent, planned another: two reminders hours apart.
#[test]
fn a_reminder_cancelled_after_its_command_left_is_skipped_for_good() {
    let command = two_invoice_command();
    let invoices = [open_invoice("inv_2026_0412"), open_invoice("inv_2026_0450")];
    let candidate = |reminder_cancelled| Candidate {
        tenant: "acme",
        command: &command,
        today: today(),
        suppression: None,
        reminder_cancelled,
    };
    let verdicts = decide_wave(&[candidate(true), candidate(false)], &invoices, &[], 0);
    assert_eq!(
        skip_reason(&verdicts[0]),
        Some(SkipReason::ReminderCancelled)
    );
    assert!(SkipReason::ReminderCancelled.is_final());
    assert_eq!(skip_reason(&verdicts[1]), None);
}
