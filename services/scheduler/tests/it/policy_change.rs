//! A policy whose content changed since the last start applies to the open invoices it
//! governs at once (they are marked for planning), not at each one's next planned action.

use relance_domain::{Currency, InvoiceFact, Money};
use relance_scheduler::policies::{replan_changed, PolicySet};
use relance_storage::scheduling::PolicyRecorded;
use relance_testkit::{customer_event, invoice_event, seed};

use crate::helpers::{fresh_settings, next_action_of, scheduler, utc};

fn issued(invoice_id: &str, due_on: (i32, u32, u32)) -> InvoiceFact {
    InvoiceFact::Issued {
        number: format!("F-{invoice_id}"),
        issued_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        due_on: chrono::NaiveDate::from_ymd_opt(due_on.0, due_on.1, due_on.2).unwrap(),
        total: Money::new(50_000, Currency::parse("EUR").unwrap()).unwrap(),
        order_reference: None,
        payment_url: None,
        contact: None,
        description: None,
    }
}

/// A folder of policies: the shipped default with `version` set, and tenants' own files.
fn policies(dir: &tempfile::TempDir, default_version: u32, tenants: &[(&str, u32)]) -> PolicySet {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/policies/default.yaml"),
    )
    .unwrap();
    let with_version =
        |version: u32| shipped.replacen("version: 1", &format!("version: {version}"), 1);
    std::fs::write(
        dir.path().join("default.yaml"),
        with_version(default_version),
    )
    .unwrap();
    for (tenant, version) in tenants {
        std::fs::write(
            dir.path().join(format!("{tenant}.yaml")),
            with_version(*version),
        )
        .unwrap();
    }
    PolicySet::load(dir.path().to_str().unwrap()).expect("policies")
}

fn outcome(outcomes: &[(String, PolicyRecorded)], key: &str) -> PolicyRecorded {
    outcomes
        .iter()
        .find(|(policy, _)| policy == key)
        .map(|(_, recorded)| *recorded)
        .unwrap_or_else(|| panic!("{key} in {outcomes:?}"))
}

#[tokio::test]
async fn a_changed_policy_marks_the_open_invoices_it_governs_for_planning_at_once() {
    let settings = fresh_settings("policychange").await;
    let now = utc("2026-12-07T09:00:00Z");
    seed(
        &settings,
        vec![
            customer_event("acme", "cus_1", false, now),
            invoice_event(
                "acme",
                "cus_1",
                "inv_due",
                "i1",
                now,
                issued("inv_due", (2026, 11, 20)),
            ),
            invoice_event(
                "acme",
                "cus_1",
                "inv_later",
                "i2",
                now,
                issued("inv_later", (2027, 1, 15)),
            ),
        ],
        now,
    )
    .await;
    let scheduler = scheduler(&settings);
    scheduler.tick(now).await.expect("tick");
    let pool = &scheduler.pool;
    let planned = (
        next_action_of(pool, "inv_due").await.expect("planned"),
        next_action_of(pool, "inv_later").await.expect("planned"),
    );
    assert!(planned.0 > now && planned.1 > now, "both planned ahead");
    let dir = tempfile::tempdir().unwrap();

    let start = utc("2026-12-07T10:00:00Z");
    let first = replan_changed(pool, &policies(&dir, 1, &[]), start)
        .await
        .unwrap();
    assert_eq!(outcome(&first, "default"), PolicyRecorded::First);
    let again = replan_changed(pool, &policies(&dir, 1, &[]), start)
        .await
        .unwrap();
    assert_eq!(outcome(&again, "default"), PolicyRecorded::Unchanged);
    assert_eq!(
        (
            next_action_of(pool, "inv_due").await,
            next_action_of(pool, "inv_later").await
        ),
        (Some(planned.0), Some(planned.1)),
        "a first start and an unchanged policy re-plan nothing"
    );

    // A tenant's own policy appears: its tenant (none of its invoices here) is planned again;
    // the default (still acme's) is unchanged.
    let restart = utc("2026-12-07T11:00:00Z");
    let outcomes = replan_changed(pool, &policies(&dir, 1, &[("globex", 1)]), restart)
        .await
        .unwrap();
    assert_eq!(outcome(&outcomes, "default"), PolicyRecorded::Unchanged);
    assert_eq!(
        outcome(&outcomes, "globex"),
        PolicyRecorded::Changed { invoices_marked: 0 }
    );

    // globex's policy changes: it governs none of acme's invoices.
    let outcomes = replan_changed(pool, &policies(&dir, 1, &[("globex", 2)]), restart)
        .await
        .unwrap();
    assert_eq!(
        outcome(&outcomes, "globex"),
        PolicyRecorded::Changed { invoices_marked: 0 }
    );
    assert_eq!(next_action_of(pool, "inv_later").await, Some(planned.1));

    // The default changes: acme's two open invoices are planned again now.
    let outcomes = replan_changed(pool, &policies(&dir, 2, &[("globex", 2)]), restart)
        .await
        .unwrap();
    assert_eq!(
        outcome(&outcomes, "default"),
        PolicyRecorded::Changed { invoices_marked: 2 }
    );
    assert_eq!(next_action_of(pool, "inv_due").await, Some(restart));
    assert_eq!(next_action_of(pool, "inv_later").await, Some(restart));

    // acme gets its own policy: acme is planned again; a later change of the default no longer
    // touches acme.
    let own = utc("2026-12-07T12:00:00Z");
    let outcomes = replan_changed(pool, &policies(&dir, 2, &[("globex", 2), ("acme", 2)]), own)
        .await
        .unwrap();
    assert_eq!(
        outcome(&outcomes, "acme"),
        PolicyRecorded::Changed { invoices_marked: 2 }
    );
    let later = utc("2026-12-07T13:00:00Z");
    let outcomes = replan_changed(
        pool,
        &policies(&dir, 3, &[("globex", 2), ("acme", 2)]),
        later,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome(&outcomes, "default"),
        PolicyRecorded::Changed { invoices_marked: 0 },
        "the default no longer governs acme"
    );
    assert_eq!(next_action_of(pool, "inv_due").await, Some(own));

    // acme's own file is removed: the default governs acme again, and acme is planned again.
    std::fs::remove_file(dir.path().join("acme.yaml")).unwrap();
    let removed = utc("2026-12-07T14:00:00Z");
    let outcomes = replan_changed(pool, &policies(&dir, 3, &[("globex", 2)]), removed)
        .await
        .unwrap();
    assert_eq!(
        outcome(&outcomes, "acme"),
        PolicyRecorded::Changed { invoices_marked: 2 }
    );
    assert_eq!(outcome(&outcomes, "default"), PolicyRecorded::Unchanged);
    assert_eq!(next_action_of(pool, "inv_due").await, Some(removed));
}
