"""The demo world: three agency clients with different shapes of business."""

from __future__ import annotations

from sandbox.context import AccountSpec
from sandbox.world import SandboxWorld

DEMO_SPECS = (
    # A healthy US SaaS: mostly monthly and yearly plans, lots of card payments.
    AccountSpec(
        "acme",
        charges=2000,
        customers=300,
        subscriptions=180,
        products=6,
        currency="usd",
        price_intervals=("month", "year"),
        failure_rate=0.05,
    ),
    # A European business billing every cadence: weekly, monthly, quarterly, yearly.
    AccountSpec(
        "globex",
        charges=1200,
        customers=200,
        subscriptions=140,
        products=8,
        currency="eur",
        price_intervals=("week", "month", "quarter", "year"),
    ),
    # A Japanese client whose key was revoked: the data is there, the key no longer works.
    AccountSpec(
        "initech",
        charges=600,
        customers=80,
        subscriptions=50,
        products=4,
        currency="jpy",
        price_intervals=("month", "year"),
    ),
)
REVOKED_DEMO_ACCOUNTS = ("initech",)


def demo_world(seed: int = 7, now: int | None = None) -> SandboxWorld:
    """acme (usd), globex (eur) and initech (jpy, secret key revoked)."""
    world = SandboxWorld.generate(seed, DEMO_SPECS, now=now)
    for name in REVOKED_DEMO_ACCOUNTS:
        world.revoke_key(name)
    return world


def generated_specs(count: int, charges: int) -> list[AccountSpec]:
    """`count` ordinary accounts named client01, client02, ... (for `--accounts N`)."""
    currencies = ("usd", "eur", "gbp", "jpy")
    return [
        AccountSpec(
            f"client{i + 1:02d}",
            charges=charges,
            # A realistic shape at every size: one subscription per 15 charges (each billed
            # every period), one customer per 10 charges, some with several subscriptions.
            customers=max(20, charges // 10),
            subscriptions=max(10, charges // 15),
            currency=currencies[i % len(currencies)],
        )
        for i in range(count)
    ]
