#!/usr/bin/env python3
"""What relance did during a run, read from its PostgreSQL tables (crates/storage/migrations),
the mock Postmark's counters and, for a simulation, the simulator's ledger.

    demo_report.py --dsn postgres://postgres@127.0.0.1:54329/relance --tenant demo \\
        --mock-url http://127.0.0.1:<port> --ledger .local/demo/ledger.json --html .local/demo/report.html

It prints, and writes as a self-contained HTML page with inline SVG charts:

- reminders by step, segment and channel (decided, sent, skipped and why, awaiting approval);
- human open and click rates beside machine ones, with the machines' reasons;
- conversion (reminders credited with a payment) and recovered amount per step, template and
  A/B variant;
- days-sales-outstanding with reminders (what happened) and without (the ledger's baselines;
  see "How the counterfactual is estimated" in the output and docs/simulator.md);
- disputes, promises to pay and whether they were kept, payment claims, payment plans;
- invoice states at the end, the mock provider's counters (accepted, duplicates, faults) and
  where the rendered emails are.

Amounts in several currencies are added up in EUR at fixed approximate rates (the ledger's,
else EUR 1, USD 0.92, GBP 1.17): good enough to compare, not accounting.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

UTC = timezone.utc
DEFAULT_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05}
# The order steps take in the default policy, for readable tables.
STEP_ORDER = ["courtesy", "first_reminder", "second_reminder", "phone_call", "firm_reminder", "sms_reminder",
              "final_notice", "personal_call", "formal_notice", "escalation", "update_payment_method",
              "payment_method_sms", "payment_method_firm"]


# ==============================================================================================
# Reading


@dataclass
class Data:
    tenant: str
    generated_at: datetime
    period: tuple[datetime | None, datetime | None]
    to_eur: dict[str, float]
    reminders: list[dict[str, Any]] = field(default_factory=list)
    skip_reasons: list[dict[str, Any]] = field(default_factory=list)
    engagement: list[dict[str, Any]] = field(default_factory=list)
    machine_reasons: list[dict[str, Any]] = field(default_factory=list)
    conversion: list[dict[str, Any]] = field(default_factory=list)
    recovered_daily: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    promises: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)
    funnel: dict[str, int] = field(default_factory=dict)
    mock: dict[str, Any] | None = None
    mock_config: dict[str, Any] | None = None
    ledger: dict[str, Any] | None = None


def query(connection: Any, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


REMINDERS_SQL = """
SELECT r.step_id, r.segment, r.channel, r.kind,
       count(DISTINCT r.reminder_id) AS decided,
       count(DISTINCT r.reminder_id) FILTER (WHERE d.status = 'sent') AS sent,
       count(DISTINCT r.reminder_id) FILTER (WHERE d.status = 'skipped') AS skipped,
       count(DISTINCT r.reminder_id) FILTER (WHERE d.status IN ('failed', 'unknown')) AS failed,
       count(DISTINCT r.reminder_id) FILTER (WHERE r.status = 'awaiting_approval') AS awaiting_approval,
       count(DISTINCT r.reminder_id) FILTER (WHERE r.status = 'rejected') AS rejected,
       count(DISTINCT r.reminder_id) FILTER (WHERE r.status = 'cancelled') AS cancelled,
       count(DISTINCT r.reminder_id) FILTER (WHERE r.decided_by IS NOT NULL AND r.status = 'queued') AS approved
FROM reminders r
LEFT JOIN deliveries d ON d.reminder_id = r.reminder_id
WHERE r.tenant = %s
GROUP BY 1, 2, 3, 4
"""

SKIPS_SQL = """
SELECT coalesce(skip_reason, error_code, status) AS reason, status, count(*) AS n
FROM deliveries WHERE tenant = %s AND status IN ('skipped', 'failed', 'unknown')
GROUP BY 1, 2 ORDER BY n DESC
"""

# Per sent email: was it delivered, bounced, opened or clicked by a person, by a machine?
ENGAGEMENT_SQL = """
WITH sent AS (
    SELECT delivery_id, reminder_id, step_id, delivered_at, bounced_at
    FROM deliveries WHERE tenant = %s AND status = 'sent' AND channel = 'email'
), touched AS (
    SELECT i.delivery_id,
           bool_or(i.kind = 'open' AND i.classification = 'human') AS human_open,
           bool_or(i.kind = 'open' AND i.classification = 'machine') AS machine_open,
           bool_or(i.kind = 'click' AND i.classification = 'human') AS human_click,
           bool_or(i.kind = 'click' AND i.classification = 'machine') AS machine_click
    FROM interactions i WHERE i.tenant = %s GROUP BY i.delivery_id
)
SELECT s.step_id,
       count(*) AS sent,
       count(*) FILTER (WHERE s.delivered_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE s.bounced_at IS NOT NULL) AS bounced,
       count(*) FILTER (WHERE t.human_open) AS human_opened,
       count(*) FILTER (WHERE t.machine_open) AS machine_opened,
       count(*) FILTER (WHERE t.human_click) AS human_clicked,
       count(*) FILTER (WHERE t.machine_click) AS machine_clicked
