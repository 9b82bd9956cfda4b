"""A client's Stripe key: connecting it (validate, then store encrypted), checking it,
and opening the client's Stripe account with it.

The same function serves `stripe-reports connect` and the report page's reconnect
form, so both accept and refuse exactly the same keys with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.client_config import client_config
from engine.clients import client_key
from engine.connection_store import ClientConnection, ConnectionStore, check_client_id
from engine.demo_sandbox import sandbox_address
from engine.failures import (
    CredentialFailure,
    PermissionMissing,
    StripeAccessError,
    TransientStripeError,
    WrongAccount,
    reconnect_steps,
)
from engine.keys import KeyFormatError, KeyKind, ParsedKey, parse_key
from engine.permissions import OTHER_READS
from engine.settings import load_settings
from engine.streams import STREAMS
from engine.stripe_api import MALFORMED_RESPONSE, StripeAccount, verify_account
from engine.warehouse_factory import warehouse_from_settings


class KeyRefused(StripeAccessError):
    """The pasted value is not a usable secret key, or policy refuses it."""


@dataclass(frozen=True)
class MissingPermission:
    stream: str
    permission: str  # as Stripe named it: what the sync matches a 403 against
    widgets: tuple[str, ...]
    ours: str = ""  # readable_permissions()'s name for it, where Stripe named another

    @property
    def recorded(self) -> tuple[str, ...]:
        """What the store keeps: Stripe's name, and ours too where they differ."""
        return tuple(dict.fromkeys(p for p in (self.permission, self.ours) if p))


@dataclass
class ConnectOutcome:
    connection: ClientConnection
    account_id: str
    account_name: str | None
    livemode: bool
    missing: list[MissingPermission] = field(default_factory=list)
    # The account the client was moved from (--replace-account), and its rows removed.
    replaced_account: str | None = None
    purged_rows: int = 0
    # clients.yaml's variable for the client's key: where it is set, it wins over this one.
    key_env: str | None = None

    @property
    def warnings(self) -> list[str]:
        lines = []
        if self.key_env:
            lines.append(f"clients.yaml takes this client's key from the environment variable "
                         f"{self.key_env}: wherever that is set, its key is used and this one "
                         "is dropped from the store. Update the variable, or remove key_env "
                         "from the client's entry.")
        if self.replaced_account:
            lines.append(f"The client moved from Stripe account {self.replaced_account}: its "
                         f"{self.purged_rows:,} synced rows were removed and the next sync "
                         "starts over from the new account.")
        if not self.livemode:
            lines.append("This is a test-mode key: the reports will show test data.")
        for gap in self.missing:
            effect = (f"these widgets will say they cannot be shown: {', '.join(gap.widgets)}"
                      if gap.widgets else "no widget reads it")
            lines.append(
                f"The restricted key cannot read {gap.stream} ({gap.permission}); {effect}.")
        return lines


def probe_permissions(account: StripeAccount) -> list[MissingPermission]:
    """Read one object of every stream; a 403 names a permission the key lacks."""
    reads = [(spec.name, spec.endpoint, spec.permission, spec.widgets) for spec in STREAMS]
    missing = []
    for name, path, permission, widgets in [*reads, *OTHER_READS]:
        try:
            account.get(path, {"limit": 1} if name != "balance" else None)
        except PermissionMissing as gap:
            named = gap.details.get("missing_permission") or permission
            missing.append(MissingPermission(name, named, widgets, permission))
    return missing


def _parse(client_id: str, raw_key: str) -> ParsedKey:
    try:
        return parse_key(raw_key)
    except KeyFormatError as error:
        raise KeyRefused(
            message=str(error), client_id=client_id, code="not_a_secret_key",
            steps=("In the Stripe Dashboard open Developers → API keys.",
                   "Reveal or create the Secret key (sk_live_… or sk_test_…).",
                   f"Run `stripe-reports connect {client_id}` again and paste it."),
        ) from None


def connect_client(
    client_id: str,
    raw_key: str,
    *,
    name: str | None = None,
    strict: bool = False,
    replace_account: bool = False,
    stripe_account: str | None = None,
    store: ConnectionStore | None = None,
    api_base: str | None = None,
) -> ConnectOutcome:
    """Validate and store a client's key. Nothing is stored unless every check passes."""
    check_client_id(client_id)
    parsed = _parse(client_id, raw_key)
    if store is None:  # opened here, closed here: on PostgreSQL each store holds a session
        with ConnectionStore.from_settings() as own:
            return connect_client(client_id, raw_key, name=name, strict=strict,
                                  replace_account=replace_account,
                                  stripe_account=stripe_account, store=own, api_base=api_base)
    account = StripeAccount(client_id, parsed.key, stripe_account=stripe_account,
                            api_base=api_base or load_settings().api_base)
    try:
        return _validate_and_store(client_id, parsed, account, store, name=name, strict=strict,
                                   replace_account=replace_account,
                                   stripe_account=stripe_account)
    except TransientStripeError as error:
        raise _unreachable(client_id, parsed, error) from None


