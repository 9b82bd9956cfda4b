"""Many clients through the real command line: `stripe-reports connect` each, then one
`stripe-reports sync --all`, the way an agency runs it (Dagster runs, one process per client).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.progress import say
from benchmarks.sandbox_process import ServedAccount
from benchmarks.verify import Verification, verify_warehouse

BENCH_SECRET = "benchmark-master-passphrase-not-a-stripe-key"


@dataclass
class ManyClientsRun:
    clients: int
    objects: int
    sync_wall_s: float
    connect_wall_s: float
    exit_code: int
    streams: tuple[str, ...]
    verifications: list[Verification] = field(default_factory=list)

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.sync_wall_s if self.sync_wall_s else 0.0

    @property
    def verified(self) -> bool:
        return self.exit_code == 0 and all(v.ok for v in self.verifications)


def cli_environment(home: Path, api_base: str) -> dict[str, str]:
    """A private product home: its own warehouse, connection store, Dagster instance."""
    clients_file = home / "clients.yaml"
    clients_file.write_text("clients: {}\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("STRIPE_REPORTS_", "DAGSTER_"))}
    env.update({
        "STRIPE_REPORTS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "STRIPE_REPORTS_SECRET": BENCH_SECRET,
        "STRIPE_REPORTS_CLIENTS_FILE": str(clients_file),
        "STRIPE_API_BASE": api_base,
    })
    return env


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("stripe-reports")
    return [str(script)] if script.exists() else [sys.executable, "-m", "apps.cli"]


def connect(client_id: str, account: ServedAccount, env: dict[str, str]) -> None:
    """`stripe-reports connect CLIENT` with the key on standard input, never in argv."""
    done = subprocess.run([*_cli(), "connect", client_id], input=account.secret_key + "\n",
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"connect {client_id} failed: {done.stderr.strip()[-300:]}")


def run_many_clients(accounts: list[ServedAccount], api_base: str, work: Path,
                     streams: tuple[str, ...] = ("charges",), parallel: int = 4,
                     connect_workers: int = 4) -> ManyClientsRun:
    home = work / "many_clients"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = cli_environment(home, api_base)

    say(f"many clients: connecting {len(accounts)} clients with `stripe-reports connect`")
    started = time.perf_counter()
    # The first alone: on a fresh home, concurrent first connects race to create the Dagster
    # instance's SQLite storage ("table alembic_version already exists").
    connect(accounts[0].name, accounts[0], env)
    with ThreadPoolExecutor(connect_workers) as pool:
        list(pool.map(lambda a: connect(a.name, a, env), accounts[1:]))
    connect_s = time.perf_counter() - started

    command = [*_cli(), "sync", "--all", "--parallel", str(parallel)]
    if streams:
        command += ["--streams", ",".join(streams)]
    say(f"many clients: {' '.join(command[-6:])} ...")
    started = time.perf_counter()
    log = home / "sync.log"
    with log.open("w") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=3600)
    sync_s = time.perf_counter() - started
    say(f"many clients: sync --all exited {done.returncode} after {sync_s:.1f} s")

    warehouse = home / "warehouse.duckdb"
    verifications: list[Verification] = []
    for account in accounts:
        expected = {t: account.expected[t] for t in (streams or account.expected)}
        verifications += verify_warehouse(warehouse, account.name, expected)
    objects = sum(v.rows for v in verifications)
    return ManyClientsRun(len(accounts), objects, sync_s, connect_s, done.returncode,
                          tuple(streams), verifications)
