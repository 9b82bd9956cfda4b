"""What every part of the page shares: the app's state, templates, client lookup."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from apps.web.auth import Access
from apps.web.security import Site
from engine.client_config import read_clients_file
from engine.connection_store import ClientConnection, ConnectionStore, check_client_id
from engine.settings import Settings
from engine.user_errors import UnknownClient
from engine.warehouse import Warehouse
from reports.widgets import reporting_ready


@dataclass
class AppState:
    settings: Settings
    warehouse: Warehouse
    store: ConnectionStore
    site: Site
    access: Access


def app_state(request: Request) -> AppState:
    return request.app.state.reports


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)


def when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%d %b %Y, %H:%M} UTC" if value else "never"


def display_name(client_id: str, connection: ClientConnection | None) -> str:
    """clients.yaml's name, else the name given at connect, else Stripe's account name."""
    config = read_clients_file().configs.get(client_id)
    if config and config.name:
        return config.name
    if connection is None:
        return client_id
    return connection.account_name if connection.name == client_id and \
        connection.account_name else connection.name


def client_ids(state: AppState) -> list[str]:
    """Every client a page may name: stored, in clients.yaml, or with reporting data."""
    found = {c.client_id for c in state.store.list()} | set(read_clients_file().configs)
    with contextlib.suppress(Exception), state.warehouse.reader() as conn:
        if reporting_ready(conn):
            found |= {row[0] for row in conn.execute(
                "SELECT DISTINCT client_id FROM reporting.freshness").fetchall()}
    return sorted(found)


async def known_client(request: Request) -> str:
    """The URL's client, checked before anything is read or changed: an invalid id is a 400,
    an unknown one a 404 with the closest known name (the CLI's words)."""
    client_id = check_client_id(request.path_params["client_id"])
    known = await run_in_threadpool(client_ids, app_state(request))
    if client_id not in known:
        raise UnknownClient(client_id, known)
    return client_id
