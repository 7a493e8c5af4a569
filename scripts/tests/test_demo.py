"""Tests of the pure parts of scripts/demo.py (`make demo`): the sizes and the clock, the
services' settings, and what it says at the end. The demo itself needs built binaries; run it
with `make demo` or scripts/demo.py.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))

import demo  # noqa: E402
import simulate_billing as sim  # noqa: E402

UTC = timezone.utc


class PlanTests(unittest.TestCase):
    def test_the_default_is_the_issue_s_portfolio_in_five_minutes(self) -> None:
        args = demo.parse_args([])
        plan = demo.make_plan(args.customers, args.invoices, args.days, args.minutes)
        self.assertEqual((plan.customers, plan.invoices, plan.days), (2000, 10_000, 90.0))
        self.assertAlmostEqual(plan.minutes, 5.0)
        self.assertAlmostEqual(plan.speed, 25_920.0)
        # The simulator's own default window for 90 days.
        self.assertEqual((plan.issue_from, plan.issue_to), (-25.0, 65.0))

    def test_fewer_days_keep_the_speed_and_take_less_time(self) -> None:
        plan = demo.make_plan(200, None, 20, None)
        self.assertEqual(plan.invoices, 1000)
        self.assertAlmostEqual(plan.speed, 25_920.0)
        self.assertAlmostEqual(plan.minutes, 20 / 18)
        # A very short period still takes half a minute, not a blink.
        self.assertAlmostEqual(demo.make_plan(10, None, 1, None).minutes, 0.5)

    def test_minutes_set_the_speed(self) -> None:
        plan = demo.make_plan(100, 300, 30, 2)
        self.assertEqual(plan.invoices, 300)
        self.assertAlmostEqual(plan.speed, 30 * 86400 / 120)

    def test_short_periods_still_issue_invoices_inside_the_period(self) -> None:
        for days in (1, 5, 20, 30, 50, 90, 180):
            issue_from, issue_to = demo.issue_window(days)
            self.assertEqual(issue_from, -25.0)
            self.assertGreater(issue_to, 0, days)
            self.assertLess(issue_to, days, days)
            self.assertGreaterEqual(issue_to, days / 2, days)

    def test_bad_sizes_are_refused_with_a_reason(self) -> None:
        for customers, invoices, days, minutes, word in [(0, None, 90, 5, "customers"), (10, 0, 90, 5, "invoices"),
                                                         (10, None, 0, 5, "days"), (10, None, 90, 0, "minutes"),
                                                         (10, None, 90, 0.1, "minutes")]:
            with self.subTest(word=word, minutes=minutes), self.assertRaises(ValueError) as caught:
                demo.make_plan(customers, invoices, days, minutes)
            self.assertIn(word, str(caught.exception))


class ClockTests(unittest.TestCase):
    def test_the_period_starts_at_midnight_utc_and_the_epoch_is_a_whole_second_ahead(self) -> None:
        start = demo.period_start(date(2026, 3, 29))
        self.assertEqual(start, datetime(2026, 3, 29, tzinfo=UTC))
        now = 1_800_000_000.25
        clock = demo.make_clock(start, 25_920.0, now, 15.0)
        self.assertEqual(clock.epoch.timestamp(), 1_800_000_016)
        self.assertEqual(clock.start, start)
        # Before the epoch the clock shows the start; one real second later, 25,920 s more.
        self.assertEqual(clock.at(now), start)
        self.assertEqual(clock.at(clock.epoch.timestamp() + 1), start + timedelta(seconds=25_920))
        # What the services read back from their environment is the same clock.
        again = sim.SimClock.from_settings(repr(clock.speed), sim.rfc3339(clock.start), sim.rfc3339(clock.epoch))
        self.assertEqual(again, clock)


class ServiceEnvTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = sim.SimClock(datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 3, 29, 10, 0, 5, tzinfo=UTC), 25_920.0)
        self.endpoints = demo.Endpoints(pg_port=40001, bootstrap="127.0.0.1:40002", mock_url="http://127.0.0.1:40003",
                                        tracker_public_port=40004, scheduler_admin_port=40005,
                                        sms_folder=Path("/tmp/demo/sms"), config_dir=Path("/repo/config"))
        self.base = {"PATH": "/usr/bin", "RELANCE_ENV": "local", "RELANCE__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:19092",
                     "RELANCE__DATABASE__PORT": "54329", "RELANCE_ADMIN_TOKEN": "secret"}

    def env(self, service: str, port: int = 41000) -> dict[str, str]:
        return demo.service_env(self.base, service, port, self.clock, self.endpoints)

    def test_never_the_shared_broker_or_database_and_nothing_of_the_caller_s_relance_settings(self) -> None:
        for service in demo.SERVICES:
            env = self.env(service)
            self.assertEqual(env["PATH"], "/usr/bin")
            self.assertEqual(env["RELANCE_ENV"], "test")
            self.assertNotIn("RELANCE_ADMIN_TOKEN", env)
            self.assertEqual(env["RELANCE__KAFKA__BOOTSTRAP_SERVERS"], "127.0.0.1:40002")
            self.assertEqual(env["RELANCE__DATABASE__PORT"], "40001")
            self.assertNotIn("19092", "".join(env.values()))
            self.assertNotIn("54329", "".join(env.values()))
            self.assertEqual(env["RELANCE_CONFIG_DIR"], "/repo/config")
            self.assertEqual(env[f"RELANCE__{service.upper()}__OPS_LISTEN_ADDRESS"], "127.0.0.1:41000")
            self.assertEqual(env["RELANCE__LINKS__PUBLIC_BASE_URL"], "http://127.0.0.1:40004")

    def test_every_service_reads_the_same_clock(self) -> None:
        clocks = {tuple(self.env(service)[f"RELANCE__RUNTIME__CLOCK__{key}"] for key in ("SPEED", "START", "EPOCH"))
                  for service in demo.SERVICES}
        self.assertEqual(clocks, {("25920.0", "2026-03-29T00:00:00Z", "2026-03-29T10:00:05Z")})

    def test_the_sender_emails_through_the_mock_and_writes_sms_to_files(self) -> None:
        env = self.env("sender")
        self.assertEqual(env["RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER"], "postmark")
        self.assertEqual(env["RELANCE__SENDER__PROVIDERS__POSTMARK__BASE_URL"], "http://127.0.0.1:40003")
        self.assertEqual(env["RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN"], demo.POSTMARK_TOKEN)
        self.assertEqual(env["RELANCE__SENDER__PROVIDERS__FILE__FOLDER"], "/tmp/demo/sms")
        # The lease outlasts a provider call that times out, plus a second, twice (config/test.toml).
        timeout = int(env["RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS"])
        self.assertGreaterEqual(int(env["RELANCE__SENDER__LEASE_MS"]), 2 * (timeout + 1000))
        self.assertNotIn("RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER", self.env("scheduler"))

    def test_the_tracker_takes_the_simulator_s_webhooks_and_addresses(self) -> None:
        env = self.env("tracker")
        self.assertEqual(env["RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS"], "127.0.0.1:40004")
        self.assertEqual(env["RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME"], demo.WEBHOOK_USER)
        self.assertEqual(env["RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD"], demo.WEBHOOK_PASSWORD)
        self.assertEqual(env["RELANCE__TRACKER__TRUSTED_PROXY_HOPS"], "1")
        self.assertEqual(self.env("scheduler")["RELANCE__SCHEDULER__ADMIN_LISTEN_ADDRESS"], "127.0.0.1:40005")


class BinariesTests(unittest.TestCase):
    def test_release_when_complete_else_debug_and_never_half_a_build(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder)
            self.assertIsNone(demo.find_binaries("auto", target))
            for name in demo.chaos.BINARIES:
                (target / "debug").mkdir(exist_ok=True)
                (target / "debug" / name).write_bytes(b"")
            self.assertEqual(demo.find_binaries("auto", target), ("debug", target / "debug"))
            self.assertIsNone(demo.find_binaries("release", target))
            (target / "release").mkdir()
            for name in demo.chaos.BINARIES[:3]:
                (target / "release" / name).write_bytes(b"")
            self.assertEqual(demo.find_binaries("auto", target), ("debug", target / "debug"))
            (target / "release" / demo.chaos.BINARIES[3]).write_bytes(b"")
            self.assertEqual(demo.find_binaries("auto", target), ("release", target / "release"))
            self.assertEqual(demo.find_binaries("debug", target), ("debug", target / "debug"))


class OutputTests(unittest.TestCase):
    def test_the_closing_lines_say_where_everything_is(self) -> None:
        out = Path("/x/.local/demo")
        lines = demo.closing_lines(out, out / "report.html", out / "mail", out / "sms", out / "ledger.json",
                                   out / "logs", 12_345, 0)
        text = "\n".join(lines)
        self.assertIn("/x/.local/demo/report.html", text)
        self.assertIn("/x/.local/demo/mail (12,345 messages", text)
        self.assertNotIn("SMS", text)
        self.assertIn("SMS: /x/.local/demo/sms (3 files)",
                      "\n".join(demo.closing_lines(out, out / "r.html", out / "mail", out / "sms", out / "l.json",
                                                   out / "logs", 1, 3)))
        self.assertIn("none were sent", "\n".join(demo.closing_lines(out, out / "r.html", out / "mail", out / "sms",
                                                                     out / "l.json", out / "logs", 0, 0)))

    def test_durations_read_as_minutes_and_seconds(self) -> None:
        self.assertEqual(demo.duration(7.4), "7s")
        self.assertEqual(demo.duration(372), "6m12s")
        self.assertEqual(demo.duration(-3), "0s")


if __name__ == "__main__":
    unittest.main()
