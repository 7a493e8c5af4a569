"""Tests of the pure parts of scripts/chaos.py: the bad records and the reasons they must be
dead-lettered with (checked against proto/schemas, independently of relance), the replay of
good events that the database is compared with, the commit-time intervals of the payment check,
the gap and cap checks, the fault plan and the report.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
(The short chaos run itself is scripts/tests/test_chaos_short.py.)
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import unittest
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parents[1]
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import chaos  # noqa: E402
import simulate_billing as sim  # noqa: E402

UTC = timezone.utc
START = datetime(2026, 11, 2, tzinfo=UTC)


def schema_validators() -> dict[str, Any]:
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    resources = []
    schemas = {}
    for path in sorted((ROOT / "proto" / "schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        schemas[path.name.removesuffix(".v1.json")] = schema
    registry = Registry().with_resources(resources)
    return {name: Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())
            for name, schema in schemas.items()}


VALIDATORS = schema_validators()
BILLING_TYPES = {name for name in VALIDATORS if name.startswith("billing.")}


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    if isinstance(value, dict):
        return any("\0" in key or has_nul(item) for key, item in value.items())
    return False


def classify(value: bytes | None) -> str | None:
    """The dead-letter reason docs/contracts.md and docs/events.md give a record, in the order
    of their checks; None for a valid billing event."""
    if not value:
        return "invalid_json"
    try:
        event = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "invalid_json"
    if not isinstance(event, dict):
        return "not_a_cloudevent"
    if not isinstance(event.get("specversion"), str):
        return "not_a_cloudevent"
    if event["specversion"] != "1.0":
        return "unsupported_spec_version"
    if not isinstance(event.get("type"), str):
        return "not_a_cloudevent"
    if event["type"] not in BILLING_TYPES:
        return "unknown_event_type"
    if not isinstance(event.get("schemaversion"), int) or isinstance(event.get("schemaversion"), bool):
        return "not_a_cloudevent"
    if event["schemaversion"] != 1:
        return "unsupported_schema_version"
    errors = list(VALIDATORS[event["type"]].iter_errors(event))
    if errors:
        paths = ["/".join(map(str, error.absolute_path)) for error in errors]
        return "invalid_amount" if all(path.endswith("amount_minor") for path in paths) else "schema_violation"
    if has_nul(event):
        return "invalid_text"
    return None


def good_events(count: int = 400) -> list[tuple[str, str, dict[str, Any]]]:
    """A small portfolio's billing events, as the simulator publishes them."""
    settings = sim.PortfolioSettings(seed=5, tenant=chaos.TENANT, customers=30, invoices=150, start=START, days=60)
    portfolio = sim.build_portfolio(settings)
    clock = sim.VirtualClock(START)
    records: list[tuple[str, str, dict[str, Any]]] = []

    class Recorder:
        def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
            records.append((topic, key, event))

        def poll(self) -> None:
            pass

        def close(self, timeout: float) -> int:
            return 0

    simulation = sim.Simulation(portfolio, clock, Recorder(), sim.Topics(), sim.RunOptions(tenant_domain="chaos"))
    simulation.run()
    return records[:count]


GOOD = good_events()


def bad_records(count: int, seed: int = 1) -> list[chaos.BadRecord]:
    factory = chaos.BadRecordFactory(seed, oversized_bytes=(3000, 6000))
    r = random.Random(seed)
    issued: list[tuple[str, dict[str, Any]]] = []
    out = []
    for index, current in enumerate(GOOD):
        if current[2]["type"] == "billing.invoice.issued":
            issued.append((current[0], current[2]))
        if r.random() < count / len(GOOD):
            for _ in range(8):
                bad = factory.make(factory.kind(), current, GOOD[: index + 1], issued)
                if bad is not None:
                    out.append(bad)
                    break
    return out


