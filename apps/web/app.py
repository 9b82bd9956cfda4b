"""The report web page: one report per client, a JSON API, and the reconnect form.

Thin on purpose: every figure comes from reports.widgets.run_widgets (the same JSON as
the CLI), and a pasted key goes to engine.credentials.connect_client (the same checks
as `stripe-reports connect`). The key is only ever in the POST body: never echoed back,
never in a URL, never logged. Charts are drawn by Chart.js served from /static.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.web.exports import export_routes
from engine.client_config import read_clients_file
from engine.clients import ClientStatus, roster_or_error
from engine.connection_store import (
    ClientConnection,
    ConnectionStore,
    InvalidClientId,
    check_client_id,
)
from engine.settings import Settings, load_settings
from engine.user_errors import CommandError, UnknownClient
from engine.warehouse import Warehouse
from engine.warehouse_factory import open_warehouse
from reports.widgets import (
    RECONNECT,
    UnknownWidget,
    WidgetResult,
    change_ratio,
    client_currencies,
    format_change,
    format_money,
    format_value,
    get_widget,
    reporting_ready,
    run_widgets,
    widget_catalog,
)

log = logging.getLogger("stripe_apps.web")

HERE = Path(__file__).parent
TILES = (
    "gross_volume", "net_volume", "mrr", "arr", "active_subscriptions", "new_customers",
    "successful_payments", "failed_payments", "refunds", "new_subscriptions",
    "churned_subscriptions", "churn_rate", "arpu", "available_balance", "pending_balance",
)
CHARTS = ("revenue_over_time", "mrr_over_time", "mrr_movements", "payouts")
TABLES = ("recent_payments",)
REPORT_WIDGETS = (*TILES, *CHARTS, *TABLES)
# Readers wait while a sync commits; a page should answer within a minute regardless.
READ_LOCK_TIMEOUT = 60.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin: form posts then carry their Origin, which connect_submit checks.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pages hold figures: never cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                static = scope["path"].startswith("/static/")
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers and not (static and name == "Cache-Control"):
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class AppState:
    settings: Settings
    warehouse: Warehouse
    store: ConnectionStore
    # Signs the reconnect form, so another web site cannot post a key into this one.
    form_secret: bytes


def _form_token(state: AppState, client_id: str) -> str:
    return hmac.new(state.form_secret, client_id.encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


# -- presentation helpers ---------------------------------------------------------------


def _day(value: date) -> str:
    return f"{value.day} {value:%b %Y}"


def _period_label(start: date, end: date) -> str:
    if start.year == end.year:
        first = f"{start.day} {start:%b}" if start.month != end.month else str(start.day)
        return f"{first} – {_day(end)}"
    return f"{_day(start)} – {_day(end)}"


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%d %b %Y, %H:%M} UTC" if value else "never"


def _presets(today: date) -> list[tuple[str, date, date]]:
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    return [
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=29), today),
        ("Last 90 days", today - timedelta(days=89), today),
        ("This month", first_of_month, today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
        ("Year to date", today.replace(month=1, day=1), today),
    ]


def _tile(result: WidgetResult) -> dict[str, Any]:
    widget = get_widget(result.widget)
    ratio = change_ratio(result.value, result.previous)
    good = None if ratio is None or ratio == 0 else (ratio > 0) == widget.higher_is_better
    return {
        "result": result,
        "text": format_value(result.value, result.unit, result.currency),
        "previous_text": format_value(result.previous, result.unit, result.currency),
        "change": format_change(result.value, result.previous),
        "trend": "flat" if good is None else ("good" if good else "bad"),
        "direction": "" if not ratio else ("▲" if ratio > 0 else "▼"),
        "description": widget.description,
    }


def _chart(result: WidgetResult) -> dict[str, Any]:
    widget = get_widget(result.widget)
    return {
        "name": result.widget, "kind": result.kind, "title": result.title,
        "currency": result.currency, "series": list(widget.series),
        "labels": [row["day"] for row in result.rows],
        "data": {s: [row[s] for row in result.rows] for s in widget.series},
    }


def _payment_rows(result: WidgetResult) -> list[dict[str, Any]]:
    rows = []
    for row in result.rows:
        created = datetime.fromisoformat(row["created"])
        rows.append({
            **row,
            "when": f"{created:%d %b %Y %H:%M}",
            "amount_text": format_money(row["amount"], row["currency"]),
        })
    return rows


# -- reading ----------------------------------------------------------------------------


def _clients(state: AppState) -> list[dict[str, Any]]:
    """Every client under engine.clients' rule (state: connected, failed, disconnected,
    waiting for first sync, ...; `active`: synced by the schedules), and any client with
    reporting data the rule does not know."""
    roster = roster_or_error(state.store).clients
    listed: dict[str, ClientStatus | None] = dict(roster)
    with contextlib.suppress(Exception), state.warehouse.reader() as conn:
        if reporting_ready(conn):
            for (client_id,) in conn.execute(
                    "SELECT DISTINCT client_id FROM reporting.freshness").fetchall():
                listed.setdefault(client_id, None)
    return [
        {"client_id": cid, "connection": s.connection if s else None,
         "name": _name(cid, s.connection if s else None),
         "state": s.standing.value if s else "no connection", "active": bool(s and s.active),
         "masked_key": s.masked_key if s else ""}
        for cid, s in sorted(listed.items())
    ]


def _name(client_id: str, connection: ClientConnection | None) -> str:
    if connection is None:
        return client_id
    return connection.account_name if connection.name == client_id and \
        connection.account_name else connection.name


def _report_context(state: AppState, client_id: str, start: str | None, end: str | None,
                    currency: str | None) -> dict[str, Any]:
    connection = state.store.get(client_id)
    results = run_widgets(client_id, list(REPORT_WIDGETS), start, end, currency,
                          warehouse=state.warehouse, store=state.store)
    by_name = {r.widget: r for r in results}
    first = results[0]
    with state.warehouse.reader() as conn:
        currencies = client_currencies(conn, client_id)
    reconnect = next((r for r in results if r.state == RECONNECT), None)
    stale = next((r for r in results if r.state == "stale"), None)
    shown_currency = next((r.currency for r in results if r.currency), None)
    return {
        "client_id": client_id,
        "name": _name(client_id, connection),
        "connection": connection,
        "start": first.start, "end": first.end,
        "period_label": _period_label(first.start, first.end),
        "previous_days": (first.end - first.start).days + 1,
        "currency": shown_currency,
        "currencies": currencies,
        "presets": _presets(datetime.now(UTC).date()),
        "tiles": [_tile(by_name[name]) for name in TILES],
        "charts": [by_name[name] for name in CHARTS],
        "chart_data": [_chart(by_name[name]) for name in CHARTS if by_name[name].rows],
        "payments": by_name["recent_payments"],
        "payment_rows": _payment_rows(by_name["recent_payments"]),
        "reconnect": reconnect,
        "stale": stale,
        "as_of": _when(first.as_of),
        "generated": _when(datetime.now(UTC)),
    }


# -- routes -----------------------------------------------------------------------------


def _state(request: Request) -> AppState:
    return request.app.state.reports


def _templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return _templates(request).TemplateResponse(request, name, context, status_code=status)


def _known_ids(state: AppState) -> set[str]:
    """Every client a page may name: stored, in clients.yaml, or with reporting data."""
    return {c["client_id"] for c in _clients(state)} | set(read_clients_file().configs)


async def _client_id(request: Request) -> str:
    """The URL's client, checked before anything is read or changed: an invalid id is a 400,
    an unknown one a 404 with the closest known name (the CLI's words)."""
    client_id = check_client_id(request.path_params["client_id"])
    known = await run_in_threadpool(_known_ids, _state(request))
    if client_id not in known:
        raise UnknownClient(client_id, sorted(known))
    return client_id


async def index(request: Request) -> Response:
    clients = await run_in_threadpool(_clients, _state(request))
    return _page(request, "index.html", {"clients": clients, "when": _when})


async def report(request: Request) -> Response:
    try:
        client_id = await _client_id(request)
        q = request.query_params
        context = await run_in_threadpool(
            _report_context, _state(request), client_id, q.get("start"), q.get("end"),
            q.get("currency"))
    except ValueError as error:
        return _page(request, "error.html", {"message": str(error)}, status=400)
    context["sync_started"] = request.query_params.get("sync_started")
    context["form_token"] = _form_token(_state(request), client_id)
    return _page(request, "report.html", context)


async def connect_form(request: Request) -> Response:
    client_id = await _client_id(request)
    connection = await run_in_threadpool(_state(request).store.get, client_id)
    return _page(request, "connect.html", {
        "client_id": client_id, "connection": connection, "name": _name(client_id, connection),
        "form_token": _form_token(_state(request), client_id), "error": None,
    })


def _connect_and_sync(client_id: str, raw_key: str, replace_account: bool) -> None:
    # Looked up at call time so the CLI, the page and tests share the one implementation.
    from apps.launch import start_background_sync
    from pipelines.instance import connect_and_register

    connect_and_register(client_id, raw_key, replace_account=replace_account)
    start_background_sync(client_id)


async def connect_submit(request: Request) -> Response:
    state = _state(request)
    client_id = await _client_id(request)
    form = await request.form()
    token = str(form.get("form_token") or "")
    if not _same_origin(request) or not hmac.compare_digest(token, _form_token(state, client_id)):
        return _page(request, "error.html", {
            "message": "This form expired or came from another page. Open the client's report "
                       "and press Connect again."}, status=403)
    raw_key = str(form.get("secret_key") or "")
    replace_account = form.get("replace_account") == "yes"
    del form
    error: dict[str, Any] | None = None
    try:
        await run_in_threadpool(_connect_and_sync, client_id, raw_key, replace_account)
    except Exception as failure:  # noqa: BLE001 - every refusal is shown, none is logged raw
        message = getattr(failure, "message", None)
        steps = list(getattr(failure, "steps", ()) or ())
        if message is None:
            log.error("Connecting client %s failed (%s)", client_id, type(failure).__name__)
            message = "The key could not be checked or stored. Try again in a minute."
        error = {"message": message, "steps": steps}
    finally:
        raw_key = ""  # drop our reference to the key as soon as we are done with it
    if error:
        connection = await run_in_threadpool(state.store.get, client_id)
        return _page(request, "connect.html", {
            "client_id": client_id, "connection": connection,
            "name": _name(client_id, connection),
            "form_token": _form_token(state, client_id), "error": error,
        }, status=400)
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    query = urlencode({"sync_started": started})
    return RedirectResponse(f"/clients/{client_id}?{query}", status_code=303)


def _status(state: AppState, client_id: str) -> dict[str, Any]:
    connection = state.store.get(client_id)
    result = run_widgets(client_id, ["gross_volume", "mrr"], warehouse=state.warehouse,
                         store=state.store)
    return {
        "client": client_id,
        "connection": connection.state.value if connection else None,
        "last_sync_at": connection.last_sync_at.isoformat()
        if connection and connection.last_sync_at else None,
        "has_figures": any(r.state in ("ok", "stale") for r in result),
        "state": result[0].state,
    }


async def api_status(request: Request) -> Response:
    client_id = await _client_id(request)
    return JSONResponse(await run_in_threadpool(_status, _state(request), client_id))


async def api_catalog(request: Request) -> Response:
    return JSONResponse([w.describe() for w in widget_catalog()])


async def api_clients(request: Request) -> Response:
    clients = await run_in_threadpool(_clients, _state(request))
    return JSONResponse([
        {"client": c["client_id"], "name": c["name"],
         **({k: v for k, v in c["connection"].to_dict().items()
             if k in ("state", "account_id", "masked_key", "last_sync_at", "last_check_at")}
            if c["connection"] else {"state": None})}
        for c in clients
    ])


async def api_widgets(request: Request) -> Response:
    state = _state(request)
    q = request.query_params
    try:
        client_id = await _client_id(request)
        name = request.path_params.get("widget")
        chosen = [get_widget(name)] if name else None
        results = await run_in_threadpool(
            lambda: run_widgets(client_id, chosen, q.get("start"), q.get("end"),
                                q.get("currency"), warehouse=state.warehouse,
                                store=state.store, compare=q.get("compare")))
    except UnknownWidget as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    if name:
        return JSONResponse(results[0].to_json())
    return JSONResponse([r.to_json() for r in results])


async def invalid_client_id(request: Request, error: Exception) -> Response:
    """A client id that is not a slug is the visitor's mistake on every route: 400; a client
    nobody connected is not there: 404."""
    status = 404 if isinstance(error, UnknownClient) else 400
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(error)}, status_code=status)
    return _page(request, "error.html", {"message": str(error)}, status=status)


