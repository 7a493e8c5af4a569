use relance_domain::{
    apply_customer_event, apply_invoice_event, payment_behaviour, Contact, CustomerEvent,
    CustomerProfile, InvoiceFact, RejectionReason, Segment,
};

use crate::{at, date, eur, event, issued};

fn upsert(id: &str, revision: i64, legal_name: &str) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        tenant: "acme".into(),
        customer_id: "cus_1".into(),
        time: at(1, 9),
        revision: Some(revision),
        profile: CustomerProfile {
            legal_name: legal_name.into(),
            contact: Contact {
                first_name: Some("Camille".into()),
                last_name: Some("Durand".into()),
                email: Some("c@d.fr".into()),
                phone: None,
            },
            locale: "fr-FR".into(),
            timezone: "Europe/Paris".into(),
            country: "FR".into(),
            segment: Segment {
                vip: true,
                ..Segment::default()
            },
        },
    }
}

#[test]
fn the_newest_profile_wins_whatever_the_arrival_order() {
    let newer = apply_customer_event(None, &upsert("e2", 2, "Durand SARL")).unwrap();
    let after_old = apply_customer_event(Some(&newer), &upsert("e1", 1, "Durand")).unwrap();
    assert_eq!(after_old.profile.unwrap().value.legal_name, "Durand SARL");
}

#[test]
fn a_customer_of_another_tenant_is_refused() {
    let facts = apply_customer_event(None, &upsert("e1", 1, "Durand")).unwrap();
    let mut other = upsert("e2", 2, "Durand");
    other.tenant = "globex".into();
    assert_eq!(
        apply_customer_event(Some(&facts), &other)
            .unwrap_err()
            .reason,
        RejectionReason::TenantMismatch
    );
}

#[test]
fn payment_behaviour_counts_on_time_and_late_payments_open_balance_and_lifetime_paid() {
    let today = date("2026-12-31");
    let paid_on_time = {
        let invoice = apply_invoice_event(
            None,
            &event("a1", at(1, 9), issued(eur(10_000), "2026-11-20")),
        )
        .unwrap();
        apply_invoice_event(
            Some(&invoice),
            &event(
                "a2",
                at(15, 9),
                InvoiceFact::PaymentSucceeded {
                    payment_id: "p1".into(),
                    amount: eur(10_000),
                    paid_at: at(15, 10),
                },
            ),
        )
        .unwrap()
    };
    let paid_five_days_late = {
        let mut first = event("b1", at(1, 9), issued(eur(5_000), "2026-11-20"));
        first.invoice_id = "inv_2".into();
        let invoice = apply_invoice_event(None, &first).unwrap();
        let mut payment = event(
            "b2",
            at(25, 9),
            InvoiceFact::PaymentSucceeded {
                payment_id: "p2".into(),
                amount: eur(5_000),
                paid_at: at(25, 10),
            },
        );
        payment.invoice_id = "inv_2".into();
        apply_invoice_event(Some(&invoice), &payment).unwrap()
    };
    let open = {
        let mut first = event("c1", at(3, 9), issued(eur(7_000), "2026-12-10"));
        first.invoice_id = "inv_3".into();
        apply_invoice_event(None, &first).unwrap()
    };
    let outcomes: Vec<_> = [paid_on_time, paid_five_days_late, open]
        .iter()
        .filter_map(|invoice| invoice.outcome(today))
        .collect();
    let behaviour = payment_behaviour(&outcomes);
    assert_eq!(behaviour.paid_invoices, 2);
    assert_eq!(behaviour.paid_on_time, 1);
    assert_eq!(behaviour.on_time_percent(), Some(50));
    assert_eq!(behaviour.total_days_late, 5);
    assert_eq!(behaviour.average_days_late(), Some(2));
    assert_eq!(behaviour.open_invoices, 1);
    assert_eq!(
        behaviour.open_balance.values().copied().collect::<Vec<_>>(),
        vec![7_000]
    );
    assert_eq!(
        behaviour
            .lifetime_paid
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![15_000]
    );
    assert_eq!(behaviour.first_invoice_on, Some(date("2026-11-01")));
    assert_eq!(behaviour.customer_since(None), Some(date("2026-11-01")));
    let mut profile = upsert("e1", 1, "Durand").profile;
    profile.segment.customer_since = Some(date("2019-05-01"));
    assert_eq!(
        behaviour.customer_since(Some(&profile)),
        Some(date("2019-05-01"))
    );
}

#[test]
fn a_recount_reads_each_customers_own_invoices() {
    let mut book = relance_domain::Book::default();
    let now = at(5, 9);
    let mut theirs = event("a1", at(1, 9), issued(eur(10_000), "2026-12-20"));
    theirs.invoice_id = "inv_a".into();
    let mut another_customers = event("b1", at(1, 9), issued(eur(3_000), "2026-12-20"));
    another_customers.invoice_id = "inv_b".into();
    another_customers.customer_id = "cus_2".into();
    for invoice_event in [theirs, another_customers] {
        book.apply_at(
            &relance_domain::BookEvent::Invoice(invoice_event),
            now,
            chrono_tz::UTC,
        )
        .unwrap();
    }
    let customers = [
        relance_domain::scoped("acme", "cus_1"),
        relance_domain::scoped("acme", "cus_without_invoices"),
    ];
    let recounted = book.recount_behaviours(&customers, now, chrono_tz::UTC);
    assert_eq!(recounted.len(), 2);
    let (key, first) = &recounted[0];
    assert_eq!(key, &customers[0]);
    assert_eq!(first.open_invoices, 1);
    assert_eq!(
        first.open_balance.values().copied().collect::<Vec<_>>(),
        vec![10_000],
        "the other customer's invoice is not theirs"
    );
    assert_eq!(recounted[1].1, relance_domain::PaymentBehaviour::default());
}
