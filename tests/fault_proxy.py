"""A fault-injecting HTTP proxy between a StripeClient and the sandbox, for the fault suite.

It forwards every request to the sandbox and, at a seeded rate, answers a Stripe request
(`/v1/...`) with one of the faults a real network and a real API produce: 500/502/503,
429 with Retry-After, a connection reset mid-answer, a truncated body, a 200 that is not
JSON, or an answer slower than the client's timeout. Or with a well-formed 200 of the wrong
shape (SHAPE_KINDS), made from the real answer: the object (or a listed one) without its
`id` (a balance without `available`), only its `object` field ({"object": "account"}),
with an `id` that is not a string, an amount (else a timestamp) as text, a JSON value that
is not an object, the answer wrapped in a list, an empty body. Writes (POST/DELETE) are
forwarded untouched unless asked for. It only listens on, and only talks to, 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
TRANSPORT_KINDS = ("500", "502", "503", "429", "reset", "truncated", "not_json", "slow")
SHAPE_KINDS = ("no_id", "only_object", "id_not_string", "wrong_type", "not_object", "a_list",
               "empty_body")
FAULT_KINDS = TRANSPORT_KINDS + SHAPE_KINDS
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    """Forwards to `upstream` (a http://127.0.0.1:PORT sandbox), injecting faults.

    `rate` is the share of Stripe requests that fail; which kind is drawn round-robin
    over a seeded shuffle of `kinds`, so every kind shows up once a few faults have.
    `script(kinds)` queues faults for the very next requests, whatever the rate.
    """

    def __init__(self, upstream: str, *, seed: int = 0, rate: float = 0.0,
                 kinds: Iterable[str] = FAULT_KINDS, slow_seconds: float = 2.0,
                 retry_after: int = 1, methods: Iterable[str] = ("GET",)) -> None:
        parts = urlsplit(upstream)
        if parts.hostname != LOOPBACK or parts.scheme != "http" or not parts.port:
            raise ValueError(f"the fault proxy only talks to http://{LOOPBACK}:PORT")
        self.upstream_port = parts.port
        self.rate = rate
        self.kinds = list(kinds)
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.methods = {m.upper() for m in methods}
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        # 2xx answers from upstream, by path (a "truncated" or "reset" one still counts).
        self.answered: Counter[str] = Counter()
        # An outage: once this many requests have been forwarded, every Stripe request fails.
        self.outage_after: int | None = None
        self.outage_kind = "503"
        # A targeted fault: called with each request's target (path and query).
        self.rule: Callable[[str], str | None] | None = None
        # One by key: called with the target and the request's API key (Bearer).
        self.key_rule: Callable[[str, str], str | None] | None = None
        self._rng = random.Random(seed)
        self._order = self._rng.sample(self.kinds, len(self.kinds))
        self._scripted: deque[str] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        handler = type("FaultHandler", (_Handler,), {"proxy": self})
        self._httpd = _Server((LOOPBACK, 0), handler)
        threading.Thread(target=self._httpd.serve_forever, name="fault-proxy",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the proxy first"
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    # --- faults ---------------------------------------------------------------------------
    def script(self, kinds: Iterable[str]) -> None:
        """Fail the next requests with these kinds, in order."""
        kinds = list(kinds)
        if set(kinds) - set(FAULT_KINDS):
            raise ValueError(f"unknown fault kinds in {kinds}")
        with self._lock:
            self._scripted.extend(kinds)

    def draw(self, method: str, target: str, key: str = "") -> str | None:
        """The fault for this request, or None to forward it as it is."""
        if method not in self.methods or not target.startswith("/v1/"):
            return None
        with self._lock:
            kind = self.rule(target) if self.rule is not None else None
            if not kind and self.key_rule is not None:
                kind = self.key_rule(target, key)
            if kind:
                pass
            elif self.outage_after is not None and self.forwarded >= self.outage_after:
                kind = self.outage_kind
            elif self._scripted:
                kind = self._scripted.popleft()
            elif self.rate and self.kinds and self._rng.random() < self.rate:
                kind = self._order[sum(self.injected.values()) % len(self._order)]
            else:
                return None
            self.injected[kind] += 1
            return kind


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        fault = self.proxy.draw(method, self.path, key)
        if fault in ("500", "502", "503", "429", "not_json"):
            self._answer_instead(fault)
            return
        if fault == "slow":
            time.sleep(self.proxy.slow_seconds)
        status, headers, payload = self._forward(method, body)
        if fault == "reset":
            self._send(status, headers, payload, cut_at=len(payload) // 2)
            self._reset()
        elif fault == "truncated":
            # A body cut short whose length header agrees: only a JSON decoder notices.
            self._send(status, headers, payload[: len(payload) // 2])
        elif fault in SHAPE_KINDS and 200 <= status < 300:
            self._send(status, headers, misshape(fault, payload))
        else:
            self._send(status, headers, payload)

    def _forward(self, method: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        for attempt in range(2):  # a kept-alive upstream connection may have gone stale
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    LOOPBACK, self.proxy.upstream_port, timeout=60)
            try:
                self._upstream.request(method, self.path, body=body or None, headers=headers)
                answer = self._upstream.getresponse()
                payload = answer.read()
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt:
                    raise
                continue
            with self.proxy._lock:
                self.proxy.forwarded += 1
                if 200 <= answer.status < 300:
                    self.proxy.answered[urlsplit(self.path).path] += 1
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            return answer.status, kept, payload
        raise AssertionError("unreachable")

    def _answer_instead(self, fault: str) -> None:
        if fault == "not_json":
            page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
            self._send(200, [("Content-Type", "text/html")], page)
            return
        status = int(fault)
        headers = [("Content-Type", "application/json"), ("Request-Id", "req_faultproxy")]
        if status == 429:
            headers.append(("Retry-After", str(self.proxy.retry_after)))
            body = (b'{"error": {"type": "invalid_request_error", "code": "rate_limit", '
                    b'"message": "Too many requests hit the API too quickly."}}')
        elif status == 502:  # what a load balancer in front of the API says
            headers[0] = ("Content-Type", "text/html")
            body = b"<html><head><title>502 Bad Gateway</title></head></html>"
        else:
            body = b'{"error": {"type": "api_error", "message": "Injected by the fault proxy."}}'
        self._send(status, headers, body)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes,
              cut_at: int | None = None) -> None:
        with contextlib.suppress(OSError):  # the client may have timed out and gone
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if cut_at is None else payload[:cut_at])
            self.wfile.flush()

    def _reset(self) -> None:
        """Drop the connection with a TCP RST, as a crashed peer or a middlebox does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()


def misshape(kind: str, payload: bytes) -> bytes:
    """A well-formed answer of the wrong shape, made from the real one (`SHAPE_KINDS`)."""
    if kind == "empty_body":
        return b""
    if kind == "not_object":
        return b'"account"'
    if kind == "a_list":
        return b"[" + payload + b"]"
    body = json.loads(payload)
    if kind == "only_object":  # {"object": "account"}: well-formed, and nothing in it
        return json.dumps({"object": body.get("object")}).encode()
    listed = body.get("data") if isinstance(body, dict) else None
    # A list page breaks in the middle object: paging reads only the first and last.
    target = listed[len(listed) // 2] if isinstance(listed, list) and listed else body
    if kind == "wrong_type":  # an amount (else a timestamp) as text: "2000"
        changed = target.get("data", {}).get("object") if "type" in target else None
        target = changed if isinstance(changed, dict) else target  # an event: its object
        field = next((f for f in ("amount", "created", "available") if f in target), "id")
        target[field] = str(target.get(field))
        return json.dumps(body).encode()
    field = next((f for f in ("id", "available", "data") if f in target), "id")
    if kind == "no_id":
        target.pop(field, None)
    else:  # id_not_string
        target[field] = 12345
    return json.dumps(body).encode()
