"""Helper of scripts/fuzz-admin-api.sh: the data a fuzz run starts from, fixed probes, and the
summary of what was found.

    fuzz_admin_api.py seed --topic-prefix PREFIX     SQL that seeds a migrated database (stdout)
    fuzz_admin_api.py probe --spec S --base-url U --token T --out PROBES.json
                                                     sends the fixed probes (needs schemathesis)
    fuzz_admin_api.py summary REPORT.ndjson [--probes PROBES.json] [--json OUT] ...
                                                     the failures grouped by cause; exits 1 on any

The seed gives the fuzzer something to find: customers, open invoices, reminders awaiting
approval (and one already queued) and dead letters. Their ids are fixed, and listed in
scripts/fuzz-admin-api.toml as fuzz dictionaries, so that schemathesis draws them for path
parameters alongside the random values it generates: both the "found" and the "not found"
answers of every route are checked against docs/admin-api.yaml. The database is new for every
run, so the ids never collide. `seed` and `summary` need only the standard library.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]

TENANT = "acme"
CUSTOMERS = ["cus_fuzz_1", "cus_fuzz_2"]
# invoice id -> customer id; the second customer has none (a pause of it touches no invoice).
INVOICES = {"inv_fuzz_1": "cus_fuzz_1", "inv_fuzz_2": "cus_fuzz_1"}
# reminder id -> (invoice ids, kind, status)
REMINDERS = {
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000001": (["inv_fuzz_1"], "message", "awaiting_approval"),
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000002": (["inv_fuzz_2"], "message", "awaiting_approval"),
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000003": (["inv_fuzz_1"], "task", "awaiting_approval"),
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000004": (["inv_fuzz_1"], "message", "queued"),
    # For the probes only (not in the fuzz dictionaries): each is decided by one probe.
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000005": (["inv_fuzz_2"], "message", "awaiting_approval"),
    "5b0c2d9e-1f3a-4c6b-8d7e-000000000006": (["inv_fuzz_2"], "message", "awaiting_approval"),
}
DEAD_LETTER_REASONS = ["schema_violation", "unknown_event_type"]


def sql_text(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def sql_json(value: Any) -> str:
    return sql_text(json.dumps(value, sort_keys=True)) + "::jsonb"


def rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def versioned(value: Any, version: dict[str, Any]) -> dict[str, Any]:
    return {"value": value, "version": version}


def invoice_facts(invoice_id: str, customer_id: str, issued_on: date, due_on: date, total: int) -> dict[str, Any]:
    """relance_domain::Invoice as the ingestor stores it after one `invoice.issued` event."""
    version = {
        "time": rfc3339(datetime.combine(issued_on, datetime.min.time(), timezone.utc) + timedelta(hours=8)),
        "event_id": f"issued_{invoice_id}",
        "revision": 0,
    }
    return {
        "tenant": TENANT,
        "invoice_id": invoice_id,
        "customer_id": customer_id,
        "issued": version,
        "number": versioned(f"F-{invoice_id}", version),
        "issued_on": versioned(issued_on.isoformat(), version),
        "due_on": versioned(due_on.isoformat(), version),
        "total": versioned({"currency": "EUR", "amount_minor": total}, version),
        "order_reference": versioned(None, version),
        "payment_url": versioned(None, version),
        "contact": versioned(None, version),
        "description": versioned(None, version),
        "credits": {},
        "payments": {},
        "refunds": {},
        "disputes": {},
        "payment_failures": {},
        "voided": None,
        "written_off": None,
        "promise": None,
        "hold": None,
        "approval": None,
        "payment_claim": None,
        "escalation": None,
    }


def customer_facts(customer_id: str, since: date) -> dict[str, Any]:
    """relance_domain::CustomerFacts after one `customer.upserted` event."""
    return {
        "tenant": TENANT,
        "customer_id": customer_id,
        "profile": versioned(
            {
                "legal_name": f"Customer {customer_id}",
                "locale": "fr-FR",
                "timezone": "Europe/Paris",
                "country": "FR",
                "contact": {
                    "email": f"{customer_id}@example.com",
                    "phone": "+33612345678",
                    "first_name": "Camille",
                    "last_name": "Durand",
                },
                "segment": {
                    "vip": False,
                    "tags": [],
                    "risk_level": None,
                    "customer_since": None,
                    "preferred_channel": None,
                },
            },
            {
                "time": rfc3339(datetime.combine(since, datetime.min.time(), timezone.utc)),
                "event_id": f"profile-{customer_id}",
                "revision": 1,
            },
        ),
    }


def reminder_command(reminder_id: str, invoice_ids: list[str], kind: str, customer_id: str,
                     topic_prefix: str, scheduled_for: datetime, due_on: date, issued_on: date,
                     total: int) -> tuple[str, dict[str, Any]]:
    """The stored command of a reminder: a relance.reminder.send or relance.task.create event."""
    when = rfc3339(scheduled_for)
    envelope = {
        "id": reminder_id,
        "time": when,
        "source": "urn:relance:scheduler",
        "tenant": TENANT,
        "subject": invoice_ids[0],
        "specversion": "1.0",
        "partitionkey": customer_id,
        "schemaversion": 1,
        "datacontenttype": "application/json",
    }
    if kind == "message":
        envelope["type"] = "relance.reminder.send"
        envelope["dataschema"] = "https://relance.dev/schemas/relance.reminder.send.v1.json"
        envelope["data"] = {
            "step": {"id": "first_reminder", "tone": "friendly", "index": 1, "trigger": "due_date", "offset_days": 3},
            "locale": "fr-FR",
            "policy": {"id": "default", "version": 1},
            "attempt": 1,
            "channel": "email",
            "segment": "vip",
            "invoices": [
                {
                    "invoice_id": invoice_id,
                    "number": f"F-{invoice_id}",
                    "issued_on": issued_on.isoformat(),
                    "due_on": due_on.isoformat(),
                    "total": {"currency": "EUR", "amount_minor": total},
                    "amount_due": {"currency": "EUR", "amount_minor": total},
                }
                for invoice_id in invoice_ids
            ],
            "template": {"id": "first_reminder"},
            "timezone": "Europe/Paris",
            "recipient": {
                "email": f"{customer_id}@example.com",
                "phone": "+33612345678",
                "company": f"Customer {customer_id}",
                "first_name": "Camille",
                "last_name": "Durand",
            },
            "customer_id": customer_id,
            "reminder_id": reminder_id,
            "scheduled_for": when,
            "idempotency_key": f"fuzz:{reminder_id}",
            "response_deadline": (scheduled_for.date() + timedelta(days=7)).isoformat(),
        }
        return f"{topic_prefix}.relance.reminders", envelope
    # A task: the example of proto/examples, with this reminder's ids.
    example = json.loads((ROOT / "proto" / "examples" / "relance.task.create.v1.json").read_text())
    envelope["type"] = example["type"]
    envelope["dataschema"] = example["dataschema"]
    envelope["data"] = example["data"] | {
        "task_id": reminder_id,
        "idempotency_key": f"fuzz:{reminder_id}",
        "customer_id": customer_id,
        "invoice_ids": invoice_ids,
        "due_on": scheduled_for.date().isoformat(),
        "amount_due": [{"amount_minor": total, "currency": "EUR"}],
    }
    return f"{topic_prefix}.relance.tasks", envelope


def seed_sql(topic_prefix: str, today: date) -> str:
    issued_on = today - timedelta(days=50)
    due_on = today - timedelta(days=20)
    scheduled_for = datetime.combine(today, datetime.min.time(), timezone.utc) + timedelta(hours=9)
    statements = ["BEGIN;"]
    for customer_id in CUSTOMERS:
        statements.append(
            "INSERT INTO customers (customer_id, tenant, legal_name, first_name, last_name, email, phone,"
            " locale, timezone, country, customer_since, first_invoice_on, facts) VALUES ("
            f"{sql_text(customer_id)}, {sql_text(TENANT)}, {sql_text('Customer ' + customer_id)}, 'Camille',"
            f" 'Durand', {sql_text(customer_id + '@example.com')}, '+33612345678', 'fr-FR', 'Europe/Paris',"
            f" 'FR', '{issued_on}', '{issued_on}', {sql_json(customer_facts(customer_id, issued_on))});"
        )
    totals = {}
    for index, (invoice_id, customer_id) in enumerate(sorted(INVOICES.items())):
        total = 12000 + index
        totals[invoice_id] = total
        facts = invoice_facts(invoice_id, customer_id, issued_on, due_on, total)
        # next_action_at stays NULL: the planner leaves the invoice alone until a request
        # (a pause, a resume, an approval) marks it for planning.
        statements.append(
            "INSERT INTO invoices (invoice_id, tenant, customer_id, state, currency, total_minor,"
            " amount_due_minor, overpaid_minor, net_paid_minor, number, issued_on, due_on, state_as_of,"
            f" facts) VALUES ({sql_text(invoice_id)}, {sql_text(TENANT)}, {sql_text(customer_id)},"
            f" 'overdue', 'EUR', {total}, {total}, 0, 0, {sql_text('F-' + invoice_id)}, '{issued_on}',"
            f" '{due_on}', '{today}', {sql_json(facts)});"
        )
    for reminder_id, (invoice_ids, kind, status) in sorted(REMINDERS.items()):
        customer_id = INVOICES[invoice_ids[0]]
        topic, command = reminder_command(
            reminder_id, invoice_ids, kind, customer_id, topic_prefix, scheduled_for, due_on, issued_on,
            totals[invoice_ids[0]],
        )
        channel = "email" if kind == "message" else "phone_call"
        template = "first_reminder" if kind == "message" else None
        statements.append(
            "INSERT INTO reminders (reminder_id, idempotency_key, tenant, customer_id, invoice_ids, kind,"
            " trigger, step_id, channel, segment, template, status, scheduled_for, policy_id,"
            f" policy_version, topic, command) VALUES ('{reminder_id}', {sql_text('fuzz:' + reminder_id)},"
            f" {sql_text(TENANT)}, {sql_text(customer_id)}, ARRAY[{', '.join(sql_text(i) for i in invoice_ids)}],"
            f" '{kind}', {sql_json({'trigger': 'due_date'})}, 'first_reminder', '{channel}', 'vip',"
            f" {sql_text(template)}, '{status}', '{rfc3339(scheduled_for)}', 'default', 1,"
            f" {sql_text(topic)}, {sql_json(command)});"
        )
    for index, reason in enumerate(DEAD_LETTER_REASONS):
        payload = json.dumps({"not": "a billing event", "index": index})
        statements.append(
            "INSERT INTO dead_letters (service, reason, detail, source_topic, source_partition,"
            " source_offset, event_id, event_type, tenant, original_key, original_payload,"
            " original_sha256, failed_at) VALUES ('ingestor', "
            f"{sql_text(reason)}, 'seeded by scripts/fuzz-admin-api.sh',"
            f" {sql_text(topic_prefix + '.billing.invoices')}, 0, {index}, NULL, NULL, {sql_text(TENANT)},"
            f" convert_to('cus_fuzz_1', 'UTF8'), convert_to({sql_text(payload)}, 'UTF8'),"
            f" encode(sha256(convert_to({sql_text(payload)}, 'UTF8')), 'hex'),"
            f" now() - interval '{index + 1} hours');"
        )
    statements.append("COMMIT;")
    return "\n".join(statements) + "\n"


# --- Probes --------------------------------------------------------------------------------
# Fixed requests for what issue 14 item 6 names (unknown fields, bad dates, limits out of range,
# a body too large) and their neighbours, sent before the fuzzer runs (on the fresh seed, so
# their outcome does not depend on what the fuzzer changed). Each answer must have the status
# the probe expects and be what the spec documents for it (schemathesis's own conformance
# checks); schemathesis finds these only by chance, or never (a 3 MiB body).

MIB = 1024 * 1024
REMINDER_FUZZ = "5b0c2d9e-1f3a-4c6b-8d7e-000000000001"
REMINDER_PROBE_APPROVE = "5b0c2d9e-1f3a-4c6b-8d7e-000000000005"
REMINDER_PROBE_REJECT = "5b0c2d9e-1f3a-4c6b-8d7e-000000000006"


def probes() -> list[dict[str, Any]]:
    def probe(name: str, method: str, template: str, expect: tuple[int, ...], *, path: dict | None = None,
              query: dict | None = None, body: Any = None, raw: bytes | None = None,
              content_type: str | None = "application/json", token: str | None = "dev") -> dict[str, Any]:
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        return {"name": name, "method": method, "template": template, "path": path or {}, "query": query,
                "body": raw, "content_type": content_type if raw is not None else None, "expect": expect,
                "token": token}

    invoice = {"invoice_id": "inv_fuzz_1"}
    customer = {"customer_id": "cus_fuzz_1"}
    fuzz_reminder = {"reminder_id": REMINDER_FUZZ}
    pause = "/v1/invoices/{invoice_id}/pause"
    return [
        probe("invoice pause: unknown field", "POST", pause, (400,), path=invoice,
              body={"reason": "probe", "colour": "red"}),
        probe("invoice pause: impossible date", "POST", pause, (400,), path=invoice,
              body={"reason": "probe", "until": "2026-02-30"}),
        probe("invoice pause: until not a date", "POST", pause, (400,), path=invoice,
              body={"reason": "probe", "until": "next friday"}),
        probe("invoice pause: reason missing", "POST", pause, (400,), path=invoice, body={"until": "2026-12-31"}),
        probe("invoice pause: reason not a string", "POST", pause, (400,), path=invoice, body={"reason": 42}),
        probe("invoice pause: body not JSON", "POST", pause, (400,), path=invoice, raw=b'{"reason": '),
        probe("invoice pause: no Content-Type", "POST", pause, (400, 415), path=invoice,
              raw=b'{"reason": "probe"}', content_type=None),
        probe("invoice pause: body over 2 MiB", "POST", pause, (413,), path=invoice,
              body={"reason": "x" * (3 * MIB)}),
        probe("invoice pause: reason with a NUL character (valid JSON)", "POST", pause, (200, 400),
              path={"invoice_id": "inv_fuzz_2"}, body={"reason": "before\u0000after"}),
        probe("customer pause: reason with a NUL character (valid JSON)", "POST", "/v1/customers/{customer_id}/pause",
              (200, 400), path={"customer_id": "cus_fuzz_2"}, body={"reason": "before\u0000after"}),
        probe("invoice resume: body a JSON array, not an object", "POST", "/v1/invoices/{invoice_id}/resume", (400,),
              path=invoice, body=["probe"]),
        probe("invoice resume: unknown field (until)", "POST", "/v1/invoices/{invoice_id}/resume", (400,),
              path=invoice, body={"reason": "probe", "until": "2026-12-31"}),
        probe("customer pause: unknown field", "POST", "/v1/customers/{customer_id}/pause", (400,), path=customer,
              body={"reason": "probe", "colour": "red"}),
        probe("customer pause: impossible date", "POST", "/v1/customers/{customer_id}/pause", (400,),
              path=customer, body={"reason": "probe", "until": "2026-13-01"}),
        probe("approve: unknown field", "POST", "/v1/approvals/{reminder_id}/approve", (400,), path=fuzz_reminder,
              body={"note": "probe", "colour": "red"}),
        probe("approve: note longer than the 2000 characters the code allows", "POST",
              "/v1/approvals/{reminder_id}/approve", (200, 400), path={"reminder_id": REMINDER_PROBE_APPROVE},
              body={"note": "n" * 2001}),
        probe("approve: 'reason', a field the spec does not have", "POST", "/v1/approvals/{reminder_id}/approve",
              (400,), path={"reminder_id": REMINDER_PROBE_APPROVE}, body={"reason": "probe"}),
        probe("approve: reminder id not a UUID", "POST", "/v1/approvals/{reminder_id}/approve", (400, 404),
              path={"reminder_id": "not-a-uuid"}, body={}),
        probe("reject: unknown field", "POST", "/v1/approvals/{reminder_id}/reject", (400,), path=fuzz_reminder,
              body={"reason": "probe", "colour": "red"}),
        probe("reject: required 'reason' missing (only 'note')", "POST", "/v1/approvals/{reminder_id}/reject",
              (400,), path={"reminder_id": REMINDER_PROBE_REJECT}, body={"note": "probe"}),
        probe("edit: unknown field", "PATCH", "/v1/approvals/{reminder_id}", (400,), path=fuzz_reminder,
              body={"template": "first_reminder", "colour": "red"}),
        probe("edit: channel outside the enum", "PATCH", "/v1/approvals/{reminder_id}", (400,), path=fuzz_reminder,
              body={"channel": "fax"}),
        probe("approvals: limit=100000 (maximum 1000)", "GET", "/v1/approvals", (400,), query={"limit": "100000"}),
        probe("approvals: limit=0 (minimum 1)", "GET", "/v1/approvals", (400,), query={"limit": "0"}),
        probe("approvals: limit not an integer", "GET", "/v1/approvals", (400,), query={"limit": "ten"}),
        probe("dead letters: limit=100000 (maximum 1000)", "GET", "/v1/dead-letters", (400,),
              query={"limit": "100000"}),
        probe("dead letters: since not a date-time", "GET", "/v1/dead-letters", (400,), query={"since": "yesterday"}),
        probe("dead letters: not_replayed not a boolean", "GET", "/v1/dead-letters", (400,),
              query={"not_replayed": "maybe"}),
        probe("replay: unknown field", "POST", "/v1/dead-letters/replay", (400,),
              body={"note": "probe", "ids": [1], "colour": "red"}),
        probe("replay: impossible date-time", "POST", "/v1/dead-letters/replay", (400,),
              body={"note": "probe", "since": "2026-02-30T00:00:00Z"}),
        probe("replay: body over 2 MiB", "POST", "/v1/dead-letters/replay", (413,),
              body={"note": "x" * (3 * MIB), "ids": [1]}),
        probe("timeline: unknown invoice", "GET", "/v1/invoices/{invoice_id}/timeline", (404,),
              path={"invoice_id": "inv_that_does_not_exist"}),
        probe("policies: no token", "GET", "/v1/policies", (401,), token=None),
        probe("policies: wrong token", "GET", "/v1/policies", (401,), token="not-a-token-of-config-dev-admin-tokens"),
    ]


def shorten(text: str, limit: int = 300) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def describe_body(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return shorten(raw.decode("utf-8", "replace"), 160)


def run_probes(spec: Path, base_url: str, token: str, out: Path) -> int:
    import requests
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_path(str(spec))
    session = requests.Session()
    results = []
    for item in probes():
        operation = schema[item["template"]][item["method"]]
        path = item["template"]
        for name, value in item["path"].items():
            path = path.replace("{" + name + "}", requests.utils.quote(value, safe=""))
        headers = {}
        if item["content_type"]:
            headers["Content-Type"] = item["content_type"]
        if item["token"] == "dev":
            headers["Authorization"] = f"Bearer {token}"
        elif item["token"]:
            headers["Authorization"] = f"Bearer {item['token']}"
        url = base_url + path
        result: dict[str, Any] = {
            "name": item["name"],
            "operation": f"{item['method']} {item['template']}",
            "request": {"method": item["method"], "url": url, "query": item["query"],
                        "content_type": item["content_type"], "body": describe_body(item["body"]),
                        "token": {"dev": "dev token", None: "none"}.get(item["token"], "wrong token")},
            "expected_status": list(item["expect"]),
            "problems": [],
        }
        try:
            response = session.request(item["method"], url, params=item["query"], data=item["body"],
                                        headers=headers, timeout=30)
        except requests.RequestException as error:
            result["problems"].append(f"no answer: {error}")
            results.append(result)
            continue
        result["status"] = response.status_code
        result["content_type"] = response.headers.get("content-type")
        result["body"] = shorten(response.text)
        if response.status_code not in item["expect"]:
            wanted = " or ".join(str(status) for status in item["expect"])
            result["problems"].append(f"expected {wanted}, got {response.status_code}")
        body: Any = None
        if item["body"] is not None:
            try:
                body = json.loads(item["body"])
            except ValueError:
                body = item["body"]
        case = operation.Case(path_parameters=item["path"] or None, query=item["query"],
                              headers={"Authorization": headers["Authorization"]} if "Authorization" in headers else None,
                              **({"body": body, "media_type": "application/json"} if body is not None else {}))
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                result["problems"].append(f"{failure.code} {failure.title}: {' / '.join(failure.message.splitlines()[:3])}")
        results.append(result)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    failed = [result for result in results if result["problems"]]
    print(f"{len(results) - len(failed)} of {len(results)} probes as the spec says; {len(failed)} not")
    return 1 if failed else 0


# --- Summary -------------------------------------------------------------------------------

def read_events(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line:
                yield json.loads(line)


def decode(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, dict) and "$base64" in content:
        return base64.b64decode(content["$base64"]).decode("utf-8", "replace")
    return str(content)


# What a plain-text rejection of axum's extractors says, as a cause people recognise.
CAUSES = [
    (re.compile(r"Expected request with `Content-Type: application/json`"), "request without Content-Type: application/json"),
    (re.compile(r"length limit exceeded|too large", re.I), "body over the size limit"),
    (re.compile(r"Failed to parse the request body as JSON"), "body is not JSON"),
    (re.compile(r"invalid length \d+, expected struct"), "JSON array where the spec says object"),
    (re.compile(r"unknown field"), "unknown field"),
    (re.compile(r"missing field"), "required field missing"),
    (re.compile(r"invalid type|invalid value|expected a string|expected .* integer", re.I), "wrong type"),
    (re.compile(r"premature end|input contains invalid characters|input is out of range|trailing input|"
                r"invalid digit|no possible date|impossible|not enough|too short", re.I), "unparsable value (date, number)"),
    (re.compile(r"Failed to deserialize query string"), "bad query string"),
]


def cause_of(body: str, status: int | None) -> str:
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if isinstance(error, dict) and "error" in error:
        return shorten(f"{error.get('error')}: {error.get('message', '')}", 120)
    if isinstance(error, (dict, list)):
        return ""
    for pattern, cause in CAUSES:
        if pattern.search(body):
            return cause
    if status and 200 <= status < 300:
        return ""
    text = re.sub(r'"[^"]*"|`[^`]*`', "…", body)
    return shorten(re.sub(r"\d+", "N", text), 100)


def curl(request: dict[str, Any]) -> str:
    parts = ["curl", "-X", request["method"], "-H", "'Authorization: Bearer $TOKEN'"]
    for name, values in (request.get("headers") or {}).items():
        if name.lower() == "authorization":
            continue
        for value in values:
            parts += ["-H", "'" + f"{name}: {value}".replace("'", "'\\''") + "'"]
    body = decode(request.get("body")) if request.get("body") is not None else None
    if body is not None:
        # Control characters escaped, for the terminal; schemathesis.ndjson has the exact bytes.
        body = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shorten(body, 200))
        parts += ["--data-raw", "'" + body.replace("'", "'\\''") + "'"]
    parts.append("'" + request["uri"] + "'")
    return " ".join(parts)


def fuzz_failures(report: Path) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    failures: list[dict[str, Any]] = []
    errors: list[str] = []
    stats: dict[str, Any] = {}
    if not report.exists():
        return failures, [f"no report at {report}: schemathesis did not run"], stats
    for event in read_events(report):
        (kind, data), = event.items()
        if kind == "Initialize":
            stats["seed"] = data.get("seed")
            stats["version"] = data.get("schemathesis_version")
        elif kind == "EngineFinished":
            stats["running_time"] = data.get("running_time")
        elif kind in ("NonFatalError", "FatalError"):
            errors.append(f"{kind}: {shorten(json.dumps(data.get('info') or data), 500)}")
        elif kind == "ScenarioFinished":
            recorder = data.get("recorder") or {}
            interactions = recorder.get("interactions") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    interaction = interactions.get(case_id) or {}
                    response = interaction.get("response") or {}
                    request = interaction.get("request") or {}
                    content_type = ((response.get("headers") or {}).get("content-type") or [None])[0]
                    body = decode(response.get("content"))
                    status = response.get("status_code")
                    failures.append({
                        "phase": data.get("phase"),
                        "operation": failure.get("operation") or recorder.get("label"),
                        "check": check.get("name"),
                        "code": failure.get("code"),
                        "title": failure.get("title"),
                        "message": failure.get("message") or "",
                        "status": status,
                        "content_type": content_type,
                        "body": shorten(body),
                        "cause": cause_of(body, status),
                        "request": curl(request) if request else None,
                    })
    return failures, errors, stats


BOILERPLATE = ("Expected:", "Invalid data should", "Valid data should", "Validated against", "Received:",
               "Documented:", "Value:")


def clean_message(message: str) -> str:
    """The failure's own words, without schemathesis's boilerplate and schema dumps."""
    kept = []
    for line in message.splitlines():
        if not line.strip() or line.startswith((" ", "\t", "{", "}", "[", "]")) or line.startswith(BOILERPLATE):
            continue
        kept.append(line.strip())
    return shorten(" / ".join(kept), 200)


def signature(failure: dict[str, Any]) -> tuple:
    message = clean_message(failure["message"])
    content_type = (failure["content_type"] or "").split(";")[0]
    return (failure["code"], failure["title"], failure["status"], content_type, failure["cause"], message)


def scheduler_errors(log: Path | None) -> list[str]:
    """The scheduler's ERROR lines, distinct (the cause of a 500 is there)."""
    if not log or not log.exists():
        return []
    seen: dict[str, int] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") != "ERROR":
            continue
        text = record.get("message", "")
        cause = record.get("error.cause_chain") or record.get("error")
        if cause:
            text += f" {cause}"
        seen[text] = seen.get(text, 0) + 1
    return [f"{count} x {text}" for text, count in seen.items()]


