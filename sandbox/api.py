"""Stripe's /v1 API over a SandboxWorld, independent of the HTTP server that carries it."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping

import orjson

from sandbox import errors
from sandbox.account import PERMISSIONS, SandboxAccount
from sandbox.billing import NOT_ENDED
from sandbox.commerce import page_of
from sandbox.errors import ApiError
from sandbox.events import RETENTION
from sandbox.expand import expand
from sandbox.listing import build_query, page_indices, render_list
from sandbox.params import Params
from sandbox.tables import Table
from sandbox.world import KeyInfo, SandboxWorld

LISTS = (
    "charges",
    "refunds",
    "customers",
    "subscriptions",
    "invoices",
    "balance_transactions",
    "payouts",
    "products",
    "prices",
    "disputes",
    "coupons",
    "credit_notes",
    "payment_intents",
    "events",
)
_WRITE_PERMISSION = {
    "charges": "rak_charge_write",
    "refunds": "rak_refund_write",
    "customers": "rak_customer_write",
    "subscriptions": "rak_subscription_write",
}
_NESTED_LISTS = {("invoices", "lines"): "lines", ("charges", "refunds"): "refunds"}
_DECLINE_TOKENS = {"tok_chargeDeclined", "tok_visa_chargeDeclined", "pm_card_chargeDeclined"}


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a request: `Authorization: Bearer <key>` or basic auth with it as user."""
    auth = (headers.get("Authorization") or "").strip()
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return value.strip()
        return decoded.split(":", 1)[0]
    return auth


def authenticate(
    world: SandboxWorld, headers: Mapping[str, str]
) -> tuple[KeyInfo, SandboxAccount, str]:
    """The key's record, the account the request acts on (Stripe-Account aware) and the key."""
    key = bearer_key(headers)
    if not key:
        raise errors.no_key()
    info = world.key_info(key)
    if info is None:
        raise errors.invalid_key(key)
    if info.kind == "expired":
        raise errors.expired_key(key)
    if info.kind == "publishable":
        raise errors.publishable_key()
    account = info.account
    target = (headers.get("Stripe-Account") or "").strip()
    if target:
        connected = world.connected(account, target)
        if connected is None:
            raise errors.no_account_access(key, target)
        account = connected
    return info, account, key


def resource_of(path: str) -> str | None:
    """The permission group of a /v1 path (None: every key may call it)."""
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "v1":
        return None
    name = parts[1]
    if name == "subscription_items":
        return "subscriptions"
    return name if name in PERMISSIONS else None


def check_permission(
    info: KeyInfo, account: SandboxAccount, key: str, method: str, path: str
) -> None:
    if info.kind != "restricted":
        return
    resource = resource_of(path)
    if resource is None:
        return
    if method != "GET":
        permission = _WRITE_PERMISSION.get(
            resource, PERMISSIONS[resource].replace("_read", "_write")
        )
        raise errors.missing_permission(key, account.account_id, permission)
    if resource in info.denied:
        raise errors.missing_permission(key, account.account_id, PERMISSIONS[resource])


