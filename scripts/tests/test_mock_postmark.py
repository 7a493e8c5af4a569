"""Tests of scripts/mock_postmark.py: Postmark's documented request checks and answers, the
faults it injects, the admin API, and that it survives bad input and a 100,000-message pace.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import re
import socket
import sys
import shutil
import tempfile
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mock_postmark  # noqa: E402

TOKEN = "server-token-for-tests"
JSON_HEADERS = {
    "X-Postmark-Server-Token": TOKEN,
    "Accept": "application/json",
    "Content-Type": "application/json",
}


def relance_message(send_id: str | None = None, to: str = "Camille Durand <camille@boulangerie.example>") -> dict[str, Any]:
    """A message shaped exactly as relance's Postmark client sends it (crates/channels/src/postmark.rs)."""
    return {
        "From": "Acme Billing <billing@acme.example>",
        "To": to,
        "Subject": "Invoice F-2026-0412: payment not yet received",
        "HtmlBody": '<p>Hello</p><a href="http://127.0.0.1:8082/l/pay/v1.k.abc.def">Pay</a>'
                    '<img src="http://127.0.0.1:8082/l/o/v1.k.ghi.jkl">',
        "TextBody": "Hello. Pay: http://127.0.0.1:8082/l/pay/v1.k.abc.def",
        "ReplyTo": "ar@acme.example",
        "Tag": "dunning-default-first_reminder",
        "Metadata": {
            "relance_send": send_id or str(uuid.uuid4()),
            "tenant": "acme",
            "reminder": str(uuid.uuid4()),
            "invoice": "inv_2026_0412",
            "step": "first_reminder",
        },
        "MessageStream": "outbound",
        "TrackOpens": True,
        "TrackLinks": "None",
    }


