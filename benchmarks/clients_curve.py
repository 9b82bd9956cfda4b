"""Issue 12's client curve: one scheduled sync cycle of N clients, then a no-change cycle.

    .venv/bin/python -m benchmarks.clients_curve --deployment file --clients 10,100 --workers 2
    .venv/bin/python -m benchmarks.clients_curve --deployment lake --clients 1000 --first-only

The sandbox answers every sync request after `--latency-ms` (default 150: Stripe-like; set
once `connect --bulk` is done), so a batch run's clients syncing side by side have network
waits to overlap, as with Stripe.

For each deployment, number of clients N and number of run workers W (the queue's
`max_concurrent_runs` in the instance's dagster.yaml):
- `file`: Dagster on SQLite files under DAGSTER_HOME, the warehouse one DuckDB file.
- `lake`: Dagster on PostgreSQL, the warehouse DuckLake (PostgreSQL catalog, a data folder),
  the connection store in PostgreSQL too. PostgreSQL comes from support/postgres_server.py.

1. `python -m sandbox --accounts N --charges 30` serves N generated accounts in a process of
   its own; `connect --bulk` connects all N (timed).
2. The real scheduled path: a `dagster api grpc -m pipelines.definitions` code server and a
   `dagster-daemon run`; every client is declared in clients.yaml on "* * * * *", so the tick
   of the schedule `stripe_sync_x_x_x_x_x` asks for batch runs (pipelines/batches.py). The
   schedule is stopped as soon as the tick's batch runs exist, so one cycle runs.
3. A cycle is measured from the tick's scheduled time to the end of the last batch run: wall
   time, clients (each either its own `stripe_sync_job` run, or, with nothing new, checked by
   its batch run without one: an observation of its stripe/balance naming the batch run),
   the sandbox's request count, the charges landed in the warehouse per client against what
   the API lists for the account ("verified").
4. The schedule is started again for a second cycle: nothing changed in the sandbox, so this
   is the fixed cost per client at scale.
A JSON summary is printed, and a row appended to benchmarks/clients_curve.md.
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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python")
SCHEDULE = "stripe_sync_x_x_x_x_x"  # the name schedules.py gives the cron "* * * * *"
RESULTS = ROOT / "benchmarks" / "clients_curve.md"
CHARGES_PER_ACCOUNT = 30
POLL_SECONDS = 5
TABLE_HEAD = (
    "| deployment | clients | workers | latency ms | first cycle s | no-change cycle s | "
    "s/client (first / no-change) | requests (first / no-change) | requests/client | "
    "runs ok/failed | batch runs | connect --bulk s | verified | load at start/end | "
    "when (UTC) | commit |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|---|---|---|\n")
# Rows before the latency column (0 ms) sit in the table above this heading.
LATENCY_SECTION = "## With Stripe-like latency (issue 21)"


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "resources",
                            "assets", "pipelines", "reports", "sandbox"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+working tree" if dirty else "")


# --- the sandbox --------------------------------------------------------------------------------


class Sandbox:
    """`python -m sandbox --accounts N --charges 30` on a free port; its /_sandbox endpoints."""

    def __init__(self, clients: int, log: Path, stack: ExitStack) -> None:
        self.base_url = f"http://127.0.0.1:{_port()}"
        port = self.base_url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [PYTHON, "-m", "sandbox", "--accounts", str(clients), "--charges",
             str(CHARGES_PER_ACCOUNT), "--port", port], cwd=ROOT,
            stdout=log.open("w"), stderr=subprocess.STDOUT)  # the log holds the fake keys
        stack.callback(_stop, self.process)
        self._wait(log)
        self.accounts = {a["name"]: a for a in self.get("/_sandbox/accounts")}

    def _wait(self, log: Path) -> None:
        for _ in range(1200):
            if self.process.poll() is not None:
                raise SystemExit(f"the sandbox exited:\n{log.read_text()[-2000:]}")
            try:
                self.get("/_sandbox/config")
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("the sandbox never answered")

    def get(self, path: str, key: str | None = None) -> Any:
        request = urllib.request.Request(self.base_url + path)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def set_latency(self, latency_ms: float) -> None:
        """Every answer from now on waits `latency_ms` (set after `connect --bulk`, which
        is not what is measured)."""
        request = urllib.request.Request(
            self.base_url + "/_sandbox/config", data=json.dumps({"latency_ms": latency_ms})
            .encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=60).read()

    def reset_stats(self) -> None:
        request = urllib.request.Request(self.base_url + "/_sandbox/stats/reset", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=60).read()

    def requests(self) -> int:
        return int(self.get("/_sandbox/stats")["total"])

    def requests_by_path(self) -> dict[str, int]:
        paths: dict[str, int] = {}
        for row in self.get("/_sandbox/stats")["by_account_path"]:
            paths[row["path"]] = paths.get(row["path"], 0) + row["count"]
        return dict(sorted(paths.items(), key=lambda item: -item[1]))

    def listed_charges(self, name: str) -> int:
        """How many charges `GET /v1/charges` pages through for the account."""
        key, count, after = self.accounts[name]["secret_key"], 0, ""
        while True:
            page = self.get(f"/v1/charges?limit=100{after}", key)
            count += len(page["data"])
            if not page["has_more"]:
                return count
            after = f"&starting_after={page['data'][-1]['id']}"

    def all_listed_charges(self) -> dict[str, int]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            names = list(self.accounts)
            return dict(zip(names, pool.map(self.listed_charges, names), strict=True))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the deployment -----------------------------------------------------------------------------


def _environment(work: Path, deployment: str, server: Any, sandbox: Sandbox) -> None:
    """The settings every process inherits (keys never: they are in the connection store)."""
    os.environ.update({
        "STRIPE_REPORTS_HOME": str(work / "home"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "STRIPE_REPORTS_SECRET": "bench-clients-curve",
        "STRIPE_REPORTS_CLIENTS_FILE": str(work / "clients.yaml"),
        "STRIPE_API_BASE": sandbox.base_url,
    })
    for name in ("STRIPE_REPORTS_DAGSTER_STORAGE_URL", "STRIPE_REPORTS_WAREHOUSE",
                 "STRIPE_REPORTS_LAKE_DATA_PATH", "STRIPE_REPORTS_CONNECTIONS_URL"):
        os.environ.pop(name, None)
    if deployment == "lake":
        catalog = server.create_database("lake_catalog").rsplit("/", 1)[1]
        os.environ.update({
            "PGPASSWORD": server.password,  # libpq reads it for the DuckLake catalog
            "STRIPE_REPORTS_DAGSTER_STORAGE_URL":
                server.create_database("dagster").replace("+psycopg2", ""),
            "STRIPE_REPORTS_CONNECTIONS_URL": server.create_database("connections"),
            "STRIPE_REPORTS_WAREHOUSE": (f"ducklake:postgres:dbname={catalog} "
                                         f"host={server.host} port={server.port} user=postgres"),
            "STRIPE_REPORTS_LAKE_DATA_PATH": str(work / "lake-data"),
        })


def _write_clients_file(work: Path, names: list[str]) -> None:
    (work / "clients.yaml").write_text("clients:\n" + "".join(
        f'  {name}: {{schedule: "* * * * *"}}\n' for name in names))


def _write_instance(workers: int) -> None:
    """The generated instance for the settings, hand-written (so kept) with W run workers."""
    from pipelines.instance import instance_config, storage_url

    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = instance_config(storage_url()).split("\n\n", 1)[1]
    # W batch runs at once (the batch tag's limit); each also counts its client's run.
    assert "max_concurrent_runs: 8" in config and "limit: 4\n" in config, "the queue moved"
    config = config.replace("max_concurrent_runs: 8", f"max_concurrent_runs: {2 * workers}")
    config = config.replace('key: "stripe_reports/clients"\n        limit: 4',
                            f'key: "stripe_reports/clients"\n        limit: {workers}')
    (home / "dagster.yaml").write_text(config)


def _connect_bulk(sandbox: Sandbox, work: Path) -> dict:
    lines = "".join(f"{name}\t{a['secret_key']}\n" for name, a in sandbox.accounts.items())
    sandbox.reset_stats()
    started = time.perf_counter()
    done = subprocess.run([PYTHON, "-m", "apps.cli", "connect", "--bulk"], cwd=ROOT,
                          input=lines, text=True, capture_output=True)
    elapsed = time.perf_counter() - started
    (work / "connect.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"connect --bulk failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {"connect_bulk_s": round(elapsed, 1), "connect_requests": sandbox.requests()}


def _start(stack: ExitStack, args: list[str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    stack.callback(_stop, process)
    return process


def _wait_for_code_server(port: int, process: subprocess.Popen, log: Path) -> None:
    for _ in range(180):
        if process.poll() is not None:
            raise SystemExit(f"the code server exited:\n{log.read_text()[-3000:]}")
        if subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--port",
                           str(port)], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit("the code server never answered")


def _schedule(action: str, workspace: list[str]) -> None:
    done = subprocess.run([str(BIN / "dagster"), "schedule", action, SCHEDULE, *workspace],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"dagster schedule {action} failed:\n{done.stdout}{done.stderr}")


def _schedule_status(instance: Any) -> str:
    from dagster._core.scheduler.instigation import InstigatorType

    states = instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
    return next((s.status.value for s in states if s.name == SCHEDULE), "no state")


def _start_schedule(instance: Any, workspace: list[str]) -> int:
    """`dagster schedule start`, until the instance says RUNNING; how many starts it took.
    (On PostgreSQL, a start given while the daemon was starting was once found STOPPED.)"""
    for attempt in range(1, 6):
        _schedule("start", workspace)
        time.sleep(2)
        status = _schedule_status(instance)
        if status == "RUNNING":
            return attempt
        say(f"  `dagster schedule start` said started, but the instance says {status}")
    raise SystemExit("the schedule would not stay started")


# --- a cycle ------------------------------------------------------------------------------------

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def _records(instance: Any, job: str, since: float) -> list:
    from dagster import RunsFilter

    after = datetime.fromtimestamp(since, UTC)
    return list(instance.get_run_records(RunsFilter(job_name=job, created_after=after)))


def _wait_for_tick(instance: Any, since: float, expected: int, workspace: list[str],
                   deadline: float) -> list:
    """The tick's batch runs; the schedule is stopped as soon as they all exist."""
    from pipelines.batches import BATCH_JOB_NAME

    batches: list = []
    while time.time() < deadline:
        batches = _records(instance, BATCH_JOB_NAME, since)
        if len(batches) >= expected:
            _schedule("stop", workspace)
            return _records(instance, BATCH_JOB_NAME, since)
        time.sleep(1)
    raise SystemExit(f"the tick asked for {len(batches)} of {expected} batch runs in time")


