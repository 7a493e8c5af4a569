#!/usr/bin/env python3
"""`make bench`: how fast relance is, each figure beside the raw limit measured in the same run
(issue 15).

    scripts/bench.py --build release          # the full run (about 7 minutes on 2 cores)
    scripts/bench.py --quick                  # smaller sizes, a few minutes, to try it
    scripts/bench.py --phases ingest,cancel   # some phases only
    scripts/bench.py --profile                # and where the time goes (perf, pg_stat_statements)

Like `make chaos` (scripts/chaos.py, whose classes it uses), it brings up on ports of its own and
in a temporary folder its own tansu broker (memory storage; a fresh one for each phase) and its
own PostgreSQL cluster (never the shared ones of `make up`), the mock Postmark without faults,
and relance's release binaries (copied first), with RELANCE_ENV=test as in the chaos run. Every
service runs on one clock that shows Tuesday 2026-12-01 09:30 UTC (10:30 in Paris, inside the
default policy's send window) when the run starts, and runs at real speed.

Phases, each timed:

1. **ingest** — 100,000 billing events (60 % invoices issued, 30 % payments, 10 % customer
   upserts; the contracts of scripts/simulate_billing.py, no bad records) in two shapes: about
   12 invoices a customer, and about 1. All are published first; then the ingestor starts and
   the time runs from its consumer group giving it the partitions until every event is in
   processed_events (the start-up is given beside it). Beside it: a bare confluent-kafka
   consumer reading the same topics (msg/s) and a server-side batched upsert (500 rows a
   statement, the ingestor's own statement) of as many rows into a copy of the invoices table
   (rows/s). The tracker then reads the 30,000 payments (its memory).
2. **schedule** — one scheduler plans 100,000 due invoices (10 a customer), then 1,000,000
   open invoices of which 100,000 due (one a customer); the database is seeded by ingesting a
   small portfolio and cloning it in SQL. Reminders decided per second until no invoice is due,
   beside a plain batched INSERT of as many reminder rows.
3. **send** — reminder commands made by a scheduler from seeded due invoices, sent by one sender
   to the mock, once through a single-message endpoint (SendGrid's /v3/mail/send, the provider's
   default concurrency of calls at once) and once through Postmark's batch endpoint; beside the
   mock's own capacity, measured by firing the same messages at it from Python, one request at a
   time.
4. **cancel** — reminders queued in the outbox (their scheduler cannot reach a broker, so they
   stay unpublished), a background ingest load, and payments for their invoices: the time from
   publishing a payment until the reminder's status is 'cancelled' (polled every 5 ms).
5. **memory** — resident memory (VmRSS) of each service after its load, and its peak (VmHWM).

With --profile (`make bench` passes it), perf samples each measured ingestor, scheduler and sender
run; its report, and the database's top statements (pg_stat_statements, on in every bench run), are
under "Profiles" in the results.

Results: bench/results.md and bench/results.json (--quick: results-quick.*). Exit status 0 when
the run was carried out (targets missed are reported, not failed), 2 when it could not be.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import chaos  # noqa: E402
import simulate_billing as sim  # noqa: E402
from chaos import (  # noqa: E402
    BILLING_TOPICS, CLIENT_LOG, PARTITIONS, POSTMARK_TOKEN, TOPICS, WEBHOOK_PASSWORD, WEBHOOK_USER, Broker, Instance,
    Mock, Postgres, Processes, SimulatedClock, cloud_headers, committed_offsets, encode, free_port, group_lag,
    http_json, log_clients_to, pick_binaries, rss_bytes, tansu_binary, wait_until,
)

UTC = timezone.utc
TENANT = "bench"
# A Tuesday; 10:30 in Paris, inside the default policy's send window (09:00-17:30 on working days).
CLOCK_START = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TODAY = CLOCK_START.date()
ZONE = "Europe/Paris"
# Due four days ago: the step due now is an email for every segment of the default policy
# (courtesy for VIPs, first reminder otherwise), with no approval.
DUE_ON = TODAY - timedelta(days=4)
MIB = 1048576


# ==============================================================================================
# Sizes and targets


@dataclass(frozen=True)
class Sizes:
    name: str
    ingest_events: int
    # Scheduler: invoices of the seed portfolio (cloned) and its invoices per customer.
    seed_invoices: int
    invoices_per_customer: int
    schedule_small: int
    schedule_large: int
    send_messages: int
    cancel_payments: int
    cancel_background_rate: float  # billing events a second published meanwhile (at most)

    def but(self, **changes: Any) -> "Sizes":
        return Sizes(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})


FULL = Sizes("full", ingest_events=100_000, seed_invoices=10_000, invoices_per_customer=10,
             schedule_small=100_000, schedule_large=1_000_000, send_messages=2_000, cancel_payments=300,
             cancel_background_rate=1000.0)
QUICK = Sizes("quick", ingest_events=10_000, seed_invoices=1_000, invoices_per_customer=10,
              schedule_small=10_000, schedule_large=100_000, send_messages=500, cancel_payments=60,
              cancel_background_rate=500.0)

INGEST_SHARE_TARGET = 0.50          # events/s at least this share of the database's upsert rows/s
SCHEDULER_TARGET = 20_000.0         # reminders decided a second, 1M open / 100k due
CANCEL_P99_TARGET_MS = 250.0
RSS_TARGET = 64 * MIB
PHASES = ("ingest", "schedule", "send", "cancel")
# Warnings every run logs by design: the simulated clock, and the default policy's stop_on_reply.
EXPECTED_LOG_LINES = ("The clock is simulated", "The policy is valid but will not do all it says")


# ==============================================================================================
# Pure parts: statistics, verdicts, the event mix, the report (scripts/tests/test_bench.py)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def metric_series(port: int, name: str) -> list[float]:
    """The values of every series of metric `name` a service exports; none when unreadable."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode("utf-8", "replace")
        connection.close()
    except (OSError, http.client.HTTPException):
        return []
    return series_values(text, name)


def series_values(exposition: str, name: str) -> list[float]:
    """The values of every series of metric `name` in a Prometheus text exposition."""
    return [float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")]


def ingested_events(port: int) -> int:
    """The ingestor's relance_ingest_events_total, every type and outcome; 0 when unreadable."""
    return int(sum(metric_series(port, "relance_ingest_events_total")))


def bare_address(text: str) -> str:
    """The email address of `Name <address>` or of a bare address."""
    match = re.search(r"<([^<>]+)>\s*$", text)
    return (match.group(1) if match else text).strip()


def per_second(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def mix_counts(total: int) -> tuple[int, int, int]:
    """(customer upserts, invoices issued, payments) of `total` events: 10 %, 60 %, 30 %."""
    upserts = round(total * 0.10)
    invoices = round(total * 0.60)
    return upserts, invoices, total - upserts - invoices


@dataclass(frozen=True)
class Target:
    """`value op threshold`, op one of >=, <=, <, >."""

    op: str
    threshold: float
    text: str

    def met(self, value: float | None) -> bool | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return {">=": value >= self.threshold, ">": value > self.threshold,
                "<=": value <= self.threshold, "<": value < self.threshold}[self.op]


@dataclass
class Figure:
    """One measured figure, the raw limit measured beside it in the same run, and its verdict."""

    phase: str
    name: str
    value: float | None
    unit: str
    limit: float | None = None
    limit_name: str = ""
    target: Target | None = None
    # What the target is judged on: "value" (default) or "share" (value / limit).
    judged_on: str = "value"
    note: str = ""

    @property
    def share(self) -> float | None:
        if self.value is None or not self.limit:
            return None
        return self.value / self.limit

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.met(self.share if self.judged_on == "share" else self.value)

    def verdict(self) -> str:
        passed = self.passed
        if passed is None:
            return "no target"
        return "meets target" if passed else "**misses target**"

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "name": self.name, "value": self.value, "unit": self.unit,
                "limit": self.limit, "limit_name": self.limit_name, "share_of_limit": self.share,
                "target": self.target.text if self.target else None, "passed": self.passed, "note": self.note}


def number(value: float | None, unit: str = "") -> str:
    """A figure for people: thousands separated, few decimals."""
    if value is None:
        return "—"
    if unit == "MiB":
        text = f"{value:,.1f}"
    elif abs(value) >= 100 or float(value).is_integer():
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}".rstrip()


def figure_row(figure: Figure) -> str:
    limit = "—" if figure.limit is None else f"{number(figure.limit, figure.unit)} ({figure.limit_name})"
    share = "—" if figure.share is None else f"{figure.share:.0%}"
    value = number(figure.value, figure.unit) + (f" — {figure.note}" if figure.note else "")
    return (f"| {figure.phase} | {figure.name} | {value} | {limit} | {share} | "
            f"{figure.target.text if figure.target else '—'} | {figure.verdict()} |")


def render_markdown(title: str, summary: list[str], figures: list[Figure], phases: list[tuple[str, float]],
                    sections: list[tuple[str, list[str]]]) -> str:
    lines = [f"# {title}", ""] + summary
    lines += ["", "| Phase | Figure | Measured | Raw limit (same run) | Share of limit | Target | Verdict |",
              "|---|---|---|---|---|---|---|"]
    lines += [figure_row(figure) for figure in figures]
    missed = [figure for figure in figures if figure.passed is False]
    lines += [""]
    if missed:
        lines += ["Targets missed: " + "; ".join(f"{f.phase} — {f.name} ({number(f.value, f.unit)}"
                                                 + (f", {f.share:.0%} of the limit" if f.judged_on == 'share' and f.share is not None else "")
                                                 + f"; target {f.target.text if f.target else ''})" for f in missed) + "."]
    else:
        lines += ["Every target with a figure was met."]
    lines += ["", "Time of each phase:", "", "| Phase | Seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:,.0f} |" for name, seconds in phases]
    for heading, body in sections:
        if body:
            lines += ["", f"## {heading}", ""] + body
    return "\n".join(lines) + "\n"


def billing_events(total: int, invoices_per_customer: float, seed: int,
                   start: datetime = CLOCK_START) -> list[tuple[str, str, dict[str, Any]]]:
    """`total` billing events of the mix of mix_counts, as (topic, key, event), in the order a
    billing system would publish them (by event time): customer upserts first (each customer
    once, then again with a new revision when there are more upserts than customers), invoices
    issued over the last 60 days, and full payments of some of them a few days after issue."""
    upserts, invoice_count, payments = mix_counts(total)
    customers = max(1, round(invoice_count / invoices_per_customer))
    settings = sim.PortfolioSettings(seed=seed, tenant=TENANT, customers=customers, invoices=invoice_count,
                                     start=start, days=1.0, issue_from_days=-60.0, issue_to_days=-1.0)
    portfolio = sim.build_portfolio(settings)
    invoices = [invoice for invoice in portfolio.invoices if not invoice.history]
    factory = sim.EventFactory(seed, TENANT)
    timed: list[tuple[datetime, int, str, str, dict[str, Any]]] = []
    sequence = 0

    def add(at: datetime, topic: str, key: str, event: dict[str, Any]) -> None:
        nonlocal sequence
        timed.append((at, sequence, topic, key, event))
        sequence += 1

    for index in range(upserts):
        customer = portfolio.customers[index % len(portfolio.customers)]
        revision = 1 + index // len(portfolio.customers)
        at = start - timedelta(days=400) + timedelta(days=revision, seconds=index)
        event = factory.customer_upserted(customer, at)
        if revision > 1:
            event["data"]["revision"] = revision
            event["id"] = sim.stable_id("evt_", seed, TENANT, "billing.customer.upserted", customer.customer_id,
                                        revision, length=24)
        add(at, TOPICS["customers"], customer.customer_id, event)
    for invoice in invoices:
        add(invoice.issued_at, TOPICS["invoices"], invoice.customer_id,
            factory.invoice_issued(invoice, invoice.issued_at, TENANT))
    paid = random.Random(f"bench-paid|{seed}").sample(range(len(invoices)), min(payments, len(invoices)))
    for number_, index in enumerate(paid):
        invoice = invoices[index]
        at = invoice.issued_at + timedelta(days=1 + number_ % 20, hours=1)
        event = factory.payment_succeeded(invoice, at, at - timedelta(minutes=1), f"pay_{invoice.invoice_id}",
                                          invoice.total_minor, invoice.method)
        add(at, TOPICS["payments"], invoice.customer_id, event)
    timed.sort(key=lambda item: (item[0], item[1]))
    return [(topic, key, event) for _, _, topic, key, event in timed]


