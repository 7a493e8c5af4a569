use relance_domain::{
    apply_invoice_event, ClosedReason, DunningState, EscalationTarget, InvoiceFact, PauseReason,
    RefundKind, RejectionReason,
};

use crate::{at, date, eur, event, issued, replay, usd};

fn payment(id: &str, amount: i64, day: u32) -> InvoiceFact {
    InvoiceFact::PaymentSucceeded {
        payment_id: id.into(),
        amount: eur(amount),
        paid_at: at(day, 10),
    }
}

#[test]
fn an_issued_invoice_is_not_due_until_its_due_date_then_overdue() {
    let invoice = replay(&[event("e1", at(1, 9), issued(eur(10_000), "2026-11-30"))]);
    assert_eq!(invoice.view(date("2026-11-30")).state, DunningState::NotDue);
    let view = invoice.view(date("2026-12-01"));
    assert_eq!(view.state, DunningState::Overdue);
    assert_eq!(view.amount_due_minor, 10_000);
}

#[test]
fn a_partial_payment_tracks_the_exact_amount_still_due() {
    let invoice = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-30")),
        event("e2", at(5, 9), payment("p1", 3_333, 5)),
    ]);
    let view = invoice.view(date("2026-12-05"));
    assert_eq!(view.state, DunningState::PartiallyPaid);
    assert_eq!(view.amount_due_minor, 6_667);
    assert_eq!(view.paid_minor, 3_333);
}

#[test]
fn paying_the_rest_closes_it_and_a_chargeback_reopens_it() {
    let paid = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
        event("e2", at(5, 9), payment("p1", 4_000, 5)),
        event("e3", at(25, 9), payment("p2", 6_000, 25)),
    ]);
    let view = paid.view(date("2026-11-26"));
    assert_eq!(
        view.state,
        DunningState::Closed {
            reason: ClosedReason::Paid
        }
    );
    assert_eq!(view.amount_due_minor, 0);
    assert_eq!(view.paid_at, Some(at(25, 10)));

    let chargeback = event(
        "e4",
        at(28, 9),
        InvoiceFact::Refunded {
            refund_id: "cb1".into(),
            payment_id: "p2".into(),
            amount: eur(6_000),
            kind: RefundKind::Chargeback,
            refunded_at: at(28, 9),
        },
    );
    let reopened = apply_invoice_event(Some(&paid), &chargeback).unwrap();
    let view = reopened.view(date("2026-11-28"));
    assert_eq!(view.state, DunningState::PartiallyPaid);
    assert_eq!(view.amount_due_minor, 6_000);
}

#[test]
fn credit_notes_reduce_the_amount_due_and_a_full_credit_closes_it_as_credited() {
    let credit = |id: &str, amount| InvoiceFact::CreditApplied {
        credit_note_id: id.into(),
        amount: eur(amount),
    };
    let partly = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
        event("e2", at(2, 9), credit("cn1", 2_500)),
    ]);
    assert_eq!(partly.view(date("2026-11-10")).amount_due_minor, 7_500);
    assert_eq!(partly.view(date("2026-11-10")).state, DunningState::NotDue);
    let full =
        apply_invoice_event(Some(&partly), &event("e3", at(3, 9), credit("cn2", 7_500))).unwrap();
    assert_eq!(
        full.view(date("2026-11-10")).state,
        DunningState::Closed {
            reason: ClosedReason::Credited
        }
    );
}

#[test]
fn overpayment_is_kept_exactly_and_nothing_is_due() {
    let invoice = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
        event("e2", at(5, 9), payment("p1", 12_000, 5)),
    ]);
    let view = invoice.view(date("2026-11-21"));
    assert_eq!(view.amount_due_minor, 0);
    assert_eq!(view.overpaid_minor, 2_000);
    assert!(view.state.is_closed());
}

#[test]
fn a_voided_invoice_stays_closed_even_after_a_refund() {
    let invoice = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
        event("e2", at(2, 9), InvoiceFact::Voided),
        event(
            "e3",
            at(3, 9),
            InvoiceFact::Refunded {
                refund_id: "r1".into(),
                payment_id: "p0".into(),
                amount: eur(500),
                kind: RefundKind::Refund,
                refunded_at: at(3, 9),
            },
        ),
    ]);
    assert_eq!(
        invoice.view(date("2026-12-01")).state,
        DunningState::Closed {
            reason: ClosedReason::Voided
        }
    );
}

#[test]
fn a_payment_before_its_invoice_waits_and_counts_once_the_invoice_arrives() {
    let early = replay(&[event("e2", at(5, 9), payment("p1", 10_000, 5))]);
    assert_eq!(
        early.view(date("2026-11-06")).state,
        DunningState::AwaitingInvoice
    );
    let complete = apply_invoice_event(
        Some(&early),
        &event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
    )
    .unwrap();
    assert_eq!(
        complete.view(date("2026-11-06")).state,
        DunningState::Closed {
            reason: ClosedReason::Paid
        }
    );
}

