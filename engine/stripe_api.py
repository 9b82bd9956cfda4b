"""Access to one client's Stripe account through the official SDK.

One `stripe.StripeClient` per client (never the module-global key), pointed at
`STRIPE_API_BASE`, paced by the account's adaptive limiter, and every Stripe error
mapped to engine.failures. Every transient failure (5xx, 429, a dropped, reset or
timed-out connection, a truncated or non-JSON answer) is retried per request, with
exponential backoff and jitter, for up to `retry_seconds` (STRIPE_REPORTS_RETRY_SECONDS,
default 180 s): a blip costs one request, never the run. The SDK's own retries are off,
so every attempt is paced and counted.

Every answer is checked for the shape the code relies on before anything reads it (one
place: `_fetch`, with the shape `_shape_for` names per path). A 200 that is not that shape
(an account without its id, a list whose objects lack theirs, a balance without amounts)
is a malformed answer like a truncated one: asked for again, then a transient failure,
never a verdict on the key.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
import orjson
import requests
import stripe

from engine.failures import (
    KeyExpired,
    KeyRejected,
    PermissionMissing,
    StripeAccessError,
    TransientStripeError,
    WrongAccount,
    permission_steps,
    reconnect_steps,
)
from engine.keys import mask_key
from engine.rate_limit import (
    LIVE_REQUESTS_PER_SECOND,
    TEST_REQUESTS_PER_SECOND,
    AdaptiveRateLimiter,
    Backoff,
)
from engine.settings import RETRY_SECONDS_ENV, load_settings
from engine.streams import STREAMS, StreamSpec

PAGE_SIZE = 100  # Stripe's maximum
MALFORMED_RESPONSE = "malformed_response"  # the code of a failure whose 200s did not decode
# A 200 whose body does not decode: truncated, or not JSON at all (a proxy's HTML page).
_MALFORMED = (msgspec.DecodeError, msgspec.ValidationError, orjson.JSONDecodeError,
              UnicodeDecodeError)
# Connection failures that asking again cannot fix: the base address itself is wrong.
_PERMANENT_CONNECTION = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                         requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader)
T = TypeVar("T")


_Id = Annotated[str, msgspec.Meta(min_length=1)]


class _ListBody(msgspec.Struct):
    """A list response, cut into each object's JSON text without decoding the objects."""

    data: list[msgspec.Raw]  # required: a body without them is not a list, and is retried
    has_more: bool


class _ListedHead(msgspec.Struct):
    """What paging and the warehouse rely on in every listed object: its id (the row's
    key) and, where it has one, `created` (the cursor)."""

    id: _Id
    created: int | None = None


class _ListHeads(msgspec.Struct):
    data: list[_ListedHead]
    has_more: bool


# The shapes of the single answers the engine reads; unknown fields are ignored.
class _Dashboard(msgspec.Struct):
    display_name: str | None = None


class _AccountSettings(msgspec.Struct):
    dashboard: _Dashboard | None = None


class _BusinessProfile(msgspec.Struct):
    name: str | None = None


class _Account(msgspec.Struct):
    id: _Id  # who the key belongs to: the account guard compares it, the store keeps it
    created: int | None = None
    settings: _AccountSettings | None = None
    business_profile: _BusinessProfile | None = None


class _Funds(msgspec.Struct):
    currency: _Id
    amount: int


class _Balance(msgspec.Struct):
    available: list[_Funds]
    pending: list[_Funds]


class _EventObject(msgspec.Struct):
    id: _Id
    object: _Id


class _EventData(msgspec.Struct):
    object: _EventObject


class _Event(msgspec.Struct):
    id: _Id
    type: _Id
    data: _EventData


class _ListedEvent(msgspec.Struct):
    """What paging and routing read of any listed event; an event of a type the streams
    take is checked whole (_Event). Others (an unfiltered listing brings every type, some
    with objects that have no id, like invoice.upcoming) are skipped, never landed."""

    id: _Id
    type: _Id


class _EventList(msgspec.Struct):
    data: list[_ListedEvent]
    has_more: bool


class _StripeObject(msgspec.Struct):
    object: _Id


# A stream column's JSON type where it lands typed: DuckDB's TRY_CAST would turn a value of
# another type into NULL, a wrong figure. References (an id or an expanded object), JSON
# and nested columns are left to the warehouse.
_SCALARS: dict[str, Any] = {"BIGINT": int | None, "DOUBLE": float | None,
                            "BOOLEAN": bool | None, "TIMESTAMPTZ": int | None,
                            "VARCHAR": str | None}


