"""Tests of scripts/demo_report.py on data shaped like its SQL answers: the figures (DSO with
and without reminders, promises kept, conversion by variant) and a self-contained HTML page.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import re
import sys
import unittest
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import demo_report as report  # noqa: E402

UTC = timezone.utc
START = datetime(2026, 11, 2, tzinfo=UTC)
END = START + timedelta(days=90)


def invoice(invoice_id: str, total: int, issued: date, paid: datetime | None, due: int = 0,
            currency: str = "EUR", closed: str | None = None) -> dict:
    return {"invoice_id": invoice_id, "number": f"F-{invoice_id}", "currency": currency, "total_minor": total,
            "amount_due_minor": due, "issued_on": issued, "due_on": issued + timedelta(days=30), "paid_at": paid,
            "state": "closed" if closed else "overdue", "pause_reason": None, "closed_reason": closed}


def sample() -> report.Data:
    data = report.Data(tenant="demo", generated_at=END, period=(START, END), to_eur=dict(report.DEFAULT_TO_EUR))
    issued = START.date()
    # Two invoices of 1,000 EUR: one paid on day 20 after reminders (unreminded, it would have
    # been paid after the end), one never paid; and a voided one, left out.
    data.invoices = [
        invoice("a", 100_000, issued, START + timedelta(days=20), closed="paid"),
        invoice("b", 100_000, issued, None, due=100_000),
        invoice("v", 50_000, issued, None, closed="voided"),
    ]
    data.ledger = {"start": "2026-11-02T00:00:00Z", "end": "2027-01-31T00:00:00Z", "invoices": [
        {"invoice_id": "a", "baseline_paid_at": "2027-02-15T00:00:00Z", "credited_minor": 0},
        {"invoice_id": "b", "baseline_paid_at": None, "credited_minor": 0},
        {"invoice_id": "v", "baseline_paid_at": None, "credited_minor": 0},
    ], "counters": {"published": {"billing.invoice.issued": 3}, "http": {"pixel_human:200": 4}}}
    data.reminders = [
        {"step_id": "courtesy", "segment": "standard", "channel": "email", "kind": "message", "decided": 10, "sent": 8,
         "skipped": 2, "failed": 0, "awaiting_approval": 0, "rejected": 0, "cancelled": 0, "approved": 0},
        {"step_id": "first_reminder", "segment": "vip", "channel": "email", "kind": "message", "decided": 4, "sent": 3,
         "skipped": 0, "failed": 0, "awaiting_approval": 1, "rejected": 0, "cancelled": 0, "approved": 3},
    ]
    data.skip_reasons = [{"reason": "invoice_paid", "status": "skipped", "n": 2}]
    data.engagement = [{"step_id": "courtesy", "sent": 8, "delivered": 8, "bounced": 0, "human_opened": 4,
                        "machine_opened": 6, "human_clicked": 2, "machine_clicked": 3}]
    data.machine_reasons = [{"kind": "open", "reason": "known_proxy", "n": 6}]
    data.conversion = [
        {"step_id": "courtesy", "template": "courtesy_reminder", "variant": "invoice_first", "channel": "email",
         "currency": None, "sent": 3, "converted": 0, "recovered_minor": 0, "paid_by_due_date": 1},
        {"step_id": "courtesy", "template": "courtesy_reminder", "variant": "invoice_first", "channel": "email",
         "currency": "EUR", "sent": 1, "converted": 1, "recovered_minor": Decimal(100_000), "paid_by_due_date": 1},
        {"step_id": "courtesy", "template": "courtesy_reminder_date_first", "variant": "date_first", "channel": "email",
         "currency": "USD", "sent": 4, "converted": 2, "recovered_minor": Decimal(50_000), "paid_by_due_date": 3},
    ]
    data.recovered_daily = [{"day": date(2026, 11, 22), "currency": "EUR", "minor": Decimal(100_000), "payments": 1},
                            {"day": date(2026, 11, 25), "currency": "USD", "minor": Decimal(50_000), "payments": 2}]
    data.states = [{"state": "closed", "detail": "paid", "n": 1, "due_minor": Decimal(0), "currency": "EUR"}]
    data.actions = [{"action": "promise_to_pay", "reason": "", "n": 3}, {"action": "dispute", "reason": "quality", "n": 1}]
    data.promises = [
        {"invoice_id": "a", "promised_on": date(2026, 11, 18), "acted_at": START, "paid_at": START + timedelta(days=20), "state": "closed"},
        {"invoice_id": "b", "promised_on": date(2026, 12, 1), "acted_at": START, "paid_at": None, "state": "overdue"},
        {"invoice_id": "c", "promised_on": date(2027, 1, 30), "acted_at": START, "paid_at": None, "state": "paused"},
    ]
    data.disputes = [{"origin": "action page", "resolved": False, "n": 1}]
    data.funnel = {"invoices": 3, "invoices_reminded": 2, "emails_sent": 11, "delivered": 11, "human_opened": 4,
                   "human_clicked": 2, "invoices_paid_after_reminder": 1,
                   "emails_followed_by_payment": 1}
    data.mock = {"messages_accepted": 11, "duplicate_messages": 0, "messages_rejected": 0, "requests_total": 5, "faults": {}}
    data.mock_config = {"out_dir": "/tmp/demo/mail"}
    return data


class FiguresTest(unittest.TestCase):
    def test_dso_with_and_without_reminders(self) -> None:
        figures = report.dso(sample())
        self.assertEqual(figures.invoices, 2, "voided invoices are left out")
        self.assertEqual(figures.period_days, 90)
        self.assertAlmostEqual(figures.invoiced_eur, 2000.0)
        # With reminders 1,000 of 2,000 is open at the end: 45 days. Without, both are open: 90.
        self.assertAlmostEqual(figures.dso_actual, 45.0)
        self.assertAlmostEqual(figures.dso_baseline, 90.0)
        # Days to pay, unpaid counted to the end: (20 + 90) / 2 with reminders, 90 without.
        self.assertAlmostEqual(figures.days_to_pay_actual, 55.0)
        self.assertAlmostEqual(figures.days_to_pay_baseline, 90.0)
        self.assertAlmostEqual(figures.paid_share_actual, 0.5)
        self.assertAlmostEqual(figures.paid_share_baseline, 0.0)

    def test_without_a_ledger_there_is_no_counterfactual(self) -> None:
        data = sample()
        data.ledger = None
        figures = report.dso(data)
        self.assertIsNone(figures.dso_baseline)
        self.assertAlmostEqual(figures.dso_actual, 45.0)

    def test_promises_are_kept_broken_or_pending(self) -> None:
        outcome = report.promise_outcomes(sample())
        self.assertEqual((outcome.made, outcome.kept, outcome.broken, outcome.pending), (3, 0, 2, 1))
        data = sample()
        data.promises[0]["promised_on"] = date(2026, 11, 20)  # paid on the 22nd: within 3 days' grace
        self.assertEqual(report.promise_outcomes(data).kept, 1)

    def test_conversion_adds_up_per_variant(self) -> None:
        rows = {r["variant"]: r for r in report.conversion_rows(sample(), ["step_id", "template", "variant"])}
        self.assertEqual((rows["invoice_first"]["sent"], rows["invoice_first"]["converted"]), (4, 1))
        self.assertAlmostEqual(rows["invoice_first"]["recovered_eur"], 1000.0)
        self.assertAlmostEqual(rows["date_first"]["recovered_eur"], 500 * 0.92)


class RenderingTest(unittest.TestCase):
    def test_the_text_report_has_every_section(self) -> None:
        data = sample()
        text = report.render_text(data, report.build_sections(data))
        for heading in ("Reminders by step, segment and channel", "Opens and clicks", "Conversion and recovered amount",
                        "Days sales outstanding", "Disputes, promises", "Provider and rendered emails"):
            self.assertIn(heading, text)
        self.assertIn("How the counterfactual is estimated", text)
        self.assertIn("/tmp/demo/mail", text)
        self.assertIn("50.0 %", text)  # human opens of courtesy: 4 of 8

    def test_the_html_page_is_self_contained_with_charts(self) -> None:
        data = sample()
        page = report.render_html(data, report.build_sections(data))
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        self.assertGreaterEqual(page.count("<svg"), 4)
        self.assertIn("From invoice to payment", page)
        self.assertIn("Recovered amount", page)
        external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
        self.assertEqual(external, [], "nothing is loaded from elsewhere")
        self.assertNotIn("<script", page)

    def test_an_empty_database_still_gives_a_report(self) -> None:
        data = report.Data(tenant="empty", generated_at=END, period=(None, None), to_eur=dict(report.DEFAULT_TO_EUR))
        data.funnel = {"invoices": 0, "emails_sent": 0}
        sections = report.build_sections(data)
        self.assertIn("No invoices", report.render_text(data, sections))
        self.assertIn("No email was sent", report.render_html(data, sections))


if __name__ == "__main__":
    unittest.main()
