#!/usr/bin/env python3
"""A billing simulator for relance: it publishes a realistic portfolio through relance's real
contracts (CloudEvents structured JSON, proto/), reacts to what relance does, and plays the
customers who read, open, click, pay, promise, dispute and bounce.

    RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD=<password> \\
    simulate_billing.py --bootstrap-servers 127.0.0.1:19092 --tenant demo \\
        --clock-speed 25920 --clock-start 2026-11-02T00:00:00Z --clock-epoch <now, RFC 3339> \\
        --tracker-url http://127.0.0.1:8082 --mock-url http://127.0.0.1:<port> \\
        --postmark-webhook-user demo --ledger .local/demo/ledger.json

What it does, in simulated time (simulated_now = START + (real_now - EPOCH) * SPEED, the clock the
services share through RELANCE__RUNTIME__CLOCK__*; every event's `time` is simulated):

- Builds a portfolio from --seed: --customers customers (VIP, large amounts, high risk, late
  payers with a history of late payments, new customers, standard), time zones from
  Pacific/Auckland to America/Los_Angeles, French and English locales, EUR, GBP and USD, and
  --invoices invoices issued over --days days. Everything billing-side is deterministic.
- Publishes each event when the simulated clock reaches its time: customers, invoices (a few
  updated, voided, credited, disputed in the billing system), payments (some partial, some
  failed card charges then retried, a few refunded), keyed by customer id.
- Gives every invoice a baseline: when its customer would pay if never reminded (or never).
  Reminders can only bring that day forward: each reminder read raises the chance of paying
  (relance.events: reminder_sent; relance.tasks: phone calls), more with every reminder.
- With --mock-url (the mock Postmark's admin API) it reads each email relance sent, then plays
  the mailbox: privacy proxies and link scanners fetch the pixel and links, people open (the
  pixel, with a browser's user agent) and click (pay link; already-paid, dispute, promise and
  payment-plan pages, by GET then a POST of the form, as a browser does). Deliveries and hard
  bounces go to the tracker's Postmark webhook (--postmark-webhook-user, and the password in
  RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD).
- With --admin-url (and a token in RELANCE_ADMIN_TOKEN) it also plays the credit manager who
  approves (or now and then rejects) reminders awaiting approval.

Secrets are read from the environment only, never from the command line: the SASL password
(RELANCE__KAFKA__SASL_PASSWORD), the TLS key password (RELANCE__KAFKA__SSL_KEY_PASSWORD), the
webhook password and the admin token.

It prints a live line (simulated date, events, reminders by step, payments, opens, clicks) and
stops at the end of the period, or cleanly on Ctrl-C or SIGTERM. --ledger writes the portfolio,
every invoice's baseline and what happened, for scripts/demo_report.py. --dry-run FILE writes
the billing events to a JSON-lines file instead of Kafka, at once, without reacting.

Every option is described in docs/simulator.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import heapq
import html
import html.parser
import json
import math
import os
import queue
import random
import re
import signal
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Protocol
from zoneinfo import ZoneInfo

SCHEMA_BASE = "https://relance.dev/schemas/"
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"
UTC = timezone.utc

# ==============================================================================================
# Time: the simulated clock shared with the services


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant (Z or an offset) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, milliseconds when there are any (the contracts' `instant`)."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock(Protocol):
    def now(self) -> datetime: ...

    def seconds_until(self, instant: datetime) -> float: ...


@dataclass(frozen=True)
class SimClock:
    """simulated_now = start + (real_now - epoch) * speed, as the services compute it
    (crates/runtime/src/clock.rs): before the epoch the clock shows the start."""

    start: datetime
    epoch: datetime
    speed: float

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("the clock speed must be positive")

    def at(self, real_unix: float) -> datetime:
        """The simulated instant at a real Unix time."""
        return self.start + timedelta(seconds=max(real_unix - self.epoch.timestamp(), 0.0) * self.speed)

    def real_unix(self, instant: datetime) -> float:
        """The real Unix time at which the simulated clock reaches `instant`."""
        return self.epoch.timestamp() + max((instant - self.start).total_seconds(), 0.0) / self.speed

    def now(self) -> datetime:
        return self.at(time.time())

    def seconds_until(self, instant: datetime) -> float:
        return self.real_unix(instant) - time.time()

    @classmethod
    def from_settings(cls, speed: str | None, start: str | None, epoch: str | None,
                      real_now: float | None = None) -> "SimClock":
        """The services' defaults: speed 1; no epoch: now (when the process started); no
        start: the epoch."""
        now = datetime.fromtimestamp(time.time() if real_now is None else real_now, UTC)
        epoch_at = parse_instant(epoch) if epoch else now
        return cls(start=parse_instant(start) if start else epoch_at, epoch=epoch_at,
                   speed=float(speed) if speed else 1.0)


class VirtualClock:
    """For --dry-run: time jumps to the next event instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def seconds_until(self, instant: datetime) -> float:
        return 0.0

    def advance_to(self, instant: datetime) -> None:
        self.current = max(self.current, instant)


# ==============================================================================================
# Determinism


def rng(seed: int, *parts: object) -> random.Random:
    """An independent random stream per (seed, purpose, entity): decisions do not depend on
    the order in which things happen, only on what they are about."""
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def stable_id(prefix: str, seed: int, *parts: object, length: int = 20) -> str:
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).hexdigest()
    return f"{prefix}{digest[:length]}"


def weighted(r: random.Random, table: list[tuple[Any, float]]) -> Any:
    total = sum(weight for _, weight in table)
    point = r.random() * total
    for value, weight in table:
        point -= weight
        if point <= 0:
            return value
    return table[-1][0]


# ==============================================================================================
# The portfolio

# Personas are what the simulator intends; relance's policy decides the segment from the
# attributes the persona gives (VIP flag, invoice amount, risk level, payment history, age).
PERSONAS: list[tuple[str, float]] = [
    ("vip", 0.05), ("large_amount", 0.07), ("high_risk", 0.07), ("late_payer", 0.12),
    ("new_customer", 0.14), ("standard", 0.55),
]

# (country, time zone, locale, currency, weight): from Pacific/Auckland to America/Los_Angeles.
PLACES: list[tuple[str, str, str, str, float]] = [
    ("NZ", "Pacific/Auckland", "en-NZ", "USD", 0.04),
    ("AU", "Australia/Sydney", "en-AU", "USD", 0.04),
    ("JP", "Asia/Tokyo", "en-GB", "USD", 0.02),
    ("SG", "Asia/Singapore", "en-SG", "USD", 0.02),
    ("FR", "Europe/Paris", "fr-FR", "EUR", 0.34),
    ("BE", "Europe/Brussels", "fr-BE", "EUR", 0.06),
    ("DE", "Europe/Berlin", "en-GB", "EUR", 0.06),
    ("GB", "Europe/London", "en-GB", "GBP", 0.14),
    ("CA", "America/Toronto", "fr-CA", "USD", 0.03),
    ("US", "America/New_York", "en-US", "USD", 0.11),
    ("US", "America/Chicago", "en-US", "USD", 0.05),
    ("US", "America/Denver", "en-US", "USD", 0.02),
    ("US", "America/Los_Angeles", "en-US", "USD", 0.07),
]

# The default policy's "large amount" thresholds, in minor units.
LARGE_AMOUNT = {"EUR": 1_000_000, "USD": 1_000_000, "GBP": 900_000}
# For reporting across currencies only (fixed, approximate).
TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}

FIRST_NAMES_FR = ["Camille", "Julien", "Claire", "Thomas", "Sophie", "Nicolas", "Élodie", "Mathieu",
                  "Léa", "Antoine", "Chloé", "Hugo", "Manon", "Louis", "Inès", "Paul", "Sarah", "Lucas"]
LAST_NAMES_FR = ["Martin", "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Simon",
                 "Michel", "Garcia", "Roux", "Fournier", "Girard", "Bonnet", "Mercier", "Lambert"]
FIRST_NAMES_EN = ["Olivia", "James", "Emma", "Oliver", "Amelia", "George", "Isla", "Noah", "Ava",
                  "Harry", "Mia", "Jack", "Grace", "Leo", "Ella", "Henry", "Ruby", "Ethan"]
LAST_NAMES_EN = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
                 "Evans", "Walker", "Wright", "Thompson", "Hughes", "Clarke", "Hall", "Turner"]
COMPANY_WORDS_FR = ["Boulangerie", "Atelier", "Cabinet", "Studio", "Menuiserie", "Transports",
                    "Imprimerie", "Librairie", "Garage", "Conseil", "Pharmacie", "Fromagerie"]
COMPANY_WORDS_EN = ["Bakery", "Workshop", "Consulting", "Studio", "Joinery", "Logistics",
                    "Printing", "Books", "Motors", "Analytics", "Pharmacy", "Dairy"]
COMPANY_FORMS_FR = ["SARL", "SAS", "SA", "EURL"]
COMPANY_FORMS_EN = ["Ltd", "LLC", "Inc", "Co"]
DESCRIPTIONS_FR = ["Abonnement Pro", "Prestation de conseil", "Maintenance annuelle", "Licence logicielle",
                   "Formation", "Commande de fournitures"]
DESCRIPTIONS_EN = ["Pro subscription", "Consulting services", "Annual maintenance", "Software licence",
                   "Training", "Supplies order"]

# Mailboxes decide the machine noise around a message (docs/tracking.md, "Human or machine").
MAILBOXES: list[tuple[str, float]] = [
    ("plain", 0.28), ("apple_privacy", 0.30), ("gmail_proxy", 0.22), ("link_scanner", 0.15),
    ("chat_preview", 0.05),
]


@dataclass
class Customer:
    customer_id: str
    index: int
    persona: str
    legal_name: str
    first_name: str
    last_name: str
    email: str
    phone: str
    locale: str
    timezone: str
    country: str
    currency: str
    vip: bool
    risk_level: str
    customer_since: date
    tags: list[str]
    mailbox: str
    bounce: str | None  # "hard", "soft" or None
    recurring_card: bool
    ip: str


@dataclass
class Invoice:
    invoice_id: str
    customer_id: str
    number: str
    issued_at: datetime
    due_on: date
    total_minor: int
    currency: str
    order_reference: str | None
    description: str
    history: bool = False
    # When the customer would pay if never reminded (None: not within the horizon).
    baseline_paid_at: datetime | None = None
    method: str = "bank_transfer"
    partial_share: float | None = None
    credit_share: float | None = None
    credit_at: datetime | None = None
    void_at: datetime | None = None
    dispute_at: datetime | None = None
    dispute_resolution: tuple[datetime, str] | None = None
    due_extension_at: datetime | None = None
    card_failure: bool = False
    refund_after: timedelta | None = None

    @property
    def issued_on(self) -> date:
        return self.issued_at.date()


@dataclass
class Portfolio:
    seed: int
    tenant: str
    start: datetime
    end: datetime
    customers: list[Customer]
    invoices: list[Invoice]

    def customer(self, customer_id: str) -> Customer:
        return self.by_customer[customer_id]

    def __post_init__(self) -> None:
        self.by_customer = {c.customer_id: c for c in self.customers}
        self.by_invoice = {i.invoice_id: i for i in self.invoices}
        self.by_email = {c.email.lower(): c for c in self.customers}


