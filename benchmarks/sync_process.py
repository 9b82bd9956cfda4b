"""One client's sync (`sync_client`, the function the Dagster asset calls) in a child process.

A process of its own gives a clean peak-memory figure (its `ru_maxrss`, read with
os.wait4) and keeps the pipeline off the sandbox's GIL. The configuration, key included,
goes over standard input; the child answers with one JSON line on standard output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SyncJob:
    client_id: str
    secret_key: str = field(repr=False)
    api_base: str
    warehouse: Path
    streams: tuple[str, ...] = ("charges",)
    # None: the pipeline's own default for the key (live 100/s, test 25/s).
    requests_per_second: float | None = None
    concurrency: int | None = None  # None: the pipeline's default
    include_balance: bool = False
    profile: Path | None = None  # py-spy's collapsed stacks of every thread, written here
    chunk_mb: float | None = None  # a chunk's raw-JSON budget; None: the engine's CHUNK_BYTES


@dataclass
class SyncRun:
    objects: int  # rows landed (inserted + updated) over the job's streams
    requests: int
    sync_s: float  # sync_client alone, net of interpreter start and imports
    wall_s: float  # the whole child process
    peak_rss_mb: float
    cpu_s: float  # user + system CPU of the child: near wall_s means one core's worth (the GIL)
    streams: dict[str, dict[str, Any]]
    errors: list[str]

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.sync_s if self.sync_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.sync_s if self.sync_s else 0.0


def run_sync(job: SyncJob) -> SyncRun:
    """Run the job in a fresh interpreter and measure it."""
    config = {
        "client_id": job.client_id, "secret_key": job.secret_key, "api_base": job.api_base,
        "warehouse": str(job.warehouse), "streams": list(job.streams),
        "requests_per_second": job.requests_per_second, "concurrency": job.concurrency,
        "include_balance": job.include_balance, "chunk_mb": job.chunk_mb,
    }
    command = [sys.executable, "-m", "benchmarks.sync_process"]
    if job.profile:
        command = [*py_spy(job.profile), *command]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin and child.stdout
    child.stdin.write(json.dumps(config).encode())
    child.stdin.close()
    output = child.stdout.read()
    child.stdout.close()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - started
    if child.returncode != 0 or b"{" not in output:
        raise RuntimeError(f"the sync process failed (exit {child.returncode})")
    # The last JSON line: py-spy, when profiling, prints its own lines too.
    result = json.loads([ln for ln in output.splitlines() if ln.startswith(b"{")][-1])
    return SyncRun(
        objects=result["objects"], requests=result["requests"], sync_s=result["sync_s"],
        wall_s=wall_s, peak_rss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime, streams=result["streams"],
        errors=result["errors"],
    )


def py_spy(output: Path) -> list[str]:
    """py-spy samples every thread (cProfile sees only the calling one); it is installed in a
    scratch venv by `pip install py-spy`, never in the project's."""
    found = shutil.which("py-spy") or next(
        (str(p) for p in (Path(__file__).parent / "work" / "venvs").glob("*/bin/py-spy")), None)
    if found is None:
        raise RuntimeError("--profile needs py-spy: python -m venv benchmarks/work/venvs/tools "
                           "&& benchmarks/work/venvs/tools/bin/pip install py-spy")
    return [found, "record", "--rate", "100", "--format", "raw", "--idle", "--threads",
            "--output", str(output), "--"]


# --- the child ----------------------------------------------------------------------------------


def _progress_printer():
    last = [0.0]

    def progress(client_id: str, stream: str, rows: int, requests: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 3:
            last[0] = now
            print(f"          {client_id}/{stream}: {rows:,} rows, {requests:,} requests",
                  file=sys.stderr, flush=True)

    return progress


def _child_main() -> int:
    config = json.loads(sys.stdin.read())
    from engine.streams import resolve_streams
    from engine.stripe_api import StripeAccount
    from engine.sync import sync_client
    from engine.warehouse_factory import open_warehouse

    account = StripeAccount(config["client_id"], config["secret_key"],
                            api_base=config["api_base"],
                            requests_per_second=config["requests_per_second"])
    warehouse = open_warehouse(config["warehouse"])
    warehouse.ensure_schema()
    specs = resolve_streams(config["streams"])
    if config.get("chunk_mb"):
        import engine.sync

        engine.sync.CHUNK_BYTES = int(config["chunk_mb"] * 1024 * 1024)

    def sync():
        options = {"concurrency": config["concurrency"]} if config["concurrency"] else {}
        return sync_client(account, warehouse, specs, include_balance=config["include_balance"],
                           progress=_progress_printer(), **options)

    started = time.perf_counter()
    report = sync()
    sync_s = time.perf_counter() - started
    result = {
        "objects": sum(r.rows_landed for r in report.streams.values()),
        "requests": report.requests,
        "sync_s": sync_s,
        "streams": {
            name: {"inserted": r.inserted, "updated": r.updated, "requests": r.requests,
                   "seconds": round(r.seconds, 3), "full_refresh": r.full_refresh_reason}
            for name, r in report.streams.items()
        },
        "errors": [error.message for error in report.errors],
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
