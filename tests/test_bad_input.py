"""Bad input and a broken environment, as a user meets them: through the real command
(`stripe-reports` in its own process) and the real web app. Each case asserts one clear
line (no traceback), a non-zero exit (or a 4xx), and stored data left as it was."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from dagster import RunRequest, build_schedule_context

from assets.partitions import CLIENTS_PARTITION_NAME
from engine.connection_store import ConnectionStore
from engine.encryption import WrongMasterKey
from engine.settings import load_settings
from engine.warehouse_factory import warehouse_from_settings
from pipelines.batches import batch_clients
from pipelines.definitions import defs
from pipelines.instance import get_instance, register_clients
from pipelines.schedules import build_sync_schedules
from sandbox import AccountSpec
from tests.test_reporting_support import seed_report_data

CLI = Path(sys.executable).parent / "stripe-reports"
SMALL = {"charges": 20, "customers": 6, "subscriptions": 4, "products": 2, "history_days": 60}
KEY = "sk_test_" + "B4dInputKeyBody" * 3


def run_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=os.environ["STRIPE_REPORTS_HOME"],
    )


def refused(result: subprocess.CompletedProcess, code: int, *phrases: str) -> str:
    """The command failed with `code` and one `error:` line holding every phrase."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], (phrase, errors[0])
    return errors[0]


def stored_state() -> tuple[list[dict], dict[str, int]]:
    """What the user stored: every connection (with its check history), every table's rows."""
    with ConnectionStore.from_settings() as store:
        connections = [{**c.to_dict(), "checks": len(store.check_history(c.client_id))}
                       for c in store.list()]
    counts: dict[str, int] = {}
    if load_settings().warehouse_path.exists():
        with warehouse_from_settings().reader() as conn:
            tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            for schema, table in tables:
                counts[f"{schema}.{table}"] = conn.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
    return connections, counts


def _connect(store: ConnectionStore, client_id: str, key: str = KEY) -> None:
    store.save_connection(client_id, secret_key=key, account_id=f"acct_{client_id}",
                          livemode=False)


@pytest.fixture
def reported(home):
    """acme connected (under the test's master key) with a warehouse of report data."""
    now = datetime.now(UTC)
    seed_report_data(warehouse_from_settings(), "acme", now)
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme")
        store.record_sync("acme", now)
    return home


# -- defect 7: one store, one master key ------------------------------------------------------


def test_a_store_refuses_a_master_key_that_cannot_open_its_keys(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("globex", **SMALL)])
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme")
    before = stored_state()
    globex = server.world.accounts["globex"].secret_key
    for secret in ("wrongpass", ""):  # another passphrase; unset: the key file
        result = run_cli("connect", "globex", stdin=globex + "\n",
                         env={"STRIPE_REPORTS_SECRET": secret})
        refused(result, 2, "STRIPE_REPORTS_SECRET", "nothing was stored", "client 'acme'")
    assert stored_state() == before
    with ConnectionStore.from_settings() as store:
        assert store.secret_key("acme") == KEY

    checked = run_cli("check", env={"STRIPE_REPORTS_SECRET": "wrongpass"})
    refused(checked, 2, "STRIPE_REPORTS_SECRET")
    assert stored_state() == before


def test_a_failed_sync_says_its_reason_without_a_class_name(home, sandbox_factory):
    """Dagster writes a run's error as `engine.encryption.WrongMasterKey: ...`: a person
    reads the sentence only."""
    server = sandbox_factory([AccountSpec("globex", **SMALL)])
    globex = server.world.accounts["globex"].secret_key
    assert run_cli("connect", "globex", stdin=globex + "\n").returncode == 0
    result = run_cli("sync", "globex", env={"STRIPE_REPORTS_SECRET": "another-passphrase"},
                     timeout=300)
    assert result.returncode == 1, result.stderr
    said = result.stdout + result.stderr
    assert "Cannot read the key of client 'globex'" in said
    assert "WrongMasterKey" not in said and "engine." not in said and "Traceback" not in said


def test_the_store_itself_refuses_a_second_master_key(home, monkeypatch):
    """The lowest layer: the web page's reconnect and any other path save through it."""
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme")
    monkeypatch.setenv("STRIPE_REPORTS_SECRET", "another-passphrase")
    with ConnectionStore.from_settings() as other, pytest.raises(WrongMasterKey):
        _connect(other, "globex")
    with ConnectionStore.from_settings() as other:  # replacing the only key is no mix
        _connect(other, "acme", KEY[:-4] + "zzzz")
        assert other.secret_key("acme").endswith("zzzz")


# -- defect 8 and unbounded work: arguments ----------------------------------------------------