class MockTestCase(unittest.TestCase):
    """Starts a mock on a free port for each test."""

    extra_args: list[str] = []

    def setUp(self) -> None:
        self.out_dir = Path(tempfile.mkdtemp(prefix="mock-postmark-test-"))
        args = mock_postmark.parse_args(
            ["--port", "0", "--admin-port", "0", "--server-token", TOKEN, "--seed", "7",
             "--out-dir", str(self.out_dir), *self.extra_args])
        self.state, self.listeners = mock_postmark.build(args)
        self.port = self.listeners.port
        self.admin_port = self.listeners.admin.server_address[1]

    def tearDown(self) -> None:
        self.listeners.stop()
        # Each run left its messages behind; hundreds of runs filled the disk.
        shutil.rmtree(self.out_dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                port: int | None = None, timeout: float = 10.0, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            text = response.read()
            headers_out = {key.lower(): value for key, value in response.getheaders()}
            try:
                payload = json.loads(text) if text else None
            except json.JSONDecodeError:
                payload = text
            return response.status, headers_out, payload
        finally:
            connection.close()

    def send(self, message: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", "/email", message, headers or JSON_HEADERS)

    def batch(self, messages: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", "/email/batch", messages, JSON_HEADERS)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, _, payload = self.request(method, f"/_mock/{path}", body, port=self.admin_port)
        self.assertLess(status, 400, payload)
        return payload

    def search(self, query: str) -> tuple[int, Any]:
        status, _, payload = self.request("GET", f"/messages/outbound?{query}", None,
                                          {"X-Postmark-Server-Token": TOKEN, "Accept": "application/json"})
        return status, payload


class SendingTest(MockTestCase):
    def test_a_relance_message_is_accepted_with_postmarks_answer(self) -> None:
        send_id = str(uuid.uuid4())
        status, _, body = self.send(relance_message(send_id))
        self.assertEqual(status, 200)
        self.assertEqual(body["ErrorCode"], 0)
        self.assertEqual(body["Message"], "OK")
        self.assertEqual(body["To"], "Camille Durand <camille@boulangerie.example>")
        uuid.UUID(body["MessageID"])
        self.assertRegex(body["SubmittedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}[+-]\d\d:\d\d$")
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["messages_accepted"], 1)
        self.assertEqual(stats["duplicate_messages"], 0)
        stored = self.admin("GET", "messages?after=0")["messages"][0]
        self.assertEqual(stored["send_id"], send_id)
        self.assertIn("/l/pay/", stored["html_body"])
        self.assertEqual(stored["metadata"]["invoice"], "inv_2026_0412")

    def test_the_token_is_required(self) -> None:
        for headers in ({"Accept": "application/json", "Content-Type": "application/json"},
                        {**JSON_HEADERS, "X-Postmark-Server-Token": "wrong"}):
            status, _, body = self.send(relance_message(), headers)
            self.assertEqual(status, 401)
            self.assertEqual(body["ErrorCode"], 10)
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)

    def test_json_headers_are_required(self) -> None:
        for headers in ({"X-Postmark-Server-Token": TOKEN, "Content-Type": "application/json"},
                        {**JSON_HEADERS, "Content-Type": "text/plain"}):
            status, _, body = self.send(relance_message(), headers)
            self.assertEqual((status, body["ErrorCode"]), (422, 409))

    def test_bad_json_and_wrong_shapes_are_refused_with_their_codes(self) -> None:
        status, _, body = self.request("POST", "/email", headers=JSON_HEADERS, raw=b"{not json")
        self.assertEqual((status, body["ErrorCode"]), (422, 402))
        status, _, body = self.send([relance_message()])
        self.assertEqual((status, body["ErrorCode"]), (422, 403))
        status, _, body = self.batch(relance_message())
        self.assertEqual((status, body["ErrorCode"]), (422, 403))

    def test_invalid_messages_are_refused_with_code_300(self) -> None:
        cases = {
            "no body": {k: v for k, v in relance_message().items() if k not in ("HtmlBody", "TextBody")},
            "no recipient": {**relance_message(), "To": ""},
            "bad recipient": {**relance_message(), "To": "not-an-address"},
            "too many recipients": {**relance_message(), "To": ",".join(f"p{i}@x.example" for i in range(51))},
            "eleven metadata keys": {**relance_message(), "Metadata": {f"k{i}": "v" for i in range(11)}},
            "long metadata key": {**relance_message(), "Metadata": {"k" * 21: "v"}},
            "long metadata value": {**relance_message(), "Metadata": {"k": "v" * 81}},
            "bad TrackLinks": {**relance_message(), "TrackLinks": "Always"},
        }
        for name, message in cases.items():
            with self.subTest(name):
                status, _, body = self.send(message)
                self.assertEqual((status, body["ErrorCode"]), (422, 300), body)
        status, _, body = self.send({**relance_message(), "MessageStream": "broadcast"})
        self.assertEqual((status, body["ErrorCode"]), (422, 1235))
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)

    def test_inactive_recipients_get_406_with_postmarks_wording(self) -> None:
        self.admin("POST", "config", {"inactive_recipients": ["Gone@Example.org"]})
        status, _, body = self.send(relance_message(to="gone@example.org"))
        self.assertEqual((status, body["ErrorCode"]), (422, 406))
        self.assertRegex(body["Message"], r"Found inactive addresses: gone@example\.org\. Inactive")

    def test_a_batch_answers_each_message_in_order(self) -> None:
        messages = [relance_message(), {**relance_message(), "To": "nope"}, relance_message()]
        status, _, body = self.batch(messages)
        self.assertEqual(status, 200)
        self.assertEqual([item["ErrorCode"] for item in body], [0, 300, 0])
        self.assertNotIn("MessageID", body[1])
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 2)

    def test_a_batch_of_more_than_500_is_refused_whole(self) -> None:
        status, _, body = self.batch([relance_message() for _ in range(501)])
        self.assertEqual((status, body["ErrorCode"]), (422, 410))
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)

    def test_the_same_send_id_accepted_twice_is_a_duplicate(self) -> None:
        send_id = str(uuid.uuid4())
        self.send(relance_message(send_id))
        self.batch([relance_message(send_id), relance_message()])
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["messages_accepted"], 3)
        self.assertEqual(stats["duplicate_messages"], 1)
        self.assertEqual(stats["duplicate_send_ids"], 1)
        self.assertEqual(self.admin("GET", "send-ids?min_count=2")["send_ids"], {send_id: 2})

    def test_messages_are_written_as_eml_and_html(self) -> None:
        send_id = str(uuid.uuid4())
        self.send(relance_message(send_id))
        self.send(relance_message(send_id))
        eml = self.out_dir / f"{send_id}.eml"
        parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        self.assertEqual(parsed["X-Relance-Send"], send_id)
        self.assertEqual(parsed["Subject"], "Invoice F-2026-0412: payment not yet received")
        self.assertIn("/l/pay/", parsed.get_body(("html",)).get_content())
        self.assertTrue((self.out_dir / f"{send_id}.html").exists())
        self.assertTrue((self.out_dir / f"{send_id}.dup1.eml").exists())