#[test]
fn a_dispute_before_its_invoice_pauses_it_on_arrival_until_resolved() {
    let dispute = |resolved| InvoiceFact::Disputed {
        dispute_id: "d1".into(),
        resolved,
        amount: Some(eur(1_000)),
    };
    let invoice = replay(&[
        event("e2", at(3, 9), dispute(false)),
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-20")),
    ]);
    assert_eq!(
        invoice.view(date("2026-11-25")).state,
        DunningState::Paused {
            reason: PauseReason::Dispute,
            until: None
        }
    );
    let resolved =
        apply_invoice_event(Some(&invoice), &event("e3", at(24, 9), dispute(true))).unwrap();
    assert_eq!(
        resolved.view(date("2026-11-25")).state,
        DunningState::Overdue
    );
    // "Opened" redelivered after "resolved" does not reopen the dispute.
    let replayed =
        apply_invoice_event(Some(&resolved), &event("e2", at(3, 9), dispute(false))).unwrap();
    assert_eq!(
        replayed.view(date("2026-11-25")).state,
        DunningState::Overdue
    );
}

#[test]
fn an_older_update_arriving_after_a_newer_one_does_not_win() {
    let update = |due: &str| InvoiceFact::Updated {
        total: None,
        due_on: Some(date(due)),
        contact: None,
        order_reference: None,
        payment_url: None,
    };
    let mut newer = event("e3", at(10, 9), update("2026-12-31"));
    newer.revision = Some(3);
    let mut older = event("e2", at(5, 9), update("2026-12-15"));
    older.revision = Some(2);
    let mut first = event("e1", at(1, 9), issued(eur(10_000), "2026-11-30"));
    first.revision = Some(1);
    let invoice = replay(&[first, newer, older]);
    assert_eq!(
        invoice.view(date("2026-12-20")).due_on,
        Some(date("2026-12-31"))
    );
    assert_eq!(
        invoice.view(date("2026-12-20")).state,
        DunningState::NotDue,
        "the schedule moved"
    );
}

#[test]
fn a_due_date_change_moves_an_overdue_invoice_back_to_not_due() {
    let invoice = replay(&[event("e1", at(1, 9), issued(eur(10_000), "2026-11-10"))]);
    assert_eq!(
        invoice.view(date("2026-11-15")).state,
        DunningState::Overdue
    );
    let moved = apply_invoice_event(
        Some(&invoice),
        &event(
            "e2",
            at(12, 9),
            InvoiceFact::Updated {
                total: None,
                due_on: Some(date("2026-11-30")),
                contact: None,
                order_reference: None,
                payment_url: None,
            },
        ),
    )
    .unwrap();
    assert_eq!(moved.view(date("2026-11-15")).state, DunningState::NotDue);
}

#[test]
fn a_promise_to_pay_pauses_until_the_promised_date_plus_grace_then_dunning_resumes() {
    let invoice = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-10")),
        event(
            "e2",
            at(12, 9),
            InvoiceFact::PromisedToPay {
                promised_on: date("2026-11-20"),
                grace_days: 3,
            },
        ),
    ]);
    assert_eq!(
        invoice.view(date("2026-11-23")).state,
        DunningState::Paused {
            reason: PauseReason::PromiseToPay,
            until: Some(date("2026-11-23"))
        }
    );
    assert_eq!(
        invoice.view(date("2026-11-24")).state,
        DunningState::Overdue
    );
}

#[test]
fn a_manual_hold_pauses_until_its_end_or_its_release() {
    let held = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-10")),
        event(
            "e2",
            at(12, 9),
            InvoiceFact::HoldPlaced {
                until: Some(date("2026-11-20")),
                by: "marie".into(),
                note: None,
            },
        ),
    ]);
    assert!(matches!(
        held.view(date("2026-11-15")).state,
        DunningState::Paused {
            reason: PauseReason::ManualHold,
            ..
        }
    ));
    assert_eq!(held.view(date("2026-11-21")).state, DunningState::Overdue);
    let released = apply_invoice_event(
        Some(&held),
        &event("e3", at(13, 9), InvoiceFact::HoldReleased),
    )
    .unwrap();
    assert_eq!(
        released.view(date("2026-11-15")).state,
        DunningState::Overdue
    );
}

#[test]
fn waiting_for_approval_and_a_claimed_payment_pause_dunning() {
    let base = event("e1", at(1, 9), issued(eur(10_000), "2026-11-10"));
    let approval = replay(&[
        base.clone(),
        event(
            "e2",
            at(12, 9),
            InvoiceFact::ApprovalRequested {
                step: "final_notice".into(),
            },
        ),
    ]);
    assert_eq!(
        approval.view(date("2026-11-15")).state,
        DunningState::Paused {
            reason: PauseReason::AwaitingApproval,
            until: None
        }
    );
    let claimed = replay(&[
        base,
        event(
            "e2",
            at(12, 9),
            InvoiceFact::PaymentClaimed {
                reference: Some("VIR-1".into()),
            },
        ),
    ]);
    assert_eq!(
        claimed.view(date("2026-11-15")).state,
        DunningState::Paused {
            reason: PauseReason::PaymentClaimed,
            until: None
        }
    );
}

