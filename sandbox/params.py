"""Request parameters the way Stripe reads them: form/query encoding with bracketed keys."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson

from sandbox.errors import ApiError, invalid_param

_ARRAY_KEY = re.compile(r"^(.*)\[(\d*)\]$")


class Params(dict[str, list[str]]):
    """Every key to its values; `types[0]`, `types[]` and `types` all read as `types`."""

    def one(self, key: str, default: str | None = None) -> str | None:
        values = self.get(key)
        return values[-1] if values else default

    def many(self, key: str) -> list[str]:
        return list(self.get(key, ()))

    def integer(self, key: str) -> int | None:
        value = self.one(key)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise invalid_param(key, f"Invalid integer: {value}") from None

    def boolean(self, key: str) -> bool | None:
        value = self.one(key)
        if value is None:
            return None
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise invalid_param(key, f"Invalid boolean: {value}", code="parameter_invalid_boolean")


def parse_params(*encoded: str) -> Params:
    params = Params()
    for text in encoded:
        for key, value in parse_qsl(text, keep_blank_values=True):
            match = _ARRAY_KEY.match(key)
            if match:  # `types[0]` / `types[]`; hashes like `created[gte]` never match
                key = match.group(1)
            params.setdefault(key, []).append(value)
    return params


def parse_body(content_type: str, body: bytes) -> Params:
    """A POST body: form-encoded like Stripe, or JSON (the sandbox's own admin endpoints)."""
    if not body:
        return Params()
    if "json" in content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Invalid JSON body.") from None
        params = Params()
        for key, value in (data or {}).items():
            values = value if isinstance(value, list) else [value]
            params[key] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        return params
    return parse_params(body.decode("utf-8", "replace"))
