use chrono::NaiveDate;
use proptest::prelude::*;
use relance_contracts::commands::SendReminderV1;
use relance_contracts::Envelope;
use relance_storage::deliveries::{GuardCustomer, GuardInvoice};

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
        state: "overdue".into(),
        pause_reason: None,
        pause_until: None,
        closed_reason: None,
        escalated_to: None,
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
    let cases = [
        ("closed", None, Some("paid"), SkipReason::InvoicePaid),
        ("closed", None, Some("voided"), SkipReason::InvoiceVoided),
        (
            "closed",
            None,
            Some("credited"),
            SkipReason::InvoiceCredited,
        ),
        (
            "closed",
            None,
            Some("written_off"),
            SkipReason::InvoiceWrittenOff,
        ),
        ("paused", Some("dispute"), None, SkipReason::InvoiceDisputed),
        (
            "paused",
            Some("promise_to_pay"),
            None,
            SkipReason::InvoicePaused,
        ),
        (
            "paused",
            Some("manual_hold"),
            None,
            SkipReason::InvoicePaused,
        ),
        (
            "paused",
            Some("payment_claimed"),
            None,
            SkipReason::InvoicePaused,
        ),
        (
            "paused",
            Some("awaiting_approval"),
            None,
            SkipReason::InvoicePaused,
        ),
        ("escalated", None, None, SkipReason::InvoiceEscalated),
    ];
    for (state, pause, closed, expected) in cases {
        let mut invoice = open_invoice("inv_2026_0412");
        invoice.state = state.into();
        invoice.pause_reason = pause.map(Into::into);
        invoice.closed_reason = closed.map(Into::into);
        let verdict = decide_with(&command, &[invoice], None, None);
        assert_eq!(
            skip_reason(&verdict),
            Some(expected),
            "{state} {pause:?} {closed:?}"
        );
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

#[test]
fn a_pause_whose_end_date_has_passed_no_longer_holds_the_reminder() {
    let command = command();
    let mut promised = open_invoice("inv_2026_0412");
    promised.state = "paused".into();
    promised.pause_reason = Some("promise_to_pay".into());
    promised.pause_until = today().pred_opt();
    assert_eq!(
        skip_reason(&decide_with(&command, &[promised.clone()], None, None)),
        None,
        "the promise and its grace are over"
    );
    promised.pause_until = Some(today());
    assert_eq!(
        skip_reason(&decide_with(&command, &[promised.clone()], None, None)),
        Some(SkipReason::InvoicePaused),
        "still paused today"
    );
    promised.pause_until = None;
    assert_eq!(
        skip_reason(&decide_with(&command, &[promised], None, None)),
        Some(SkipReason::InvoicePaused),
        "no end date: paused"
    );
}

#[test]
fn a_consolidated_reminder_goes_out_about_what_is_still_due() {
    let command = two_invoice_command();
    let mut paid = open_invoice("inv_2026_0412");
    paid.state = "closed".into();
    paid.closed_reason = Some("paid".into());
    let mut partly_paid = open_invoice("inv_2026_0450");
    partly_paid.state = "partially_paid".into();
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
        customer_id: "cus_8Hq2LmT4".into(),
        held,
        held_until: until,
        sent_recently: sent,
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

fn any_state() -> impl Strategy<Value = (String, Option<String>, Option<String>, i64)> {
    prop_oneof![
        Just(("overdue".to_string(), None, None, 100)),
        Just(("not_due".to_string(), None, None, 100)),
        Just(("partially_paid".to_string(), None, None, 50)),
        Just(("overdue".to_string(), None, None, 0)),
        Just(("closed".to_string(), None, Some("paid".to_string()), 0)),
        Just(("closed".to_string(), None, Some("voided".to_string()), 0)),
        Just(("paused".to_string(), Some("dispute".to_string()), None, 100)),
        Just((
            "paused".to_string(),
            Some("promise_to_pay".to_string()),
            None,
            100
        )),
        Just(("escalated".to_string(), None, None, 100)),
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
            .map(|(index, (state, pause, closed, due))| GuardInvoice {
                invoice_id: format!("inv_{index}"),
                state: state.clone(),
                pause_reason: pause.clone(),
                closed_reason: closed.clone(),
                amount_due_minor: *due,
                ..open_invoice("x")
            })
            .collect();
        let needs = |invoice: &GuardInvoice| {
            matches!(invoice.state.as_str(), "overdue" | "not_due" | "partially_paid") && invoice.amount_due_minor > 0
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
