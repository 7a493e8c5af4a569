#!/usr/bin/env python3
"""A mock of Postmark's email API on 127.0.0.1, for relance's demo, chaos run and benchmarks.

It imitates what relance's sender uses, with the request checks and answers of
shared/notes/email-providers.md (section 1) and docs/providers.md:

  POST /email                 one message; 200 {To, SubmittedAt, MessageID, ErrorCode: 0, Message: "OK"}
  POST /email/batch           at most 500 messages; 200 with one result per message, in order
  GET  /messages/outbound     search: count, offset, recipient, fromemail, tag, subject, status,
                              messagestream and metadata_<key>=<value> (relance: metadata_relance_send)
  GET  /messages/outbound/{MessageID}/details

It also answers SendGrid's send, for a provider without a batch endpoint (the benchmark's
single-message figure; shared/notes/email-providers.md, section 2):

  POST /v3/mail/send          one message; 202 with an empty body and X-Message-Id. Needs
                              `Authorization: Bearer <server token>` (401 otherwise); a body
                              without personalizations[].to[].email, from.email, a subject or
                              content is 400 with SendGrid's {"errors": [{message, field}]}; no
                              `Accept: application/json` is 406; sandbox_mode on is 200 and
                              nothing stored. The message is stored as the Postmark ones are
                              (custom_args as metadata, X-Message-Id as its MessageID). Latency,
                              500s, timeouts, outages and the rate limit apply to it (429 with
                              X-RateLimit-Reset, as SendGrid); inactive recipients do not
                              (SendGrid accepts and bounces later).

Every Postmark request needs `X-Postmark-Server-Token` (401, ErrorCode 10 otherwise) and
`Accept: application/json`; sends also need `Content-Type: application/json` (422, ErrorCode
409). Invalid JSON is 422/402, a body of the wrong shape 422/403, more than 500 messages 422/410,
an invalid message 422/300 (in a batch: that element only, the batch answers 200), an inactive
recipient 422/406 with Postmark's wording, an unknown message stream 422/1235.

Faults, set at start (flags) or at run time (admin API, JSON, under /_mock/):

  latency_ms + jitter_ms        every Postmark answer waits latency + uniform(0, jitter)
  error_rate                    share of requests answered 500, nothing recorded
  timeout_rate, timeout_delay_ms
                                share of sends recorded as accepted whose answer is then held
                                for timeout_delay_ms (past the client's timeout: an ambiguous
                                outcome the sender must reconcile with the search)
  rate_limit_per_second, rate_limit_burst
                                a token bucket of requests; beyond it 429, ErrorCode 429, Retry-After
  outage                        POST /_mock/outage {"mode": "error"|"refuse", "seconds": 60}: every
                                Postmark request gets 500, or connections are refused (the listener
                                is closed) until the end; DELETE /_mock/outage ends it early
  inactive_recipients           addresses refused with ErrorCode 406

Admin API (no authentication: the mock listens on loopback only):

  GET  /_mock/health            {"ok": true}
  GET  /_mock/config            the fault settings; PUT or POST /_mock/config changes some of them
  GET  /_mock/outage            the outage, if any; POST starts one; DELETE ends it
  GET  /_mock/stats             requests by endpoint and status, messages accepted, duplicate
                                messages (the same relance_send accepted more than once), faults
  GET  /_mock/send-ids?min_count=2
                                acceptances per send id (relance_send metadata)
  GET  /_mock/messages?after=<seq>&limit=<n>&bodies=true|false&send_id=&to=
                                accepted messages in acceptance order, after a cursor: read
                                `next_after` and pass it back as `after` to get only new ones
  POST /_mock/reset             forget messages and counters (the settings stay)

With --out-dir every accepted message is also written as <send id>.eml (a complete MIME
message) and <send id>.html; a second acceptance of a send id gets a `.dupN` suffix.

When a refusing outage closes the listener, the admin API on the same port is unreachable too
until the outage ends; give --admin-port to keep the admin API on a port of its own.

Start: `mock_postmark.py --port 0 --port-file /tmp/pm.port`; the first line on stdout is JSON
with the addresses. Logs go to stderr and never carry addresses, subjects or bodies.
"""

from __future__ import annotations

import argparse
import binascii
import email.header
import email.utils
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

# Postmark's documented limits.
BATCH_LIMIT = 500
MAX_RECIPIENTS = 50
METADATA_MAX_KEYS = 10
METADATA_MAX_KEY_CHARS = 20
METADATA_MAX_VALUE_CHARS = 80
MAX_BODY_PART_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_BATCH_BYTES = 50 * 1024 * 1024
SEARCH_MAX_COUNT = 500
SEARCH_MAX_WINDOW = 10_000
TRACK_LINKS_VALUES = ("None", "HtmlAndText", "HtmlOnly", "TextOnly")
# Postmark's literal test token validates a request without delivering it.
TEST_TOKEN = "POSTMARK_API_TEST"
# Postmark stamps SubmittedAt in US Eastern time, with seven fractional digits.
POSTMARK_ZONE = ZoneInfo("America/New_York")
SEND_ID_KEY = "relance_send"
ADDRESS = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+$")


# ----------------------------------------------------------------------------------------------
# Time


@dataclass(frozen=True)
class Clock:
    """simulated_now = start + (real_now - epoch) * speed: the clock relance's services share
    (RELANCE__RUNTIME__CLOCK__*; before the epoch it shows the start). Without a start or an
    epoch, the real clock."""

    speed: float = 1.0
    start: datetime | None = None
    epoch: datetime | None = None

    def now(self, real_unix: float | None = None) -> datetime:
        real = datetime.fromtimestamp(time.time() if real_unix is None else real_unix, timezone.utc)
        if self.start is None:
            return real
        epoch = self.epoch or self.start
        return self.start + max(real - epoch, timedelta(0)) * self.speed


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant (a trailing Z accepted), as an aware datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(timezone.utc)


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def postmark_timestamp(value: datetime) -> str:
    """Postmark's style: 2024-03-01T09:15:02.1234567-05:00."""
    local = value.astimezone(POSTMARK_ZONE)
    base = local.strftime("%Y-%m-%dT%H:%M:%S")
    offset = local.strftime("%z")
    return f"{base}.{local.microsecond:06d}0{offset[:3]}:{offset[3:]}"


