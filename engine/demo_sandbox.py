"""Where the demo's clients live after `make demo`: the demo remembers its sandbox's address
and seed, and each demo client (by its sandbox account id) keeps talking to that address, so
`stripe-reports sync acme` after the demo reaches the sandbox, not Stripe. `make dev` (or
`stripe-reports sandbox --for-demo`) serves the same sandbox there again.

A real client is never sent there: only a client whose stored account id is the one the
demo connected, and only while STRIPE_API_BASE is unset (set, it wins for everyone).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.failures import TransientStripeError
from engine.settings import load_settings

DEMO_FILE = "demo_sandbox.json"
PROBE_SECONDS = 1.0


def demo_file() -> Path:
    return load_settings().home / DEMO_FILE


def remember_demo_sandbox(api_base: str, seed: int, accounts: dict[str, str]) -> Path:
    """Record the sandbox's address and seed, and the demo clients' account ids."""
    path = demo_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"api_base": api_base, "seed": seed, "accounts": accounts},
                               indent=2) + "\n")
    return path


def demo_sandbox() -> dict[str, Any] | None:
    """What the last demo recorded, or None (no demo run here, or an unreadable file)."""
    try:
        record = json.loads(demo_file().read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "api_base" in record else None


def sandbox_address(client_id: str, account_id: str | None) -> str | None:
    """The demo sandbox's address for a demo client, else None. A demo client whose sandbox
    is not running fails at once (not after minutes of retries) and says how to start it."""
    if load_settings().api_base_configured:
        return None
    record = demo_sandbox()
    if not record or not account_id or record.get("accounts", {}).get(client_id) != account_id:
        return None
    url = str(record["api_base"])
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), PROBE_SECONDS).close()
    except OSError:
        raise TransientStripeError(
            message=f"Client {client_id!r} is a demo client and the demo's sandbox Stripe "
            f"({url}) is not running.",
            steps=("Start it again with `make dev` (it starts the sandbox beside Dagster) or "
                   "`stripe-reports sandbox --for-demo`, then run the command again.",
                   "To report on a real Stripe account, connect a client of your own: see "
                   "\"Connecting a real client\" in the README."),
            client_id=client_id, code="demo_sandbox_down") from None
    return url