#[test]
fn escalation_and_write_off() {
    let escalated = replay(&[
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-10")),
        event(
            "e2",
            at(20, 9),
            InvoiceFact::Escalated {
                to: EscalationTarget::Agency,
            },
        ),
    ]);
    assert_eq!(
        escalated.view(date("2026-11-25")).state,
        DunningState::Escalated {
            to: EscalationTarget::Agency
        }
    );
    let written_off = apply_invoice_event(
        Some(&escalated),
        &event(
            "e3",
            at(30, 9),
            InvoiceFact::WrittenOff { by: "cfo".into() },
        ),
    )
    .unwrap();
    assert_eq!(
        written_off.view(date("2026-12-01")).state,
        DunningState::Closed {
            reason: ClosedReason::WrittenOff
        }
    );
}

#[test]
fn an_amount_in_another_currency_is_refused() {
    let invoice = replay(&[event("e1", at(1, 9), issued(eur(10_000), "2026-11-10"))]);
    let dollars = event(
        "e2",
        at(5, 9),
        InvoiceFact::PaymentSucceeded {
            payment_id: "p1".into(),
            amount: usd(10_000),
            paid_at: at(5, 9),
        },
    );
    let rejection = apply_invoice_event(Some(&invoice), &dollars).unwrap_err();
    assert_eq!(rejection.reason, RejectionReason::CurrencyMismatch);
    assert!(
        rejection.detail.contains("USD") && rejection.detail.contains("EUR"),
        "{}",
        rejection.detail
    );
}

#[test]
fn an_amount_in_another_currency_before_the_invoice_is_kept_out_of_the_sums() {
    let invoice = replay(&[
        event(
            "e2",
            at(5, 9),
            InvoiceFact::PaymentSucceeded {
                payment_id: "p1".into(),
                amount: usd(10_000),
                paid_at: at(5, 9),
            },
        ),
        event("e1", at(1, 9), issued(eur(10_000), "2026-11-30")),
    ]);
    let view = invoice.view(date("2026-11-10"));
    assert_eq!(view.amount_due_minor, 10_000);
    assert_eq!(view.conflicting_amounts, 1);
}

#[test]
fn events_of_another_tenant_or_customer_are_refused() {
    let invoice = replay(&[event("e1", at(1, 9), issued(eur(10_000), "2026-11-10"))]);
    let mut other_tenant = event("e2", at(5, 9), InvoiceFact::Voided);
    other_tenant.tenant = "globex".into();
    assert_eq!(
        apply_invoice_event(Some(&invoice), &other_tenant)
            .unwrap_err()
            .reason,
        RejectionReason::TenantMismatch
    );
    let mut other_customer = event("e3", at(5, 9), InvoiceFact::Voided);
    other_customer.customer_id = "cus_2".into();
    assert_eq!(
        apply_invoice_event(Some(&invoice), &other_customer)
            .unwrap_err()
            .reason,
        RejectionReason::CustomerMismatch
    );
}

#[test]
fn sums_beyond_the_exact_range_are_refused() {
    let mut invoice = replay(&[event("e1", at(1, 9), issued(eur(1), "2026-11-10"))]);
    let max = relance_domain::Money::new(
        9_007_199_254_740_991,
        relance_domain::Currency::parse("EUR").unwrap(),
    )
    .unwrap();
    let mut rejected = None;
    for index in 0..2_000 {
        let credit = event(
            &format!("c{index}"),
            at(2, 9),
            InvoiceFact::CreditApplied {
                credit_note_id: format!("cn{index}"),
                amount: max.clone(),
            },
        );
        match apply_invoice_event(Some(&invoice), &credit) {
            Ok(next) => invoice = next,
            Err(rejection) => {
                rejected = Some(rejection);
                break;
            }
        }
    }
    assert_eq!(
        rejected.expect("an overflow is detected").reason,
        RejectionReason::AmountOverflow
    );
}

#[test]
fn the_book_keeps_each_tenants_invoices_and_customers_apart() {
    use relance_domain::{scoped, Book, BookEvent, DunningState};
    let mut book = Book::default();
    let today = date("2026-11-20");
    // globex's payment arrives first, for an invoice number acme uses too.
    let mut early = event("g1", at(2, 9), payment("pay-g", 1_000, 2));
    early.tenant = "globex".into();
    book.apply(&BookEvent::Invoice(early), today).unwrap();
    book.apply(
        &BookEvent::Invoice(event("a1", at(3, 9), issued(eur(10_000), "2026-11-10"))),
        today,
    )
    .expect("acme's invoice is acme's, whatever globex sent");
    let acme = &book.invoices[&scoped("acme", "inv_1")];
    assert_eq!(acme.view(today).state, DunningState::Overdue);
    assert_eq!(acme.view(today).amount_due_minor, 10_000);
    let globex = &book.invoices[&scoped("globex", "inv_1")];
    assert_eq!(globex.view(today).state, DunningState::AwaitingInvoice);
    assert_eq!(book.customers.len(), 2, "cus_1 of acme and cus_1 of globex");
    assert_eq!(book.behaviour_of("acme", "cus_1", today).open_invoices, 1);
}