@dataclass(frozen=True)
class PortfolioSettings:
    seed: int = 42
    tenant: str = "demo"
    customers: int = 2000
    invoices: int = 10_000
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    days: float = 90.0
    # Invoices are issued from start + issue_from_days to start + issue_to_days.
    issue_from_days: float = -25.0
    issue_to_days: float = 65.0
    zones: tuple[str, ...] = ()
    bounce_share: float = 0.02


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


def fictional_phone(r: random.Random, country: str) -> str:
    """Numbers from ranges reserved for fiction where the country has one."""
    if country == "FR" or country == "BE":
        return f"+336399{r.randrange(10**5):05d}"
    if country == "GB":
        return f"+447700900{r.randrange(1000):03d}"
    if country in ("US", "CA"):
        return f"+1202555{r.randrange(100, 200):04d}"
    prefix = {"NZ": "+6421", "AU": "+614", "JP": "+8190", "SG": "+658", "DE": "+49151"}.get(country, "+4412")
    return f"{prefix}{r.randrange(10**7):07d}"


def make_customer(settings: PortfolioSettings, index: int) -> Customer:
    r = rng(settings.seed, "customer", index)
    persona = weighted(r, PERSONAS)
    places = [p for p in PLACES if not settings.zones or p[1] in settings.zones] or PLACES
    country, zone, locale, currency, _ = weighted(r, [(p, p[4]) for p in places])
    french = locale.startswith("fr")
    first = r.choice(FIRST_NAMES_FR if french else FIRST_NAMES_EN)
    last = r.choice(LAST_NAMES_FR if french else LAST_NAMES_EN)
    word = r.choice(COMPANY_WORDS_FR if french else COMPANY_WORDS_EN)
    form = r.choice(COMPANY_FORMS_FR if french else COMPANY_FORMS_EN)
    legal_name = f"{word} {last} {form}" if french else f"{last} {word} {form}"
    domain = f"{ascii_slug(word)}-{ascii_slug(last)}-{index:04d}.example"
    start_day = settings.start.date()
    if persona == "new_customer":
        since = start_day - timedelta(days=r.randint(10, 150))
    elif persona == "vip":
        since = start_day - timedelta(days=r.randint(3 * 365, 12 * 365))
    else:
        since = start_day - timedelta(days=r.randint(400, 8 * 365))
    risk = {"high_risk": "high", "late_payer": "medium", "vip": "low"}.get(
        persona, weighted(r, [("low", 0.7), ("medium", 0.3)]))
    tags = {"large_amount": ["enterprise"], "vip": ["key_account"]}.get(persona, [])
    bounce = None
    roll = r.random()
    if roll < settings.bounce_share:
        bounce = "hard"
    elif roll < settings.bounce_share * 1.5:
        bounce = "soft"
    return Customer(
        customer_id=stable_id("cus_", settings.seed, settings.tenant, "customer", index, length=12),
        index=index, persona=persona, legal_name=legal_name, first_name=first, last_name=last,
        email=f"{ascii_slug(first)}.{ascii_slug(last)}@{domain}", phone=fictional_phone(r, country),
        locale=locale, timezone=zone, country=country, currency=currency,
        vip=persona == "vip", risk_level=risk, customer_since=since, tags=tags,
        mailbox=weighted(r, MAILBOXES), bounce=bounce,
        recurring_card=persona in ("standard", "new_customer") and r.random() < 0.12,
        ip=f"2001:db8:{index // 65536:x}:{index % 65536:x}::{r.randrange(1, 65535):x}",
    )


def invoice_amount(r: random.Random, persona: str, currency: str) -> int:
    """Minor units. Only large-amount customers reach the policy's large-amount threshold."""
    limit = LARGE_AMOUNT[currency]
    if persona == "large_amount":
        return int(limit * r.uniform(1.0, 8.0)) // 100 * 100
    median = {"vip": 3000, "high_risk": 600, "late_payer": 800, "new_customer": 500}.get(persona, 900)
    amount = int(math.exp(r.gauss(math.log(median), 0.8)) * 100)
    return max(2_500, min(amount, int(limit * 0.95))) // 10 * 10


# Days relative to the due date when a customer pays without any reminder, per persona:
# (share paying on time, share paying late, median days late); the rest pays outside the horizon.
BASELINE: dict[str, tuple[float, float, float]] = {
    "vip": (0.85, 0.14, 6.0),
    "large_amount": (0.50, 0.40, 10.0),
    "standard": (0.55, 0.35, 12.0),
    "new_customer": (0.45, 0.40, 15.0),
    "late_payer": (0.20, 0.60, 20.0),
    "high_risk": (0.25, 0.45, 25.0),
}


def baseline_paid_at(r: random.Random, persona: str, issued_at: datetime, due_on: date,
                     zone: str) -> datetime | None:
    """When the customer pays if never reminded, or None (not within 120 days of the due date)."""
    on_time, late, median_late = BASELINE[persona]
    roll = r.random()
    if roll < on_time:
        day = due_on - timedelta(days=r.randint(0, 7))
    elif roll < on_time + late:
        delay = max(1, round(math.exp(r.gauss(math.log(median_late), 0.6))))
        if delay > 120:
            return None
        day = due_on + timedelta(days=delay)
    else:
        return None
    local = datetime.combine(day, datetime.min.time(), ZoneInfo(zone)) + timedelta(
        hours=r.uniform(8.0, 19.0))
    return max(local.astimezone(UTC), issued_at + timedelta(hours=r.uniform(2, 48)))


def business_instant(r: random.Random, day: date, zone: str) -> datetime:
    return (datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
            + timedelta(hours=r.uniform(8.5, 18.0))).astimezone(UTC)


def make_invoice(settings: PortfolioSettings, customer: Customer, number: int, issued_at: datetime,
                 history: bool = False) -> Invoice:
    key = ("history" if history else "invoice", number)
    r = rng(settings.seed, *key)
    terms = weighted(r, [(14, 0.2), (30, 0.6), (45, 0.2)])
    due_on = issued_at.date() + timedelta(days=terms)
    french = customer.locale.startswith("fr")
    invoice = Invoice(
        invoice_id=stable_id("inv_", settings.seed, settings.tenant, *key, length=14),
        customer_id=customer.customer_id,
        number=f"{'H' if history else 'F'}-{issued_at.year}-{number:05d}",
        issued_at=issued_at, due_on=due_on,
        total_minor=invoice_amount(r, customer.persona, customer.currency),
        currency=customer.currency,
        order_reference=f"PO-{r.randrange(10000, 99999)}" if r.random() < 0.6 else None,
        description=r.choice(DESCRIPTIONS_FR if french else DESCRIPTIONS_EN),
        history=history,
    )
    invoice.method = ("card" if customer.recurring_card
                      else weighted(r, [("bank_transfer", 0.6), ("card", 0.25), ("direct_debit", 0.1), ("check", 0.05)]))
    if history:
        invoice.baseline_paid_at = history_payment(r, customer, invoice)
        return invoice
    invoice.baseline_paid_at = baseline_paid_at(r, customer.persona, issued_at, due_on, customer.timezone)
    add_billing_incidents(r, invoice, customer)
    return invoice


def history_payment(r: random.Random, customer: Customer, invoice: Invoice) -> datetime:
    """Past invoices, all paid: late payers mostly late, others mostly on time."""
    late = r.random() < (0.75 if customer.persona == "late_payer" else 0.1)
    day = invoice.due_on + (timedelta(days=r.randint(8, 45)) if late else -timedelta(days=r.randint(0, 5)))
    return business_instant(r, day, customer.timezone)


def add_billing_incidents(r: random.Random, invoice: Invoice, customer: Customer) -> None:
    """What happens in the billing system whatever relance does."""
    issued = invoice.issued_at
    roll = r.random()
    if roll < 0.007:
        invoice.void_at = issued + timedelta(days=r.uniform(0.5, 10))
        return
    if roll < 0.012:
        invoice.credit_share, invoice.credit_at = 1.0, issued + timedelta(days=r.uniform(2, 25))
    elif roll < 0.042:
        invoice.credit_share, invoice.credit_at = r.choice([0.1, 0.15, 0.2, 0.3, 0.5]), issued + timedelta(days=r.uniform(2, 40))
    if r.random() < 0.015:
        invoice.dispute_at = datetime.combine(invoice.due_on, datetime.min.time(), UTC) + timedelta(days=r.uniform(-5, 10))
        after = timedelta(days=r.uniform(4, 25))
        invoice.dispute_resolution = (invoice.dispute_at + after,
                                      weighted(r, [("in_favour_of_merchant", 0.5), ("in_favour_of_customer", 0.3), ("withdrawn", 0.2)]))
    if r.random() < 0.02:
        invoice.due_extension_at = issued + timedelta(days=r.uniform(1, 10))
    if r.random() < 0.06:
        invoice.partial_share = r.choice([0.3, 0.4, 0.5, 0.6])
    if customer.recurring_card and r.random() < 0.3:
        invoice.card_failure = True
    if r.random() < 0.004:
        invoice.refund_after = timedelta(days=r.uniform(2, 15))


def build_portfolio(settings: PortfolioSettings) -> Portfolio:
    customers = [make_customer(settings, index) for index in range(settings.customers)]
    # Invoice counts per customer are skewed (a few big accounts, many small ones).
    weights = [rng(settings.seed, "activity", c.index).paretovariate(1.6) for c in customers]
    r = rng(settings.seed, "invoice-owners")
    owners = list(range(len(customers))) + r.choices(range(len(customers)), weights=weights,
                                                      k=max(settings.invoices - len(customers), 0))
    owners = owners[:settings.invoices]
    r.shuffle(owners)
    span = settings.issue_to_days - settings.issue_from_days
    invoices: list[Invoice] = []
    for number, owner in enumerate(owners, start=1):
        ri = rng(settings.seed, "issue-time", number)
        offset = settings.issue_from_days + span * ri.random()
        issued_day = (settings.start + timedelta(days=offset)).date()
        if issued_day.weekday() >= 5:
            issued_day += timedelta(days=7 - issued_day.weekday())
        issued_at = datetime.combine(issued_day, datetime.min.time(), UTC) + timedelta(hours=ri.uniform(5, 17))
        invoices.append(make_invoice(settings, customers[owner], number, issued_at))
    invoices.extend(history_invoices(settings, customers))
    invoices.sort(key=lambda invoice: (invoice.issued_at, invoice.invoice_id))
    end = settings.start + timedelta(days=settings.days)
    return Portfolio(settings.seed, settings.tenant, settings.start, end, customers, invoices)