def test_sandbox_takes_its_own_options(home):
    shown = run_cli("sandbox", "--help")
    assert shown.returncode == 0 and "--seed" in shown.stdout and "--charges" in shown.stdout
    bad = run_cli("sandbox", "--port", "http")
    assert bad.returncode == 2 and "--port" in bad.stderr and "Traceback" not in bad.stderr
    process = subprocess.Popen(
        [str(CLI), "sandbox", "--port", "0", "--seed", "3", "--charges", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        base = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line).group(1)
        assert requests.get(f"{base}/v1/charges", timeout=10).status_code == 401
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.parametrize("start,end", [("0001-01-01", None), ("5100-01-01", "9999-12-31"),
                                       ("2001-01-01", "2024-12-31")])
def test_far_off_or_huge_periods_are_refused(reported, start, end):
    before = stored_state()
    args = ["--start", start] + (["--end", end] if end else [])
    result = run_cli("widget", "acme", "revenue_over_time", *args)
    refused(result, 2, start if end is None or start == "5100-01-01" else "3660 days")
    assert stored_state() == before


@pytest.mark.parametrize("currency,phrase", [
    ("XYZ", "has no XYZ payments: its currencies are"),
    ("us\x01", "'us\\x01' is not a currency code"),
    ("a" * 5000, "'aaaaaaaaaaaa…' is not a currency code"),
    ("usd1", "is not a currency code: give three letters"),
])
def test_a_currency_the_client_never_had_or_no_currency_at_all_is_refused(
        reported, currency, phrase):
    before = stored_state()
    line = refused(run_cli("widget", "acme", "gross_volume", "--currency", currency), 2, phrase)
    assert len(line) < 200 and "sync" not in line
    assert stored_state() == before
    shown = run_cli("widget", "acme", "gross_volume", "--currency", "USD", "--format", "json")
    assert shown.returncode == 0 and '"currency": "usd"' in shown.stdout


def test_the_web_answers_400_to_far_off_or_huge_periods(reported):
    from starlette.testclient import TestClient

    from apps.web.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as client:
        for start, end in (("0001-01-01", "2024-01-01"), ("5100-01-01", "9999-12-31"),
                           ("2001-01-01", "2024-12-31")):
            params = {"start": start, "end": end}
            api = client.get("/api/clients/acme/widgets/revenue_over_time", params=params)
            assert api.status_code == 400 and "between 2000-01-01" in api.json()["error"] \
                or "3660 days" in api.json()["error"]
            assert client.get("/api/clients/acme/widgets", params=params).status_code == 400
            assert client.get("/clients/acme", params=params).status_code == 400
        for path in ("/api/clients/a'b/status", "/clients/a'b/connect", "/clients/..x"):
            answer = client.get(path)
            assert answer.status_code == 400 and "Invalid client id" in answer.text, path


def test_serve_refuses_a_port_out_of_range_and_prints_the_real_one(home):
    result = run_cli("serve", "--port", "99999")
    assert result.returncode == 2 and "1 to 65535" in result.stderr
    assert "Traceback" not in result.stderr and "Report page" not in result.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli("serve", "--port", str(taken.getsockname()[1]))
        refused(busy, 1, "Choose another port")
    process = subprocess.Popen([str(CLI), "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", process.stdout.readline()).group(1)
        assert not url.endswith(":0/")
        assert requests.get(url, timeout=30).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=30)


# -- client ids: one guard on every path --------------------------------------------------------


def test_bad_or_unknown_client_ids_change_nothing(reported):
    before = stored_state()
    for name in ("", "../x", "a'b", "ACME"):
        refused(run_cli("sync", name), 2, "Invalid client id")
    for command in (["sync", "acm"], ["check", "acm"], ["disconnect", "acm"],
                    ["widget", "acm", "mrr"]):
        refused(run_cli(*command), 2, "Unknown client 'acm'", "Did you mean 'acme'?")
    refused(run_cli("connect", "../x", stdin=KEY + "\n"), 2, "Invalid client id")
    instance = get_instance()
    assert instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME) == []
    assert instance.get_runs() == []
    # the layer every launch path registers through
    with pytest.raises(ValueError, match="Invalid client id"):
        register_clients(instance, ["acme", "a'b"])
    assert instance.get_dynamic_partitions(CLIENTS_PARTITION_NAME) == []
    assert stored_state() == before


# -- schedules and clients.yaml ------------------------------------------------------------------


def _scheduled(instance) -> dict[str, list[str]]:
    tick = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    runs = {}
    for schedule in build_sync_schedules():
        context = build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                         repository_def=defs.get_repository_def())
        data = schedule.evaluate_tick(context)
        requests = [r for r in data.run_requests or [] if isinstance(r, RunRequest)]
        runs[schedule.name] = [c for r in requests for c in batch_clients(r.run_config)]
    return runs


def test_disconnected_purged_and_stray_clients_get_no_scheduled_run(home):
    with ConnectionStore.from_settings() as store:
        for client in ("acme", "globex", "initech"):
            _connect(store, client)
    instance = get_instance()
    register_clients(instance, ["acme", "globex", "initech", "stray"])
    assert run_cli("disconnect", "globex").returncode == 0
    assert run_cli("disconnect", "initech", "--purge").returncode == 0
    assert _scheduled(instance) == {"stripe_sync_hourly": ["acme"]}


