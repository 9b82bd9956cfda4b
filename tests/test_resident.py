"""`stripe-reports resident` (issue 21: a lone sync in under 2 s): while it runs, a typed
command is run by a forked copy of it, and reads to the user exactly as the command run alone:
the same output, exit code, environment and Ctrl-C. Without it, or once its code changed,
commands run by themselves."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.cli import INTERRUPTED
from sandbox import AccountSpec
from tests.test_cli import CLI, run_cli
from tests.test_interrupted_syncs import (
    CLIENTS,
    answered_listings,
    assert_whole_after_a_new_sync,
    start_sync,
    wait_until_listing,
    widget,
)
from tests.test_interrupted_syncs import synced as synced  # noqa: F401 (a fixture)

SMALL = {"charges": 30, "customers": 6, "subscriptions": 4, "products": 3, "history_days": 40}
ROOT = Path(__file__).resolve().parent.parent


class Resident:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(CLI), "resident"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=os.environ.copy(), cwd=os.environ["STRIPE_REPORTS_HOME"])
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.next_line(timeout=120)
        assert ready.startswith("Resident process ready"), ready

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 30) -> str:
        return self.lines.get(timeout=timeout)

    def log_since(self) -> list[str]:
        """The lines written since the last call (a copy's start and end are two)."""
        time.sleep(0.3)
        lines = []
        while not self.lines.empty():
            lines.append(self.lines.get())
        return lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


@pytest.fixture
def resident(home) -> Iterator[Resident]:
    started = Resident()
    yield started
    started.stop()


def _connected_and_synced(sandbox_factory) -> None:
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    key = server.world.accounts["acme"].secret_key
    assert run_cli("connect", "--bulk", stdin=f"acme\t{key}\n").returncode == 0
    assert run_cli("sync", "acme").returncode == 0


def _as_run(done: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr


COMMANDS = (("sync", "acme"), ("sync", "acm"), ("widget", "acme", "mrr", "--format", "json"),
            ("clients", "--json"))


def test_a_command_run_by_the_resident_process_reads_as_the_command_run_alone(
        home, sandbox_factory, tmp_path):
    _connected_and_synced(sandbox_factory)
    alone = [_as_run(run_cli(*command)) for command in COMMANDS]
    assert alone[0][1].startswith("acme: checked: nothing new") and alone[1][0] == 2

    started = Resident()
    try:
        handed = [_as_run(run_cli(*command)) for command in COMMANDS]
        log = started.log_since()
        # The caller's own environment, not the resident's: another clients.yaml.
        declared = tmp_path / "declared.yaml"
        declared.write_text("clients:\n  globex:\n    key_env: GLOBEX_STRIPE_KEY\n")
        listed = run_cli("clients", "--json",
                         env={"STRIPE_REPORTS_CLIENTS_FILE": str(declared)})
        log += started.log_since()
    finally:
        started.stop()

    assert [(code, err) for code, _, err in handed] == [(code, err) for code, _, err in alone]
    assert [out for _, out, _ in handed[:2]] == [out for _, out, _ in alone[:2]]
    assert json.loads(handed[2][1])["value"] == json.loads(alone[2][1])["value"]
    assert _states(handed[3][1]) == _states(alone[3][1]) == {"acme": "connected"}
    # Each ran in a copy of the resident process, which ended with the command's exit code.
    assert [int(re.search(r": exit (\d+) after", line)[1]) for line in log
            if ": exit " in line] == [0, 2, 0, 0, 0]
    assert listed.returncode == 0, listed.stderr
    assert set(_states(listed.stdout)) == {"acme", "globex"}


def _states(listing: str) -> dict[str, str]:
    return {row["client_id"]: row["state"] for row in json.loads(listing)}


def test_ctrl_c_reaches_the_command_the_resident_process_runs(synced, resident):  # noqa: F811
    server, before = synced
    server.latency_ms = 3000  # a full refresh of minutes: stopped halfway
    before_listing = answered_listings(server)
    sync = start_sync("c1", "c2", "--parallel", "2", "--full-refresh")
    wait_until_listing(server, CLIENTS[:2], before_listing)
    # Only the CLI gets the signal (its own session): the resident passes it on.
    os.kill(sync.pid, signal.SIGINT)
    out, err = sync.communicate(timeout=120)

    assert sync.returncode == 1, out + err
    assert err.strip().splitlines() == [INTERRUPTED], err
    assert "Traceback" not in out + err
    assert any(": exit 1 after" in line for line in resident.log_since())
    for client in CLIENTS[:2]:
        stale = widget(client)
        assert stale["state"] == "stale" and "interrupted" in stale["message"], stale
    assert widget("c3")["state"] == "ok"
    assert_whole_after_a_new_sync(server, before)


def test_a_resident_process_whose_code_changed_runs_nothing_old_and_stops(home, resident):
    loaded = ROOT / "apps" / "terminal.py"
    before = loaded.stat()
    try:
        os.utime(loaded, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        done = run_cli("clients")  # run by itself, on the code as it is now

        assert done.returncode == 0, done.stderr
        assert resident.process.wait(timeout=30) == 0
        assert any("code changed" in line for line in resident.log_since())
    finally:
        os.utime(loaded, ns=(before.st_atime_ns, before.st_mtime_ns))