# ----------------------------------------------------------------------------------------------
# Settings and state


@dataclass
class FaultSettings:
    """What can be changed while the mock runs."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_delay_ms: float = 15_000.0
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0
    inactive_recipients: list[str] = field(default_factory=list)

    RATES = ("error_rate", "timeout_rate")
    DURATIONS = ("latency_ms", "jitter_ms", "timeout_delay_ms", "rate_limit_per_second")

    def update(self, changes: Any) -> None:
        """Applies a partial JSON object; raises ValueError naming the first bad key."""
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        candidate = FaultSettings(**asdict(self))
        for key, value in changes.items():
            if key in self.RATES:
                if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{key} must be a number from 0 to 1")
                setattr(candidate, key, float(value))
            elif key in self.DURATIONS:
                if not _is_number(value) or float(value) < 0:
                    raise ValueError(f"{key} must be a number of at least 0")
                setattr(candidate, key, float(value))
            elif key == "rate_limit_burst":
                if not _is_number(value) or int(value) != value or value < 0:
                    raise ValueError("rate_limit_burst must be an integer of at least 0")
                candidate.rate_limit_burst = int(value)
            elif key == "inactive_recipients":
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise ValueError("inactive_recipients must be a list of addresses")
                candidate.inactive_recipients = sorted({item.strip().lower() for item in value})
            else:
                raise ValueError(f"unknown setting {key!r}")
        self.__dict__.update(candidate.__dict__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TokenBucket:
    """Requests a second with a burst; `take` answers how long to wait when empty."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.updated = time.monotonic()
        self.rate = 0.0
        self.capacity = 0.0

    def configure(self, rate: float, burst: int) -> None:
        capacity = float(burst) if burst > 0 else max(rate, 1.0)
        if (rate, capacity) != (self.rate, self.capacity):
            self.rate, self.capacity = rate, capacity
            self.tokens = capacity
            self.updated = time.monotonic()

    def take(self) -> float | None:
        """None when a request may go; else the seconds until one may."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class StoredMessage:
    seq: int
    message_id: str
    send_id: str | None
    to: str
    sender: str
    reply_to: str | None
    subject: str
    tag: str | None
    stream: str
    metadata: dict[str, str]
    html_body: str | None
    text_body: str | None
    received_at: datetime
    simulated_at: datetime
    endpoint: str
    duplicate: bool
    track_opens: bool | None
    track_links: str | None
    files: list[str] = field(default_factory=list)

    def summary(self, bodies: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "message_id": self.message_id,
            "send_id": self.send_id,
            "to": self.to,
            "from": self.sender,
            "reply_to": self.reply_to,
            "subject": self.subject,
            "tag": self.tag,
            "message_stream": self.stream,
            "metadata": self.metadata,
            "received_at": rfc3339(self.received_at),
            "simulated_at": rfc3339(self.simulated_at),
            "endpoint": self.endpoint,
            "duplicate": self.duplicate,
            "files": self.files,
        }
        if bodies:
            out["html_body"] = self.html_body
            out["text_body"] = self.text_body
            out["bodies_evicted"] = self.html_body is None and self.text_body is None
        return out

    def postmark_summary(self) -> dict[str, Any]:
        """One element of the outbound search's `Messages`."""
        recipients = split_addresses(self.to)
        return {
            "Tag": self.tag or "",
            "MessageID": self.message_id,
            "MessageStream": self.stream,
            "To": [{"Email": address, "Name": None} for address in recipients],
            "Cc": [],
            "Bcc": [],
            "Recipients": recipients,
            "ReceivedAt": postmark_timestamp(self.simulated_at),
            "From": self.sender,
            "Subject": self.subject,
            "Attachments": [],
            "Status": "Sent",
            "TrackOpens": bool(self.track_opens),
            "TrackLinks": self.track_links or "None",
            "Metadata": self.metadata,
            "Sandboxed": False,
        }


@dataclass
class Outage:
    mode: str  # "error" or "refuse"
    until_monotonic: float
    until: datetime