def sendgrid_message(send_id: str) -> dict[str, Any]:
    """A message shaped as relance's SendGrid client sends it (crates/channels/src/sendgrid.rs)."""
    return {
        "personalizations": [{
            "to": [{"email": "camille@boulangerie.example", "name": "Camille Durand"}],
            "custom_args": {"relance_send": send_id, "tenant": "acme", "invoice": "inv_2026_0412"},
        }],
        "from": {"email": "billing@acme.example", "name": "Acme Billing"},
        "subject": "Invoice F-2026-0412: payment not yet received",
        "content": [{"type": "text/plain", "value": "Hello. Pay: http://127.0.0.1:8082/l/pay/v1.k.abc.def"},
                    {"type": "text/html", "value": '<p>Hello</p><a href="http://127.0.0.1:8082/l/pay/v1.k.abc.def">Pay</a>'}],
        "headers": {"X-Relance-Send": send_id},
        "tracking_settings": {"click_tracking": {"enable": False, "enable_text": False},
                              "subscription_tracking": {"enable": False}},
        "mail_settings": {"sandbox_mode": {"enable": False}},
        "reply_to": {"email": "ar@acme.example"},
        "categories": ["dunning", "dunning-default-first_reminder"],
    }


SENDGRID_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json",
                    "Content-Type": "application/json"}


class SendGridTest(MockTestCase):
    def test_a_relance_message_is_accepted_with_sendgrids_answer_and_stored(self) -> None:
        send_id = str(uuid.uuid4())
        status, headers, body = self.request("POST", "/v3/mail/send", sendgrid_message(send_id), SENDGRID_HEADERS)
        self.assertEqual(status, 202)
        self.assertIsNone(body)
        self.assertRegex(headers["x-message-id"], r"^[0-9a-f]{22}$")
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["messages_accepted"], 1)
        stored = self.admin("GET", "messages?after=0")["messages"][0]
        self.assertEqual(stored["send_id"], send_id)
        self.assertEqual(stored["to"], "Camille Durand <camille@boulangerie.example>")
        self.assertEqual(stored["metadata"]["invoice"], "inv_2026_0412")
        self.assertIn("/l/pay/", stored["html_body"])
        self.assertEqual(stored["endpoint"], "sendgrid")
        # The id relance records is the one the mock's messages (and webhooks) carry.
        self.assertEqual(stored["message_id"], headers["x-message-id"])

    def test_sandbox_mode_validates_without_sending(self) -> None:
        message = sendgrid_message(str(uuid.uuid4()))
        message["mail_settings"] = {"sandbox_mode": {"enable": True}}
        status, _, body = self.request("POST", "/v3/mail/send", message, SENDGRID_HEADERS)
        self.assertEqual((status, body), (200, None))
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)

    def test_errors_have_sendgrids_shape(self) -> None:
        headers = {key: value for key, value in SENDGRID_HEADERS.items() if key != "Accept"}
        status, _, body = self.request("POST", "/v3/mail/send", sendgrid_message(str(uuid.uuid4())), headers)
        self.assertEqual(status, 406)
        self.assertIn("Accept", body["errors"][0]["message"])
        status, _, body = self.request("POST", "/v3/mail/send", None, {**SENDGRID_HEADERS, "Content-Length": "x"},
                                       raw=b"{}")
        self.assertEqual(status, 400)
        self.assertIn("errors", body)

    def test_the_bearer_key_is_required(self) -> None:
        for authorization in (None, "Bearer wrong", TOKEN):
            headers = {key: value for key, value in SENDGRID_HEADERS.items() if key != "Authorization"}
            if authorization is not None:
                headers["Authorization"] = authorization
            status, _, body = self.request("POST", "/v3/mail/send", sendgrid_message(str(uuid.uuid4())), headers)
            self.assertEqual(status, 401)
            self.assertIn("authorization grant", body["errors"][0]["message"])
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)

    def test_invalid_bodies_are_400_naming_the_field(self) -> None:
        cases = [
            ({"personalizations": []}, "personalizations"),
            ({"from": {"email": "not an address"}}, "from.email"),
            ({"subject": ""}, "subject"),
            ({"content": []}, "content"),
        ]
        for change, field in cases:
            message = {**sendgrid_message(str(uuid.uuid4())), **change}
            status, _, body = self.request("POST", "/v3/mail/send", message, SENDGRID_HEADERS)
            self.assertEqual(status, 400, change)
            self.assertEqual(body["errors"][0]["field"], field)
        status, _, body = self.request("POST", "/v3/mail/send", None, SENDGRID_HEADERS, raw=b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)


