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


class Metrics(unittest.TestCase):
    EXPOSITION = "\n".join([
        "# HELP relance_kafka_assigned_partitions Partitions of each topic assigned to this consumer.",
        "# TYPE relance_kafka_assigned_partitions gauge",
        'relance_kafka_assigned_partitions{topic="billing.invoices"} 4',
        'relance_kafka_assigned_partitions{topic="billing.payments"} 0',
        'relance_kafka_assigned_partitions_other{topic="billing.payments"} 7',
        "relance_ingest_events_total 12",
    ])

    def test_every_series_of_the_metric_and_only_it(self) -> None:
        self.assertEqual(bench.series_values(self.EXPOSITION, "relance_kafka_assigned_partitions"), [4.0, 0.0])
        self.assertEqual(bench.series_values(self.EXPOSITION, "relance_ingest_events_total"), [12.0])
        self.assertEqual(bench.series_values(self.EXPOSITION, "relance_missing"), [])


class Addresses(unittest.TestCase):
    def test_the_address_of_a_display_name_or_a_bare_one(self) -> None:
        self.assertEqual(bench.bare_address("Camille Durand <camille@example.com>"), "camille@example.com")
        self.assertEqual(bench.bare_address(" billing@acme.example "), "billing@acme.example")


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


class Profiles(unittest.TestCase):
    SELF = ("# To display the perf.data header info, please use --header/--header-only options.\n"
            "#\n# Total Lost Samples: 0\n#\n"
            "# Samples: 12K of event 'cpu-clock:ppp'\n"
            "# Event count (approx.): 336673344\n#\n"
            "# Overhead\tShared Object       \tSymbol                               \n"
            " 22.02% \tscheduler\t[.] relance_policy::plan::Planner::next_step::h0123456789abcdef\n"
            " 4.17%  \t[kernel.kallsyms]\t[k] do_syscall_64\n"
            " 3.57%  \tlibc.so.6\t[.] __memmove_avx_unaligned_erms\n"
            "\n#\n# (Tip: use --percent-limit)\n")
    CHILDREN = ("# Samples: 168  of event 'cpu-clock:ppp'\n"
                "# Children\tSelf\tSymbol\n"
                " 35.12% \t 0.00%  \t[.] tokio::runtime::task::raw::poll\n"
                " 34.00% \t 0.00%  \t[.] tokio::net::tcp::stream::TcpStream::try_write\n"
                " 30.00% \t 2.50%  \t[.] <relance_storage::invoices::PgInvoices as relance_domain::Invoices>::upsert\n"
                " 20.00% \t 0.00%  \t[.] 0x00007f8ea11ba9c0\n"
                " 10.00% \t 1.00%  \t[k] entry_SYSCALL_64_after_hwframe\n")

    def test_perf_counts_are_read_with_their_suffix(self) -> None:
        self.assertEqual(bench.perf_count("168"), 168)
        self.assertEqual(bench.perf_count("12K"), 12_000)
        self.assertEqual(bench.perf_count("1.5M"), 1_500_000)
        self.assertIsNone(bench.perf_count("many"))

    def test_the_samples_perf_record_wrote(self) -> None:
        log = ("[ perf record: Woken up 3 times to write data ]\n"
               "[ perf record: Captured and wrote 0.513 MB /tmp/x/scheduler.perf.data (7052 samples) ]\n")
        self.assertEqual(bench.recorded_samples(log), 7052)
        self.assertIsNone(bench.recorded_samples("perf: no access"))

    def test_self_time_entries_with_their_object(self) -> None:
        parsed = bench.parse_perf_report(self.SELF)
        self.assertEqual(parsed["samples"], 12_000)  # not the "Total Lost Samples" line
        self.assertEqual([entry["percent"] for entry in parsed["entries"]], [22.02, 4.17, 3.57])
        first, kernel, libc = parsed["entries"]
        self.assertEqual(first["symbol"], "relance_policy::plan::Planner::next_step")  # no Rust hash
        self.assertEqual(first["object"], "scheduler")
        self.assertEqual((kernel["object"], kernel["kernel"]), ("[kernel]", True))
        self.assertEqual(libc["object"], "libc.so.6")

    def test_children_entries_have_both_shares(self) -> None:
        parsed = bench.parse_perf_report(self.CHILDREN)
        self.assertEqual(parsed["samples"], 168)
        second = parsed["entries"][2]
        self.assertEqual((second["percent"], second["self_percent"]), (30.0, 2.5))
        self.assertNotIn("object", second)
        own = [entry["symbol"] for entry in parsed["entries"] if bench.own_frame(entry["symbol"])]
        self.assertEqual(own, ["tokio::net::tcp::stream::TcpStream::try_write",
                               "<relance_storage::invoices::PgInvoices as relance_domain::Invoices>::upsert"])

    def test_long_symbols_are_cut_in_the_middle(self) -> None:
        symbol = "relance_storage::" + "x" * 200 + "::upsert"
        short = bench.clean_symbol(symbol, 40)
        self.assertEqual(len(short), 40)
        self.assertTrue(short.startswith("relance_storage::"))
        self.assertTrue(short.endswith("::upsert"))
        self.assertIn("…", short)

    def test_own_frames(self) -> None:
        self.assertTrue(bench.own_frame("scheduler::tick::{{closure}}"))
        self.assertTrue(bench.own_frame("<sqlx_postgres::PgConnection as sqlx_core::Connection>::ping"))
        self.assertTrue(bench.own_frame("serde_json::de::from_str"))
        self.assertFalse(bench.own_frame("__libc_start_main"))
        self.assertTrue(bench.own_frame("tokio::net::tcp::stream::TcpStream::try_write"))
        self.assertFalse(bench.own_frame("tokio::runtime::scheduler::multi_thread::worker::Context::run"))
        self.assertFalse(bench.own_frame("tokio::runtime::task::harness::Harness<T,S>::poll"))
        self.assertFalse(bench.own_frame("<alloc::vec::Vec<T> as core::clone::Clone>::clone"))

    def test_statements_are_collapsed_and_cut(self) -> None:
        self.assertEqual(bench.collapse_sql("SELECT a,\n       b\n  FROM t  WHERE x = $1"),
                         "SELECT a, b FROM t WHERE x = $1")
        long = bench.collapse_sql("SELECT " + "column_name, " * 40 + "x FROM t", 50)
        self.assertEqual(len(long), 50)
        self.assertTrue(long.endswith("…"))

    def test_top_statements_with_shares_of_the_top_level_total(self) -> None:
        rows = [
            ("UPDATE invoices\n SET plan = $1 WHERE id = $2", 1000, 600.0, 1000, True),
            ("INSERT INTO reminders VALUES ($1)", 100, 200.0, 100, True),
            ("SELECT 1 FROM customers WHERE id = $1", 100, 50.0, 100, False),  # in a function: nested
            (bench.HARNESS_SQL + "SELECT count(*) FROM invoices WHERE next_action_at <= $1", 300, 900.0, 300, True),
            ("SELECT now()", 10, 200.0, 10, True),
        ]
        summary = bench.summarise_statements(rows, limit=4)
        self.assertEqual(summary["total_ms"], 1000.0)   # top level, without the harness
        self.assertEqual(summary["statements"], 5)
        top = summary["top"]
        self.assertEqual([s["total_ms"] for s in top], [900.0, 600.0, 200.0, 200.0])
        harness, update = top[0], top[1]
        self.assertTrue(harness["harness"])
        self.assertIsNone(harness["share"])
        self.assertEqual(harness["query"], "SELECT count(*) FROM invoices WHERE next_action_at <= $1")
        self.assertEqual(update["query"], "UPDATE invoices SET plan = $1 WHERE id = $2")
        self.assertAlmostEqual(update["share"], 0.6)
        self.assertAlmostEqual(update["mean_ms"], 0.6)

    def profile(self) -> dict:
        return {
            "phase": "schedule", "label": "100,000 open invoices, one due a customer", "service": "scheduler",
            "missed": True,
            "cpu": {"samples": 12_000, "self": bench.parse_perf_report(self.SELF)["entries"],
                    "callers": [e for e in bench.parse_perf_report(self.CHILDREN)["entries"]
                                if bench.own_frame(e["symbol"])]},
            "statements": bench.summarise_statements([
                ("UPDATE invoices SET a = $1 | b", 1000, 600.0, 1000, True),
                (bench.HARNESS_SQL + "SELECT count(*) FROM invoices", 30, 9.0, 30, True)]),
        }

    def test_a_profiled_run_in_markdown(self) -> None:
        text = "\n".join(bench.profiles_section([self.profile()]))
        self.assertIn("Targets missed — these profiles are where to look: "
                      "schedule — 100,000 open invoices, one due a customer.", text)
        self.assertIn("### schedule — 100,000 open invoices, one due a customer (scheduler) — misses its target", text)
        self.assertIn("(12,000 samples at 499 Hz)", text)
        self.assertIn("| 22.0% | scheduler | `relance_policy::plan::Planner::next_step` |", text)
        self.assertIn("| 30.0% | 2.5% | `<relance_storage::invoices::PgInvoices as relance_domain::Invoices>::upsert` |",
                      text)
        self.assertIn("| 1,000 | 600 | 0.60 | 1,000 | 100% | `UPDATE invoices SET a = $1 \\| b` |", text)
        self.assertIn("| 30 | 9 | 0.30 | 30 | harness | `SELECT count(*) FROM invoices` |", text)

    def test_without_perf_the_statements_are_still_shown(self) -> None:
        profile = self.profile()
        profile["cpu"] = {"error": "perf record ended with status 255 (no access)"}
        profile["missed"] = False
        text = "\n".join(bench.profiles_section([profile]))
        self.assertNotIn("perf record", text.split("\n")[0])
        self.assertNotIn("Targets missed", text)
        self.assertIn("No CPU profile: perf record ended with status 255 (no access)", text)
        self.assertIn("| 1,000 | 600 |", text)
        self.assertEqual(bench.profiles_section([]), [])

    def test_profile_is_a_flag(self) -> None:
        self.assertTrue(bench.parse_args(["--profile"]).profile)
        self.assertFalse(bench.parse_args([]).profile)


if __name__ == "__main__":
    unittest.main()