class MockState:
    """Everything the handlers share, behind one lock. Parsing and file writes happen outside it."""

    def __init__(self, faults: FaultSettings, tokens: list[str], streams: list[str],
                 max_bodies: int, out_dir: Path | None, clock: Clock, seed: int | None) -> None:
        self.lock = threading.Lock()
        self.faults = faults
        self.tokens = set(tokens)
        self.streams = set(streams)
        self.max_bodies = max_bodies
        self.out_dir = out_dir
        self.clock = clock
        self.random = random.Random(seed)
        self.bucket = TokenBucket()
        self.outage: Outage | None = None
        self.started = time.time()
        self.reset()

    def reset(self) -> None:
        self.messages: list[StoredMessage] = []
        self.by_send_id: dict[str, list[int]] = {}
        self.by_message_id: dict[str, int] = {}
        self.with_bodies: deque[int] = deque()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    # -- faults ---------------------------------------------------------------------------------

    def draw(self) -> float:
        with self.lock:
            return self.random.random()

    def latency_seconds(self) -> float:
        with self.lock:
            base, jitter = self.faults.latency_ms, self.faults.jitter_ms
            extra = self.random.uniform(0.0, jitter) if jitter > 0 else 0.0
        return (base + extra) / 1000.0

    def rate_limited(self) -> float | None:
        with self.lock:
            self.bucket.configure(self.faults.rate_limit_per_second, self.faults.rate_limit_burst)
            return self.bucket.take()

    def current_outage(self) -> Outage | None:
        with self.lock:
            if self.outage is not None and time.monotonic() >= self.outage.until_monotonic:
                self.outage = None
            return self.outage

    def token_accepted(self, token: str | None) -> bool:
        if not token or not token.strip():
            return False
        return not self.tokens or token in self.tokens or token == TEST_TOKEN

    def count(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counters[name] += amount

    def record_request(self, endpoint: str, status: int) -> None:
        with self.lock:
            self.requests[endpoint] += 1
            self.statuses[str(status)] += 1

    # -- messages -------------------------------------------------------------------------------

    def accept(self, message: dict[str, Any], endpoint: str) -> StoredMessage:
        """Records an accepted message and answers what Postmark would."""
        metadata = {str(key): str(value) for key, value in (message.get("Metadata") or {}).items()}
        send_id = metadata.get(SEND_ID_KEY)
        now_real = time.time()
        with self.lock:
            seq = len(self.messages) + 1
            duplicate = bool(send_id) and send_id in self.by_send_id
            stored = StoredMessage(
                seq=seq,
                message_id=(f"{self.random.getrandbits(88):022x}" if endpoint == "sendgrid"
                        else str(uuid.UUID(int=self.random.getrandbits(128), version=4))),
                send_id=send_id,
                to=str(message.get("To", "")),
                sender=str(message.get("From", "")),
                reply_to=_optional_text(message.get("ReplyTo")),
                subject=str(message.get("Subject") or ""),
                tag=_optional_text(message.get("Tag")),
                stream=str(message.get("MessageStream") or "outbound"),
                metadata=metadata,
                html_body=_optional_text(message.get("HtmlBody")),
                text_body=_optional_text(message.get("TextBody")),
                received_at=datetime.fromtimestamp(now_real, timezone.utc),
                simulated_at=self.clock.now(now_real),
                endpoint=endpoint,
                duplicate=duplicate,
                track_opens=message.get("TrackOpens") if isinstance(message.get("TrackOpens"), bool) else None,
                track_links=_optional_text(message.get("TrackLinks")),
            )
            self.messages.append(stored)
            self.by_message_id[stored.message_id] = seq
            acceptances = 0
            if send_id:
                self.by_send_id.setdefault(send_id, []).append(seq)
                acceptances = len(self.by_send_id[send_id])
            self.counters["messages_accepted"] += 1
            if duplicate:
                self.counters["duplicate_messages"] += 1
            self.with_bodies.append(seq)
            # Bodies are what takes memory; keep the newest, the rest of each record stays.
            while len(self.with_bodies) > self.max_bodies:
                evicted = self.messages[self.with_bodies.popleft() - 1]
                evicted.html_body = None
                evicted.text_body = None
        if self.out_dir is not None:
            self.write_files(stored, message, acceptances)
        return stored

    def write_files(self, stored: StoredMessage, message: dict[str, Any], acceptances: int) -> None:
        base = _safe_file_name(stored.send_id or stored.message_id)
        if acceptances > 1:
            base += f".dup{acceptances - 1}"
        try:
            eml = self.out_dir / f"{base}.eml"
            _write_atomically(eml, render_eml(stored, message))
            stored.files.append(str(eml))
            if stored.html_body:
                html = self.out_dir / f"{base}.html"
                _write_atomically(html, stored.html_body.encode("utf-8"))
                stored.files.append(str(html))
        except OSError as error:
            self.count("file_write_errors")
            log(f"Writing a message file failed: {error.strerror}.")

    def search(self, filters: dict[str, str], count: int, offset: int) -> tuple[int, list[StoredMessage]]:
        with self.lock:
            send_id = filters.get(f"metadata_{SEND_ID_KEY}")
            if send_id is not None:
                candidates = [self.messages[seq - 1] for seq in self.by_send_id.get(send_id, [])]
            else:
                candidates = list(self.messages)
        matched = [message for message in candidates if _matches(message, filters)]
        matched.reverse()  # newest first, as Postmark answers
        return len(matched), matched[offset:offset + count]

    def details(self, message_id: str) -> StoredMessage | None:
        with self.lock:
            seq = self.by_message_id.get(message_id)
            return self.messages[seq - 1] if seq else None

    def page(self, after: int, limit: int, send_id: str | None, to: str | None) -> tuple[list[StoredMessage], int]:
        with self.lock:
            if send_id is not None:
                window = [self.messages[seq - 1] for seq in self.by_send_id.get(send_id, []) if seq > after]
            else:
                window = self.messages[max(after, 0):]
        selected = [m for m in window if to is None or to.lower() in m.to.lower()][:limit]
        return selected, selected[-1].seq if selected else max(after, 0)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            per_id = [len(seqs) for seqs in self.by_send_id.values()]
            return {
                "started_at": rfc3339(datetime.fromtimestamp(self.started, timezone.utc)),
                "uptime_seconds": round(time.time() - self.started, 3),
                "requests_total": sum(self.requests.values()),
                "requests": dict(self.requests),
                "statuses": dict(self.statuses),
                "messages_accepted": self.counters["messages_accepted"],
                "messages_rejected": self.counters["messages_rejected"],
                "messages_without_send_id": sum(1 for m in self.messages if not m.send_id),
                "distinct_send_ids": len(self.by_send_id),
                "duplicate_messages": self.counters["duplicate_messages"],
                "duplicate_send_ids": sum(1 for n in per_id if n > 1),
                "faults": {
                    "injected_errors": self.counters["injected_errors"],
                    "timed_out_requests": self.counters["timed_out_requests"],
                    "timed_out_messages": self.counters["timed_out_messages"],
                    "rate_limited": self.counters["rate_limited"],
                    "outage_errors": self.counters["outage_errors"],
                    "outage_dropped_connections": self.counters["outage_dropped_connections"],
                    "outages": self.counters["outages"],
                },
                "file_write_errors": self.counters["file_write_errors"],
                "last_seq": len(self.messages),
            }

    def send_id_counts(self, min_count: int) -> dict[str, int]:
        with self.lock:
            return {key: len(seqs) for key, seqs in self.by_send_id.items() if len(seqs) >= min_count}


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:120] or "message"


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _matches(message: StoredMessage, filters: dict[str, str]) -> bool:
    for key, wanted in filters.items():
        lowered = wanted.lower()
        if key == "recipient" and lowered not in (a.lower() for a in split_addresses(message.to)):
            return False
        if key == "fromemail" and lowered not in message.sender.lower():
            return False
        if key == "tag" and (message.tag or "").lower() != lowered:
            return False
        if key == "subject" and lowered not in message.subject.lower():
            return False
        if key == "status" and lowered not in ("sent", "processed"):
            return False
        if key == "messagestream" and message.stream.lower() != lowered:
            return False
        if key.startswith("metadata_") and message.metadata.get(key[len("metadata_"):]) != wanted:
            return False
    return True


def split_addresses(text: str) -> list[str]:
    """The bare addresses of a comma-separated To (`Name <a@b>` or `a@b`)."""
    return [address for _, address in email.utils.getaddresses([text]) if address]


