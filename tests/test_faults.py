"""Syncs through a seeded fault proxy: every transient fault is retried per request, and
full, incremental, killed and concurrent syncs end with the warehouse equal to the source."""

from __future__ import annotations

import inspect
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import stripe

from engine.failures import TransientStripeError
from engine.pager import extract_window
from engine.streams import STREAMS, STREAMS_BY_NAME
from engine.stripe_api import StripeAccount
from engine.sync import SETTLE_SECONDS, sync_client
from engine.warehouse import read_state
from sandbox import AccountSpec
from tests.fault_proxy import FAULT_KINDS, FaultProxy
from tests.sync_helpers import compare_with_source, new_warehouse, source_objects

ROOT = Path(__file__).resolve().parent.parent
SEED = 9
# Short enough that a "slow" fault is a timeout, long enough for a loaded 2-core machine.
TIMEOUT = 0.75
SLOW = 1.0


@pytest.fixture
def faulty(sandbox_factory):
    """Start a sandbox and a fault proxy in front of it: (server, proxy)."""
    proxies: list[FaultProxy] = []

    def start(specs, *, seed: int = SEED, rate: float = 0.0, **knobs):
        server = sandbox_factory(specs, seed=seed)
        proxy = FaultProxy(server.base_url, seed=seed, rate=rate, slow_seconds=SLOW,
                           **knobs).start()
        proxies.append(proxy)
        return server, proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def account_via(proxy: FaultProxy, server, name: str, **kwargs) -> StripeAccount:
    kwargs = {"requests_per_second": 2000, "timeout": TIMEOUT, "retry_seconds": 60, **kwargs}
    return StripeAccount(name, server.world.accounts[name].secret_key,
                         api_base=proxy.base_url, **kwargs)


def settle() -> None:
    time.sleep(SETTLE_SECONDS + 1)


# -- one request at a time ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_transient_fault_is_retried_until_the_request_succeeds(faulty, kind):
    server, proxy = faulty([AccountSpec("acme", charges=150)], retry_after=0)
    clean = account_via(proxy, server, "acme")
    page = clean.get_page("/v1/charges", {"limit": 100})
    balance = clean.get("/v1/balance")
    account = account_via(proxy, server, "acme")

    proxy.script([kind] * 3)  # more in a row than the SDK's own two retries
    assert account.get_page("/v1/charges", {"limit": 100}) == page
    proxy.script([kind])
    assert account.get("/v1/balance") == balance

    assert proxy.injected[kind] == 4
    assert account.requests == 6  # every attempt is paced and counted


@pytest.mark.parametrize("method", ["get_page", "get"])
def test_a_fault_that_outlasts_the_budget_is_one_clear_transient_error(faulty, method):
    server, proxy = faulty([AccountSpec("acme", charges=10)], rate=1.0, kinds=["not_json"])
    account = account_via(proxy, server, "acme", retry_seconds=1.5)
    started = time.monotonic()

    with pytest.raises(TransientStripeError) as caught:
        getattr(account, method)("/v1/charges", {"limit": 10})

    error = caught.value
    assert 1.5 <= time.monotonic() - started < 6
    assert proxy.injected["not_json"] >= 3
    assert str(error).startswith("Stripe kept answering /v1/charges with a malformed "
                                 "response for client 'acme' (200); the key was not marked "
                                 "failed. Tried ")
    assert "(retry budget 2 s, STRIPE_REPORTS_RETRY_SECONDS)" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # no raw decode error shown


def test_a_429_waits_at_least_its_retry_after_and_slows_the_pacer(faulty):
    server, proxy = faulty([AccountSpec("acme", charges=10)], retry_after=1)
    account = account_via(proxy, server, "acme")
    proxy.script(["429", "429"])
    started = time.monotonic()

    assert account.get("/v1/balance")["object"] == "balance"
    assert time.monotonic() - started >= 2.0
    assert account.limiter.throttled == 2 and account.limiter.rate < account.limiter.ceiling


