"""Tests of the pure parts of scripts/bench.py: statistics, the event mix, verdicts and the
report. The benchmark itself needs built binaries and about 15 minutes: `make bench`.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import sys
import unittest
from collections import Counter
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402


class Percentiles(unittest.TestCase):
    def test_interpolates_between_closest_ranks_as_numpy_does(self) -> None:
        values = [10.0, 20.0, 30.0, 40.0]
        self.assertEqual(bench.percentile(values, 0), 10.0)
        self.assertEqual(bench.percentile(values, 100), 40.0)
        self.assertAlmostEqual(bench.percentile(values, 50), 25.0)
        self.assertAlmostEqual(bench.percentile(values, 99), 39.7)

    def test_order_of_the_values_does_not_matter(self) -> None:
        self.assertEqual(bench.percentile([5, 1, 4, 2, 3], 50), 3)

    def test_one_value_and_no_value(self) -> None:
        self.assertEqual(bench.percentile([7.5], 99), 7.5)
        self.assertIsNone(bench.percentile([], 50))

    def test_p99_of_a_hundred_values_is_near_the_largest(self) -> None:
        values = list(range(1, 101))
        self.assertAlmostEqual(bench.percentile(values, 99), 99.01)

    def test_a_rate_over_no_time_is_zero(self) -> None:
        self.assertEqual(bench.per_second(10, 0), 0.0)
        self.assertEqual(bench.per_second(10, 4), 2.5)


class EventMix(unittest.TestCase):
    def test_the_mix_is_sixty_thirty_ten_and_adds_up(self) -> None:
        self.assertEqual(bench.mix_counts(100_000), (10_000, 60_000, 30_000))
        for total in (7, 999, 10_001):
            self.assertEqual(sum(bench.mix_counts(total)), total)

    def test_twelve_invoices_a_customer(self) -> None:
        events = bench.billing_events(2_000, 12.0, seed=3)
        kinds = Counter(event["type"] for _, _, event in events)
        self.assertEqual(len(events), 2_000)
        self.assertEqual(kinds["billing.customer.upserted"], 200)
        self.assertEqual(kinds["billing.invoice.issued"], 1_200)
        self.assertEqual(kinds["billing.payment.succeeded"], 600)
        customers = {event["data"]["customer_id"] for _, _, event in events}
        self.assertEqual(len(customers), 100)
        # More upserts than customers: each customer again, with a higher revision and its own id.
        self.assertEqual(len({event["id"] for _, _, event in events}), len(events))
        revisions = Counter(event["data"]["revision"] for _, _, event in events
                            if event["type"] == "billing.customer.upserted")
        self.assertEqual(revisions, Counter({1: 100, 2: 100}))

    def test_one_invoice_a_customer(self) -> None:
        events = bench.billing_events(1_000, 1.0, seed=3)
        invoices = [event for _, _, event in events if event["type"] == "billing.invoice.issued"]
        self.assertEqual(len({event["data"]["customer_id"] for event in invoices}), len(invoices))

    def test_events_go_to_their_topics_keyed_by_customer_in_time_order(self) -> None:
        events = bench.billing_events(600, 12.0, seed=5)
        for topic, key, event in events:
            self.assertEqual(key, event["data"]["customer_id"])
            self.assertEqual(topic, {"customers": "billing.customers", "invoices": "billing.invoices",
                                     "payments": "billing.payments"}[bench.sim.TOPIC_OF_TYPE[event["type"]]])
        times = [bench.sim.parse_instant(event["time"]) for _, _, event in events]
        self.assertEqual(times, sorted(times))
        issued = {event["data"]["invoice_id"]: bench.sim.parse_instant(event["time"])
                  for _, _, event in events if event["type"] == "billing.invoice.issued"}
        for _, _, event in events:
            if event["type"] == "billing.payment.succeeded":
                self.assertGreater(bench.sim.parse_instant(event["time"]), issued[event["data"]["invoice_id"]])
                self.assertEqual(event["data"]["amount"]["amount_minor"] > 0, True)

    def test_the_same_seed_gives_the_same_events(self) -> None:
        self.assertEqual(bench.billing_events(300, 12.0, seed=9), bench.billing_events(300, 12.0, seed=9))

    def test_due_portfolio_invoices_are_all_due_four_days_before_the_clock(self) -> None:
        portfolio, events = bench.due_portfolio(20, 20, seed=1)
        self.assertEqual(len(portfolio.invoices), 20)
        self.assertEqual({invoice.due_on for invoice in portfolio.invoices}, {bench.DUE_ON})
        self.assertEqual({customer.timezone for customer in portfolio.customers}, {bench.ZONE})
        self.assertEqual(Counter(event["type"] for _, _, event in events),
                         Counter({"billing.customer.upserted": 20, "billing.invoice.issued": 20}))
        self.assertEqual(bench.CLOCK_START.weekday(), 1)  # a Tuesday: inside the send window


class Verdicts(unittest.TestCase):
    def test_targets(self) -> None:
        at_least = bench.Target(">=", 0.5, "≥ 50 %")
        self.assertTrue(at_least.met(0.5))
        self.assertFalse(at_least.met(0.49))
        self.assertFalse(at_least.met(None))
        below = bench.Target("<", 250.0, "< 250 ms")
        self.assertTrue(below.met(249.9))
        self.assertFalse(below.met(250.0))

    def test_a_share_of_the_limit_is_judged_on_the_share(self) -> None:
        figure = bench.Figure("ingest", "events", 600.0, "events/s", 1000.0, "upsert",
                              bench.Target(">=", 0.5, "≥ 50 %"), "share")
        self.assertAlmostEqual(figure.share, 0.6)
        self.assertTrue(figure.passed)
        figure.value = 400.0
        self.assertFalse(figure.passed)
        self.assertEqual(figure.verdict(), "**misses target**")

    def test_a_figure_without_a_limit_or_a_target(self) -> None:
        figure = bench.Figure("send", "messages", 50.0, "msg/s")
        self.assertIsNone(figure.share)
        self.assertIsNone(figure.passed)
        self.assertEqual(figure.verdict(), "no target")

    def test_a_figure_that_could_not_be_measured_misses_its_target(self) -> None:
        figure = bench.Figure("memory", "rss", None, "MiB", target=bench.Target("<", 64, "< 64 MiB"))
        self.assertFalse(figure.passed)


class Report(unittest.TestCase):
    def figures(self) -> list[bench.Figure]:
        return [
            bench.Figure("ingest", "Events applied per second", 1234.5, "events/s", 2000.0, "upsert",
                         bench.Target(">=", 0.5, "≥ 50 % of the database limit"), "share", note="12 a customer"),
            bench.Figure("cancel", "p99", 400.0, "ms", target=bench.Target("<", 250, "< 250 ms")),
            bench.Figure("memory", "sender", 40.94, "MiB", target=bench.Target("<", 64, "< 64 MiB")),
        ]

    def test_the_table_has_every_figure_its_limit_share_and_verdict(self) -> None:
        text = bench.render_markdown("T", ["summary"], self.figures(), [("ingest", 61.2)],
                                     [("How to reproduce", ["make bench"]), ("Empty", [])])
        self.assertIn("| ingest | Events applied per second | 1,234 events/s — 12 a customer | 2,000 events/s (upsert) "
                      "| 62% | ≥ 50 % of the database limit | meets target |", text)
        self.assertIn("| cancel | p99 | 400 ms | — | — | < 250 ms | **misses target** |", text)
        self.assertIn("| memory | sender | 40.9 MiB |", text)
        self.assertIn("Targets missed: cancel — p99 (400 ms; target < 250 ms).", text)
        self.assertIn("| ingest | 61 |", text)
        self.assertIn("## How to reproduce", text)
        self.assertNotIn("## Empty", text)

    def test_every_target_met(self) -> None:
        figures = self.figures()[:1]
        text = bench.render_markdown("T", [], figures, [], [])
        self.assertIn("Every target with a figure was met.", text)

    def test_numbers_for_people(self) -> None:
        self.assertEqual(bench.number(None), "—")
        self.assertEqual(bench.number(20_000.4, "commands/s"), "20,000 commands/s")
        self.assertEqual(bench.number(15.55, "msg/s"), "15.6 msg/s")
        self.assertEqual(bench.number(2.891, "s"), "2.89 s")
        self.assertEqual(bench.number(100.66, "MiB"), "100.7 MiB")

    def test_sizes_can_be_changed_by_flags(self) -> None:
        sizes = bench.FULL.but(schedule_large=300_000, send_messages=None)
        self.assertEqual(sizes.schedule_large, 300_000)
        self.assertEqual(sizes.send_messages, bench.FULL.send_messages)
        args = bench.parse_args(["--quick", "--phases", "ingest,cancel"])
        self.assertTrue(args.quick)
        self.assertEqual(args.phases, "ingest,cancel")


if __name__ == "__main__":
    unittest.main()
