"""Access to one client's Stripe account through the official SDK.

One `stripe.StripeClient` per client (never the module-global key), pointed at
`STRIPE_API_BASE`, with the SDK's own retries for dropped connections and 5xx,
our pacing on top, and every Stripe error mapped to resources.failures.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import requests
import stripe

from resources.failures import (
    KeyExpired,
    KeyRejected,
    PermissionMissing,
    StripeAccessError,
    TransientStripeError,
    permission_steps,
    reconnect_steps,
)
from resources.keys import mask_key
from resources.rate_limit import (
    LIVE_REQUESTS_PER_SECOND,
    TEST_REQUESTS_PER_SECOND,
    AdaptiveRateLimiter,
)

PAGE_SIZE = 100  # Stripe's maximum


class _ListBody(msgspec.Struct):
    """A list response, cut into each object's JSON text without decoding the objects."""

    data: list[msgspec.Raw] = []
    has_more: bool = False


class _ListedHead(msgspec.Struct):
    id: str
    created: int | None = None


_LIST_DECODER = msgspec.json.Decoder(_ListBody)
_HEAD_DECODER = msgspec.json.Decoder(_ListedHead)


@dataclass(frozen=True)
class ListPage:
    """One page of a list: each object's JSON text, and what paging needs to go on."""

    raw_objects: list[bytes]
    has_more: bool
    last_id: str | None = None
    newest_created: int | None = None  # the first object's `created` (lists are newest first)
    oldest_created: int | None = None  # the last object's

    @classmethod
    def from_body(cls, body: bytes) -> ListPage:
        listed = _LIST_DECODER.decode(body)
        if not listed.data:
            return cls([], listed.has_more)
        first = _HEAD_DECODER.decode(listed.data[0])
        last = _HEAD_DECODER.decode(listed.data[-1])
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
        max_network_retries: int = 2,
        max_throttle_retries: int = 8,
        timeout: float = 60.0,
    ) -> None:
        self.client_id = client_id
        self.masked_key = mask_key(secret_key)
        self.livemode = "_live_" in secret_key
        default_rate = LIVE_REQUESTS_PER_SECOND if self.livemode else TEST_REQUESTS_PER_SECOND
        self.limiter = AdaptiveRateLimiter(requests_per_second or default_rate)
        self.max_throttle_retries = max_throttle_retries
        self._client = stripe.StripeClient(
            secret_key,
            stripe_account=stripe_account,
            base_addresses={"api": api_base},
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
        """GET a Stripe path, decoded."""
        return orjson.loads(self._get_body(path, params or {}))

    def get_page(self, path: str, params: dict[str, Any]) -> ListPage:
        """GET one page of a Stripe list, its objects left as JSON text."""
        body = self._get_body(path, params)
        try:
            return ListPage.from_body(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise StripeAccessError(
                message=f"Stripe answered {path} with something that is not a list; "
                "the next scheduled sync retries.",
                client_id=self.client_id, masked_key=self.masked_key, code="unexpected_response",
            ) from None

    def _get_body(self, path: str, params: dict[str, Any]) -> bytes:
        """GET a Stripe path; 429s back off and retry, credential errors raise at once."""
        for attempt in range(self.max_throttle_retries + 1):
            self.limiter.acquire()
            self._count()
            try:
                return self._send_get(path, params)
            except stripe.RateLimitError as error:
                self.limiter.on_throttled()
                if attempt == self.max_throttle_retries:
                    raise self._transient(error, "Stripe kept rate-limiting our requests") from None
                time.sleep(min(5.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
            except stripe.AuthenticationError as error:
                raise self._rejected(error) from None
            except stripe.PermissionError as error:
                raise self._permission(error, path) from None
            except (stripe.APIConnectionError, stripe.APIError) as error:
                # The SDK already retried these; one failure here ends the run, key untouched.
                raise self._transient(error, "Stripe could not be reached") from None
            except stripe.StripeError as error:
                raise StripeAccessError(
                    message=f"Stripe refused the request to {path}: {error.user_message}",
                    client_id=self.client_id, masked_key=self.masked_key,
                    code=_code(error), request_id=error.request_id, http_status=error.http_status,
                ) from None
        raise AssertionError("unreachable")

    def _send_get(self, path: str, params: dict[str, Any]) -> bytes:
        """The SDK's requestor sends the request (auth, encoding, retries) and raises its
        typed errors; a successful body comes back as bytes, so we decode only what we
        need: the SDK's OrderedDict decoding costs more CPU than everything else in a sync.
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
        steps = reconnect_steps(self.client_id)
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
            steps=permission_steps(self.client_id, permission, label),
            client_id=self.client_id, masked_key=self.masked_key,
            code=_code(error) or "permission_denied", request_id=error.request_id,
            http_status=error.http_status, details={"missing_permission": permission},
        )

    def _transient(self, error: stripe.StripeError, what: str) -> TransientStripeError:
        return TransientStripeError(
            message=f"{what} for client {self.client_id!r} "
            f"({error.http_status or 'no response'}); the key was not marked failed. "
            "The next scheduled sync retries.",
            client_id=self.client_id, masked_key=self.masked_key, code=_code(error),
            request_id=error.request_id, http_status=error.http_status,
        )


def _session(api_base: str) -> requests.Session:
    """A session that reads the environment once. With `trust_env`, requests looks for
    ~/.netrc and re-parses the proxy variables on every request: ~10 % of a sync's CPU.
    """
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(api_base)
    session.trust_env = False
    return session


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