class BadRecords(unittest.TestCase):
    def test_every_good_event_of_the_simulator_is_valid(self) -> None:
        for _, _, event in GOOD:
            self.assertIsNone(classify(chaos.encode(event)), event["id"])

    def test_each_bad_record_fails_the_first_check_its_reason_names(self) -> None:
        bad = bad_records(300)
        kinds = Counter(record.kind for record in bad)
        self.assertGreaterEqual(len(kinds), 12, kinds)
        for record in bad:
            if record.kind in ("conflicting", "currency_mismatch", "duplicate", "reordered"):
                continue
            with self.subTest(kind=record.kind):
                self.assertEqual(classify(record.value), record.reason, record.value[:300] if record.value else None)

    def test_business_rule_records_are_valid_events(self) -> None:
        for record in bad_records(300):
            if record.kind in ("conflicting", "currency_mismatch"):
                self.assertIsNone(classify(record.value), record.kind)
            for event in record.good_events:
                self.assertIsNone(classify(chaos.encode(event)))

    def test_a_conflicting_copy_reuses_an_earlier_id_with_other_data(self) -> None:
        by_id = {event["id"]: (topic, key, event) for topic, key, event in GOOD}
        seen = Counter()
        for record in bad_records(300):
            if record.kind != "conflicting":
                continue
            copy = json.loads(record.value)
            topic, key, original = by_id[copy["id"]]
            self.assertEqual((record.topic, record.key), (topic, key.encode()), "same partition as the original")
            self.assertNotEqual(copy["data"], original["data"])
            self.assertEqual(record.reason, "conflicting_duplicate")
            seen[record.variant] += 1
        self.assertEqual(set(seen), {"adjacent", "late"})

    def test_an_exact_duplicate_is_byte_for_byte_an_earlier_record(self) -> None:
        published = {chaos.encode(event) for _, _, event in GOOD}
        duplicates = [record for record in bad_records(300) if record.kind == "duplicate"]
        self.assertTrue(duplicates)
        for record in duplicates:
            self.assertIn(record.value, published)
            self.assertIsNone(record.reason)

    def test_a_currency_mismatch_names_an_issued_invoice_in_another_currency(self) -> None:
        currencies = {e["data"]["invoice_id"]: e["data"]["total"]["currency"] for _, _, e in GOOD
                      if e["type"] == "billing.invoice.issued"}
        for record in bad_records(300):
            if record.kind == "currency_mismatch":
                credit = json.loads(record.value)
                self.assertEqual(record.topic, "billing.invoices")
                self.assertNotEqual(credit["data"]["amount"]["currency"], currencies[credit["data"]["invoice_id"]])

    def test_reordered_updates_come_newest_first_and_the_newest_wins(self) -> None:
        for record in bad_records(300):
            if record.kind != "reordered":
                continue
            newer, older = record.good_events
            self.assertGreater(newer["data"]["revision"], older["data"]["revision"])
            book = chaos.ExpectedBook()
            for _, _, event in GOOD:
                book.apply(event)
            book.apply(newer)
            book.apply(older)
            self.assertEqual(book.invoices[newer["data"]["invoice_id"]].view()["due_on"], newer["data"]["due_on"])

    def test_oversized_records_are_hundreds_of_kib_by_default(self) -> None:
        factory = chaos.BadRecordFactory(3)
        sizes = []
        for _ in range(10):
            record = factory.make("oversized", GOOD[5], GOOD[:6], [])
            sizes.append(len(record.value))
            self.assertIn(record.reason, ("schema_violation", "invalid_json"))
        self.assertGreaterEqual(min(sizes), 200 * 1024)
        self.assertLess(max(sizes), 900_000, "below the dead-letter limit with room for the envelope")


def event(kind: str, event_id: str, data: dict[str, Any], at: str = "2026-11-10T10:00:00Z") -> dict[str, Any]:
    return sim.envelope(kind, event_id, "chaos", data.get("customer_id", "cus_1"), data.get("invoice_id", "x"),
                        sim.parse_instant(at), data)


