"""Dagster's production layout on a real PostgreSQL server: the instance selected by
STRIPE_REPORTS_DAGSTER_STORAGE_URL, the code location served by `dagster api grpc`, and a real
`dagster-daemon` whose per-client schedule syncs two clients, with the runs and their events
found in PostgreSQL afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetMaterialization, DagsterRunStatus, RunsFilter

from engine.settings import SettingsError
from engine.user_errors import CommandError
from engine.warehouse_factory import warehouse_from_settings
from pipelines.instance import STORAGE_URL_ENV, ensure_dagster_home, get_instance
from pipelines.jobs import SYNC_JOB_NAME
from sandbox import AccountSpec
from support.postgres_server import PostgresServer
from tests.test_daemon import _stop

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SCHEDULE = "stripe_sync_x_x_x_x_x"  # the name schedules.py gives the cron "* * * * *"
CLIENTS = {"acme": 120, "globex": 80}  # client -> charges in the sandbox
RUN_DEADLINE_SECONDS = 150  # a tick comes at the top of each minute, then two runs
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _dagster_database(server: PostgresServer) -> tuple[str, str]:
    """A fresh database; its plain postgresql:// URL (the setting's form) and its name."""
    url = server.create_database()
    return url.replace("postgresql+psycopg2://", "postgresql://", 1), url.rsplit("/", 1)[1]


def _query(server: PostgresServer, database: str, sql: str) -> list[tuple]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.postgres
def test_the_storage_url_alone_puts_the_instance_in_postgresql(home, postgres_server, monkeypatch):
    url, database = _dagster_database(postgres_server)
    monkeypatch.setenv(STORAGE_URL_ENV, url)
    instance = get_instance()
    instance.add_dynamic_partitions("stripe_clients", ["acme"])
    instance.report_runless_asset_event(AssetMaterialization("probe"))  # an event: NOTIFY too

    # Dagster created its tables in PostgreSQL and the rows are there, not in SQLite.
    assert _query(postgres_server, database, "SELECT partition FROM dynamic_partitions") == [
        ("acme",)]
    assert _query(postgres_server, database, "SELECT count(*) FROM event_logs WHERE "
                  "dagster_event_type = 'ASSET_MATERIALIZATION'") == [(1,)]
    home_files = {p.name for p in (home / "dagster_home").rglob("*") if p.is_file()}
    assert not {n for n in home_files if n.endswith(".db")}, home_files
    # The file names the variable: the password never lands on disk.
    config = (home / "dagster_home" / "dagster.yaml").read_text()
    assert postgres_server.password not in config
    # The queue keeps its per-client and global limits on PostgreSQL too.
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs >= 1
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in queue.tag_concurrency_limits


def test_sqlite_stays_the_default_and_unsetting_the_url_returns_to_it(home, monkeypatch):
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql://u:p@127.0.0.1:1/none")
    config = yaml.safe_load((ensure_dagster_home() / "dagster.yaml").read_text())
    assert config["storage"]["custom"]["config"] == {"postgres_url": {"env": STORAGE_URL_ENV}}
    monkeypatch.delenv(STORAGE_URL_ENV)
    config = yaml.safe_load((ensure_dagster_home() / "dagster.yaml").read_text())
    assert "sqlite" in config["storage"]
    assert type(get_instance().run_storage).__name__ == "SqliteRunStorage"


@pytest.mark.parametrize("bad", ["mysql://u:hunter2@db/x", "hunter2", "sqlite:///x.db"])
def test_a_url_that_is_not_postgresql_is_refused_in_one_line(home, monkeypatch, bad):
    monkeypatch.setenv(STORAGE_URL_ENV, bad)
    with pytest.raises(SettingsError) as refused:
        ensure_dagster_home()
    message = str(refused.value)
    assert STORAGE_URL_ENV in message and "postgresql://" in message and "\n" not in message
    assert "hunter2" not in message  # the URL's password is never echoed
    assert not (home / "dagster_home" / "dagster.yaml").exists()


def test_a_hand_written_instance_is_left_alone_and_a_conflict_is_named(home, monkeypatch):
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    own = "storage:\n  sqlite:\n    base_dir: /somewhere\n"
    (dagster_home / "dagster.yaml").write_text(own)
    ensure_dagster_home()
    assert (dagster_home / "dagster.yaml").read_text() == own
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql://u:p@127.0.0.1:1/none")
    with pytest.raises(CommandError, match="edited by hand"):
        ensure_dagster_home()
    assert (dagster_home / "dagster.yaml").read_text() == own


# --- the production layout, end to end ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return f"--- {log.name}\n" + "\n".join(text.splitlines()[-lines:])


def _wait_for_code_server(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the code server exited:\n{_tail(log)}"
        probe = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--port",
                                str(port)], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the code server did not answer on port {port}:\n{_tail(log)}")


