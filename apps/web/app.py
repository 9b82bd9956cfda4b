"""The report web app: the agency console (staff only) and the client report (by share
link). This module wires the parts together and runs the server:

- security.py: the Host and Origin the app accepts, headers, the refusal to serve off
  loopback without a staff password;  auth.py / signin.py: sessions and sign-in;
- console.py, client_list.py, agency_report.py: the console, its list, the agency report
  and the JSON API;  client_report.py, shared_report.py, share.py: the client report and
  its share links.

A pasted key is only ever in a POST body: never echoed back, in a URL, or logged.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from apps.web import agency_report, console, shared_report, signin
from apps.web.auth import Access, StaffOnly, check_password_hash
from apps.web.common import AppState, known_client, page
from apps.web.exports import export_routes
from apps.web.security import SecurityHeaders, site_for
from engine.connection_store import ConnectionStore, InvalidClientId
from engine.settings import Settings, load_settings
from engine.user_errors import CommandError, UnknownClient
from engine.warehouse_factory import open_warehouse
from reports.widgets import format_money, format_value

HERE = Path(__file__).parent
TILES = agency_report.TILES
# Readers wait while a sync commits; a page should answer within a minute regardless.
READ_LOCK_TIMEOUT = 60.0


async def invalid_client_id(request: Request, error: Exception) -> Response:
    """A client id that is not a slug is the visitor's mistake on every route: 400; a client
    nobody connected is not there: 404."""
    status = 404 if isinstance(error, UnknownClient) else 400
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(error)}, status_code=status)
    return page(request, "error.html", {"message": str(error)}, status=status)


ROUTES = [
    Route("/", console.index),
    Route("/signin", signin.signin_form, methods=["GET"]),
    Route("/signin", signin.signin, methods=["POST"]),
    Route("/signout", signin.signout, methods=["POST"]),
    Route("/r/{token}", shared_report.shared_report),
    Route("/clients/{client_id}", agency_report.report),
    Route("/clients/{client_id}/client-report", shared_report.report_preview),
    Route("/clients/{client_id}/connect", console.connect_panel, methods=["GET"]),
    Route("/clients/{client_id}/connect", console.add_key, methods=["POST"]),
    Route("/clients/{client_id}/check", console.check_again, methods=["POST"]),
    Route("/clients/{client_id}/remove-key", console.remove_key, methods=["POST"]),
    Route("/clients/{client_id}/share", console.make_share_link, methods=["POST"]),
    *export_routes(known_client),
    Route("/api/widgets", agency_report.api_catalog),
    Route("/api/clients", agency_report.api_clients),
    Route("/api/clients/{client_id}/status", agency_report.api_status),
    Route("/api/clients/{client_id}/widgets", agency_report.api_widgets),
    Route("/api/clients/{client_id}/widgets/{widget}", agency_report.api_widgets),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]


def create_app(settings: Settings | None = None, *, host: str | None = None,
               port: int | None = None) -> Starlette:
    """The report web app. `host` and `port` are what `serve` binds to: off loopback it
    needs a staff password and serves only STRIPE_REPORTS_PUBLIC_URL's Host (a refusal is
    a CommandError); None is an app for tests, treated as loopback."""
    settings = settings or load_settings()
    if settings.admin_password_hash:
        check_password_hash(settings.admin_password_hash)
    site = site_for(settings, host, port)
    store = ConnectionStore.from_settings(settings)
    access = Access(settings, store.derive_key("console-sessions"), secure_cookie=site.secure)
    state = AppState(settings=settings, store=store, site=site, access=access,
                     warehouse=open_warehouse(settings.warehouse_path,
                                              lock_timeout=READ_LOCK_TIMEOUT))
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(format_value=format_value, format_money=format_money)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.store.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=site.hosts, www_redirect=False),
            Middleware(StaffOnly, access=access),
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

    app = create_app(host=host, port=port)  # refuses before anything listens
    sock = _listen(host, port)
    if port == 0:  # the port the system chose is the one Origins must carry
        app = create_app(host=host, port=sock.getsockname()[1])
    site, access = app.state.reports.site, app.state.reports.access
    door = ("open to anyone on this machine (no STRIPE_REPORTS_ADMIN_PASSWORD)"
            if access.open_console else "staff sign in")
    print(f"Report page: {site.public_url}/  (console: {door}; Ctrl-C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
