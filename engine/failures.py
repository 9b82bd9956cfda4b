"""One set of typed failures for everything that can go wrong talking to Stripe.

The Stripe resource maps Stripe's errors to these; Dagster, the CLI and the widgets
all show the same `message` and `steps`, so a user reads one story everywhere.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass
class StripeAccessError(Exception):
    message: str
    steps: tuple[str, ...] = ()
    client_id: str | None = None
    masked_key: str | None = None
    code: str | None = None
    request_id: str | None = None
    http_status: int | None = None
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def guidance(self) -> str:
        """The message and numbered steps, as printed by the CLI and shown in Dagster."""
        lines = [self.message]
        lines += [f"  {number}. {step}" for number, step in enumerate(self.steps, start=1)]
        return "\n".join(lines)

    def metadata(self) -> dict[str, str]:
        """Safe facts for Dagster metadata and logs (the key only masked)."""
        facts = {
            "client": self.client_id or "",
            "masked_key": self.masked_key or "",
            "stripe_error_code": self.code or "",
            "stripe_request_id": self.request_id or "",
            "http_status": str(self.http_status or ""),
        }
        facts.update(self.details)
        return {k: v for k, v in facts.items() if v}


class CredentialFailure(StripeAccessError):
    """Stripe refused the key (401) or a permission (403): reconnecting is the fix.

    Never retried: a dead key does not come back by asking again.
    """


class KeyRejected(CredentialFailure):
    """Invalid, revoked or rolled key."""


class KeyExpired(CredentialFailure):
    """The key passed its expiry date."""


class PermissionMissing(CredentialFailure):
    """A restricted key without read access to something the pipeline pulls."""

    def accepted(self, accepted_missing: Collection[str]) -> bool:
        """Whether the key was connected knowing it lacks this permission (`connect` warned
        and recorded it): then its stream is skipped instead of failing the sync."""
        return self.details.get("missing_permission") in accepted_missing


class WrongAccount(CredentialFailure):
    """The key belongs to another Stripe account than the client had."""


class TransientStripeError(StripeAccessError):
    """429, 5xx or a dropped connection that outlasted our retries; the key is fine."""


def reconnect_steps(client_id: str, account_hint: str | None = None,
                    key_env: str | None = None) -> tuple[str, ...]:
    """How to give the client a working key. `key_env`: the environment variable the key came
    from (clients.yaml); it wins over a stored key, so `connect` would not help there."""
    account = f" for account {account_hint}" if account_hint else ""
    return (
        f"Open the Stripe Dashboard{account} and check that the right account is selected.",
        "Go to Developers → API keys and create or reveal a Secret key "
        "(only an Administrator can).",
        _replace_key_step(client_id, key_env),
        f"Then run `stripe-reports sync {client_id}`.",
    )


def _replace_key_step(client_id: str, key_env: str | None) -> str:
    if key_env:
        return (f"Set the environment variable {key_env} (named for {client_id} in "
                "clients.yaml) to the new key where the pipelines run, and restart the Dagster "
                "daemon and code server so they read it.")
    return (f"Run `stripe-reports connect {client_id}` and paste the key when asked "
            "(or use Connect on the client's report page).")


def permission_steps(client_id: str, permission: str, resource: str,
                     key_env: str | None = None) -> tuple[str, ...]:
    return (
        "In the Stripe Dashboard open Developers → API keys and edit the restricted key: "
        f"grant Read on {resource} ({permission}), or use a full Secret key instead.",
        f"If the key changed: {_replace_key_step(client_id, key_env)}",
        f"Then run `stripe-reports sync {client_id}`.",
    )