class Api:
    """Routes an authenticated request to a handler; handlers return a JSON body (bytes)."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def handle(self, account: SandboxAccount, method: str, path: str, params: Params) -> bytes:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v1":
            raise errors.unrecognized_url(method, path)
        resource, rest = parts[1], parts[2:]
        route: Callable[[], bytes] | None = None
        if method == "GET":
            route = self._get_route(account, resource, rest, params)
        elif method == "POST":
            route = self._post_route(account, resource, rest, params)
        elif method == "DELETE" and len(rest) == 1:
            route = self._delete_route(account, resource, rest[0])
        if route is None:
            raise errors.unrecognized_url(method, path)
        return route()

    # --- reads ----------------------------------------------------------------------------------
    def _get_route(self, account: SandboxAccount, resource: str, rest: list[str], params: Params):
        if resource == "account" and not rest:
            return lambda: orjson.dumps(account.account_object())
        if resource == "balance" and not rest:
            return lambda: orjson.dumps(account.balance_object())
        if resource == "subscription_items":
            if not rest:
                return lambda: self._subscription_items(account, params)
            if len(rest) == 1:
                return lambda: self._subscription_item(account, rest[0])
            return None
        if resource not in LISTS:
            return None
        table = account.tables[resource]
        if not rest:
            return lambda: self._list(account, table, resource, params)
        if len(rest) == 1:
            return lambda: self._retrieve(account, table, rest[0], params.many("expand"))
        if len(rest) == 2 and (resource, rest[1]) in _NESTED_LISTS:
            return lambda: self._nested_list(account, table, rest[0],
                                             _NESTED_LISTS[resource, rest[1]], params)
        return None

    def _nested_list(self, account: SandboxAccount, table: Table, object_id: str, field: str,
                     params: Params) -> bytes:
        """`/v1/invoices/{id}/lines`, `/v1/charges/{id}/refunds`: the whole list the object
        embeds (maybe in part), paged."""
        index = table.index_of(object_id)
        if index is None or index in table.deleted:
            raise errors.resource_missing(table.object_name, object_id)
        embedded = table.get(index)[field]
        items = account.long_lists.get(object_id, embedded["data"])
        return orjson.dumps(page_of(items, params, embedded["url"], "line_item"))

    def _list(self, account: SandboxAccount, table: Table, resource: str, params: Params) -> bytes:
        extra = []
        min_created = None
        if resource == "subscriptions" and not params.one("status"):
            extra.append((table.filters["status"], NOT_ENDED))
        if resource == "events":
            patterns = params.many("types") or params.many("type")
            if len(params.many("types")) > 20:  # as Stripe answers
                raise errors.invalid_param("types", "Invalid array: types must have at most "
                                           "20 elements", code="parameter_invalid_array")
            params = Params({k: v for k, v in params.items() if k not in ("type", "types")})
            if patterns:
                extra.append((table.filters["type"], "\n".join(patterns)))
            min_created = int(time.time()) - RETENTION
        query = build_query(table, params, extra)
        indices, has_more = page_indices(table, query, min_created=min_created)
        paths = [p[5:] for p in params.many("expand") if p.startswith("data.")]
        dump = None
        if paths:
            find = account.find
            dump = lambda i: orjson.dumps(expand(table.get(i), paths, find))  # noqa: E731
        return render_list(table, indices, has_more, f"/v1/{resource}", dump)

    def _retrieve(
        self, account: SandboxAccount, table: Table, object_id: str, paths: list[str]
    ) -> bytes:
        index = table.index_of(object_id)
        if index is None:
            raise errors.resource_missing(table.object_name, object_id)
        if index in table.deleted:
            return orjson.dumps({"id": object_id, "object": table.object_name, "deleted": True})
        if table.path == "events" and table.created_at(index) < time.time() - RETENTION:
            raise errors.resource_missing(table.object_name, object_id)
        if paths:
            return orjson.dumps(expand(table.get(index), paths, account.find))
        return table.dumps(index)

    def _subscription_items(self, account: SandboxAccount, params: Params) -> bytes:
        sub_id = params.one("subscription")
        if not sub_id:
            raise errors.missing_param("subscription")
        subs = account.tables["subscriptions"]
        index = subs.index_of(sub_id)
        if index is None:
            raise errors.resource_missing("subscription", sub_id, param="subscription")
        items = account.long_lists.get(sub_id, subs.get(index)["items"]["data"])
        return orjson.dumps(page_of(items, params, "/v1/subscription_items", "subscription_item"))

    def _subscription_item(self, account: SandboxAccount, item_id: str) -> bytes:
        for items in list(account.long_lists.values()):
            for item in items:
                if item["id"] == item_id:
                    return orjson.dumps(item)
        views = account.billing_views
        k = views.si.index_of(item_id)
        if k is not None and k < len(views.b.item_sub):
            sub = account.tables["subscriptions"].get(views.b.item_sub[k])
            for item in sub["items"]["data"]:
                if item["id"] == item_id:
                    return orjson.dumps(item)
        raise errors.resource_missing("subscription_item", item_id)

    # --- writes ---------------------------------------------------------------------------------
    def _post_route(self, account: SandboxAccount, resource: str, rest: list[str], params: Params):
        name = account.name
        world = self.world
        if resource == "charges" and not rest:
            return lambda: self._create_charge(account, params)
        if resource == "refunds" and not rest:
            return lambda: self._create_refund(account, params)
        if resource == "customers" and not rest:
            return lambda: orjson.dumps(world.create_customer(name, **_customer_fields(params)))
        if resource == "customers" and len(rest) == 1:
            return lambda: orjson.dumps(
                world.update_customer(name, rest[0], **_customer_fields(params))
            )
        if resource == "subscriptions" and len(rest) == 1:
            return lambda: self._update_subscription(account, rest[0], params)
        return None

    def _delete_route(self, account: SandboxAccount, resource: str, object_id: str):
        name = account.name
        if resource == "customers":
            return lambda: orjson.dumps(self.world.delete_customer(name, object_id))
        if resource == "subscriptions":
            return lambda: orjson.dumps(self.world.cancel_subscription(name, object_id))
        return None

    def _create_charge(self, account: SandboxAccount, params: Params) -> bytes:
        amount = params.integer("amount")
        if amount is None:
            raise errors.missing_param("amount")
        declined = (params.one("source") or params.one("payment_method") or "") in _DECLINE_TOKENS
        charge = self.world.create_charge(
            account.name,
            amount,
            params.one("currency") or account.ctx.currency,
            customer=params.one("customer") or None,
            status="failed" if declined else "succeeded",
        )
        if declined:
            raise ApiError(
                402,
                charge["failure_message"],
                type_="card_error",
                code=charge["failure_code"],
                extra={"charge": charge["id"], "decline_code": "generic_decline"},
            )
        return orjson.dumps(charge)

    def _create_refund(self, account: SandboxAccount, params: Params) -> bytes:
        charge_id = params.one("charge")
        if not charge_id and params.one("payment_intent"):
            charges = account.tables["charges"]
            pi = account.payment_views.pi.index_of(params.one("payment_intent") or "")
            if pi is not None and pi < len(charges):
                charge_id = charges.id_of(pi)
        if not charge_id:
            raise errors.missing_param("charge")
        refund = self.world.refund_charge(
            account.name, charge_id, params.integer("amount"), reason=params.one("reason")
        )
        return orjson.dumps(refund)

    def _update_subscription(self, account: SandboxAccount, sub_id: str, params: Params) -> bytes:
        flag = params.boolean("cancel_at_period_end")
        if flag is None:
            subs = account.tables["subscriptions"]
            index = subs.index_of(sub_id)
            if index is None:
                raise errors.resource_missing("subscription", sub_id)
            return subs.dumps(index)
        return orjson.dumps(self.world.set_cancel_at_period_end(account.name, sub_id, flag))


def _customer_fields(params: Params) -> dict[str, object]:
    fields: dict[str, object] = {}
    metadata: dict[str, str] = {}
    for key in params:
        if key.startswith("metadata[") and key.endswith("]"):
            metadata[key[9:-1]] = params.one(key) or ""
        elif key in ("expand",):
            continue
        else:
            fields[key] = params.one(key)
    if metadata:
        fields["metadata"] = metadata
    return fields