class SearchTest(MockTestCase):
    def test_a_message_is_found_by_its_send_id(self) -> None:
        send_id = str(uuid.uuid4())
        _, _, sent = self.send(relance_message(send_id))
        self.send(relance_message())
        status, body = self.search(f"count=1&offset=0&metadata_relance_send={send_id}")
        self.assertEqual(status, 200)
        self.assertEqual(body["TotalCount"], 1)
        self.assertEqual(body["Messages"][0]["MessageID"], sent["MessageID"])
        self.assertEqual(body["Messages"][0]["Metadata"]["relance_send"], send_id)
        self.assertEqual(body["Messages"][0]["Recipients"], ["camille@boulangerie.example"])
        status, body = self.search(f"count=1&offset=0&metadata_relance_send={uuid.uuid4()}")
        self.assertEqual((status, body["TotalCount"], body["Messages"]), (200, 0, []))

    def test_search_filters_and_details(self) -> None:
        self.send(relance_message(to="a@one.example"))
        _, _, sent = self.send({**relance_message(to="b@two.example"), "Tag": "other"})
        _, body = self.search("count=10&offset=0&recipient=b@two.example")
        self.assertEqual(body["TotalCount"], 1)
        _, body = self.search("count=10&offset=0&tag=dunning-default-first_reminder")
        self.assertEqual(body["TotalCount"], 1)
        _, body = self.search("count=10&offset=0")
        self.assertEqual(body["Messages"][0]["MessageID"], sent["MessageID"], "newest first")
        status, _, detail = self.request("GET", f"/messages/outbound/{sent['MessageID']}/details", None,
                                         {"X-Postmark-Server-Token": TOKEN, "Accept": "application/json"})
        self.assertEqual(status, 200)
        self.assertIn("/l/pay/", detail["HtmlBody"])

    def test_count_and_offset_are_required_and_bounded(self) -> None:
        for query in ("offset=0", "count=1", "count=0&offset=0", "count=501&offset=0",
                      "count=500&offset=9600", "count=x&offset=0"):
            with self.subTest(query):
                status, body = self.search(query)
                self.assertEqual(status, 422)
                self.assertIn("ErrorCode", body)

    def test_search_needs_the_token(self) -> None:
        status, _, body = self.request("GET", "/messages/outbound?count=1&offset=0", None, {"Accept": "application/json"})
        self.assertEqual((status, body["ErrorCode"]), (401, 10))