def issued(total: int = 10000, due: str = "2026-12-01", revision: int = 1, currency: str = "EUR") -> dict[str, Any]:
    return event("billing.invoice.issued", f"evt_issue_{revision}", {
        "invoice_id": "inv_1", "customer_id": "cus_1", "number": "F-1", "issued_on": "2026-11-01", "due_on": due,
        "total": {"amount_minor": total, "currency": currency}, "revision": revision})


def paid(payment_id: str, amount: int, at: str = "2026-11-20T10:00:00Z", currency: str = "EUR") -> dict[str, Any]:
    return event("billing.payment.succeeded", f"evt_{payment_id}", {
        "payment_id": payment_id, "invoice_id": "inv_1", "customer_id": "cus_1",
        "amount": {"amount_minor": amount, "currency": currency}, "paid_at": at, "method": "card"}, at)


def credited(note: str, amount: int) -> dict[str, Any]:
    return event("billing.credit_note.applied", f"evt_{note}", {
        "credit_note_id": note, "invoice_id": "inv_1", "customer_id": "cus_1",
        "amount": {"amount_minor": amount, "currency": "EUR"}, "reason": "r"})


def refunded(refund: str, amount: int) -> dict[str, Any]:
    return event("billing.payment.refunded", f"evt_{refund}", {
        "refund_id": refund, "payment_id": "p1", "invoice_id": "inv_1", "customer_id": "cus_1",
        "amount": {"amount_minor": amount, "currency": "EUR"}, "kind": "refund",
        "refunded_at": "2026-11-25T10:00:00Z", "reason": "r"})


def view(*events: dict[str, Any]) -> dict[str, Any]:
    book = chaos.ExpectedBook()
    for item in events:
        book.apply(item)
    return book.invoices["inv_1"].view()


