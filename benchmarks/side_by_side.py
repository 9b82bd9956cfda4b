"""Clients side by side in a batch run (issue 21): a no-change batch at 1 thread against N.

    .venv/bin/python -m benchmarks.side_by_side [--clients 8] [--threads 1,4] [--repeat 2]

Small accounts (30 charges each) are connected and synced once; then the same batch run of
every client (pipelines/batches.py, executed as the code server executes it) is timed with
the sandbox at Stripe-like latency (150 ms a request), at each `side_by_side` in turn,
interleaved `--repeat` times so a change in the machine's load hits each alike. SQLite
instance and DuckDB file. Prints a JSON summary with the load average: the machine is shared.
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


def _batch(instance, clients: list[str], threads: int) -> tuple[bool, float, float]:
    """A batch run of `clients`: success, wall seconds, this process's CPU seconds."""
    from support.batch_runs import run_batch

    cpu, wall = time.process_time(), time.perf_counter()
    result = run_batch(instance, clients, launched_by="cli", side_by_side=threads)
    return result.success, time.perf_counter() - wall, time.process_time() - cpu


def measure(clients: int, threads: list[int], repeat: int, latency_ms: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    os.environ.update({"STRIPE_REPORTS_HOME": str(work / "home"),
                       "DAGSTER_HOME": str(work / "home" / "dagster_home"),
                       "STRIPE_REPORTS_SECRET": "side-by-side-benchmark-passphrase",
                       "STRIPE_REPORTS_CLIENTS_FILE": str(work / "clients.yaml")})
    (work / "clients.yaml").write_text("clients: {}\n")
    accounts = [BenchAccount(f"c{i:03d}", charges=30) for i in range(clients)]
    runs: dict[int, list[dict]] = {t: [] for t in threads}
    with SandboxProcess(accounts, work) as sandbox:
        os.environ["STRIPE_API_BASE"] = sandbox.base_url
        names = sorted(sandbox.accounts)
        subprocess.run([sys.executable, "-m", "apps.cli", "connect", "--bulk"], check=True,
                       capture_output=True, text=True, input="".join(
                           f"{n}\t{sandbox.accounts[n].secret_key}\n" for n in names))
        from pipelines.instance import get_instance

        instance = get_instance()
        say(f"first sync of {clients} clients")
        assert _batch(instance, names, max(threads))[0], "the first sync failed"
        for round_ in range(repeat):
            for count in threads:
                sandbox.configure(latency_ms=latency_ms)  # also resets the request count
                ok, wall, cpu = _batch(instance, names, count)
                requests = sum(sandbox.requests_served(n) for n in names)
                runs[count].append({"ok": ok, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                    "requests": requests, "load": round(os.getloadavg()[0], 1)})
                say(f"round {round_ + 1}, {count} side by side: {runs[count][-1]}")
    return {
        "clients": clients, "latency_ms": latency_ms, "repeat": repeat,
        "by_threads": {
            str(count): {
                "median_wall_s": statistics.median(r["wall_s"] for r in rs),
                "median_wall_per_client_s": round(
                    statistics.median(r["wall_s"] for r in rs) / clients, 2),
                "median_cpu_per_client_s": round(
                    statistics.median(r["cpu_s"] for r in rs) / clients, 2),
                "all_ok": all(r["ok"] for r in rs), "runs": rs}
            for count, rs in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", default="1,4", help="side_by_side values, e.g. 1,4,8")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=150)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(json.dumps(measure(args.clients, threads, args.repeat, args.latency_ms), indent=2))


if __name__ == "__main__":
    main()
