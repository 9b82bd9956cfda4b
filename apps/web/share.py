"""Share links: a signed token naming one client, its link generation and an expiry.

The token is signed with a key derived from the master key (so the CLI that prints a link
and the server that opens it agree without another secret); `share --revoke` bumps the
client's generation in the connection store, which ends every link signed before it.
Anything wrong with a token (tampered, expired, revoked, unknown client) is the same 404.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

from engine.access_records import revoke_shares, share_generation
from engine.connection_store import ConnectionStore
from engine.settings import Settings
from engine.user_errors import CommandError

SHARE_PATH = "/r/"
DEFAULT_SERVE_URL = "http://127.0.0.1:8050"
MAX_EXPIRY = timedelta(days=366)
_DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_expiry(text: str) -> timedelta:
    """`30d`, `12h`, `2w`: how long a link works (at most a year)."""
    match = _DURATION.fullmatch(text.lower())
    if not match or int(match[1]) == 0:
        raise CommandError(f"--expires must be a duration like 30d, 12h or 2w, not {text!r}.")
    expiry = int(match[1]) * _UNITS[match[2]]
    if expiry > MAX_EXPIRY:
        raise CommandError("--expires can be at most 366d: make a new link after that.")
    return expiry


def _serializer(store: ConnectionStore) -> URLSafeSerializer:
    return URLSafeSerializer(store.derive_key("share-links"), salt="client-report")


def share_token(store: ConnectionStore, client_id: str, expires_in: timedelta) -> str:
    expires = int(time.time() + expires_in.total_seconds())
    generation = share_generation(store, client_id)
    return str(_serializer(store).dumps({"c": client_id, "g": generation, "x": expires}))


def _compare_query(compare: str | None) -> dict[str, str]:
    """The comparison a link shows, as its `compare` query parameter: the share page reads
    it from there (the default, the previous period, needs none)."""
    return {"compare": compare} if compare and compare != "previous_period" else {}


def share_url(settings: Settings, store: ConnectionStore, client_id: str,
              expires_in: timedelta, compare: str | None = None) -> str:
    """The link; made with a comparison, it ends in `?compare=...` and the page opens
    with that comparison (its period links keep it)."""
    base = settings.public_url or DEFAULT_SERVE_URL
    query = urlencode(_compare_query(compare))
    return f"{base}{SHARE_PATH}{share_token(store, client_id, expires_in)}" + (
        f"?{query}" if query else "")


def client_report_path(store: ConnectionStore, client_id: str,
                       start: date | str | None = None, end: date | str | None = None,
                       expires_in: timedelta = timedelta(minutes=30),
                       compare: str | None = None) -> str:
    """A short-lived path to the client report for a period, for a printer (the PDF and
    deliveries): it needs no session, whether or not a staff password is set."""
    query = urlencode({**{k: str(v) for k, v in (("start", start), ("end", end)) if v},
                       **_compare_query(compare)})
    path = f"{SHARE_PATH}{share_token(store, client_id, expires_in)}"
    return f"{path}?{query}" if query else path


def client_of_token(store: ConnectionStore, token: str) -> str | None:
    """The client a valid, unexpired, unrevoked token names; None for anything else."""
    try:
        payload = _serializer(store).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("c"), str):
        return None
    if not isinstance(payload.get("x"), int) or payload["x"] < time.time():
        return None
    if payload.get("g") != share_generation(store, payload["c"]):
        return None
    return payload["c"]


def revoke_links(store: ConnectionStore, client_id: str) -> None:
    revoke_shares(store, client_id)