def render_eml(stored: StoredMessage, message: dict[str, Any]) -> bytes:
    """A complete multipart/alternative MIME message. Written by hand: the email package's
    header objects cost about 9 ms a message, too slow for 100,000 messages."""
    boundary = f"=_mock_{stored.message_id}"
    headers = [
        ("From", _address_header(stored.sender)),
        ("To", _address_header(stored.to)),
        *([("Reply-To", _address_header(stored.reply_to))] if stored.reply_to else []),
        ("Subject", _text_header(stored.subject)),
        ("Date", email.utils.format_datetime(stored.simulated_at)),
        ("Message-ID", f"<{stored.message_id}@mock-postmark.local>"),
        *([("X-Relance-Send", _text_header(stored.send_id))] if stored.send_id else []),
        *([("X-PM-Tag", _text_header(stored.tag))] if stored.tag else []),
        *[(f"X-PM-Metadata-{_header_name(key)}", _text_header(value)) for key, value in stored.metadata.items()],
        *[(_header_name(h["Name"]), _text_header(h["Value"])) for h in message.get("Headers") or []
          if isinstance(h, dict) and isinstance(h.get("Name"), str) and isinstance(h.get("Value"), str)],
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    parts = [("text/plain", stored.text_body or "")]
    if stored.html_body:
        parts.append(("text/html", stored.html_body))
    lines = [f"{name}: {value}" for name, value in headers if name]
    lines.append("")
    for content_type, body in parts:
        encoded = binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"), istext=True).decode("ascii")
        encoded = encoded.replace("\n", "\r\n")
        lines += [f"--{boundary}", f"Content-Type: {content_type}; charset=utf-8",
                  "Content-Transfer-Encoding: quoted-printable", "", encoded]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("ascii")


def _header_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", name)[:60]


def _text_header(value: str) -> str:
    value = value.replace("\r", " ").replace("\n", " ")
    return value if value.isascii() else email.header.Header(value, "utf-8").encode()


def _address_header(value: str) -> str:
    pairs = email.utils.getaddresses([value])
    return ", ".join(email.utils.formataddr(pair, charset="utf-8") for pair in pairs if pair[1])


# ----------------------------------------------------------------------------------------------
# Validation: what Postmark refuses, and with which ErrorCode


class Refusal(Exception):
    """A Postmark error answer."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Message": self.message}
        if self.code is not None:
            out = {"ErrorCode": self.code, **out}
        return out


def inactive_message(addresses: list[str]) -> str:
    return ("You tried to send to recipient(s) that have been marked as inactive. Found inactive "
            f"addresses: {', '.join(addresses)}. Inactive recipients are ones that have generated a "
            "hard bounce, a spam complaint, or a manual suppression.")


def validate_message(message: Any, streams: set[str], inactive: set[str]) -> None:
    """Raises Refusal (422 and its ErrorCode) for what Postmark would refuse in one message."""
    if not isinstance(message, dict):
        raise Refusal(422, 403, "Each message must be a JSON object.")
    sender = message.get("From")
    if not isinstance(sender, str) or not sender.strip() or not split_addresses(sender):
        raise Refusal(422, 300, "Invalid 'From' address: it is missing or not an email address.")
    if not all(ADDRESS.match(address) for address in split_addresses(sender)):
        raise Refusal(422, 300, "Invalid 'From' address.")
    recipients: list[str] = []
    for key in ("To", "Cc", "Bcc"):
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise Refusal(422, 300, f"Invalid '{key}' address: it must be a string.")
        recipients.extend(split_addresses(value))
        if value.strip() and not split_addresses(value):
            raise Refusal(422, 300, f"Invalid '{key}' address.")
    if not isinstance(message.get("To"), str) or not split_addresses(message["To"]):
        raise Refusal(422, 300, "Zero recipients specified.")
    bad = [address for address in recipients if not ADDRESS.match(address)]
    if bad:
        raise Refusal(422, 300, "Invalid 'To' address: one of the recipients is not an email address.")
    if len(recipients) > MAX_RECIPIENTS:
        raise Refusal(422, 300, f"Too many recipients: at most {MAX_RECIPIENTS} in To, Cc and Bcc together.")
    html, text = message.get("HtmlBody"), message.get("TextBody")
    for name, body in (("HtmlBody", html), ("TextBody", text)):
        if body is not None and not isinstance(body, str):
            raise Refusal(422, 300, f"{name} must be a string.")
        if isinstance(body, str) and len(body.encode("utf-8")) > MAX_BODY_PART_BYTES:
            raise Refusal(422, 300, f"{name} is larger than 5 MB.")
    if not html and not text:
        raise Refusal(422, 300, "Provide either email TextBody or HtmlBody or both.")
    subject = message.get("Subject")
    if subject is not None and not isinstance(subject, str):
        raise Refusal(422, 300, "Subject must be a string.")
    tag = message.get("Tag")
    if tag is not None and (not isinstance(tag, str) or len(tag) > 1000):
        raise Refusal(422, 300, "Tag must be a string of at most 1000 characters.")
    validate_metadata(message.get("Metadata"))
    track_links = message.get("TrackLinks")
    if track_links is not None and track_links not in TRACK_LINKS_VALUES:
        raise Refusal(422, 300, f"TrackLinks must be one of {', '.join(TRACK_LINKS_VALUES)}.")
    if message.get("TrackOpens") is not None and not isinstance(message.get("TrackOpens"), bool):
        raise Refusal(422, 300, "TrackOpens must be true or false.")
    stream = message.get("MessageStream") or "outbound"
    if not isinstance(stream, str) or stream not in streams:
        raise Refusal(422, 1235, "The message stream for the provided 'MessageStream' was not found.")
    refused = [address for address in recipients if address.lower() in inactive]
    if refused:
        raise Refusal(422, 406, inactive_message(refused))


def validate_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise Refusal(422, 300, "Metadata must be an object of strings.")
    if len(metadata) > METADATA_MAX_KEYS:
        raise Refusal(422, 300, f"Metadata may have at most {METADATA_MAX_KEYS} keys.")
    seen: set[str] = set()
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise Refusal(422, 300, f"Metadata keys have at most {METADATA_MAX_KEY_CHARS} characters.")
        if key.lower() in seen:
            raise Refusal(422, 300, "Metadata keys must be unique, whatever their case.")
        seen.add(key.lower())
        if isinstance(value, (dict, list)) or value is None:
            raise Refusal(422, 300, "Metadata values must be strings.")
        if len(str(value)) > METADATA_MAX_VALUE_CHARS:
            raise Refusal(422, 300, f"Metadata values have at most {METADATA_MAX_VALUE_CHARS} characters.")


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def accepts_json(header: str | None) -> bool:
    return any(media_type(part) == "application/json" for part in (header or "").split(","))


# ----------------------------------------------------------------------------------------------
# HTTP


class DropConnection(Exception):
    """Close the connection without answering (a refusing outage)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer goes out in one write (the handler flushes after each request), with
    # TCP_NODELAY: written unbuffered, the body waited for the client's delayed acknowledgement
    # of the headers, about 40 ms an answer on Linux, which capped one connection near 25
    # requests a second and made every provider call of the chaos run 40 ms slower.
    wbufsize = -1
    disable_nagle_algorithm = True
    server_version = "mock-postmark"
    sys_version = ""
    # Idle keep-alive connections are closed after this long, so their threads end.
    timeout = 120
    state: MockState
    listeners: "Listeners"
    admin_only = False

    # -- plumbing -------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        if VERBOSE:
            log(f"{self.command} {urlsplit(self.path).path} {args[1] if len(args) > 1 else ''}")

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except DropConnection:
            self.close_connection = True
            self._abort()
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True

    def _abort(self) -> None:
        """Closes the socket at once, with a reset, as a provider that went away."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise Refusal(400, None, "Content-Length is not a number.") from None
        if length < 0:
            self.close_connection = True
            raise Refusal(400, None, "Content-Length is negative.")
        if length > limit:
            # Not reading the body leaves the connection unusable: close it after answering.
            self.close_connection = True
            raise Refusal(413, None, "Payload too large.")
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise Refusal(400, None, "Malformed chunked body.") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise Refusal(413, None, "Payload too large.")
            body.extend(self.rfile.read(size))
            self.rfile.readline(1024)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            # The client left (a timed-out request): nothing to answer to.
            self.close_connection = True

    # -- dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def do_HEAD(self) -> None:
        self.dispatch("HEAD")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if path.startswith("/_mock/"):
                self.admin(method, path)
            elif self.admin_only:
                self.send_json(404, {"error": "this port serves the admin API only"})
            else:
                self.postmark(method, path)
        except DropConnection:
            raise
        except Refusal as refusal:
            if path == "/v3/mail/send":
                self.send_json(refusal.status, sendgrid_errors(refusal.message))
            else:
                self.send_json(refusal.status, refusal.body())
        except Exception as error:  # noqa: BLE001 (a mock must survive any input)
            log(f"Unexpected error on {method} {path}: {type(error).__name__}: {error}")
            self.close_connection = True
            self.send_json(500, {"ErrorCode": 0, "Message": "Internal error in the mock."})

    # -- Postmark -------------------------------------------------------------------------------

    def postmark(self, method: str, path: str) -> None:
        endpoint = self.endpoint_name(method, path)
        if endpoint == "sendgrid":
            status = self.sendgrid_answer()
        else:
            status = self.postmark_answer(method, path, endpoint)
        self.state.record_request(endpoint, status)

    def endpoint_name(self, method: str, path: str) -> str:
        if method == "POST" and path == "/email":
            return "email"
        if method == "POST" and path == "/email/batch":
            return "batch"
        if method == "POST" and path == "/v3/mail/send":
            return "sendgrid"
        if method == "GET" and path == "/messages/outbound":
            return "search"
        if method == "GET" and re.fullmatch(r"/messages/outbound/[^/]+/details", path):
            return "details"
        return "other"

    def postmark_answer(self, method: str, path: str, endpoint: str) -> int:
        state = self.state
        outage = state.current_outage()
        if outage is not None and outage.mode == "refuse":
            state.count("outage_dropped_connections")
            raise DropConnection()
        sending = endpoint in ("email", "batch")
        # Read every body, even one we ignore, so the keep-alive connection stays in step.
        body = self.read_body(MAX_BATCH_BYTES if endpoint == "batch" else MAX_MESSAGE_BYTES)
        if outage is not None:
            state.count("outage_errors")
            return self.answer(500, {"ErrorCode": 0, "Message": "Service unavailable (mock outage)."})
        wait = state.rate_limited()
        if wait is not None:
            state.count("rate_limited")
            retry_after = str(max(1, int(wait + 0.999)))
            return self.answer(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."},
                               {"Retry-After": retry_after})
        if endpoint == "other":
            return self.answer(404, {"ErrorCode": 0, "Message": "The resource does not exist."})
        if not state.token_accepted(self.headers.get("X-Postmark-Server-Token")):
            return self.answer(401, {"ErrorCode": 10, "Message": "No Account or Server API tokens "
                                     "were supplied in the HTTP headers. Please add a header for "
                                     "either X-Postmark-Server-Token or X-Postmark-Account-Token."})
        if not accepts_json(self.headers.get("Accept")) or (
                sending and media_type(self.headers.get("Content-Type")) != "application/json"):
            return self.answer(422, {"ErrorCode": 409, "Message": "JSON required: the Content-Type "
                                     "and Accept headers must be set to application/json."})
        if endpoint == "search":
            return self.search()
        if endpoint == "details":
            return self.details(path.split("/")[3])
        if state.draw() < state.faults.error_rate:
            state.count("injected_errors")
            return self.answer(500, {"ErrorCode": 0, "Message": "Internal server error (mock)."})
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self.answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        return self.send_single(payload) if endpoint == "email" else self.send_batch(payload)

    # -- SendGrid -------------------------------------------------------------------------------

    def sendgrid_answer(self) -> int:
        state = self.state
        outage = state.current_outage()
        if outage is not None and outage.mode == "refuse":
            state.count("outage_dropped_connections")
            raise DropConnection()
        body = self.read_body(MAX_MESSAGE_BYTES)
        if outage is not None:
            state.count("outage_errors")
            return self.answer(500, sendgrid_errors("Service unavailable (mock outage)."))
        wait = state.rate_limited()
        if wait is not None:
            state.count("rate_limited")
            reset = str(int(time.time() + wait + 0.999))
            return self.answer(429, sendgrid_errors("too many requests"), {"X-RateLimit-Reset": reset})
        authorization = self.headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not state.token_accepted(token.strip()):
            return self.answer(401, sendgrid_errors("The provided authorization grant is invalid, expired, "
                                                    "or revoked"))
        if not accepts_json(self.headers.get("Accept")):
            return self.answer(406, sendgrid_errors("Accept header must be application/json."))
        if state.draw() < state.faults.error_rate:
            state.count("injected_errors")
            return self.answer(500, sendgrid_errors("Internal server error (mock)."))
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self.answer(400, sendgrid_errors("Bad Request"))
        try:
            message = sendgrid_message(payload)
        except SendGridRefusal as refusal:
            state.count("messages_rejected")
            return self.answer(400, sendgrid_errors(refusal.message, refusal.field))
        sandbox = (payload.get("mail_settings") or {}).get("sandbox_mode") or {}
        if isinstance(sandbox, dict) and sandbox.get("enable") is True:
            # Validated, not sent: SendGrid answers 200 and records nothing.
            state.count("sandbox_requests")
            time.sleep(state.latency_seconds())
            self.send_empty(200, {})
            return 200
        delay = self.timed_out()
        stored = state.accept(message, "sendgrid")
        if delay is not None:
            state.count("timed_out_requests")
            state.count("timed_out_messages")
        time.sleep(state.latency_seconds() if delay is None else delay)
        self.send_empty(202, {"X-Message-Id": stored.message_id})
        return 202

    def send_empty(self, status: int, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None,
               delay: float | None = None) -> int:
        time.sleep(self.state.latency_seconds() if delay is None else delay)
        self.send_json(status, payload, headers)
        return status

    def timed_out(self) -> float | None:
        """The delay of an accepted-then-timed-out answer, when this request draws one."""
        state = self.state
        if state.draw() < state.faults.timeout_rate:
            return state.faults.timeout_delay_ms / 1000.0
        return None

    def send_single(self, payload: Any) -> int:
        state = self.state
        if not isinstance(payload, dict):
            return self.answer(422, {"ErrorCode": 403, "Message": "Incompatible JSON: /email takes "
                                     "one message object."})
        try:
            validate_message(payload, state.streams, set(state.faults.inactive_recipients))
        except Refusal as refusal:
            state.count("messages_rejected")
            return self.answer(refusal.status, refusal.body())
        delay = self.timed_out()
        stored = state.accept(payload, "email")
        if delay is not None:
            state.count("timed_out_requests")
            state.count("timed_out_messages")
        return self.answer(200, accepted_answer(stored), delay=delay)

    def send_batch(self, payload: Any) -> int:
        state = self.state
        if not isinstance(payload, list):
            return self.answer(422, {"ErrorCode": 403, "Message": "Incompatible JSON: /email/batch "
                                     "takes an array of messages."})
        if len(payload) > BATCH_LIMIT:
            return self.answer(422, {"ErrorCode": 410, "Message": f"Too many batch messages: at most "
                                     f"{BATCH_LIMIT} in one request."})
        inactive = set(state.faults.inactive_recipients)
        delay = self.timed_out()
        results = []
        for message in payload:
            try:
                validate_message(message, state.streams, inactive)
            except Refusal as refusal:
                state.count("messages_rejected")
                results.append(refusal.body())
                continue
            results.append(accepted_answer(state.accept(message, "batch")))
        if delay is not None:
            state.count("timed_out_requests")
            state.count("timed_out_messages", sum(1 for r in results if r.get("ErrorCode") == 0))
        return self.answer(200, results, delay=delay)

    def search(self) -> int:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        values = {key: items[-1] for key, items in query.items()}
        try:
            count = int(values.pop("count"))
            offset = int(values.pop("offset"))
        except (KeyError, ValueError):
            return self.answer(422, {"ErrorCode": 700, "Message": "The count and offset parameters "
                                     "are required and must be integers."})
        if not 1 <= count <= SEARCH_MAX_COUNT or offset < 0 or count + offset > SEARCH_MAX_WINDOW:
            return self.answer(422, {"ErrorCode": 700, "Message": f"count must be from 1 to "
                                     f"{SEARCH_MAX_COUNT}, offset at least 0, and count + offset at "
                                     f"most {SEARCH_MAX_WINDOW}."})
        known = {"recipient", "fromemail", "tag", "subject", "status", "messagestream", "todate", "fromdate"}
        filters = {key: value for key, value in values.items() if key in known or key.startswith("metadata_")}
        filters.pop("todate", None)
        filters.pop("fromdate", None)
        total, found = self.state.search(filters, count, offset)
        return self.answer(200, {"TotalCount": total, "Messages": [m.postmark_summary() for m in found]})

    def details(self, message_id: str) -> int:
        stored = self.state.details(message_id)
        if stored is None:
            return self.answer(422, {"ErrorCode": 701, "Message": "This message was not found."})
        detail = stored.postmark_summary()
        detail.update({"HtmlBody": stored.html_body or "", "TextBody": stored.text_body or "",
                       "Body": "", "MessageEvents": []})
        return self.answer(200, detail)

    # -- admin ----------------------------------------------------------------------------------

    def admin(self, method: str, path: str) -> None:
        state = self.state
        query = {key: items[-1] for key, items in parse_qs(urlsplit(self.path).query).items()}
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_mock/health"):
            self.send_json(200, {"ok": True})
        elif route == ("GET", "/_mock/config"):
            self.send_json(200, self.config_view())
        elif route in (("PUT", "/_mock/config"), ("POST", "/_mock/config"), ("PATCH", "/_mock/config")):
            changes = self.admin_json()
            with state.lock:
                try:
                    state.faults.update(changes)
                except ValueError as error:
                    self.send_json(400, {"error": str(error)})
                    return
            log(f"Settings changed: {sorted(changes)}.")
            self.send_json(200, self.config_view())
        elif route == ("GET", "/_mock/outage"):
            self.send_json(200, outage_view(state.current_outage()))
        elif route == ("POST", "/_mock/outage"):
            self.start_outage(self.admin_json())
        elif route == ("DELETE", "/_mock/outage"):
            self.listeners.end_outage()
            self.send_json(200, outage_view(None))
        elif route == ("GET", "/_mock/stats"):
            self.send_json(200, state.stats())
        elif route == ("GET", "/_mock/send-ids"):
            self.send_json(200, {"send_ids": state.send_id_counts(_int(query.get("min_count"), 1, 1))})
        elif route == ("GET", "/_mock/messages"):
            self.list_messages(query)
        elif route == ("POST", "/_mock/reset"):
            with state.lock:
                state.reset()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": f"no admin route {method} {path}"})

    def admin_json(self) -> Any:
        raw = self.read_body(1024 * 1024)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refusal(400, None, "The body is not JSON.") from None

    def config_view(self) -> dict[str, Any]:
        with self.state.lock:
            view = asdict(self.state.faults)
        view["server_tokens"] = "any" if not self.state.tokens else len(self.state.tokens)
        view["message_streams"] = sorted(self.state.streams)
        view["out_dir"] = str(self.state.out_dir.resolve()) if self.state.out_dir else None
        return view

    def start_outage(self, body: Any) -> None:
        if not isinstance(body, dict):
            self.send_json(400, {"error": "the body must be a JSON object"})
            return
        mode = body.get("mode", "error")
        if mode not in ("error", "refuse"):
            self.send_json(400, {"error": "mode must be error or refuse"})
            return
        try:
            if "until" in body:
                until = parse_instant(str(body["until"]))
                seconds = (until - datetime.now(timezone.utc)).total_seconds()
            else:
                seconds = float(body.get("seconds", 60))
        except (TypeError, ValueError):
            self.send_json(400, {"error": "give seconds (a number) or until (an RFC 3339 instant)"})
            return
        if seconds <= 0:
            self.send_json(400, {"error": "the outage must end in the future"})
            return
        outage = self.listeners.start_outage(mode, seconds)
        # The answer goes out on this already-open connection even when the listener closes.
        self.close_connection = True
        self.send_json(200, outage_view(outage))

    def list_messages(self, query: dict[str, str]) -> None:
        after = _int(query.get("after"), 0, 0)
        limit = min(_int(query.get("limit"), 500, 1), 5000)
        bodies = query.get("bodies", "true").lower() not in ("0", "false", "no")
        selected, next_after = self.state.page(after, limit, query.get("send_id"), query.get("to"))
        self.send_json(200, {
            "messages": [message.summary(bodies) for message in selected],
            "next_after": next_after,
            "last_seq": self.state.stats()["last_seq"],
        })


def _int(text: str | None, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(text)) if text is not None else default
    except ValueError:
        return default


class SendGridRefusal(Exception):
    """What SendGrid answers 400 for, with the field it names."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def sendgrid_errors(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field}]}


def sendgrid_address(value: Any, field: str) -> str:
    """`Name <email>` (or the email) of a SendGrid `{email, name?}` object."""
    if not isinstance(value, dict) or not isinstance(value.get("email"), str) \
            or not ADDRESS.match(value["email"]):
        raise SendGridRefusal(f"The {field} does not contain a valid address.", field)
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or any(c in name for c in ";,")):
        raise SendGridRefusal(f"The {field} name must be a string without ; or ,.", field.replace("email", "name"))
    return f"{name} <{value['email']}>" if name else value["email"]