def _wait_for_clients(instance: Any, batch_ids: set[str], since: float, clients: int,
                      processes: list, deadline: float) -> tuple[list, list, bool]:
    """The batch runs and the client runs they launched, once every batch run finished (or
    at the deadline: then the last flag is False and the unfinished batch runs are ended)."""
    from pipelines.batches import BATCH_JOB_NAME, BATCH_TAG
    from pipelines.jobs import SYNC_JOB_NAME

    last_said, pause = 0.0, POLL_SECONDS if clients <= 100 else 15
    while True:
        for process, log in processes:
            if process.poll() is not None:
                raise SystemExit(f"{log.name} exited:\n{log.read_text()[-3000:]}")
        batches = [r for r in _records(instance, BATCH_JOB_NAME, since)
                   if r.dagster_run.run_id in batch_ids]
        children = [r for r in _records(instance, SYNC_JOB_NAME, since)
                    if r.dagster_run.tags.get(BATCH_TAG) in batch_ids]
        done = [r for r in children if r.dagster_run.status.value in FINISHED]
        if all(r.dagster_run.status.value in FINISHED for r in batches):
            return batches, children, True
        if time.time() > deadline:
            say(f"  deadline: {len(done)}/{clients} client runs finished; ending the batches")
            for record in batches:
                if record.dagster_run.status.value not in FINISHED:
                    instance.run_launcher.terminate(record.dagster_run.run_id)
            return batches, children, False
        if time.time() - last_said > 60:
            say(f"  {len(done)}/{clients} client runs finished, load {_load()}")
            last_said = time.time()
        time.sleep(pause)


