"""The Stripe → DuckDB sync against our sandbox, through the official SDK over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.streams import STREAMS, STREAMS_BY_NAME
from engine.sync import SETTLE_SECONDS
from engine.warehouse import read_state, save_state
from sandbox import AccountSpec
from tests.sync_helpers import (
    account_for,
    as_kept,
    duplicate_count,
    new_warehouse,
    run_sync,
    source_objects,
    warehouse_rows,
)

ROOT = Path(__file__).resolve().parent.parent


def settle() -> None:
    """Let changes age past the settle window: a sync takes only what is seconds old."""
    time.sleep(SETTLE_SECONDS + 1)


def assert_matches_source(server, name: str, warehouse, client_id: str | None = None) -> None:
    client_id = client_id or name
    for spec in STREAMS:
        source = source_objects(server, name, spec)
        rows = warehouse_rows(warehouse, spec.table, client_id)
        live = {i: r for i, r in rows.items() if not r["is_deleted"]}
        assert set(live) == set(source), f"{spec.table}: ids differ from Stripe's list"
        for object_id, obj in source.items():
            assert live[object_id]["raw"] == as_kept(spec, obj), \
                f"{spec.table} {object_id} differs"
        assert duplicate_count(warehouse, spec.table) == 0


def test_first_sync_lands_every_object_exactly(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=1500, customers=60)])
    warehouse = new_warehouse(tmp_path)
    report = run_sync(server, "acme", warehouse)
    assert not report.errors
    assert report.streams["charges"].inserted == 1500
    assert report.streams["charges"].full_refresh_reason == "first sync"
    assert_matches_source(server, "acme", warehouse)
    with warehouse.reader() as conn:
        items = conn.execute("SELECT count(*) FROM stripe.subscription_items").fetchone()[0]
        currencies = conn.execute("SELECT count(*) FROM stripe.balance").fetchone()[0]
        created_type = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'charges' AND column_name = 'created'").fetchone()[0]
    assert items > 0 and currencies > 0
    assert created_type == "TIMESTAMP WITH TIME ZONE"


def test_resync_without_changes_makes_four_requests_whatever_the_size(sandbox_factory, tmp_path):
    """A client with nothing new: the key check, one events listing for every stream, the
    balance transactions since the cursor (they have no events) and the balance."""
    small = sandbox_factory([AccountSpec("small", charges=200)], seed=3)
    big = sandbox_factory([AccountSpec("big", charges=3000)], seed=4)
    for server, name in ((small, "small"), (big, "big")):
        warehouse = new_warehouse(tmp_path / name)
        run_sync(server, name, warehouse)
        server.reset_stats()
        report = run_sync(server, name, warehouse)
        assert all(r.rows_landed == 0 for r in report.streams.values())
        paths = sorted(path for (_, path), n in server.stats()["by_account_path"].items()
                       for _ in range(n))
        assert paths == ["/v1/account", "/v1/balance", "/v1/balance_transactions",
                         "/v1/events"], name
        assert report.requests == 4


def test_changes_and_deletions_arrive_through_events(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=400, customers=30)])
    world = server.world
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)

    charges = source_objects(server, "acme", STREAMS_BY_NAME["charges"])
    refundable = next(c for c in charges.values()
                      if c["status"] == "succeeded" and not c["refunded"])
    subscriptions = source_objects(server, "acme", STREAMS_BY_NAME["subscriptions"])
    active = next(s for s in subscriptions.values() if s["status"] == "active")
    customers = sorted(source_objects(server, "acme", STREAMS_BY_NAME["customers"]))
    world.refund_charge("acme", refundable["id"])
    world.cancel_subscription("acme", active["id"])
    world.delete_customer("acme", customers[0])
    world.update_customer("acme", customers[1], email="renamed@example.com")
    world.add_charges("acme", 25)
    settle()

    report = run_sync(server, "acme", warehouse)
    assert report.streams["charges"].inserted == 25
    assert report.streams["refunds"].inserted == 1
    assert report.streams["customers"].deleted == 1
    charge = warehouse_rows(warehouse, "charges", "acme")[refundable["id"]]["raw"]
    assert charge["refunded"] is True and charge["amount_refunded"] == charge["amount"]
    subscription = warehouse_rows(warehouse, "subscriptions", "acme")[active["id"]]["raw"]
    assert subscription["status"] == "canceled"
    customers_rows = warehouse_rows(warehouse, "customers", "acme")
    assert customers_rows[customers[0]]["is_deleted"] is True
    assert customers_rows[customers[1]]["raw"]["email"] == "renamed@example.com"
    assert_matches_source(server, "acme", warehouse)


def test_objects_new_to_an_empty_table_and_already_changed_land_once(sandbox_factory, tmp_path):
    """A first listing into an empty table skips looking for rows to replace; an object
    that is both new (listed) and changed (its event applied just before) must not land
    twice."""
    server = sandbox_factory([AccountSpec("acme", charges=0, customers=5)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    assert warehouse_rows(warehouse, "charges", "acme") == {}
    server.world.add_charges("acme", 30)
    charges = source_objects(server, "acme", STREAMS_BY_NAME["charges"])
    refunded = next(c for c in charges.values() if c["status"] == "succeeded")
    server.world.refund_charge("acme", refunded["id"])
    settle()

    report = run_sync(server, "acme", warehouse)

    assert report.streams["charges"].events_applied >= 1
    assert report.streams["charges"].rows_landed == 30 + report.streams["charges"].updated
    rows = warehouse_rows(warehouse, "charges", "acme")
    assert len(rows) == 30 and rows[refunded["id"]]["raw"]["refunded"] is True
    assert_matches_source(server, "acme", warehouse)


def test_a_second_run_of_a_client_waits_for_the_first_and_lands_nothing_twice(
        sandbox_factory, tmp_path, monkeypatch):
    """Two runs of one client at once (a CLI sync beside a scheduled run): the second
    waits, says why, then runs incrementally on what the first landed."""
    import threading

    import engine.sync
    from engine.sync import sync_client

    server = sandbox_factory([AccountSpec("acme", charges=600)])
    warehouse = new_warehouse(tmp_path)
    listing = engine.sync.extract_window
    waiting, second = threading.Event(), []

    def second_run() -> None:
        second.append(sync_client(account_for(server, "acme"), warehouse,
                                  [STREAMS_BY_NAME["charges"]], include_balance=False,
                                  on_wait=lambda message: (second.append(message),
                                                           waiting.set())))

    def listing_once_a_second_run_started(account, endpoint, *args, **kwargs):
        if endpoint == "/v1/charges" and not second:
            threading.Thread(target=second_run, daemon=True).start()
            assert waiting.wait(10), "the second run did not wait for the first"
        return listing(account, endpoint, *args, **kwargs)

    monkeypatch.setattr(engine.sync, "extract_window", listing_once_a_second_run_started)
    report = run_sync(server, "acme", warehouse)
    deadline = time.monotonic() + 60
    while len(second) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert "Another sync of client 'acme' is running" in second[0]
    assert report.streams["charges"].inserted == 600
    assert second[1].streams["charges"].inserted == 0
    assert second[1].streams["charges"].full_refresh_reason is None
    assert_matches_source(server, "acme", warehouse)


def test_cursor_older_than_event_retention_refreshes_in_full(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=300, customers=20)])
    warehouse = new_warehouse(tmp_path)
    run_sync(server, "acme", warehouse)
    old = int((datetime.now(UTC) - timedelta(days=40)).timestamp())
    with warehouse.writer() as conn:
        state = read_state(conn, "acme", "customers")
        state.events_cursor = old
        save_state(conn, state)
    # Deleted while we were not looking, and its event is beyond what we will read.
    gone = sorted(source_objects(server, "acme", STREAMS_BY_NAME["customers"]))[0]
    server.world.delete_customer("acme", gone)
    settle()
    report = run_sync(server, "acme", warehouse)
    customers = report.streams["customers"]
    assert customers.full_refresh_reason == (
        "last sync is older than the 30 days of events Stripe keeps")
    assert customers.deleted == 1
    assert warehouse_rows(warehouse, "customers", "acme")[gone]["is_deleted"] is True
    assert report.streams["charges"].full_refresh_reason is None


def test_every_stripe_example_object_loads(tmp_path):
    """Stripe's own example of each object (fixtures3.json), nested fields and nulls included,
    in a list body indented the way api.stripe.com sends it."""
    import orjson

    from engine.child_pages import batch_of_raw
    from engine.stripe_api import ListPage
    from engine.warehouse import merge_rows

    examples = json.loads((ROOT / "sandbox/data/fixtures3.json").read_text())["resources"]
    warehouse = new_warehouse(tmp_path)
    now = datetime.now(UTC)
    with warehouse.writer() as conn:
        for spec in STREAMS:
            body = orjson.dumps({"object": "list", "data": [examples[spec.object_type]],
                                 "has_more": False, "url": spec.endpoint},
                                option=orjson.OPT_INDENT_2)
            page = ListPage.from_body(body)
            assert page.last_id == examples[spec.object_type]["id"] and not page.has_more
            merge_rows(conn, spec, batch_of_raw("c1", spec, page.raw_objects, now))
        for spec in STREAMS:
            row = conn.execute(f"SELECT id, raw FROM stripe.{spec.table}").fetchone()
            assert row[0] == examples[spec.object_type]["id"]
            assert json.loads(row[1]) == as_kept(spec, examples[spec.object_type])
        charge = conn.execute(
            "SELECT amount, created, customer FROM stripe.charges").fetchone()
        assert charge[0] == examples["charge"]["amount"]
        assert charge[1] == datetime.fromtimestamp(examples["charge"]["created"], UTC)
        item = conn.execute(
            "SELECT subscription, price, interval FROM stripe.subscription_items").fetchone()
        assert item == (examples["subscription"]["id"],
                        examples["subscription"]["items"]["data"][0]["price"]["id"], "month")


def test_rate_limit_storm_is_ridden_out(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=600)], rate_limit_rps=15,
                             send_should_retry=False)
    server.inject_faults("acme", 5, kind="429")  # a storm at the start, whatever the timing
    warehouse = new_warehouse(tmp_path)
    account = account_for(server, "acme", requests_per_second=400)
    from engine.sync import sync_client

    report = sync_client(account, warehouse, STREAMS)
    assert not report.errors
    assert account.limiter.throttled >= 5
    assert server.stats()["by_status"].get(429, 0) >= 5
    server.configure(rate_limit_rps=None)  # so the test's own reads of the source get through
    assert_matches_source(server, "acme", warehouse)


KILL_SCRIPT = """
import sys
from sandbox import SandboxWorld, AccountSpec
from engine.stripe_api import StripeAccount
from engine.warehouse_factory import open_warehouse
from engine.sync import sync_client
from engine.streams import STREAMS
base, key, path = sys.argv[1:4]
account = StripeAccount("acme", key, api_base=base, requests_per_second=2000)
sync_client(account, open_warehouse(path), STREAMS, concurrency=4, chunk_rows=300)
"""


def test_a_sync_killed_halfway_resumes_without_gaps_or_duplicates(sandbox_factory, tmp_path):
    server = sandbox_factory([AccountSpec("acme", charges=20000)], latency_ms=150)
    warehouse = new_warehouse(tmp_path)
    key = server.world.accounts["acme"].secret_key
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, server.base_url, key, str(warehouse.path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    landed = 0
    while time.monotonic() < deadline and landed < 600:
        time.sleep(0.05)
        if warehouse.path.exists():
            with warehouse.reader() as conn:
                landed = conn.execute("SELECT count(*) FROM stripe.charges").fetchone()[0]
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < landed < 20000, "the kill should land mid-sync"
    server.configure(latency_ms=0)  # the resume need not be slow

    run_sync(server, "acme", warehouse)
    assert_matches_source(server, "acme", warehouse)
