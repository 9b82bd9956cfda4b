"""The fixed cost of a client's run through Dagster, before any Stripe work to speak of.

    .venv/bin/python -m benchmarks.fixed_cost [--clients 20] [--repeat 3]

Small accounts (30 charges each) are connected and synced once; then every figure is a
no-change sync, so what is measured is the cost around the sync:
- one client from the command line, a process of its own (what every scheduled run cost
  when a tick asked for one run per client: a process, the imports, the instance, the run);
- a batch run of all the clients in one process (what a tick asks for now,
  pipelines/batches.py): its wall time, and the cost each further client adds.
SQLite instance and DuckDB file (the embedded default); prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.progress import say
from benchmarks.sandbox_process import BenchAccount, SandboxProcess

BATCH_SCRIPT = """
import sys
from pipelines.instance import get_instance
from support.batch_runs import run_batch
result = run_batch(get_instance(), sys.argv[1:], launched_by="cli")
sys.exit(0 if result.success else 1)
"""


def _cli(*args: str, stdin: str = "") -> None:
    done = subprocess.run([sys.executable, "-m", "apps.cli", *args], input=stdin,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stripe-reports {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def _median_of(repeat: int, command: list[str]) -> float:
    return statistics.median(_timed(command) for _ in range(repeat))


def measure(clients: int, repeat: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    os.environ.update({"STRIPE_REPORTS_HOME": str(work / "home"),
                       "DAGSTER_HOME": str(work / "home" / "dagster_home"),
                       "STRIPE_REPORTS_SECRET": "fixed-cost-benchmark-passphrase",
                       "STRIPE_REPORTS_CLIENTS_FILE": str(work / "clients.yaml")})
    (work / "clients.yaml").write_text("clients: {}\n")
    accounts = [BenchAccount(f"c{i:03d}", charges=30) for i in range(clients)]
    with SandboxProcess(accounts, work) as sandbox:
        os.environ["STRIPE_API_BASE"] = sandbox.base_url
        names = sorted(sandbox.accounts)
        _cli("connect", "--bulk", stdin="".join(
            f"{n}\t{sandbox.accounts[n].secret_key}\n" for n in names))
        say(f"first sync of {clients} clients")
        _cli("sync", "--all")
        say("no-change syncs")
        one_cli = _median_of(repeat, [sys.executable, "-m", "apps.cli", "sync", names[0]])
        batch_one = _median_of(repeat, [sys.executable, "-c", BATCH_SCRIPT, names[0]])
        batch_all = _median_of(repeat, [sys.executable, "-c", BATCH_SCRIPT, *names])
    further = (batch_all - batch_one) / (clients - 1)
    return {
        "clients": clients, "repeat": repeat,
        "one_client_own_process_s": round(one_cli, 2),
        "batch_of_one_s": round(batch_one, 2),
        f"batch_of_{clients}_s": round(batch_all, 2),
        "each_further_client_in_a_batch_s": round(further, 2),
        "per_client_in_the_batch_s": round(batch_all / clients, 2),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(max(2, args.clients), args.repeat), indent=2))


if __name__ == "__main__":
    main()