def test_the_private_sdk_calls_we_rely_on_keep_their_shape(faulty):
    """The fast path hands page bytes to msgspec through two private SDK calls (the public
    `raw_request` decodes every page into dicts first). If an SDK upgrade changes either
    call, this fails, rather than syncs."""
    server, proxy = faulty([AccountSpec("acme", charges=10)])
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.base_url})
    requestor = client._requestor
    inspect.signature(requestor.request_raw).bind(
        "get", "/v1/charges", params={}, base_address="api", api_mode="V1", usage=["x"])
    inspect.signature(requestor._interpret_response).bind(b"{}", 500, {}, "V1")
    for status, expected in ((401, stripe.AuthenticationError), (403, stripe.PermissionError),
                             (429, stripe.RateLimitError), (500, stripe.APIError)):
        body = b'{"error": {"type": "api_error", "message": "m"}}'
        with pytest.raises(expected):
            requestor._interpret_response(body, status, {}, "V1")
    account = account_via(proxy, server, "acme")
    account._client.raw_request = None  # the slow public path must not be the one taken
    assert len(account.get_page("/v1/charges", {"limit": 5}).raw_objects) == 5


def test_a_request_that_fails_for_good_loses_none_of_the_pages_fetched_beside_it(faulty):
    """The oldest time slice of a listing keeps failing; the pages the other slices fetched
    meanwhile, in flight when it gave up included, all reach the caller before the error."""
    server, proxy = faulty([AccountSpec("acme", charges=4000)])
    server.configure(latency_ms=50)  # the other slices are still busy when it gives up
    lo, hi = 1_500_000_000, int(time.time())
    first_pages: list[str] = []

    def oldest_slice_fails(target: str) -> str | None:
        query = unquote(target)
        if f"created[gte]={lo}&" in query and "starting_after" not in query:
            first_pages.append(target)
            return "not_json" if len(first_pages) > 1 else None  # all but the window's first
        return None

    proxy.rule = oldest_slice_fails
    account = account_via(proxy, server, "acme", retry_seconds=0.2)
    pages = []
    with pytest.raises(TransientStripeError):
        for page in extract_window(account, "/v1/charges", {}, lo, hi, concurrency=6):
            pages.append(page)
    time.sleep(0.3)  # fetches still under way, if any, get their answer

    assert proxy.injected["not_json"] >= 2
    assert len(pages) == proxy.answered["/v1/charges"] > 6


# -- whole syncs under faults ------------------------------------------------------------------


def mutate(server, name: str, rng: random.Random) -> set[str]:
    """A seeded mix of changes (refunds, cancellations, deleted and updated customers, new
    charges), read from and made in the sandbox directly; returns the deleted ids."""
    world = server.world

    def listed(stream: str) -> list[dict]:
        objects = source_objects(server, name, STREAMS_BY_NAME[stream])
        return [objects[i] for i in sorted(objects)]

    charges = [c["id"] for c in listed("charges") if c["status"] == "succeeded"
               and not c["refunded"]]
    subscriptions = [s["id"] for s in listed("subscriptions") if s["status"] == "active"]
    customers = [c["id"] for c in listed("customers")]
    for charge in rng.sample(charges, 3):
        world.refund_charge(name, charge, amount=rng.choice([None, 100]))
    cancel, at_period_end = rng.sample(subscriptions, 2)
    world.cancel_subscription(name, cancel)
    world.set_cancel_at_period_end(name, at_period_end, True)
    gone = set(rng.sample(customers, 2))
    for customer in gone:
        world.delete_customer(name, customer)
    world.update_customer(name, rng.choice(sorted(set(customers) - gone)),
                          email=f"renamed{rng.randrange(1000)}@example.com")
    world.add_charges(name, rng.randrange(10, 40))
    world.create_charge(name, 123_456, status="succeeded")
    return gone


def test_full_then_incremental_syncs_under_fifteen_percent_faults_end_exact(faulty, tmp_path):
    # 15 %: enough faults in three syncs that every kind, wrong shapes included, is met.
    server, proxy = faulty([AccountSpec("acme", charges=1500, customers=80, subscriptions=60)],
                           rate=0.15)
    warehouse = new_warehouse(tmp_path)
    rng = random.Random(SEED)
    deleted: set[str] = set()

    for round_ in range(2):
        report = sync_client(account_via(proxy, server, "acme"), warehouse, STREAMS)
        assert not report.errors, f"round {round_}: {report.errors}"
        assert compare_with_source(server, "acme", warehouse, deleted=deleted) == []
        deleted |= mutate(server, "acme", rng)
        settle()

    report = sync_client(account_via(proxy, server, "acme"), warehouse, STREAMS)
    assert not report.errors
    assert compare_with_source(server, "acme", warehouse, deleted=deleted) == []
    assert set(proxy.injected) == set(FAULT_KINDS), proxy.injected  # every kind was met