def _grpc_workspace(tmp_path: Path, port: int) -> Path:
    """deploy/workspace.yaml, pointed at this test's code server instead of the compose host."""
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    entry = workspace["load_from"][0]["grpc_server"]
    entry.update(host="127.0.0.1", port=port)
    path = tmp_path / "workspace.yaml"
    path.write_text(yaml.safe_dump(workspace))
    return path


def _wait_for_runs(processes: list[tuple[subprocess.Popen, Path]]) -> list:
    instance = get_instance()
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        for process, log in processes:
            assert process.poll() is None, f"{log.stem} exited:\n{_tail(log)}"
        runs = instance.get_runs(filters=RunsFilter(job_name=SYNC_JOB_NAME))
        finished = {r.tags.get("dagster/partition") for r in runs if r.status in FINISHED}
        if set(CLIENTS) <= finished:
            return runs
        time.sleep(1)
    logs = "\n".join(_tail(log) for _, log in processes)
    pytest.fail(f"no finished run for each of {sorted(CLIENTS)} after {RUN_DEADLINE_SECONDS}s:"
                f"\n{logs}")


def _setup_clients(home: Path, sandbox_factory, monkeypatch) -> None:
    server = sandbox_factory([AccountSpec(c, charges=n) for c, n in CLIENTS.items()])
    entries = "".join(f'  {c}: {{key_env: {c.upper()}_KEY, schedule: "* * * * *"}}\n'
                      for c in CLIENTS)
    (home.parent / "clients.yaml").write_text("clients:\n" + entries)
    for client in CLIENTS:  # the daemon, the code server and its run workers inherit them
        monkeypatch.setenv(f"{client.upper()}_KEY", server.world.accounts[client].secret_key)


@pytest.mark.postgres
@pytest.mark.slow
def test_the_daemon_and_a_grpc_code_server_sync_two_clients_into_postgresql(
        home, postgres_server, sandbox_factory, monkeypatch, tmp_path):
    url, database = _dagster_database(postgres_server)
    monkeypatch.setenv(STORAGE_URL_ENV, url)
    _setup_clients(home, sandbox_factory, monkeypatch)
    # What `connect` does: each client is a partition (written to PostgreSQL).
    get_instance().add_dynamic_partitions("stripe_clients", sorted(CLIENTS))
    env = dict(os.environ)

    port = _free_port()
    code_log, daemon_log = tmp_path / "code-server.log", tmp_path / "daemon.log"
    code_server = _start([str(BIN / "dagster"), "api", "grpc", "-m", "pipelines.definitions",
                          "--host", "127.0.0.1", "--port", str(port)], env, code_log)
    processes = [(code_server, code_log)]
    try:
        _wait_for_code_server(port, code_server, code_log)
        workspace = ["-w", str(_grpc_workspace(tmp_path, port))]
        started = subprocess.run([str(BIN / "dagster"), "schedule", "start", SCHEDULE,
                                  *workspace], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        processes.append((_start([str(BIN / "dagster-daemon"), "run", *workspace], env,
                                 daemon_log), daemon_log))
        runs = _wait_for_runs(processes)
    finally:
        for process, _ in reversed(processes):
            _stop(process)
    _assert_runs_and_rows(postgres_server, database, runs, daemon_log)


def _assert_runs_and_rows(server: PostgresServer, database: str, runs: list,
                          daemon_log: Path) -> None:
    by_client = {r.tags.get("dagster/partition"): r for r in runs}
    for client in CLIENTS:
        assert by_client[client].status == DagsterRunStatus.SUCCESS, _tail(daemon_log)
    # Straight from PostgreSQL: the runs, who launched them, and their events.
    rows = _query(server, database, "SELECT partition, status FROM runs "
                  f"WHERE pipeline_name = '{SYNC_JOB_NAME}' ORDER BY partition")
    assert rows == [(c, "SUCCESS") for c in sorted(CLIENTS)]
    schedules = _query(server, database, "SELECT DISTINCT value FROM run_tags "
                       "WHERE key = 'dagster/schedule_name'")
    assert schedules == [(SCHEDULE,)]
    events = dict(_query(server, database, "SELECT r.partition, count(*) FROM event_logs e "
                         "JOIN runs r ON r.run_id = e.run_id WHERE e.dagster_event_type = "
                         "'ASSET_MATERIALIZATION' GROUP BY r.partition"))
    assert set(events) == set(CLIENTS) and min(events.values()) > 0, events
    with warehouse_from_settings().reader() as conn:
        synced = dict(conn.execute(
            "SELECT client_id, count(*) FROM stripe.charges GROUP BY client_id").fetchall())
    assert synced == CLIENTS