def _unreachable(client_id: str, parsed: ParsedKey,
                 error: TransientStripeError) -> TransientStripeError:
    # The resource's wording is written for syncs ("the next scheduled sync retries"); a
    # connect that could not ask Stripe stored nothing and has to be run again.
    status = f"HTTP {error.http_status}" if error.http_status else "no response"
    if error.code == MALFORMED_RESPONSE:
        what = (f"Stripe's answer to the check of the key {parsed.masked} for client "
                f"{client_id!r} was incomplete or malformed ({status})")
        first = "Wait a few minutes: this is a temporary problem on the way to Stripe."
    else:
        what = f"Stripe did not answer the check of the key {parsed.masked} for client " \
               f"{client_id!r} ({status})"
        first = "Check the network connection (and STRIPE_API_BASE, if set)."
    return TransientStripeError(
        message=f"{what}; nothing was stored or changed. This is a temporary problem, not "
        "one with the key: try again.",
        steps=(first, f"Run `stripe-reports connect {client_id}` again."),
        client_id=client_id, masked_key=parsed.masked, code=error.code,
        request_id=error.request_id, http_status=error.http_status,
    )


def _validate_and_store(
    client_id: str, parsed: ParsedKey, account: StripeAccount, store: ConnectionStore, *,
    name: str | None, strict: bool, replace_account: bool, stripe_account: str | None,
) -> ConnectOutcome:
    # 401 -> KeyRejected / KeyExpired; an answer without the account's id is retried, then
    # a TransientStripeError: stored data untouched either way.
    info = verify_account(account, None)
    account_id = info["id"]
    previous = store.get(client_id)
    if previous and previous.account_id and previous.account_id != account_id \
            and not replace_account:
        raise WrongAccount(
            message=f"That key belongs to Stripe account {account_id}, but client "
            f"{client_id!r} was connected to {previous.account_id}; mixing two accounts would "
            "corrupt the client's history. Nothing was changed.",
            steps=(
                f"Check that the key comes from account {previous.account_id} "
                "(the account switcher at the top left of the Stripe Dashboard).",
                f"If the client really moved accounts, run `stripe-reports connect {client_id} "
                "--replace-account`.",
            ),
            client_id=client_id, masked_key=parsed.masked, code="account_mismatch",
        )
    missing = probe_permissions(account) if parsed.kind == KeyKind.RESTRICTED else []
    if missing and strict:
        names = ", ".join(f"{m.stream} ({m.permission})" for m in missing)
        raise KeyRefused(
            message=f"The restricted key {parsed.masked} cannot read: {names}. "
            "Refused because of --strict; nothing was stored.",
            steps=("In the Stripe Dashboard edit the restricted key and grant Read on those "
                   "resources, or use the full Secret key.",
                   f"Run `stripe-reports connect {client_id}` again."),
            client_id=client_id, masked_key=parsed.masked, code="missing_permissions",
        )
    settings = info.get("settings") or {}
    dashboard = settings.get("dashboard") or {}
    account_name = (dashboard.get("display_name")
                    or (info.get("business_profile") or {}).get("name"))
    moved_from = previous.account_id if previous and previous.account_id not in (
        None, "", account_id) else None
    # Another account's history must not mix with the new one's: the client starts over.
    purged = warehouse_from_settings().purge_client(client_id) if moved_from else 0
    connection = store.save_connection(
        client_id, secret_key=parsed.key, account_id=account_id, account_name=account_name,
        livemode=parsed.livemode, name=name, stripe_account=stripe_account,
        missing_permissions=[p for m in missing for p in m.recorded],
    )
    return ConnectOutcome(connection, account_id, account_name, parsed.livemode, missing,
                          moved_from, purged, client_config(client_id).key_env)


def check_client(client_id: str, *, store: ConnectionStore | None = None,
                 api_base: str | None = None) -> ClientConnection:
    """The credential check on demand: who the key belongs to; the result is recorded."""
    if store is None:  # opened here, closed here
        with ConnectionStore.from_settings() as own:
            return check_client(client_id, store=own, api_base=api_base)
    account, connection = open_account(client_id, api_base=api_base, store=store)
    try:
        info = verify_account(account, connection.account_id if connection else None)
    except CredentialFailure as failure:  # a 429 or an outage says nothing about the key
        return record_check_outcome(store, client_id, failure)
    # A client stored without its account (an old bug) gets it now: the guard is back on.
    return record_check_outcome(store, client_id, account_id=info["id"])


def record_check_outcome(store: ConnectionStore, client_id: str,
                         failure: CredentialFailure | None = None, *,
                         account_id: str | None = None) -> ClientConnection:
    """The one place a credential check's outcome is recorded (`check`, the daily watch, every
    sync): passed (with the account it found, which fills a client stored without one), or
    failed with Stripe's reason, the steps, its code and request id."""
    if failure is None:
        return store.record_check(client_id, ok=True, account_id=account_id)
    return store.record_check(client_id, ok=False, reason=failure.message,
                              steps=failure.steps or reconnect_steps(client_id),
                              error_code=failure.code, request_id=failure.request_id)


def open_account(
    client_id: str, *, api_base: str | None = None,
    store: ConnectionStore | None = None,
) -> tuple[StripeAccount, ClientConnection | None]:
    """The client's Stripe account, with the key engine.clients says it uses (clients.yaml's
    variable, else the store).

    Raises ClientNotConnected, saying what to do, for a client that is not active.
    """
    settings = load_settings()
    config = client_config(client_id)
    if store is None:  # opened here, closed here
        with ConnectionStore.from_settings(settings) as own:
            return open_account(client_id, api_base=api_base, store=own)
    key, status = client_key(client_id, store, config)
    connection = status.connection
    account = StripeAccount(
        client_id,
        key,
        # A demo client keeps the demo's sandbox (engine/demo_sandbox.py), never Stripe.
        api_base=api_base or sandbox_address(client_id, connection and connection.account_id)
        or settings.api_base,
        stripe_account=config.stripe_account or (connection.stripe_account if connection else None),
        requests_per_second=config.max_requests_per_second,
        key_env=status.key_env,
    )
    return account, connection
