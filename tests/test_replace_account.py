"""`connect --replace-account` moves a client to another Stripe account: the old account's
rows and cursors go, so the next sync holds the new account's data and nothing else."""

from __future__ import annotations

import json
from datetime import date

import duckdb

from engine.streams import STREAMS_BY_NAME
from sandbox import AccountSpec
from tests.sync_helpers import source_objects
from tests.test_credentials import run_cli


def synced_ids(home, table: str) -> set[str]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return {row[0] for row in conn.execute(
            f"SELECT id FROM stripe.{table} WHERE client_id = 'a2'").fetchall()}


def test_replacing_the_account_starts_the_client_over(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("old", charges=150, customers=20, subscriptions=10),
                              AccountSpec("new", charges=250, customers=30, subscriptions=15)])
    old, new = server.world.accounts["old"], server.world.accounts["new"]
    assert run_cli("connect", "a2", stdin=old.secret_key + "\n").returncode == 0
    assert run_cli("sync", "a2").returncode == 0

    moved = run_cli("connect", "a2", "--replace-account", stdin=new.secret_key + "\n")
    assert moved.returncode == 0, moved.stderr
    assert f"moved from Stripe account {old.account_id}" in moved.stderr
    assert synced_ids(home, "charges") == set()
    assert run_cli("sync", "a2").returncode == 0

    for stream in ("charges", "customers", "subscriptions"):
        expected = set(source_objects(server, "new", STREAMS_BY_NAME[stream]))
        assert synced_ids(home, stream) == expected, stream
    payments = json.loads(run_cli("widget", "a2", "successful_payments", "--start",
                                  "2020-01-01", "--end", date.today().isoformat(),
                                  "--format", "json").stdout)
    assert payments["value"] == sum(1 for c in source_objects(
        server, "new", STREAMS_BY_NAME["charges"]).values() if c["status"] == "succeeded")