def sendgrid_message(payload: Any) -> dict[str, Any]:
    """A SendGrid mail/send body as the Postmark message the mock stores, or SendGridRefusal."""
    if not isinstance(payload, dict):
        raise SendGridRefusal("Bad Request", None)
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise SendGridRefusal("The personalizations field is required and must have at least one "
                              "personalization.", "personalizations")
    if len(personalizations) > 1:
        raise SendGridRefusal("The mock stores one personalization a message.", "personalizations")
    personalization = personalizations[0]
    recipients = personalization.get("to") if isinstance(personalization, dict) else None
    if not isinstance(recipients, list) or not recipients:
        raise SendGridRefusal("The to array is required for all personalization objects, and must have "
                              "at least one email object with a valid email address.", "personalizations.0.to")
    to = ", ".join(sendgrid_address(recipient, "personalizations.0.to.email") for recipient in recipients)
    sender = sendgrid_address(payload.get("from"), "from.email")
    subject = personalization.get("subject") or payload.get("subject")
    if not isinstance(subject, str) or not subject:
        raise SendGridRefusal("The subject is required. You can get around this requirement if you use "
                              "a template with a subject defined or if every personalization has a subject "
                              "defined.", "subject")
    content = payload.get("content")
    parts = {item.get("type"): item.get("value") for item in content if isinstance(item, dict)} \
        if isinstance(content, list) else {}
    if not any(isinstance(value, str) and value for value in parts.values()):
        raise SendGridRefusal("Unless a valid template_id is provided, the content parameter is required. "
                              "There must be at least one defined content block.", "content")
    custom_args: dict[str, Any] = {}
    for args in (payload.get("custom_args"), personalization.get("custom_args")):
        if args is None:
            continue
        if not isinstance(args, dict) or not all(isinstance(value, str) for value in args.values()):
            raise SendGridRefusal("Custom args must be an object of strings.", "custom_args")
        custom_args.update(args)
    reply_to = payload.get("reply_to")
    categories = payload.get("categories") if isinstance(payload.get("categories"), list) else []
    return {
        "To": to,
        "From": sender,
        "ReplyTo": reply_to.get("email") if isinstance(reply_to, dict) else None,
        "Subject": subject,
        "HtmlBody": parts.get("text/html"),
        "TextBody": parts.get("text/plain"),
        "Tag": str(categories[-1]) if categories else None,
        "Metadata": custom_args,
    }


