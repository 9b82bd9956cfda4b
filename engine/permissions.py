"""What a restricted Stripe key may be denied, by the names Stripe gives the permissions:
the streams (engine/streams.py), the events and the balance. The credential check records
the permissions a key lacks; the widgets read them back here as the data they cannot have.
No Stripe SDK here: the widget runner imports it.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.streams import STREAMS

# What a restricted key may be denied besides the streams: name, path, permission, widgets.
OTHER_READS = (
    ("events", "/v1/events", "rak_event_read", ()),  # without them each sync lists in full
    ("balance", "/v1/balance", "rak_balance_read", ("available_balance", "pending_balance")),
)


def readable_permissions() -> dict[str, str]:
    """Each thing the sync reads (stream names, `events`, `balance`) and the permission
    Stripe names when a restricted key may not read it."""
    return {**{spec.name: spec.permission for spec in STREAMS},
            **{name: permission for name, _, permission, _ in OTHER_READS}}


def unreadable(missing_permissions: Iterable[str]) -> list[str]:
    """What a key connected without these permissions cannot read (see
    readable_permissions), in the sync's order."""
    missing = set(missing_permissions)
    return [name for name, permission in readable_permissions().items()
            if permission in missing]
