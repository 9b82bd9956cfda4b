"""`stripe-reports demo`: the whole product on a laptop, against the local sandbox.

Starts the sandbox with three demo clients, connects them, revokes one client's key
(as a client's admin might), syncs everyone through Dagster, prints every widget
and the reconnect guidance for the failed client, and says where to look next.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from apps.launch import run_client_syncs
from apps.terminal import SyncProgressView, print_outcome
from engine.demo_sandbox import remember_demo_sandbox
from engine.settings import load_settings
from pipelines.instance import connect_and_register
from reports.widgets import format_result_line, run_widget, widget_catalog
from sandbox import SandboxServer, SandboxWorld
from sandbox.demo import DEMO_SPECS

DEMO_CLIENTS = {"acme": "Acme Corp", "globex": "Globex", "initech": "Initech"}
REVOKED_CLIENT = "initech"


def _print_widgets(client_id: str, out: TextIO) -> None:
    steps: tuple[str, ...] = ()
    for widget in widget_catalog():
        result = run_widget(client_id, widget.name)
        out.write(f"  {format_result_line(result)}\n")
        if result.state == "reconnect_required":
            steps = tuple(result.steps)
    # Every widget of a failed client says the same: the steps are printed once.
    for number, step in enumerate(steps, start=1):
        out.write(f"      {number}. {step}\n")


def run_demo(port: int = 0, seed: int = 7, out: TextIO = sys.stdout) -> int:
    # The demo world without its revocation: we connect first, then revoke, as in life.
    world = SandboxWorld.generate(seed, DEMO_SPECS)
    with SandboxServer(world, port=port).start() as server:
        os.environ["STRIPE_API_BASE"] = server.base_url  # children inherit it
        out.write(f"Sandbox Stripe API at {server.base_url}\n\n")
        for client_id, name in DEMO_CLIENTS.items():
            account = world.accounts[client_id]
            outcome = connect_and_register(client_id, account.secret_key, name=name,
                                     replace_account=True, api_base=server.base_url)
            out.write(f"connected {client_id:<8} {outcome.account_id}  "
                      f"{outcome.connection.masked_key}\n")
        # Remembered so the demo's clients keep working after it: `make dev` serves it again.
        remember_demo_sandbox(server.base_url, seed, {
            c: world.accounts[c].account_id for c in DEMO_CLIENTS})
        world.revoke_key(REVOKED_CLIENT)
        out.write(f"(the {REVOKED_CLIENT} key has now been revoked in Stripe, as happens when "
                  "a client's admin rolls it)\n\n")

        clients = list(DEMO_CLIENTS)
        with SyncProgressView(clients, sys.stderr) as view:
            outcomes = run_client_syncs(clients, progress=view.update, on_done=view.done,
                                        launched_by="demo")
    for outcome in outcomes:
        print_outcome(outcome, out)
    out.write("\nWidgets (last 30 days):\n")
    for client_id in clients:
        out.write(f"\n{client_id}:\n")
        _print_widgets(client_id, out)
    settings = load_settings()
    out.write(
        "\nNext:\n"
        f"  Dagster UI:  DAGSTER_HOME={settings.dagster_home} .venv/bin/dagster dev "
        "(or `make dev`), then open http://127.0.0.1:3000\n"
        "  Report page: .venv/bin/stripe-reports serve, then open http://127.0.0.1:8050\n"
        f"  Warehouse:   {settings.warehouse_path} (DuckDB: stripe.* and reporting.*)\n"
    )
    return 0
