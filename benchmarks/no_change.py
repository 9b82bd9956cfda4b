"""A lone `stripe-reports sync CLIENT` with nothing new: wall time and Stripe requests.

    .venv/bin/python -m benchmarks.no_change [--charges 20000] [--repeat 5] [--code DIR]
                                              [--resident]

One live-mode account (20,000 charges, all streams) in the sandbox's own process, connected
and synced once; then the sandbox answers at 150 ms a request (100 requests/s, as Stripe)
and each figure is a no-change `stripe-reports sync CLIENT` in a fresh process: wall time
end to end (interpreter start, imports, the Dagster run, the sync), its CPU time (user +
system: on a shared machine, wall time grows with the load, CPU time much less; on a quiet
one, wall is about CPU plus the two Stripe round trips), the requests the sandbox served
for the account (its own count), and the runs and events it stored in Dagster (a client
with nothing new is recorded as checked without a run: apps/launch.py).
`--resident` first starts `stripe-reports resident` (apps/resident.py), so each sync is run
by a copy of that process: the wall time is still the typed command's, end to end, but its
CPU time is then the caller's alone (the copy is not the benchmark's child).
`--code DIR` runs the CLI of another checkout (to measure before and after on the same
machine). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.progress import say
from benchmarks.sandbox_process import BenchAccount, SandboxProcess

LATENCY_MS = 150
RATE_LIMIT_RPS = 100


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(code: Path, *args: str, stdin: str = "") -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one CLI command."""
    cpu = _cpu_of_children()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "apps.cli", *args], input=stdin, cwd=code,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"stripe-reports {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, _cpu_of_children() - cpu


def _dagster_records() -> tuple[int, int]:
    """Runs and events stored so far in the Dagster instance's SQLite files (DAGSTER_HOME):
    the run shards and the index, where observations made without a run are kept."""
    history = Path(os.environ["DAGSTER_HOME"]) / "history"
    with sqlite3.connect(history / "runs.db") as runs_db:
        runs = runs_db.execute("SELECT count(*) FROM runs").fetchone()[0]
    events = 0
    for shard in (history / "runs").glob("*.db"):
        with sqlite3.connect(shard) as events_db:
            events += events_db.execute("SELECT count(*) FROM event_logs").fetchone()[0]
    return runs, events


class _Resident:
    """`stripe-reports resident`, and the CPU seconds of each copy it ran (from its log)."""

    def __init__(self, code: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "apps.cli", "resident"],
                                        cwd=code, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        ready = self.process.stdout.readline()  # type: ignore[union-attr]
        if not ready.startswith("Resident process ready"):
            raise SystemExit(f"stripe-reports resident did not start: {ready}")
        say(ready.strip())

    def cpu_of_last_copy(self) -> float:
        """Read the log up to the copy's end: `pid N: exit 0 after 0.91 s (0.62 s CPU)`."""
        for line in self.process.stdout:  # type: ignore[union-attr]
            ended = re.search(r": exit \d+ after .* \(([\d.]+) s CPU\)", line)
            if ended:
                return float(ended[1])
        raise SystemExit("stripe-reports resident ended")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def measure(charges: int, repeat: int, code: Path, resident: bool = False) -> dict:
    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="no-change-"))
    os.environ.update({"STRIPE_REPORTS_HOME": str(work / "home"),
                       "DAGSTER_HOME": str(work / "home" / "dagster_home"),
                       "STRIPE_REPORTS_SECRET": "no-change-benchmark-passphrase",
                       "STRIPE_REPORTS_CLIENTS_FILE": str(work / "clients.yaml")})
    (work / "clients.yaml").write_text("clients: {}\n")
    name = "acme"
    with SandboxProcess([BenchAccount(name, charges=charges)], work) as sandbox:
        os.environ["STRIPE_API_BASE"] = sandbox.base_url
        _cli(code, "connect", "--bulk", stdin=f"{name}\t{sandbox.accounts[name].secret_key}\n")
        say(f"first sync of {charges:,} charges, all streams")
        first, _ = _cli(code, "sync", name)
        sandbox.configure(LATENCY_MS, RATE_LIMIT_RPS)
        time.sleep(3)  # past the sync's settle window: nothing is new
        resident_process = _Resident(code) if resident else None
        walls, cpus, copy_cpus, requests, runs, events = [], [], [], [], [], []
        try:
            for _ in range(repeat):
                sandbox.configure(LATENCY_MS, RATE_LIMIT_RPS)  # also resets the request count
                runs_before, events_before = _dagster_records()
                wall, cpu = _cli(code, "sync", name)
                runs_after, events_after = _dagster_records()
                walls.append(wall)
                cpus.append(cpu)
                if resident_process is not None:
                    copy_cpus.append(resident_process.cpu_of_last_copy())
                requests.append(sandbox.requests_served(name))
                runs.append(runs_after - runs_before)
                events.append(events_after - events_before)
                copy = f" + {copy_cpus[-1]:.2f} s in the copy" if copy_cpus else ""
                say(f"  no-change sync: {walls[-1]:.2f} s ({cpus[-1]:.2f} s CPU{copy}), "
                    f"{requests[-1]} requests, {runs[-1]} Dagster runs, {events[-1]} events")
        finally:
            if resident_process is not None:
                resident_process.stop()
    return {
        "charges": charges, "latency_ms": LATENCY_MS, "repeat": repeat,
        "code": str(code), "resident": resident,
        "first_sync_s": round(first, 1),
        "no_change_wall_s_median": round(statistics.median(walls), 2),
        "no_change_wall_s_min": round(min(walls), 2),
        # CPU (user + system) of the CLI process: what a loaded machine inflates least.
        "no_change_cpu_s_median": round(statistics.median(cpus), 2),
        "no_change_cpu_s_min": round(min(cpus), 2),
        # With --resident: the CPU of the copy that ran each sync (from the resident's log).
        "resident_copy_cpu_s_median": round(statistics.median(copy_cpus), 2) if copy_cpus
        else None,
        "requests_per_no_change_sync": sorted(set(requests)),
        "dagster_runs_per_no_change_sync": sorted(set(runs)),
        "dagster_events_per_no_change_sync": sorted(set(events)),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout whose CLI is measured (default: this one)")
    parser.add_argument("--resident", action="store_true",
                        help="run the syncs through `stripe-reports resident`")
    args = parser.parse_args()
    print(json.dumps(measure(args.charges, args.repeat, args.code.resolve(), args.resident),
                     indent=2))


if __name__ == "__main__":
    main()