def accepted_answer(stored: StoredMessage) -> dict[str, Any]:
    return {
        "To": stored.to,
        "SubmittedAt": postmark_timestamp(stored.simulated_at),
        "MessageID": stored.message_id,
        "ErrorCode": 0,
        "Message": "OK",
    }


def outage_view(outage: Outage | None) -> dict[str, Any]:
    if outage is None:
        return {"active": False}
    return {"active": True, "mode": outage.mode, "until": rfc3339(outage.until),
            "seconds_left": round(max(0.0, outage.until_monotonic - time.monotonic()), 3)}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Listeners:
    """The API listener (closed during a refusing outage, then opened again on the same port)
    and the optional admin-only listener."""

    def __init__(self, state: MockState, host: str, port: int, admin_port: int | None) -> None:
        self.state = state
        self.host = host
        self.lock = threading.Lock()
        self.api: Server | None = None
        self.admin: Server | None = None
        self.timer: threading.Timer | None = None
        self.closing: threading.Thread | None = None
        self.port = port
        self.open_api()
        if admin_port is not None:
            handler = self.handler_class(admin_only=True)
            self.admin = Server((host, admin_port), handler)
            threading.Thread(target=self.admin.serve_forever, name="admin", daemon=True).start()

    def handler_class(self, admin_only: bool) -> type[Handler]:
        return type("BoundHandler", (Handler,), {"state": self.state, "listeners": self, "admin_only": admin_only})

    def open_api(self) -> None:
        server = Server((self.host, self.port), self.handler_class(admin_only=False))
        self.port = server.server_address[1]
        self.api = server
        threading.Thread(target=server.serve_forever, name="api", daemon=True).start()

    def close_api(self) -> None:
        server, self.api = self.api, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def start_outage(self, mode: str, seconds: float) -> Outage:
        with self.lock:
            outage = Outage(mode, time.monotonic() + seconds,
                            datetime.now(timezone.utc) + timedelta(seconds=seconds))
            with self.state.lock:
                self.state.outage = outage
                self.state.counters["outages"] += 1
            if self.timer is not None:
                self.timer.cancel()
            self.timer = threading.Timer(seconds, self.end_outage)
            self.timer.daemon = True
            self.timer.start()
            if mode == "refuse" and self.api is not None and self.closing is None:
                # shutdown() waits for the serving loop: do it off this request's thread.
                self.closing = threading.Thread(target=self.close_api, daemon=True)
                self.closing.start()
            log(f"Outage started: {mode} for {seconds:.1f} s.")
            return outage

    def end_outage(self) -> None:
        with self.lock:
            with self.state.lock:
                self.state.outage = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.closing is not None:
                self.closing.join()
                self.closing = None
            if self.api is None:
                for _ in range(50):
                    try:
                        self.open_api()
                        break
                    except OSError:
                        time.sleep(0.1)
            log("Outage ended.")

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.close_api()
        if self.admin is not None:
            self.admin.shutdown()
            self.admin.server_close()