def due_portfolio(customers: int, invoices: int, seed: int, tenant: str = TENANT,
                  due_on: date = DUE_ON) -> tuple[sim.Portfolio, list[tuple[str, str, dict[str, Any]]]]:
    """A portfolio of customers in Paris whose invoices are all due on `due_on`, and its events
    (an upsert per customer, an issue per invoice)."""
    settings = sim.PortfolioSettings(seed=seed, tenant=tenant, customers=customers, invoices=invoices,
                                     start=CLOCK_START, days=1.0, issue_from_days=-40.0, issue_to_days=-30.0,
                                     zones=(ZONE,), bounce_share=0.0)
    portfolio = sim.build_portfolio(settings)
    portfolio.invoices = [invoice for invoice in portfolio.invoices if not invoice.history]
    factory = sim.EventFactory(seed, tenant)
    events: list[tuple[str, str, dict[str, Any]]] = []
    for customer in portfolio.customers:
        events.append((TOPICS["customers"], customer.customer_id,
                       factory.customer_upserted(customer, CLOCK_START - timedelta(days=60))))
    for invoice in portfolio.invoices:
        invoice.due_on = due_on
        invoice.issued_at = datetime.combine(due_on - timedelta(days=30), datetime.min.time(), UTC) + timedelta(hours=10)
        events.append((TOPICS["invoices"], invoice.customer_id, factory.invoice_issued(invoice, invoice.issued_at, tenant)))
    portfolio.__post_init__()
    return portfolio, events


# ==============================================================================================
# Profiles, pure parts: perf's report and pg_stat_statements read and shown (scripts/tests/test_bench.py)

PERF_FREQUENCY = 499          # samples a second: a prime, so not in step with the services' 100 ms ticks
# Call chains unwound from 4 KB of stack copied with each sample: the release build has no frame
# pointers, so `-g` (frame pointers) loses every caller; 4 KB reaches the relance functions above
# malloc, serde and sqlx. About 4.6 KB a sample: 185 MB for the scheduler's 80 CPU seconds.
PERF_CALL_GRAPH = ("--call-graph", "dwarf,4096")
PERF_MAX_SIZE = "512M"        # a recording stops growing there (the disk is shared)
PERF_REPORT_TIMEOUT = 120.0   # perf report on a long run's samples can take minutes on 2 cores
PERF_PERCENT_LIMIT = 1.5      # entries below this share of the samples are left out
SELF_ROWS = 15
CALLER_ROWS = 12
STATEMENT_ROWS = 8
SYMBOL_WIDTH = 110
STATEMENT_WIDTH = 160
# The frames of the "by caller" view: relance's crates and services, and the libraries it spends in.
OWN_FRAMES = ("relance", "ingestor::", "scheduler::", "sender::", "tracker::", "sqlx", "serde", "tokio")
# tokio's runtime frames under every task (worker loop, task harness, blocking pool): they say
# nothing about where the time goes, and would fill the view.
RUNTIME_FRAMES = ("tokio::runtime::context", "tokio::runtime::scheduler", "tokio::runtime::task",
                  "tokio::runtime::blocking", "tokio::runtime::runtime", "tokio::runtime::park")
# Put before the harness's own polling statements, so pg_stat_statements shows them as the harness's
# (the comment is kept in the statement's text; the query id ignores it).
HARNESS_SQL = "/* bench harness */ "
RUST_HASH_SUFFIX = re.compile(r"::h[0-9a-f]{16}$")


