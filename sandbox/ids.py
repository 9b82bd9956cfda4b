"""Deterministic Stripe-looking ids and keys.

An object id encodes its row index in a fixed-width base62 field whose alphabet is in
ASCII order, so sorting ids as strings sorts them by index; lists rely on that for a
deterministic (created desc, id desc) order, and `starting_after` decodes the index back.
"""

from __future__ import annotations

import hashlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # 62*62 two-char chunks, in order
_MIX = 0x9E3779B97F4A7C15
_MASK47 = (1 << 47) - 1

INDEX_WIDTH = 6  # 62**6 = 56 billion rows per table


def b62(value: int, width: int) -> str:
    """Fixed-width base62 of a non-negative int (truncated to `width` digits)."""
    out = []
    for _ in range((width + 1) // 2):
        value, rem = divmod(value, 3844)
        out.append(_PAIRS[rem])
    text = "".join(reversed(out))
    return text[len(text) - width :]


def _encoder(width: int):
    """A fast fixed-width base62 encoder (ids are made for every object of every page)."""
    pairs = _PAIRS
    if width == 4:
        return lambda v: pairs[(v // 3844) % 3844] + pairs[v % 3844]
    if width == 6:
        return lambda v: pairs[(v // 14776336) % 3844] + pairs[(v // 3844) % 3844] + pairs[v % 3844]
    if width == 8:
        return lambda v: (
            pairs[(v // 56800235584) % 3844]
            + pairs[(v // 14776336) % 3844]
            + pairs[(v // 3844) % 3844]
            + pairs[v % 3844]
        )
    return lambda v: b62(v, width)


def unb62(text: str) -> int | None:
    value = 0
    for ch in text:
        digit = _VALUE.get(ch)
        if digit is None:
            return None
        value = value * 62 + digit
    return value


def digest62(*parts: object, width: int = 16) -> str:
    """A base62 string derived from the parts (stable across runs and machines)."""
    raw = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return b62(int.from_bytes(raw, "big"), width)


class IdCodec:
    """Ids of one kind of object in one account: prefix + tag + index + scrambled tail."""

    __slots__ = ("head", "salt", "tail_width", "_head_len", "_index", "_tail")

    def __init__(self, prefix: str, *salt_parts: object, tag_width: int = 6, tail_width: int = 12):
        tag = digest62(prefix, *salt_parts, width=tag_width)
        self.head = prefix + tag
        self.salt = int.from_bytes(hashlib.sha256(self.head.encode()).digest()[:6], "big")
        self.tail_width = tail_width
        self._head_len = len(self.head)
        self._index = _encoder(INDEX_WIDTH)
        self._tail = _encoder(tail_width)

    def make(self, index: int) -> str:
        tail = (((index + self.salt) * _MIX) >> 11) & _MASK47
        return self.head + self._index(index) + self._tail(tail)

    def index_of(self, object_id: str) -> int | None:
        """The row index an id names, or None if it is not one of ours."""
        if not object_id.startswith(self.head):
            return None
        start = self._head_len
        index = unb62(object_id[start : start + INDEX_WIDTH])
        if index is None or self.make(index) != object_id:
            return None
        return index