FROM sent s LEFT JOIN touched t ON t.delivery_id = s.delivery_id
GROUP BY s.step_id
"""

MACHINE_SQL = """
SELECT kind, coalesce(machine_reason, 'none') AS reason, count(*) AS n
FROM interactions WHERE tenant = %s AND classification = 'machine'
GROUP BY 1, 2 ORDER BY n DESC
"""

# Sent reminders, whether a payment was credited to them, how much, and whether the invoice was
# paid by its due date (the question of the courtesy A/B test).
CONVERSION_SQL = """
WITH credited AS (
    SELECT reminder_id, count(DISTINCT payment_id) AS payments, currency, sum(credited_minor) AS minor
    FROM attributions WHERE tenant = %s GROUP BY reminder_id, currency
)
SELECT d.step_id, d.template, coalesce(d.variant, '') AS variant, d.channel, c.currency,
       count(DISTINCT d.reminder_id) AS sent,
       count(DISTINCT d.reminder_id) FILTER (WHERE c.payments > 0) AS converted,
       coalesce(sum(c.minor), 0) AS recovered_minor,
       count(DISTINCT d.reminder_id) FILTER (WHERE EXISTS (
           SELECT 1 FROM invoices v WHERE v.tenant = d.tenant AND v.invoice_id = ANY (d.invoice_ids)
             AND v.paid_at IS NOT NULL AND v.paid_at::date <= v.due_on)) AS paid_by_due_date
FROM deliveries d LEFT JOIN credited c ON c.reminder_id = d.reminder_id
WHERE d.tenant = %s AND d.status = 'sent'
GROUP BY 1, 2, 3, 4, 5
"""

RECOVERED_SQL = """
SELECT paid_at::date AS day, currency, sum(credited_minor) AS minor, count(DISTINCT payment_id) AS payments
FROM attributions WHERE tenant = %s GROUP BY 1, 2 ORDER BY 1
"""

INVOICES_SQL = """
SELECT invoice_id, number, currency, total_minor, amount_due_minor, issued_on, due_on, paid_at,
       state, pause_reason, closed_reason
FROM invoices WHERE tenant = %s
"""

STATES_SQL = """
SELECT state, coalesce(pause_reason, closed_reason, '') AS detail, count(*) AS n,
       sum(amount_due_minor) AS due_minor, currency
FROM invoices WHERE tenant = %s GROUP BY 1, 2, 5 ORDER BY 1, 2
"""

ACTIONS_SQL = """
SELECT action, coalesce(reason, '') AS reason, count(*) AS n
FROM customer_actions WHERE tenant = %s GROUP BY 1, 2 ORDER BY 1, n DESC
"""

PROMISES_SQL = """
SELECT a.invoice_id, a.promised_on, a.acted_at, v.paid_at, v.state
FROM customer_actions a JOIN invoices v ON v.invoice_id = a.invoice_id
WHERE a.tenant = %s AND a.action = 'promise_to_pay'
"""

DISPUTES_SQL = """
SELECT CASE WHEN d.key LIKE 'customer-%%' THEN 'action page' ELSE 'billing system' END AS origin,
       coalesce((d.value ->> 'resolved')::boolean, false) AS resolved, count(*) AS n
FROM invoices v, jsonb_each(v.facts -> 'disputes') d
WHERE v.tenant = %s GROUP BY 1, 2 ORDER BY 1, 2
"""

FUNNEL_SQL = """
SELECT
  (SELECT count(*) FROM invoices WHERE tenant = %s AND number NOT LIKE 'H-%%') AS invoices,
  (SELECT count(DISTINCT inv) FROM deliveries d, unnest(d.invoice_ids) inv
     WHERE d.tenant = %s AND d.status = 'sent') AS invoices_reminded,
  (SELECT count(*) FROM deliveries WHERE tenant = %s AND status = 'sent' AND channel = 'email') AS emails_sent,
  (SELECT count(*) FROM deliveries WHERE tenant = %s AND status = 'sent' AND channel = 'email'
     AND bounced_at IS NULL AND (delivered_at IS NOT NULL OR NOT EXISTS (
         SELECT 1 FROM deliveries x WHERE x.tenant = %s AND x.delivered_at IS NOT NULL))) AS delivered,
  (SELECT count(DISTINCT delivery_id) FROM interactions
     WHERE tenant = %s AND kind = 'open' AND classification = 'human') AS human_opened,
  (SELECT count(DISTINCT delivery_id) FROM interactions
     WHERE tenant = %s AND kind = 'click' AND classification = 'human') AS human_clicked,
  (SELECT count(DISTINCT invoice_id) FROM attributions WHERE tenant = %s) AS invoices_paid_after_reminder,
  (SELECT count(DISTINCT a.reminder_id) FROM attributions a JOIN deliveries d ON d.reminder_id = a.reminder_id
     WHERE a.tenant = %s AND d.channel = 'email' AND d.status = 'sent') AS emails_followed_by_payment