def _object_shape(spec: StreamSpec) -> type[msgspec.Struct]:
    """A stream's objects: an id, and each typed top-level column of its JSON type."""
    fields = [(column.name, _SCALARS[column.type], None) for column in spec.columns
              if column.name not in ("id", "created") and not column.path and not column.ref
              and column.type in _SCALARS]
    return msgspec.defstruct(f"_{spec.object_type}", fields, bases=(_ListedHead,))


def _list_of(shape: type[msgspec.Struct]) -> type[msgspec.Struct]:
    return msgspec.defstruct(f"{shape.__name__}_list",
                             [("data", list[shape]), ("has_more", bool)])  # type: ignore[valid-type]


_OBJECT_SHAPES = {spec.object_type: _object_shape(spec) for spec in STREAMS}
_TAKEN_EVENT_TYPES = frozenset(t for spec in STREAMS for t in spec.event_types)
_LIST_DECODER = msgspec.json.Decoder(_ListBody)
_HEADS_DECODER = msgspec.json.Decoder(_ListHeads)
_PAGE_DECODERS = {spec.endpoint: msgspec.json.Decoder(_list_of(_OBJECT_SHAPES[spec.object_type]))
                  for spec in STREAMS}
_SHAPES: dict[str, type[msgspec.Struct]] = {
    "/v1/account": _Account, "/v1/balance": _Balance, "/v1/events": _EventList,
    **{spec.endpoint: _list_of(_OBJECT_SHAPES[spec.object_type]) for spec in STREAMS},
}


def _bare(path: str) -> str:
    return path.split("?")[0].rstrip("/")


def _shape_for(path: str) -> type[msgspec.Struct]:
    """The shape an answer to `path` must have: a known one, else any list has objects
    with ids, and anything else is at least a Stripe object."""
    path = _bare(path)
    if path in _SHAPES:
        return _SHAPES[path]
    return _ListHeads if path.count("/") == 2 else _StripeObject


@dataclass(frozen=True)
class ListPage:
    """One page of a list: each object's JSON text, and what paging needs to go on."""

    raw_objects: list[bytes]
    has_more: bool
    last_id: str | None = None
    newest_created: int | None = None  # the first object's `created` (lists are newest first)
    oldest_created: int | None = None  # the last object's

    @classmethod
    def from_body(cls, body: bytes, path: str = "") -> ListPage:
        listed = _LIST_DECODER.decode(body)
        if not listed.data:
            return cls([], listed.has_more)
        # Every object is checked, not only those paging reads: a row without an id, a
        # typed field of another type, or an answer that is not a list of objects, must be
        # asked for again, never landed.
        heads = _PAGE_DECODERS.get(_bare(path), _HEADS_DECODER).decode(body).data
        first, last = heads[0], heads[-1]
        return cls([bytes(raw) for raw in listed.data], listed.has_more, last.id,
                   first.created, last.created)


def resource_label(path: str) -> str:
    """'/v1/balance_transactions' -> 'Balance transactions' (as the Dashboard names it)."""
    name = path.split("?")[0].removeprefix("/v1/").split("/")[0]
    return name.replace("_", " ").capitalize()


