"""The sandbox's HTTP server: Stripe's wire behaviour plus knobs for latency, limits and faults."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from sandbox import errors
from sandbox.admin import handle_admin
from sandbox.api import Api, authenticate, check_permission
from sandbox.errors import ApiError
from sandbox.ids import b62
from sandbox.params import parse_body, parse_params
from sandbox.world import SandboxWorld

FAULT_KINDS = ("500", "429", "drop")
log = logging.getLogger(__name__)


class _Drop(Exception):
    """Close the connection without answering."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open many connections at once


class RateLimiter:
    """A token bucket per account: `rps` tokens a second, bursts of up to `rps` requests."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, account_id: str, rps: float) -> bool:
        now = time.monotonic()
        capacity = max(1.0, rps)
        with self._lock:
            tokens, last = self._buckets.get(account_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rps)
            if tokens < 1.0:
                self._buckets[account_id] = (tokens, now)
                return False
            self._buckets[account_id] = (tokens - 1.0, now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


class SandboxServer:
    """Serves a SandboxWorld over HTTP/1.1 (keep-alive) in a background thread."""

    def __init__(
        self,
        world: SandboxWorld,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        rate_limit_rps: float | None = None,
        send_should_retry: bool = True,
        fault_rate: float = 0.0,
    ) -> None:
        self.world = world
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.rate_limit_rps = rate_limit_rps
        self.send_should_retry = send_should_retry
        self.fault_rate = fault_rate
        self.api = Api(world)
        self.limiter = RateLimiter()
        self._faults: dict[str, deque[str]] = {}
        self._idempotent: OrderedDict[tuple[str, str], tuple[int, bytes]] = OrderedDict()
        self._fault_rng = random.Random(f"{world.seed}:faults")
        self._lock = threading.Lock()
        self._stats: Counter[tuple[str, str]] = Counter()
        self._status: Counter[int] = Counter()
        self._total = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        httpd = _HTTPServer((self.host, self.port), handler)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="stripe-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the CLI) until interrupted."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- knobs and statistics -------------------------------------------------------------------
    def inject_faults(self, account_name: str, count: int, kind: str = "500") -> None:
        """Make the account's next `count` requests fail: "500", "429" or "drop" (no answer)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        account_id = self.world.accounts[account_name].account_id
        with self._lock:
            self._faults.setdefault(account_id, deque()).extend([kind] * count)

    def config(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "rate_limit_rps": self.rate_limit_rps,
            "send_should_retry": self.send_should_retry,
            "fault_rate": self.fault_rate,
        }

    def configure(self, **values: Any) -> dict[str, Any]:
        for key, value in values.items():
            if key not in self.config():
                raise ApiError(400, f"Unknown sandbox setting: {key}", param=key)
            setattr(self, key, value)
        return self.config()

    def stats(self) -> dict[str, Any]:
        """Total requests, and counts per (account_id, path) and per status code."""
        with self._lock:
            by_account: Counter[str] = Counter()
            for (account_id, _path), count in self._stats.items():
                by_account[account_id] += count
            return {
                "total": self._total,
                "by_account_path": dict(self._stats),
                "by_account": dict(by_account),
                "by_status": dict(self._status),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._status.clear()
            self._total = 0

    # --- request pipeline -----------------------------------------------------------------------
    @staticmethod
    def next_request_id() -> str:
        return "req_" + b62(int.from_bytes(os.urandom(11), "big"), 14)

    def record(self, account_id: str, path: str, status: int) -> None:
        with self._lock:
            self._total += 1
            self._stats[(account_id, path)] += 1
            self._status[status] += 1

    def _take_fault(self, account_id: str) -> str | None:
        with self._lock:
            queue = self._faults.get(account_id)
            if queue:
                return queue.popleft()
            if self.fault_rate and self._fault_rng.random() < self.fault_rate:
                return "500"
        return None

    def respond(
        self, method: str, target: str, headers: Any, body: bytes, request_id: str
    ) -> tuple[int, bytes, dict[str, str], str]:
        """(status, body, extra headers, account id) for one /v1 request; may raise _Drop."""
        url = urlsplit(target)
        path = url.path
        account_id = ""
        try:
            if self.latency_ms:
                time.sleep(self.latency_ms / 1000)
            info, account, key = authenticate(self.world, headers)
            account_id = account.account_id
            fault = self._take_fault(account_id)
            if fault == "drop":
                raise _Drop(account_id)
            if fault == "429" or (
                self.rate_limit_rps is not None
                and not self.limiter.allow(account_id, self.rate_limit_rps)
            ):
                raise errors.rate_limited(self.send_should_retry)
            if fault == "500":
                raise errors.server_error()
            check_permission(info, account, key, method, path)
            params = parse_params(url.query)
            if method == "POST":
                params.update(parse_body(headers.get("Content-Type") or "", body))
            idempotency_key = headers.get("Idempotency-Key") if method != "GET" else None
            if idempotency_key:
                return (
                    *self._once(account_id, idempotency_key, method, path, params, request_id),
                    {},
                    account_id,
                )
            return 200, self.api.handle(account, method, path, params), {}, account_id
        except ApiError as exc:
            return exc.status, orjson.dumps(exc.body(request_id)), exc.headers, account_id

    def _once(
        self,
        account_id: str,
        idempotency_key: str,
        method: str,
        path: str,
        params: Any,
        request_id: str,
    ) -> tuple[int, bytes]:
        """Run a write once per Idempotency-Key, replaying its answer to retries like Stripe."""
        slot = (account_id, idempotency_key)
        with self.world.lock:
            if slot in self._idempotent:
                return self._idempotent[slot]
            account = self.world.by_id[account_id]
            try:
                result = (200, self.api.handle(account, method, path, params))
            except ApiError as exc:
                result = (exc.status, orjson.dumps(exc.body(request_id)))
            self._idempotent[slot] = result
            while len(self._idempotent) > 10_000:
                self._idempotent.popitem(last=False)
            return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stripe-sandbox"
    sys_version = ""
    sandbox: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        # Small answers must not wait for the client's delayed ACK (40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:  # Stripe has none: answered with its "Unrecognized request URL"
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sandbox = self.sandbox
        request_id = sandbox.next_request_id()
        try:
            if self.path.startswith("/_sandbox"):
                status, payload = handle_admin(sandbox, method, self.path, self.headers, body)
                self._send(status, payload, request_id, {})
                return
            status, payload, extra, account_id = sandbox.respond(
                method, self.path, self.headers, body, request_id
            )
        except _Drop as drop:
            sandbox.record(str(drop), urlsplit(self.path).path, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception:  # a bug must still look like Stripe's 500, not a dropped connection
            log.exception("sandbox failed on %s %s", method, urlsplit(self.path).path)
            status, extra, account_id = 500, {}, ""
            payload = orjson.dumps(errors.server_error().body(request_id))
        sandbox.record(account_id, urlsplit(self.path).path, status)
        self._send(status, payload, request_id, extra)

    def _send(self, status: int, payload: bytes, request_id: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", request_id)
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or "2025-06-30.basil")
        for name, value in headers.items():
            self.send_header(name, value)
        # Headers and body in one write: one packet for small answers.
        self._headers_buffer.append(b"\r\n" + payload)
        self.flush_headers()