"""


def read_database(dsn: str, tenant: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as connection:
        one = (tenant,)
        return {
            "reminders": query(connection, REMINDERS_SQL, one),
            "skip_reasons": query(connection, SKIPS_SQL, one),
            "engagement": query(connection, ENGAGEMENT_SQL, (tenant, tenant)),
            "machine_reasons": query(connection, MACHINE_SQL, one),
            "conversion": query(connection, CONVERSION_SQL, (tenant, tenant)),
            "recovered_daily": query(connection, RECOVERED_SQL, one),
            "invoices": query(connection, INVOICES_SQL, one),
            "states": query(connection, STATES_SQL, one),
            "actions": query(connection, ACTIONS_SQL, one),
            "promises": query(connection, PROMISES_SQL, one),
            "disputes": query(connection, DISPUTES_SQL, one),
            "funnel": query(connection, FUNNEL_SQL, (tenant,) * 9)[0],
        }


def read_mock(url: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    def get(path: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/_mock/{path}", timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
    return get("stats"), get("config")


def load(args: argparse.Namespace) -> Data:
    ledger = json.loads(Path(args.ledger).read_text()) if args.ledger and Path(args.ledger).exists() else None
    period = (parse_time(ledger["start"]), parse_time(ledger.get("stopped_at") or ledger["end"])) if ledger else (None, None)
    data = Data(tenant=args.tenant, generated_at=datetime.now(UTC), period=period,
                to_eur={**DEFAULT_TO_EUR, **((ledger or {}).get("to_eur") or {})}, ledger=ledger)
    for key, value in read_database(args.dsn, args.tenant).items():
        setattr(data, key, value)
    if args.mock_url:
        data.mock, data.mock_config = read_mock(args.mock_url)
    return data


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ==============================================================================================
# Figures


def eur(data: Data, minor: int | float | None, currency: str | None) -> float:
    return float(minor or 0) / 100 * data.to_eur.get(currency or "EUR", 1.0)


def step_key(step: str) -> tuple[int, str]:
    return (STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER), step)


def grouped(rows: Iterable[dict[str, Any]], key: str, counters: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {name: 0 for name in counters})
    for row in rows:
        for name in counters:
            out[str(row[key])][name] += int(row[name] or 0)
    return dict(out)


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


@dataclass
class DsoFigures:
    period_days: float
    invoiced_eur: float
    open_actual_eur: float
    open_baseline_eur: float | None
    days_to_pay_actual: float
    days_to_pay_baseline: float | None
    paid_share_actual: float
    paid_share_baseline: float | None
    invoices: int

    @property
    def dso_actual(self) -> float:
        return self.open_actual_eur / self.invoiced_eur * self.period_days if self.invoiced_eur else 0.0

    @property
    def dso_baseline(self) -> float | None:
        if self.open_baseline_eur is None or not self.invoiced_eur:
            return None
        return self.open_baseline_eur / self.invoiced_eur * self.period_days


def dso(data: Data) -> DsoFigures | None:
    """DSO = receivables open at the end ÷ amount invoiced × days, over the invoices of the
    period; and the amount-weighted days from issue to payment (unpaid: counted to the end)."""
    ledger_invoices = {row["invoice_id"]: row for row in (data.ledger or {}).get("invoices", [])}
    rows = [row for row in data.invoices
            if (row["invoice_id"] in ledger_invoices if ledger_invoices else not str(row["number"] or "").startswith("H-"))]
    rows = [row for row in rows if row["closed_reason"] != "voided"]
    if not rows:
        return None
    first_issue = min(row["issued_on"] for row in rows)
    end = data.period[1] or data.generated_at
    period_days = max((end.date() - first_issue).days, 1)
    invoiced = open_actual = open_baseline = 0.0
    weighted_actual = weighted_baseline = 0.0
    paid_actual = paid_baseline = 0.0
    for row in rows:
        total = eur(data, row["total_minor"], row["currency"])
        invoiced += total
        open_actual += eur(data, row["amount_due_minor"], row["currency"])
        issued = datetime.combine(row["issued_on"], datetime.min.time(), UTC)
        paid_at = row["paid_at"] if row["state"] == "closed" and row["closed_reason"] == "paid" else None
        weighted_actual += total * (days_between(issued, paid_at) if paid_at else days_between(issued, end))
        paid_actual += total if paid_at else 0.0
        entry = ledger_invoices.get(row["invoice_id"])
        if entry is None:
            continue
        baseline = parse_time(entry["baseline_paid_at"]) if entry.get("baseline_paid_at") else None
        if row["closed_reason"] == "credited":
            continue  # credited away either way
        if baseline is not None and baseline <= end:
            weighted_baseline += total * days_between(issued, baseline)
            paid_baseline += total
        else:
            # Open at the end without reminders: what is due now, plus what reminders collected.
            open_baseline += total - eur(data, entry.get("credited_minor") or 0, row["currency"])
            weighted_baseline += total * days_between(issued, end)
    has_ledger = bool(ledger_invoices)
    return DsoFigures(
        period_days=period_days, invoiced_eur=invoiced, open_actual_eur=open_actual,
        open_baseline_eur=open_baseline if has_ledger else None,
        days_to_pay_actual=weighted_actual / invoiced if invoiced else 0.0,
        days_to_pay_baseline=weighted_baseline / invoiced if has_ledger and invoiced else None,
        paid_share_actual=paid_actual / invoiced if invoiced else 0.0,
        paid_share_baseline=paid_baseline / invoiced if has_ledger and invoiced else None,
        invoices=len(rows))


def days_between(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds() / 86400, 0.0)


@dataclass
class PromiseFigures:
    made: int = 0
    kept: int = 0
    broken: int = 0
    pending: int = 0


def promise_outcomes(data: Data, grace_days: int = 3) -> PromiseFigures:
    """Kept: paid by the promised date plus the policy's grace; broken: that day passed unpaid."""
    now = data.period[1] or data.generated_at
    figures = PromiseFigures()
    for row in data.promises:
        figures.made += 1
        deadline = datetime.combine(row["promised_on"] + timedelta(days=grace_days), datetime.max.time(), UTC)
        if row["paid_at"] is not None and row["paid_at"] <= deadline:
            figures.kept += 1
        elif deadline < now:
            figures.broken += 1
        else:
            figures.pending += 1
    return figures


