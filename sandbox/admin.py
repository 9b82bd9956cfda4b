"""The sandbox's own endpoints under /_sandbox: settings, statistics, faults and mutations.

They take no API key (the sandbox only listens on loopback) and accept form or JSON bodies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from sandbox.errors import ApiError
from sandbox.params import Params, parse_body, parse_params

if TYPE_CHECKING:
    from sandbox.server import SandboxServer


def handle_admin(
    server: SandboxServer, method: str, target: str, headers: Any, body: bytes
) -> tuple[int, bytes]:
    url = urlsplit(target)
    params = parse_params(url.query)
    if method == "POST":
        params.update(parse_body(headers.get("Content-Type") or "", body))
    parts = [p for p in url.path.split("/") if p][1:]
    try:
        result = _route(server, method, parts, params)
    except ApiError as exc:
        return exc.status, orjson.dumps(exc.body("req_sandbox"))
    except (KeyError, ValueError) as exc:
        return 400, orjson.dumps({"error": {"message": str(exc), "type": "invalid_request_error"}})
    if result is None:
        return 404, orjson.dumps(
            {
                "error": {
                    "message": f"Unknown sandbox endpoint {url.path}",
                    "type": "invalid_request_error",
                }
            }
        )
    return 200, orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS)


def _route(server: SandboxServer, method: str, parts: list[str], params: Params) -> Any:
    world = server.world
    if parts == ["config"]:
        if method == "POST":
            server.configure(**_config_values(params))
        return server.config()
    if parts == ["stats"]:
        return _stats_json(server.stats())
    if parts == ["stats", "reset"] and method == "POST":
        server.reset_stats()
        return {"reset": True}
    if parts == ["accounts"]:
        return [_account_json(world, a) for a in world.accounts.values()]
    if len(parts) == 3 and parts[0] == "accounts" and method == "POST":
        return _mutate(server, parts[1], parts[2], params)
    return None


def _config_values(params: Params) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in params:
        raw = params.one(key) or ""
        if key == "send_should_retry":
            values[key] = raw.lower() in ("1", "true", "yes")
        elif key == "rate_limit_rps":
            values[key] = None if raw.lower() in ("", "none", "null", "0") else float(raw)
        else:
            values[key] = float(raw)
    return values


def _stats_json(stats: dict[str, Any]) -> dict[str, Any]:
    rows = [
        {"account": acct, "path": path, "count": count}
        for (acct, path), count in sorted(stats["by_account_path"].items())
    ]
    return {
        **stats,
        "by_account_path": rows,
        "by_status": {str(k): v for k, v in stats["by_status"].items()},
    }


def _account_json(world: Any, account: Any) -> dict[str, Any]:
    return {
        "name": account.name,
        "account_id": account.account_id,
        "secret_key": account.secret_key,
        "revoked": account.secret_key in world.revoked,
        "currency": account.ctx.currency,
        "connected_to": account.spec.connected_to,
    }


def _mutate(server: SandboxServer, name: str, action: str, params: Params) -> Any:
    world = server.world
    amount = params.integer("amount")
    if action == "refund":
        return world.refund_charge(name, params.one("charge") or "", amount)
    if action == "charges":
        return world.create_charge(
            name,
            amount or 1000,
            params.one("currency"),
            customer=params.one("customer"),
            status=params.one("status") or "succeeded",
        )
    if action == "add_charges":
        return {"created": len(world.add_charges(name, params.integer("n") or 1))}
    if action == "cancel_subscription":
        return world.cancel_subscription(
            name,
            params.one("subscription") or "",
            at_period_end=params.boolean("at_period_end") or False,
        )
    if action == "delete_customer":
        return world.delete_customer(name, params.one("customer") or "")
    if action == "update_customer":
        fields = {k: params.one(k) for k in params if k != "customer"}
        return world.update_customer(name, params.one("customer") or "", **fields)
    if action == "revoke_key":
        world.revoke_key(name)
        return {"revoked": True}
    if action == "faults":
        server.inject_faults(name, params.integer("count") or 1, params.one("kind") or "500")
        return {"queued": params.integer("count") or 1}
    return None