class ExpectedState(unittest.TestCase):
    def test_the_state_does_not_depend_on_the_order_of_events(self) -> None:
        events = [issued(), paid("p1", 3000), credited("c1", 1000),
                  event("billing.invoice.updated", "evt_u3", {"invoice_id": "inv_1", "customer_id": "cus_1",
                                                             "revision": 3, "due_on": "2026-12-31"}),
                  event("billing.invoice.updated", "evt_u2", {"invoice_id": "inv_1", "customer_id": "cus_1",
                                                             "revision": 2, "due_on": "2026-12-20",
                                                             "total": {"amount_minor": 12000, "currency": "EUR"}})]
        expected = view(*events)
        self.assertEqual(expected["amount_due_minor"], 8000)
        self.assertEqual(expected["due_on"], "2026-12-31")
        for seed in range(20):
            shuffled = list(events)
            random.Random(seed).shuffle(shuffled)
            self.assertEqual(view(*shuffled), expected)

    def test_an_event_applied_twice_counts_once(self) -> None:
        self.assertEqual(view(issued(), paid("p1", 3000), paid("p1", 3000))["amount_due_minor"], 7000)

    def test_paid_in_full_closes_as_paid_with_the_last_payment_time(self) -> None:
        v = view(issued(), paid("p1", 4000, "2026-11-20T10:00:00Z"), paid("p2", 6000, "2026-11-21T10:00:00Z"))
        self.assertEqual(v["state_closed"], "paid")
        self.assertEqual(v["paid_at"], sim.parse_instant("2026-11-21T10:00:00Z"))
        self.assertEqual(view(issued(), paid("p1", 12000))["overpaid_minor"], 2000)

    def test_credits_covering_the_total_close_as_credited(self) -> None:
        self.assertEqual(view(issued(), credited("c1", 10000))["state_closed"], "credited")
        v = view(issued(), credited("c1", 4000), paid("p1", 6000))
        self.assertEqual(v["state_closed"], "paid")

    def test_a_refund_reopens_and_a_void_is_final(self) -> None:
        v = view(issued(), paid("p1", 10000), refunded("r1", 2500))
        self.assertIsNone(v["state_closed"])
        self.assertEqual((v["amount_due_minor"], v["net_paid_minor"]), (2500, 7500))
        voided = event("billing.invoice.voided", "evt_void", {"invoice_id": "inv_1", "customer_id": "cus_1"})
        self.assertEqual(view(issued(), voided, paid("p1", 10000), refunded("r1", 10000))["state_closed"], "voided")

    def test_a_payment_before_its_invoice_waits_for_it(self) -> None:
        v = view(paid("p1", 3000))
        self.assertTrue(v["awaiting_invoice"])
        self.assertEqual(v["currency"], "EUR")
        self.assertEqual(view(paid("p1", 3000), issued())["amount_due_minor"], 7000)

    def test_a_resolution_is_final(self) -> None:
        opened = event("billing.invoice.disputed", "evt_d1", {"dispute_id": "d", "invoice_id": "inv_1",
                                                              "customer_id": "cus_1", "status": "opened"})
        resolved = event("billing.invoice.disputed", "evt_d2", {"dispute_id": "d", "invoice_id": "inv_1",
                                                                "customer_id": "cus_1", "status": "resolved",
                                                                "resolution": "withdrawn"})
        self.assertTrue(view(issued(), opened)["disputed"])
        self.assertFalse(view(issued(), resolved, opened)["disputed"])

    def test_amounts_in_another_currency_are_left_out(self) -> None:
        self.assertEqual(view(issued(), paid("p1", 3000, currency="GBP"))["amount_due_minor"], 10000)

    def test_closed_intervals_follow_commits_and_reopening(self) -> None:
        intervals = chaos.closed_intervals([(10.0, [issued()]), (20.0, [paid("p1", 10000)]),
                                            (30.0, [refunded("r1", 100)]), (40.0, [paid("p2", 100)])])
        self.assertEqual(intervals, [(20.0, 30.0, "paid"), (40.0, float("inf"), "paid")])
        self.assertIsNone(chaos.closed_at(intervals, 19.99))
        self.assertEqual(chaos.closed_at(intervals, 20.0), "paid")
        self.assertIsNone(chaos.closed_at(intervals, 35.0))
        # Events committed in one transaction count together, whatever their order in it.
        self.assertEqual(chaos.closed_intervals([(5.0, [paid("p1", 10000), issued()])]),
                         [(5.0, float("inf"), "paid")])

    def test_the_database_is_compared_field_by_field(self) -> None:
        book = chaos.ExpectedBook()
        for item in (issued(), paid("p1", 4000)):
            book.apply(item)
        row = ("inv_1", "cus_1", "partially_paid", None, "EUR", 10000, 6000, 0, 4000, date(2026, 12, 1), None, None)
        self.assertEqual(chaos.compare_invoices(book, {"inv_1": row}), [])
        wrong = row[:6] + (7000,) + row[7:]
        diff = chaos.compare_invoices(book, {"inv_1": wrong})
        self.assertEqual(diff[0]["fields"], {"amount_due_minor": ["6000", "7000"]})
        self.assertEqual(chaos.compare_invoices(book, {})[0], {"invoice": "inv_1", "missing": True})
        extra = chaos.compare_invoices(book, {"inv_1": row, "inv_2": row})
        self.assertEqual(extra, [{"invoice": "inv_2", "unexpected": True}])


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


