"""Settings from the environment, as a user meets them through the real command: one typed
reader (engine/settings.py), database URLs taken in the forms users write, and one clear line
for a value that cannot be used."""

from __future__ import annotations

import json
import socket
import time
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from engine.postgres_check import (
    CONNECT_TIMEOUT_SECONDS,
    DatabaseUnreachable,
    check_dagster_storage,
)
from engine.settings import load_settings
from sandbox import AccountSpec
from tests.test_bad_input import SMALL, refused, run_cli


@pytest.mark.parametrize("value", ["soon", "-5", "nan"])
def test_a_bad_retry_budget_is_one_line_naming_the_variable(home: Path, value: str) -> None:
    result = run_cli("clients", env={"STRIPE_REPORTS_RETRY_SECONDS": value})
    line = refused(result, 2, "STRIPE_REPORTS_RETRY_SECONDS")
    assert value not in line.replace("STRIPE_REPORTS_RETRY_SECONDS", "")


def test_settings_follow_the_environment_as_it_changes(home: Path, monkeypatch) -> None:
    assert load_settings().retry_seconds == 180
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "2.5")
    assert load_settings().retry_seconds == 2.5
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "")  # empty: unset
    assert load_settings().retry_seconds == 180
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9/")
    assert load_settings().api_base == "http://127.0.0.1:9"


# -- database URLs ------------------------------------------------------------------------------


def _plain(url: str, scheme: str) -> str:
    """The suite's psycopg2 URL written as a user would: `postgresql://` or `postgres://`."""
    return f"{scheme}://{url.split('://', 1)[1]}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_store_takes_a_plain_postgresql_url(home, sandbox_factory, postgres_server,
                                                scheme) -> None:
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    url = _plain(postgres_server.create_database(), scheme)
    env = {"STRIPE_REPORTS_CONNECTIONS_URL": url}
    key = server.world.accounts["acme"].secret_key
    connected = run_cli("connect", "acme", stdin=key + "\n", env=env)
    assert connected.returncode == 0, connected.stderr
    listed = run_cli("clients", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [c["client_id"] for c in json.loads(listed.stdout)] == ["acme"]
    # The row is in PostgreSQL, not in a SQLite file beside the home.
    assert not (home / "connections.db").exists()
    with closing(psycopg2.connect(_plain(url, "postgresql"))) as connection, \
            connection.cursor() as cursor:
        cursor.execute("SELECT client_id FROM stripe_connections")
        assert cursor.fetchall() == [("acme",)]


@pytest.mark.parametrize("url", ["mysql://u:hunter2@db/x", "postgresql+psycopg://u:hunter2@h/x",
                                 "hunter2"])
def test_a_store_url_of_another_kind_is_one_line(home, url: str) -> None:
    line = refused(run_cli("clients", env={"STRIPE_REPORTS_CONNECTIONS_URL": url}), 2,
                   "STRIPE_REPORTS_CONNECTIONS_URL", "sqlite:///", "postgresql://")
    assert "hunter2" not in line
    assert not (home / "connections.db").exists()


def _silent_server() -> socket.socket:
    """A port that accepts connections and never answers: a server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def test_an_unusable_dagster_storage_is_one_line_in_seconds(home, postgres_server) -> None:
    wrong_password = postgres_server.url().replace(f":{postgres_server.password}@", ":hunter2@")
    with _silent_server() as silent:
        hanging = f"postgresql://u:hunter2@127.0.0.1:{silent.getsockname()[1]}/db"
        for url, phrase in ((wrong_password, "password authentication failed"),
                            (hanging, "timeout"), ("mysql://u:hunter2@db/x", "postgresql://")):
            started = time.monotonic()
            result = run_cli("sync", "acme", env={
                "STRIPE_REPORTS_DAGSTER_STORAGE_URL": url,
                "STRIPE_REPORTS_CLIENTS_FILE": str(_declared(home, "acme")),
                "DECLARED_KEY": "sk_test_" + "D3claredKeyBody" * 3})
            line = refused(result, 2 if url.startswith("mysql") else 1,
                           "STRIPE_REPORTS_DAGSTER_STORAGE_URL", phrase)
            assert "hunter2" not in line
            # Start-up (seconds on a loaded machine) plus one 5 s connect timeout at most.
            assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS + 12


def test_the_probe_itself_gives_up_after_the_connect_timeout(home, monkeypatch) -> None:
    with _silent_server() as silent:
        monkeypatch.setenv("STRIPE_REPORTS_DAGSTER_STORAGE_URL",
                           f"postgres://u:p@127.0.0.1:{silent.getsockname()[1]}/db")
        started = time.monotonic()
        with pytest.raises(DatabaseUnreachable, match="STRIPE_REPORTS_DAGSTER_STORAGE_URL"):
            check_dagster_storage()
        assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS + 2


def _declared(home: Path, client_id: str) -> Path:
    path = home.parent / "declared.yaml"
    path.write_text(f"clients:\n  {client_id}:\n    key_env: DECLARED_KEY\n")
    return path


def test_connect_stores_nothing_when_the_dagster_storage_cannot_be_opened(
        home, sandbox_factory, postgres_server) -> None:
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    wrong_password = postgres_server.url().replace(f":{postgres_server.password}@", ":hunter2@")
    key = server.world.accounts["acme"].secret_key
    result = run_cli("connect", "acme", stdin=key + "\n",
                     env={"STRIPE_REPORTS_DAGSTER_STORAGE_URL": wrong_password})
    refused(result, 1, "STRIPE_REPORTS_DAGSTER_STORAGE_URL", "password authentication failed")
    listed = run_cli("clients", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
