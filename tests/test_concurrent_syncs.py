"""Two syncs of one client at once through the real CLI (a CLI sync beside a scheduled
run, the page's reconnect beside either) end exactly as one would."""

from __future__ import annotations

import os
import subprocess

import duckdb

from sandbox import AccountSpec
from tests.sync_helpers import new_warehouse
from tests.test_credentials import CLI, run_cli
from tests.test_sync_sandbox import assert_matches_source


def test_two_cli_syncs_of_one_client_at_once_flag_nothing_live_as_deleted(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec("r5", charges=5000, customers=500,
                                          subscriptions=333)], seed=11)
    key = server.world.accounts["r5"].secret_key
    assert run_cli("connect", "r5", stdin=key + "\n").returncode == 0

    runs = [subprocess.Popen([str(CLI), "sync", "r5"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=os.environ.copy(),
                             cwd=home) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        flagged = conn.execute(
            "SELECT count(*) FROM stripe.invoices WHERE is_deleted").fetchone()[0]
    assert flagged == 0
    assert_matches_source(server, "r5", new_warehouse(home))