class FaultTest(MockTestCase):
    def test_injected_errors_are_500_and_record_nothing(self) -> None:
        self.admin("PUT", "config", {"error_rate": 1.0})
        status, _, _ = self.send(relance_message())
        self.assertEqual(status, 500)
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["messages_accepted"], 0)
        self.assertEqual(stats["faults"]["injected_errors"], 1)

    def test_a_timed_out_request_is_accepted_then_answered_too_late(self) -> None:
        self.admin("PUT", "config", {"timeout_rate": 1.0, "timeout_delay_ms": 1500})
        send_id = str(uuid.uuid4())
        started = time.monotonic()
        with self.assertRaises((TimeoutError, socket.timeout)):
            self.request("POST", "/email", relance_message(send_id), JSON_HEADERS, timeout=0.3)
        self.assertLess(time.monotonic() - started, 1.0)
        self.admin("PUT", "config", {"timeout_rate": 0.0})
        # Reconciliation finds it: the message was accepted although the client saw no answer.
        status, body = self.search(f"count=1&offset=0&metadata_relance_send={send_id}")
        self.assertEqual((status, body["TotalCount"]), (200, 1))
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["faults"]["timed_out_requests"], 1)
        self.assertEqual(stats["messages_accepted"], 1)

    def test_latency_delays_answers(self) -> None:
        self.admin("PUT", "config", {"latency_ms": 250, "jitter_ms": 50})
        started = time.monotonic()
        status, _, _ = self.send(relance_message())
        elapsed = time.monotonic() - started
        self.assertEqual(status, 200)
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 1.5)

    def test_beyond_the_rate_limit_requests_get_429_with_retry_after(self) -> None:
        self.admin("PUT", "config", {"rate_limit_per_second": 0.5, "rate_limit_burst": 2})
        statuses = []
        for _ in range(4):
            status, headers, body = self.send(relance_message())
            statuses.append(status)
        self.assertEqual(statuses, [200, 200, 429, 429])
        self.assertEqual(body["ErrorCode"], 429)
        self.assertGreaterEqual(int(headers["retry-after"]), 1)
        self.assertEqual(self.admin("GET", "stats")["faults"]["rate_limited"], 2)

    def test_an_error_outage_answers_500_until_it_ends(self) -> None:
        outage = self.admin("POST", "outage", {"mode": "error", "seconds": 30})
        self.assertTrue(outage["active"])
        self.assertEqual(self.send(relance_message())[0], 500)
        self.admin("DELETE", "outage")
        self.assertEqual(self.send(relance_message())[0], 200)

    def test_a_refusing_outage_refuses_connections_then_reopens_the_same_port(self) -> None:
        self.admin("POST", "outage", {"mode": "refuse", "seconds": 30})
        deadline = time.monotonic() + 5
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                self.send(relance_message())
                time.sleep(0.05)
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                refused = True
        self.assertTrue(refused, "connections were never refused")
        self.admin("DELETE", "outage")
        self.assertEqual(self.listeners.port, self.port)
        self.assertEqual(self.send(relance_message())[0], 200)

    def test_an_outage_ends_by_itself(self) -> None:
        self.admin("POST", "outage", {"mode": "refuse", "seconds": 0.5})
        time.sleep(1.5)
        self.assertEqual(self.send(relance_message())[0], 200)
        self.assertFalse(self.admin("GET", "outage")["active"])


class AdminTest(MockTestCase):
    extra_args = ["--max-bodies", "2"]

    def test_a_cursor_returns_only_new_messages(self) -> None:
        self.batch([relance_message() for _ in range(3)])
        page = self.admin("GET", "messages?after=0&limit=2")
        self.assertEqual([m["seq"] for m in page["messages"]], [1, 2])
        page = self.admin("GET", f"messages?after={page['next_after']}")
        self.assertEqual([m["seq"] for m in page["messages"]], [3])
        empty = self.admin("GET", f"messages?after={page['next_after']}")
        self.assertEqual((empty["messages"], empty["next_after"]), ([], 3))
        self.send(relance_message())
        self.assertEqual([m["seq"] for m in self.admin("GET", "messages?after=3")["messages"]], [4])

    def test_old_bodies_are_dropped_beyond_max_bodies(self) -> None:
        self.batch([relance_message() for _ in range(3)])
        messages = self.admin("GET", "messages?after=0")["messages"]
        self.assertEqual([m["bodies_evicted"] for m in messages], [True, False, False])
        self.assertNotIn("html_body", self.admin("GET", "messages?after=0&bodies=false")["messages"][0])

    def test_bad_settings_are_refused_and_named(self) -> None:
        for body in ({"error_rate": 2}, {"latency_ms": -1}, {"nope": 1}, [1]):
            status, _, answer = self.request("PUT", "/_mock/config", body, port=self.admin_port)
            self.assertEqual(status, 400, answer)
        self.assertEqual(self.admin("GET", "config")["error_rate"], 0.0)

    def test_reset_forgets_messages(self) -> None:
        self.send(relance_message())
        self.admin("POST", "reset")
        self.assertEqual(self.admin("GET", "stats")["messages_accepted"], 0)


