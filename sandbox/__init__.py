"""A Stripe-compatible local API server with generated accounts, for demos, tests and benchmarks.

world = SandboxWorld.generate(seed=1, specs=[AccountSpec("acme")])
with SandboxServer(world) as server:
    client = stripe.StripeClient(world.accounts["acme"].secret_key,
                                 base_addresses={"api": server.base_url})
"""

from sandbox.account import PERMISSIONS, SandboxAccount
from sandbox.context import AccountSpec
from sandbox.demo import demo_world
from sandbox.errors import ApiError
from sandbox.server import SandboxServer
from sandbox.world import SandboxWorld

__all__ = [
    "PERMISSIONS",
    "AccountSpec",
    "ApiError",
    "SandboxAccount",
    "SandboxServer",
    "SandboxWorld",
    "demo_world",
]