def history_invoices(settings: PortfolioSettings, customers: list[Customer]) -> list[Invoice]:
    """Paid invoices before the period: they give late payers their record (on-time share
    below half) and others a normal one."""
    out: list[Invoice] = []
    number = 0
    for customer in customers:
        r = rng(settings.seed, "history-count", customer.index)
        if customer.persona == "late_payer":
            count = r.randint(3, 5)
        elif customer.persona in ("new_customer", "large_amount"):
            count = 0
        else:
            count = 1 if r.random() < 0.3 else 0
        for _ in range(count):
            number += 1
            issued_day = (settings.start - timedelta(days=r.randint(70, 220))).date()
            if issued_day < customer.customer_since:
                issued_day = customer.customer_since + timedelta(days=r.randint(1, 20))
            issued_at = datetime.combine(issued_day, datetime.min.time(), UTC) + timedelta(hours=9)
            invoice = make_invoice(settings, customer, number, issued_at, history=True)
            if invoice.baseline_paid_at and invoice.baseline_paid_at < settings.start:
                out.append(invoice)
    return out


# ==============================================================================================
# Events: CloudEvents envelopes exactly as proto/ defines them

TOPIC_OF_TYPE = {
    "billing.customer.upserted": "customers",
    "billing.invoice.issued": "invoices",
    "billing.invoice.updated": "invoices",
    "billing.invoice.voided": "invoices",
    "billing.credit_note.applied": "invoices",
    "billing.invoice.disputed": "invoices",
    "billing.payment.succeeded": "payments",
    "billing.payment.failed": "payments",
    "billing.payment.refunded": "payments",
}


def money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": int(amount_minor), "currency": currency}


def envelope(event_type: str, event_id: str, tenant: str, key: str, subject: str, at: datetime,
             data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/billing/{tenant}",
        "type": event_type,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "dataschema": f"{SCHEMA_BASE}{event_type}.v1.json",
        "subject": subject,
        "tenant": tenant,
        "schemaversion": 1,
        "partitionkey": key,
        "data": data,
    }


class EventFactory:
    """Builds every billing event with a deterministic id."""

    def __init__(self, seed: int, tenant: str) -> None:
        self.seed = seed
        self.tenant = tenant

    def _id(self, *parts: object) -> str:
        return stable_id("evt_", self.seed, self.tenant, *parts, length=24)

    def _event(self, event_type: str, key: str, subject: str, at: datetime, data: dict[str, Any],
               *id_parts: object) -> dict[str, Any]:
        return envelope(event_type, self._id(event_type, *id_parts), self.tenant, key, subject, at, data)

    def customer_upserted(self, c: Customer, at: datetime) -> dict[str, Any]:
        segment: dict[str, Any] = {"vip": c.vip, "risk_level": c.risk_level,
                                   "customer_since": c.customer_since.isoformat(), "tags": c.tags,
                                   "preferred_channel": "email"}
        data = {
            "customer_id": c.customer_id, "revision": 1, "legal_name": c.legal_name,
            "contact": {"first_name": c.first_name, "last_name": c.last_name, "email": c.email, "phone": c.phone},
            "locale": c.locale, "timezone": c.timezone, "country": c.country, "segment": segment,
        }
        return self._event("billing.customer.upserted", c.customer_id, c.customer_id, at, data, c.customer_id, 1)

    def invoice_issued(self, i: Invoice, at: datetime, tenant_domain: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "invoice_id": i.invoice_id, "customer_id": i.customer_id, "number": i.number,
            "issued_on": i.issued_on.isoformat(), "due_on": i.due_on.isoformat(),
            "total": money(i.total_minor, i.currency), "revision": 1,
            "payment_url": f"https://pay.{tenant_domain}.example/i/{i.invoice_id}",
            "description": i.description,
        }
        if i.order_reference:
            data["order_reference"] = i.order_reference
        return self._event("billing.invoice.issued", i.customer_id, i.invoice_id, at, data, i.invoice_id)

    def invoice_updated(self, i: Invoice, at: datetime, revision: int, due_on: date) -> dict[str, Any]:
        data = {"invoice_id": i.invoice_id, "customer_id": i.customer_id, "revision": revision,
                "due_on": due_on.isoformat()}
        return self._event("billing.invoice.updated", i.customer_id, i.invoice_id, at, data, i.invoice_id, revision)

    def invoice_voided(self, i: Invoice, at: datetime) -> dict[str, Any]:
        data = {"invoice_id": i.invoice_id, "customer_id": i.customer_id, "revision": 9,
                "reason": "Issued by mistake."}
        return self._event("billing.invoice.voided", i.customer_id, i.invoice_id, at, data, i.invoice_id)

    def credit_note(self, i: Invoice, at: datetime, amount: int, reason: str, n: int) -> dict[str, Any]:
        data = {"credit_note_id": f"cn_{i.invoice_id}_{n}", "invoice_id": i.invoice_id,
                "customer_id": i.customer_id, "amount": money(amount, i.currency), "reason": reason}
        return self._event("billing.credit_note.applied", i.customer_id, i.invoice_id, at, data, i.invoice_id, n)

    def dispute(self, i: Invoice, at: datetime, dispute_id: str, resolution: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"dispute_id": dispute_id, "invoice_id": i.invoice_id, "customer_id": i.customer_id,
                                "status": "resolved" if resolution else "opened"}
        if resolution:
            data["resolution"] = resolution
        else:
            data["reason"] = "The customer contests the amount."
        return self._event("billing.invoice.disputed", i.customer_id, i.invoice_id, at, data,
                           dispute_id, resolution or "opened")

    def payment_succeeded(self, i: Invoice, at: datetime, paid_at: datetime, payment_id: str, amount: int,
                          method: str) -> dict[str, Any]:
        data = {"payment_id": payment_id, "invoice_id": i.invoice_id, "customer_id": i.customer_id,
                "amount": money(amount, i.currency), "paid_at": rfc3339(paid_at),
                "method": method, "reference": f"{i.number}"}
        return self._event("billing.payment.succeeded", i.customer_id, i.invoice_id, at, data, payment_id)

    def payment_failed(self, i: Invoice, at: datetime, payment_id: str, attempt: int,
                       next_retry: datetime | None, tenant_domain: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "payment_id": payment_id, "invoice_id": i.invoice_id, "customer_id": i.customer_id,
            "amount": money(i.total_minor, i.currency), "failed_at": rfc3339(at - timedelta(seconds=2)),
            "failure_code": "expired_card", "failure_message": "The card has expired.",
            "recurring": True, "attempt": attempt,
            "payment_method": {"kind": "card", "brand": "visa", "last4": "4242", "expiry": f"{at.year}-{max(at.month - 1, 1):02d}"},
            "update_payment_method_url": f"https://pay.{tenant_domain}.example/billing/payment-method",
        }
        if next_retry is not None:
            data["next_retry_at"] = rfc3339(next_retry)
        return self._event("billing.payment.failed", i.customer_id, i.invoice_id, at, data, payment_id)

    def payment_refunded(self, i: Invoice, at: datetime, payment_id: str, amount: int) -> dict[str, Any]:
        data = {"refund_id": f"rf_{payment_id}", "payment_id": payment_id, "invoice_id": i.invoice_id,
                "customer_id": i.customer_id, "amount": money(amount, i.currency), "kind": "chargeback",
                "refunded_at": rfc3339(at - timedelta(seconds=30)),
                "reason": "The card holder disputed the charge with the bank."}
        return self._event("billing.payment.refunded", i.customer_id, i.invoice_id, at, data, payment_id)


# ==============================================================================================
# Customers' behaviour: pure decisions from a random stream

HUMAN_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
]
# What mail security and privacy proxies send (docs/tracking.md classifies them as machines).
PROXY_AGENTS = {
    "apple_privacy": "Mozilla/5.0",
    "gmail_proxy": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
}
SCANNER_AGENTS = [
    "Mozilla/5.0 (compatible; Barracuda Sentinel URL Scanner)",
    "Proofpoint URL Defense/1.0",
    "Mimecast URL Protect",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 SafeLinks",
]
PREVIEW_AGENTS = ["Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
                  "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"]

# How likely a reader acts on a reminder, before the per-reminder rise.
RESPONSE_BASE = {"vip": 0.55, "large_amount": 0.40, "standard": 0.35, "new_customer": 0.35,
                 "late_payer": 0.22, "high_risk": 0.18}
PROMISE_KEPT = {"vip": 0.95, "large_amount": 0.85, "standard": 0.80, "new_customer": 0.75,
                "late_payer": 0.55, "high_risk": 0.45}


@dataclass(frozen=True)
class Reaction:
    """What one customer does with one reminder."""

    opens_at: timedelta | None          # after delivery, a person opens (None: never)
    response: str | None                # pay_link, pay_later, promise, already_paid, dispute, payment_plan
    response_after: timedelta           # after the open
    pays_after: timedelta               # after the response, when the money arrives
    promise_in_days: int
    promise_kept: bool
    dispute_reason: str


def response_probability(persona: str, touches: int, tone: str, channel: str) -> float:
    """Rises with every reminder: the k-th reminder's chance is base × (1 + 0.3 (k − 1))."""
    base = RESPONSE_BASE.get(persona, 0.3)
    chance = base * (1.0 + 0.3 * (max(touches, 1) - 1))
    chance *= {"friendly": 1.0, "firm": 1.15, "final": 1.35}.get(tone, 1.0)
    chance *= {"phone_call": 1.8, "formal_notice": 1.6, "sms": 0.8}.get(channel, 1.0)
    return min(chance, 0.9)


def open_probability(step_id: str, persona: str) -> float:
    base = {"courtesy": 0.5, "final_notice": 0.62}.get(step_id, 0.45)
    return min(0.95, base + (0.15 if persona in ("vip", "large_amount") else 0.0))


def decide_reaction(r: random.Random, persona: str, touches: int, step_id: str, tone: str,
                    channel: str) -> Reaction:
    opens = r.random() < (open_probability(step_id, persona) if channel == "email" else 0.85)
    opens_at = timedelta(minutes=math.exp(r.gauss(math.log(150), 1.1))) if opens else None
    chance = response_probability(persona, touches, tone, channel)
    if not opens:
        chance *= 0.25  # the subject line alone sometimes does it
    response = None
    if r.random() < chance:
        if channel != "email":
            response = "pay_later"
        else:
            response = weighted(r, [("pay_link", 0.52), ("pay_later", 0.24), ("promise", 0.12),
                                    ("already_paid", 0.05), ("dispute", 0.04), ("payment_plan", 0.03)])
            if not opens:
                response = "pay_later"
    return Reaction(
        opens_at=opens_at,
        response=response,
        response_after=timedelta(seconds=r.uniform(40, 1800)),
        pays_after=(timedelta(minutes=r.uniform(5, 90)) if response == "pay_link"
                    else timedelta(hours=math.exp(r.gauss(math.log(30), 0.7)))),
        promise_in_days=r.randint(5, 21),
        promise_kept=r.random() < PROMISE_KEPT.get(persona, 0.7),
        dispute_reason=weighted(r, [("incorrect_amount", 0.4), ("not_received", 0.25), ("quality", 0.2),
                                    ("duplicate", 0.05), ("other", 0.1)]),
    )


# ==============================================================================================
# Links in the emails relance sent

