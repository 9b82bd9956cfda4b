"""`python -m sandbox` / `stripe-reports sandbox`: run a sandbox in the foreground."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sandbox.context import AccountSpec
from sandbox.demo import DEMO_SPECS, REVOKED_DEMO_ACCOUNTS, generated_specs
from sandbox.server import SandboxServer
from sandbox.world import SandboxWorld


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-reports sandbox",
        description="A local Stripe-compatible API with generated accounts (keys are fake).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--charges",
        type=int,
        default=None,
        help="charges per account (default: the demo's own sizes)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="serve N generated accounts instead of the three demo clients",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rps", type=float, default=None, help="rate limit per account")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    return parser


def build_world(seed: int = 7, accounts: int | None = None,
                charges: int | None = None) -> SandboxWorld:
    """`accounts` generated accounts, else the demo's three (its revoked key revoked)."""
    if accounts:
        return SandboxWorld.generate(seed, generated_specs(accounts, charges or 200))
    specs: list[AccountSpec] = list(DEMO_SPECS)
    if charges is not None:
        specs = [_with_charges(spec, charges) for spec in specs]
    world = SandboxWorld.generate(seed, specs)
    for name in REVOKED_DEMO_ACCOUNTS:
        world.revoke_key(name)
    return world


def _with_charges(spec: AccountSpec, charges: int) -> AccountSpec:
    from dataclasses import replace

    return replace(spec, charges=charges)


def describe(server: SandboxServer) -> str:
    lines = [f"Stripe sandbox listening on {server.base_url}", ""]
    for account in server.world.accounts.values():
        state = " (revoked)" if account.secret_key in server.world.revoked else ""
        lines.append(f"  {account.name:<12} {account.account_id}  {account.secret_key}{state}")
    lines += ["", f"Use it with STRIPE_API_BASE={server.base_url}. Ctrl-C stops it."]
    return "\n".join(lines)


def run_sandbox(*, host: str = "127.0.0.1", port: int = 12111, seed: int = 7,
                charges: int | None = None, accounts: int | None = None,
                latency_ms: float = 0.0, rps: float | None = None,
                fault_rate: float = 0.0) -> int:
    """Serve a sandbox in the foreground until Ctrl-C (`stripe-reports sandbox` calls this)."""
    server = SandboxServer(
        build_world(seed, accounts, charges),
        host=host,
        port=port,
        latency_ms=latency_ms,
        rate_limit_rps=rps,
        fault_rate=fault_rate,
    )
    server.start()
    print(describe(server), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sandbox`: the same options, read by argparse (no click in the sandbox)."""
    return run_sandbox(**vars(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