# -- the app --------------------------------------------------------------------------------


def _allowed_hosts(host: str | None) -> list[str]:
    if host in ("0.0.0.0", "::", "*"):
        return ["*"]
    return sorted({"127.0.0.1", "localhost", "[::1]", "::1", *([host] if host else [])})


def create_app(settings: Settings | None = None, *, host: str | None = None) -> Starlette:
    """The report web app. `host` is what `serve` binds to (Host headers are checked)."""
    settings = settings or load_settings()
    state = AppState(
        settings=settings,
        warehouse=open_warehouse(settings.warehouse_path, lock_timeout=READ_LOCK_TIMEOUT),
        store=ConnectionStore.from_settings(settings),
        form_secret=secrets.token_bytes(32),
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(format_value=format_value, format_money=format_money)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.store.close()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/clients/{client_id}", report),
            Route("/clients/{client_id}/connect", connect_form, methods=["GET"]),
            Route("/clients/{client_id}/connect", connect_submit, methods=["POST"]),
            *export_routes(_client_id),
            Route("/api/widgets", api_catalog),
            Route("/api/clients", api_clients),
            Route("/api/clients/{client_id}/status", api_status),
            Route("/api/clients/{client_id}/widgets", api_widgets),
            Route("/api/clients/{client_id}/widgets/{widget}", api_widgets),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=_allowed_hosts(host)),
        ],
        lifespan=lifespan,
        exception_handlers={InvalidClientId: invalid_client_id,
                            UnknownClient: invalid_client_id},
    )
    app.state.reports = state
    app.state.templates = templates
    return app


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a refusal is one clear line and the printed
    URL is the real one (port 0: the free port the system chose)."""
    if not 0 <= port <= 65535:
        raise CommandError(f"{port} is not a port: use 1 to 65535 (or 0 for any free port).")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise CommandError(f"Cannot listen on {host}: {error}. Use --host 127.0.0.1 or the "
                           "address of one of this machine's interfaces.", 1) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait from the moment the URL is printed
    except OSError as error:
        sock.close()
        raise CommandError(f"Cannot listen on {host}:{port} ({error.strerror}). Choose another "
                           "port with --port, or stop what is using it.", 1) from None
    return sock


def serve(host: str = "127.0.0.1", port: int = 8050) -> None:
    """Run the report page with uvicorn (127.0.0.1 by default: reachable from this machine)."""
    import uvicorn  # only `serve` runs a server: the app and its tests do not need it

    sock = _listen(host, port)
    app = create_app(host=host)
    shown = f"[{host}]" if ":" in host else host
    print(f"Report page: http://{shown}:{sock.getsockname()[1]}/  (Ctrl-C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