class StripeAccount:
    """A client's Stripe account: paced, retried, and speaking in typed failures."""

    def __init__(
        self,
        client_id: str,
        secret_key: str,
        *,
        api_base: str,
        stripe_account: str | None = None,
        requests_per_second: float | None = None,
        max_network_retries: int = 0,
        retry_seconds: float | None = None,
        timeout: float = 60.0,
        key_env: str | None = None,
    ) -> None:
        self.client_id = client_id
        # The environment variable the key came from (clients.yaml); None: the store's key.
        self.key_env = key_env
        self.masked_key = mask_key(secret_key)
        self.livemode = "_live_" in secret_key
        default_rate = LIVE_REQUESTS_PER_SECOND if self.livemode else TEST_REQUESTS_PER_SECOND
        self.limiter = AdaptiveRateLimiter(requests_per_second or default_rate)
        if retry_seconds is None:
            retry_seconds = load_settings().retry_seconds
        self.retry_seconds = retry_seconds
        self._client = stripe.StripeClient(
            secret_key,
            stripe_account=stripe_account,
            base_addresses={"api": api_base},
            # Ours retry everything transient, paced and counted; the SDK's would retry
            # unpaced, and only 5xx and some connection errors, twice by default.
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout, session=_session(api_base)),
        )
        self._count_lock = threading.Lock()
        self.requests_by_tag: dict[str, int] = {}
        self.tag = "account"

    @property
    def requests(self) -> int:
        return sum(self.requests_by_tag.values())

    def tagged(self, tag: str) -> StripeAccount:
        """The same account (client, pacing, counters) counting its requests under `tag`."""
        view = copy.copy(self)
        view.tag = tag
        return view

    def __repr__(self) -> str:
        return f"StripeAccount({self.client_id!r}, {self.masked_key})"

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a Stripe path, decoded, once it has the shape the engine relies on."""
        shape = _shape_for(path)
        return self._fetch(path, params or {}, lambda body: _decode_object(body, shape))

    def get_page(self, path: str, params: dict[str, Any]) -> ListPage:
        """GET one page of a Stripe list, its objects left as JSON text."""
        return self._fetch(path, params, lambda body: ListPage.from_body(body, path))

    def _fetch(self, path: str, params: dict[str, Any], decode: Callable[[bytes], T]) -> T:
        """GET and decode, retrying transient failures within the budget; credential
        errors and other refusals raise at once. Decoding is part of the attempt: a
        truncated or non-JSON 200 is asked for again like a 500."""
        backoff = Backoff(self.retry_seconds)
        while True:
            self.limiter.acquire()
            self._count()
            try:
                return decode(self._send_get(path, params))
            except (stripe.StripeError, *_MALFORMED) as error:
                what, at_least = self._retryable(error, path)
                failure = error
            delay = backoff.next_delay(at_least)
            if delay is None:
                raise self._gave_up(failure, what, backoff) from None
            time.sleep(delay)

    def _retryable(self, error: Exception, path: str) -> tuple[str, float]:
        """What went wrong and the least wait before asking again; raises what is final."""
        if isinstance(error, _MALFORMED):
            return f"Stripe kept answering {path} with a malformed response", 0.0
        assert isinstance(error, stripe.StripeError)
        if isinstance(error, stripe.RateLimitError):
            self.limiter.on_throttled()
            return "Stripe kept rate-limiting our requests", _retry_after(error)
        if isinstance(error, stripe.AuthenticationError):
            raise self._rejected(error) from None
        if isinstance(error, stripe.PermissionError):
            raise self._permission(error, path) from None
        if isinstance(error, stripe.APIConnectionError):
            if isinstance(error.__cause__, _PERMANENT_CONNECTION):
                raise self._transient(error, "Stripe could not be reached") from None
            return "Stripe could not be reached", 0.0
        if isinstance(error, stripe.APIError) and not 400 <= (error.http_status or 500) < 500:
            return "Stripe could not be reached", 0.0  # 5xx, or an error body that was not JSON
        raise StripeAccessError(
            message=f"Stripe refused the request to {path}: {error.user_message}",
            client_id=self.client_id, masked_key=self.masked_key,
            code=_code(error), request_id=error.request_id, http_status=error.http_status,
        ) from None

    def _send_get(self, path: str, params: dict[str, Any]) -> bytes:
        """The SDK's requestor sends the request (auth, encoding) and raises its typed
        errors; a successful body comes back as bytes, so we decode only what we need:
        the SDK's decoding costs more CPU than everything else in a sync. Both calls are
        private: tests/test_faults.py fails the day their shape changes.
        """
        requestor = getattr(self._client, "_requestor", None)
        if requestor is None or not hasattr(requestor, "request_raw"):
            return self._client.raw_request("get", path, **params).body.encode()
        body, status, headers = requestor.request_raw(
            "get", path, params=params, base_address="api", api_mode="V1",
            usage=["raw_request"],
        )
        if 200 <= status < 300:
            return body if isinstance(body, bytes) else body.encode()
        requestor._interpret_response(body, status, headers, "V1")  # raises the SDK's error
        raise stripe.APIError(f"Unexpected HTTP {status} from Stripe", http_status=status)

    def iter_pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict]]:
        """Every page of a list, newest first, following `starting_after`."""
        query = {"limit": PAGE_SIZE, **(params or {})}
        while True:
            page = self.get(path, query)
            data = page.get("data") or []
            if data:
                yield data
            if not page.get("has_more") or not data:
                return
            query = {**query, "starting_after": data[-1]["id"]}

    def _count(self) -> None:
        with self._count_lock:
            self.requests_by_tag[self.tag] = self.requests_by_tag.get(self.tag, 0) + 1

    def _rejected(self, error: stripe.StripeError) -> KeyRejected | KeyExpired:
        steps = reconnect_steps(self.client_id, key_env=self.key_env)
        if _code(error) == "api_key_expired":
            return KeyExpired(
                message=f"Stripe says the key {self.masked_key} for client "
                f"{self.client_id!r} has expired.",
                steps=steps, client_id=self.client_id, masked_key=self.masked_key,
                code=_code(error), request_id=error.request_id, http_status=error.http_status,
            )
        return KeyRejected(
            message=f"Stripe rejected the key {self.masked_key} for client {self.client_id!r}: "
            "it is invalid or has been revoked or rolled.",
            steps=steps, client_id=self.client_id, masked_key=self.masked_key,
            code=_code(error) or "invalid_api_key", request_id=error.request_id,
            http_status=error.http_status,
        )

    def _permission(self, error: stripe.StripeError, path: str) -> PermissionMissing:
        label = resource_label(path)
        permission = _permission_named_in(error.user_message or "") or f"read {label}"
        return PermissionMissing(
            message=f"The restricted key {self.masked_key} for client {self.client_id!r} "
            f"lacks permission to read {label} ({permission}).",
            steps=permission_steps(self.client_id, permission, label, self.key_env),
            client_id=self.client_id, masked_key=self.masked_key,
            code=_code(error) or "permission_denied", request_id=error.request_id,
            http_status=error.http_status, details={"missing_permission": permission},
        )

    def _transient(self, error: stripe.StripeError, what: str) -> TransientStripeError:
        return self._transient_failure(error, what, "")

    def _gave_up(self, error: Exception, what: str, backoff: Backoff) -> TransientStripeError:
        tried = (f" Tried {backoff.attempts} times over {backoff.elapsed:.0f} s (retry budget "
                 f"{self.retry_seconds:.0f} s, {RETRY_SECONDS_ENV}).")
        return self._transient_failure(error, what, tried)

    def _transient_failure(self, error: Exception, what: str, tried: str
                           ) -> TransientStripeError:
        # A body that did not decode came with a 2xx: _send_get raises for anything else.
        known = error if isinstance(error, stripe.StripeError) else None
        status = known.http_status if known else 200
        return TransientStripeError(
            message=f"{what} for client {self.client_id!r} ({status or 'no response'}); "
            f"the key was not marked failed.{tried} The next scheduled sync retries.",
            client_id=self.client_id, masked_key=self.masked_key,
            code=_code(known) if known else MALFORMED_RESPONSE,
            request_id=known.request_id if known else None, http_status=status,
        )


def verify_account(account: StripeAccount, expected_account_id: str | None) -> dict:
    """The credential check: who the key belongs to (GET /v1/account).

    Raises a CredentialFailure for a rejected key or a key of another account.
    """
    info = account.tagged("account").get("/v1/account")  # its id is checked: never empty
    if expected_account_id and info["id"] != expected_account_id:
        raise WrongAccount(
            message=f"The key {account.masked_key} for client {account.client_id!r} belongs to "
            f"Stripe account {info['id']}, not {expected_account_id} that this client's "
            "history comes from.",
            steps=reconnect_steps(account.client_id, expected_account_id, account.key_env),
            client_id=account.client_id, masked_key=account.masked_key, code="account_mismatch",
        )
    return info


def _session(api_base: str) -> requests.Session:
    """A session that reads the environment once. With `trust_env`, requests looks for
    ~/.netrc and re-parses the proxy variables on every request: ~10 % of a sync's CPU.
    """
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(api_base)
    session.trust_env = False
    return session


def _retry_after(error: stripe.StripeError) -> float:
    """Seconds the server asked us to wait (Retry-After), capped: we pace ourselves too."""
    try:
        return min(60.0, max(0.0, float((error.headers or {}).get("Retry-After", 0))))
    except (TypeError, ValueError):  # an HTTP date: fall back on our own backoff
        return 0.0


def _decode_object(body: bytes, shape: type[msgspec.Struct]) -> dict[str, Any]:
    """The answer as a dict; a msgspec.ValidationError (retried) unless it has `shape`."""
    decoded = orjson.loads(body)
    if not isinstance(decoded, dict):
        raise msgspec.ValidationError("expected a JSON object")
    msgspec.convert(decoded, shape)
    if shape is _EventList:  # the objects events carry land as rows too
        for event in decoded["data"]:
            if event["type"] not in _TAKEN_EVENT_TYPES:
                continue
            msgspec.convert(event, _Event)
            changed = event["data"]["object"]
            if changed["object"] in _OBJECT_SHAPES:
                msgspec.convert(changed, _OBJECT_SHAPES[changed["object"]])
    return decoded


def _code(error: stripe.StripeError) -> str | None:
    """Stripe's error code; the SDK leaves `error.code` empty for 401s and 403s."""
    return error.code or (error.error.code if error.error else None)


def _permission_named_in(message: str) -> str | None:
    """Stripe's 403 names the permission: "Having the 'rak_charge_read' permission ..."."""
    marker = "'rak_"
    start = message.find(marker)
    if start < 0:
        return None
    end = message.find("'", start + 1)
    return message[start + 1 : end] if end > start else None
