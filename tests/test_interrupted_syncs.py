"""A sync that ends in any way but success (Ctrl-C, kill -9 of the CLI, a pool worker killed)
leaves the figures built before it `stale`, never `ok`; one client's end never fails another,
and the data is whole: the next sync lands exactly what Stripe holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from apps.cli import INTERRUPTED
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from sandbox import AccountSpec
from tests.sync_helpers import compare_with_source
from tests.test_credentials import CLI, run_cli

CLIENTS = ("c1", "c2", "c3")


def widget(client: str) -> dict:
    done = run_cli("widget", client, "gross_volume", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start_sync(*args: str) -> subprocess.Popen:
    """The CLI as a terminal's foreground job starts: Ctrl-C not ignored. A test run started
    in the background of a script inherits SIGINT ignored, and its workers kept it so."""
    return subprocess.Popen([str(CLI), "sync", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                            cwd=os.environ["STRIPE_REPORTS_HOME"], start_new_session=True,
                            preexec_fn=_ctrl_c_not_ignored)


def _ctrl_c_not_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def answered_listings(server) -> Counter[str]:
    """Listing requests the sandbox has answered, per account (the account and balance come
    before a sync's start is recorded; a listing comes after)."""
    answered: Counter[str] = Counter()
    for (account_id, path), count in server.stats()["by_account_path"].items():
        if path not in ("/v1/account", "/v1/balance"):
            answered[account_id] += count
    return answered


def wait_until_listing(server, clients: tuple[str, ...], before: Counter[str],
                       timeout: float = 120) -> None:
    """Until every client's sync has had a listing answered since `before`: its start is
    recorded and it is halfway. Read from the sandbox, not the warehouse, whose readers queue
    behind the syncs' writes: on a loaded machine that wait outlasted the syncs."""
    accounts = {client: server.world.accounts[client].account_id for client in clients}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answered = answered_listings(server)
        if all(answered[account] > before[account] for account in accounts.values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"the syncs of {', '.join(clients)} did not list in {timeout} s")


@pytest.fixture
def synced(home, sandbox_factory):
    """Three clients connected and synced once (figures `ok`), then a slow Stripe."""
    server = sandbox_factory([AccountSpec(c, charges=800) for c in CLIENTS])
    lines = [f"{c}\t{server.world.accounts[c].secret_key}\n" for c in CLIENTS]
    assert run_cli("connect", "--bulk", stdin="".join(lines)).returncode == 0
    done = run_cli("sync", *CLIENTS, "--parallel", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    before = {client: widget(client) for client in CLIENTS}
    assert all(w["state"] == "ok" for w in before.values()), before
    server.latency_ms = 1000  # a full refresh of seconds: stopped halfway
    return server, before


def assert_whole_after_a_new_sync(server, before: dict) -> None:
    server.latency_ms = 0
    done = run_cli("sync", *CLIENTS)
    assert done.returncode == 0, done.stdout + done.stderr
    for client in CLIENTS:
        assert compare_with_source(server, client, warehouse_from_settings()) == []
        after = widget(client)
        assert after["state"] == "ok" and after["value"] == before[client]["value"], after


def test_ctrl_c_during_a_sync_says_so_in_one_line_and_its_figures_turn_stale(synced):
    server, before = synced
    before_listing = answered_listings(server)
    sync = start_sync("c1", "--full-refresh")
    wait_until_listing(server, ("c1",), before_listing)
    assert sync.poll() is None
    os.kill(sync.pid, signal.SIGINT)
    out, err = sync.communicate(timeout=60)

    assert sync.returncode == 1, out + err
    assert err.strip().splitlines() == [INTERRUPTED], err
    assert "Traceback" not in out + err
    stale = widget("c1")
    assert stale["state"] == "stale" and "interrupted" in stale["message"], stale
    assert widget("c2")["state"] == "ok"
    assert_whole_after_a_new_sync(server, before)


def test_kill_9_of_the_cli_during_a_sync_turns_its_figures_stale(synced):
    server, before = synced
    before_listing = answered_listings(server)
    sync = start_sync("c1", "--full-refresh")
    wait_until_listing(server, ("c1",), before_listing)
    assert run_widget("c1", "gross_volume").state == "ok"  # merely running: not stale
    assert sync.poll() is None
    os.killpg(sync.pid, signal.SIGKILL)
    sync.communicate(timeout=30)

    stale = widget("c1")
    assert stale["state"] == "stale" and "is gone" in stale["message"], stale
    assert widget("c2")["state"] == "ok"
    assert_whole_after_a_new_sync(server, before)


def _worker_of(parent: int, client: str, timeout: float = 120) -> int:
    """The pid of the parent's worker process syncing `client` (its Dagster run's pid tag)."""
    from dagster import DagsterRunStatus, RunsFilter

    from pipelines.instance import get_instance
    from pipelines.run_health import PID_TAG

    instance = get_instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED],
                                                tags={"dagster/partition": client})):
            pid = int(run.tags[PID_TAG])
            if pid != parent:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no worker started syncing {client}")