def summarise(report: Path, probes_path: Path | None, output: Path | None, status: int, spec_valid: bool,
              json_out: Path | None, elapsed: int | None, log: Path | None = None) -> int:
    failures, errors, stats = fuzz_failures(report)
    logged = scheduler_errors(log)
    probe_results = json.loads(probes_path.read_text()) if probes_path and probes_path.exists() else []
    failed_probes = [result for result in probe_results if result["problems"]]
    groups: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for failure in failures:
        operations = groups[signature(failure)]
        operations.setdefault(failure["operation"], failure)
    lines = []
    distinct = sum(len(operations) for operations in groups.values())
    lines.append(f"Admin API against docs/admin-api.yaml (schemathesis {stats.get('version', '?')}, seed "
                 f"{stats.get('seed', '?')}, {stats.get('running_time') or 0:.0f} s of fuzzing"
                 + (f", {elapsed} s in all" if elapsed is not None else "") + ")")
    lines.append(f"  spec valid OpenAPI 3.1: {'yes' if spec_valid else 'NO (see spec-validation.txt)'}")
    lines.append(f"  fuzzer: {len(failures)} failing checks, {distinct} distinct (route x cause), in {len(groups)} causes")
    lines.append(f"  probes: {len(probe_results) - len(failed_probes)} of {len(probe_results)} as the spec says")
    if status not in (0, 1) or errors:
        lines.append(f"  schemathesis exited {status}" + (f" with errors: {'; '.join(errors)}" if errors else ""))
    for key in sorted(groups, key=lambda key: (key[0] or "", str(key[2]), key[4], key[5])):
        code, title, status_code, content_type, cause, message = key
        lines.append("")
        lines.append(f"[{code}] {title}: {status_code} {content_type}" + (f" — {cause}" if cause else ""))
        if message:
            lines.append(f"    {message}")
        for operation, example in sorted(groups[key].items()):
            documented = ""
            if code in ("ST103", "ST105"):
                documented = " — " + "; ".join(line for line in example["message"].splitlines()
                                               if line.startswith("Documented"))
            lines.append(f"  - {operation}  ({example['phase']}){documented}")
            if example["body"]:
                lines.append(f"      answer: {shorten(example['body'], 160)}")
            if example["request"]:
                lines.append(f"      {example['request']}")
    if logged:
        lines.append("")
        lines.append("The scheduler logged these errors meanwhile:")
        lines.extend(f"  - {shorten(text, 400)}" for text in logged)
    if failed_probes:
        lines.append("")
        lines.append("Probes (issue 14 item 6) that do not get what the spec says:")
        for result in failed_probes:
            request = result["request"]
            lines.append(f"  - {result['name']}: {result['operation']}")
            query = f" ?{'&'.join(f'{k}={v}' for k, v in request['query'].items())}" if request.get("query") else ""
            lines.append(f"      sent {request['method']} {request['url']}{query}"
                         + (f" body {request['body']}" if request.get("body") else "")
                         + (f" (Content-Type {request['content_type']})" if request.get("content_type") else "")
                         + f", token: {request['token']}")
            lines.append(f"      got {result.get('status')} {result.get('content_type')}: {shorten(result.get('body') or '', 160)}")
            for problem in result["problems"]:
                lines.append(f"      ✗ {problem}")
    ok = spec_valid and not failures and not failed_probes and not errors and status == 0
    lines.append("")
    lines.append("Result: " + ("the admin API answers as docs/admin-api.yaml says." if ok else
                               f"FAILED — {distinct} distinct fuzzer failures, {len(failed_probes)} probes"
                               + ("" if spec_valid else ", the spec is not valid OpenAPI 3.1")
                               + (f"; full output in {output}" if output else "")))
    print("\n".join(lines))
    if json_out:
        json_out.write_text(json.dumps({
            "spec_valid": spec_valid, "schemathesis_status": status, "stats": stats, "errors": errors,
            "fuzz_failures": failures, "probes": probe_results, "scheduler_errors": logged, "ok": ok,
        }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="print the seed SQL")
    seed.add_argument("--topic-prefix", required=True)
    seed.add_argument("--today", type=date.fromisoformat, default=None)
    probe = commands.add_parser("probe", help="send the fixed probes (needs schemathesis)")
    probe.add_argument("--spec", type=Path, required=True)
    probe.add_argument("--base-url", required=True)
    probe.add_argument("--token", required=True)
    probe.add_argument("--out", type=Path, required=True)
    summary = commands.add_parser("summary", help="summarise a schemathesis NDJSON report and the probes")
    summary.add_argument("report", type=Path)
    summary.add_argument("--probes", type=Path, default=None)
    summary.add_argument("--schemathesis-output", type=Path, default=None)
    summary.add_argument("--schemathesis-status", type=int, default=0)
    summary.add_argument("--spec-valid", type=int, default=1)
    summary.add_argument("--json", type=Path, default=None, help="also write everything as JSON")
    summary.add_argument("--elapsed", type=int, default=None)
    summary.add_argument("--scheduler-log", type=Path, default=None)
    arguments = parser.parse_args(argv)
    if arguments.command == "seed":
        sys.stdout.write(seed_sql(arguments.topic_prefix, arguments.today or datetime.now(timezone.utc).date()))
        return 0
    if arguments.command == "probe":
        return run_probes(arguments.spec, arguments.base_url, arguments.token, arguments.out)
    return summarise(arguments.report, arguments.probes, arguments.schemathesis_output,
                     arguments.schemathesis_status, bool(arguments.spec_valid), arguments.json, arguments.elapsed,
                     arguments.scheduler_log)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