# ----------------------------------------------------------------------------------------------
# Command line

VERBOSE = False


def log(text: str) -> None:
    print(f"[mock-postmark] {text}", file=sys.stderr, flush=True)


def clock_from(args: argparse.Namespace) -> Clock:
    """The services' defaults: no epoch, when the process started; no start, the epoch."""
    if not args.clock_start and not args.clock_epoch:
        return Clock()
    epoch = parse_instant(args.clock_epoch) if args.clock_epoch else datetime.now(timezone.utc)
    start = parse_instant(args.clock_start) if args.clock_start else epoch
    return Clock(speed=float(args.clock_speed or 1.0), start=start, epoch=epoch)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port of the Postmark API and admin API (0: any free one)")
    parser.add_argument("--admin-port", type=int, default=None, help="also serve the admin API alone on this port")
    parser.add_argument("--port-file", type=Path, help="write the chosen port to this file once listening")
    parser.add_argument("--server-token", action="append", default=[],
                        help="accepted server token (repeatable); default: any non-empty token")
    parser.add_argument("--message-stream", action="append", default=[],
                        help="known message streams (repeatable); default: outbound")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--timeout-rate", type=float, default=0.0,
                        help="share of sends accepted whose answer is held past the client's timeout")
    parser.add_argument("--timeout-delay-ms", type=float, default=15_000.0)
    parser.add_argument("--rate-limit", type=float, default=0.0, help="requests a second; beyond, 429 (0: none)")
    parser.add_argument("--rate-burst", type=int, default=0, help="bucket size (default: one second's worth)")
    parser.add_argument("--inactive", action="append", default=[], help="an inactive recipient address (repeatable)")
    parser.add_argument("--out-dir", type=Path, help="write each accepted message as .eml and .html here")
    parser.add_argument("--max-bodies", type=int, default=50_000,
                        help="keep the bodies of this many newest messages in memory (default 50000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws and message ids")
    parser.add_argument("--clock-speed", default=os.environ.get("RELANCE__RUNTIME__CLOCK__SPEED"))
    parser.add_argument("--clock-start", default=os.environ.get("RELANCE__RUNTIME__CLOCK__START"),
                        help="simulated instant at --clock-epoch (default RELANCE__RUNTIME__CLOCK__START)")
    parser.add_argument("--clock-epoch", default=os.environ.get("RELANCE__RUNTIME__CLOCK__EPOCH"))
    parser.add_argument("--verbose", action="store_true", help="log every request (method, path, status)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[MockState, Listeners]:
    faults = FaultSettings()
    faults.update({
        "latency_ms": args.latency_ms, "jitter_ms": args.jitter_ms, "error_rate": args.error_rate,
        "timeout_rate": args.timeout_rate, "timeout_delay_ms": args.timeout_delay_ms,
        "rate_limit_per_second": args.rate_limit, "rate_limit_burst": args.rate_burst,
        "inactive_recipients": args.inactive,
    })
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    state = MockState(faults, args.server_token, args.message_stream or ["outbound"],
                      max(args.max_bodies, 0), args.out_dir, clock_from(args), args.seed)
    return state, Listeners(state, args.host, args.port, args.admin_port)


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    try:
        args = parse_args(argv)
        VERBOSE = args.verbose
        state, listeners = build(args)
    except (ValueError, OSError) as error:
        log(f"Cannot start: {error}")
        return 2
    base = f"http://{args.host}:{listeners.port}"
    admin = f"http://{args.host}:{listeners.admin.server_address[1]}" if listeners.admin else base
    print(json.dumps({"postmark": base, "admin": f"{admin}/_mock"}), flush=True)
    if args.port_file:
        args.port_file.write_text(f"{listeners.port}\n")
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    listeners.stop()
    stats = state.stats()
    log(f"Stopped: {stats['messages_accepted']} messages accepted, "
        f"{stats['duplicate_messages']} duplicates, {stats['requests_total']} requests.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
