"""The sign-in and sign-out pages (see auth.py for the session and the rate limit)."""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from apps.web.auth import verify_password
from apps.web.common import app_state, page
from apps.web.security import same_origin


def _next(target: str | None) -> str:
    """Only a path of this site (never //elsewhere or a full URL) is a place to return to."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _form(request: Request, message: str | None, status: int = 200) -> Response:
    return page(request, "signin.html", {
        "message": message, "next": _next(request.query_params.get("next")),
    }, status=status)


async def signin_form(request: Request) -> Response:
    if app_state(request).access.open_console:
        return RedirectResponse("/", status_code=303)
    return _form(request, None)


async def signin(request: Request) -> Response:
    state = app_state(request)
    access = state.access
    if access.open_console:
        return RedirectResponse("/", status_code=303)
    address = request.client.host if request.client else "unknown"
    wait = access.limiter.blocked_for(address)
    if wait > 0:
        return _form(request, f"Too many refused sign-ins from this address: try again in "
                              f"{math.ceil(wait / 60)} minutes.", status=429)
    if not same_origin(request, state.site):
        return _form(request, "This sign-in came from another site: open this page and "
                              "sign in here.", status=403)
    form = await request.form()
    password = str(form.get("password") or "")
    who = str(form.get("name") or "").strip()[:60] or "staff"
    target = _next(str(form.get("next") or ""))
    del form
    if not await run_in_threadpool(verify_password, password, state.settings):
        await access.limiter.refused(address)
        return _form(request, "That password is not right.", status=401)
    access.limiter.succeeded(address)
    response = RedirectResponse(target, status_code=303)
    access.start_session(response, who)
    return response


async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    if same_origin(request, app_state(request).site):
        app_state(request).access.end_session(response)
    return response
