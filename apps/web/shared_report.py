"""The client report on the web: by share link (no sign-in, that client only) and as the
staff's preview. A token that is tampered, expired, revoked or names a client no longer
known is one 404 that names nobody and links nowhere.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from apps.web.client_report import (
    ClientPeriodError,
    brand,
    client_report_context,
    render_client_report,
)
from apps.web.common import AppState, app_state, client_ids, display_name, known_client
from apps.web.share import SHARE_PATH, client_of_token


def _render(request: Request, state: AppState, client_id: str, base_path: str) -> str:
    env = request.app.state.templates.env
    q = request.query_params
    try:
        context: dict[str, Any] = client_report_context(
            client_id, q.get("start"), q.get("end"), settings=state.settings,
            warehouse=state.warehouse, store=state.store,
            name=display_name(client_id, state.store.get(client_id)),
            compare=q.get("compare"))  # a share link made with a comparison carries it
    except ClientPeriodError as error:
        return env.get_template("client_message.html").render(
            brand=brand(state.settings), message=str(error), base_path=base_path)
    return render_client_report(env, context, base_path=base_path)


def _gone(request: Request, state: AppState) -> Response:
    html = request.app.state.templates.env.get_template("client_message.html").render(
        brand=brand(state.settings), base_path=None,
        message="This report link is not valid any more. Ask your agency for a new one.")
    return HTMLResponse(html, status_code=404)


def _shared_client(state: AppState, token: str) -> str | None:
    client_id = client_of_token(state.store, token)
    return client_id if client_id in client_ids(state) else None


async def shared_report(request: Request) -> Response:
    state = app_state(request)
    token = request.path_params["token"]
    client_id = await run_in_threadpool(_shared_client, state, token)
    if client_id is None:
        return _gone(request, state)
    html = await run_in_threadpool(_render, request, state, client_id, f"{SHARE_PATH}{token}")
    return HTMLResponse(html)


async def report_preview(request: Request) -> Response:
    """The client report as the client will see it (staff only, from the console)."""
    state = app_state(request)
    client_id = await known_client(request)
    html = await run_in_threadpool(_render, request, state, client_id,
                                   f"/clients/{client_id}/client-report")
    return HTMLResponse(html)