def perf_count(text: str) -> int | None:
    """perf's abbreviated counts ("168", "12K", "1M") as numbers."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)\s*", text)
    if not match:
        return None
    return round(float(match.group(1)) * {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}[match.group(2)])


def recorded_samples(text: str) -> int | None:
    """The samples `perf record` says it wrote (exact; perf report's header rounds: "7K")."""
    match = re.search(r"\((\d+) samples\)", text)
    return int(match.group(1)) if match else None


def clean_symbol(symbol: str, width: int = SYMBOL_WIDTH) -> str:
    """A symbol for people: without a Rust legacy hash, and shortened in the middle (the crate at
    the start and the function at the end say the most)."""
    symbol = RUST_HASH_SUFFIX.sub("", symbol.strip())
    if len(symbol) <= width:
        return symbol
    head = (width - 1) // 2
    return symbol[:head] + "…" + symbol[len(symbol) - (width - 1 - head):]


def parse_perf_report(text: str) -> dict[str, Any]:
    """`perf report --stdio -g none -t '\\t'` output: the samples and, per entry, its share(s) in
    percent, its object (with --sort dso,sym) and its symbol. With --children an entry has two
    shares, the first with its callees ("children"), the second its own ("self")."""
    samples = None
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("#"):
            match = re.match(r"#\s*Samples:\s*([\d.]+[KMG]?)", line)
            if match and samples is None:
                samples = perf_count(match.group(1))
            continue
        fields = [field.strip() for field in line.split("\t")]
        shares = []
        while fields and fields[0].endswith("%"):
            try:
                shares.append(float(fields.pop(0)[:-1]))
            except ValueError:
                break
        if not shares or not fields or not re.match(r"\[[.kgHu]\] ", fields[-1]):
            continue
        kind, symbol = fields[-1][1], fields[-1][4:].strip()
        dso = fields[0] if len(fields) > 1 else ""
        entry = {"percent": shares[0], "symbol": clean_symbol(symbol), "kernel": kind == "k"}
        if len(shares) > 1:
            entry["self_percent"] = shares[1]
        if dso:
            entry["object"] = "[kernel]" if dso.startswith("[kernel") else Path(dso).name
        entries.append(entry)
    return {"samples": samples, "entries": entries}


def own_frame(symbol: str) -> bool:
    """Whether a frame is relance's or one of the libraries it spends its time in (trait
    implementations, `<T as Trait>::f`, start with their type), but not tokio's task machinery."""
    name = symbol.lstrip("<&*( ")
    return name.startswith(OWN_FRAMES) and not name.startswith(RUNTIME_FRAMES)


def collapse_sql(text: str, width: int = STATEMENT_WIDTH) -> str:
    """A statement on one line, its whitespace collapsed, cut at `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def summarise_statements(rows: Iterable[tuple[str, int, float, int, bool]],
                         limit: int = STATEMENT_ROWS) -> dict[str, Any]:
    """pg_stat_statements rows of one database (query, calls, total ms, rows, top level) as its
    top statements by total execution time, each with its share of the database's total. The
    share counts top-level statements only (a function's statements are in its own time too);
    the harness's polling statements (HARNESS_SQL) and pg_stat_statements' own are left out of
    the total and marked."""
    statements = []
    total = 0.0
    for query, calls, total_ms, row_count, toplevel in rows:
        harness = query.lstrip().startswith(HARNESS_SQL.strip()) or "pg_stat_statements" in query
        if toplevel and not harness:
            total += total_ms
        statements.append({"query": collapse_sql(query.replace(HARNESS_SQL.strip(), "", 1).strip() if harness else query),
                           "calls": int(calls), "total_ms": float(total_ms),
                           "mean_ms": float(total_ms) / calls if calls else 0.0, "rows": int(row_count),
                           "toplevel": bool(toplevel), "harness": harness})
    statements.sort(key=lambda statement: -statement["total_ms"])
    for statement in statements:
        statement["share"] = (statement["total_ms"] / total
                              if total and statement["toplevel"] and not statement["harness"] else None)
    return {"total_ms": total, "statements": len(statements), "top": statements[:limit]}


def cell(text: str) -> str:
    """Text for a markdown table cell, in a code span: a `|` would end the cell."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def cpu_table(profile: dict[str, Any], rows: int = SELF_ROWS) -> list[str]:
    lines = ["| Self | Object | Function |", "|---:|---|---|"]
    lines += [f"| {entry['percent']:.1f}% | {entry.get('object', '')} | {cell(entry['symbol'])} |"
              for entry in profile.get("self", [])[:rows]]
    return lines


def caller_table(profile: dict[str, Any], rows: int = CALLER_ROWS) -> list[str]:
    lines = ["| With callees | Self | Function |", "|---:|---:|---|"]
    lines += [f"| {entry['percent']:.1f}% | {entry.get('self_percent', 0.0):.1f}% | {cell(entry['symbol'])} |"
              for entry in profile.get("callers", [])[:rows]]
    return lines


def statements_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| Calls | Total ms | Mean ms | Rows | Share | Statement |", "|---:|---:|---:|---:|---:|---|"]
    for statement in summary.get("top", []):
        share = "harness" if statement["harness"] else (
            "nested" if statement["share"] is None else f"{statement['share']:.0%}")
        lines.append(f"| {statement['calls']:,} | {statement['total_ms']:,.0f} | {statement['mean_ms']:,.2f} | "
                     f"{statement['rows']:,} | {share} | {cell(statement['query'])} |")
    return lines


def profile_lines(profile: dict[str, Any]) -> list[str]:
    """One profiled run: its heading, the service's CPU (self time, then by caller) and the
    database's statements."""
    service = profile["service"]
    heading = f"### {profile['phase']} — {profile['label']} ({service})"
    if profile.get("missed"):
        heading += " — misses its target"
    lines = [heading, ""]
    cpu = profile.get("cpu")
    if cpu and cpu.get("self"):
        samples = f"{cpu['samples']:,} samples" if cpu.get("samples") else "samples"
        limit = f"; {cpu['limit']}" if cpu.get("limit") else ""
        lines += [f"CPU of the {service} over its measured run ({samples} at {PERF_FREQUENCY} Hz{limit}), self time "
                  f"by function (at least {PERF_PERCENT_LIMIT:g} %):", ""] + cpu_table(cpu) + [""]
        if cpu.get("callers"):
            lines += ["By caller: time in these functions and what they call (relance, sqlx, serde, tokio frames):",
                      ""] + caller_table(cpu) + [""]
    elif cpu and cpu.get("error"):
        lines += [f"No CPU profile: {cpu['error']}", ""]
    statements = profile.get("statements")
    if statements and statements.get("top"):
        lines += [f"Database: the top statements of the run by total execution time "
                  f"({statements['total_ms']:,.0f} ms in all over {statements['statements']:,} statements; "
                  f"share of the top-level total):", ""] + statements_table(statements) + [""]
    elif statements and statements.get("error"):
        lines += [f"No statement statistics: {statements['error']}", ""]
    return lines[:-1] if lines[-1] == "" else lines


def profiles_section(profiles: list[dict[str, Any]]) -> list[str]:
    """The "Profiles" section: a pointer to the runs that miss their target, then every run."""
    if not profiles:
        return []
    missed = [f"{p['phase']} — {p['label']}" for p in profiles if p.get("missed")]
    cpu = ("the service's CPU, sampled by `perf record --call-graph dwarf,4096` (self time: the function "
           "itself; with callees: it and what it called, as far as 4 KB of stack shows callers), and "
           if any((p.get("cpu") or {}).get("self") for p in profiles) else "")
    lines = [f"Where the time of each measured run went: {cpu}the statements of its database "
             "(`pg_stat_statements`, reset as the service started; the harness's own polling statements "
             "are marked and left out of the shares)."]
    if missed:
        lines += ["", "Targets missed — these profiles are where to look: " + "; ".join(missed) + "."]
    for profile in profiles:
        lines += [""] + profile_lines(profile)
    return lines


# ==============================================================================================
# Processes and measurements


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (/proc/<pid>/stat, fields 14 and 15)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def children_cpu_seconds(parent: int) -> float:
    """CPU time of the running children of `parent` (PostgreSQL's server processes)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            with open(entry / "stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 12 and int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def hwm_bytes(pid: int) -> int | None:
    """Peak resident memory (VmHWM) of a process."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "memory_bytes": memory, "cpu_model": model, "kernel": platform.release(),
            "commit": commit + (" (with uncommitted changes)" if dirty else "")}


@dataclass
class MemoryRecord:
    service: str
    phase: str
    peak: int | None
    steady: int | None


@dataclass
class Run:
    """One measured service process."""

    instance: Instance
    started: float
    ended: float | None = None
    cpu: float | None = None
    peak: int | None = None
    database: str = ""
    # A profiled run (--profile; the statements always): its entry in Bench.profiles, and perf.
    profile: dict[str, Any] | None = None
    recording: Recording | None = None


OTHER_WORK = ("rustc", "cargo", "cargo-nextest", "cc1", "cc1plus", "ld", "lld")


def other_work() -> set[str]:
    """Compilers and builds running on the machine now (they would take CPU from the run)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in OTHER_WORK:
                found.add(name)
    return found


class Sampler(threading.Thread):
    """Samples the resident memory of every running service twice a second (Instance.rss), and
    notes the phases during which a build or compiler ran on the machine too."""

    def __init__(self) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.instances: list[Instance] = []
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.phase = ""
        self.contended: dict[str, set[str]] = {}

    def watch(self, instance: Instance) -> None:
        with self.lock:
            self.instances.append(instance)

    def run(self) -> None:
        tick = 0
        while not self.stop_requested.wait(0.5):
            with self.lock:
                instances = [i for i in self.instances if i.alive()]
            for instance in instances:
                instance.rss()
            tick += 1
            if tick % 4 == 0 and self.phase:
                found = other_work()
                if found:
                    self.contended.setdefault(self.phase, set()).update(found)


@dataclass
class Recording:
    """`perf record` attached to one service process."""

    name: str
    path: Path
    log: Path
    child: subprocess.Popen[bytes]
    error: str = ""


class Profiler:
    """The services' CPU profiles (--profile): `perf record` attached to a measured service
    from its start to the end of its load, read with `perf report` once every phase is done
    (so perf's own work takes nothing from a measurement). Without perf, or where it may not
    record (kernel.perf_event_paranoid), the run goes on without CPU profiles and says why."""

    def __init__(self, root: Path, processes: Processes, enabled: bool) -> None:
        self.folder = root / "profiles"
        self.processes = processes
        self.enabled = enabled
        self.perf = shutil.which("perf") or ""
        self.problem = ""

    def probe(self) -> None:
        """Records a trivial command once: whether perf is there and may record here."""
        if not self.enabled:
            return
        if not self.perf:
            self.disable("perf is not installed (linux-perf)")
            return
        self.folder.mkdir(exist_ok=True)
        try:
            result = subprocess.run([self.perf, "record", "-F", str(PERF_FREQUENCY), *PERF_CALL_GRAPH,
                                     "--no-buildid-cache", "-o", str(self.folder / "probe.perf.data"), "--", "true"],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            self.disable(f"`perf record` could not run ({error})")
            return
        if result.returncode != 0:
            self.disable(f"`perf record` failed ({last_line(result.stderr)}; kernel.perf_event_paranoid is "
                         f"{paranoid()})")

    def disable(self, why: str) -> None:
        self.enabled = False
        self.problem = why
        log(f"No CPU profiles: {why}")

    def attach(self, name: str, pid: int) -> Recording | None:
        if not self.enabled:
            return None
        path = self.folder / f"{name}.perf.data"
        log_path = self.folder / f"{name}.perf.log"
        child = self.processes.spawn([self.perf, "record", "-F", str(PERF_FREQUENCY), *PERF_CALL_GRAPH,
                                      "--no-buildid-cache", "--max-size", PERF_MAX_SIZE, "-p", str(pid),
                                      "-o", str(path)], log_path)
        return Recording(name, path, log_path, child)

    def stop(self, recording: Recording, timeout: float = 60.0) -> None:
        """SIGINT (perf's own end: it writes its file), and wait until it is written."""
        child = recording.child
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
                recording.error = f"perf record did not end within {timeout:g} s of SIGINT"
                return
        # perf record ends with the process it follows too; SIGINT's own status is 0 or -2.
        if child.returncode not in (0, -signal.SIGINT, 128 + signal.SIGINT) or not recording.path.is_file():
            recording.error = (f"perf record ended with status {child.returncode} "
                               f"({last_line(read_text(recording.log))})")

    def report(self, recording: Recording) -> dict[str, Any]:
        """The top functions by self time, and relance's (and its libraries') by time with callees."""
        if recording.error:
            return {"error": recording.error, "file": str(recording.path)}
        # --no-inline: resolving inlined frames with addr2line takes 50 ms a sample; 1 s in all without.
        common = [self.perf, "report", "-i", str(recording.path), "--stdio", "-g", "none", "-t", "\t",
                  "--percent-limit", str(PERF_PERCENT_LIMIT), "--demangle", "--no-inline"]
        try:
            own = subprocess.run(common + ["--no-children", "--sort", "dso,sym"], capture_output=True, text=True,
                                 timeout=PERF_REPORT_TIMEOUT)
            if own.returncode != 0:
                return {"error": f"perf report failed ({last_line(own.stderr)})", "file": str(recording.path)}
            parsed = parse_perf_report(own.stdout)
            callers = subprocess.run(common + ["--children", "--sort", "sym"], capture_output=True, text=True,
                                     timeout=PERF_REPORT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return {"error": f"perf report took more than {PERF_REPORT_TIMEOUT:g} s", "file": str(recording.path)}
        by_caller = parse_perf_report(callers.stdout)["entries"] if callers.returncode == 0 else []
        record_log = read_text(recording.log)
        samples = recorded_samples(record_log) or parsed["samples"]
        limit = (f"perf stopped recording at {PERF_MAX_SIZE}B (--max-size): the start of the run only"
                 if "size limit reached" in record_log else "")
        return {"samples": samples, "file": str(recording.path), "limit": limit,
                "self": parsed["entries"][:SELF_ROWS],
                "callers": [entry for entry in by_caller if own_frame(entry["symbol"])][:CALLER_ROWS]}


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def paranoid() -> str:
    return read_text(Path("/proc/sys/kernel/perf_event_paranoid")).strip() or "unknown"


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, build: str, source: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.seed = args.seed
        self.build = build
        self.processes = Processes()
        self.root = Path(tempfile.mkdtemp(prefix="relance-bench-", dir=args.work_dir))
        self.root.chmod(0o755)
        self.bin = self.root / "bin"
        self.bin.mkdir()
        for name in chaos.BINARIES:
            shutil.copy2(source / name, self.bin / name)
        self.binaries_from = source
        log_clients_to(self.root / "harness-librdkafka.log")
        self.clock = SimulatedClock(CLOCK_START, datetime.fromtimestamp(math.floor(time.time()), UTC), 1.0)
        self.figures: list[Figure] = []
        self.phases: list[tuple[str, float]] = []
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        self.memory: list[MemoryRecord] = []
        self.sampler = Sampler()
        self.brokers: list[Broker] = []
        self.failed_phases: list[str] = []
        self.ingest_rate: float | None = None
        self.profiler = Profiler(self.root, self.processes, args.profile)
        self.profiles: list[dict[str, Any]] = []
        self.recordings: list[tuple[dict[str, Any], Recording]] = []
        self.statements_ok = False

    # -- infrastructure ----------------------------------------------------------------------------

    def setup(self) -> None:
        log(f"Run folder {self.root}; {self.build} build from {self.binaries_from}")
        self.pg = Postgres(self.root, Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin")), self.processes,
                           settings={"shared_preload_libraries": "pg_stat_statements",
                                     "pg_stat_statements.track": "all"})
        self.pg.init()
        self.pg.start()
        self.profiler.probe()
        if not tansu_binary().is_file():
            raise SystemExit(f"bench: the tansu broker is not installed ({tansu_binary()}): run scripts/install-tansu.sh")
        self.sampler.start()
        with self.db("postgres") as connection:
            self.details["postgres"] = connection.execute("SHOW server_version").fetchone()[0]
            # In the postgres database only: its view shows every database's statements (by dbid),
            # and the measured databases stay as the migrations made them.
            try:
                connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                self.statements_ok = True
            except Exception as error:  # noqa: BLE001 (the bench goes on without statement statistics)
                self.statements_ok = False
                self.notes.append(f"No statement statistics: pg_stat_statements could not be created ({error}).")
        log(f"PostgreSQL {self.details['postgres']} on 127.0.0.1:{self.pg.port}")

    def db(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(self.pg.dsn(name), autocommit=True, connect_timeout=10)

    def database(self, name: str) -> None:
        """A new database, migrated by the ingestor binary."""
        self.pg.create_database(name)
        env = self.env("ingestor", name, "127.0.0.1:9", free_port())
        migrate = subprocess.run([str(self.bin / "ingestor"), "migrate"], env=env, cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
        if migrate.returncode != 0:
            raise RuntimeError(f"migrations failed: {migrate.stdout}{migrate.stderr}")

    def broker(self) -> Broker:
        """A fresh broker (memory storage: empty) with relance's topics."""
        broker = Broker(self.root, tansu_binary(), self.processes)
        broker.start()
        self.brokers.append(broker)
        return broker

    def drop_broker(self, broker: Broker) -> None:
        chaos._ADMINS.pop(broker.bootstrap, None)
        broker.kill()

    def env(self, service: str, database: str, bootstrap: str, ops_port: int,
            extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RELANCE_")}
        env.update({
            # As the image runs them (deploy/Dockerfile), so that memory is measured as deployed.
            "MALLOC_ARENA_MAX": "1",
            "MALLOC_MMAP_THRESHOLD_": "131072",
            "MALLOC_TRIM_THRESHOLD_": "131072",
            "RELANCE_ENV": "test",
            "RELANCE_CONFIG_DIR": str(ROOT / "config"),
            "RELANCE__TELEMETRY__LOG_LEVEL": "info,sqlx=warn,librdkafka=warn",
            "RELANCE__TELEMETRY__LOG_FORMAT": "json",
            "RELANCE__DATABASE__HOST": "127.0.0.1",
            "RELANCE__DATABASE__PORT": str(self.pg.port),
            "RELANCE__DATABASE__DATABASE_NAME": database,
            "RELANCE__DATABASE__USERNAME": "postgres",
            "RELANCE__DATABASE__MIGRATE_ON_START": "false",
            "RELANCE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "RELANCE__RUNTIME__CLOCK__SPEED": "1.0",
            "RELANCE__RUNTIME__CLOCK__START": sim.rfc3339(self.clock.start),
            "RELANCE__RUNTIME__CLOCK__EPOCH": sim.rfc3339(self.clock.epoch),
            "RELANCE__LINKS__PUBLIC_BASE_URL": "http://127.0.0.1:9",
            f"RELANCE__{service.upper()}__OPS_LISTEN_ADDRESS": f"127.0.0.1:{ops_port}",
        })
        if service == "scheduler":
            env["RELANCE__SCHEDULER__ADMIN_LISTEN_ADDRESS"] = f"127.0.0.1:{free_port()}"
        elif service == "sender":
            env.update({
                "RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER": "postmark",
                "RELANCE__SENDER__PROVIDERS__POSTMARK__KIND": "postmark",
                "RELANCE__SENDER__PROVIDERS__POSTMARK__SERVER_TOKEN": POSTMARK_TOKEN,
                "RELANCE__SENDER__PROVIDERS__POSTMARK__TIMEOUT_MS": "2000",
                "RELANCE__SENDER__LEASE_MS": "8000",
                "RELANCE__SENDER__PROVIDERS__FILE__FOLDER": str(self.root / "sms"),
            })
        elif service == "tracker":
            env.update({
                "RELANCE__TRACKER__PUBLIC_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
                "RELANCE__TRACKER__POSTMARK_WEBHOOK_USERNAME": WEBHOOK_USER,
                "RELANCE__TRACKER__POSTMARK_WEBHOOK_PASSWORD": WEBHOOK_PASSWORD,
            })
        env.update(extra or {})
        # --set: the operator's overrides, last (to measure a setting: planning workers, batch sizes).
        env.update(dict(item.split("=", 1) for item in self.args.set or []))
        return env

    def start(self, service: str, name: str, database: str, bootstrap: str,
              extra: dict[str, str] | None = None, profile: tuple[str, str] | None = None) -> Run:
        """A service process; with `profile` (phase, label) a measured run: its database's
        statement statistics start from nothing, and perf follows it (--profile)."""
        port = free_port()
        instance = Instance(name, self.bin / service, self.env(service, database, bootstrap, port, extra), port,
                            self.root, self.processes)
        entry = None
        if profile is not None:
            entry = {"phase": profile[0], "label": profile[1], "service": service, "run": name, "database": database}
            self.profiles.append(entry)
            self.reset_statements(database)
        started = time.time()
        instance.start()
        run = Run(instance, started, database=database, profile=entry)
        if entry is not None and instance.child is not None:
            run.recording = self.profiler.attach(name, instance.child.pid)
            if run.recording is not None:
                self.recordings.append((entry, run.recording))
        self.sampler.watch(instance)
        return run

    def end(self, run: Run) -> None:
        """The end of a run's measured part: its time, then perf stopped and the statements read
        (before the harness's own queries after the load)."""
        run.ended = time.time()
        if run.recording is not None:
            self.profiler.stop(run.recording)
        if run.profile is not None:
            run.profile["statements"] = self.statements(run.database)

    def reset_statements(self, database: str) -> None:
        if not self.statements_ok:
            return
        try:
            with self.db("postgres") as connection:
                connection.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                                   "WHERE datname = %s), 0)", (database,))
        except Exception as error:  # noqa: BLE001 (a profile is a help, not a figure)
            self.notes.append(f"pg_stat_statements could not be reset for {database} ({error}): its statements "
                              f"include what ran before the measured service.")

    def statements(self, database: str) -> dict[str, Any] | None:
        """The database's statements since the reset, from pg_stat_statements (per cluster: by dbid)."""
        if not self.statements_ok:
            return None
        try:
            with self.db("postgres") as connection:
                rows = connection.execute(
                    "SELECT query, calls, total_exec_time, rows, toplevel FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)", (database,)).fetchall()
        except Exception as error:  # noqa: BLE001 (a profile is a help, not a figure)
            return {"error": f"pg_stat_statements could not be read ({error})"}
        return summarise_statements(rows)

    def analyse_profiles(self) -> None:
        """perf report of every recording, once the phases are done."""
        for entry in self.profiles:
            recording = next((recording for owner, recording in self.recordings if owner is entry), None)
            if recording is not None:
                log(f"perf report of {recording.name}")
                try:
                    entry["cpu"] = self.profiler.report(recording)
                except OSError as error:
                    entry["cpu"] = {"error": f"perf report could not run ({error})", "file": str(recording.path)}
            missed = [figure for figure in self.figures if figure.name == entry.get("figure")]
            entry["missed"] = bool(missed) and missed[0].passed is False

    def finish(self, run: Run, phase: str, settle: float = 3.0) -> None:
        """After the load: CPU time and peak memory now, resident memory once idle for `settle`
        seconds (steady state), then SIGTERM (the clean stop: exit 0 expected)."""
        if run.recording is not None and run.recording.child.poll() is None:
            self.profiler.stop(run.recording)
        instance = run.instance
        pid = instance.child.pid if instance.child else None
        if pid and instance.alive():
            run.cpu = cpu_seconds(pid)
            time.sleep(settle)
            run.peak = hwm_bytes(pid)
            steady = rss_bytes(pid)
        else:
            steady = None
            self.notes.append(f"{instance.name} was not running at the end of its load "
                              f"(exit status {instance.child.returncode if instance.child else None}).")
        code = instance.terminate()
        if code not in (0, None):
            self.notes.append(f"{instance.name} exited with status {code} on SIGTERM (0 expected).")
        self.memory.append(MemoryRecord(instance.binary.name, phase, run.peak, steady))

    def count(self, database: str, sql: str, params: Any = None) -> int:
        with self.db(database) as connection:
            return int(connection.execute(sql, params).fetchone()[0])

    def publish(self, bootstrap: str, records: list[tuple[str, str, dict[str, Any]]]) -> tuple[float, dict[tuple[str, int], int]]:
        """Publishes every record and waits for the acknowledgements; the seconds it took and the
        end offset of each partition."""
        from confluent_kafka import Producer

        end: dict[tuple[str, int], int] = {}
        failed: list[str] = []

        def report(error: Any, message: Any) -> None:
            if error is not None:
                failed.append(str(error))
                return
            key = (message.topic(), message.partition())
            end[key] = max(end.get(key, 0), message.offset() + 1)
        producer = Producer({"bootstrap.servers": bootstrap, "client.id": "relance-bench-billing",
                             "enable.idempotence": True, "acks": "all", "linger.ms": 20,
                             "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 2_000_000,
                             "logger": CLIENT_LOG})
        began = time.time()
        headers = cloud_headers()
        for topic, key, event in records:
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=encode(event), headers=headers, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        left = producer.flush(300)
        seconds = time.time() - began
        if left or failed:
            raise RuntimeError(f"publishing failed: {left} left, {failed[:3]}")
        return seconds, end

    def seed_by_ingesting(self, database: str, bootstrap: str, events: list[tuple[str, str, dict[str, Any]]],
                          name: str, keep: bool = False) -> Run:
        """Publishes `events`, runs an ingestor until every one is applied; stops it unless `keep`."""
        self.publish(bootstrap, events)
        run = self.start("ingestor", name, database, bootstrap)
        done = wait_until(lambda: self.count(database, "SELECT count(*) FROM processed_events WHERE consumer = 'ingestor'")
                          >= len(events) or not run.instance.alive(), 600, 0.3)
        if not done or not run.instance.alive():
            raise RuntimeError(f"seeding {database}: the ingestor did not apply the {len(events):,} events "
                               f"(see {run.instance.log})")
        if not keep:
            run.instance.terminate()
        return run

    # -- phase 1: ingest -----------------------------------------------------------------------------

    def phase_ingest(self) -> None:
        total = self.sizes.ingest_events
        for shape, per_customer in (("12 invoices a customer", 12.0), ("1 invoice a customer", 1.0)):
            tag = "ingest_12" if per_customer > 1 else "ingest_1"
            began = time.time()
            events = billing_events(total, per_customer, self.seed)
            customers = len({key for _, key, _ in events})
            log(f"Ingest, {shape}: {len(events):,} events for {customers:,} customers generated in "
                f"{time.time() - began:.0f} s")
            self.database(tag)
            broker = self.broker()
            try:
                seconds, end = self.publish(broker.bootstrap, events)
                log(f"Published {len(events):,} events in {seconds:.1f} s")
                consumer_rate = self.bare_consumer(broker.bootstrap, len(events))
                log(f"Bare consumer: {consumer_rate:,.0f} msg/s")
                # The time is the events', from the moment the group gives the ingestor its
                # partitions: a backlog drained by a running service, as the database limit is
                # a rate with no start-up. The start-up is given beside it.
                run = self.start("ingestor", f"ingestor-{tag}", tag, broker.bootstrap, profile=("ingest", shape))
                joined = self.wait_assigned(run)
                # CPU, like the time, counted from here: the start-up's is not the events'.
                pg_before = self.pg_cpu()
                cpu_before = cpu_seconds(run.instance.child.pid) if run.instance.child else None
                began = time.time()
                log(f"Ingestor in its group {joined:.1f} s after its start")
                deadline = time.time() + max(600.0, total / 50)
                applied = 0
                while time.time() < deadline and run.instance.alive():
                    # The ingestor's own counter (bumped after each batch's commit) is read over
                    # HTTP: counting processed_events every half second was 9 % of the
                    # database's time in this phase. The count confirms it once at the end.
                    if ingested_events(run.instance.ops_port) >= len(events):
                        applied = self.count(tag, HARNESS_SQL + "SELECT count(*) FROM processed_events "
                                                                "WHERE consumer = 'ingestor'")
                        if applied >= len(events):
                            break
                    time.sleep(0.1)
                if applied < len(events):
                    applied = self.count(tag, HARNESS_SQL + "SELECT count(*) FROM processed_events "
                                                            "WHERE consumer = 'ingestor'")
                self.end(run)
                elapsed = run.ended - began
                pg_cpu = self.pg_cpu() - pg_before
                with self.db(tag) as connection:
                    first, last = connection.execute(
                        "SELECT extract(epoch FROM min(processed_at)), extract(epoch FROM max(processed_at)) "
                        "FROM processed_events WHERE consumer = 'ingestor'").fetchone()
                    dead = connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
                    invoices = connection.execute("SELECT count(*) FROM invoices").fetchone()[0]
                complete = applied >= len(events)
                rate = per_second(applied, elapsed)
                steady = per_second(applied, float(last) - float(first)) if first and last and last > first else None
                pid = run.instance.child.pid if run.instance.child else 0
                cpu_total = cpu_seconds(pid)
                cpu = cpu_total - cpu_before if cpu_total is not None and cpu_before is not None else cpu_total
                self.finish(run, f"ingest ({shape})")
                log(f"Ingestor: {applied:,} events applied in {elapsed:.1f} s ({rate:,.0f}/s; {steady or 0:,.0f}/s from "
                    f"the first batch), {cpu or 0:.1f} CPU s, peak {(run.peak or 0) / MIB:.0f} MiB; {dead} dead letters")
                if not complete:
                    self.notes.append(f"Ingest ({shape}): only {applied:,} of {len(events):,} events were applied "
                                      f"before the limit; the rate is of those.")
                if dead:
                    self.notes.append(f"Ingest ({shape}): {dead} events were dead-lettered (none expected).")
                upsert_rate = self.upsert_limit(tag, len(events))
                log(f"Batched upsert into a copy of invoices: {upsert_rate:,.0f} rows/s")
                tracker_figure = self.tracker_catch_up(tag, broker, end) if per_customer > 1 else None
                if per_customer > 1:
                    self.ingest_rate = rate
            finally:
                self.drop_broker(broker)
            note = (f"{customers:,} customers; {cpu or 0:,.1f} CPU s; from the partitions assigned to the last "
                    f"event applied, {elapsed:,.1f} s; start-up (process start to partitions assigned, the "
                    f"group join) {joined:,.1f} s more; {per_second(applied, elapsed + joined):,.0f}/s with it")
            if steady:
                note += f"; {steady:,.0f}/s from the first batch applied to the last"
            run.profile["figure"] = f"Events applied per second, {shape} ({len(events):,} events)"
            self.figures.append(Figure("ingest", run.profile["figure"], rate,
                                       "events/s", upsert_rate, "batched upsert of as many rows, 500 a statement",
                                       Target(">=", INGEST_SHARE_TARGET, "≥ 50 % of the database limit"), "share",
                                       note=note))
            self.figures.append(Figure("ingest", f"Bare consumer reading the same topics, {shape}", consumer_rate,
                                       "msg/s", None, note=f"ingestor: {rate / consumer_rate:.0%} of it" if consumer_rate else ""))
            self.figures.append(Figure("ingest", f"Ingestor CPU time, {shape}", cpu, "s",
                                       note=f"{per_second(cpu or 0, elapsed):.0%} of one core over {elapsed:,.1f} s; "
                                            f"PostgreSQL's server processes meanwhile {pg_cpu:,.1f} CPU s "
                                            f"({per_second(pg_cpu, elapsed):.0%} of one core)"))
            if tracker_figure is not None:
                self.figures.append(tracker_figure)
            self.details[tag] = {"events": len(events), "customers": customers, "invoices": invoices,
                                 "applied": applied, "seconds": elapsed, "events_per_second": rate,
                                 "events_per_second_from_first_batch": steady, "cpu_seconds": cpu,
                                 "publish_seconds": seconds, "joined_after_start_seconds": joined,
                                 "events_per_second_with_start_up": per_second(applied, elapsed + joined),
                                 "peak_rss": run.peak, "bare_consumer_per_second": consumer_rate,
                                 "postgres_cpu_seconds": pg_cpu,
                                 "upsert_rows_per_second": upsert_rate, "dead_letters": dead}

    def wait_assigned(self, run: Run, limit: float = 60.0) -> float:
        """Waits until a consumer holds a partition of every topic it reads (its group joined);
        the seconds since its start."""
        def assigned() -> bool:
            counts = metric_series(run.instance.ops_port, "relance_kafka_assigned_partitions")
            return bool(counts) and all(count > 0 for count in counts)
        if not wait_until(lambda: assigned() or not run.instance.alive(), limit, 0.02) or not run.instance.alive():
            raise RuntimeError(f"{run.instance.name} did not join its consumer group within {limit:.0f} s "
                               f"(see {run.instance.log})")
        return time.time() - run.started

    def bare_consumer(self, bootstrap: str, total: int) -> float:
        """Messages a second a plain confluent-kafka consumer reads from the billing topics, from
        their beginning (assigned partitions: no group join)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"relance-bench-raw-{uuid.uuid4()}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 20, "logger": CLIENT_LOG})
        began = time.time()
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)
                         for topic in BILLING_TOPICS for partition in range(PARTITIONS)])
        read = 0
        size = 0
        deadline = began + 300
        while read < total and time.time() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error():
                    continue
                read += 1
                size += len(message.value() or b"")
        seconds = time.time() - began
        consumer.close()
        if read < total:
            self.notes.append(f"The bare consumer read only {read:,} of {total:,} records in 300 s.")
        return per_second(read, seconds)

    def upsert_limit(self, database: str, total: int, batch: int = 500) -> float:
        """Rows a second of the ingestor's own upsert statement into a copy of the invoices table,
        `batch` rows a statement, one transaction each: the invoices the ingestor wrote, first
        inserted, then updated in turn until `total` rows were written."""
        columns = ("invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to, closed_reason, "
                   "currency, total_minor, amount_due_minor, overpaid_minor, net_paid_minor, number, issued_on, "
                   "due_on, paid_at, state_as_of, facts, conflicting_amounts")
        sql = (
            "INSERT INTO bench_upsert AS i (" + columns + ") "
            "SELECT invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to, closed_reason, "
            "currency, total_minor, amount_due_minor, overpaid_minor, net_paid_minor, number, issued_on, due_on, "
            "paid_at, as_of, facts, conflicting "
            "FROM UNNEST(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::date[], %b::text[], "
            "%b::text[], %b::text[], %b::int8[], %b::int8[], %b::int8[], %b::int8[], %b::text[], "
            "%b::date[], %b::date[], %b::timestamptz[], %b::date[], %b::text[]::jsonb[], %b::int4[]) "
            "AS t(invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to, closed_reason, "
            "currency, total_minor, amount_due_minor, overpaid_minor, net_paid_minor, number, issued_on, due_on, "
            "paid_at, as_of, facts, conflicting) "
            "ON CONFLICT (tenant, invoice_id) DO UPDATE SET "
            "state = EXCLUDED.state, pause_reason = EXCLUDED.pause_reason, pause_until = EXCLUDED.pause_until, "
            "escalated_to = EXCLUDED.escalated_to, closed_reason = EXCLUDED.closed_reason, "
            "currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor, "
            "amount_due_minor = EXCLUDED.amount_due_minor, overpaid_minor = EXCLUDED.overpaid_minor, "
            "net_paid_minor = EXCLUDED.net_paid_minor, number = EXCLUDED.number, issued_on = EXCLUDED.issued_on, "
            "due_on = EXCLUDED.due_on, paid_at = EXCLUDED.paid_at, state_as_of = EXCLUDED.state_as_of, "
            "facts = EXCLUDED.facts, conflicting_amounts = EXCLUDED.conflicting_amounts, updated_at = now()")
        with self.db(database) as connection:
            connection.execute("DROP TABLE IF EXISTS bench_upsert")
            connection.execute("CREATE TABLE bench_upsert (LIKE invoices INCLUDING ALL)")
            rows = connection.execute(
                "SELECT invoice_id, tenant, customer_id, state, pause_reason, pause_until, escalated_to, closed_reason, "
                "currency, total_minor, amount_due_minor, overpaid_minor, net_paid_minor, number, issued_on, due_on, "
                "paid_at, state_as_of, facts::text, conflicting_amounts FROM invoices ORDER BY invoice_id").fetchall()
            if not rows:
                return 0.0
            sequence = [rows[index % len(rows)] for index in range(total)]
            batches = []
            for start in range(0, total, batch):
                chunk = sequence[start:start + batch]
                keys = {row[0] for row in chunk}
                if len(keys) < len(chunk):  # fewer invoices than a batch: no key twice in one statement
                    chunk = list({row[0]: row for row in chunk}.values())
                batches.append([list(column) for column in zip(*chunk)])
            written = sum(len(columns_[0]) for columns_ in batches)
            began = time.time()
            with connection.cursor() as cursor:
                for params in batches:
                    cursor.execute(sql, params, prepare=True)
            seconds = time.time() - began
            connection.execute("DROP TABLE bench_upsert")
        return per_second(written, seconds)

    def tracker_catch_up(self, database: str, broker: Broker, end: dict[tuple[str, int], int]) -> Figure:
        """The tracker reads every payment of the ingest (attribution): its memory, and how long."""
        topics = (TOPICS["payments"],)
        payments = sum(value for (topic, _), value in end.items() if topic == TOPICS["payments"])
        run = self.start("tracker", "tracker-ingest", database, broker.bootstrap)

        def caught_up() -> bool:
            committed = committed_offsets(broker.bootstrap, "relance-tracker", topics)
            return committed is not None and group_lag(end, committed, topics) == 0
        done = wait_until(lambda: caught_up() or not run.instance.alive(), 300, 0.5)
        run.ended = time.time()
        seconds = run.ended - run.started
        self.finish(run, "tracker reading the ingest's payments")
        if not done:
            self.notes.append("The tracker did not read every payment of the ingest within 300 s.")
        return Figure("ingest", f"Tracker reading the {payments:,} payments of that ingest (attribution), from its start",
                      per_second(payments, seconds), "payments/s", note=f"{seconds:,.1f} s")

    # -- phase 2: schedule ------------------------------------------------------------------------------

    def phase_schedule(self) -> None:
        s = self.sizes
        database = "schedule"
        self.database(database)
        broker = self.broker()
        try:
            customers = max(1, s.seed_invoices // s.invoices_per_customer)
            began = time.time()
            _, events = due_portfolio(customers, s.seed_invoices, self.seed + 1)
            self.seed_by_ingesting(database, broker.bootstrap, events, "ingestor-schedule-seed")
            with self.db(database) as connection:
                connection.execute("CREATE TABLE bench_seed_invoices AS SELECT *, row_number() OVER "
                                   "(PARTITION BY tenant, customer_id ORDER BY invoice_id) AS rn FROM invoices")
                connection.execute("CREATE TABLE bench_seed_customers AS SELECT * FROM customers")
                seed_invoices = connection.execute("SELECT count(*) FROM bench_seed_invoices").fetchone()[0]
            log(f"Schedule: seed of {customers:,} customers and {seed_invoices:,} invoices ingested in "
                f"{time.time() - began:.0f} s")
            for label, total, all_due in ((f"{s.schedule_small:,} open invoices, all due", s.schedule_small, True),
                                          (f"{s.schedule_large:,} open invoices, one due a customer", s.schedule_large,
                                           False)):
                copies = max(1, round(total / seed_invoices))
                began = time.time()
                due = self.clone(database, copies, all_due)
                seeded = time.time() - began
                with self.db(database) as connection:
                    open_invoices = connection.execute("SELECT count(*) FROM invoices").fetchone()[0]
                    customer_count = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
                log(f"Schedule: {open_invoices:,} open invoices of {customer_count:,} customers, {due:,} due, "
                    f"seeded in SQL in {seeded:.0f} s")
                self.measure_scheduler(database, broker, label, open_invoices, customer_count, due, seeded,
                                       target=True)
        finally:
            self.drop_broker(broker)

    def clone(self, database: str, copies: int, all_due: bool) -> int:
        """Fills invoices and customers with `copies` copies of the seed, under new ids (the
        facts carry them). Due invoices (all, or the first of each customer) are due four days
        ago and need planning now; the others are due in 10 to 41 days, planned for five days
        before. Returns how many are due."""
        now = self.clock.simulated(time.time())
        with self.db(database) as connection:
            connection.execute("TRUNCATE invoices, customers, reminders, outbox, manual_actions")
            names = [row[0] for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY ordinal_position", ("customers",))]
            new_customer = "s.customer_id || '_' || k"
            expressions = {"customer_id": new_customer,
                           "facts": f"jsonb_set(s.facts, '{{customer_id}}', to_jsonb({new_customer}))",
                           "created_at": "now()", "updated_at": "now()"}
            connection.execute(
                f"INSERT INTO customers ({', '.join(names)}) SELECT {', '.join(expressions.get(n, 's.' + n) for n in names)} "
                f"FROM bench_seed_customers s CROSS JOIN generate_series(0, {copies - 1}) AS k")
            names = [row[0] for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY ordinal_position", ("invoices",))]
            is_due = "true" if all_due else "s.rn = 1"
            new_id = "s.invoice_id || '_' || k"
            new_number = "s.number || '-' || k"
            due_on = (f"(CASE WHEN {is_due} THEN DATE '{DUE_ON.isoformat()}' "
                      f"ELSE DATE '{TODAY.isoformat()}' + 10 + (hashtext({new_id}) & 31) END)")
            facts = (f"jsonb_set(jsonb_set(jsonb_set(jsonb_set(s.facts, '{{invoice_id}}', to_jsonb({new_id})), "
                     f"'{{customer_id}}', to_jsonb({new_customer})), '{{number,value}}', to_jsonb({new_number})), "
                     f"'{{due_on,value}}', to_jsonb({due_on}::text))")
            expressions = {
                "invoice_id": new_id, "customer_id": new_customer, "number": new_number, "due_on": due_on,
                "state": f"(CASE WHEN {is_due} THEN 'overdue' ELSE 'not_due' END)",
                "facts": facts, "plan": "NULL",
                "next_action_at": (f"(CASE WHEN {is_due} THEN TIMESTAMPTZ '{now.isoformat()}' - interval '1 minute' "
                                   f"ELSE ({due_on} - 5)::timestamp AT TIME ZONE 'UTC' + interval '8 hours' END)"),
                "created_at": "now()", "updated_at": "now()",
            }
            connection.execute(
                f"INSERT INTO invoices ({', '.join(names)}) SELECT {', '.join(expressions.get(n, 's.' + n) for n in names)} "
                f"FROM bench_seed_invoices s CROSS JOIN generate_series(0, {copies - 1}) AS k")
            connection.execute("VACUUM ANALYZE invoices")
            connection.execute("VACUUM ANALYZE customers")
            return int(connection.execute("SELECT count(*) FROM invoices WHERE next_action_at <= %s",
                                          (now,)).fetchone()[0])

    def pg_cpu(self) -> float:
        return children_cpu_seconds(self.pg.child.pid) if self.pg.child is not None else 0.0

    def due_count(self, database: str) -> int:
        return self.count(database, HARNESS_SQL + "SELECT count(*) FROM invoices WHERE next_action_at <= %s",
                          (self.clock.simulated(time.time()),))

    def any_due(self, database: str) -> bool:
        """Whether an invoice is still due: stops at the first one. Polling the full count every
        half second took 14 % of the database's time in the 1,000,000-invoice phase (its
        profile), time the measured scheduler did not get."""
        return bool(self.count(database, HARNESS_SQL + "SELECT count(*) FROM (SELECT 1 FROM invoices "
                               "WHERE next_action_at <= %s LIMIT 1) AS first", (self.clock.simulated(time.time()),)))

    def measure_scheduler(self, database: str, broker: Broker, label: str, open_invoices: int, customers: int,
                          due: int, seeded: float, target: bool) -> None:
        pg_before = self.pg_cpu()
        run = self.start("scheduler", f"scheduler-{open_invoices}", database, broker.bootstrap,
                         profile=("schedule", label))
        limit = self.args.schedule_timeout
        left = due
        while time.time() - run.started < limit and run.instance.alive():
            if not self.any_due(database):
                left = 0
                break
            time.sleep(0.5)
        self.end(run)
        if left:
            left = self.due_count(database)
        elapsed = run.ended - run.started
        pg_cpu = self.pg_cpu() - pg_before
        with self.db(database) as connection:
            reminders, first, last, planned_customers = connection.execute(
                "SELECT count(*), extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at)), "
                "count(DISTINCT customer_id) FROM reminders").fetchone()
            kinds = dict((f"{k} {s}", n) for k, s, n in connection.execute(
                "SELECT kind, status, count(*) FROM reminders GROUP BY 1, 2").fetchall())
            invoices_in_reminders = connection.execute(
                "SELECT coalesce(sum(cardinality(invoice_ids)), 0) FROM reminders").fetchone()[0]
        cpu = cpu_seconds(run.instance.child.pid) if run.instance.alive() else None
        self.finish(run, f"schedule ({label})")
        rate = per_second(reminders, elapsed)
        drained = left == 0
        insert_rate = self.reminder_insert_limit(database, reminders)
        log(f"Scheduler, {label}: {reminders:,} reminders in {elapsed:.1f} s ({rate:,.0f}/s; {due - left:,} due invoices "
            f"planned, {per_second(due - left, elapsed):,.0f}/s){'' if drained else f'; {left:,} still due at the limit'}; "
            f"plain insert {insert_rate:,.0f} rows/s")
        if not drained:
            self.notes.append(f"Schedule ({label}): {left:,} of {due:,} invoices were still due after "
                              f"{limit:g} s (--schedule-timeout); the rate is of what was done.")
        note = (f"{reminders:,} reminders ({', '.join(f'{k}: {n:,}' for k, n in sorted(kinds.items()))}) for "
                f"{planned_customers:,} customers, listing {invoices_in_reminders:,} invoices; "
                f"{due - left:,} due invoices planned in {elapsed:,.1f} s = {per_second(due - left, elapsed):,.0f}/s; "
                f"{cpu or 0:,.1f} CPU s (PostgreSQL's server processes {pg_cpu:,.1f} CPU s)")
        run.profile["figure"] = f"Reminders (commands) decided per second, {label}"
        self.figures.append(Figure(
            "schedule", run.profile["figure"], rate, "commands/s",
            insert_rate, "plain batched INSERT of as many reminder rows, 200 a statement",
            Target(">=", SCHEDULER_TARGET, "≥ 20,000/s") if target else None, note=note))
        self.details.setdefault("schedule", []).append({
            "label": label, "open_invoices": open_invoices, "customers": customers, "due": due,
            "seeded_seconds": seeded, "seconds": elapsed, "reminders": reminders, "by_kind_status": kinds,
            "customers_with_reminders": planned_customers, "invoices_in_reminders": invoices_in_reminders,
            "still_due": left, "commands_per_second": rate, "due_invoices_per_second": per_second(due - left, elapsed),
            "first_to_last_reminder_seconds": (float(last) - float(first)) if first and last else None,
            "insert_rows_per_second": insert_rate, "cpu_seconds": cpu, "postgres_cpu_seconds": pg_cpu})

    def reminder_insert_limit(self, database: str, total: int, batch: int = 200) -> float:
        """Rows a second of a plain batched INSERT of reminder rows like those the scheduler wrote
        (new ids and keys), `batch` a statement, into a copy of the reminders table."""
        if total <= 0:
            return 0.0
        columns = ["reminder_id", "idempotency_key", "tenant", "customer_id", "invoice_ids", "kind", "trigger",
                   "step_id", "channel", "segment", "template", "variant", "experiment", "status", "scheduled_for",
                   "policy_id", "policy_version", "topic", "command"]
        types = ["uuid", "text", "text", "text", "text", "text", "text", "text", "text", "text", "text", "text",
                 "text", "text", "timestamptz", "text", "int", "text", "text"]
        casts = {"invoice_ids": "ARRAY(SELECT jsonb_array_elements_text(invoice_ids::jsonb))",
                 "trigger": "trigger::jsonb", "command": "command::jsonb"}
        sql = (f"INSERT INTO bench_reminders ({', '.join(columns)}) SELECT "
               + ", ".join(casts.get(c, c) for c in columns)
               + " FROM UNNEST(" + ", ".join(f"%b::{t}[]" for t in types) + f") AS t({', '.join(columns)})")
        with self.db(database) as connection:
            connection.execute("DROP TABLE IF EXISTS bench_reminders")
            connection.execute("CREATE TABLE bench_reminders (LIKE reminders INCLUDING ALL)")
            sample = connection.execute(
                "SELECT reminder_id, idempotency_key, tenant, customer_id, to_jsonb(invoice_ids)::text, kind, "
                "trigger::text, step_id, channel, segment, template, variant, experiment, status, scheduled_for, "
                "policy_id, policy_version, topic, command::text FROM reminders LIMIT 5000").fetchall()
            rows = []
            for index in range(total):
                row = list(sample[index % len(sample)])
                row[0] = uuid.uuid4()
                row[1] = f"{row[1]}#{index}"
                rows.append(row)
            batches = [[list(column) for column in zip(*rows[start:start + batch])] for start in range(0, total, batch)]
            began = time.time()
            with connection.cursor() as cursor:
                for params in batches:
                    cursor.execute(sql, params, prepare=True)
            seconds = time.time() - began
            connection.execute("DROP TABLE bench_reminders")
        return per_second(total, seconds)

    # -- phase 3: send ----------------------------------------------------------------------------------

    def phase_send(self) -> None:
        n = self.sizes.send_messages
        database = "send"
        self.database(database)
        broker = self.broker()
        mock = Mock(self.root, sys.executable, self.processes, self.clock, self.seed, {
            "latency_ms": 0, "jitter_ms": 0, "error_rate": 0.0, "timeout_rate": 0.0, "timeout_delay_ms": 1000,
            "rate_limit": 0, "rate_burst": 0})
        try:
            mock.start()
            portfolio, events = due_portfolio(n, n, self.seed + 2)
            self.seed_by_ingesting(database, broker.bootstrap, events, "ingestor-send-seed")
            scheduler = self.start("scheduler", "scheduler-send", database, broker.bootstrap)

            def decided() -> bool:
                return self.due_count(database) == 0 and self.count(
                    database, "SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL") == 0
            if not wait_until(decided, 300, 0.5):
                raise RuntimeError("the scheduler did not decide and publish the reminders within 300 s")
            scheduler.instance.terminate()
            expected = self.count(database, "SELECT count(*) FROM reminders WHERE kind = 'message' AND status = 'queued' "
                                            "AND channel = 'email'")
            log(f"Send: {expected:,} reminder commands (email) on relance.reminders")
            sample: list[dict[str, Any]] = []
            rates: dict[str, float] = {}
            send_figures: dict[str, Figure] = {}
            batch = 100
            for mode in ("single-message endpoint", "batch endpoint"):
                single = mode.startswith("single")
                group = f"relance-sender-{'single' if single else 'batch'}"
                # A provider without a batch endpoint gets a claim's deliveries in waves of its
                # `concurrency` calls at once: SendGrid, as production would run it.
                provider = {"RELANCE__SENDER__IDENTITY__EMAIL_PROVIDER": "sendgrid",
                            "RELANCE__SENDER__PROVIDERS__SENDGRID__KIND": "sendgrid",
                            "RELANCE__SENDER__PROVIDERS__SENDGRID__BASE_URL": mock.url,
                            "RELANCE__SENDER__PROVIDERS__SENDGRID__API_KEY": POSTMARK_TOKEN,
                            "RELANCE__SENDER__PROVIDERS__SENDGRID__TIMEOUT_MS": "2000"} if single else {}
                run = self.start("sender", group.replace("relance-", ""), database, broker.bootstrap, {
                    "RELANCE__SENDER__PROVIDERS__POSTMARK__BASE_URL": mock.url, **provider,
                    "RELANCE__SENDER__DISPATCH_BATCH": str(batch), "RELANCE__SENDER__GROUP_ID": group},
                    profile=("send", mode))
                # Timed from the partitions assigned, as the ingest is; the start-up beside it.
                joined = self.wait_assigned(run)
                cpu_before = cpu_seconds(run.instance.child.pid) if run.instance.child else None
                began = time.time()
                accepted = 0
                deadline = time.time() + self.args.send_timeout
                while time.time() < deadline and run.instance.alive():
                    accepted = int(mock.stats().get("messages_accepted", 0))
                    if accepted >= expected:
                        break
                    time.sleep(0.25)
                self.end(run)
                elapsed = run.ended - began
                cpu_total = cpu_seconds(run.instance.child.pid) if run.instance.alive() else None
                cpu = cpu_total - cpu_before if cpu_total is not None and cpu_before is not None else cpu_total
                stats = mock.stats()
                self.finish(run, f"send ({mode})")
                with self.db(database) as connection:
                    statuses = dict(connection.execute("SELECT status, count(*) FROM deliveries GROUP BY 1").fetchall())
                rate = per_second(accepted, elapsed)
                rates[mode] = rate
                steady = self.mock_span_rate(mock, accepted)
                log(f"Sender, {mode}: {accepted:,} of {expected:,} messages in {elapsed:.1f} s ({rate:,.0f}/s); "
                    f"deliveries {statuses}")
                if accepted < expected:
                    self.notes.append(f"Send ({mode}): the mock accepted {accepted:,} of {expected:,} messages "
                                      f"within {self.args.send_timeout:g} s (--send-timeout); the rate is of those.")
                if stats.get("duplicate_messages"):
                    self.notes.append(f"Send ({mode}): {stats['duplicate_messages']} duplicate messages at the mock.")
                self.details.setdefault("send", []).append({
                    "mode": mode, "provider": "sendgrid" if single else "postmark", "dispatch_batch": batch,
                    "expected": expected, "accepted": accepted,
                    "seconds": elapsed, "messages_per_second": rate, "messages_per_second_first_to_last": steady,
                    "joined_after_start_seconds": joined,
                    "messages_per_second_with_start_up": per_second(accepted, elapsed + joined),
                    "cpu_seconds": cpu, "deliveries": statuses,
                    "mock": {k: stats.get(k) for k in ("requests", "messages_accepted", "duplicate_messages")}})
                if not sample:
                    status, page = http_json("GET", f"{mock.admin_url}/_mock/messages?after=0&limit=200&bodies=true",
                                             timeout=60)
                    sample = page.get("messages", []) if status == 200 and isinstance(page, dict) else []
                run.profile["figure"] = f"Messages sent per second, {mode} ({expected:,} commands)"
                send_figures[mode] = Figure("send", run.profile["figure"], rate,
                                            "msg/s", None, note=f"{cpu or 0:,.1f} CPU s; "
                                            + ("SendGrid's /v3/mail/send, the provider's concurrency (4 unless --set) "
                                               "calls at once; "
                                               if single else "Postmark's /email/batch; ")
                                            + f"sender.dispatch_batch = {batch}; from the partitions assigned, "
                                            f"{elapsed:,.1f} s; start-up {joined:,.1f} s more, "
                                            f"{per_second(accepted, elapsed + joined):,.0f}/s with it; "
                                            f"{steady or 0:,.0f}/s from the first message accepted to the last")
                self.figures.append(send_figures[mode])
                # The next run starts from nothing: no delivery, no processed command.
                with self.db(database) as connection:
                    connection.execute("TRUNCATE delivery_attempts, deliveries CASCADE")
                    connection.execute("DELETE FROM processed_events WHERE consumer <> 'ingestor'")
                    connection.execute("DELETE FROM provider_buckets")
                    connection.execute("DELETE FROM outbox WHERE producer = 'relance-sender'")
                http_json("POST", f"{mock.admin_url}/_mock/reset", {})
            limits = self.mock_limits(mock, sample, max(expected, 1))
            for mode, figure in send_figures.items():
                figure.limit = limits[mode]
                figure.limit_name = ("the mock's capacity: as many messages fired from Python, one request at a time, "
                                     + ("to SendGrid's /v3/mail/send" if mode.startswith("single")
                                        else "100 a request to /email/batch"))
            log(f"Mock capacity from Python: {limits['single-message endpoint']:,.0f} msg/s one by one, "
                f"{limits['batch endpoint']:,.0f} msg/s in batches of 100")
        finally:
            self.drop_broker(broker)
            if mock.child is not None and mock.child.poll() is None:
                mock.child.terminate()
                try:
                    mock.child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    mock.child.kill()

    def mock_span_rate(self, mock: Mock, accepted: int) -> float | None:
        """Messages a second from the first the mock accepted to the last."""
        if accepted < 2:
            return None
        instants = []
        for after in (0, max(accepted - 3, 0)):
            status, page = http_json("GET", f"{mock.admin_url}/_mock/messages?after={after}&limit=5&bodies=false")
            if status != 200 or not isinstance(page, dict):
                return None
            instants += [sim.parse_instant(m["received_at"]).timestamp() for m in page.get("messages", [])]
        if len(instants) < 2 or max(instants) <= min(instants):
            return None
        return per_second(accepted - 1, max(instants) - min(instants))

    def mock_limits(self, mock: Mock, sample: list[dict[str, Any]], total: int) -> dict[str, float]:
        """The mock's capacity: `total` messages made from those the sender sent (new send ids)
        fired from Python over one keep-alive connection, one request at a time: one by one to
        SendGrid's /v3/mail/send, then 100 a request to Postmark's /email/batch."""
        if not sample:
            self.notes.append("No message body to measure the mock's capacity with.")
            return {"single-message endpoint": 0.0, "batch endpoint": 0.0}

        def message(index: int) -> dict[str, Any]:
            source = sample[index % len(sample)]
            body = {"From": source["from"], "To": source["to"], "Subject": source.get("subject") or "Reminder",
                    "HtmlBody": source.get("html_body") or "", "TextBody": source.get("text_body") or "",
                    "MessageStream": source.get("message_stream") or "outbound", "Tag": source.get("tag") or "",
                    "TrackOpens": True, "TrackLinks": "None",
                    "Metadata": {**(source.get("metadata") or {}), "relance_send": str(uuid.uuid4())}}
            if source.get("reply_to"):
                body["ReplyTo"] = source["reply_to"]
            return body

        def sendgrid(index: int) -> dict[str, Any]:
            source = sample[index % len(sample)]
            return {"personalizations": [{"to": [{"email": bare_address(source["to"])}],
                                          "custom_args": {**(source.get("metadata") or {}),
                                                          "relance_send": str(uuid.uuid4())}}],
                    "from": {"email": bare_address(source["from"])},
                    "subject": source.get("subject") or "Reminder",
                    "content": [{"type": "text/plain", "value": source.get("text_body") or "-"},
                                {"type": "text/html", "value": source.get("html_body") or "-"}]}
        postmark_headers = {"X-Postmark-Server-Token": POSTMARK_TOKEN, "Accept": "application/json",
                            "Content-Type": "application/json"}
        sendgrid_headers = {"Authorization": f"Bearer {POSTMARK_TOKEN}", "Accept": "application/json",
                            "Content-Type": "application/json"}
        results = {}
        for mode, size in (("single-message endpoint", 1), ("batch endpoint", 100)):
            bodies = []
            for start in range(0, total, size):
                if size == 1:
                    bodies.append(json.dumps(sendgrid(start)).encode())
                else:
                    bodies.append(json.dumps([message(index) for index in range(start, min(start + size, total))]).encode())
            path, headers, expected_status = (("/v3/mail/send", sendgrid_headers, 202) if size == 1
                                              else ("/email/batch", postmark_headers, 200))
            connection = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=30)
            began = time.time()
            for body in bodies:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != expected_status:
                    raise RuntimeError(f"the mock answered {response.status} to a direct {path}")
            seconds = time.time() - began
            connection.close()
            results[mode] = per_second(total, seconds)
            http_json("POST", f"{mock.admin_url}/_mock/reset", {})
        return results

    # -- phase 4: cancel ---------------------------------------------------------------------------------

    def phase_cancel(self) -> None:
        s = self.sizes
        database = "cancel"
        self.database(database)
        broker = self.broker()
        runs: list[Run] = []
        try:
            queued_target = s.cancel_payments * 2
            portfolio, events = due_portfolio(queued_target, queued_target, self.seed + 3)
            ingestor = self.seed_by_ingesting(database, broker.bootstrap, events, "ingestor-cancel", keep=True)
            runs.append(ingestor)
            # A scheduler whose broker does not answer: its commands stay in the outbox, queued.
            dead = f"127.0.0.1:{free_port()}"
            scheduler = self.start("scheduler", "scheduler-cancel", database, dead)
            if not wait_until(lambda: self.due_count(database) == 0, 300, 0.5):
                raise RuntimeError("the scheduler did not plan the invoices within 300 s")
            scheduler.instance.terminate()
            with self.db(database) as connection:
                queued = connection.execute(
                    "SELECT r.reminder_id, r.invoice_ids FROM reminders r JOIN outbox o ON o.reminder_id = r.reminder_id "
                    "WHERE r.status = 'queued' AND o.published_at IS NULL ORDER BY r.reminder_id").fetchall()
            log(f"Cancel: {len(queued):,} reminders queued with their commands unpublished in the outbox")
            if not queued:
                raise RuntimeError("no reminder was left queued in the outbox")
            tracker = self.start("tracker", "tracker-cancel", database, broker.bootstrap)
            runs.append(tracker)
            # Background load: new customers and invoices, paced, for as long as the payments last.
            rate = s.cancel_background_rate
            if self.ingest_rate:
                rate = min(rate, 0.5 * self.ingest_rate)
            duration = s.cancel_payments / 20.0 + 40.0
            background_total = int(rate * duration)
            # The billing mix of the ingest phase (payments too, so billing.payments is never idle).
            background = billing_events(max(background_total, 100), 12.0, self.seed + 4)
            load = Background(broker.bootstrap, background, rate)
            by_invoice = {invoice.invoice_id: invoice for invoice in portfolio.invoices}
            chosen = queued[:s.cancel_payments]
            factory = sim.EventFactory(self.seed + 3, TENANT)
            payments = self.payments_producer(broker.bootstrap)
            time.sleep(3.0)  # the tracker joins its group
            load.start()
            time.sleep(5.0)  # the ingestor at the background pace before the first payment
            latencies = self.race_payments(database, payments, chosen, by_invoice, factory)
            load.stop()
            load.join(timeout=30)
            lag_end = time.time()
            applied_total = len(events) + load.published
            wait_until(lambda: self.count(database, "SELECT count(*) FROM processed_events WHERE consumer = 'ingestor'")
                       >= applied_total + len(latencies["published"]), 120, 0.5)
            catch_up = time.time() - lag_end
            for run, label in ((ingestor, "cancel (payments during ingest load)"), (tracker, "cancel (payments during ingest load)")):
                self.finish(run, label)
            values = latencies["values"]
            p50, p99 = percentile(values, 50), percentile(values, 99)
            missing = len(chosen) - len(values)
            log(f"Cancel: {len(values):,} of {len(chosen):,} cancelled; p50 {p50 or 0:.0f} ms, p99 {p99 or 0:.0f} ms, "
                f"max {max(values, default=0):.0f} ms; background {load.published:,} events at {load.achieved:,.0f}/s")
            if missing:
                self.notes.append(f"Cancel: {missing} of {len(chosen)} reminders were not cancelled within 30 s of "
                                  f"their payment (counted as missing, not in the percentiles).")
            in_order = [v for v in latencies["in_order"] if v is not None]
            head = in_order[:max(1, len(in_order) // 5)]
            note = (f"{len(values):,} payments, one every 50 ms, during a background ingest (the billing mix) of "
                    f"{load.published:,} events at {load.achieved:,.0f}/s; p90 {percentile(values, 90) or 0:,.0f} ms; "
                    f"first fifth of the payments p50 {percentile(head, 50) or 0:,.0f} ms, the rest "
                    f"{percentile(in_order[len(head):], 50) or 0:,.0f} ms; the ingestor caught up {catch_up:,.1f} s after "
                    f"the load ended")
            self.figures.append(Figure("cancel", "Payment published → its queued reminder cancelled, p50", p50, "ms",
                                       note=note))
            self.figures.append(Figure("cancel", "Payment published → its queued reminder cancelled, p99", p99, "ms",
                                       target=Target("<", CANCEL_P99_TARGET_MS, "< 250 ms"),
                                       note=f"max {max(values, default=0):,.0f} ms; polled every 5 ms" +
                                            (f"; {missing} not cancelled" if missing else "")))
            self.details["cancel"] = {"queued": len(queued), "payments": len(chosen), "cancelled": len(values),
                                      "p50_ms": p50, "p90_ms": percentile(values, 90), "p99_ms": p99,
                                      "max_ms": max(values, default=None), "background_events": load.published,
                                      "background_rate": load.achieved, "background_target_rate": rate,
                                      "latencies_ms_in_publish_order": latencies["in_order"]}
        finally:
            for run in runs:
                if run.instance.alive():
                    run.instance.terminate()
            self.drop_broker(broker)

    def payments_producer(self, bootstrap: str) -> Any:
        """The payments' producer, ready before the first payment: an idempotent producer first
        gets its producer id and the topic's metadata, which would otherwise hold the first
        payments back (about a second with tansu) and count against relance."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, "client.id": "relance-bench-payments",
                             "enable.idempotence": True, "acks": "all", "linger.ms": 0, "logger": CLIENT_LOG})
        producer.list_topics(TOPICS["payments"], timeout=10)
        producer.poll(1.0)
        return producer

    def race_payments(self, database: str, producer: Any, chosen: list[tuple[Any, list[str]]],
                      by_invoice: dict[str, sim.Invoice], factory: sim.EventFactory) -> dict[str, Any]:
        """Publishes a full payment for the invoices of each chosen reminder, one reminder every
        50 ms, and polls every 5 ms which of them are cancelled: publish-to-cancelled times."""
        published: dict[Any, float] = {}
        seen: set[Any] = set()
        found: dict[Any, float] = {}
        values: list[float] = []
        at = CLOCK_START
        next_publish = time.time()
        index = 0
        import psycopg

        with psycopg.connect(self.pg.dsn(database), autocommit=True) as connection:
            statement = "SELECT reminder_id FROM reminders WHERE reminder_id = ANY(%s) AND status = 'cancelled'"
            last_publish = None
            while True:
                now = time.time()
                if index < len(chosen) and now >= next_publish:
                    reminder_id, invoice_ids = chosen[index]
                    for invoice_id in invoice_ids:
                        invoice = by_invoice[invoice_id]
                        event = factory.payment_succeeded(invoice, at, at, f"pay_bench_{invoice_id}", invoice.total_minor,
                                                          invoice.method)
                        producer.produce(TOPICS["payments"], key=invoice.customer_id.encode(), value=encode(event),
                                         headers=cloud_headers())
                    producer.poll(0)
                    published[reminder_id] = time.time()
                    last_publish = published[reminder_id]
                    index += 1
                    next_publish += 0.05
                outstanding = [rid for rid in published if rid not in seen]
                if outstanding:
                    for (rid,) in connection.execute(statement, (outstanding,), prepare=True).fetchall():
                        seen.add(rid)
                        found[rid] = time.time()
                        values.append((found[rid] - published[rid]) * 1000.0)
                elif index >= len(chosen):
                    break
                if index >= len(chosen) and last_publish is not None and time.time() - last_publish > 30:
                    break
                producer.poll(0)
                time.sleep(0.005)
        producer.flush(10)
        in_order = [round((found[rid] - published[rid]) * 1000.0, 1) if rid in found else None for rid in published]
        return {"values": values, "published": published, "in_order": in_order}

    # -- the run ----------------------------------------------------------------------------------------

    def run_phase(self, name: str, action: Callable[[], None]) -> None:
        began = time.time()
        log(f"Phase {name}")
        self.sampler.phase = name
        busy = other_work()
        if busy:
            log(f"Warning: {', '.join(sorted(busy))} running on this machine: the figures will be lower")
            self.sampler.contended.setdefault(name, set()).update(busy)
        try:
            action()
        except Exception:  # noqa: BLE001 (a phase that fails is reported; the others still run)
            self.failed_phases.append(name)
            text = traceback.format_exc()
            self.notes.append(f"Phase {name} could not be carried out: {text.strip().splitlines()[-1]}")
            log(f"Phase {name} failed:\n{text}")
        self.phases.append((name, time.time() - began))
        log(f"Phase {name} took {time.time() - began:.0f} s")

    def memory_figures(self) -> None:
        for service in chaos.BINARIES:
            records = [record for record in self.memory if record.service == service]
            if not records:
                continue
            peak = max(records, key=lambda r: r.peak or 0)
            steady = max(records, key=lambda r: r.steady or 0)
            self.figures.append(Figure("memory", f"{service}: resident memory after its load (steady state)",
                                       None if steady.steady is None else steady.steady / MIB, "MiB",
                                       target=Target("<", RSS_TARGET / MIB, "< 64 MiB"),
                                       note=f"largest of {len(records)} runs: {steady.phase}"))
            self.figures.append(Figure("memory", f"{service}: peak resident memory (VmHWM)",
                                       None if peak.peak is None else peak.peak / MIB, "MiB",
                                       target=Target("<", RSS_TARGET / MIB, "< 64 MiB"), note=f"in {peak.phase}"))

    def log_findings(self) -> list[str]:
        """Warnings and errors the services logged, by message."""
        counts: dict[tuple[str, str, str], int] = {}
        for path in sorted(self.root.glob("*.log")):
            if path.name.startswith(("tansu", "postgres", "harness", "mock")):
                continue
            service = path.stem
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    if "panicked" in line or "Segmentation" in line:
                        counts[(service, "PANIC", line[:200])] = counts.get((service, "PANIC", line[:200]), 0) + 1
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                level = str(entry.get("level", "")).upper()
                if level not in ("WARN", "ERROR"):
                    continue
                fields = entry.get("fields") or {}
                message = str(fields.get("message") or entry.get("message") or "")
                error = str(fields.get("error") or entry.get("error") or entry.get("summary") or "")[:160]
                if any(expected in message for expected in EXPECTED_LOG_LINES) or (
                        service == "scheduler-cancel" and ("Kafka" in message or "produced records" in message
                                                           or "ipv4#127.0.0.1" in message or "shutdown timeout" in message)):
                    continue
                key = (service, level, message + (f" ({error})" if error else ""))
                counts[key] = counts.get(key, 0) + 1
        return [f"{service}: {level} ×{count}: {message}" for (service, level, message), count in
                sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:40]

    def report(self, started: float, out_dir: Path) -> None:
        self.memory_figures()
        self.analyse_profiles()
        info = machine()
        s = self.sizes
        summary = [
            f"`scripts/bench.py{' --quick' if s.name == 'quick' else ''}` of "
            f"{sim.rfc3339(datetime.fromtimestamp(started, UTC))}, {self.build} build of {info['commit']}, "
            f"{time.time() - started:,.0f} s in all.",
            "",
            f"Machine: {info['nproc']} cores ({info['cpu_model']}), {info['memory_bytes'] / 2**30:,.1f} GiB of memory, "
            f"Linux {info['kernel']}; PostgreSQL {self.details.get('postgres', '?')} (fsync off, synchronous commit on, "
            f"shared_buffers 256 MB, as in the chaos run; pg_stat_statements loaded) and a tansu broker (memory storage), both on this machine "
            f"with the services, the mock and the harness: everything shares these cores.",
        ]
        reproduce = [
            "```sh",
            "make bench                                   # the full run (release build)",
            "make bench BENCH_ARGS=--quick                # smaller sizes: a few minutes",
            "scripts/bench.py --build release --phases ingest,cancel   # some phases only",
            "scripts/bench.py --ingest-events 50000 --schedule-large 300000 --send-messages 1000 --keep",
            "# also: --schedule-timeout S (default 180), --send-timeout S, --cancel-payments N, --seed N,",
            "#       --out-dir DIR, --invoices-per-customer N (the seed's, all due in the first scheduler run;",
            "#       default 10),",
            f"#       --profile (make bench passes it: perf record -F {PERF_FREQUENCY} on each measured service run,",
            "#       shown under Profiles with the database's top statements; perf.data files stay in the run",
            "#       folder, kept with --keep),",
            "#       --set RELANCE__KEY=VALUE (a setting for every service run, e.g. scheduler.planning_workers)",
            "```",
            "",
            f"This run: {s.ingest_events:,} ingest events a shape; scheduler {s.schedule_small:,} and "
            f"{s.schedule_large:,} open invoices (seed {s.seed_invoices:,} invoices, {s.invoices_per_customer} a "
            f"customer, cloned in SQL); {s.send_messages:,} messages a sender run; {s.cancel_payments:,} payments "
            f"against queued reminders with up to {s.cancel_background_rate:,.0f} background events a second; "
            f"seed {self.seed}. Services run with RELANCE_ENV=test (config/test.toml: consumer session timeout 6 s, "
            f"fetch.wait.max 20 ms, scheduler tick 100 ms, outbox poll 100 ms) and log level info, on one clock "
            f"showing {sim.rfc3339(CLOCK_START)} at the start of the run."
            + (f" Settings over the bench's (--set): {', '.join(f'`{item}`' for item in self.args.set)}."
               if self.args.set else ""),
        ]
        method = [
            "- **Ingest**: every event is published before the ingestor starts. The time runs from the moment its "
            "consumer group gives it the partitions (`relance_kafka_assigned_partitions`, read every 20 ms) until "
            "the last event is in `processed_events`: a backlog drained by a running service, since the database "
            "limit is a rate with no start-up either. The start-up before it (process start and group join, about "
            "3 s: tansu answers a join after half the 6 s session timeout; Apache Kafka delays a new group's first "
            "rebalance by `group.initial.rebalance.delay.ms`, 3 s by default) is given beside the figure, with the "
            "rate it would make. CPU time from `/proc/<pid>/stat`, over the same seconds. The "
            "database limit is the ingestor's own multi-row upsert statement (`crates/storage/src/invoices.rs`) "
            "run from Python into `bench_upsert (LIKE invoices INCLUDING ALL)`, 500 rows a statement, one "
            "transaction each, with the invoices the ingestor wrote (first inserted, then updated in turn); the "
            "ingestor does more per event (the processed-events ledger, customers, the outbox).",
            "- **Schedule**: seed portfolio (customers in Paris, invoices due four days ago) ingested, then copied "
            "in SQL under new ids (`jsonb_set` on the facts), `VACUUM ANALYZE`d. Invoices not due are due in 10–41 "
            "days and planned for five days before. The time runs from the scheduler's start until no invoice has "
            "`next_action_at <= now`. A customer's due invoices become one reminder (consolidation): reminders "
            "decided are the commands; the due invoices planned a second are given beside them.",
            "- **Send**: the scheduler's commands are on `relance.reminders` before the sender starts; the time runs "
            "from its consumer group giving it the partitions (as for ingest; the start-up is given beside it) "
            "until the mock has accepted every message. The single-message run sends through "
            "SendGrid's `/v3/mail/send` (a provider without a batch endpoint: a claim of `sender.dispatch_batch` "
            "= 100 deliveries goes out in waves of the provider's `concurrency`, 4 by default, calls at once), "
            "the batch run through Postmark's `/email/batch` (100 a request). The mock (`scripts/mock_postmark.py`, "
            "as the chaos run uses it; it answers both APIs) has no latency or faults. The raw limit fires as "
            "many messages made from those the sender sent (new send ids) at the mock from Python over one "
            "keep-alive connection, one request at a time: one by one to `/v3/mail/send`, 100 a request to "
            "`/email/batch`.",
            "- **Cancel**: reminders queued by a scheduler that cannot reach its broker stay in the outbox; the "
            "payments are published one every 50 ms while a background load of new invoices is ingested; the "
            "reminders table is polled every 5 ms. The background load is the ingest phase's billing mix, paced "
            "at half the ingest rate measured in phase 1 (at most the size's rate); the payments' producer is "
            "connected and has its producer id before the first payment.",
            "- **Memory**: VmRSS 3 s after each service's load ended (steady state) and VmHWM (the process's "
            "peak), the largest over the runs of each service.",
        ]
        sections = [("How to reproduce", reproduce), ("How it is measured", method)]
        findings = self.log_findings()
        notes = list(self.notes)
        for phase, names in self.sampler.contended.items():
            notes.append(f"Phase {phase} shared the machine with other work ({', '.join(sorted(names))} seen running): "
                         f"its figures are lower than on a quiet machine.")
        if not self.sampler.contended:
            notes.append("No build or compiler ran on the machine during the run (checked every 2 s).")
        if self.args.profile and self.profiler.problem:
            notes.append(f"No CPU profiles (--profile): {self.profiler.problem}. The figures and the database's "
                         f"statements are there all the same.")
        elif self.args.profile:
            failed = [entry["run"] for entry in self.profiles if (entry.get("cpu") or {}).get("error")]
            if failed:
                notes.append(f"No CPU profile of {', '.join(failed)} (see Profiles).")
            notes.append(f"Profiled run (--profile): perf sampled each measured service at {PERF_FREQUENCY} Hz, "
                         f"which costs it a little CPU; the statements' statistics (pg_stat_statements, "
                         f"track = all) are on in every bench run.")
        if any(entry.get("missed") for entry in self.profiles):
            notes.append("The profiles of the runs that miss their target are under Profiles below.")
        sections.append(("Notes", [f"- {note}" for note in notes]))
        sections.append(("Warnings and errors in the services' logs", [f"- {line}" for line in findings]
                         or ["None."]))
        sections.append(("Profiles", profiles_section(self.profiles)))
        text = render_markdown("relance benchmark (`make bench`)", summary, self.figures, self.phases, sections)
        print("\n" + text)
        out_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if s.name == "full" else f"-{s.name}"
        (out_dir / f"results{suffix}.md").write_text(text, encoding="utf-8")
        payload = {
            "started": sim.rfc3339(datetime.fromtimestamp(started, UTC)), "seconds": round(time.time() - started, 1),
            "build": self.build, "sizes": asdict(s), "seed": self.seed, "machine": info,
            "figures": [figure.as_dict() for figure in self.figures],
            "missed": [figure.name for figure in self.figures if figure.passed is False],
            "phases": [{"phase": name, "seconds": round(seconds, 1)} for name, seconds in self.phases],
            "failed_phases": self.failed_phases,
            "phases_sharing_the_machine": {k: sorted(v) for k, v in self.sampler.contended.items()},
            "memory": [asdict(record) for record in self.memory],
            "details": self.details, "notes": notes, "log_findings": findings,
            "profiles": self.profiles,
        }
        (out_dir / f"results{suffix}.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
        log(f"Results written to {out_dir / f'results{suffix}.md'} and .json")

    def cleanup(self, keep: bool) -> None:
        self.sampler.stop_requested.set()
        if hasattr(self, "pg"):
            self.pg.stop("immediate")
        self.processes.kill_all()
        if keep:
            shutil.rmtree(self.bin, ignore_errors=True)
            log(f"Logs and data kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Background(threading.Thread):
    """Publishes billing events at a steady rate until stopped (the ingest load of the cancel
    phase), in slices every 50 ms."""

    def __init__(self, bootstrap: str, records: list[tuple[str, str, dict[str, Any]]], rate: float) -> None:
        super().__init__(name="background-load", daemon=True)
        self.bootstrap = bootstrap
        self.records = records
        self.rate = rate
        self.published = 0
        self.stop_requested = threading.Event()
        self.achieved = 0.0

    def stop(self) -> None:
        self.stop_requested.set()

    def run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "client.id": "relance-bench-background",
                             "enable.idempotence": True, "acks": "all", "linger.ms": 5, "logger": CLIENT_LOG})
        began = time.time()
        headers = cloud_headers()
        while not self.stop_requested.is_set() and self.published < len(self.records):
            due = min(int((time.time() - began) * self.rate), len(self.records))
            while self.published < due:
                topic, key, event = self.records[self.published]
                try:
                    producer.produce(topic, key=key.encode(), value=encode(event), headers=headers)
                except BufferError:
                    producer.poll(0.05)
                    continue
                self.published += 1
            producer.poll(0)
            self.stop_requested.wait(0.05)
        self.achieved = per_second(self.published, time.time() - began)
        producer.flush(30)


def setting_override(text: str) -> str:
    """A --set argument: RELANCE__SECTION__KEY=VALUE, or one of glibc's allocator settings
    (MALLOC_*, GLIBC_TUNABLES) to measure one against the image's."""
    name, _, _ = text.partition("=")
    if "=" not in text or not (name.startswith(("RELANCE__", "MALLOC_")) or name == "GLIBC_TUNABLES"):
        raise argparse.ArgumentTypeError(
            f"expected RELANCE__SECTION__KEY=VALUE (or MALLOC_*=VALUE, GLIBC_TUNABLES=VALUE), got {text!r}")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"which phases, comma-separated (default {','.join(PHASES)})")
    parser.add_argument("--ingest-events", type=int, default=None, help="billing events a shape (default 100,000; --quick 10,000)")
    parser.add_argument("--schedule-small", type=int, default=None, help="open invoices, all due (default 100,000)")
    parser.add_argument("--schedule-large", type=int, default=None,
                        help="open invoices, one due a customer (default 1,000,000; --quick 100,000)")
    parser.add_argument("--seed-invoices", type=int, default=None, help="invoices of the seed cloned for the scheduler (default 10,000)")
    parser.add_argument("--invoices-per-customer", type=int, default=None,
                        help="invoices a customer of that seed (default 10): all due in the first scheduler run")
    parser.add_argument("--send-messages", type=int, default=None, help="messages a sender run (default 2,000; --quick 500)")
    parser.add_argument("--cancel-payments", type=int, default=None, help="payments racing queued reminders (default 300)")
    parser.add_argument("--schedule-timeout", type=float, default=180.0, help="longest a scheduler run may take (s)")
    parser.add_argument("--send-timeout", type=float, default=300.0, help="longest a sender run may take (s)")
    parser.add_argument("--seed", type=int, default=15, help="the same seed gives the same events")
    parser.add_argument("--build", choices=["auto", "release", "debug"], default="release",
                        help="which build of the services (default release)")
    parser.add_argument("--target-dir", type=Path, default=None,
                        help="cargo's target folder (default $CARGO_TARGET_DIR or ~/.cache/relance/target)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench", help="where results.md and results.json go")
    parser.add_argument("--work-dir", default=None, help="parent of the temporary run folder (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, database)")
    parser.add_argument("--set", action="append", metavar="RELANCE__KEY=VALUE",
                        type=setting_override,
                        help="a setting for every service run, over the bench's own (repeatable; "
                             "e.g. --set RELANCE__SCHEDULER__PLANNING_WORKERS=1); the results list them")
    parser.add_argument("--profile", action="store_true",
                        help=f"CPU profiles: perf record -F {PERF_FREQUENCY} --call-graph dwarf attached to each "
                             "measured ingestor, "
                             "scheduler and sender run, reported under Profiles beside the database's top "
                             "statements (pg_stat_statements); without perf, or if it may not record, the run goes "
                             "on without them (make bench passes it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = (QUICK if args.quick else FULL).but(
        ingest_events=args.ingest_events, schedule_small=args.schedule_small, schedule_large=args.schedule_large,
        seed_invoices=args.seed_invoices, invoices_per_customer=args.invoices_per_customer,
        send_messages=args.send_messages, cancel_payments=args.cancel_payments)
    phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = [name for name in phases if name not in PHASES]
    if unknown:
        raise SystemExit(f"bench: unknown phases {unknown} (choose among {', '.join(PHASES)})")
    build, source = pick_binaries(args.build, args.target_dir)
    started = time.time()
    bench = Bench(args, sizes, build, source)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    keep = args.keep
    try:
        bench.setup()
        actions = {"ingest": bench.phase_ingest, "schedule": bench.phase_schedule, "send": bench.phase_send,
                   "cancel": bench.phase_cancel}
        for name in PHASES:
            if name in phases:
                bench.run_phase(name, actions[name])
        bench.report(started, args.out_dir)
        keep = keep or bool(bench.failed_phases)
        return 2 if len(bench.failed_phases) == len(phases) else 0
    except KeyboardInterrupt:
        log("Interrupted.")
        keep = True
        return 2
    except Exception:  # noqa: BLE001
        log("The benchmark could not be carried out:\n" + traceback.format_exc())
        keep = True
        return 2
    finally:
        bench.cleanup(keep)


if __name__ == "__main__":
    sys.exit(main())