class RobustnessTest(MockTestCase):
    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(data)
            chunks = []
            try:
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
            except (TimeoutError, ConnectionResetError):
                pass
            return b"".join(chunks)

    def test_garbage_does_not_stop_the_mock(self) -> None:
        self.raw(b"\x00\xff garbage\r\n\r\n")
        self.raw(b"POST /email HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        answer = self.raw(b"POST /email HTTP/1.1\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n")
        self.assertIn(b"413", answer.split(b"\r\n", 1)[0])
        self.raw(b"POST /email/batch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        status, _, body = self.request("POST", "/email", headers=JSON_HEADERS, raw="\u00e9".encode("latin-1"))
        self.assertEqual((status, body["ErrorCode"]), (422, 402))
        status, _, _ = self.request("GET", "/nowhere", headers=JSON_HEADERS)
        self.assertEqual(status, 404)
        status, _, _ = self.request("GET", "/_mock/nowhere")
        self.assertEqual(status, 404)
        self.assertEqual(self.send(relance_message())[0], 200)

    def test_a_chunked_body_is_read(self) -> None:
        body = json.dumps(relance_message()).encode()
        request = (b"POST /email HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in JSON_HEADERS.items()).encode() + b"\r\n"
                   + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        self.assertIn(b" 200 ", self.raw(request).split(b"\r\n", 1)[0])

    def test_keep_alive_serves_many_requests_on_one_connection(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        for _ in range(20):
            connection.request("POST", "/email", body=json.dumps(relance_message()), headers=JSON_HEADERS)
            response = connection.getresponse()
            response.read()
            self.assertEqual(response.status, 200)
        connection.close()


class ThroughputTest(MockTestCase):
    def test_twenty_thousand_messages_in_batches_within_seconds(self) -> None:
        # 100,000 messages in a chaos run arrive mostly as batches of up to 500; a fifth of that
        # here, with a bound loose enough for a busy 2-core machine.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        template = relance_message()
        started = time.monotonic()
        for _ in range(40):
            batch = [{**template, "Metadata": {**template["Metadata"], "relance_send": str(uuid.uuid4())}}
                     for _ in range(500)]
            connection.request("POST", "/email/batch", body=json.dumps(batch), headers=JSON_HEADERS)
            response = connection.getresponse()
            self.assertEqual(response.status, 200)
            response.read()
        elapsed = time.monotonic() - started
        connection.close()
        stats = self.admin("GET", "stats")
        self.assertEqual(stats["messages_accepted"], 20_000)
        self.assertEqual(stats["duplicate_messages"], 0)
        self.assertLess(elapsed, 60, f"20,000 messages took {elapsed:.1f} s")
        print(f"\n  mock: 20,000 messages in batches took {elapsed:.1f} s", file=sys.stderr)


class ClockTest(unittest.TestCase):
    def test_the_simulated_clock_follows_start_epoch_and_speed(self) -> None:
        start = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
        epoch = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
        clock = mock_postmark.Clock(speed=3600.0, start=start, epoch=epoch)
        ten_seconds_later = (epoch + timedelta(seconds=10)).timestamp()
        self.assertEqual(clock.now(ten_seconds_later), start + timedelta(hours=10))
        self.assertIsNone(mock_postmark.Clock().start)

    def test_postmark_timestamps_have_seven_digits_and_an_offset(self) -> None:
        stamp = mock_postmark.postmark_timestamp(datetime(2024, 3, 1, 14, 15, 2, 123456, tzinfo=timezone.utc))
        self.assertEqual(stamp, "2024-03-01T09:15:02.1234560-05:00")
        self.assertTrue(re.match(r".*\.\d{7}[+-]\d\d:\d\d$", stamp))


if __name__ == "__main__":
    unittest.main()
