"""Issue 12's Dagster measurements at N clients (default 1,000), on the PostgreSQL instance.

    .venv/bin/python -m benchmarks.thousand_clients [--clients 1000] [--ui]

1. One tick of the per-client schedule, for real: N partitions, a `dagster api grpc` code
   server, a `dagster-daemon`; the figures are the schedule's evaluation (what Dagster's
   schedule gRPC timeout, 60 s by default, bounds) and the time until all N runs are in the
   queue. The queue's global limit is 0 here, so nothing launches: this measures the tick, not
   the syncs. A tick asks for batch runs (pipelines/batches.py), each naming up to 25 clients.
2. `--ui`: `dagster-webserver` on the same instance; Chromium opens the sync asset's
   partitions page and asset page, and the time until the network is idle is measured.
PostgreSQL comes from support/postgres_server.py (Debian's postgresql). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = ROOT / ".venv" / "bin"
SCHEDULE = "stripe_sync_x_x_x_x_x"
CHROMIUM = "/usr/bin/chromium"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(work: Path, clients: int, url: str) -> None:
    names = [f"client_{i:04d}" for i in range(clients)]
    (work / "clients.yaml").write_text("clients:\n" + "".join(
        f'  {n}: {{key_env: BENCH_KEY, schedule: "* * * * *"}}\n' for n in names))
    os.environ.update({
        "STRIPE_REPORTS_HOME": str(work / "home"), "DAGSTER_HOME": str(work / "dagster_home"),
        "STRIPE_REPORTS_SECRET": "bench", "STRIPE_REPORTS_CLIENTS_FILE": str(work / "clients.yaml"),
        "STRIPE_REPORTS_DAGSTER_STORAGE_URL": url, "BENCH_KEY": "sk_test_" + "x" * 24})


def _instance(clients: int, submit_workers: int):
    from pipelines.instance import instance_config, storage_url

    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True)
    # Hand-written (no generated header): the same instance, with the queue paused.
    config = instance_config(storage_url()).split("\n\n", 1)[1]
    assert "max_concurrent_runs: 8" in config, "the template's queue limit moved"
    config = config.replace("max_concurrent_runs: 8", "max_concurrent_runs: 0")
    if submit_workers:  # Dagster's own means for a tick with many run requests
        config += (f"\nschedules:\n  use_threads: true\n  num_workers: 2\n"
                   f"  num_submit_workers: {submit_workers}\n")
    (home / "dagster.yaml").write_text(config)
    from pipelines.instance import get_instance

    instance = get_instance()
    instance.add_dynamic_partitions("stripe_clients", [f"client_{i:04d}" for i in range(clients)])
    return instance


def _evaluate_in_process(instance) -> dict:
    from dagster import build_schedule_context

    from pipelines.definitions import defs

    schedule = defs.get_schedule_def(SCHEDULE)
    started = time.perf_counter()
    with build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                scheduled_execution_time=datetime.now(UTC)) as context:
        data = schedule.evaluate_tick(context)
    return {"evaluation_s": round(time.perf_counter() - started, 2),
            "run_requests": len(data.run_requests or [])}


def _start(stack: ExitStack, args: list[str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    stack.callback(lambda: (process.terminate(), process.wait(timeout=30)))
    return process


def _wait_for_code_server(port: int) -> None:
    for _ in range(120):
        if subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--port",
                           str(port)], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit("the code server never answered")


def _tick(instance, expected_runs: int, workspace: list[str], work: Path,
          stack: ExitStack) -> dict:
    from dagster import DagsterRunStatus, RunsFilter

    subprocess.run([str(BIN / "dagster"), "schedule", "start", SCHEDULE, *workspace],
                   cwd=ROOT, check=True, capture_output=True)
    _start(stack, [str(BIN / "dagster-daemon"), "run", *workspace], work / "daemon.log")
    deadline = time.time() + 900
    queued, first_tick = 0, None
    while time.time() < deadline and queued < expected_runs:
        time.sleep(2)
        queued = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
        if queued and first_tick is None:
            first_tick = datetime.now(UTC).replace(second=0, microsecond=0).timestamp()
    done = time.time()
    elapsed = done - first_tick if first_tick else None
    return {"runs_queued": queued, "tick_to_last_queued_s": round(elapsed, 1) if elapsed else None,
            "runs_queued_per_s": round(queued / elapsed, 2) if elapsed else None}


def _note_query(request, slowest: dict[str, float]) -> None:
    """The GraphQL operation a request ran and how long the server took to answer it."""
    if "/graphql" not in request.url:
        return
    name = request.url.split("op=", 1)[1] if "op=" in request.url else request.url
    timing = request.timing
    slowest[name] = round(timing["responseEnd"] - timing["requestStart"], 1)


def _ui(port: int, work: Path, workspace: list[str], stack: ExitStack) -> dict:
    from playwright.sync_api import sync_playwright

    _start(stack, [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                   *workspace], work / "webserver.log")
    base = f"http://127.0.0.1:{port}"
    pages = {"partitions_page": "/assets/stripe/charges?view=partitions",
             "asset_page": "/assets/stripe/charges"}
    figures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        for _ in range(60):  # the webserver is up when its page answers
            try:
                page.goto(base, wait_until="networkidle", timeout=60_000)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1)
        slowest: dict[str, float] = {}
        page.on("requestfinished", lambda request: _note_query(request, slowest))
        for name, path in pages.items():
            timings = []
            for _ in range(3):
                slowest.clear()
                started = time.perf_counter()
                page.goto(base + path, wait_until="networkidle", timeout=120_000)
                timings.append(time.perf_counter() - started)
            figures[name + "_s"] = round(sorted(timings)[1], 2)  # the median of three
            top = sorted(slowest.items(), key=lambda item: -item[1])[:4]
            figures[name + "_slowest_queries_ms"] = dict(top)  # of the last load
        page.screenshot(path=str(work / "partitions.png"))
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--ui", action="store_true")
    parser.add_argument("--submit-workers", type=int, default=0,
                        help="schedules.num_submit_workers in the instance (0: Dagster's default)")
    parser.add_argument("--schedule-timeout", type=int, default=0,
                        help="DAGSTER_SCHEDULE_GRPC_TIMEOUT_SECONDS for the daemon (0: 60 s)")
    args = parser.parse_args()
    from support.postgres_server import running_postgres

    work = Path(tempfile.mkdtemp(prefix="bench-1000-"))
    if args.schedule_timeout:
        os.environ["DAGSTER_SCHEDULE_GRPC_TIMEOUT_SECONDS"] = str(args.schedule_timeout)
    with running_postgres() as server, ExitStack() as stack:
        url = server.create_database("dagster").replace("+psycopg2", "")
        _environment(work, args.clients, url)
        instance = _instance(args.clients, args.submit_workers)
        summary = {"clients": args.clients, "storage": "postgresql",
                   "submit_workers": args.submit_workers,
                   "schedule_timeout_s": args.schedule_timeout or 60,
                   **_evaluate_in_process(instance)}
        port = _port()
        _start(stack, [str(BIN / "dagster"), "api", "grpc", "-m", "pipelines.definitions",
                       "--host", "127.0.0.1", "--port", str(port)], work / "code.log")
        _wait_for_code_server(port)
        grpc = f"load_from:\n  - grpc_server: {{host: 127.0.0.1, port: {port}}}\n"
        (work / "workspace.yaml").write_text(grpc)
        workspace = ["-w", str(work / "workspace.yaml")]
        summary.update(_tick(instance, summary["run_requests"], workspace, work, stack))
        if args.ui:
            summary.update(_ui(_port(), work, workspace, stack))
    summary["work_dir"] = str(work)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
