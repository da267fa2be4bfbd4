"""A webhook receiver on loopback that verifies Standard Webhooks signatures as
the spec says a consumer must: the signed content is ``id.timestamp.body``, the
key the base64 after ``whsec_``, any of the space-separated ``v1,`` signatures
may match (compared in constant time), and a timestamp more than the tolerance
(five minutes) away from the receiver's clock is refused, so a captured
message cannot be replayed later."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 5 * 60


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    why: str


@dataclass
class Receiver:
    secret: str = ""
    url: str = ""
    # Answers to give, in turn (the last one repeats).
    answers: list[int] = field(default_factory=lambda: [200])
    # Seconds the receiver's clock is ahead of the sender's (to replay later).
    clock_offset: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def verify(self, headers: dict[str, str], body: bytes) -> tuple[bool, str]:
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not (msg_id and timestamp and signatures):
            return False, "missing headers"
        try:
            sent_at = int(timestamp)
        except ValueError:
            return False, "bad timestamp"
        if abs(time.time() + self.clock_offset - sent_at) > TOLERANCE_SECONDS:
            return False, "timestamp outside the tolerance"
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        content = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for signature in signatures.split():
            version, _, value = signature.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True, "ok"
        return False, "no signature matches"

    def post(self, headers: dict[str, str], body: bytes) -> int:
        ok, why = self.verify(headers, body)
        self.received.append(Received(headers=headers, body=body, verified=ok, why=why))
        if not ok:
            return 401
        attempt = len([r for r in self.received if r.verified]) - 1
        return self.answers[min(attempt, len(self.answers) - 1)]


@contextmanager
def receiver_running(
    *,
    bind: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    **options: Any,
) -> Iterator[Receiver]:
    """A receiver listening on ``bind`` (any loopback address) and ``port`` (0:
    any free one), in TLS with the
    ``tls`` server context if given; each request's Host header is kept too."""
    receiver = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.post(headers, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.port = server.server_address[1]
    scheme = "https" if tls is not None else "http"
    receiver.url = f"{scheme}://{bind}:{receiver.port}/hooks/cdp"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
