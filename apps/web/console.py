"""The agency console (staff only): the client list, each client's agency report, and the
reconnect panel in Oviond's order (check again, the connected account, remove key, add a
new key). Every change is a POST with the session's form token and a checked Origin;
removing a key and moving a client to another account ask for confirmation and are audited.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from apps.web.client_list import client_rows
from apps.web.common import app_state, display_name, known_client, page, when
from apps.web.security import same_origin
from apps.web.share import parse_expiry, revoke_links, share_url
from engine.access_records import audit_entries, record_audit
from engine.client_config import client_config
from engine.connection_store import ClientNotConnected
from reports.widgets import COMPARISONS, resolve_compare

log = logging.getLogger("stripe_apps.web")


def console_context(request: Request) -> dict[str, Any]:
    """What every console page shows at the top: who is signed in, or that it is open."""
    access = app_state(request).access
    return {"staff": access.staff(request), "open_console": access.open_console,
            "form_token": access.csrf_token(request), "when": when}


async def index(request: Request) -> Response:
    query = request.query_params.get("q", "")
    rows = await run_in_threadpool(client_rows, app_state(request), query)
    attention = [r for r in rows if r.kind == "attention"]
    return page(request, "index.html", {**console_context(request), "rows": rows,
                                        "attention": len(attention), "q": query})


async def checked_form(request: Request) -> FormData | None:
    """The POST's form if it carries this session's token and comes from our own origin."""
    state = app_state(request)
    form = await request.form()
    token = str(form.get("form_token") or "")
    if not same_origin(request, state.site) or not hmac.compare_digest(
            token, state.access.csrf_token(request)):
        return None
    return form


def refused_form(request: Request) -> Response:
    return page(request, "error.html", {
        **console_context(request),
        "message": "This form expired or came from another page. Open the client's "
                   "reconnect panel and try again."}, status=403)


def panel_context(request: Request, client_id: str, **extra: Any) -> dict[str, Any]:
    state = app_state(request)
    connection = state.store.get(client_id)
    config = client_config(client_id)
    return {
        **console_context(request), "client_id": client_id, "connection": connection,
        "name": display_name(client_id, connection), "key_env": config.key_env,
        "env_key_set": bool(config.key_from_env()),
        "audit": audit_entries(state.store, client_id, limit=10),
        "error": None, "notice": None, "share_link": None,
        # The share form offers the comparisons; the report page's choice comes selected.
        "comparisons": list(COMPARISONS.items()),
        "compare": request.query_params.get("compare") or "previous_period", **extra,
    }


async def connect_panel(request: Request) -> Response:
    client_id = await known_client(request)
    notice = {"checked": "Checked just now: the result is below.",
              "removed": "The key was removed. Add a new key below.",
              "revoked": "Every share link of this client made so far now ends in 404."}.get(
        request.query_params.get("done", ""))
    context = await run_in_threadpool(panel_context, request, client_id, notice=notice)
    return page(request, "connect.html", context)


def _run_check(client_id: str) -> str | None:
    # Looked up at call time, so the page and the CLI share the one implementation.
    from engine.credentials import check_client

    try:
        check_client(client_id)
    except ClientNotConnected as error:
        return str(error)
    return None


async def check_again(request: Request) -> Response:
    client_id = await known_client(request)
    if await checked_form(request) is None:
        return refused_form(request)
    problem = await run_in_threadpool(_run_check, client_id)
    if problem:
        context = await run_in_threadpool(panel_context, request, client_id,
                                          error={"message": problem, "steps": []})
        return page(request, "connect.html", context, status=400)
    return RedirectResponse(f"/clients/{client_id}/connect?done=checked", status_code=303)


def _env_refusal(request: Request, client_id: str) -> Response | None:
    """A client whose key comes from the environment: nothing stored here would be used."""
    config = client_config(client_id)
    if not config.key_from_env():
        return None
    context = panel_context(request, client_id, error={
        "message": f"{client_id}'s key comes from the environment variable {config.key_env} "
                   "on this server, which wins over a key stored here: nothing was stored.",
        "steps": [f"Put the new key in {config.key_env} where the server and the runs are "
                  "started, restart them, then press Check again."]})
    return page(request, "connect.html", context, status=409)


def _confirmed(form: FormData, client_id: str) -> bool:
    return str(form.get("confirm") or "").strip() == client_id


async def _panel_post(request: Request) -> tuple[str, FormData] | Response:
    """A reconnect panel's form: the URL's client and the form, or the refusal to answer
    (a form from elsewhere, or a client whose key comes from the environment)."""
    client_id = await known_client(request)
    form = await checked_form(request)
    if form is None:
        return refused_form(request)
    refusal = await run_in_threadpool(_env_refusal, request, client_id)
    return refusal if refusal is not None else (client_id, form)


async def remove_key(request: Request) -> Response:
    state = app_state(request)
    posted = await _panel_post(request)
    if isinstance(posted, Response):
        return posted
    client_id, form = posted
    if not _confirmed(form, client_id):
        context = await run_in_threadpool(panel_context, request, client_id, error={
            "message": f"Type {client_id} in the box to confirm removing its key. Nothing "
                       "was removed.", "steps": []})
        return page(request, "connect.html", context, status=400)
    try:
        await run_in_threadpool(state.store.disconnect, client_id)
    except ClientNotConnected as error:
        context = await run_in_threadpool(panel_context, request, client_id,
                                          error={"message": str(error), "steps": []})
        return page(request, "connect.html", context, status=400)
    await run_in_threadpool(record_audit, state.store, who=state.access.staff(request) or "",
                            client_id=client_id, action="remove key")
    return RedirectResponse(f"/clients/{client_id}/connect?done=removed", status_code=303)


def _connect_and_sync(client_id: str, raw_key: str, replace_account: bool) -> None:
    # Looked up at call time so the CLI, the page and tests share the one implementation.
    from apps.launch import start_background_sync
    from pipelines.instance import connect_and_register

    connect_and_register(client_id, raw_key, replace_account=replace_account)
    start_background_sync(client_id)


async def _try_connect(client_id: str, raw_key: str, replace: bool) -> dict[str, Any] | None:
    """None when the key was stored and a sync started; else the refusal to show."""
    try:
        await run_in_threadpool(_connect_and_sync, client_id, raw_key, replace)
    except Exception as failure:  # noqa: BLE001 - every refusal is shown, none is logged raw
        message = getattr(failure, "message", None)
        steps = list(getattr(failure, "steps", ()) or ())
        if message is None:
            log.error("Connecting client %s failed (%s)", client_id, type(failure).__name__)
            message = "The key could not be checked or stored. Try again in a minute."
        return {"message": message, "steps": steps}
    return None


async def add_key(request: Request) -> Response:
    state = app_state(request)
    posted = await _panel_post(request)
    if isinstance(posted, Response):
        return posted
    client_id, form = posted
    replace = form.get("replace_account") == "yes"
    if replace and not _confirmed(form, client_id):
        context = await run_in_threadpool(panel_context, request, client_id, error={
            "message": f"Moving {client_id} to another Stripe account deletes its synced data: "
                       f"type {client_id} in the confirmation box. Nothing was changed.",
            "steps": []})
        return page(request, "connect.html", context, status=400)
    before = await run_in_threadpool(state.store.get, client_id)
    error = await _try_connect(client_id, str(form.get("secret_key") or ""), replace)
    del form  # drop our reference to the key as soon as we are done with it
    if error:
        context = await run_in_threadpool(panel_context, request, client_id, error=error)
        return page(request, "connect.html", context, status=400)
    after = await run_in_threadpool(state.store.get, client_id)
    moved = before is not None and after is not None and before.account_id != after.account_id
    await run_in_threadpool(
        record_audit, state.store, who=state.access.staff(request) or "", client_id=client_id,
        action="replace account" if moved else "add key",
        detail=f"{before.account_id} -> {after.account_id}" if moved and before and after
        else None)
    query = urlencode({"sync_started": datetime.now(UTC).replace(microsecond=0).isoformat()})
    return RedirectResponse(f"/clients/{client_id}?{query}", status_code=303)


async def make_share_link(request: Request) -> Response:
    """A share link made from the panel, shown once on it (as `stripe-reports share`)."""
    state = app_state(request)
    client_id = await known_client(request)
    form = await checked_form(request)
    if form is None:
        return refused_form(request)
    if form.get("revoke") == "yes":
        if not _confirmed(form, client_id):
            context = await run_in_threadpool(panel_context, request, client_id, error={
                "message": f"Type {client_id} in the box to confirm ending its links. "
                           "Nothing was changed.", "steps": []})
            return page(request, "connect.html", context, status=400)
        await run_in_threadpool(revoke_links, state.store, client_id)
        await run_in_threadpool(record_audit, state.store, client_id=client_id,
                                who=state.access.staff(request) or "",
                                action="revoke share links")
        return RedirectResponse(f"/clients/{client_id}/connect?done=revoked", status_code=303)
    try:
        compare = resolve_compare(str(form.get("compare") or ""))
    except ValueError as error:
        context = await run_in_threadpool(panel_context, request, client_id, error={
            "message": f"{error} Nothing was made.", "steps": []})
        return page(request, "connect.html", context, status=400)
    link = await run_in_threadpool(share_url, state.settings, state.store, client_id,
                                   parse_expiry("30d"), compare)
    context = await run_in_threadpool(panel_context, request, client_id, share_link=link,
                                      compare=compare)
    return page(request, "connect.html", context)
