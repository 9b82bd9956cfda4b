"""Reconciliation: after real syncs through Dagster the warehouse adds up with Stripe's own
arithmetic on every sandbox account; a balance transaction lost from the warehouse fails
the check for that client only, with the currency and the difference, and stales its
widgets until a sync brings it back."""

from __future__ import annotations

import json
import time

from dagster import DagsterInstance

from assets.reconcile_check import RECONCILE_CHECK_KEY
from engine.reconcile import money, reconcile
from engine.sync import snapshot_balance
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec
from sandbox.payments import fee_for
from tests.sync_helpers import account_for, new_warehouse, run_sync
from tests.test_credentials import run_cli

SHAPE = {"customers": 12, "subscriptions": 8, "products": 3, "history_days": 60}
ACCOUNTS = [AccountSpec("acme", charges=80, currency="usd", **SHAPE),
            AccountSpec("globex", charges=60, currency="eur", **SHAPE),
            AccountSpec("initech", charges=40, currency="jpy", **SHAPE)]


def widget(client: str) -> dict:
    done = run_cli("widget", client, "gross_volume", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dagster_verdicts() -> dict[str, bool]:
    """client -> whether its latest reconciliation check in Dagster passed."""
    infos = DagsterInstance.get().event_log_storage.get_asset_check_partition_info(
        [RECONCILE_CHECK_KEY])
    return {info.partition_key: info.latest_execution_status.value == "SUCCEEDED"
            for info in infos}


def connect_and_sync(server) -> None:
    for account in ACCOUNTS:
        key = server.world.accounts[account.name].secret_key
        assert run_cli("connect", account.name, stdin=key + "\n").returncode == 0
    done = run_cli("sync", *(a.name for a in ACCOUNTS))
    assert done.returncode == 0, done.stdout + done.stderr


def lose_a_charge_transaction(client: str) -> tuple[str, int, str]:
    """Delete one available charge's balance transaction by hand: its id, net, currency."""
    with warehouse_from_settings().writer() as conn:
        txn_id, net, currency = conn.execute(
            "SELECT id, net, currency FROM stripe.balance_transactions WHERE client_id = ? "
            "AND type = 'charge' AND available_on < now() - INTERVAL 1 DAY ORDER BY id LIMIT 1",
            [client]).fetchone()
        conn.execute("DELETE FROM stripe.balance_transactions WHERE client_id = ? AND id = ?",
                     [client, txn_id])
    return txn_id, net, currency


def test_every_sandbox_account_reconciles_after_a_sync(home, sandbox_factory):
    server = sandbox_factory(ACCOUNTS)
    connect_and_sync(server)

    # The sync runs recorded the check on each client's partition, all passed.
    assert dagster_verdicts() == {"acme": True, "globex": True, "initech": True}
    done = run_cli("reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"{a.name}: reconciles with Stripe." for a in ACCOUNTS]


def test_a_lost_balance_transaction_fails_that_client_only_and_stales_its_widgets(
        home, sandbox_factory):
    server = sandbox_factory(ACCOUNTS)
    connect_and_sync(server)
    assert widget("globex")["state"] == "ok"
    _, net, currency = lose_a_charge_transaction("globex")

    done = run_cli("reconcile")

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith("globex: ")]
    assert "acme: reconciles with Stripe." in lines and "initech: reconciles with Stripe." in lines
    assert failed[0].startswith("globex: available_balance, EUR: The available EUR balance")
    assert failed[0].endswith(f"(difference {money(net, currency)}).")
    assert failed[1].startswith("globex: charges, EUR: 1 successful EUR payment(s)")
    assert len(failed) == 2
    stale = widget("globex")
    assert stale["state"] == "stale"
    assert stale["message"].startswith("The reports do not add up with Stripe: The available "
                                       "EUR balance")
    assert money(net, currency) in stale["message"]
    assert "balance_transactions" not in stale["message"]  # no table names for a client
    assert widget("acme")["state"] == "ok"
    assert dagster_verdicts()["globex"] is False and dagster_verdicts()["acme"] is True

    # Named alone, the same; an incremental sync does not bring the row back, so the
    # check run by the sync fails again and the widgets stay stale.
    assert run_cli("reconcile", "acme").returncode == 0
    assert run_cli("reconcile", "globex").returncode == 1
    assert run_cli("sync", "globex").returncode == 0
    assert dagster_verdicts()["globex"] is False
    assert widget("globex")["state"] == "stale"

    # A full refresh lands it again: the check passes and the widgets are current.
    assert run_cli("sync", "globex", "--full-refresh").returncode == 0
    assert dagster_verdicts()["globex"] is True
    assert widget("globex")["state"] == "ok"
    assert run_cli("reconcile", "globex").returncode == 0


def test_reconcile_names_an_unknown_client_and_checks_nothing(home, sandbox_factory):
    server = sandbox_factory(ACCOUNTS[:1])
    key = server.world.accounts["acme"].secret_key
    assert run_cli("connect", "acme", stdin=key + "\n").returncode == 0

    done = run_cli("reconcile", "acmee")

    assert done.returncode == 2
    assert "acme" in done.stderr and "Traceback" not in done.stderr
    # Connected but never synced: nothing to compare yet is no failure.
    never = run_cli("reconcile", "acme")
    assert never.returncode == 0 and never.stdout == "acme: nothing to check (no balance " \
        "synced yet, or the key may not read the balance transactions).\n"


def _judged(warehouse) -> list:
    with warehouse.reader() as conn:
        return reconcile(conn, "acme")


def test_new_payments_refunds_and_another_currency_reconcile_after_the_next_sync(
        tmp_path, sandbox_factory):
    server = sandbox_factory(ACCOUNTS[:1])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    paid = server.world.create_charge("acme", 12_345)
    server.world.create_charge("acme", 5_000, currency="eur")  # held in euros
    server.world.refund_charge("acme", paid["id"], amount=2_345)
    time.sleep(3)  # past the settle window: the next sync lists them

    run_sync(server, "acme", warehouse)

    with warehouse.reader() as conn:
        pending = dict(conn.execute(
            "SELECT currency, pending FROM stripe.balance WHERE client_id = 'acme' "
            "AND captured_at = (SELECT max(captured_at) FROM stripe.balance)").fetchall())
    # The new payments are pending until their available_on, in their own currency.
    assert pending["eur"] == 5_000 - fee_for(server.world.accounts["acme"].ctx, 5_000)
    assert _judged(warehouse) == []


def test_a_payment_made_after_the_listing_but_before_the_balance_read_is_no_failure(
        tmp_path, sandbox_factory):
    """Stripe's in-flight window: the balance counts a payment the sync did not list yet.
    The check judges the latest snapshot the transactions cover, not that one."""
    server = sandbox_factory(ACCOUNTS[:1])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    time.sleep(3)
    run_sync(server, "acme", warehouse)  # its transactions cover the first snapshot
    server.world.create_charge("acme", 40_000)
    time.sleep(1)
    snapshot_balance(account_for(server, "acme"), warehouse)  # counts the new payment

    assert _judged(warehouse) == []
    with warehouse.writer() as conn:  # a real loss is still seen in the covered snapshot
        conn.execute("DELETE FROM stripe.balance_transactions WHERE id = (SELECT min(id) "
                     "FROM stripe.balance_transactions WHERE type = 'payout')")
    assert [m.check for m in _judged(warehouse)] == ["available_balance", "payouts"]
