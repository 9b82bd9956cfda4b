"""The peers on the same sandbox: Singer (tap-stripe | target-duckdb), dlt, airbyte-source-stripe.

Each installs with pip into a scratch venv of its own under benchmarks/work/venvs (never the
project's venv) and is pointed at the sandbox the way its code allows: tap-stripe and the
dlt source use the stripe SDK's module-level `stripe.api_base`; Airbyte's low-code source
reads `url_base` from its manifest, so the scratch copy's manifest is rewritten. A peer that
cannot install or run here gets a row saying why instead of a number.

Figures are wall time of the whole run (start-up included: the peers have no in-process
timer to read) and the peak RSS of their processes, measured with os.wait4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from benchmarks.progress import say
from benchmarks.results import PeerRow
from benchmarks.sandbox_process import SandboxProcess, ServedAccount
from benchmarks.verify import Verification, verify_table

PEER_TIMEOUT_S = 900
START_DATE = "2010-01-01T00:00:00Z"


def _venv(work: Path, name: str, packages: list[str]) -> Path:
    """A scratch venv with `packages`; raises RuntimeError with pip's last words if not."""
    root = work / "venvs" / name
    python = root / "bin" / "python"
    stamp = root / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(packages):
        return python
    shutil.rmtree(root, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(root)], check=True, capture_output=True)
    say(f"  peers: pip install {' '.join(packages)} (into {root.relative_to(work)})")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()
                 and not ln.startswith("WARNING: Location")]
        raise RuntimeError("pip install failed: " + " / ".join(lines[-4:])[-600:])
    stamp.write_text(" ".join(packages))
    return python


def _spawn(argv: list[str], **kwargs) -> tuple[subprocess.Popen, Callable[[], float]]:
    """Start a process whose peak RSS we can read when it ends (os.wait4, not Popen.wait)."""
    process = subprocess.Popen(argv, **kwargs)
    peak = [0.0]

    def finish(deadline: float = float("inf")) -> float:
        while process.returncode is None and time.monotonic() < deadline:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                peak[0] = usage.ru_maxrss / 1024
                return peak[0]
            time.sleep(0.05)
        if process.returncode is None:
            process.kill()
            _pid, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            peak[0] = usage.ru_maxrss / 1024
        return peak[0]

    return process, finish


def _verify_in(db: Path, table: str, expected: Path) -> Verification:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return verify_table(conn, table, None, None, expected)
    finally:
        conn.close()


def _verify_ids(ids: list[str], expected: Path) -> Verification:
    conn = duckdb.connect()
    conn.register("landed", pa.table({"id": ids}))
    return verify_table(conn, "landed", None, None, expected)


def _row(name: str, objects: int, seconds: float, peak: float, check: Verification,
         detail: str) -> PeerRow:
    return PeerRow(name, objects, seconds, peak, check.ok,
                   detail if check.ok else f"{detail}; {check.describe()}")


# --- Singer --------------------------------------------------------------------------------------

_TAP = """import re, sys, stripe
stripe.api_base = sys.argv.pop(1)  # the SDK's own base-URL setting; tap-stripe has none
import tap_stripe
from singer import metrics

def request_timer(client):
    # tap-stripe's own timer parses the URL with api.stripe.com hard-coded; same timer, any host.
    original = client.request
    def timed(*args, **kwargs):
        match = re.match(r"https?://[^/]+/v1/(\\w+)", args[1])
        with metrics.http_request_timer(match.groups()[0] if match else "other"):
            return original(*args, **kwargs)
    client.request = timed

tap_stripe.apply_request_timer_to_client = request_timer
# The sandbox has GET /v1/account but not GET /v1/accounts/{id} (the tap's connection check).
stripe.Account.retrieve = classmethod(lambda cls, id=None, **params: cls.construct_from(
    stripe.api_requestor.APIRequestor().request("get", "/v1/account")[0].data, stripe.api_key))
sys.argv[0] = "tap-stripe"
tap_stripe.main()
"""