class Checks(unittest.TestCase):
    def test_the_gap_is_between_consecutive_reminders_of_one_customer(self) -> None:
        times = {"a": [at(1), at(4), at(6, 8)], "b": [at(1), at(10)]}
        self.assertEqual(chaos.gap_violations(times, timedelta(days=3)), [("a", at(4), at(6, 8))])
        self.assertEqual(chaos.gap_violations({"a": [at(1), at(4)]}, timedelta(days=3)), [])

    def test_the_cap_counts_reminders_in_any_window(self) -> None:
        window = timedelta(days=30)
        self.assertEqual(chaos.cap_violations({"a": [at(1), at(5), at(9), at(13)]}, 4, window), [])
        self.assertEqual(chaos.cap_violations({"a": [at(1), at(5), at(9), at(13), at(17)]}, 4, window),
                         [("a", at(1), 5)])
        # One exactly thirty days after the first is in the next window.
        self.assertEqual(chaos.cap_violations({"a": [at(1), at(5), at(9), at(13), at(1) + window]}, 4, window), [])

    def test_the_policy_rules_are_read_from_the_shipped_policy(self) -> None:
        gap, count, window = chaos.policy_rules(ROOT / "config" / "policies" / "default.yaml")
        self.assertEqual((gap, count, window), (timedelta(days=3), 4, timedelta(days=30)))

    def test_the_attempt_of_a_message_is_the_last_one_before_it_arrived(self) -> None:
        clock = chaos.SimulatedClock(START, datetime(2026, 11, 30, tzinfo=UTC), 3600.0)
        real = clock.epoch.timestamp()
        attempts = [(clock.simulated(real + 1), "transient"), (clock.simulated(real + 5), "accepted"),
                    (clock.simulated(real + 9), None)]
        self.assertAlmostEqual(chaos.attempt_recorded(attempts, real + 6, clock), real + 5, places=3)
        self.assertIsNone(chaos.attempt_recorded(attempts, real, clock))
        self.assertAlmostEqual(clock.real(clock.simulated(real + 12.5)), real + 12.5, places=5)

    def test_the_lag_of_a_group_counts_records_nobody_committed(self) -> None:
        end = {("t", 0): 10, ("t", 1): 5}
        self.assertEqual(chaos.group_lag(end, {("t", 0): 10, ("t", 1): 5}, ["t"]), 0)
        self.assertEqual(chaos.group_lag(end, {("t", 0): 7, ("t", 1): -1}, ["t"]), 8)


class Faults(unittest.TestCase):
    def test_every_instance_is_killed_as_often_as_the_profile_says_and_outages_do_not_overlap(self) -> None:
        for profile in (chaos.FULL, chaos.SHORT):
            plan = chaos.plan_faults(profile, seed=13)
            kills = Counter(fault.target for fault in plan if fault.kind == "kill")
            self.assertEqual(set(kills.values()), {profile.kills_per_instance})
            self.assertEqual(set(kills), set(chaos.INSTANCES))
            self.assertTrue(all(0 < fault.at < profile.load_seconds for fault in plan))
            outages = sorted((f.at, f.at + f.seconds + (10 if f.kind == "broker_restart" else 0))
                             for f in plan if f.kind != "kill")
            for (_, end), (start, _) in zip(outages, outages[1:]):
                self.assertLess(end, start)
            self.assertEqual(plan, chaos.plan_faults(profile, seed=13))
        self.assertGreaterEqual(chaos.FULL.kills_per_instance, 10)
        self.assertEqual((chaos.FULL.pg_outage_seconds, chaos.FULL.broker_freeze_seconds,
                          chaos.FULL.provider_outage_seconds), (30, 30, 60))

    def test_the_portfolio_is_sized_for_the_events_asked(self) -> None:
        customers, invoices = chaos.portfolio_size(95_000)
        self.assertGreaterEqual(customers, 2000)
        self.assertAlmostEqual(invoices * 2.65, 95_000, delta=100)


class Report(unittest.TestCase):
    def test_the_table_has_a_row_per_check_and_failures_in_detail(self) -> None:
        checks = [chaos.Check("Lost", 0, "0", True), chaos.Check("Dups", 2, "0", False, "ids a, b"),
                  chaos.Check("Info", "x", "information", None)]
        text = chaos.render_markdown("t", ["s"], checks, [("ingestor", "1", "2", "3", "0")], ["f"], ["n"])
        self.assertIn("| Lost | 0 | 0 | pass |", text)
        self.assertIn("| Dups | 2 | 0 | **FAIL** |", text)
        self.assertIn("| Info | x | information | — |", text)
        self.assertIn("- **Dups**: ids a, b", text)
        self.assertIn("| ingestor | 1 | 2 | 3 | 0 |", text)


if __name__ == "__main__":
    unittest.main()
