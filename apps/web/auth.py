"""Staff sign-in: the password (or its scrypt hash), the session cookie, the sign-in rate
limit, and the guard that keeps every console page and JSON route behind a session.

On loopback without a password the console stays open (and says so). A trusted proxy's
header (STRIPE_REPORTS_TRUSTED_PROXY_HEADER, off unless set) may name the staff member
instead of a session: only for a proxy that signs staff in and strips that header from
what visitors send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.settings import Settings
from engine.user_errors import CommandError

SESSION_COOKIE = "stripe_reports_session"
SESSION_HOURS = 12
# Paths anyone may open: sign-in, static files, and share links (the token is the access).
PUBLIC_PREFIXES = ("/signin", "/static/", "/r/", "/favicon")
# scrypt's cost: 16 MiB and ~50 ms a try, the standard library's own implementation.
_N, _R, _P = 2**14, 8, 1
FAILURES_ALLOWED = 5  # per client address per window, then 429 until the window passes
FAILURE_WINDOW = 15 * 60.0
FIRST_DELAY = 1.0  # a refused password waits 1 s, then 2, 4, up to MAX_DELAY
MAX_DELAY = 8.0


def hash_password(password: str) -> str:
    """`scrypt:N:r:p:salt:hash` (base64): what STRIPE_REPORTS_ADMIN_PASSWORD_HASH holds."""
    if not password:
        raise CommandError("The password is empty: type one (on standard input).")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    encode = base64.urlsafe_b64encode
    return f"scrypt:{_N}:{_R}:{_P}:{encode(salt).decode()}:{encode(digest).decode()}"


def check_password_hash(stored: str) -> None:
    """Refuses (exit 2) a STRIPE_REPORTS_ADMIN_PASSWORD_HASH that is not one of ours."""
    parts = stored.split(":")
    try:
        ok = len(parts) == 6 and parts[0] == "scrypt" and all(int(x) > 0 for x in parts[1:4])
        base64.urlsafe_b64decode(parts[4]), base64.urlsafe_b64decode(parts[5])
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise CommandError("STRIPE_REPORTS_ADMIN_PASSWORD_HASH is not a password hash: make "
                           "one with `stripe-reports serve --hash-password`.")


def verify_password(password: str, settings: Settings) -> bool:
    if settings.admin_password_hash:
        _scheme, n, r, p, salt, digest = settings.admin_password_hash.split(":")
        tried = hashlib.scrypt(password.encode(), salt=base64.urlsafe_b64decode(salt),
                               n=int(n), r=int(r), p=int(p), maxmem=2**26)
        return hmac.compare_digest(tried, base64.urlsafe_b64decode(digest))
    if settings.admin_password:
        return hmac.compare_digest(password.encode(), settings.admin_password.encode())
    return False


@dataclass
class SignInLimiter:
    """Refused sign-ins per client address: each waits longer, and after FAILURES_ALLOWED
    in FAILURE_WINDOW the address is refused until the window passes."""

    failures: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def _recent(self, address: str) -> deque[float]:
        times = self.failures[address]
        while times and times[0] < time.monotonic() - FAILURE_WINDOW:
            times.popleft()
        return times

    def blocked_for(self, address: str) -> float:
        times = self._recent(address)
        if len(times) < FAILURES_ALLOWED:
            return 0.0
        return times[0] + FAILURE_WINDOW - time.monotonic()

    async def refused(self, address: str) -> None:
        times = self._recent(address)
        times.append(time.monotonic())
        await asyncio.sleep(min(FIRST_DELAY * 2 ** (len(times) - 1), MAX_DELAY))

    def succeeded(self, address: str) -> None:
        self.failures.pop(address, None)


@dataclass
class Access:
    """Who may use the console, and the signed session that says who did."""

    settings: Settings
    signing_key: bytes
    secure_cookie: bool
    limiter: SignInLimiter = field(default_factory=SignInLimiter)

    @property
    def open_console(self) -> bool:
        """No credential: only possible on loopback (serve refuses otherwise)."""
        return not (self.settings.admin_password or self.settings.admin_password_hash)

    def _serializer(self) -> URLSafeTimedSerializer:
        # The credential is part of the key: changing the password ends every session.
        credential = self.settings.admin_password_hash or self.settings.admin_password or ""
        key = hmac.new(self.signing_key, credential.encode(), hashlib.sha256).hexdigest()
        return URLSafeTimedSerializer(key, salt="console-session")

    def session(self, request: Request) -> dict[str, Any] | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            return self._serializer().loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return None

    def staff(self, request: Request) -> str | None:
        """The signed-in staff member's name, or None."""
        header = self.settings.trusted_proxy_header
        if header and request.headers.get(header, "").strip():
            return f"{request.headers[header].strip()} (via proxy)"
        session = self.session(request)
        if session:
            return str(session["who"])
        return "local console (open on loopback)" if self.open_console else None

    def csrf_token(self, request: Request) -> str:
        """The session's form token (open console: one per process and signing key)."""
        session = self.session(request)
        if session:
            return str(session["csrf"])
        return hmac.new(self.signing_key, b"open-console-forms", hashlib.sha256).hexdigest()

    def start_session(self, response: Response, who: str) -> None:
        cookie = self._serializer().dumps({"who": who, "csrf": secrets.token_hex(32)})
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_HOURS * 3600,
                            httponly=True, samesite="strict", secure=self.secure_cookie)

    def end_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict",
                               secure=self.secure_cookie)


class StaffOnly:
    """Every path but PUBLIC_PREFIXES needs staff: JSON routes answer 401, pages 303 to the
    sign-in page (which brings the visitor back)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.access.staff(request) is not None:
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/"):
            response: Response = JSONResponse({"error": "Sign in first."}, status_code=401)
        else:
            target = path if request.method == "GET" and path.startswith("/") else "/"
            response = RedirectResponse(f"/signin?next={target}", status_code=303)
        await response(scope, receive, send)