SYNC_SCRIPT = """
import sys
from engine.stripe_api import StripeAccount
from engine.warehouse import read_state
from engine.warehouse_factory import open_warehouse
from engine.sync import sync_client
from engine.streams import STREAMS
base, client_id, key, path, timeout = sys.argv[1:6]
account = StripeAccount(client_id, key, api_base=base, requests_per_second=2000,
                        timeout=float(timeout), retry_seconds=60)
report = sync_client(account, open_warehouse(path), STREAMS, concurrency=4, chunk_rows=300)
sys.exit(1 if report.errors else 0)
"""


def start_sync(proxy: FaultProxy, server, name: str, warehouse) -> subprocess.Popen:
    key = server.world.accounts[name].secret_key
    return subprocess.Popen(
        [sys.executable, "-c", SYNC_SCRIPT, proxy.base_url, name, key, str(warehouse.path),
         str(TIMEOUT)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_syncs_killed_at_seeded_random_points_resume_exact(faulty, tmp_path):
    server, proxy = faulty([AccountSpec("acme", charges=6000, customers=150)], rate=0.10)
    server.configure(latency_ms=15)  # a sync long enough to be killed inside
    warehouse = new_warehouse(tmp_path)
    rng = random.Random(SEED)
    deleted: set[str] = set()
    killed_running = 0

    for _ in range(3):
        child = start_sync(proxy, server, "acme", warehouse)
        time.sleep(rng.uniform(0.8, 2.5))  # imports take about a second
        killed_running += child.poll() is None
        child.send_signal(signal.SIGKILL)
        child.wait()
        deleted |= mutate(server, "acme", rng)  # changes while no sync runs
    settle()

    assert killed_running, "at least one kill should land while the sync runs"
    server.configure(latency_ms=0)
    report = sync_client(account_via(proxy, server, "acme"), warehouse, STREAMS)
    assert not report.errors
    assert compare_with_source(server, "acme", warehouse, deleted=deleted) == []


def test_concurrent_syncs_of_different_clients_under_faults_end_exact(faulty, tmp_path):
    names = ("north", "south", "east")
    # 15 %: a client with little new now costs few requests (one events listing for all
    # its streams), and the faults must still reach 20.
    server, proxy = faulty([AccountSpec(n, charges=900, customers=50) for n in names],
                           rate=0.15)
    warehouse = new_warehouse(tmp_path)
    rng = random.Random(SEED)
    deleted = {name: set() for name in names}

    for round_ in range(2):
        if round_:  # changes in every account, then an incremental sync of all at once
            for name in names:
                deleted[name] |= mutate(server, name, rng)
            settle()
        children = [start_sync(proxy, server, name, warehouse) for name in names]
        assert [child.wait(timeout=90) for child in children] == [0, 0, 0]
        for name in names:
            assert compare_with_source(server, name, warehouse, deleted=deleted[name]) == []
    assert sum(proxy.injected.values()) >= 20


def test_changes_to_rows_an_interrupted_run_landed_reach_the_resumed_run(faulty, tmp_path):
    """Stripe fails for longer than the retry budget halfway through a first listing; the
    rows already landed change in Stripe; the next sync resumes the listing, and must
    still bring those changes."""
    server, proxy = faulty([AccountSpec("acme", charges=4000, customers=40)])
    warehouse = new_warehouse(tmp_path)
    lo = account_via(proxy, server, "acme").get("/v1/account")["created"]

    def only_the_oldest_slice_gets_through(target: str) -> str | None:
        listing = target.startswith("/v1/charges")
        return "503" if listing and f"created[gte]={lo}&" not in unquote(target) else None

    proxy.rule = only_the_oldest_slice_gets_through
    account = account_via(proxy, server, "acme", retry_seconds=1)
    report = sync_client(account, warehouse, [STREAMS_BY_NAME["charges"]], concurrency=4,
                         include_balance=False)
    assert isinstance(report.streams["charges"].error, TransientStripeError)
    with warehouse.reader() as conn:
        cursor = read_state(conn, "acme", "charges").created_cursor
        landed = [row[0] for row in conn.execute(
            "SELECT id FROM stripe.charges WHERE epoch(created) < ? AND status = 'succeeded' "
            "ORDER BY id", [cursor]).fetchall()]
    assert len(landed) >= 50, "the outage should come after a stretch has completely landed"
    proxy.rule = None
    for charge in random.Random(SEED).sample(landed, 5):
        server.world.refund_charge("acme", charge)
    settle()

    charges = [STREAMS_BY_NAME["charges"]]
    report = sync_client(account_via(proxy, server, "acme"), warehouse, charges,
                         include_balance=False)
    assert not report.errors
    assert compare_with_source(server, "acme", warehouse, streams=charges) == []
