"""localstripe behind a thin proxy that speaks Stripe's list semantics.

`localstripe` (PyPI) is an independent, partial implementation of the Stripe API.
The pipeline must not bend to it, so the tests put this proxy in front of it: the
pipeline and the official SDK talk Stripe to the proxy, the proxy asks localstripe
and reshapes only what localstripe does differently. Everything else (creates,
updates, deletes, retrieves, errors) passes through byte for byte.

What localstripe (1.15) does differently, and what the proxy does about it:

- Lists run oldest first (insertion order; refunds and balance transactions newest
  first by second). The proxy fetches the whole list in one upstream request and
  orders it newest first by `created`, ties broken newest-inserted first.
- `created` filters: charges take only `created[gt]` (others answer 500), events
  take all four, every other list rejects them. The proxy strips them and applies
  `created` (exact) and `created[gt|gte|lt|lte]` itself.
- `limit` has no maximum and `ending_before` does not exist; `starting_after` works
  only on localstripe's own order. The proxy pages the reordered list itself:
  `limit` 1..100 (default 10), `starting_after`, `ending_before`, `has_more`, and
  Stripe's 400 for a bad `limit` or an unknown cursor object.
- `/v1/events` takes one exact `type`. The proxy fetches all events once and keeps
  those matching `types[]` (exact, at most 20) or `type` (with `*` wildcards). One
  fetch, not one per type, so events of different types created in the same second
  keep their true order (which event is newest decides which snapshot wins).
- No endpoint at all for `/v1/prices` (localstripe models legacy Plans, and its
  subscription items carry `plan`, not `price`) or `/v1/account`: a list endpoint
  localstripe lacks answers an empty Stripe list; `/v1/account` answers a minimal
  account (`LOCALSTRIPE_ACCOUNT_ID`, `created` = when the harness started it).
- `/v1/balance` returns `available` and `pending` as one object each instead of
  Stripe's list of per-currency objects: the proxy wraps them in a list.

Not modelled at all, so not checkable here (the sandbox tests cover them): no
disputes and no credit notes (no endpoints: their lists answer empty), coupons emit no
events (coupon.created/updated/deleted), embedded lists are never cut short (no
`has_more` on a subscription's items or an invoice's lines to page past); charges
emit no events (`charge.refunded`, `charge.updated`, ...), refunds emit no events,
products and prices emit no `*.updated`, invoices change without events, and
embedded lists (a customer's `subscriptions`, a charge's `refunds`) change without
an event on the parent. localstripe also keeps its store in a fixed
/tmp/localstripe.pickle and listens on every interface; the launcher below keeps the
store in memory (so parallel runs do not share it) and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

LOCALSTRIPE_ACCOUNT_ID = "acct_localstripe"
# localstripe accepts any secret key that starts with sk_.
LOCALSTRIPE_KEY = "sk_test_localstripe0000"
# One upstream request fetches a whole localstripe list (it has no maximum).
UPSTREAM_LIMIT = 1_000_000
MAX_EVENT_TYPES = 20

_LAUNCHER = """
import sys
from aiohttp import web
from localstripe import resources, server
# localstripe pickles its whole store to /tmp/localstripe.pickle on every write: shared by
# every run on the machine and O(store) per object. Keep it in memory instead.
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# Paths that look like collections but are not lists.
_NOT_LISTS = {"/v1/balance", "/v1/account"}
_HOP_HEADERS = {"host", "content-length", "connection", "accept-encoding", "keep-alive",
                "transfer-encoding"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripeServer:
    """A localstripe subprocess on 127.0.0.1, with an in-memory store."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started_at = int(time.time())
        self._process: subprocess.Popen[bytes] | None = None
        # Kept open as long as the process: its start-up errors, should it die.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115

    def start(self, timeout: float = 30.0) -> LocalStripeServer:
        self.started_at = int(time.time())
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"localstripe exited at start:\n{self._stderr_text()}")
            try:
                response = httpx.get(f"{self.url}/v1/customers", timeout=1.0,
                                     headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"})
                if response.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"localstripe did not answer within {timeout:.0f}s")

    def flush(self) -> None:
        """Empty localstripe's store (its own /_config/data endpoint)."""
        httpx.delete(f"{self.url}/_config/data", timeout=10.0).raise_for_status()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None
        self._stderr.close()

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]