def test_one_killed_pool_worker_fails_its_own_client_only(synced):
    server, before = synced
    before_listing = answered_listings(server)
    sync = start_sync(*CLIENTS, "--parallel", "3", "--full-refresh")
    worker = _worker_of(sync.pid, "c1")
    wait_until_listing(server, ("c1",), before_listing)
    assert sync.poll() is None
    os.kill(worker, signal.SIGKILL)
    server.latency_ms = 0
    out, err = sync.communicate(timeout=300)

    assert sync.returncode == 1, out + err
    assert "c2: synced" in out and "c3: synced" in out, out
    assert "c1: FAILED" in out and "terminated abruptly" not in out + err, out + err
    assert "Traceback" not in out + err
    stale = widget("c1")
    assert stale["state"] == "stale" and "is gone" in stale["message"], stale
    assert widget("c2")["state"] == widget("c3")["state"] == "ok"
    assert_whole_after_a_new_sync(server, before)


def test_a_sync_still_running_is_not_shown_stale(synced):
    server, _ = synced
    before_listing = answered_listings(server)
    sync = start_sync("c1", "--full-refresh")
    wait_until_listing(server, ("c1",), before_listing)
    assert sync.poll() is None
    assert run_widget("c1", "gross_volume").state == "ok"
    server.latency_ms = 0
    assert sync.wait(timeout=180) == 0
    assert widget("c1")["state"] == "ok"


def test_the_start_record_names_a_live_process_only(tmp_path: Path):
    """A reused pid (another start time) or a reaped one is a gone process."""
    from engine.processes import process_gone, this_process

    me = this_process()
    assert not process_gone(me)
    host, pid, start = me.rsplit(":", 2)
    assert process_gone(f"{host}:{pid}:{int(start) + 1}")
    done = subprocess.Popen(["true"])
    done.wait()
    assert process_gone(f"{host}:{done.pid}:0")
    assert not process_gone(f"another-host:{done.pid}:0")


def test_ctrl_c_on_a_parallel_sync_stops_every_worker_in_one_line(synced):
    """Ctrl-C at a terminal reaches the whole process group: the workers' syncs stop and
    record it, and no worker reports a lost progress queue ("ConnectionRefusedError")."""
    server, before = synced
    # Slower still, so no sync has finished when the last has listed (at 1 s a request the
    # pager's side-by-side pages let a busy CI machine's syncs end first).
    server.latency_ms = 3000
    before_listing = answered_listings(server)
    sync = start_sync(*CLIENTS, "--parallel", "3", "--full-refresh")
    wait_until_listing(server, CLIENTS, before_listing)
    os.killpg(sync.pid, signal.SIGINT)
    out, err = sync.communicate(timeout=120)

    assert sync.returncode == 1, out + err
    assert err.strip().splitlines() == [INTERRUPTED], err
    assert "Traceback" not in out + err and "Connection" not in out + err
    for client in CLIENTS:
        stale = widget(client)
        assert stale["state"] == "stale" and "interrupted" in stale["message"], stale
    assert_whole_after_a_new_sync(server, before)


def test_ctrl_c_on_a_lone_sync_at_a_terminal_prints_one_line_and_no_traceback(synced):
    """The terminal sends SIGINT to the whole foreground group: the CLI and whatever its
    Dagster run started. Nothing but the one line reaches the screen (per-step stdout capture
    used to start `tail` and watcher processes that printed KeyboardInterrupt tracebacks)."""
    server, before = synced
    before_listing = answered_listings(server)
    sync = start_sync("c1", "--full-refresh")
    wait_until_listing(server, ("c1",), before_listing)
    os.killpg(sync.pid, signal.SIGINT)
    out, err = sync.communicate(timeout=120)

    assert sync.returncode == 1, out + err
    assert err.strip().splitlines()[-1] == INTERRUPTED, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert widget("c1")["state"] == "stale"
    assert_whole_after_a_new_sync(server, before)
