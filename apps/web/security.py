"""Where the page is served and what it accepts: the Host names, the Origins of form posts,
the security headers, and the refusal to serve off loopback without a staff credential.

Off loopback the only Host served is STRIPE_REPORTS_PUBLIC_URL's, and a form post's Origin
is compared with that configured origin, never with the request's own Host (a DNS-rebinding
page or a script sets both).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.settings import Settings
from engine.user_errors import CommandError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin: form posts then carry their Origin, which the console checks.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def is_loopback(host: str | None) -> bool:
    """True for an address only this machine reaches (None: the app was made for tests)."""
    if host is None or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class Site:
    """The address the app is told it serves: its public URL, Hosts and Origins."""

    public_url: str
    loopback: bool
    port: int | None = None

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def hosts(self) -> list[str]:
        public = urlsplit(self.public_url).hostname or ""
        return sorted({public, *(LOOPBACK_HOSTS if self.loopback else ())} - {""})

    def origin_allowed(self, origin: str) -> bool:
        """A post's Origin is the public URL's, or (on loopback) a loopback page's."""
        if _origin(origin) == _origin(self.public_url):
            return True
        if not self.loopback:
            return False
        parts = urlsplit(origin)
        return parts.hostname in LOOPBACK_HOSTS and parts.scheme == "http" and (
            self.port is None or parts.port == self.port)


def _check_public_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"STRIPE_REPORTS_PUBLIC_URL must be a URL like https://reports."
                           f"example.com, not {url!r}.")


def site_for(settings: Settings, host: str | None, port: int | None) -> Site:
    """The Site for `serve --host HOST --port PORT`; off loopback, a refusal (exit 2) unless
    a staff credential and a public URL are set. A wildcard address has no URL of its own,
    so it needs STRIPE_REPORTS_PUBLIC_URL; a named address gives http://HOST:PORT."""
    loopback = is_loopback(host)
    if not loopback and not (settings.admin_password or settings.admin_password_hash):
        raise CommandError(
            f"Refusing to serve on {host} without a staff password: set "
            "STRIPE_REPORTS_ADMIN_PASSWORD (or STRIPE_REPORTS_ADMIN_PASSWORD_HASH from "
            "`stripe-reports serve --hash-password`), or serve on 127.0.0.1.")
    url = settings.public_url
    if url is None and host in ("0.0.0.0", "::", "", "*"):
        raise CommandError(
            f"Refusing to serve on {host} without STRIPE_REPORTS_PUBLIC_URL: set it to the "
            "address staff and clients open (like https://reports.example.com).")
    if url is None:
        shown = f"[{host}]" if host and ":" in host else (host or "127.0.0.1")
        url = f"http://{shown}:{port or 8050}"
    _check_public_url(url)
    return Site(public_url=url.rstrip("/"), loopback=loopback, port=port)


def same_origin(request: Request, site: Site) -> bool:
    """A post without an Origin (old browsers, curl) relies on the form token alone; "null"
    (a sandboxed frame, a redirect chain) and any other origin are refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and site.origin_allowed(origin)


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