class StripeRequestError(Exception):
    """A request Stripe itself would refuse; answered with Stripe's error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": "invalid_request_error", "code": code,
                               "message": message, "param": param}}


@dataclass
class ListQuery:
    """The list parameters the proxy answers itself; the rest goes to localstripe."""

    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    created: dict[str, int] = field(default_factory=dict)
    types: list[str] | None = None
    type: str | None = None
    upstream: list[tuple[str, str]] = field(default_factory=list)


def _named(key: str, name: str) -> bool:
    return key == name or key.startswith(name + "[")


def parse_list_query(pairs: list[tuple[str, str]], events: bool) -> ListQuery:
    query = ListQuery()
    for key, value in pairs:
        if key == "limit":
            query.limit = _int_param(key, value)
            if not 1 <= query.limit <= 100:
                raise StripeRequestError(
                    "Invalid integer: limit must be between 1 and 100", "limit")
        elif key in ("starting_after", "ending_before"):
            setattr(query, key, value)
        elif _named(key, "created"):
            op = key[len("created["):-1] if key != "created" else "eq"
            if op not in ("eq", "gt", "gte", "lt", "lte"):
                raise StripeRequestError(f"Received unknown parameter: {key}", key)
            query.created[op] = _int_param(key, value)
        elif events and _named(key, "types"):
            query.types = [*(query.types or []), value]
        elif events and key == "type":
            query.type = value
        else:
            query.upstream.append((key, value))
    if query.starting_after and query.ending_before:
        raise StripeRequestError(
            "You may only specify one of these parameters: starting_after, ending_before.",
            "ending_before")
    if query.types is not None and query.type is not None:
        raise StripeRequestError("You may only specify one of these parameters: type, types.",
                                 "types")
    if query.types is not None and len(query.types) > MAX_EVENT_TYPES:
        raise StripeRequestError(f"types may contain at most {MAX_EVENT_TYPES} values", "types")
    return query


def _int_param(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StripeRequestError(f"Invalid integer: {value}", key) from None


_CREATED_TESTS = {
    "eq": lambda created, bound: created == bound,
    "gt": lambda created, bound: created > bound,
    "gte": lambda created, bound: created >= bound,
    "lt": lambda created, bound: created < bound,
    "lte": lambda created, bound: created <= bound,
}


def _matches(obj: dict, query: ListQuery) -> bool:
    created = obj.get("created", 0)
    if not all(_CREATED_TESTS[op](created, bound) for op, bound in query.created.items()):
        return False
    if query.types is not None:
        return obj.get("type") in query.types
    if query.type is not None:
        return fnmatch.fnmatchcase(str(obj.get("type")), query.type)
    return True


def newest_first(objects: list[dict]) -> list[dict]:
    """Stripe's order: created descending; localstripe's list order breaks ties, newest first."""
    ranked = sorted(enumerate(objects), key=lambda p: (p[1].get("created", 0), p[0]),
                    reverse=True)
    return [obj for _, obj in ranked]


def stripe_list_page(objects: list[dict], query: ListQuery, url: str) -> dict[str, Any]:
    """One page of `objects` (any order) as Stripe would answer `query`."""
    ordered = newest_first(objects)
    position = {obj.get("id"): i for i, obj in enumerate(ordered)}
    cursor = query.starting_after or query.ending_before
    if cursor is not None and cursor not in position:
        param = "starting_after" if query.starting_after else "ending_before"
        raise StripeRequestError(f"No such object: '{cursor}'", param, 404, "resource_missing")
    if query.ending_before is not None:
        before = [o for o in ordered[: position[query.ending_before]] if _matches(o, query)]
        page, has_more = before[-query.limit:], len(before) > query.limit
    else:
        start = position[query.starting_after] + 1 if query.starting_after else 0
        after = [o for o in ordered[start:] if _matches(o, query)]
        page, has_more = after[: query.limit], len(after) > query.limit
    return {"object": "list", "url": url, "has_more": has_more, "data": page}


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json_answer(status: int, payload: Any) -> _Answer:
    return _Answer(status, json.dumps(payload).encode())


def _is_missing_route(response: httpx.Response) -> bool:
    """aiohttp's own 404 (no such route) is plain text; localstripe's 404s are JSON errors."""
    if response.status_code != 404:
        return False
    try:
        return "error" not in response.json()
    except ValueError:
        return True


class _UpstreamAnswer(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.answer = _Answer(response.status_code, response.content,
                              response.headers.get("content-type", "application/json"))


class StripeListProxy:
    """An HTTP server on 127.0.0.1 giving localstripe Stripe's list semantics."""

    def __init__(self, upstream: LocalStripeServer) -> None:
        self.upstream = upstream
        self._client = httpx.Client(base_url=upstream.url, timeout=30.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._request_ids = itertools.count(1)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StripeListProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def next_request_id(self) -> str:
        return f"req_localstripe_{next(self._request_ids)}"

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(target)
        path, pairs = parts.path, parse_qsl(parts.query, keep_blank_values=True)
        forward = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            if method == "GET" and path == "/v1/account":
                return self._account(forward)
            if method == "GET" and path == "/v1/balance":
                return self._balance(pairs, forward)
            if method == "GET" and _is_collection(path):
                return self._list(path, pairs, forward)
        except StripeRequestError as error:
            return _json_answer(error.status, error.body)
        except _UpstreamAnswer as upstream:
            return upstream.answer
        response = self._client.request(method, path, params=pairs, headers=forward,
                                        content=body or None)
        return _Answer(response.status_code, response.content,
                       response.headers.get("content-type", "application/json"))

    def _list(self, path: str, pairs: list[tuple[str, str]], headers: dict[str, str]) -> _Answer:
        query = parse_list_query(pairs, events=path == "/v1/events")
        objects = self._fetch_all(path, query.upstream, headers)
        return _json_answer(200, stripe_list_page(objects or [], query, path))

    def _fetch_all(self, path: str, pairs: list[tuple[str, str]], headers: dict[str, str]
                   ) -> list[dict] | None:
        """The whole localstripe list in its own order; None when it has no such endpoint."""
        objects: list[dict] = []
        cursor: list[tuple[str, str]] = []
        while True:
            response = self._client.get(
                path, params=[*pairs, ("limit", str(UPSTREAM_LIMIT)), *cursor], headers=headers)
            if _is_missing_route(response):
                return None
            if response.status_code != 200:
                raise _UpstreamAnswer(response)
            page = response.json()
            objects.extend(page.get("data") or [])
            if not page.get("has_more") or not page.get("data"):
                return objects
            cursor = [("starting_after", page["data"][-1]["id"])]

    def _account(self, headers: dict[str, str]) -> _Answer:
        response = self._client.get("/v1/account", headers=headers)
        if not _is_missing_route(response):
            return _Answer(response.status_code, response.content)
        return _json_answer(200, {
            "id": LOCALSTRIPE_ACCOUNT_ID, "object": "account", "type": "standard",
            "country": "FR", "default_currency": "eur", "charges_enabled": True,
            "created": self.upstream.started_at,
        })

    def _balance(self, pairs: list[tuple[str, str]], headers: dict[str, str]) -> _Answer:
        response = self._client.get("/v1/balance", params=pairs, headers=headers)
        if response.status_code != 200:
            return _Answer(response.status_code, response.content)
        balance = response.json()
        for kind in ("available", "pending"):
            if isinstance(balance.get(kind), dict):
                balance[kind] = [balance[kind]]
        return _json_answer(200, balance)


def _is_collection(path: str) -> bool:
    segments = path.strip("/").split("/")
    return len(segments) == 2 and segments[0] == "v1" and path not in _NOT_LISTS


def _handler_for(proxy: StripeListProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                answer = proxy.answer(self.command, self.path, dict(self.headers.items()), body)
            except Exception as error:  # surfaces in the test as a Stripe 500
                answer = _json_answer(500, {"error": {"type": "api_error",
                                                      "message": f"proxy: {error!r}"}})
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("Request-Id", proxy.next_request_id())
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@contextmanager
def localstripe_stack() -> Iterator[tuple[LocalStripeServer, StripeListProxy]]:
    """localstripe on a free port with the proxy in front; both stopped on exit."""
    server = _start_localstripe()
    try:
        proxy = StripeListProxy(server).start()
        try:
            yield server, proxy
        finally:
            proxy.stop()
    finally:
        server.stop()


def _start_localstripe(attempts: int = 3) -> LocalStripeServer:
    # The free port may be taken between our probe and localstripe's bind: try another.
    for attempt in range(attempts):
        try:
            return LocalStripeServer().start()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
