"""A real, throwaway PostgreSQL server for the tests, from Debian's `postgresql` package.

`initdb` a cluster in a temporary folder, start it on a free port on 127.0.0.1 (and a
Unix socket in that folder, nowhere else), hand out databases, and stop and delete it
all at the end. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user (`runuser -u postgres --`) in a folder that user owns.

Use from tests/conftest.py: `pytest_plugins = ["support.postgres_server"]` (or import the
fixtures) to get the `postgres_server` and `postgres_url` session fixtures. Without
PostgreSQL binaries they skip, saying how to install them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

_SERVER_USER = "postgres"
_SUPERUSER = "postgres"
_START_TIMEOUT_SECONDS = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be run here; the message says why (the tests skip)."""


def find_bin_dir() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` holding initdb and pg_ctl (or PATH's)."""
    candidates = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=lambda bin_dir: _version_key(bin_dir.parent.name),
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked for initdb and pg_ctl in "
        "/usr/lib/postgresql/*/bin and on PATH): install Debian's `postgresql` package "
        "(`make test` does, through scripts/system-deps.sh, when run as root)."
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """How to run the server's commands: as ourselves, or as `postgres` when we are root."""
    if os.geteuid() != 0:
        return [], None
    try:
        account = pwd.getpwnam(_SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no `{_SERVER_USER}` system user to run PostgreSQL "
            "as (PostgreSQL refuses to run as root): install Debian's `postgresql` package."
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and `runuser` (util-linux) is missing.")
    return [runuser, "-u", _SERVER_USER, "--"], account


@dataclass
class PostgresServer:
    """A running server; `url()` gives a SQLAlchemy URL to a database on it."""

    bin_dir: Path
    root: Path
    port: int
    password: str = field(repr=False)
    run_as: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    database: str = "stripe_reports_test"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str | None = None) -> str:
        return (
            f"postgresql+psycopg2://{_SUPERUSER}:{self.password}@{self.host}:{self.port}/"
            f"{database or self.database}"
        )

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=_SUPERUSER,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=10,
        )

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database (a fresh one per test keeps tests apart); its URL."""
        name = name or f"test_{secrets.token_hex(6)}"
        connection = self.connect("postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def dump_table(self, table: str, database: str | None = None) -> str:
        """`pg_dump` of one table, schema and data: what a backup of it would hold."""
        completed = subprocess.run(
            [
                str(self.bin_dir / "pg_dump"),
                f"--host={self.host}",
                f"--port={self.port}",
                f"--username={_SUPERUSER}",
                f"--table={table}",
                database or self.database,
            ],
            env={**os.environ, "PGPASSWORD": self.password},  # never on the command line
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {completed.stderr.strip()}")
        return completed.stdout

    def stop(self) -> None:
        """Stop the server at once, as a crash or a restart would (`immediate` mode)."""
        _stop(self)

    def start(self) -> None:
        _run(self, str(self.bin_dir / "pg_ctl"), "start", f"--pgdata={self.data_dir}",
             f"--log={self.log_file}", "--wait", f"--timeout={_START_TIMEOUT_SECONDS}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _run(server: PostgresServer, *command: str) -> None:
    completed = subprocess.run(
        [*server.run_as, *command],
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_SECONDS + 30,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}\n{server.log_tail()}"
        )


def _write_private(path: Path, content: str, owner: pwd.struct_passwd | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _init_cluster(server: PostgresServer, owner: pwd.struct_passwd | None) -> None:
    password_file = server.root / "password"
    _write_private(password_file, server.password + "\n", owner)
    try:
        _run(
            server,
            str(server.bin_dir / "initdb"),
            f"--pgdata={server.data_dir}",
            f"--username={_SUPERUSER}",
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
    finally:
        password_file.unlink(missing_ok=True)
    # Appending keeps the file's owner; later settings win over initdb's defaults.
    with (server.data_dir / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# stripe-reports tests: local only, throwaway, fast\n"
            f"listen_addresses = '{server.host}'\n"
            f"port = {server.port}\n"
            f"unix_socket_directories = '{server.root}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 50\nshared_buffers = 16MB\n"
        )


def _stop(server: PostgresServer) -> None:
    subprocess.run(
        [
            *server.run_as,
            str(server.bin_dir / "pg_ctl"),
            "stop",
            f"--pgdata={server.data_dir}",
            "--mode=immediate",
            "--wait",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server with one empty database; stop it and delete it after."""
    bin_dir = find_bin_dir()
    run_as, owner = _run_as_prefix()
    root = Path(tempfile.mkdtemp(prefix="stripe-reports-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(
        bin_dir=bin_dir,
        root=root,
        port=_free_port(),
        password=secrets.token_urlsafe(18),
        run_as=run_as,
    )
    try:
        _init_cluster(server, owner)
        _run(
            server,
            str(bin_dir / "pg_ctl"),
            "start",
            f"--pgdata={server.data_dir}",
            f"--log={server.log_file}",
            "--wait",
            f"--timeout={_START_TIMEOUT_SECONDS}",
        )
        server.create_database(server.database)
        yield server
    finally:
        if (server.data_dir / "PG_VERSION").exists():  # even a half-started server is stopped
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session (skips when none can be run here)."""
    try:
        find_bin_dir()
        _run_as_prefix()
    except PostgresUnavailable as reason:
        pytest.skip(str(reason))
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (`postgresql+psycopg2://...`) of the session's test database."""
    return postgres_server.url()
