"""Stripe API keys: what kind a pasted string is, and how to show it safely."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_KEY_PATTERN = re.compile(r"^(sk|rk|pk)_(live|test)_[A-Za-z0-9_]{8,}$")


class KeyKind(str, Enum):
    SECRET = "secret"
    RESTRICTED = "restricted"
    PUBLISHABLE = "publishable"


@dataclass(frozen=True)
class ParsedKey:
    key: str
    kind: KeyKind
    livemode: bool

    @property
    def masked(self) -> str:
        return mask_key(self.key)

    def __repr__(self) -> str:  # never print the key itself
        return f"ParsedKey({self.masked}, {self.kind.value})"


class KeyFormatError(ValueError):
    """A pasted value that cannot be used as a Stripe secret key; the message says what to do."""


def mask_key(key: str | None) -> str:
    """`sk_live_…abcd`: the prefix and the last four characters, nothing else."""
    if not key:
        return ""
    key = key.strip()
    match = re.match(r"^((?:sk|rk|pk)_(?:live|test)_)", key)
    prefix = match.group(1) if match else ""
    tail = key[-4:] if len(key) >= 12 else ""
    return f"{prefix}…{tail}"


def parse_key(raw: str) -> ParsedKey:
    """Trim pasted white space and say which kind of Stripe key this is.

    Raises KeyFormatError with guidance for publishable keys and non-keys.
    """
    key = "".join(raw.split())
    match = _KEY_PATTERN.match(key)
    if not match:
        raise KeyFormatError(
            "That is not a Stripe API key. Paste the Secret key (it starts with sk_live_ or "
            "sk_test_; a restricted key starts with rk_) from the Stripe Dashboard: "
            "Developers → API keys."
        )
    prefix, mode = match.group(1), match.group(2)
    if prefix == "pk":
        raise KeyFormatError(
            "That is a publishable key (pk_…), which can only create payments from a browser. "
            "The reports need the Secret key: in the Stripe Dashboard open Developers → API keys "
            "and reveal the Secret key (sk_…); only an Administrator can create one."
        )
    kind = KeyKind.SECRET if prefix == "sk" else KeyKind.RESTRICTED
    return ParsedKey(key=key, kind=kind, livemode=(mode == "live"))