def _warehouse_charges() -> dict[str, tuple[int, int]]:
    """Per client: live charge rows, and rows beyond one per id (duplicates)."""
    from engine.warehouse_factory import warehouse_from_settings

    with warehouse_from_settings().reader() as conn:
        rows = conn.execute("SELECT client_id, count(*) FILTER (WHERE NOT is_deleted), "
                            "count(*) - count(DISTINCT id) FROM stripe.charges "
                            "GROUP BY client_id").fetchall()
    return {client: (live, extra) for client, live, extra in rows}


def _verify(sandbox: Sandbox, synced: set[str]) -> dict:
    """Each synced client's charges in the warehouse against what the API lists."""
    expected = {n: c for n, c in sandbox.all_listed_charges().items() if n in synced}
    landed = _warehouse_charges()
    wrong = [name for name, count in expected.items() if landed.get(name, (0, 0)) != (count, 0)]
    return {"clients_checked": len(expected), "charges_expected": sum(expected.values()),
            "charges_landed": sum(landed.get(n, (0, 0))[0] for n in expected),
            "clients_wrong": wrong[:20], "clients_wrong_count": len(wrong),
            "verified": bool(expected) and not wrong}


def _medians_by_tenth(spans: list[tuple[float, float]]) -> list[float]:
    """The median client time (its run, or its check in the batch run) in each tenth of
    the cycle, in start order: flat if the per-client cost does not grow with what the
    warehouse already holds."""
    runs = sorted(spans)
    tenth = max(1, len(runs) // 10)
    medians = []
    for start in range(0, len(runs), tenth):
        durations = sorted(d for _, d in runs[start:start + tenth])
        medians.append(round(durations[len(durations) // 2], 2))
    return medians


def _checked_without_run(instance: Any, batch_ids: set[str], since: float) -> list:
    """The observations of stripe/balance the cycle's batch runs made for the clients they
    checked without a run (pipelines/batch_checks.py): one per client."""
    from dagster import AssetRecordsFilter

    from assets.client_health import BALANCE_KEY

    records, cursor = [], None
    while True:
        page = instance.fetch_observations(
            AssetRecordsFilter(asset_key=BALANCE_KEY, after_timestamp=since), limit=1000,
            cursor=cursor)
        records += [r for r in page.records if getattr(r.asset_observation.metadata.get(
            "batch_run"), "value", None) in batch_ids]
        if not page.has_more:
            return records
        cursor = page.cursor


def _maintain() -> dict:
    """One pass of the nightly DuckLake maintenance, with its default retention."""
    from engine.warehouse_factory import warehouse_from_settings
    from pipelines.lake_maintenance import MaintenanceConfig

    config = MaintenanceConfig()
    done = warehouse_from_settings().maintain(timedelta(days=config.keep_snapshots_days),
                                              timedelta(hours=config.keep_unused_files_hours))
    return {"files_before": done.files_before, "files_after": done.files_after,
            "snapshots_before": done.snapshots_before,
            "snapshots_after": done.snapshots_after, "seconds": round(done.seconds, 1)}


def _figures(batches: list, children: list, checked: list, tick: float, end: float,
             workers: int) -> dict:
    ok = sum(r.dagster_run.status.value == "SUCCESS" for r in children)
    finished = [r for r in children if r.dagster_run.status.value in FINISHED]
    spans = [(r.start_time, r.end_time - r.start_time) for r in finished if r.start_time]
    spans += [(r.timestamp - r.asset_observation.metadata["seconds"].value,
               r.asset_observation.metadata["seconds"].value) for r in checked]
    clients_done = len(finished) + len(checked)
    wall = end - tick
    return {
        "wall_s": round(wall, 1), "tick_to_first_batch_run_s": round(
            min(r.create_timestamp.timestamp() for r in batches) - tick, 1),
        "batch_runs": len(batches),
        "batch_runs_failed": sum(r.dagster_run.status.value != "SUCCESS" for r in batches),
        "client_runs": len(children), "client_runs_finished": len(finished),
        "checked_without_run": len(checked), "clients_finished": clients_done,
        "runs_ok": ok + len(checked), "runs_failed": len(finished) - ok,
        "client_mean_s": round(sum(d for _, d in spans) / max(1, len(spans)), 2),
        "client_median_by_tenth_s": _medians_by_tenth(spans),
        "s_per_client": round(wall * workers / max(1, clients_done), 2)}


def _cycle(instance: Any, sandbox: Sandbox, workers: int, workspace: list[str],
           processes: list, timeout_s: float) -> dict:
    from pipelines.batches import client_batches

    clients = len(sandbox.accounts)
    expected_batches = len(client_batches(list(sandbox.accounts), workers))
    sandbox.reset_stats()
    load_start, since = _load(), time.time()
    starts = _start_schedule(instance, workspace)
    batches = _wait_for_tick(instance, since, expected_batches, workspace, since + timeout_s)
    tick = min(r.create_timestamp.timestamp() for r in batches) // 60 * 60
    say(f"  tick at {datetime.fromtimestamp(tick, UTC):%H:%M:%S}: {len(batches)} batch runs")
    batches, children, complete = _wait_for_clients(
        instance, {r.dagster_run.run_id for r in batches}, since, clients, processes,
        since + timeout_s)
    batch_ids = {r.dagster_run.run_id for r in batches}
    checked = _checked_without_run(instance, batch_ids, since)
    # The last client ends its batch run (its run, or its check in the batch).
    ended = [r.end_time for r in [*children, *batches] if r.end_time]
    end = max(ended) if complete and ended else time.time()
    requests, by_path = sandbox.requests(), sandbox.requests_by_path()
    synced = set(sandbox.accounts) if complete else {
        r.dagster_run.tags.get("dagster/partition") for r in children
        if r.dagster_run.status.value == "SUCCESS"} | {
        r.asset_observation.partition for r in checked}
    figures = _figures(batches, children, checked, tick, end, workers)
    per_client = requests / max(1, figures["clients_finished"])
    return {"complete": complete, "schedule_starts": starts, **figures,
            "requests": requests, "requests_per_client": round(per_client, 1),
            "requests_by_path": by_path,
            "load_start": load_start, "load_end": _load(), **_verify(sandbox, synced)}


# --- one row ------------------------------------------------------------------------------------


def _serve(stack: ExitStack, work: Path, instance: Any) -> tuple[list[str], list]:
    port = _port()
    code_log, daemon_log = work / "code-server.log", work / "daemon.log"
    code = _start(stack, [str(BIN / "dagster"), "api", "grpc", "-m", "pipelines.definitions",
                          "--host", "127.0.0.1", "--port", str(port)], code_log)
    _wait_for_code_server(port, code, code_log)
    (work / "workspace.yaml").write_text(
        f"load_from:\n  - grpc_server: {{host: 127.0.0.1, port: {port}}}\n")
    workspace = ["-w", str(work / "workspace.yaml")]
    _schedule("stop", workspace)  # it is RUNNING by default: each cycle starts it itself
    daemon = _start(stack, [str(BIN / "dagster-daemon"), "run", *workspace], daemon_log)
    for _ in range(180):  # the scheduler is up when it has sent a heartbeat
        if "SCHEDULER" in instance.get_daemon_heartbeats() or daemon.poll() is not None:
            break
        time.sleep(1)
    return workspace, [(code, code_log), (daemon, daemon_log)]


def measure(deployment: str, clients: int, workers: int, first_only: bool,
            timeout_s: float, maintain: bool = False, latency_ms: float = 150) -> dict:
    from support.postgres_server import running_postgres

    work = Path(tempfile.mkdtemp(prefix=f"curve-{deployment}-{clients}-{workers}-",
                                 dir=os.environ.get("BENCH_WORK_DIR")))
    say(f"{deployment}, {clients} clients, {workers} run workers: {work}")
    summary: dict[str, Any] = {"deployment": deployment, "clients": clients,
                               "workers": workers, "latency_ms": latency_ms,
                               "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
                               "commit": _commit(), "work_dir": str(work)}
    postgres = running_postgres() if deployment == "lake" else nullcontext()
    with postgres as server, ExitStack() as stack:
        sandbox = Sandbox(clients, work / "sandbox.log", stack)
        _environment(work, deployment, server, sandbox)
        _write_clients_file(work, list(sandbox.accounts))
        _write_instance(workers)
        summary.update(_connect_bulk(sandbox, work))
        say(f"  connect --bulk: {summary['connect_bulk_s']} s")
        sandbox.set_latency(latency_ms)
        from pipelines.instance import get_instance

        instance = get_instance()
        workspace, processes = _serve(stack, work, instance)
        summary["first"] = _cycle(instance, sandbox, workers, workspace, processes, timeout_s)
        say(f"  first cycle: {json.dumps(summary['first'])}")
        if maintain and deployment == "lake":
            summary["maintenance"] = _maintain()
            say(f"  maintenance between the cycles: {json.dumps(summary['maintenance'])}")
        if not first_only:
            summary["no_change"] = _cycle(instance, sandbox, workers, workspace, processes,
                                          timeout_s)
            say(f"  no-change cycle: {json.dumps(summary['no_change'])}")
    return summary


# --- the results file ---------------------------------------------------------------------------


def _pair(first: dict, second: dict | None, key: str, fmt: str = "{:,}") -> str:
    left = fmt.format(first[key])
    return left + (" / " + fmt.format(second[key]) if second else " / –")


def _wall(cycle: dict) -> str:
    if cycle["complete"]:
        return f"{cycle['wall_s']:,}"
    return (f"**stopped at {cycle['wall_s']:,}**: {cycle['clients_finished']:,} clients "
            "finished")


def table_row(s: dict) -> str:
    first, second = s["first"], s.get("no_change")
    runs = f"{first['runs_ok']}/{first['runs_failed']}"
    if second:
        runs += f", {second['runs_ok']}/{second['runs_failed']}"
    verified = "yes" if first["verified"] and (not second or second["verified"]) else "**no**"
    loads = f"{first['load_start']} / {(second or first)['load_end']}"
    return (f"| {s['deployment']} | {s['clients']:,} | {s['workers']} | "
            f"{s.get('latency_ms', 0):g} | {_wall(first)} | "
            f"{_wall(second) if second else 'not run'} | "
            f"{_pair(first, second, 's_per_client', '{:.2f}')} | "
            f"{_pair(first, second, 'requests')} | "
            f"{_pair(first, second, 'requests_per_client', '{:.1f}')} | {runs} | "
            f"{first['batch_runs']} | {s['connect_bulk_s']} | {verified} | {loads} | "
            f"{s['when']} | {s['commit']} |\n")


def append_row(summary: dict) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Sync cycles at 10, 100 and 1,000 clients (issue 12)\n\n"
            "Written by `benchmarks/clients_curve.py` (its docstring says how). One row per "
            "run, appended; figures are first cycle / no-change cycle.\n\n" + TABLE_HEAD)
    with RESULTS.open("a") as results:
        if LATENCY_SECTION not in RESULTS.read_text():
            results.write(f"\n{LATENCY_SECTION}\n\n{TABLE_HEAD}")
        results.write(table_row(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", choices=("file", "lake"), required=True)
    parser.add_argument("--clients", default="10", help="comma-separated, e.g. 10,100,1000")
    parser.add_argument("--workers", default="2", help="run workers, comma-separated")
    parser.add_argument("--first-only", action="store_true", help="skip the no-change cycle")
    parser.add_argument("--timeout-minutes", type=float, default=90, help="per cycle")
    parser.add_argument("--maintain", action="store_true",
                        help="lake: run the nightly maintenance pass between the cycles")
    parser.add_argument("--latency-ms", type=float, default=150,
                        help="the sandbox's wait before each answer (Stripe-like: 150)")
    parser.add_argument("--no-record", action="store_true", help="do not append to the table")
    args = parser.parse_args()
    for clients in (int(c) for c in args.clients.split(",")):
        for workers in (int(w) for w in args.workers.split(",")):
            summary = measure(args.deployment, clients, workers, args.first_only,
                              args.timeout_minutes * 60, args.maintain, args.latency_ms)
            print(json.dumps(summary, indent=2), flush=True)
            if not args.no_record:
                append_row(summary)


if __name__ == "__main__":
    main()