LINK_PATTERN = re.compile(r"""(?:href|src)\s*=\s*["']([^"']*/l/(o|c|pay|already-paid|dispute|promise|payment-plan)/[^"']+)["']""")


@dataclass(frozen=True)
class EmailLinks:
    pixel: str | None
    by_action: dict[str, str]

    @property
    def all_links(self) -> list[str]:
        return list(self.by_action.values())


def extract_links(html_body: str) -> EmailLinks:
    pixel = None
    actions: dict[str, str] = {}
    for match in LINK_PATTERN.finditer(html_body or ""):
        url, kind = html.unescape(match.group(1)), match.group(2)
        if kind == "o":
            pixel = pixel or url
        else:
            actions.setdefault(kind, url)
    return EmailLinks(pixel, actions)


def token_claims(url: str) -> dict[str, Any]:
    """The ids a signed link carries (docs/tracking.md, Tokens): readable, not secret."""
    token = url.rstrip("/").rsplit("/", 1)[-1]
    parts = token.split(".")
    if len(parts) != 4:
        return {}
    padded = parts[2] + "=" * (-len(parts[2]) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return {}


class FormReader(html.parser.HTMLParser):
    """Reads the first POST form of an action page: its inputs, selects and their options."""

    def __init__(self) -> None:
        super().__init__()
        self.in_form = False
        self.found = False
        self.fields: dict[str, dict[str, str]] = {}
        self.options: dict[str, list[str]] = defaultdict(list)
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and values.get("method", "get").lower() == "post" and not self.found:
            self.in_form = self.found = True
        elif self.in_form and tag in ("input", "textarea") and values.get("name"):
            self.fields[values["name"]] = values
        elif self.in_form and tag == "select" and values.get("name"):
            self.select = values["name"]
            self.fields[self.select] = values
        elif self.in_form and tag == "option" and self.select and values.get("value"):
            self.options[self.select].append(values["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "select":
            self.select = None


def read_form(page: str) -> FormReader | None:
    reader = FormReader()
    try:
        reader.feed(page)
    except (AssertionError, ValueError):
        return None
    return reader if reader.found else None


# ==============================================================================================
# HTTP: the tracker, the mock's admin API, the scheduler's admin API


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A pay link redirects to the billing system's payment page: the simulated customer stops
    there (it is not on this machine)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    headers: dict[str, str]


def http_call(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None,
              timeout: float = 10.0) -> HttpResult:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read().decode("utf-8", "replace"),
                              {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace") if error.fp else ""
        return HttpResult(error.code, text, {k.lower(): v for k, v in (error.headers or {}).items()})
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        return HttpResult(0, str(getattr(error, "reason", error)), {})


def browser_headers(user_agent: str, ip: str, locale: str, accept: str) -> dict[str, str]:
    language = "fr-FR,fr;q=0.9,en;q=0.6" if locale.startswith("fr") else "en-GB,en;q=0.9"
    return {"User-Agent": user_agent, "Accept": accept, "Accept-Language": language,
            # Read by the tracker only when tracker.trusted_proxy_hops = 1 (as behind an ingress):
            # each customer then has an address of their own for the rate limit.
            "X-Forwarded-For": ip}


HTML_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"


class TrackerClient:
    """Talks to the tracker's public side as customers' browsers, proxies and scanners do, and
    as Postmark's webhooks do."""

    def __init__(self, base_url: str, webhook_user: str | None, webhook_password: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.webhook_auth = None
        if webhook_user and webhook_password:
            token = base64.b64encode(f"{webhook_user}:{webhook_password}".encode()).decode()
            self.webhook_auth = f"Basic {token}"

    def rebase(self, url: str) -> str:
        """Links carry links.public_base_url; send them to the tracker we can reach."""
        parsed = urllib.parse.urlsplit(url)
        return f"{self.base_url}{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")

    def fetch(self, url: str, agent: str, ip: str, locale: str, image: bool = False) -> HttpResult:
        return http_call("GET", self.rebase(url), browser_headers(agent, ip, locale, IMAGE_ACCEPT if image else HTML_ACCEPT))

    def submit_form(self, url: str, agent: str, ip: str, locale: str, fields: dict[str, str]) -> HttpResult:
        headers = browser_headers(agent, ip, locale, HTML_ACCEPT)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        # With Referrer-Policy: no-referrer a browser posts the form with a null origin.
        headers["Origin"] = "null"
        return http_call("POST", self.rebase(url), headers, urllib.parse.urlencode(fields).encode())

    def postmark_webhook(self, payload: dict[str, Any], trace_id: str) -> HttpResult:
        if self.webhook_auth is None:
            return HttpResult(0, "no webhook credentials", {})
        headers = {"Content-Type": "application/json", "Authorization": self.webhook_auth,
                   "User-Agent": "Postmark", "X-PM-Webhook-Trace-Id": trace_id}
        return http_call("POST", f"{self.base_url}/webhooks/postmark", headers, json.dumps(payload).encode())


class MockMailbox:
    """Reads the messages the mock Postmark accepted, after a cursor."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.after = 0
        self.errors = 0

    def new_messages(self, limit: int = 500) -> list[dict[str, Any]]:
        result = http_call("GET", f"{self.base_url}/_mock/messages?after={self.after}&limit={limit}", timeout=10)
        if result.status != 200:
            self.errors += 1
            return []
        page = json.loads(result.body)
        self.after = page.get("next_after", self.after)
        return page.get("messages", [])


class AdminClient:
    """The scheduler's admin API, as a credit manager uses it through relancectl."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def pending(self, tenant: str) -> list[dict[str, Any]]:
        result = http_call("GET", f"{self.base_url}/v1/approvals?tenant={urllib.parse.quote(tenant)}&limit=200",
                           self.headers)
        return json.loads(result.body) if result.status == 200 else []

    def decide(self, reminder_id: str, approve: bool) -> int:
        if approve:
            body = {"note": "Approved by the simulated credit manager."}
            path = "approve"
        else:
            body = {"reason": "The customer called: held back by the simulated credit manager."}
            path = "reject"
        result = http_call("POST", f"{self.base_url}/v1/approvals/{reminder_id}/{path}", self.headers,
                           json.dumps(body).encode())
        return result.status


# ==============================================================================================
# Kafka


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "plaintext"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def client_config(self) -> dict[str, str]:
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password, "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location, "ssl.key.password": self.ssl_key_password,
        }
        config.update({key: value for key, value in optional.items() if value})
        config.update(dict(self.extra))
        return config


@dataclass(frozen=True)
class Topics:
    invoices: str = "billing.invoices"
    payments: str = "billing.payments"
    customers: str = "billing.customers"
    events: str = "relance.events"
    tasks: str = "relance.tasks"

    def for_type(self, event_type: str) -> str:
        return getattr(self, TOPIC_OF_TYPE[event_type])


class Publisher(Protocol):
    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None: ...

    def poll(self) -> None: ...

    def close(self, timeout: float) -> int: ...


class KafkaPublisher:
    """An idempotent producer; a record counts as published once the broker acknowledged it."""

    def __init__(self, settings: KafkaSettings) -> None:
        from confluent_kafka import Producer

        config = {**settings.client_config(), "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "client.id": "relance-billing-simulator"}
        self.producer = Producer(config)
        self.acknowledged = 0
        self.failed = 0

    def _report(self, error: Any, _message: Any) -> None:
        if error is None:
            self.acknowledged += 1
        else:
            self.failed += 1
            if self.failed <= 5:
                print(f"\nA record could not be published: {error}", file=sys.stderr)

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value,
                                      headers=[("content-type", CONTENT_TYPE)], on_delivery=self._report)
                return
            except BufferError:
                # The local queue is full: let the broker catch up (backpressure, not loss).
                self.producer.poll(0.1)

    def poll(self) -> None:
        self.producer.poll(0)

    def close(self, timeout: float) -> int:
        return self.producer.flush(timeout)


class FilePublisher:
    """--dry-run: one JSON line per record (topic, key, headers, value)."""

    def __init__(self, path: Path) -> None:
        self.out = sys.stdout if str(path) == "-" else path.open("w", encoding="utf-8")
        self.acknowledged = 0
        self.failed = 0

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        record = {"topic": topic, "key": key, "headers": {"content-type": CONTENT_TYPE.decode()}, "value": event}
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.acknowledged += 1

    def poll(self) -> None:
        pass

    def close(self, timeout: float) -> int:
        if self.out is not sys.stdout:
            self.out.close()
        return 0


class EventsReader:
    """Reads relance's dunning events and tasks from the beginning with a group of its own.
    Other tenants' events are skipped."""

    def __init__(self, settings: KafkaSettings, topics: list[str], group_id: str) -> None:
        from confluent_kafka import Consumer

        config = {**settings.client_config(), "group.id": group_id, "auto.offset.reset": "earliest",
                  "enable.auto.commit": True, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                  "fetch.wait.max.ms": 50, "client.id": "relance-billing-simulator"}
        self.consumer = Consumer(config)
        self.consumer.subscribe(topics)
        self.undecodable = 0

    def poll(self, limit: int = 500) -> list[dict[str, Any]]:
        out = []
        for message in self.consumer.consume(num_messages=limit, timeout=0):
            if message.error() or message.value() is None:
                continue
            try:
                out.append(json.loads(message.value()))
            except (ValueError, UnicodeDecodeError):
                self.undecodable += 1
        return out

    def close(self) -> None:
        self.consumer.close()


# ==============================================================================================
# The simulation


@dataclass
class InvoiceLife:
    """What the simulator knows of an invoice while the period runs."""

    invoice: Invoice
    issued: bool = False
    voided: bool = False
    credited_minor: int = 0
    paid_minor: int = 0
    payments: int = 0
    paid_at: datetime | None = None
    planned_payment_at: datetime | None = None
    plan_version: int = 0
    touches: int = 0
    disputed: bool = False
    promise: date | None = None
    claimed: bool = False
    payment_held: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def due_minor(self) -> int:
        return max(self.invoice.total_minor - self.credited_minor - self.paid_minor, 0)

    @property
    def closed(self) -> bool:
        return self.voided or (self.issued and self.due_minor == 0)


@dataclass
class Touch:
    """One reminder (or task) relance sent about some invoices of a customer."""

    key: str
    reminder_id: str
    customer_id: str
    invoice_ids: list[str]
    step_id: str
    tone: str
    channel: str
    sent_at: datetime
    message: dict[str, Any] | None = None
    handled: bool = False


@dataclass(order=True)
class Action:
    at: datetime
    seq: int
    name: str = field(compare=False)
    run: Callable[[], None] = field(compare=False)


@dataclass
class Counters:
    published: Counter[str] = field(default_factory=Counter)
    reminders_by_step: Counter[str] = field(default_factory=Counter)
    relance: Counter[str] = field(default_factory=Counter)
    payments: int = 0
    paid_eur: float = 0.0
    http: Counter[str] = field(default_factory=Counter)
    interactions: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    approvals: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class RunOptions:
    tenant_domain: str = "demo"
    tracker: TrackerClient | None = None
    mailbox: MockMailbox | None = None
    admin: AdminClient | None = None
    delivery_webhooks: bool = True
    mock_poll_seconds: float = 0.25
    events_poll_seconds: float = 0.1
    approvals_poll_seconds: float = 2.0
    progress_seconds: float = 0.5
    # A reminder whose email never showed up at the mock after this long (simulated) is read
    # without its links (a provider the simulator cannot see into).
    email_wait: timedelta = timedelta(hours=24)
    http_workers: int = 8


class Simulation:
    """The event loop: publishes the timeline when the clock reaches it, reads what relance
    does, and plays the customers' answers."""

    def __init__(self, portfolio: Portfolio, clock: Clock, publisher: Publisher, topics: Topics,
                 options: RunOptions, reader: EventsReader | None = None,
                 progress: Callable[[str, bool], None] | None = None) -> None:
        self.portfolio = portfolio
        self.clock = clock
        self.publisher = publisher
        self.topics = topics
        self.options = options
        self.reader = reader
        self.events = EventFactory(portfolio.seed, portfolio.tenant)
        self.seed = portfolio.seed
        self.lives = {i.invoice_id: InvoiceLife(i) for i in portfolio.invoices}
        self.heap: list[Action] = []
        self.sequence = 0
        self.counters = Counters()
        self.touches: dict[str, Touch] = {}
        self.orphan_messages: dict[str, dict[str, Any]] = {}
        self.decided_approvals: set[str] = set()
        self.stop_requested = threading.Event()
        # HTTP (customers, webhooks, the credit manager) runs on workers so the clock never waits.
        self.pool = ThreadPoolExecutor(max_workers=options.http_workers, thread_name_prefix="customer") \
            if options.tracker or options.admin else None
        self.results: queue.Queue[Callable[[], None]] = queue.Queue()
        self.render = progress or (lambda line, final: None)
        self.next_poll = {"events": 0.0, "mock": 0.0, "approvals": 0.0, "progress": 0.0}

    # -- scheduling -------------------------------------------------------------------------

    def at(self, instant: datetime, name: str, run: Callable[[], None]) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, Action(instant, self.sequence, name, run))

    def publish(self, event: dict[str, Any]) -> None:
        self.publisher.publish(self.topics.for_type(event["type"]), event["partitionkey"], event)
        self.counters.published[event["type"]] += 1

    def plan_timeline(self) -> None:
        """Everything the billing system does whatever relance does."""
        start = self.portfolio.start
        for customer in self.portfolio.customers:
            created = datetime.combine(customer.customer_since, datetime.min.time(), UTC) + timedelta(hours=9)
            self.at(start, "customer", self._publisher_of(self.events.customer_upserted(customer, min(created, start))))
        for invoice in self.portfolio.invoices:
            self.plan_invoice(invoice)

    def _publisher_of(self, event: dict[str, Any]) -> Callable[[], None]:
        return lambda: self.publish(event)

    def plan_invoice(self, invoice: Invoice) -> None:
        start = self.portfolio.start
        life = self.lives[invoice.invoice_id]
        issue_at = max(invoice.issued_at, start)
        if invoice.history:
            # Paid before the period: the payment goes first, so the invoice arrives closed and
            # the scheduler never plans it (a payment before its invoice waits for it).
            paid_at = invoice.baseline_paid_at or start
            self.at(start, "history-payment", lambda: self.pay(life, paid_at=paid_at))
            self.at(start + timedelta(seconds=1), "issue", lambda: self.issue(life, invoice.issued_at))
            return
        self.at(issue_at, "issue", lambda: self.issue(life, invoice.issued_at))
        if invoice.baseline_paid_at is not None:
            self.plan_payment(life, invoice.baseline_paid_at)
        if invoice.void_at:
            self.at(max(invoice.void_at, issue_at), "void", lambda: self.void(life))
        if invoice.credit_at and invoice.credit_share:
            self.at(max(invoice.credit_at, issue_at), "credit", lambda: self.credit(life, invoice.credit_share or 0))
        if invoice.due_extension_at:
            self.at(max(invoice.due_extension_at, issue_at), "update", lambda: self.extend_due(life))
        if invoice.dispute_at and invoice.dispute_resolution:
            dispute_id = f"dsp_{invoice.invoice_id}"
            resolved_at, resolution = invoice.dispute_resolution
            self.at(max(invoice.dispute_at, issue_at), "dispute", lambda: self.open_dispute(life, dispute_id))
            self.at(max(resolved_at, issue_at), "dispute-resolved",
                    lambda: self.resolve_dispute(life, dispute_id, resolution))
        if invoice.card_failure:
            failed_at = datetime.combine(invoice.due_on, datetime.min.time(), UTC) + timedelta(hours=6)
            self.at(max(failed_at, issue_at), "card-failed", lambda: self.card_failed(life, failed_at))

    # -- billing actions --------------------------------------------------------------------

    def issue(self, life: InvoiceLife, issued_at: datetime) -> None:
        life.issued = True
        self.publish(self.events.invoice_issued(life.invoice, issued_at, self.options.tenant_domain))

    def plan_payment(self, life: InvoiceLife, when: datetime) -> None:
        """The customer will pay at `when` unless an earlier plan exists; later plans lose."""
        if life.planned_payment_at is not None and life.planned_payment_at <= when:
            return
        life.planned_payment_at = when
        life.plan_version += 1
        version = life.plan_version
        at = max(when, life.invoice.issued_at)
        self.at(at, "payment", lambda: self.planned_payment(life, version, at))

    def planned_payment(self, life: InvoiceLife, version: int, planned_at: datetime) -> None:
        if version != life.plan_version or life.closed:
            return
        life.planned_payment_at = None
        if life.disputed:
            # A customer does not pay an invoice they dispute; they do once it is settled.
            life.payment_held = True
            return
        share = life.invoice.partial_share
        if share and life.payments == 0:
            # A partial payment now, the rest a week or two later.
            self.pay(life, amount=max(int(life.due_minor * share) // 100 * 100, 100), paid_at=planned_at)
            later = rng(self.seed, "rest", life.invoice.invoice_id).uniform(5, 20)
            self.plan_payment(life, max(planned_at, self.clock.now()) + timedelta(days=later))
        else:
            # The planned instant, not "now": payments due before the period keep their date.
            self.pay(life, paid_at=planned_at)

    def pay(self, life: InvoiceLife, amount: int | None = None, paid_at: datetime | None = None,
            method: str | None = None) -> None:
        """Publishes a payment of `amount` (default: all that is due; past invoices: their
        total), paid at `paid_at` (default: just now) and reported two seconds later."""
        invoice = life.invoice
        value = invoice.total_minor if invoice.history else min(amount or life.due_minor, life.due_minor)
        if value <= 0:
            return
        now = self.clock.now()
        published_at = min(paid_at + timedelta(seconds=2), now) if paid_at else now
        paid_at = min(paid_at, published_at) if paid_at else published_at - timedelta(seconds=2)
        life.payments += 1
        payment_id = f"pay_{invoice.invoice_id}_{life.payments}"
        event = self.events.payment_succeeded(invoice, published_at, paid_at, payment_id, value,
                                              method or invoice.method)
        life.paid_minor += value
        if life.due_minor == 0 or invoice.history:
            life.paid_at = paid_at
        self.publish(event)
        if invoice.history:
            return
        self.counters.payments += 1
        self.counters.paid_eur += value / 100 * TO_EUR.get(invoice.currency, 1.0)
        if invoice.refund_after and life.due_minor == 0:
            self.at(published_at + invoice.refund_after, "refund", lambda: self.refund(life, payment_id, value))

    def refund(self, life: InvoiceLife, payment_id: str, amount: int) -> None:
        if life.voided:
            return
        life.paid_minor -= amount
        life.paid_at = None
        self.publish(self.events.payment_refunded(life.invoice, self.clock.now(), payment_id, amount))
        # Charged back: the customer pays again, by transfer, a couple of weeks later.
        self.plan_payment(life, self.clock.now() + timedelta(days=rng(self.seed, "repay", payment_id).uniform(7, 25)))

    def void(self, life: InvoiceLife) -> None:
        if life.closed:
            return
        life.voided = True
        self.publish(self.events.invoice_voided(life.invoice, self.clock.now()))

    def credit(self, life: InvoiceLife, share: float, reason: str = "Commercial gesture.") -> None:
        if life.closed:
            return
        amount = life.due_minor if share >= 1.0 else min(int(life.invoice.total_minor * share), life.due_minor)
        if amount <= 0:
            return
        life.credited_minor += amount
        number = len([e for e in life.events if e == "credit"]) + 1
        life.events.append("credit")
        self.publish(self.events.credit_note(life.invoice, self.clock.now(), amount, reason, number))

    def extend_due(self, life: InvoiceLife) -> None:
        if life.closed:
            return
        new_due = life.invoice.due_on + timedelta(days=15)
        self.publish(self.events.invoice_updated(life.invoice, self.clock.now(), 2, new_due))

    def open_dispute(self, life: InvoiceLife, dispute_id: str) -> None:
        if life.closed:
            return
        life.disputed = True
        self.publish(self.events.dispute(life.invoice, self.clock.now(), dispute_id, None))

    def resolve_dispute(self, life: InvoiceLife, dispute_id: str, resolution: str) -> None:
        if not life.disputed:
            return
        life.disputed = False
        if resolution == "in_favour_of_customer" and not life.closed:
            self.credit(life, rng(self.seed, "dispute-credit", dispute_id).choice([0.2, 0.5, 1.0]),
                        "Dispute settled in the customer's favour.")
        self.publish(self.events.dispute(life.invoice, self.clock.now(), dispute_id, resolution))
        if life.closed or life.planned_payment_at is not None:
            return
        # The payment held during the dispute goes now; without one, most customers pay soon.
        r = rng(self.seed, "after-dispute", dispute_id)
        if life.payment_held or r.random() < 0.7:
            life.payment_held = False
            self.plan_payment(life, self.clock.now() + timedelta(days=r.uniform(1, 12)))

    def card_failed(self, life: InvoiceLife, failed_at: datetime) -> None:
        if life.closed:
            return
        r = rng(self.seed, "card", life.invoice.invoice_id)
        retry_at = failed_at + timedelta(days=3)
        self.publish(self.events.payment_failed(life.invoice, self.clock.now(), f"pay_{life.invoice.invoice_id}_card1", 1, retry_at,
                                                   self.options.tenant_domain))
        if r.random() < 0.5:
            self.at(retry_at, "card-retry", lambda: self.pay(life, method="card"))
        else:
            self.at(retry_at, "card-failed-again", lambda: self.card_failed_again(life))

    def card_failed_again(self, life: InvoiceLife) -> None:
        if life.closed:
            return
        self.publish(self.events.payment_failed(life.invoice, self.clock.now(), f"pay_{life.invoice.invoice_id}_card2", 2, None,
                                                   self.options.tenant_domain))

    # -- what relance does -------------------------------------------------------------------

    def on_relance_event(self, event: dict[str, Any]) -> None:
        if event.get("tenant") != self.portfolio.tenant:
            return
        kind = str(event.get("type", ""))
        data = event.get("data") or {}
        self.counters.relance[kind.rsplit(".", 1)[-1]] += 1
        if kind == "relance.dunning.reminder_sent":
            self.on_reminder_sent(data)
        elif kind == "relance.task.create" and data.get("kind") in ("phone_call", "formal_notice", "letter"):
            self.on_task(data)
        elif kind == "relance.dunning.customer_action":
            self.counters.actions[str(data.get("action"))] += 1
            if data.get("action") == "dispute":
                self.on_customer_dispute(data)
        elif kind in ("relance.dunning.reminder_opened", "relance.dunning.reminder_clicked"):
            what = "open" if kind.endswith("opened") else "click"
            self.counters.interactions[f"{what}_{data.get('classification')}"] += 1

    def on_reminder_sent(self, data: dict[str, Any]) -> None:
        step = data.get("step") or {}
        step_id = str(step.get("id", "?"))
        self.counters.reminders_by_step[step_id] += 1
        key = str(data.get("idempotency_key") or data.get("reminder_id"))
        touch = Touch(key=key, reminder_id=str(data.get("reminder_id")), customer_id=str(data.get("customer_id")),
                      invoice_ids=list(data.get("invoice_ids") or []), step_id=step_id,
                      tone=str(step.get("tone", "friendly")), channel=str(data.get("channel", "email")),
                      sent_at=self._instant(data.get("sent_at")))
        if touch.customer_id not in self.portfolio.by_customer:
            return
        self.touches[touch.reminder_id] = touch
        if touch.channel != "email":
            self.read_without_links(touch, touch.sent_at + timedelta(hours=rng(self.seed, "sms", key).uniform(0.1, 6)))
            return
        message = self.orphan_messages.pop(touch.reminder_id, None)
        if message is not None:
            self.on_email(touch, message)
        elif self.options.mailbox is None:
            self.read_without_links(touch, touch.sent_at)
        else:
            self.at(self.clock.now() + self.options.email_wait, "email-wait", lambda: self.email_missing(touch))

    def on_task(self, data: dict[str, Any]) -> None:
        step = data.get("step") or {}
        key = str(data.get("idempotency_key") or data.get("task_id"))
        if key in self.touches or data.get("customer_id") not in self.portfolio.by_customer:
            return
        touch = Touch(key=key, reminder_id=key, customer_id=str(data["customer_id"]),
                      invoice_ids=list(data.get("invoice_ids") or []), step_id=str(step.get("id", data.get("kind"))),
                      tone=str(step.get("tone", "firm")), channel=str(data.get("kind")), sent_at=self.clock.now())
        self.touches[key] = touch
        self.counters.reminders_by_step[f"task:{data.get('kind')}"] += 1
        # A person calls within a working day or two.
        self.read_without_links(touch, self.clock.now() + timedelta(hours=rng(self.seed, "call", key).uniform(4, 40)))

    def on_customer_dispute(self, data: dict[str, Any]) -> None:
        """The billing team settles a dispute raised on the action page within a few weeks."""
        life = self.lives.get(str(data.get("invoice_id")))
        if life is None:
            return
        life.disputed = True
        dispute_id = f"customer-{data.get('action_id')}"
        r = rng(self.seed, "page-dispute", life.invoice.invoice_id)
        if r.random() < 0.15:
            return  # still open at the end
        resolution = weighted(r, [("in_favour_of_merchant", 0.45), ("in_favour_of_customer", 0.4), ("withdrawn", 0.15)])
        self.at(self.clock.now() + timedelta(days=r.uniform(5, 20)), "dispute-resolved",
                lambda: self.resolve_dispute(life, dispute_id, resolution))

    def _instant(self, text: Any) -> datetime:
        try:
            return parse_instant(str(text))
        except ValueError:
            return self.clock.now()

    def open_lives(self, touch: Touch) -> list[InvoiceLife]:
        return [life for invoice_id in touch.invoice_ids
                if (life := self.lives.get(invoice_id)) is not None and not life.closed]

    def reaction_of(self, touch: Touch) -> Reaction:
        customer = self.portfolio.customer(touch.customer_id)
        lives = self.open_lives(touch)
        touches = max((life.touches for life in lives), default=0) + 1
        for life in lives:
            life.touches += 1
        return decide_reaction(rng(self.seed, "reaction", touch.key), customer.persona, touches,
                               touch.step_id, touch.tone, touch.channel)

    def read_without_links(self, touch: Touch, read_at: datetime) -> None:
        """SMS, calls, or emails the simulator cannot see: only the payment side of a reaction."""
        if touch.handled:
            return
        touch.handled = True
        reaction = self.reaction_of(touch)
        if reaction.response is None:
            return
        when = max(read_at, self.clock.now()) + (reaction.opens_at or timedelta(0)) + reaction.pays_after
        for life in self.open_lives(touch):
            self.plan_payment(life, when)

    def email_missing(self, touch: Touch) -> None:
        if not touch.handled:
            self.counters.http["email_not_seen"] += 1
            self.read_without_links(touch, self.clock.now())

    # -- the mailbox -------------------------------------------------------------------------

    def on_mock_message(self, message: dict[str, Any]) -> None:
        metadata = message.get("metadata") or {}
        if metadata.get("tenant") not in (None, self.portfolio.tenant):
            return
        customer = self.portfolio.by_email.get(_bare_address(message.get("to", "")).lower())
        if customer is None:
            return
        reminder_id = str(metadata.get("reminder", ""))
        touch = self.touches.get(reminder_id)
        if touch is None:
            # The mock can be read before relance.events says the reminder was sent.
            self.orphan_messages[reminder_id] = message
            return
        self.on_email(touch, message)

    def on_email(self, touch: Touch, message: dict[str, Any]) -> None:
        if touch.handled:
            return
        touch.handled = True
        touch.message = message
        customer = self.portfolio.customer(touch.customer_id)
        delivered = self._instant(message.get("received_at"))
        if isinstance(self.clock, SimClock):
            delivered = self.clock.at(delivered.timestamp())
        links = extract_links(message.get("html_body") or "")
        if customer.bounce == "hard" or (customer.bounce == "soft" and rng(self.seed, "soft", touch.key).random() < 0.3):
            self.at(delivered + timedelta(seconds=40), "bounce", lambda: self.send_bounce(customer, message))
            return
        if self.options.delivery_webhooks:
            self.at(delivered + timedelta(seconds=5), "delivered", lambda: self.send_delivery(customer, message))
        self.plan_machine_noise(customer, touch, links, delivered)
        reaction = self.reaction_of(touch)
        if reaction.opens_at is None:
            if reaction.response:
                for life in self.open_lives(touch):
                    self.plan_payment(life, delivered + reaction.response_after + reaction.pays_after)
            return
        opened = max(delivered + reaction.opens_at, self.clock.now())
        if links.pixel:
            agent = PROXY_AGENTS["gmail_proxy"] if customer.mailbox == "gmail_proxy" else self.human_agent(customer)
            self.at(opened, "open", lambda: self.fetch(links.pixel or "", agent, customer, "pixel_human", image=True))
        if reaction.response:
            self.plan_response(customer, touch, links, reaction, opened)

    def human_agent(self, customer: Customer) -> str:
        return HUMAN_AGENTS[customer.index % len(HUMAN_AGENTS)]

    def plan_machine_noise(self, customer: Customer, touch: Touch, links: EmailLinks, delivered: datetime) -> None:
        r = rng(self.seed, "noise", touch.key)
        if customer.mailbox == "apple_privacy" and links.pixel:
            self.at(delivered + timedelta(minutes=r.uniform(0.5, 20)), "proxy-open",
                    lambda: self.fetch(links.pixel or "", PROXY_AGENTS["apple_privacy"], customer, "pixel_proxy", image=True))
        elif customer.mailbox == "link_scanner":
            agent = r.choice(SCANNER_AGENTS)
            at = delivered + timedelta(seconds=r.uniform(3, 25))
            # Scanners follow every link of the message at once.
            for url in links.all_links + ([links.pixel] if links.pixel else []):
                self.at(at, "scan", lambda url=url: self.fetch(url, agent, customer, "scanner", image="/l/o/" in url, scanner=True))
        elif customer.mailbox == "chat_preview" and "pay" in links.by_action and r.random() < 0.5:
            self.at(delivered + timedelta(hours=r.uniform(1, 30)), "preview",
                    lambda: self.fetch(links.by_action["pay"], r.choice(PREVIEW_AGENTS), customer, "preview", scanner=True))

    def plan_response(self, customer: Customer, touch: Touch, links: EmailLinks, reaction: Reaction,
                      opened: datetime) -> None:
        act_at = opened + reaction.response_after
        lives = self.open_lives(touch)
        response = reaction.response
        page = {"pay_link": "pay", "promise": "promise", "already_paid": "already-paid",
                "dispute": "dispute", "payment_plan": "payment-plan"}.get(response or "")
        if page and page not in links.by_action:
            page, response = None, "pay_later"
        if response == "pay_later" or page is None:
            for life in lives:
                self.plan_payment(life, act_at + reaction.pays_after)
            return
        url = links.by_action[page]
        agent = self.human_agent(customer)
        if page == "pay":
            self.at(act_at, "pay-click", lambda: self.fetch(url, agent, customer, "pay_click"))
            for life in lives:
                self.plan_payment(life, act_at + reaction.pays_after)
            return
        self.at(act_at, f"page-{page}", lambda: self.act_on_page(customer, url, page, reaction, lives))

    def act_on_page(self, customer: Customer, url: str, page: str, reaction: Reaction,
                    lives: list[InvoiceLife]) -> None:
        """GET the page, then POST its form as a browser would (on a worker thread)."""
        if self.pool is None or self.options.tracker is None:
            return
        tracker = self.options.tracker
        agent = self.human_agent(customer)

        def work() -> None:
            shown = tracker.fetch(url, agent, customer.ip, customer.locale)
            self.count_http(f"{page}_page", shown.status)
            form = read_form(shown.body) if shown.status == 200 else None
            if form is None:
                return
            fields = self.fill_form(page, form, reaction, customer)
            posted = tracker.submit_form(url, agent, customer.ip, customer.locale, fields)
            self.count_http(f"{page}_submit", posted.status)
            if posted.status == 200:
                self.results.put(lambda: self.after_action(page, fields, reaction, lives, customer))

        self.pool.submit(work)

    def fill_form(self, page: str, form: FormReader, reaction: Reaction, customer: Customer) -> dict[str, str]:
        if page == "promise":
            field_info = form.fields.get("promised_on", {})
            earliest = _date_or(field_info.get("min"), self.clock.now().date() + timedelta(days=1))
            latest = _date_or(field_info.get("max"), earliest + timedelta(days=30))
            wanted = earliest + timedelta(days=reaction.promise_in_days - 1)
            return {"promised_on": min(max(wanted, earliest), latest).isoformat()}
        if page == "dispute":
            options = form.options.get("reason") or ["other"]
            reason = reaction.dispute_reason if reaction.dispute_reason in options else options[-1]
            return {"reason": reason, "message": "The amount does not match our order." if reason == "incorrect_amount" else ""}
        if page == "already-paid":
            return {"reference": f"VIR {customer.last_name.upper()}"}
        if page == "payment-plan":
            return {"installments": "3", "message": ""}
        return {}

    def after_action(self, page: str, fields: dict[str, str], reaction: Reaction, lives: list[InvoiceLife],
                     customer: Customer) -> None:
        now = self.clock.now()
        r = rng(self.seed, "after", page, customer.customer_id, now.date())
        for life in lives:
            if page == "promise":
                promised = _date_or(fields.get("promised_on"), now.date())
                life.promise = promised
                if reaction.promise_kept:
                    pay_day = datetime.combine(promised, datetime.min.time(), UTC) - timedelta(days=r.uniform(0, 2))
                    self.plan_payment(life, max(pay_day + timedelta(hours=10), now + timedelta(hours=1)))
                # A broken promise changes nothing: reminders only ever bring a payment forward,
                # which keeps the baseline an honest counterfactual.
            elif page == "already-paid":
                life.claimed = True
                # Claims here are honest: the transfer is on its way.
                self.plan_payment(life, now + timedelta(days=r.uniform(1, 3)))
            elif page == "payment-plan":
                self.plan_payment(life, now + timedelta(days=r.uniform(2, 6)))
                life.invoice.partial_share = life.invoice.partial_share or 0.34

    def fetch(self, url: str, agent: str, customer: Customer, label: str, image: bool = False,
              scanner: bool = False) -> None:
        if self.pool is None or self.options.tracker is None:
            return
        tracker = self.options.tracker
        ip = _scanner_ip(customer) if scanner else customer.ip

        def work() -> None:
            self.count_http(label, tracker.fetch(url, agent, ip, customer.locale, image=image).status)

        self.pool.submit(work)

    def send_delivery(self, customer: Customer, message: dict[str, Any]) -> None:
        payload = {
            "RecordType": "Delivery", "MessageStream": "outbound", "ServerID": 1,
            "MessageID": message.get("message_id"), "Recipient": customer.email,
            "Tag": message.get("tag") or "", "DeliveredAt": rfc3339(self.clock.now()),
            "Details": "smtp;250 2.0.0 OK", "Metadata": message.get("metadata") or {},
        }
        self.webhook(payload, f"delivery-{message.get('message_id')}", "delivery_webhook")

    def send_bounce(self, customer: Customer, message: dict[str, Any]) -> None:
        hard = customer.bounce == "hard"
        payload = {
            "RecordType": "Bounce", "MessageStream": "outbound",
            "ID": int(hashlib.sha256(str(message.get("message_id")).encode()).hexdigest()[:12], 16),
            "Type": "HardBounce" if hard else "SoftBounce", "TypeCode": 1 if hard else 4096,
            "Name": "Hard bounce" if hard else "Soft bounce", "Tag": message.get("tag") or "",
            "MessageID": message.get("message_id"), "Metadata": message.get("metadata") or {},
            "ServerID": 1, "Description": "The server was unable to deliver your message.",
            "Details": "smtp;550 5.1.1 user unknown" if hard else "smtp;452 4.2.2 mailbox full",
            "Email": customer.email, "From": message.get("from") or "", "BouncedAt": rfc3339(self.clock.now()),
            "DumpAvailable": False, "Inactive": hard, "CanActivate": True, "Subject": message.get("subject") or "",
        }
        self.webhook(payload, f"bounce-{message.get('message_id')}", "bounce_webhook")

    def webhook(self, payload: dict[str, Any], trace_id: str, label: str) -> None:
        if self.pool is None or self.options.tracker is None:
            return
        tracker = self.options.tracker
        self.pool.submit(lambda: self.count_http(label, tracker.postmark_webhook(payload, trace_id).status))

    def count_http(self, label: str, status: int) -> None:
        # Counter updates from worker threads are rare enough for the GIL to keep them whole.
        self.counters.http[f"{label}:{status}"] += 1

    # -- approvals ---------------------------------------------------------------------------

    def review_approvals(self) -> None:
        """The simulated credit manager approves most VIP and large-amount reminders, within
        a working day, and rejects a few."""
        admin = self.options.admin
        if admin is None or self.pool is None:
            return

        def work() -> None:
            for reminder in admin.pending(self.portfolio.tenant):
                reminder_id = str(reminder.get("reminder_id"))
                if reminder_id in self.decided_approvals:
                    continue
                self.decided_approvals.add(reminder_id)
                key = f"{reminder.get('customer_id')}|{reminder.get('step_id')}|{','.join(reminder.get('invoice_ids') or [])}"
                r = rng(self.seed, "approval", key)
                delay = timedelta(hours=r.uniform(1, 20))
                approve = r.random() < 0.88
                self.results.put(lambda rid=reminder_id, a=approve, d=delay:
                                 self.at(self.clock.now() + d, "approval", lambda: self.decide(rid, a)))

        self.pool.submit(work)

    def decide(self, reminder_id: str, approve: bool) -> None:
        admin = self.options.admin
        if admin is None or self.pool is None:
            return
        self.pool.submit(lambda: self.counters.approvals.update(
            [f"{'approved' if approve else 'rejected'}:{admin.decide(reminder_id, approve)}"]))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self.plan_timeline()
        end = self.portfolio.end
        while not self.stop_requested.is_set():
            now = self.clock.now()
            if isinstance(self.clock, VirtualClock):
                if not self.heap or self.heap[0].at >= end:
                    break
                self.clock.advance_to(self.heap[0].at)
                now = self.clock.now()
            elif now >= end:
                break
            self.run_due(now)
            self.drain_results()
            self.poll_outside(now)
            self.publisher.poll()
            if not isinstance(self.clock, VirtualClock):
                wait = self.clock.seconds_until(self.heap[0].at) if self.heap else 0.05
                time.sleep(min(max(wait, 0.0), 0.02))
        self.render(self.status_line(min(self.clock.now(), end)), True)

    def run_due(self, now: datetime) -> None:
        budget = 2000  # keep polling responsive during bursts
        while self.heap and self.heap[0].at <= now and budget > 0:
            action = heapq.heappop(self.heap)
            action.run()
            budget -= 1

    def drain_results(self) -> None:
        while True:
            try:
                self.results.get_nowait()()
            except queue.Empty:
                return

    def poll_outside(self, now: datetime) -> None:
        real = time.monotonic()
        if self.reader is not None and real >= self.next_poll["events"]:
            self.next_poll["events"] = real + self.options.events_poll_seconds
            for event in self.reader.poll():
                self.on_relance_event(event)
        if self.options.mailbox is not None and real >= self.next_poll["mock"]:
            self.next_poll["mock"] = real + self.options.mock_poll_seconds
            for message in self.options.mailbox.new_messages():
                self.on_mock_message(message)
        if self.options.admin is not None and real >= self.next_poll["approvals"]:
            self.next_poll["approvals"] = real + self.options.approvals_poll_seconds
            self.review_approvals()
        if real >= self.next_poll["progress"]:
            self.next_poll["progress"] = real + self.options.progress_seconds
            self.render(self.status_line(now), False)

    def status_line(self, now: datetime) -> str:
        c = self.counters
        day = (now - self.portfolio.start).total_seconds() / 86400
        total_days = (self.portfolio.end - self.portfolio.start).total_seconds() / 86400
        steps = " ".join(f"{short_step(step)} {count}" for step, count in sorted(c.reminders_by_step.items()))
        opens = f"{c.interactions['open_human']}h/{c.interactions['open_machine']}m"
        clicks = f"{c.interactions['click_human']}h/{c.interactions['click_machine']}m"
        return (f"sim {now:%Y-%m-%d %H:%M} day {day:4.1f}/{total_days:g} | published {sum(c.published.values()):,} "
                f"| reminders {sum(v for k, v in c.reminders_by_step.items() if not k.startswith('task:')):,}"
                f" [{steps or '-'}] skipped {c.relance['reminder_skipped']:,} | payments {c.payments:,} "
                f"(~EUR {c.paid_eur:,.0f}) | opens {opens} clicks {clicks} | actions {sum(c.actions.values())}")

    def shutdown(self, timeout: float = 10.0) -> int:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        unflushed = self.publisher.close(timeout)
        if self.reader is not None:
            self.reader.close()
        return unflushed


def short_step(step: str) -> str:
    return {"courtesy": "court", "first_reminder": "1st", "second_reminder": "2nd", "firm_reminder": "firm",
            "sms_reminder": "sms", "final_notice": "final", "update_payment_method": "pm-upd",
            "payment_method_sms": "pm-sms", "payment_method_firm": "pm-firm"}.get(step, step.replace("task:", "T:"))


def _bare_address(text: str) -> str:
    match = re.search(r"<([^>]+)>", text)
    return (match.group(1) if match else text).strip()


def _date_or(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        return default


def _scanner_ip(customer: Customer) -> str:
    """A company's mail gateway: one address per customer, apart from people's."""
    return f"2001:db8:5ca::{customer.index:x}"


# ==============================================================================================
# The ledger: what the report needs to compare with and without reminders


def write_ledger(path: Path, simulation: Simulation, clock: Clock, finished: bool) -> None:
    portfolio = simulation.portfolio
    invoices = []
    for invoice in portfolio.invoices:
        if invoice.history:
            continue
        life = simulation.lives[invoice.invoice_id]
        invoices.append({
            "invoice_id": invoice.invoice_id, "customer_id": invoice.customer_id,
            "currency": invoice.currency, "total_minor": invoice.total_minor,
            "issued_at": rfc3339(invoice.issued_at), "due_on": invoice.due_on.isoformat(),
            "baseline_paid_at": rfc3339(invoice.baseline_paid_at) if invoice.baseline_paid_at else None,
            "credit_planned": invoice.credit_share, "void_planned": invoice.void_at is not None,
            "billing_dispute": invoice.dispute_at is not None,
            "issued": life.issued, "paid_at": rfc3339(life.paid_at) if life.paid_at else None,
            "paid_minor": life.paid_minor, "credited_minor": life.credited_minor, "voided": life.voided,
            "touches": life.touches, "promise": life.promise.isoformat() if life.promise else None,
        })
    ledger = {
        "seed": portfolio.seed, "tenant": portfolio.tenant, "start": rfc3339(portfolio.start),
        "end": rfc3339(portfolio.end), "finished": finished,
        "stopped_at": rfc3339(min(clock.now(), portfolio.end)),
        "to_eur": TO_EUR,
        "customers": [{"customer_id": c.customer_id, "persona": c.persona, "country": c.country,
                       "timezone": c.timezone, "locale": c.locale, "mailbox": c.mailbox, "bounce": c.bounce}
                      for c in portfolio.customers],
        "invoices": invoices,
        "counters": {
            "published": dict(simulation.counters.published),
            "reminders_by_step": dict(simulation.counters.reminders_by_step),
            "relance_events": dict(simulation.counters.relance),
            "http": dict(simulation.counters.http),
            "approvals": dict(simulation.counters.approvals),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(ledger, indent=1))
    temporary.replace(path)


# ==============================================================================================
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kafka = parser.add_argument_group("Kafka (the same keys as relance's [kafka] settings)")
    kafka.add_argument("--bootstrap-servers", default=env("RELANCE__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    kafka.add_argument("--security-protocol", default=env("RELANCE__KAFKA__SECURITY_PROTOCOL", "plaintext"),
                       choices=["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])
    kafka.add_argument("--sasl-mechanism", default=env("RELANCE__KAFKA__SASL_MECHANISM", ""))
    kafka.add_argument("--sasl-username", default=env("RELANCE__KAFKA__SASL_USERNAME", ""),
                       help="password: RELANCE__KAFKA__SASL_PASSWORD")
    kafka.add_argument("--ssl-ca-location", default=env("RELANCE__KAFKA__SSL_CA_LOCATION", ""))
    kafka.add_argument("--ssl-certificate-location", default=env("RELANCE__KAFKA__SSL_CERTIFICATE_LOCATION", ""))
    kafka.add_argument("--ssl-key-location", default=env("RELANCE__KAFKA__SSL_KEY_LOCATION", ""))
    kafka.add_argument("-X", dest="librdkafka", action="append", default=[], metavar="KEY=VALUE",
                       help="any other librdkafka property (repeatable)")
    kafka.add_argument("--invoices-topic", default=env("RELANCE__KAFKA__TOPICS__INVOICES", "billing.invoices"))
    kafka.add_argument("--payments-topic", default=env("RELANCE__KAFKA__TOPICS__PAYMENTS", "billing.payments"))
    kafka.add_argument("--customers-topic", default=env("RELANCE__KAFKA__TOPICS__CUSTOMERS", "billing.customers"))
    kafka.add_argument("--events-topic", default=env("RELANCE__KAFKA__TOPICS__EVENTS", "relance.events"))
    kafka.add_argument("--tasks-topic", default=env("RELANCE__KAFKA__TOPICS__TASKS", "relance.tasks"))
    kafka.add_argument("--group-id", default=None, help="consumer group for relance.events (default: a new one per run)")
    kafka.add_argument("--no-react", action="store_true", help="publish the billing timeline only; read nothing back")

    portfolio = parser.add_argument_group("portfolio")
    portfolio.add_argument("--tenant", default="demo", help="the tenant of every event (default demo)")
    portfolio.add_argument("--seed", type=int, default=42, help="the same seed gives the same portfolio (default 42)")
    portfolio.add_argument("--customers", type=int, default=2000)
    portfolio.add_argument("--invoices", type=int, default=10_000)
    portfolio.add_argument("--days", type=float, default=90.0, help="length of the simulated period")
    portfolio.add_argument("--issue-window", default="-25:65",
                           help="invoices are issued from FROM to TO days after the start (default -25:65)")
    portfolio.add_argument("--zones", default="", help="comma-separated time zones to keep (default: all)")
    portfolio.add_argument("--bounce-share", type=float, default=0.02, help="share of customers whose address hard-bounces")

    clock = parser.add_argument_group("simulated clock (the services' RELANCE__RUNTIME__CLOCK__*)")
    clock.add_argument("--clock-speed", default=env("RELANCE__RUNTIME__CLOCK__SPEED"),
                       help="simulated seconds per real second (default 1)")
    clock.add_argument("--clock-start", default=env("RELANCE__RUNTIME__CLOCK__START"),
                       help="simulated instant at the epoch; also the start of the period")
    clock.add_argument("--clock-epoch", default=env("RELANCE__RUNTIME__CLOCK__EPOCH"),
                       help="the real instant at which the simulated clock shows the start (default: now)")

    relance = parser.add_argument_group("relance's endpoints (each optional)")
    relance.add_argument("--tracker-url", default=None, help="the tracker's public address (pixel, links, pages, webhooks)")
    relance.add_argument("--postmark-webhook-user", default=env("RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME"),
                         help="the tracker's Postmark webhook user (password: RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD)")
    relance.add_argument("--mock-url", default=None, help="the mock Postmark (scripts/mock_postmark.py) to read emails from")
    relance.add_argument("--admin-url", default=None,
                         help="the scheduler's admin API, to approve reminders (token: RELANCE_ADMIN_TOKEN)")
    relance.add_argument("--no-delivery-webhooks", action="store_true", help="send bounce webhooks only")
    relance.add_argument("--payment-domain", default=None, help="payment_url host is pay.<this>.example (default: the tenant)")

    output = parser.add_argument_group("output")
    output.add_argument("--ledger", type=Path, help="write the portfolio, baselines and outcomes here (JSON)")
    output.add_argument("--dry-run", type=Path, metavar="FILE",
                        help="write the billing events to FILE as JSON lines (- for stdout) instead of Kafka, at once")
    output.add_argument("--progress-interval", type=float, default=0.5, help="seconds between progress lines")
    args = parser.parse_args(argv)
    # Secrets come from the environment only, never the command line (it shows in `ps`).
    args.sasl_password = env("RELANCE__KAFKA__SASL_PASSWORD", "")
    args.ssl_key_password = env("RELANCE__KAFKA__SSL_KEY_PASSWORD", "")
    args.postmark_webhook_password = env("RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD", "")
    args.admin_token = env("RELANCE_ADMIN_TOKEN", "")
    return args


def portfolio_settings(args: argparse.Namespace, start: datetime) -> PortfolioSettings:
    try:
        issue_from, issue_to = (float(part) for part in args.issue_window.split(":"))
    except ValueError:
        raise SystemExit(f"--issue-window {args.issue_window!r}: expected FROM:TO in days, like -25:65") from None
    zones = tuple(zone.strip() for zone in args.zones.split(",") if zone.strip())
    unknown = [zone for zone in zones if zone not in {p[1] for p in PLACES}]
    if unknown:
        raise SystemExit(f"--zones: unknown {', '.join(unknown)}; known: {', '.join(sorted({p[1] for p in PLACES}))}")
    return PortfolioSettings(seed=args.seed, tenant=args.tenant, customers=args.customers,
                             invoices=args.invoices, start=start, days=args.days,
                             issue_from_days=issue_from, issue_to_days=issue_to, zones=zones,
                             bounce_share=args.bounce_share)


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    extra = []
    for item in args.librdkafka:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"-X {item!r}: expected KEY=VALUE")
        extra.append((key.strip(), value.strip()))
    return KafkaSettings(args.bootstrap_servers, args.security_protocol, args.sasl_mechanism, args.sasl_username,
                         args.sasl_password, args.ssl_ca_location, args.ssl_certificate_location,
                         args.ssl_key_location, args.ssl_key_password, tuple(extra))


class ProgressPrinter:
    """One live line on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_plain = 0.0

    def __call__(self, line: str, final: bool) -> None:
        if self.tty:
            try:
                width = os.get_terminal_size(self.stream.fileno()).columns
            except OSError:
                width = 200
            self.stream.write("\r\x1b[2K" + line[:max(width - 1, 40)] + ("\n" if final else ""))
        elif final or time.monotonic() - self.last_plain >= 5:
            self.last_plain = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock: Clock
    if args.dry_run:
        start = parse_instant(args.clock_start) if args.clock_start else datetime(2026, 11, 2, tzinfo=UTC)
        clock = VirtualClock(start)
    else:
        clock = SimClock.from_settings(args.clock_speed, args.clock_start, args.clock_epoch)
        start = clock.start
    portfolio = build_portfolio(portfolio_settings(args, start))
    topics = Topics(args.invoices_topic, args.payments_topic, args.customers_topic, args.events_topic, args.tasks_topic)
    react = not (args.dry_run or args.no_react)
    tracker = TrackerClient(args.tracker_url, args.postmark_webhook_user, args.postmark_webhook_password) \
        if args.tracker_url and react else None
    options = RunOptions(
        tenant_domain=ascii_slug(args.payment_domain or args.tenant) or "billing",
        tracker=tracker,
        mailbox=MockMailbox(args.mock_url) if args.mock_url and react else None,
        admin=AdminClient(args.admin_url, args.admin_token) if args.admin_url and args.admin_token and react else None,
        delivery_webhooks=not args.no_delivery_webhooks,
        progress_seconds=args.progress_interval,
    )
    settings = kafka_settings(args)
    publisher: Publisher = FilePublisher(args.dry_run) if args.dry_run else KafkaPublisher(settings)
    reader = None
    if react:
        group = args.group_id or f"relance-simulator-{args.tenant}-{os.getpid()}-{int(time.time())}"
        reader = EventsReader(settings, [topics.events, topics.tasks], group)
    simulation = Simulation(portfolio, clock, publisher, topics, options, reader,
                            ProgressPrinter() if not args.dry_run else None)

    def request_stop(signum: int, _frame: Any) -> None:
        if simulation.stop_requested.is_set():
            os._exit(130)  # a second Ctrl-C: leave at once
        simulation.stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    describe_start(portfolio, clock, args)
    if args.ledger:
        write_ledger(args.ledger, simulation, clock, finished=False)
    simulation.run()
    unflushed = simulation.shutdown()
    if args.ledger:
        write_ledger(args.ledger, simulation, clock, finished=not simulation.stop_requested.is_set())
    return describe_end(simulation, unflushed, args)


def describe_start(portfolio: Portfolio, clock: Clock, args: argparse.Namespace) -> None:
    personas = Counter(c.persona for c in portfolio.customers)
    history = sum(1 for i in portfolio.invoices if i.history)
    print(f"Portfolio (seed {portfolio.seed}, tenant {portfolio.tenant}): {len(portfolio.customers)} customers "
          f"({', '.join(f'{k} {v}' for k, v in personas.most_common())}), "
          f"{len(portfolio.invoices) - history} invoices and {history} paid past invoices; "
          f"{portfolio.start:%Y-%m-%d} to {portfolio.end:%Y-%m-%d}.", file=sys.stderr)
    if isinstance(clock, SimClock):
        real = (portfolio.end - portfolio.start).total_seconds() / clock.speed
        print(f"Clock: x{clock.speed:g}, simulated {rfc3339(clock.start)} at {rfc3339(clock.epoch)}; "
              f"the period takes about {real / 60:.1f} real minutes from the epoch.", file=sys.stderr)


def describe_end(simulation: Simulation, unflushed: int, args: argparse.Namespace) -> int:
    publisher_failed = getattr(simulation.publisher, "failed", 0)
    stopped = "stopped early" if simulation.stop_requested.is_set() else "finished"
    print(f"Simulation {stopped}: {sum(simulation.counters.published.values()):,} events published"
          f"{f', {publisher_failed} failed' if publisher_failed else ''}"
          f"{f', {unflushed} not acknowledged' if unflushed else ''}.", file=sys.stderr)
    errors = {k: v for k, v in simulation.counters.http.items() if not k.endswith((":200", ":303", ":302"))}
    if errors:
        print(f"HTTP answers other than 200/303: {dict(sorted(errors.items()))}", file=sys.stderr)
    if args.ledger:
        print(f"Ledger: {args.ledger}", file=sys.stderr)
    return 1 if publisher_failed or unflushed else 0


if __name__ == "__main__":
    sys.exit(main())
