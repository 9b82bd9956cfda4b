"""Running the benchmark: one sandbox process, every scenario of the plan, every row verified."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from benchmarks.floor import page_through
from benchmarks.many_clients import BENCH_SECRET, run_many_clients
from benchmarks.plan import (
    ALL_STREAMS,
    ALL_TABLES,
    CONDITIONS,
    CPU,
    PEER_ACCOUNT,
    Condition,
    Plan,
    accounts_for,
    all_streams_account,
    charges_account,
    many_account,
    many_accounts_for,
    pipeline_concurrency,
    size_label,
)
from benchmarks.progress import say
from benchmarks.results import Results, ResyncRow, ThroughputRow, code_version
from benchmarks.sandbox_process import SandboxProcess, ServedAccount
from benchmarks.sync_process import SyncJob, SyncRun, run_sync
from benchmarks.verify import verify_warehouse
from benchmarks.widget_latency import measure_widgets


def isolate_settings(home: Path) -> None:
    """This process's product settings point into the work folder, never at a user's home."""
    home.mkdir(parents=True, exist_ok=True)
    clients = home / "clients.yaml"
    clients.write_text("clients: {}\n")
    os.environ.update({
        "STRIPE_REPORTS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
        "STRIPE_REPORTS_SECRET": BENCH_SECRET, "STRIPE_REPORTS_CLIENTS_FILE": str(clients),
    })
    os.environ.pop("STRIPE_REPORTS_WAREHOUSE", None)
    os.environ.pop("STRIPE_REPORTS_CONNECTIONS_URL", None)


class Runner:
    def __init__(self, plan: Plan, sandbox: SandboxProcess, results: Results) -> None:
        self.plan = plan
        self.sandbox = sandbox
        self.results = results
        self.condition: Condition = CPU

    def set_condition(self, condition: Condition) -> None:
        self.condition = condition
        self.sandbox.configure(condition.latency_ms, condition.sandbox_rps)
        say(f"condition: {condition.title}")

    def warehouse(self, name: str, fresh: bool = True) -> Path:
        path = self.plan.work / "runs" / f"{name}.{self.condition.name}" / "warehouse.duckdb"
        if fresh:
            shutil.rmtree(path.parent, ignore_errors=True)
            path.parent.mkdir(parents=True)
        return path

    def sync(self, account: ServedAccount, warehouse: Path, streams: tuple[str, ...],
             include_balance: bool = False, profile_name: str | None = None,
             concurrency: int | None = None) -> SyncRun:
        profile = None
        if self.plan.profile and profile_name:
            profile = self.plan.work / "profiles" / f"{profile_name}.{self.condition.name}.txt"
            profile.parent.mkdir(parents=True, exist_ok=True)
        job = SyncJob(account.name, account.secret_key, self.sandbox.base_url, warehouse,
                      streams=streams, requests_per_second=self.condition.pipeline_rps,
                      concurrency=concurrency or self.plan.concurrency,
                      include_balance=include_balance, profile=profile)
        return run_sync(job)

    def throughput(self, run: str, account_name: str, streams: tuple[str, ...],
                   tables: tuple[str, ...], size: int, fresh: bool = True,
                   concurrency: int | None = None) -> ThroughputRow:
        account = self.sandbox.accounts[account_name]
        path = self.warehouse(account_name, fresh)
        self.sandbox.configure(self.condition.latency_ms, self.condition.sandbox_rps)
        say(f"  {run}: syncing ({self.condition.name})")
        done = self.sync(account, path, streams, profile_name=account_name,
                         concurrency=concurrency)
        checks = verify_warehouse(path, account.name, {t: account.expected[t] for t in tables})
        row = ThroughputRow(
            run=run, condition=self.condition.name, objects=done.objects, requests=done.requests,
            server_requests=self.sandbox.requests_served(account.name), sync_s=done.sync_s,
            wall_s=done.wall_s, peak_rss_mb=done.peak_rss_mb, verifications=checks,
            errors=done.errors, size=size, charges_only=streams == ("charges",),
            cpu_s=done.cpu_s, concurrency=concurrency or self.results.concurrency,
            load=os.getloadavg()[0],
        )
        self.results.throughput.append(row)
        state = "verified" if row.verified else "NOT VERIFIED: " + "; ".join(
            [v.describe() for v in checks if not v.ok] + row.errors)
        say(f"  {run}: {row.objects:,} objects in {row.sync_s:.1f} s = "
            f"{row.objects_per_s:,.0f} objects/s, {row.requests_per_s:,.0f} req/s, "
            f"peak {row.peak_rss_mb:,.0f} MB, {state}")
        return row

    def floor(self, size: int) -> None:
        account = self.sandbox.accounts[charges_account(size)]
        say(f"  bare client {size_label(size)}: paging with requests.Session")
        floor = page_through(self.sandbox.base_url, account.secret_key)
        self.results.floors[size] = floor
        say(f"  bare client {size_label(size)}: {floor.objects:,} objects in "
            f"{floor.seconds:.1f} s = {floor.objects_per_s:,.0f} objects/s")

    def deep(self) -> None:
        """The largest account gets every other stream, then widgets are timed on it."""
        size = self.plan.largest
        name = charges_account(size)
        account = self.sandbox.accounts[name]
        path = self.warehouse(name, fresh=False)
        if not path.exists():
            return
        self.throughput(f"all streams {size_label(size)} (after charges)", name, ALL_STREAMS,
                        ALL_TABLES, size, fresh=False)
        say(f"  widgets on {size_label(size)} charges: building reporting tables, timing")
        with_balance = self.sync(account, path, ("charges",), include_balance=True)
        assert not with_balance.errors, with_balance.errors
        self.results.widgets = measure_widgets(path, account.name, self.plan.widget_repeats)
        latency = self.results.widgets
        if latency.skipped:
            say(f"  widgets: skipped, {latency.skipped}")
        else:
            say(f"  widgets: p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms over "
                f"{latency.calls} calls (reporting build {latency.build_s:.1f} s)")

    def resync(self) -> None:
        """A no-change re-sync of the largest account, every stream and the balance."""
        name = charges_account(self.plan.largest)
        account = self.sandbox.accounts[name]
        path = self.plan.work / "runs" / f"{name}.cpu" / "warehouse.duckdb"
        if "cpu" not in self.plan.conditions or not path.exists():
            return  # the warehouse must come from this run's world, synced in the cpu condition
        self.sandbox.configure(self.condition.latency_ms, self.condition.sandbox_rps)
        done = self.sync(account, path, ALL_STREAMS, include_balance=True)
        checks = verify_warehouse(path, account.name, account.expected)
        row = ResyncRow(self.condition.name, done.sync_s, done.wall_s, done.requests,
                        len(ALL_STREAMS), all(v.ok for v in checks) and not done.errors
                        and done.objects == 0)
        self.results.resyncs.append(row)
        say(f"  no-change re-sync ({self.condition.name}): {row.sync_s:.2f} s, "
            f"{row.requests} requests, {done.objects} rows written")


def run_suite(plan: Plan) -> Results:
    started = time.perf_counter()
    isolate_settings(plan.work / "home")
    results = Results(concurrency=plan.concurrency or pipeline_concurrency(),
                      load_before=os.getloadavg()[0])
    with SandboxProcess(accounts_for(plan), plan.work, seed=plan.seed) as sandbox:
        results.sandbox_generate_s = sandbox.generate_s
        runner = Runner(plan, sandbox, results)
        for condition in (CONDITIONS[name] for name in plan.conditions):
            runner.set_condition(condition)
            for size in plan.sizes:
                runner.throughput(f"charges {size_label(size)}", charges_account(size),
                                  ("charges",), ("charges",), size)
                if condition is CPU:
                    runner.floor(size)
            if condition is not CPU and plan.what_if_concurrency:
                # What the live-like figure becomes with enough requests in flight.
                size = 100_000 if 100_000 in plan.sizes else plan.largest
                concurrency = plan.what_if_concurrency
                runner.throughput(f"charges {size_label(size)}, concurrency {concurrency}",
                                  charges_account(size), ("charges",), ("charges",), size,
                                  concurrency=concurrency)
            if plan.all_streams_size:
                size = plan.all_streams_size
                runner.throughput(f"all streams {size_label(size)}", all_streams_account(size),
                                  ALL_STREAMS, ALL_TABLES, size)
            if plan.deep and condition is CPU:
                runner.deep()
            if plan.deep:
                runner.resync()
        if plan.peers:
            from benchmarks.peers import run_peers

            runner.set_condition(CPU)
            results.peer_ours = runner.throughput(
                f"charges {size_label(plan.peer_charges)} (peers' account)", PEER_ACCOUNT,
                ("charges",), ("charges",), plan.peer_charges)
            results.peers = run_peers(sandbox, sandbox.accounts[PEER_ACCOUNT], plan.work)
    if plan.many_clients:
        with SandboxProcess(many_accounts_for(plan), plan.work / "many", seed=plan.seed) as many:
            many.configure(CPU.latency_ms, CPU.sandbox_rps)
            accounts = [many.accounts[many_account(i)] for i in range(plan.many_clients)]
            results.many = run_many_clients(accounts, many.base_url, plan.work,
                                            streams=plan.many_streams)
        say(f"many clients: {results.many.objects:,} objects in "
            f"{results.many.sync_wall_s:.1f} s = {results.many.objects_per_s:,.0f} objects/s, "
            f"verified={results.many.verified}")
    results.load_after = os.getloadavg()[0]
    results.code_after = code_version()
    results.total_s = time.perf_counter() - started
    return results
