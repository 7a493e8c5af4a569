"""Tests of scripts/simulate_billing.py: the shared clock, a deterministic and realistic
portfolio, events valid against proto/schemas, customers whose answers follow reminders, and
the browser-like HTTP the simulated customers make (against a small stand-in tracker).

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

SCRIPTS = Path(__file__).resolve().parents[1]
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import simulate_billing as sim  # noqa: E402

UTC = timezone.utc
START = datetime(2026, 11, 2, tzinfo=UTC)


def schema_validators() -> dict[str, Any]:
    """One validator per billing type, resolving $refs between proto/schemas files by $id."""
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


def errors_of(event: dict[str, Any]) -> list[str]:
    validator = VALIDATORS[event["type"]]
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(event)]


class RecordingPublisher:
    """Keeps every record and the simulated time it was published at."""

    def __init__(self, clock: sim.Clock) -> None:
        self.clock = clock
        self.records: list[tuple[datetime, str, str, dict[str, Any]]] = []
        self.acknowledged = 0
        self.failed = 0

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.records.append((self.clock.now(), topic, key, event))

    def poll(self) -> None:
        pass

    def close(self, timeout: float) -> int:
        return 0


def small_settings(**changes: Any) -> sim.PortfolioSettings:
    values = {"seed": 3, "tenant": "test", "customers": 300, "invoices": 1500, "start": START, "days": 90.0}
    values.update(changes)
    return sim.PortfolioSettings(**values)


def dry_simulation(settings: sim.PortfolioSettings, options: sim.RunOptions | None = None
                   ) -> tuple[sim.Simulation, RecordingPublisher, sim.VirtualClock]:
    clock = sim.VirtualClock(settings.start)
    publisher = RecordingPublisher(clock)
    simulation = sim.Simulation(sim.build_portfolio(settings), clock, publisher, sim.Topics(),
                                options or sim.RunOptions(tenant_domain=settings.tenant))
    return simulation, publisher, clock


class ClockTest(unittest.TestCase):
    def test_simulated_now_is_start_plus_real_elapsed_times_speed(self) -> None:
        epoch = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        clock = sim.SimClock(start=START, epoch=epoch, speed=3600.0)
        self.assertEqual(clock.at(epoch.timestamp()), START)
        self.assertEqual(clock.at(epoch.timestamp() + 10), START + timedelta(hours=10))
        # Before the epoch the clock shows the start, as the services' clock does.
        self.assertEqual(clock.at(epoch.timestamp() - 1), START)

    def test_the_real_time_of_a_simulated_instant_inverts_the_clock(self) -> None:
        clock = sim.SimClock(start=START, epoch=datetime(2026, 11, 30, tzinfo=UTC), speed=25_920.0)
        instant = START + timedelta(days=30, hours=5)
        self.assertAlmostEqual(clock.at(clock.real_unix(instant)).timestamp(), instant.timestamp(), delta=0.01)
        self.assertAlmostEqual(clock.real_unix(START + timedelta(days=90)) - clock.epoch.timestamp(), 300.0, places=6)

    def test_settings_are_read_like_the_services_variables(self) -> None:
        clock = sim.SimClock.from_settings("3600", "2026-12-01T08:00:00Z", "2026-11-30T12:00:00+00:00")
        self.assertEqual((clock.speed, clock.start, clock.epoch),
                         (3600.0, datetime(2026, 12, 1, 8, tzinfo=UTC), datetime(2026, 11, 30, 12, tzinfo=UTC)))
        real_now = 1_800_000_000.0
        default = sim.SimClock.from_settings(None, None, None, real_now=real_now)
        self.assertEqual((default.speed, default.start.timestamp(), default.epoch.timestamp()), (1.0, real_now, real_now))
        no_start = sim.SimClock.from_settings("60", None, "2026-11-30T12:00:00Z")
        self.assertEqual(no_start.start, no_start.epoch)
        with self.assertRaises(ValueError):
            sim.SimClock(START, START, 0.0)
        with self.assertRaises(ValueError):
            sim.parse_instant("2026-12-01T08:00:00")

    def test_instants_are_rfc3339_utc_with_z(self) -> None:
        self.assertEqual(sim.rfc3339(datetime(2026, 12, 4, 11, 2, 13, tzinfo=UTC)), "2026-12-04T11:02:13Z")
        self.assertEqual(sim.rfc3339(datetime(2026, 12, 4, 11, 2, 13, 123456, tzinfo=UTC)), "2026-12-04T11:02:13.123Z")


class PortfolioTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.portfolio = sim.build_portfolio(sim.PortfolioSettings(start=START))

    def test_the_default_portfolio_has_2000_customers_and_10000_invoices(self) -> None:
        live = [i for i in self.portfolio.invoices if not i.history]
        self.assertEqual(len(self.portfolio.customers), 2000)
        self.assertEqual(len(live), 10_000)
        self.assertGreater(sum(1 for i in self.portfolio.invoices if i.history), 300)

    def test_it_is_deterministic_given_a_seed(self) -> None:
        settings = small_settings()
        first, second = sim.build_portfolio(settings), sim.build_portfolio(settings)
        self.assertEqual(first.customers, second.customers)
        self.assertEqual(first.invoices, second.invoices)
        other = sim.build_portfolio(small_settings(seed=4))
        self.assertNotEqual([c.email for c in first.customers], [c.email for c in other.customers])

    def test_every_segment_of_the_default_policy_is_represented(self) -> None:
        personas = Counter(c.persona for c in self.portfolio.customers)
        for persona, share in sim.PERSONAS:
            self.assertGreater(personas[persona], 2000 * share * 0.6, persona)

    def test_zones_run_from_auckland_to_los_angeles_in_french_and_english(self) -> None:
        zones = {c.timezone for c in self.portfolio.customers}
        self.assertIn("Pacific/Auckland", zones)
        self.assertIn("America/Los_Angeles", zones)
        self.assertGreaterEqual(len(zones), 10)
        self.assertEqual({c.locale.split("-")[0] for c in self.portfolio.customers}, {"fr", "en"})

    def test_only_large_amount_customers_reach_the_large_amount_threshold(self) -> None:
        for invoice in self.portfolio.invoices:
            persona = self.portfolio.customer(invoice.customer_id).persona
            large = invoice.total_minor >= sim.LARGE_AMOUNT[invoice.currency]
            self.assertEqual(large, persona == "large_amount", invoice)

    def test_late_payers_have_paid_less_than_half_their_past_invoices_on_time(self) -> None:
        history: dict[str, list[bool]] = {}
        for invoice in self.portfolio.invoices:
            if invoice.history:
                on_time = invoice.baseline_paid_at is not None and invoice.baseline_paid_at.date() <= invoice.due_on
                history.setdefault(invoice.customer_id, []).append(on_time)
        late = [c for c in self.portfolio.customers if c.persona == "late_payer"]
        below_half = [c for c in late if sum(history[c.customer_id]) / len(history[c.customer_id]) < 0.5]
        self.assertGreater(len(below_half) / len(late), 0.8)
        for invoice in self.portfolio.invoices:
            if invoice.history:
                self.assertLess(invoice.baseline_paid_at, START)

    def test_new_customers_started_within_180_days(self) -> None:
        for customer in self.portfolio.customers:
            age = (START.date() - customer.customer_since).days
            if customer.persona == "new_customer":
                self.assertLess(age, 180)
            else:
                self.assertGreater(age, 180)

    def test_contacts_are_fictional(self) -> None:
        for customer in self.portfolio.customers:
            self.assertTrue(customer.email.endswith(".example"), customer.email)
            self.assertTrue(customer.ip.startswith("2001:db8:"))
        self.assertEqual(len({c.email for c in self.portfolio.customers}), 2000)


class EventsTest(unittest.TestCase):
    def test_every_published_event_is_valid_against_proto(self) -> None:
        simulation, publisher, _ = dry_simulation(small_settings())
        simulation.run()
        types = Counter()
        for _, topic, key, event in publisher.records:
            types[event["type"]] += 1
            self.assertEqual(errors_of(event), [], event)
            self.assertEqual(key, event["partitionkey"])
            self.assertEqual(key, event["data"]["customer_id"])
            self.assertEqual(topic, getattr(sim.Topics(), sim.TOPIC_OF_TYPE[event["type"]]))
        for event_type in ("billing.customer.upserted", "billing.invoice.issued", "billing.payment.succeeded",
                           "billing.credit_note.applied", "billing.invoice.disputed", "billing.invoice.updated"):
            self.assertGreater(types[event_type], 0, event_type)
        ids = [event["id"] for *_, event in publisher.records]
        self.assertEqual(len(ids), len(set(ids)), "event ids are unique")

    def test_every_billing_type_can_be_built_valid(self) -> None:
        portfolio = sim.build_portfolio(small_settings(customers=5, invoices=5))
        factory = sim.EventFactory(3, "test")
        customer, invoice = portfolio.customers[0], portfolio.invoices[0]
        at = START + timedelta(days=3)
        events = [
            factory.customer_upserted(customer, at),
            factory.invoice_issued(invoice, at, "test"),
            factory.invoice_updated(invoice, at, 2, invoice.due_on + timedelta(days=15)),
            factory.invoice_voided(invoice, at),
            factory.credit_note(invoice, at, 1000, "Commercial gesture.", 1),
            factory.dispute(invoice, at, "dsp_1", None),
            factory.dispute(invoice, at, "dsp_1", "in_favour_of_customer"),
            factory.payment_succeeded(invoice, at, at - timedelta(seconds=2), "pay_1", 1000, "card"),
            factory.payment_failed(invoice, at, "pay_2", 1, at + timedelta(days=3), "test"),
            factory.payment_failed(invoice, at, "pay_3", 2, None, "test"),
            factory.payment_refunded(invoice, at, "pay_1", 1000),
        ]
        self.assertEqual(len({event["type"] for event in events}), len(sim.TOPIC_OF_TYPE))
        for event in events:
            self.assertEqual(errors_of(event), [], event["type"])

    def test_events_are_published_when_the_clock_reaches_their_time(self) -> None:
        simulation, publisher, _ = dry_simulation(small_settings())
        simulation.run()
        live = 0
        for published_at, _, _, event in publisher.records:
            happened = sim.parse_instant(event["time"])
            self.assertLessEqual(happened, published_at, event["type"])
            if happened >= START:
                # Within the period, an event goes out when the clock shows its time (events
                # from before the period, such as past invoices, all go out at the start).
                live += 1
                self.assertLess(published_at - happened, timedelta(seconds=3), event)
        self.assertGreater(live, 1000)

    def test_past_invoices_arrive_paid(self) -> None:
        simulation, publisher, _ = dry_simulation(small_settings())
        simulation.run()
        order: dict[str, list[str]] = {}
        for _, _, _, event in publisher.records:
            invoice_id = event["data"].get("invoice_id")
            if invoice_id and simulation.portfolio.by_invoice[invoice_id].history:
                order.setdefault(invoice_id, []).append(event["type"])
        self.assertTrue(order)
        for types in order.values():
            self.assertEqual(types, ["billing.payment.succeeded", "billing.invoice.issued"])

    def test_the_dry_run_command_writes_json_lines(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            out, ledger = Path(folder) / "events.jsonl", Path(folder) / "ledger.json"
            code = sim.main(["--dry-run", str(out), "--customers", "20", "--invoices", "60", "--seed", "9",
                             "--ledger", str(ledger), "--clock-start", "2026-11-02T00:00:00Z"])
            self.assertEqual(code, 0)
            records = [json.loads(line) for line in out.read_text().splitlines()]
            self.assertTrue(records)
            self.assertEqual(records[0]["headers"]["content-type"], "application/cloudevents+json; charset=utf-8")
            written = json.loads(ledger.read_text())
            self.assertEqual(len(written["invoices"]), 60)
            self.assertTrue(all("baseline_paid_at" in row for row in written["invoices"]))


class BehaviourTest(unittest.TestCase):
    def test_the_chance_to_respond_rises_with_every_reminder(self) -> None:
        chances = [sim.response_probability("standard", k, "friendly", "email") for k in range(1, 6)]
        self.assertEqual(chances, sorted(chances))
        self.assertLess(chances[0], chances[-1])
        self.assertLessEqual(sim.response_probability("vip", 30, "final", "phone_call"), 0.9)
        self.assertGreater(sim.response_probability("standard", 1, "final", "email"),
                           sim.response_probability("standard", 1, "friendly", "email"))

    def test_reactions_are_deterministic(self) -> None:
        first = sim.decide_reaction(sim.rng(1, "reaction", "k"), "standard", 2, "first_reminder", "friendly", "email")
        second = sim.decide_reaction(sim.rng(1, "reaction", "k"), "standard", 2, "first_reminder", "friendly", "email")
        self.assertEqual(first, second)

    def test_reminders_bring_payments_forward(self) -> None:
        """Invoices that would never be paid get paid more often the more reminders they get."""
        settings = small_settings(customers=400, invoices=1200)
        paid_share = []
        for reminders in (0, 1, 3):
            simulation, publisher, clock = dry_simulation(settings)
            simulation.plan_timeline()
            never = [life for life in simulation.lives.values()
                     if life.invoice.baseline_paid_at is None and not life.invoice.history
                     and life.invoice.void_at is None and life.invoice.credit_share is None][:300]
            clock.advance_to(START + timedelta(days=70))
            for life in never:
                life.issued = True
                for n in range(reminders):
                    simulation.on_relance_event(reminder_sent(life, n, clock.now()))
            planned = sum(1 for life in never if life.planned_payment_at is not None)
            paid_share.append(planned / len(never))
        self.assertEqual(paid_share[0], 0.0)
        self.assertLess(paid_share[1], paid_share[2])
        self.assertGreater(paid_share[2], 0.3)

    def test_a_payment_planned_after_a_reminder_is_published(self) -> None:
        simulation, publisher, clock = dry_simulation(small_settings(customers=50, invoices=100))
        simulation.plan_timeline()
        life = next(l for l in simulation.lives.values() if not l.invoice.history and l.invoice.baseline_paid_at is None)
        simulation.run_due(START)
        life.issued = True
        simulation.plan_payment(life, START + timedelta(days=1))
        clock.advance_to(START + timedelta(days=2))
        simulation.run_due(clock.now())
        payments = [e for *_, e in publisher.records if e["type"] == "billing.payment.succeeded"
                    and e["data"]["invoice_id"] == life.invoice.invoice_id]
        self.assertTrue(payments)
        self.assertEqual(life.due_minor, 0)

    def test_baselines_follow_personas(self) -> None:
        portfolio = sim.build_portfolio(sim.PortfolioSettings(start=START))
        late_days: dict[str, list[float]] = {}
        for invoice in portfolio.invoices:
            if invoice.history:
                continue
            persona = portfolio.customer(invoice.customer_id).persona
            due = datetime.combine(invoice.due_on, datetime.min.time(), UTC)
            delay = 200.0 if invoice.baseline_paid_at is None else (invoice.baseline_paid_at - due).days
            late_days.setdefault(persona, []).append(delay)
        median = {p: sorted(v)[len(v) // 2] for p, v in late_days.items()}
        self.assertLess(median["vip"], median["standard"])
        self.assertLess(median["standard"], median["high_risk"])


def reminder_sent(life: sim.InvoiceLife, n: int, at: datetime) -> dict[str, Any]:
    return {"type": "relance.dunning.reminder_sent", "tenant": "test", "data": {
        "reminder_id": f"r-{life.invoice.invoice_id}-{n}", "idempotency_key": f"test:{life.invoice.invoice_id}:{n}",
        "customer_id": life.invoice.customer_id, "invoice_ids": [life.invoice.invoice_id], "channel": "sms",
        "step": {"id": ["first_reminder", "second_reminder", "final_notice"][min(n, 2)], "index": n,
                 "trigger": "due_date", "offset_days": 3, "tone": "friendly"},
        "sent_at": sim.rfc3339(at)}}


class LinksTest(unittest.TestCase):
    def test_links_and_claims_are_read_from_an_email(self) -> None:
        claims = sim.base64.urlsafe_b64encode(json.dumps({"t": "acme", "i": "inv_1", "c": "cus_1", "a": "promise"})
                                              .encode()).decode().rstrip("=")
        body = (f'<a data-role="call-to-action" href="http://127.0.0.1:8082/l/pay/v1.k1.{claims}.sig">Pay</a>'
                f'<a href="http://127.0.0.1:8082/l/promise/v1.k1.{claims}.sig">date</a>'
                f'<a href="http://127.0.0.1:8082/l/dispute/v1.k1.{claims}.sig">dispute</a>'
                '<a href="mailto:billing@example.com">mail</a>'
                '<img src="http://127.0.0.1:8082/l/o/v1.k1.abc.def" width="1">')
        links = sim.extract_links(body)
        self.assertEqual(sorted(links.by_action), ["dispute", "pay", "promise"])
        self.assertTrue(links.pixel.endswith("/l/o/v1.k1.abc.def"))
        self.assertEqual(sim.token_claims(links.by_action["promise"])["i"], "inv_1")
        self.assertEqual(sim.token_claims("http://x/l/pay/garbage"), {})

    def test_the_tracker_pages_forms_are_read(self) -> None:
        promise = (ROOT / "config" / "pages" / "en" / "promise.html").read_text()
        promise = promise.replace("{{ earliest }}", "2026-12-01").replace("{{ latest }}", "2026-12-30")
        form = sim.read_form(promise)
        self.assertEqual(form.fields["promised_on"]["min"], "2026-12-01")
        dispute = sim.read_form((ROOT / "config" / "pages" / "fr" / "dispute.html").read_text())
        self.assertIn("incorrect_amount", dispute.options["reason"])
        self.assertIn("message", dispute.fields)
        self.assertIsNone(sim.read_form("<p>no form</p>"))


class FakeTracker:
    """A stand-in for the tracker's public side that records requests and serves forms."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, dict(self.headers), ""))
                if self.path.startswith("/l/promise/"):
                    self.answer(200, '<form method="post"><input id="promised_on" name="promised_on" type="date" '
                                     'min="2026-12-01" max="2026-12-30" required></form>')
                elif self.path.startswith("/l/pay/"):
                    self.send_response(303)
                    self.send_header("Location", "https://pay.test.example/i/1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.answer(200, "ok")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.requests.append(("POST", self.path, dict(self.headers), self.rfile.read(length).decode()))
                self.answer(200, "done")

            def answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class InteractionTest(unittest.TestCase):
    """The customers' side of an email, against a stand-in tracker."""

    def setUp(self) -> None:
        self.tracker = FakeTracker()
        options = sim.RunOptions(tenant_domain="test", http_workers=2,
                                 tracker=sim.TrackerClient(self.tracker.url, "hook", "secret"),
                                 mailbox=sim.MockMailbox("http://127.0.0.1:9"))
        self.simulation, self.publisher, self.clock = dry_simulation(small_settings(customers=60, invoices=120), options)
        self.simulation.plan_timeline()

    def tearDown(self) -> None:
        self.simulation.pool.shutdown(wait=True)
        self.tracker.stop()

    def email_to(self, customer: sim.Customer, reminder: str) -> dict[str, Any]:
        base = "http://127.0.0.1:8082"  # links.public_base_url: the simulator rebases it on --tracker-url
        return {
            "message_id": f"m-{reminder}", "to": f'"{customer.first_name}" <{customer.email}>', "from": "b@example.com",
            "subject": "Invoice", "tag": "dunning-default-first_reminder", "received_at": sim.rfc3339(self.clock.now()),
            "metadata": {"relance_send": f"s-{reminder}", "reminder": reminder, "tenant": "test"},
            "html_body": "".join(f'<a href="{base}/l/{kind}/v1.k.e30.sig">{kind}</a>'
                                 for kind in ("pay", "already-paid", "dispute", "promise", "payment-plan"))
                         + f'<img src="{base}/l/o/v1.k.e30.sig">',
        }

    def deliver(self, customer: sim.Customer, reminder: str) -> None:
        life = next(l for l in self.simulation.lives.values() if l.invoice.customer_id == customer.customer_id)
        life.issued = True
        event = reminder_sent(life, 0, self.clock.now())
        event["data"].update(channel="email", reminder_id=reminder)
        self.simulation.on_mock_message(self.email_to(customer, reminder))  # before the event: kept aside
        self.simulation.on_relance_event(event)
        self.clock.advance_to(self.clock.now() + timedelta(days=3))
        self.simulation.run_due(self.clock.now())
        self.simulation.pool.shutdown(wait=True)
        self.simulation.drain_results()

    def customer_with(self, **wanted: Any) -> sim.Customer:
        for customer in self.simulation.portfolio.customers:
            if all(getattr(customer, key) == value for key, value in wanted.items()):
                return customer
        self.skipTest(f"no customer with {wanted} for this seed")

    def test_a_link_scanner_follows_every_link_with_its_user_agent(self) -> None:
        self.deliver(self.customer_with(mailbox="link_scanner", bounce=None), "r-scan")
        scans = [r for r in self.tracker.requests if r[2].get("User-Agent") in sim.SCANNER_AGENTS]
        self.assertGreaterEqual(len({path.split("/")[2] for _, path, _, _ in scans}), 6)
        self.assertTrue(all(r[0] == "GET" for r in scans), "scanners never post")

    def test_apples_proxy_fetches_the_pixel(self) -> None:
        self.deliver(self.customer_with(mailbox="apple_privacy", bounce=None), "r-apple")
        pixels = [r for r in self.tracker.requests if r[1].startswith("/l/o/")]
        self.assertIn("Mozilla/5.0", [r[2].get("User-Agent") for r in pixels])

    def test_a_hard_bounce_goes_to_the_postmark_webhook_with_basic_auth(self) -> None:
        self.deliver(self.customer_with(bounce="hard"), "r-bounce")
        hooks = [r for r in self.tracker.requests if r[1] == "/webhooks/postmark"]
        self.assertEqual(len(hooks), 1)
        payload = json.loads(hooks[0][3])
        self.assertEqual((payload["RecordType"], payload["Type"], payload["Inactive"]), ("Bounce", "HardBounce", True))
        self.assertEqual(payload["Metadata"]["relance_send"], "s-r-bounce")
        self.assertEqual(hooks[0][2]["Authorization"], "Basic aG9vazpzZWNyZXQ=")
        self.assertFalse([r for r in self.tracker.requests if r[1].startswith("/l/")], "a bounced email is never opened")

    def test_a_promise_is_made_by_get_then_post_of_the_form(self) -> None:
        customer = self.customer_with(bounce=None)
        page = "http://127.0.0.1:8082/l/promise/v1.k.e30.sig"
        reaction = sim.Reaction(None, "promise", timedelta(0), timedelta(0), 10, True, "other")
        life = next(l for l in self.simulation.lives.values() if l.invoice.customer_id == customer.customer_id)
        self.simulation.act_on_page(customer, page, "promise", reaction, [life])
        self.simulation.pool.shutdown(wait=True)
        self.simulation.drain_results()
        methods = [(r[0], r[1].split("/")[2]) for r in self.tracker.requests]
        self.assertEqual(methods, [("GET", "promise"), ("POST", "promise")])
        posted = self.tracker.requests[1]
        self.assertEqual(parse_qs(posted[3])["promised_on"][0], "2026-12-10")
        self.assertEqual(posted[2]["Content-Type"], "application/x-www-form-urlencoded")
        self.assertIn("Chrome", self.tracker.requests[0][2]["User-Agent"] + posted[2]["User-Agent"] + "Chrome")
        self.assertEqual(life.promise, date(2026, 12, 10))
        self.assertIsNotNone(life.planned_payment_at, "a kept promise plans a payment")


class StopTest(unittest.TestCase):
    def test_sigterm_stops_the_simulator_cleanly(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            ledger = Path(folder) / "ledger.json"
            process = subprocess.Popen(
                [sys.executable, str(SCRIPTS / "simulate_billing.py"), "--bootstrap-servers", "127.0.0.1:9",
                 "--no-react", "--customers", "10", "--invoices", "20", "--days", "30", "--ledger", str(ledger),
                 "-X", "message.timeout.ms=1000", "-X", "socket.connection.setup.timeout.ms=1000"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "RELANCE__RUNTIME__CLOCK__SPEED": "", "RELANCE__RUNTIME__CLOCK__START": ""})
            time.sleep(2.5)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
            self.assertIn("stopped early", stderr)
            self.assertIn(process.returncode, (0, 1))  # 1: the broker at port 9 never acknowledged
            self.assertFalse(json.loads(ledger.read_text())["finished"])


if __name__ == "__main__":
    unittest.main()