def run_singer(sandbox: SandboxProcess, account: ServedAccount, work: Path) -> PeerRow:
    name = "Singer: tap-stripe → target-duckdb"
    tap = _venv(work, "tap-stripe", ["tap-stripe"])
    target = _venv(work, "target-duckdb", ["target-duckdb"])
    folder = work / "peers" / "singer"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "tap.py").write_text(_TAP)
    config = folder / "tap_config.json"
    config.write_text(json.dumps({"client_secret": account.secret_key, "start_date": START_DATE,
                                  "account_id": account.account_id}))
    os.chmod(config, 0o600)
    db = folder / "singer.duckdb"
    (folder / "target_config.json").write_text(json.dumps(
        {"path": str(db), "default_target_schema": "tap_stripe"}))
    tap_cmd = [str(tap), str(folder / "tap.py"), sandbox.base_url, "--config", str(config)]
    discovered = subprocess.run([*tap_cmd, "--discover"], capture_output=True, text=True,
                                timeout=300)
    if discovered.returncode != 0:
        raise RuntimeError("tap-stripe --discover failed: " + discovered.stderr[-400:])
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if not entry["breadcrumb"]:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == "charges"
    (folder / "catalog.json").write_text(json.dumps(catalog))
    say("  peers: tap-stripe | target-duckdb, charges only")
    deadline = time.monotonic() + PEER_TIMEOUT_S
    started = time.perf_counter()
    with (folder / "tap.log").open("w") as tap_log, (folder / "target.log").open("w") as log:
        producer, finish_tap = _spawn([*tap_cmd, "--catalog", str(folder / "catalog.json")],
                                      stdout=subprocess.PIPE, stderr=tap_log)
        consumer, finish_target = _spawn(
            [str(target.with_name("target-duckdb")), "--config",
             str(folder / "target_config.json")],
            stdin=producer.stdout, stdout=subprocess.DEVNULL, stderr=log)
        assert producer.stdout is not None
        producer.stdout.close()
        peak = finish_tap(deadline) + finish_target(deadline)
    seconds = time.perf_counter() - started
    if producer.returncode or consumer.returncode:
        raise RuntimeError(f"tap exit {producer.returncode}, target exit {consumer.returncode}; "
                           f"see {folder}/*.log")
    check = _verify_in(db, "tap_stripe.charges", account.expected["charges"])
    return _row(name, check.rows, seconds, peak, check,
                "peak RSS of tap and target added; wall time with start-up, without discovery")


# --- dlt -----------------------------------------------------------------------------------------

# The verified source's paging (sources/stripe_analytics/helpers.py: `stripe.<Object>.list(
# created=..., limit=100, starting_after=...).to_dict()` page by page, yielded to a dlt resource
# with write_disposition="replace"), written out here because the source is not on PyPI.
_DLT = """import sys, time, dlt, stripe
import os
api_base, db = sys.argv[1:3]
stripe.api_base, stripe.api_version = api_base, "2022-11-15"
stripe.api_key = os.environ.pop("BENCH_STRIPE_KEY")

def pages(endpoint):
    starting_after = None
    while True:
        response = getattr(stripe, endpoint).list(
            created={"gte": None, "lt": None}, limit=100, starting_after=starting_after
        ).to_dict()
        if response["data"]:
            starting_after = response["data"][-1]["id"]
        yield response["data"]
        if not response["has_more"]:
            break

@dlt.source
def stripe_source(endpoints=("Charge",)):
    for endpoint in endpoints:
        yield dlt.resource(pages, name=endpoint, write_disposition="replace")(endpoint)

pipeline = dlt.pipeline(pipeline_name="stripe_bench", destination=dlt.destinations.duckdb(db),
                        dataset_name="stripe_data", pipelines_dir=sys.argv[3])
print(pipeline.run(stripe_source()))
"""