def recovered_series(data: Data) -> list[tuple[date, float, int]]:
    daily: dict[date, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in data.recovered_daily:
        daily[row["day"]][0] += eur(data, row["minor"], row["currency"])
        daily[row["day"]][1] += int(row["payments"])
    return [(day, values[0], int(values[1])) for day, values in sorted(daily.items())]


def conversion_rows(data: Data, keys: Sequence[str]) -> list[dict[str, Any]]:
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in data.conversion:
        key = tuple(str(row[k] or "") for k in keys)
        entry = out.setdefault(key, {**dict(zip(keys, key, strict=True)), "sent": 0, "converted": 0, "recovered_eur": 0.0,
                                     "paid_by_due_date": 0})
        # Rows are split by the credited currency; a reminder is in one row (its invoices' currency).
        entry["sent"] += int(row["sent"])
        entry["converted"] += int(row["converted"])
        entry["recovered_eur"] += eur(data, row["recovered_minor"], row["currency"])
        entry["paid_by_due_date"] += int(row["paid_by_due_date"])
    return sorted(out.values(), key=lambda e: (step_key(e.get("step_id", ""))[0], tuple(e[k] for k in keys)))


# ==============================================================================================
# Text


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    cells = [[str(h) for h in headers]] + [[format_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = []
        for i, value in enumerate(row):
            left = (align[i] if i < len(align) else ("l" if i == 0 else "r")) == "l"
            parts.append(value.ljust(widths[i]) if left else value.rjust(widths[i]))
        lines.append("  " + "  ".join(parts).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class Sections:
    """The report as (title, text, html) pieces, so both outputs say the same thing."""

    parts: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, title: str, text: str, html_body: str) -> None:
        self.parts.append((title, text, html_body))


def build_sections(data: Data) -> Sections:
    sections = Sections()
    reminders_section(data, sections)
    engagement_section(data, sections)
    conversion_section(data, sections)
    dso_section(data, sections)
    actions_section(data, sections)
    provider_section(data, sections)
    return sections


def reminders_section(data: Data, sections: Sections) -> None:
    counters = ["decided", "sent", "skipped", "failed", "awaiting_approval", "approved", "rejected", "cancelled"]
    by_step = grouped(data.reminders, "step_id", counters)
    by_segment = grouped(data.reminders, "segment", counters)
    by_channel = grouped(data.reminders, "channel", counters)
    headers = ["", "decided", "sent", "skipped", "failed", "awaiting approval", "approved", "rejected", "cancelled"]

    def rows_of(groups: dict[str, dict[str, int]], order: Any = None) -> list[list[Any]]:
        keys = sorted(groups, key=order) if order else sorted(groups, key=lambda k: -groups[k]["decided"])
        return [[key, *(groups[key][c] for c in counters)] for key in keys]

    step_rows, segment_rows, channel_rows = rows_of(by_step, step_key), rows_of(by_segment), rows_of(by_channel)
    skips = [[row["reason"], row["status"], row["n"]] for row in data.skip_reasons]
    text = "\n\n".join([
        "By step\n" + table(["step", *headers[1:]], step_rows),
        "By segment\n" + table(["segment", *headers[1:]], segment_rows),
        "By channel\n" + table(["channel", *headers[1:]], channel_rows),
        "Not sent, and why\n" + (table(["reason", "status", "reminders"], skips, "ll") if skips else "  none"),
    ])
    chart = bar_chart([(row[0], row[2]) for row in step_rows if row[2]], "Messages sent by step", color="#3b6fd4")
    # Nine columns each: these tables take the full width, one under the other.
    body = (chart
            + html_table("By step", ["step", *headers[1:]], step_rows)
            + html_table("By segment", ["segment", *headers[1:]], segment_rows)
            + html_table("By channel", ["channel", *headers[1:]], channel_rows)
            + html_table("Not sent, and why", ["reason", "status", "reminders"], skips))
    sections.add("Reminders by step, segment and channel", text, body)


def engagement_section(data: Data, sections: Sections) -> None:
    groups = grouped(data.engagement, "step_id", ["sent", "delivered", "bounced", "human_opened", "machine_opened",
                                                   "human_clicked", "machine_clicked"])
    rows = []
    totals = defaultdict(int)
    for step in sorted(groups, key=step_key):
        g = groups[step]
        for key, value in g.items():
            totals[key] += value
        rows.append(engagement_row(step, g))
    if groups:
        rows.append(engagement_row("all email", totals))
    headers = ["step", "sent", "delivered", "bounced", "human opens", "machine opens", "human clicks", "machine clicks"]
    reasons = [[row["kind"], row["reason"], row["n"]] for row in data.machine_reasons]
    note = ("Rates are the share of sent emails with at least one open or click of that kind. Machines are "
            "privacy proxies (Apple Mail, Gmail), link scanners and link previews, classified by the tracker "
            "(docs/tracking.md); only people count in relance's rates.")
    text = (table(headers, rows) + "\n\n  Machine interactions by reason\n"
            + (table(["kind", "reason", "count"], reasons, "ll") if reasons else "  none") + f"\n\n  {note}")
    chart = grouped_bar_chart(
        [(r[0], [pct(r[4]), pct(r[5]), pct(r[6]), pct(r[7])]) for r in rows],
        ["human opens", "machine opens", "human clicks", "machine clicks"],
        ["#2f9e6e", "#b8c4d6", "#e07a2f", "#d9c3b0"], "Open and click rates by step (%)")
    body = (chart + html_table("", headers, rows) + f"<p class='note'>{html.escape(note)}</p>"
            + html_table("Machine interactions by reason", ["kind", "reason", "count"], reasons))
    sections.add("Opens and clicks: people and machines", text, body)


def pct(text: str) -> float:
    return float(text.split()[0]) if text and text != "-" else 0.0


def engagement_row(step: str, g: dict[str, int]) -> list[Any]:
    sent = g["sent"]
    return [step, sent, rate(g["delivered"], sent), rate(g["bounced"], sent), rate(g["human_opened"], sent),
            rate(g["machine_opened"], sent), rate(g["human_clicked"], sent), rate(g["machine_clicked"], sent)]


def conversion_section(data: Data, sections: Sections) -> None:
    by_step = conversion_rows(data, ["step_id"])
    by_template = conversion_rows(data, ["step_id", "template", "variant"])
    step_rows = [[r["step_id"], r["sent"], r["converted"], rate(r["converted"], r["sent"]), r["recovered_eur"]]
                 for r in by_step]
    template_rows = [[r["step_id"], r["template"], r["variant"] or "-", r["sent"], r["converted"],
                      rate(r["converted"], r["sent"]), rate(r["paid_by_due_date"], r["sent"]), r["recovered_eur"]]
                     for r in by_template]
    total = sum(r["recovered_eur"] for r in by_step)
    note = ("Converted: reminders a payment was credited to (the tracker's attribution model, last touch by "
            "default, within 30 days). Paid by due date: reminders whose invoice was paid on or before its "
            "due date, the question of the courtesy step's A/B test.")
    text = (table(["step", "sent", "converted", "conversion", "recovered (EUR)"], step_rows)
            + "\n\n  By template and A/B variant\n"
            + table(["step", "template", "variant", "sent", "converted", "conversion", "paid by due date",
                     "recovered (EUR)"], template_rows, "lll")
            + f"\n\n  Recovered after reminders: about EUR {total:,.0f}.\n  {note}")
    series = recovered_series(data)
    body = (line_chart(series, "Recovered amount after reminders (EUR, cumulative) and payments a day")
            + f"<p class='big'>About <strong>EUR {total:,.0f}</strong> recovered after reminders.</p>"
            + html_table("By step", ["step", "sent", "converted", "conversion", "recovered (EUR)"], step_rows)
            + html_table("By template and A/B variant", ["step", "template", "variant", "sent", "converted",
                                                           "conversion", "paid by due date", "recovered (EUR)"],
                         template_rows)
            + f"<p class='note'>{html.escape(note)}</p>")
    sections.add("Conversion and recovered amount", text, body)


DSO_EXPLANATION = (
    "With reminders: what happened, from relance's invoices table. Without reminders: the "
    "simulator draws for every invoice, before the run, when its customer would pay if never "
    "reminded (its baseline, from the customer's payment habits: on time, late by a typical "
    "delay, or not within the period). In the simulation reminders only ever bring a payment "
    "forward, so replacing each actual payment by its baseline gives the same invoices without "
    "reminders; the difference is what the reminders did. This is ground truth for a simulation "
    "only: with real customers the counterfactual needs a control group (a share of customers "
    "never reminded), which relance does not run.")


def dso_section(data: Data, sections: Sections) -> None:
    figures = dso(data)
    if figures is None:
        sections.add("Days sales outstanding", "  No invoices.", "<p>No invoices.</p>")
        return
    rows = [
        ["DSO (open at the end ÷ invoiced × days)", f"{figures.dso_actual:.1f}", opt(figures.dso_baseline)],
        ["days from issue to payment (amount-weighted)", f"{figures.days_to_pay_actual:.1f}", opt(figures.days_to_pay_baseline)],
        ["share of the amount paid by the end", f"{100 * figures.paid_share_actual:.1f} %",
         opt(None if figures.paid_share_baseline is None else 100 * figures.paid_share_baseline, " %")],
        ["open at the end (EUR)", f"{figures.open_actual_eur:,.0f}", opt(figures.open_baseline_eur, "", 0)],
    ]
    scope = (f"{figures.invoices:,} invoices, EUR {figures.invoiced_eur:,.0f} invoiced over {figures.period_days:.0f} "
             "days (from the first invoice to the end); unpaid invoices count until the end.")
    explanation = DSO_EXPLANATION if figures.dso_baseline is not None else (
        "Without a simulator ledger (--ledger) there is no counterfactual: " + DSO_EXPLANATION.split(". ", 1)[0] + ".")
    text = (table(["", "with reminders", "without reminders"], rows) + f"\n\n  {scope}\n\n  How the counterfactual "
            f"is estimated: {explanation}")
    comparison = ""
    if figures.dso_baseline is not None:
        comparison = pair_chart([("DSO (days)", figures.dso_actual, figures.dso_baseline),
                                 ("days to pay", figures.days_to_pay_actual, figures.days_to_pay_baseline or 0)],
                                "With and without reminders")
    body = (comparison + html_table("", ["", "with reminders", "without reminders"], rows)
            + f"<p class='note'>{html.escape(scope)}</p><p class='note'><strong>How the counterfactual is "
            f"estimated.</strong> {html.escape(explanation)}</p>")
    sections.add("Days sales outstanding, with and without reminders", text, body)


def state_rows(data: Data) -> list[list[Any]]:
    """Invoices by state at the end, all currencies together (amounts due in EUR)."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for row in data.states:
        key = (row["state"], row["detail"] or "-")
        totals[key][0] += int(row["n"])
        # A voided or credited invoice owes nothing, whatever amount it still records.
        if row["state"] != "closed":
            totals[key][1] += eur(data, row["due_minor"], row["currency"])
    return [[state, detail, int(n), due] for (state, detail), (n, due) in sorted(totals.items())]


def opt(value: float | None, suffix: str = "", decimals: int = 1) -> str:
    return "-" if value is None else f"{value:,.{decimals}f}{suffix}"


def actions_section(data: Data, sections: Sections) -> None:
    promises = promise_outcomes(data)
    actions = [[row["action"], row["reason"] or "-", row["n"]] for row in data.actions]
    disputes = [[row["origin"], "resolved" if row["resolved"] else "open", row["n"]] for row in data.disputes]
    states = state_rows(data)
    promise_rows = [["made", promises.made], ["kept (paid by the date + 3 days' grace)", promises.kept],
                    ["broken", promises.broken], ["not yet due", promises.pending]]
    text = ("Customer actions on the signed pages\n" + (table(["action", "reason", "count"], actions, "ll") if actions else "  none")
            + "\n\nPromises to pay\n" + table(["", "count"], promise_rows)
            + f"\n  kept: {rate(promises.kept, promises.kept + promises.broken)} of those due"
            + "\n\nDisputes\n" + (table(["raised in", "status", "count"], disputes, "ll") if disputes else "  none")
            + "\n\nInvoices at the end\n" + table(["state", "detail", "invoices", "due (EUR)"], states, "ll"))
    body = ("<div class='grid'>" + html_table("Customer actions on the signed pages", ["action", "reason", "count"], actions)
            + html_table("Promises to pay", ["", "count"], promise_rows)
            + html_table("Disputes", ["raised in", "status", "count"], disputes) + "</div>"
            + html_table("Invoices at the end", ["state", "detail", "invoices", "due (EUR)"], states))
    sections.add("Disputes, promises and customer actions", text, body)


def provider_section(data: Data, sections: Sections) -> None:
    lines = []
    if data.mock:
        faults = data.mock.get("faults", {})
        lines.append(f"Mock Postmark: {data.mock.get('messages_accepted', 0):,} messages accepted, "
                     f"{data.mock.get('duplicate_messages', 0):,} duplicates (the same send id accepted twice), "
                     f"{data.mock.get('messages_rejected', 0):,} refused, {data.mock.get('requests_total', 0):,} requests; "
                     f"faults: {', '.join(f'{k} {v}' for k, v in faults.items() if v) or 'none'}.")
    out_dir = (data.mock_config or {}).get("out_dir")
    if out_dir:
        lines.append(f"Rendered emails: {out_dir} (<send id>.eml opens in any mail client; <send id>.html in a browser).")
    else:
        lines.append("Rendered emails: at the mock provider (GET /_mock/messages) or, with the file provider, in "
                     "sender.providers.file.folder (.local/mail with `make run`). SMS: <send id>.sms.txt there.")
    if data.ledger:
        counters = data.ledger.get("counters", {})
        http = counters.get("http", {})
        lines.append(f"Simulator: {sum(counters.get('published', {}).values()):,} billing events published; "
                     f"HTTP answers {dict(sorted(http.items())) if http else '-'}.")
    text = "\n".join(f"  {line}" for line in lines)
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    sections.add("Provider and rendered emails", text, body)


def headline(data: Data) -> list[tuple[str, str]]:
    f = data.funnel
    figures = dso(data)
    recovered = sum(value for _, value, _ in recovered_series(data))
    cards = [("invoices", f"{f.get('invoices', 0):,}"), ("reminded", f"{f.get('invoices_reminded', 0):,}"),
             ("emails sent", f"{f.get('emails_sent', 0):,}"),
             ("recovered after reminders", f"EUR {recovered:,.0f}")]
    if figures is not None:
        cards.append(("DSO with reminders", f"{figures.dso_actual:.1f} days"))
        if figures.dso_baseline is not None:
            cards.append(("DSO without", f"{figures.dso_baseline:.1f} days"))
    return cards


def render_text(data: Data, sections: Sections) -> str:
    start, end = data.period
    period = f"{start:%Y-%m-%d} to {end:%Y-%m-%d}" if start and end else "whole database"
    out = [f"relance report: tenant {data.tenant}, {period}", "=" * 72,
           "  " + " | ".join(f"{name} {value}" for name, value in headline(data)), "",
           "Funnel (emails)\n" + table(["stage", "count"], [[k.replace("_", " "), v] for k, v in data.funnel.items()])]
    for title, text, _ in sections.parts:
        out += ["", title, "-" * len(title), text]
    return "\n".join(out) + "\n"


# ==============================================================================================
# HTML and SVG

PALETTE = ["#3b6fd4", "#2f9e6e", "#e07a2f", "#8e5bd0", "#d94f70", "#2aa3b8", "#9a8c2f"]


def esc(value: Any) -> str:
    return html.escape(format_cell(value))


def html_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return f"<div class='card'><h3>{html.escape(title)}</h3><p class='muted'>None.</p></div>" if title else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='{'l' if is_label(v) else 'n'}'>{esc(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    caption = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f"<div class='card'>{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def is_label(value: Any) -> bool:
    """Words align left, figures (numbers, rates, amounts as text) right."""
    return isinstance(value, str) and not re.fullmatch(r"[-+]?[\d,.]+( ?%)?|-", value.strip())


def bar_chart(items: list[tuple[str, float]], title: str, color: str = "#3b6fd4") -> str:
    if not items:
        return ""
    width, bar, gap, label_width = 760, 22, 8, 210
    height = len(items) * (bar + gap) + 40
    top = max(value for _, value in items) or 1
    parts = [f"<text x='0' y='16' class='t'>{html.escape(title)}</text>"]
    for index, (label, value) in enumerate(items):
        y = 30 + index * (bar + gap)
        length = (width - label_width - 80) * value / top
        parts.append(f"<text x='{label_width - 8}' y='{y + bar * 0.7:.0f}' text-anchor='end'>{html.escape(str(label))}</text>"
                     f"<rect x='{label_width}' y='{y}' width='{max(length, 1):.1f}' height='{bar}' rx='3' fill='{color}'/>"
                     f"<text x='{label_width + length + 6:.1f}' y='{y + bar * 0.7:.0f}'>{format_cell(value)}</text>")
    return svg(width, height, parts)


def grouped_bar_chart(items: list[tuple[str, list[float]]], series: list[str], colors: list[str], title: str) -> str:
    if not items:
        return ""
    width, height, left, bottom = 760, 300, 44, 250
    top_value = max([max(values) for _, values in items] + [1.0])
    top_value = math.ceil(top_value / 10) * 10
    group_width = (width - left - 10) / len(items)
    bar = min(18.0, group_width / (len(series) + 1))
    parts = [f"<text x='0' y='16' class='t'>{html.escape(title)}</text>"]
    for tick in range(0, int(top_value) + 1, max(int(top_value) // 5, 1)):
        y = bottom - (bottom - 40) * tick / top_value
        parts.append(f"<line x1='{left}' x2='{width}' y1='{y:.1f}' y2='{y:.1f}' class='grid'/>"
                     f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' class='s'>{tick}</text>")
    for gi, (label, values) in enumerate(items):
        x0 = left + gi * group_width + (group_width - bar * len(series)) / 2
        for si, value in enumerate(values):
            h = (bottom - 40) * value / top_value
            parts.append(f"<rect x='{x0 + si * bar:.1f}' y='{bottom - h:.1f}' width='{bar - 2:.1f}' height='{max(h, 0.5):.1f}' "
                         f"fill='{colors[si]}'><title>{html.escape(label)}, {html.escape(series[si])}: {value:.1f} %</title></rect>")
        parts.append(f"<text x='{left + gi * group_width + group_width / 2:.1f}' y='{bottom + 16}' text-anchor='middle' "
                     f"class='s'>{html.escape(short_label(label))}</text>")
    legend_x = left
    for si, name in enumerate(series):
        parts.append(f"<rect x='{legend_x}' y='{height - 16}' width='12' height='12' fill='{colors[si]}'/>"
                     f"<text x='{legend_x + 16}' y='{height - 6}' class='s'>{html.escape(name)}</text>")
        legend_x += 24 + 7 * len(name)
    return svg(width, height, parts)


SHORT_LABELS = {"first_reminder": "1st", "second_reminder": "2nd", "firm_reminder": "firm", "sms_reminder": "sms",
                "final_notice": "final", "update_payment_method": "card 1", "payment_method_sms": "card sms",
                "payment_method_firm": "card 2", "all email": "all"}


def short_label(step: str) -> str:
    """Step names short enough to sit under a group of bars."""
    return SHORT_LABELS.get(step, step.replace("_reminder", "")[:10])


def funnel_chart(stages: list[tuple[str, int]]) -> str:
    if not stages or not stages[0][1]:
        return ""
    width, row, left = 760, 44, 250
    height = len(stages) * row + 30
    top = max(value for _, value in stages) or 1
    parts = ["<text x='0' y='16' class='t'>From invoice to payment</text>"]
    usable = width - left - 20
    for index, (label, value) in enumerate(stages):
        w = max(usable * value / top, 2)
        x = left + (usable - w) / 2
        y = 28 + index * row
        color = PALETTE[index % len(PALETTE)]
        share = "" if index == 0 else f" ({100 * value / stages[0][1]:.0f} %)"
        figure = f"{value:,}{share}"
        # A figure that does not fit in its bar goes beside it, in ink.
        inside = w > 9 * len(figure)
        label_x = left + usable / 2 if inside else x + w + 8
        style = " class='on'" if inside else ""
        parts.append(f"<text x='{left - 10}' y='{y + 24}' text-anchor='end'>{html.escape(label)}</text>"
                     f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{row - 8}' rx='5' fill='{color}' opacity='0.9'/>"
                     f"<text x='{label_x:.1f}' y='{y + 24}' text-anchor='{'middle' if inside else 'start'}'"
                     f"{style}>{figure}</text>")
    return svg(width, height, parts)


def line_chart(series: list[tuple[date, float, int]], title: str) -> str:
    if not series:
        return "<p class='muted'>No payment was credited to a reminder.</p>"
    width, height, left, bottom, right = 760, 300, 70, 250, 50
    days = [(day, value, count) for day, value, count in series]
    first, last = days[0][0], days[-1][0]
    span = max((last - first).days, 1)
    cumulative, total = [], 0.0
    for day, value, _ in days:
        total += value
        cumulative.append((day, total))
    top = total or 1
    top_count = max(count for _, _, count in days) or 1

    def x(day: date) -> float:
        return left + (width - left - right) * (day - first).days / span

    def y(value: float) -> float:
        return bottom - (bottom - 40) * value / top

    parts = [f"<text x='0' y='16' class='t'>{html.escape(title)}</text>"]
    for i in range(5):
        value = top * i / 4
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y(value):.1f}' y2='{y(value):.1f}' class='grid'/>"
                     f"<text x='{left - 6}' y='{y(value) + 4:.1f}' text-anchor='end' class='s'>{short_money(value)}</text>")
    bar_width = min(max((width - left - right) / (span + 1) - 1, 1), 14)
    for day, _, count in days:
        h = 60 * count / top_count
        parts.append(f"<rect x='{x(day) - bar_width / 2:.1f}' y='{bottom - h:.1f}' width='{bar_width:.1f}' height='{h:.1f}' "
                     f"fill='#e07a2f' opacity='0.45'><title>{day}: {count} payments</title></rect>")
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(day):.1f},{y(value):.1f}" for i, (day, value) in enumerate(cumulative))
    area = path + f" L{x(last):.1f},{bottom} L{x(first):.1f},{bottom} Z"
    parts.append(f"<path d='{area}' fill='#3b6fd4' opacity='0.12'/><path d='{path}' fill='none' stroke='#3b6fd4' stroke-width='2.5'/>")
    for tick in range(0, span + 1, max(span // 6, 1)):
        day = first + timedelta(days=tick)
        parts.append(f"<text x='{x(day):.1f}' y='{bottom + 18}' text-anchor='middle' class='s'>{day:%d %b}</text>")
    parts.append(f"<text x='{x(last):.1f}' y='{y(total) - 8:.1f}' text-anchor='end' class='s'>EUR {total:,.0f}</text>")
    return svg(width, height, parts)


def pair_chart(items: list[tuple[str, float, float]], title: str) -> str:
    width, row, left = 760, 64, 140
    height = len(items) * row + 50
    top = max([max(a, b) for _, a, b in items] + [1.0])
    usable = width - left - 120
    parts = [f"<text x='0' y='16' class='t'>{html.escape(title)}</text>"]
    for index, (label, actual, baseline) in enumerate(items):
        y = 32 + index * row
        parts.append(f"<text x='{left - 10}' y='{y + 24}' text-anchor='end'>{html.escape(label)}</text>")
        for offset, (value, color, name) in enumerate(((actual, "#2f9e6e", "with reminders"), (baseline, "#b8c4d6", "without"))):
            w = usable * value / top
            yy = y + offset * 24
            parts.append(f"<rect x='{left}' y='{yy}' width='{max(w, 1):.1f}' height='20' rx='3' fill='{color}'/>"
                         f"<text x='{left + w + 6:.1f}' y='{yy + 15}' class='s'>{value:.1f} ({name})</text>")
    return svg(width, height, parts)


def short_money(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2g}M" if value < 1e7 else f"{value / 1e6:.0f}M"
    if value >= 1e3:
        return f"{value / 1e3:.2g}k" if value < 1e4 else f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def svg(width: int, height: int, parts: list[str]) -> str:
    return (f"<figure><svg viewBox='0 0 {width} {height}' width='100%' role='img' xmlns='http://www.w3.org/2000/svg'>"
            + "".join(parts) + "</svg></figure>")


STYLE = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f6f7f9;--card:#fff;--accent:#3b6fd4}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{background:linear-gradient(120deg,#20324f,#3b6fd4);color:#fff;padding:28px 32px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:0;opacity:.85}
main{max-width:1100px;margin:0 auto;padding:24px 20px 60px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:-40px 0 24px}
.kpi{background:var(--card);border-radius:10px;padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08);min-width:150px;flex:1}
.kpi b{display:block;font-size:22px}.kpi span{color:var(--muted);font-size:13px}
section{background:var(--card);border-radius:12px;padding:20px 24px;margin:0 0 20px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
section h2{margin:0 0 12px;font-size:19px}h3{font-size:14px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:8px 24px}
table{border-collapse:collapse;width:100%;font-size:13.5px;font-variant-numeric:tabular-nums}
th{text-align:right;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);padding:5px 8px}
th:first-child{text-align:left}td{padding:5px 8px;border-bottom:1px solid var(--line)}td.n{text-align:right}td.l{text-align:left}
figure{margin:6px 0 12px}svg text{font-size:13px;fill:var(--ink)}svg text.t{font-size:14px;font-weight:600}
svg text.s{font-size:11.5px;fill:var(--muted)}svg text.on{fill:#fff;font-weight:600}svg line.grid{stroke:var(--line)}
.note,.muted{color:var(--muted);font-size:13px}.big{font-size:17px}footer{color:var(--muted);font-size:12px;text-align:center}
"""


def render_html(data: Data, sections: Sections) -> str:
    start, end = data.period
    period = f"{start:%d %B %Y} – {end:%d %B %Y}" if start and end else "the whole database"
    f = data.funnel
    funnel = funnel_chart([
        ("emails sent", int(f.get("emails_sent", 0))), ("delivered", int(f.get("delivered", 0))),
        ("opened by a person", int(f.get("human_opened", 0))), ("clicked by a person", int(f.get("human_clicked", 0))),
        ("followed by a payment", int(f.get("emails_followed_by_payment", 0))),
    ])
    funnel_note = ("Emails at each stage. The stages are not nested: opens are undercounted (blocked images; "
                   "Gmail's and Apple's proxies count as machines) and many customers pay by transfer without "
                   "clicking. A payment follows an email when the tracker credited it to that email.")
    cards = "".join(f"<div class='kpi'><b>{html.escape(value)}</b><span>{html.escape(name)}</span></div>"
                    for name, value in headline(data))
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, _, content in sections.parts)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width,"
            f"initial-scale=1'><title>relance report: {html.escape(data.tenant)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>What relance did for {html.escape(data.tenant)}</h1><p>{html.escape(period)} · generated "
            f"{data.generated_at:%Y-%m-%d %H:%M} UTC</p></header><main><div class='cards'>{cards}</div>"
            f"<section><h2>Funnel</h2>{funnel or '<p class=muted>No email was sent.</p>'}"
            f"<p class='note'>{html.escape(funnel_note)}</p></section>{body}"
            f"<footer>relance · scripts/demo_report.py · amounts in EUR at fixed approximate rates</footer></main></body></html>")


# ==============================================================================================
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", required=True, help="PostgreSQL connection string of relance's database")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--mock-url", help="the mock Postmark (its /_mock/stats and /_mock/config)")
    parser.add_argument("--ledger", help="the simulator's ledger (--ledger of simulate_billing.py)")
    parser.add_argument("--html", type=Path, help="also write the report as a self-contained HTML page here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = load(args)
    except Exception as error:  # noqa: BLE001 (the message is the useful part for a person)
        print(f"Cannot read the report's data: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    sections = build_sections(data)
    sys.stdout.write(render_text(data, sections))
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(data, sections), encoding="utf-8")
        print(f"\nHTML report: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