def test_a_bad_client_entry_is_skipped_alone(home, monkeypatch):
    for name in ("ACME_KEY", "GLOBEX_KEY", "INITECH_KEY", "BAD_KEY", "HOOLI_KEY"):
        monkeypatch.setenv(name, "sk_test_a_key_in_the_environment")
    clients_file = Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"])
    clients_file.write_text(
        "clients:\n"
        "  acme: {key_env: ACME_KEY, schedule: '*/15 * * * *'}\n"
        "  globex: {key_env: GLOBEX_KEY, schedule: 'every hour'}\n"
        "  initech: {key_envv: INITECH_KEY}\n"
        "  Bad/Id: {key_env: BAD_KEY}\n"
        "  hooli: {key_env: HOOLI_KEY}\n")
    instance = get_instance()
    register_clients(instance, ["acme", "globex", "initech", "hooli"])
    assert _scheduled(instance) == {"stripe_sync_hourly": ["hooli"],
                                    "stripe_sync_x_15_x_x_x_x": ["acme"]}
    refused(run_cli("sync", "globex"), 2, "'globex' is left out", "'every hour'")
    refused(run_cli("sync", "initech"), 2, "unknown field(s) key_envv")
    assert instance.get_runs() == []


@pytest.mark.parametrize("body,phrase", [
    ("clients:\n  acme: {key_env: A}\n  acme: {key_env: B}\n", "'acme' is declared twice"),
    ("clients:\n  acme: {key_env: A\n", "is not valid YAML at line 3"),
    ("- acme\n", "must hold a mapping `clients:`"),
])
def test_an_unreadable_clients_file_is_one_clear_line(reported, body, phrase):
    Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"]).write_text(body)
    before = stored_state()
    refused(run_cli("sync", "acme"), 2, phrase)
    refused(run_cli("sync", "--all"), 2, phrase)
    assert {s.name for s in build_sync_schedules()} == {"stripe_sync_hourly"}  # still loads
    assert get_instance().get_runs() == [] and stored_state() == before


# -- a broken environment ------------------------------------------------------------------------


def test_a_warehouse_that_is_not_duckdb_is_named(home):
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme")
    warehouse = load_settings().warehouse_path
    warehouse.write_bytes(b"this is not a DuckDB file\n" * 100)
    refused(run_cli("widget", "acme", "mrr"), 1, str(warehouse), "not a database",
            "STRIPE_REPORTS_WAREHOUSE")
    assert warehouse.read_bytes() == b"this is not a DuckDB file\n" * 100


def test_a_damaged_connection_store_is_named(home):
    store_file = load_settings().home / "connections.db"
    store_file.write_bytes(b"garbage " * 512)
    for command in (["clients"], ["check"], ["sync", "acme"]):
        refused(run_cli(*command), 1, str(store_file), "damaged or not a database")
    assert store_file.read_bytes() == b"garbage " * 512


def _read_only(path: Path) -> list[str]:
    """A command prefix that runs with `path` read-only (a read-only bind mount as root,
    where permissions do not apply; else the folder's write bits cleared)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return []
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a mount namespace to make a folder read-only as root")
    script = f'mount --bind "{path}" "{path}" && mount -o remount,bind,ro "{path}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh"]


def test_a_read_only_home_still_lists_clients_and_says_why_it_cannot_write(reported):
    home = load_settings().home
    before = stored_state()
    prefix = _read_only(home)
    try:
        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*prefix, str(CLI), *args], capture_output=True, text=True,
                                  timeout=120, env=dict(os.environ), cwd="/")

        listed = run("clients")
        assert listed.returncode == 0 and "acme" in listed.stdout, listed.stderr
        refused(run("disconnect", "acme"), 1, "read-only", "STRIPE_REPORTS_HOME")
        widget = run("widget", "acme", "mrr")
        if widget.returncode:  # reading needs the warehouse's lock files beside it
            refused(widget, 1, "read-only")
    finally:
        home.chmod(0o700)
    assert stored_state() == before


def _file_size_limit(limit: int) -> list[str]:
    """A command prefix that runs with files capped at `limit` bytes, as on a full disk
    (Python ignores SIGXFSZ: an oversized write fails with EFBIG). A small exec wrapper,
    since preexec_fn is unsafe in this threaded test process."""
    code = ("import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", code]


def test_a_full_disk_is_said_with_where(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("globex", **SMALL)])
    with ConnectionStore.from_settings() as store:
        _connect(store, "acme")
    before = stored_state()
    key = server.world.accounts["globex"].secret_key
    result = subprocess.run([*_file_size_limit(8192), str(CLI), "connect", "globex"],
                            input=key + "\n", capture_output=True, text=True, timeout=120,
                            env=dict(os.environ), cwd=str(home))
    refused(result, 1, "disk is full", "connections.db", "df -h")
    assert stored_state() == before
