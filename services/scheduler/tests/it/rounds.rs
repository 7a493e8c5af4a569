//! A round's size: customers up to `batch_customers`, their due invoices up to
//! `batch_invoices`, and a round stopped by either is followed at once by another.

use relance_domain::{BookEvent, Currency, InvoiceFact, Money};
use relance_testkit::{customer_event, invoice_event, seed};

use crate::helpers::{fresh_settings, reminders, scheduler, utc};

#[tokio::test]
async fn a_round_stops_at_its_invoices_says_it_is_full_and_the_next_one_goes_on() {
    let mut settings = fresh_settings("rounds").await;
    settings.scheduler.batch_customers = 100;
    settings.scheduler.batch_invoices = 10;
    let now = utc("2026-12-07T09:00:00Z");
    let issued = utc("2026-11-01T08:00:00Z");
    // Five customers with four invoices due each: two fit in ten invoices, a third would not.
    let mut events: Vec<BookEvent> = Vec::new();
    for customer in 0..5 {
        let customer_id = format!("cus_{customer}");
        events.push(customer_event("acme", &customer_id, false, issued));
        for invoice in 0..4 {
            let invoice_id = format!("inv_{customer}_{invoice}");
            events.push(invoice_event(
                "acme",
                &customer_id,
                &invoice_id,
                &format!("issued_{invoice_id}"),
                issued,
                InvoiceFact::Issued {
                    number: format!("F-{customer}-{invoice}"),
                    issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                    due_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                    total: Money::new(10_000 + invoice, Currency::parse("EUR").unwrap()).unwrap(),
                    order_reference: None,
                    payment_url: None,
                    contact: None,
                    description: None,
                },
            ));
        }
    }
    seed(&settings, events, now).await;
    let scheduler = scheduler(&settings);

    let mut rounds = Vec::new();
    loop {
        let report = scheduler.tick(now).await.expect("tick");
        rounds.push((report.customers, report.full));
        if !report.full {
            break;
        }
    }
    assert_eq!(
        rounds,
        vec![(2, true), (2, true), (1, false)],
        "customers planned and whether the round was full"
    );
    assert_eq!(reminders(&scheduler.pool).await.len(), 5);
    assert_eq!(scheduler.tick(now).await.expect("tick").customers, 0);
}