def run_dlt(sandbox: SandboxProcess, account: ServedAccount, work: Path) -> PeerRow:
    name = "dlt + verified stripe_analytics paging"
    python = _venv(work, "dlt", ["dlt[duckdb]", "stripe", "pandas"])
    folder = work / "peers" / "dlt"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "run.py").write_text(_DLT)
    db = folder / "dlt.duckdb"
    say("  peers: dlt pipeline into duckdb, Charge only")
    started = time.perf_counter()
    env = {**os.environ, "RUNTIME__LOG_LEVEL": "WARNING", "DLT_DATA_DIR": str(folder / "data"),
           "BENCH_STRIPE_KEY": account.secret_key}
    with (folder / "run.log").open("w") as log:
        process, finish = _spawn([str(python), str(folder / "run.py"), sandbox.base_url,
                                  str(db), str(folder / "pipelines")],
                                 stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
        peak = finish(time.monotonic() + PEER_TIMEOUT_S)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"dlt exit {process.returncode}; see {folder}/run.log")
    check = _verify_in(db, "stripe_data.charge", account.expected["charges"])
    return _row(name, check.rows, seconds, peak, check,
                "source not on PyPI (`dlt init` needs GitHub): its paging re-created")


# --- Airbyte -------------------------------------------------------------------------------------


def run_airbyte(sandbox: SandboxProcess, account: ServedAccount, work: Path) -> PeerRow:
    name = "airbyte-source-stripe (extraction only)"
    python = _venv(work, "airbyte", ["airbyte-source-stripe"])
    package = next(python.parent.parent.glob("lib/python3*/site-packages/source_stripe"))
    manifest, original = package / "manifest.yaml", package / "manifest.yaml.orig"
    if not original.exists():
        shutil.copyfile(manifest, original)
    manifest.write_text(original.read_text().replace(
        "url_base: https://api.stripe.com/v1", f"url_base: {sandbox.base_url}/v1"))
    folder = work / "peers" / "airbyte"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "config.json"
    config.write_text(json.dumps({"client_secret": account.secret_key,
                                  "account_id": account.account_id, "start_date": START_DATE}))
    os.chmod(config, 0o600)
    source = str(python.with_name("source-stripe"))
    found = subprocess.run([source, "discover", "--config", str(config)], capture_output=True,
                           text=True, timeout=300)
    streams = [json.loads(line)["catalog"]["streams"] for line in found.stdout.splitlines()
               if line.startswith("{") and '"CATALOG"' in line]
    charges = [s for s in (streams[0] if streams else []) if s["name"] == "charges"]
    if not charges:
        raise RuntimeError("source-stripe discover found no charges stream: "
                           + (found.stderr or found.stdout)[-400:])
    (folder / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": charges[0], "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
    }]}))
    say("  peers: airbyte-source-stripe read, charges only (records counted, not stored)")
    ids: list[str] = []
    started = time.perf_counter()
    with (folder / "read.log").open("w") as log:
        process, finish = _spawn([source, "read", "--config", str(config), "--catalog",
                                  str(folder / "catalog.json")],
                                 stdout=subprocess.PIPE, stderr=log)
        assert process.stdout is not None
        deadline = time.monotonic() + PEER_TIMEOUT_S
        for line in process.stdout:
            if b'"RECORD"' in line[:40]:
                ids.append(json.loads(line)["record"]["data"]["id"])
            if time.monotonic() > deadline:
                break
        peak = finish(deadline)
    seconds = time.perf_counter() - started
    check = _verify_ids(ids, account.expected["charges"])
    detail = "source process only, no destination"
    if seconds >= PEER_TIMEOUT_S:
        detail += f"; stopped after {PEER_TIMEOUT_S} s"
    return _row(name, len(ids), seconds, peak, check, detail)


PEERS: tuple[tuple[str, Callable[[SandboxProcess, ServedAccount, Path], PeerRow]], ...] = (
    ("Singer: tap-stripe → target-duckdb", run_singer),
    ("dlt + verified stripe_analytics paging", run_dlt),
    ("airbyte-source-stripe (extraction only)", run_airbyte),
)


def run_peers(sandbox: SandboxProcess, account: ServedAccount, work: Path) -> list[PeerRow]:
    rows = []
    for name, run in PEERS:
        try:
            row = run(sandbox, account, work)
        except (RuntimeError, OSError, subprocess.SubprocessError, duckdb.Error) as error:
            row = PeerRow(name, detail=f"did not run here: {error}")
        rows.append(row)
        speed = f"{row.objects_per_s:,.0f} objects/s" if row.objects_per_s else row.detail
        say(f"  peers: {name}: {speed}")
    return rows
