"""The connection store: each client's Stripe account, its encrypted key and its health.

One row per client in `stripe_connections`, and one row per credential check in
`credential_checks`. Any SQLAlchemy URL works; SQLite (the default) and PostgreSQL are
tested. Several processes (the CLI, Dagster runs) use the store at once: on SQLite every
write takes the write lock up front (`BEGIN IMMEDIATE`) and waits for it (busy timeout)
rather than failing with "database is locked", and WAL lets readers carry on meanwhile.

Stripe secret keys leave this module only through `ConnectionStore.secret_key`; they are
never logged, never put in an exception, and only ever stored encrypted.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import JSON, Column, DateTime, Text, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, create_engine, delete, select

from engine.encryption import KeyCipher, WrongMasterKey
from engine.keys import mask_key
from engine.postgres_check import CONNECT_TIMEOUT_SECONDS, DatabaseUnreachable
from engine.settings import CONNECTIONS_URL_ENV, Settings, load_settings

CLIENT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SQLITE_BUSY_TIMEOUT_SECONDS = 60
_IMMEDIATE = "stripe_reports_immediate"  # execution option: take SQLite's write lock at BEGIN
_PG_CREATE_LOCK = 0x5354_5250  # advisory lock id serialising CREATE TABLE on PostgreSQL


class ConnectionState(str, Enum):
    CONNECTED = "connected"
    FAILED = "failed"
    DISCONNECTED = "disconnected"


class ClientNotConnected(LookupError):
    """No usable Stripe key is stored for a client; the message says how to connect it."""

    def __init__(self, client_id: str, detail: str = "has no stored Stripe key", *,
                 advice: bool = True) -> None:
        self.client_id = client_id
        # `advice=False`: the detail already says what to do.
        super().__init__(
            f"Client '{client_id}' {detail}." + (
                f" Run `stripe-reports connect {client_id}` and paste the client's Stripe "
                "Secret key (Stripe Dashboard: Developers → API keys)." if advice else "")
        )


class InvalidClientId(ValueError):
    """A client id that is not a slug; the message says what a valid one looks like."""


def check_client_id(client_id: object) -> str:
    """The client id if it is a slug ([a-z0-9_-], starting with a letter or digit).

    The one guard every path uses (CLI, web page, clients.yaml, partition registration):
    an id becomes a Dagster partition, a file name and a URL segment.
    """
    if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise InvalidClientId(
            f"Invalid client id {client_id!r}: use 1 to 63 lower-case letters, digits, '-' or "
            "'_', starting with a letter or a digit (for example 'acme-shop')."
        )
    return client_id


def check_client_ids(client_ids: Iterable[object]) -> list[str]:
    """Every id checked with check_client_id before any of them is used."""
    return [check_client_id(client_id) for client_id in client_ids]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite (no time zones) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite hands back what we wrote: UTC without the zone
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _utc_column(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class StripeConnection(SQLModel, table=True):
    __tablename__ = "stripe_connections"

    client_id: str = Field(primary_key=True, max_length=63)
    name: str
    account_id: str
    account_name: str | None = None
    livemode: bool
    stripe_account: str | None = None  # Connect account id, sent as the Stripe-Account header
    encrypted_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    masked_key: str | None = None
    state: str = ConnectionState.CONNECTED.value
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    steps: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error_code: str | None = None
    request_id: str | None = None
    last_check_at: datetime | None = _utc_column()
    last_check_ok: bool | None = None
    missing_permissions: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    last_sync_at: datetime | None = _utc_column()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class CredentialCheck(SQLModel, table=True):
    """One credential check's outcome: the history behind `last_check_*`."""

    __tablename__ = "credential_checks"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(index=True, max_length=63)
    checked_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ok: bool
    error_code: str | None = None
    request_id: str | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


_TABLES = [StripeConnection.__table__, CredentialCheck.__table__]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ClientConnection:
    """What the store knows about a client, without its key."""

    client_id: str
    name: str
    account_id: str
    account_name: str | None
    livemode: bool
    stripe_account: str | None
    masked_key: str | None
    state: ConnectionState
    reason: str | None
    steps: tuple[str, ...]
    error_code: str | None
    request_id: str | None
    missing_permissions: tuple[str, ...]
    last_check_at: datetime | None
    last_check_ok: bool | None
    last_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Whether `connect` stored a key; a client whose key is in the environment has none.
    key_stored: bool = False

    @property
    def connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO 8601 timestamps, the state as its name, lists for tuples."""
        data = asdict(self)
        for field, value in data.items():
            if isinstance(value, datetime):
                data[field] = value.isoformat()
            elif isinstance(value, tuple):
                data[field] = list(value)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class CheckRecord:
    client_id: str
    checked_at: datetime
    ok: bool
    error_code: str | None
    request_id: str | None
    reason: str | None


def _to_connection(row: StripeConnection) -> ClientConnection:
    return ClientConnection(
        client_id=row.client_id,
        name=row.name,
        account_id=row.account_id,
        account_name=row.account_name,
        livemode=row.livemode,
        stripe_account=row.stripe_account,
        masked_key=row.masked_key,
        state=ConnectionState(row.state),
        reason=row.reason,
        steps=tuple(row.steps or ()),
        error_code=row.error_code,
        request_id=row.request_id,
        missing_permissions=tuple(row.missing_permissions or ()),
        last_check_at=row.last_check_at,
        last_check_ok=row.last_check_ok,
        last_sync_at=row.last_sync_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        key_stored=row.encrypted_key is not None,
    )


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (it stays so) so readers never wait for writers.

    Switching needs a moment alone with the file and SQLite does not wait for it (no busy
    handler): when several processes open a new store at once, the others retry here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _read_only_url(path: Path) -> str | None:
    """A read-only URL for a store whose folder cannot be written (a read-only mount).

    SQLite needs to write beside a WAL database even to read it; a file nobody is writing
    (no -wal beside it) is opened as immutable instead, so `clients` and widgets still work.
    """
    if not path.exists() or os.access(path.parent, os.W_OK):
        return None
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    return f"sqlite:///file:{quote(str(path))}?mode=ro{immutable}&uri=true"


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    read_only = None
    if not in_memory:
        path = Path(parsed.database).expanduser()
        # A folder we create is private: it holds the store (and usually the key file).
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        read_only = _read_only_url(path)
    engine = create_engine(
        read_only or url,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy say BEGIN itself (below), so writes can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        if read_only is None:
            _enable_wal(dbapi_connection)
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes cannot wait for the lock (SQLite
        # answers "database is locked" at once), so writers take it when they begin.
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _engine_for(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # hide_parameters: a failed statement's message must not quote the stored values.
    return create_engine(url, hide_parameters=True, pool_pre_ping=True,
                         connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})


def store_engine(url: str) -> Engine:
    """An engine on the store's database, set up as the store's own (WAL, write locks): for
    tables beside the connections, such as the delivery log."""
    return _engine_for(url)


def create_tables_once(engine: Engine, tables: list[Any]) -> None:
    """Create `tables` once, even when several processes open a new database at once."""
    with engine.connect() as connection:
        existing = set(inspect(connection).get_table_names())
    if {table.name for table in tables} <= existing:
        return  # the usual case: no write lock needed just to open the store
    with engine.connect() as connection:
        connection = connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_CREATE_LOCK})"))
            SQLModel.metadata.create_all(connection, tables=tables)


@contextmanager
def writing(engine: Engine) -> Iterator[Session]:
    """One atomic write that takes SQLite's write lock when it begins (see _on_begin)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.connection(execution_options={_IMMEDIATE: True})
        yield session


class ConnectionStore:
    """Clients' Stripe connections, stored with their keys encrypted."""

    def __init__(self, url: str, cipher: KeyCipher) -> None:
        self._cipher = cipher
        self._engine = _engine_for(url)
        try:
            self._create_tables()
        except OperationalError as error:  # the first connection: a wrong URL, host, password
            if self._engine.dialect.name != "postgresql":
                raise
            raise DatabaseUnreachable(CONNECTIONS_URL_ENV, url, error) from None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ConnectionStore:
        settings = settings or load_settings()
        return cls(settings.connections_url, KeyCipher.from_settings(settings))

    def __repr__(self) -> str:
        return f"ConnectionStore({self._engine.url!r})"  # SQLAlchemy masks a password

    def close(self) -> None:
        self._engine.dispose()

    @property
    def sql_engine(self) -> Engine:
        """The store's database, for the tables kept beside it (engine/access_records.py)."""
        return self._engine

    def derive_key(self, purpose: str) -> bytes:
        """A signing key derived from this store's master key (see KeyCipher.derive)."""
        return self._cipher.derive(purpose)

    def __enter__(self) -> ConnectionStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- sessions ---------------------------------------------------------------------

    def _create_tables(self) -> None:
        create_tables_once(self._engine, _TABLES)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with Session(self._engine) as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One atomic write: committed when the block ends, rolled back if it raises."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            session.connection(execution_options={_IMMEDIATE: True})
            yield session

    @staticmethod
    def _locked_row(session: Session, client_id: str) -> StripeConnection:
        row = session.get(StripeConnection, client_id, with_for_update=True)
        if row is None:
            raise ClientNotConnected(client_id, "is not connected")
        return row

    def _check_master_key(self, session: Session, client_id: str | None) -> None:
        """Refuse a master key that cannot open the keys already stored (but `client_id`'s
        own, which is being replaced): one store must never hold keys under two master keys."""
        rows = session.exec(
            select(StripeConnection.client_id, StripeConnection.encrypted_key)
            .where(col(StripeConnection.encrypted_key).is_not(None))
        )
        for other, token in rows:
            if other == client_id:
                continue
            try:
                self._cipher.decrypt(token)
            except WrongMasterKey:
                raise WrongMasterKey(
                    f"The master key this process uses ({self._cipher.source}) cannot open the "
                    f"Stripe keys already in the connection store (client '{other}'), so nothing "
                    "was stored: one store keeps one master key. Set STRIPE_REPORTS_SECRET to the "
                    "master key the store was created with (unset, the key file in "
                    "STRIPE_REPORTS_HOME is used) and run the command again."
                ) from None

    def verify_master_key(self, client_id: str | None = None) -> None:
        """Raise WrongMasterKey now if saving `client_id`'s key would be refused for it."""
        with self._reading() as session:
            self._check_master_key(session, client_id)

    # -- reading ----------------------------------------------------------------------

    def get(self, client_id: str) -> ClientConnection | None:
        with self._reading() as session:
            row = session.get(StripeConnection, client_id)
            return None if row is None else _to_connection(row)

    def list(self) -> list[ClientConnection]:
        with self._reading() as session:
            rows = session.exec(select(StripeConnection).order_by(StripeConnection.client_id))
            return [_to_connection(row) for row in rows]

    def secret_key(self, client_id: str) -> str:
        """The client's Stripe secret key, decrypted. Keep it out of logs and messages."""
        with self._reading() as session:
            row = session.get(StripeConnection, client_id)
            if row is None:
                raise ClientNotConnected(client_id, "is not connected")
            if row.encrypted_key is None:
                raise ClientNotConnected(client_id, "was disconnected and has no stored key")
            token = row.encrypted_key
        try:
            return self._cipher.decrypt(token)
        except WrongMasterKey as error:
            raise WrongMasterKey(f"Cannot read the key of client '{client_id}': {error}") from None

    def check_history(self, client_id: str, limit: int = 20) -> list[CheckRecord]:
        """The client's latest credential checks, newest first."""
        with self._reading() as session:
            rows = session.exec(
                select(CredentialCheck)
                .where(CredentialCheck.client_id == client_id)
                .order_by(col(CredentialCheck.checked_at).desc(), col(CredentialCheck.id).desc())
                .limit(limit)
            )
            return [
                CheckRecord(**row.model_dump(exclude={"id"}))
                for row in rows
            ]

    # -- writing ----------------------------------------------------------------------

    def save_connection(
        self,
        client_id: str,
        *,
        secret_key: str,
        account_id: str,
        account_name: str | None = None,
        livemode: bool,
        name: str | None = None,
        stripe_account: str | None = None,
        missing_permissions: tuple[str, ...] | list[str] = (),
    ) -> ClientConnection:
        """Store a validated key: the client is `connected` and the check is recorded ok.

        Connecting an existing client again replaces its key, account and state and keeps
        its creation time, name (unless a new one is given) and last sync.
        """
        check_client_id(client_id)
        _check_account_id(account_id)
        now = utc_now()
        encrypted = self._cipher.encrypt(secret_key)
        with self._writing() as session:
            self._check_master_key(session, client_id)
            row = session.get(StripeConnection, client_id, with_for_update=True)
            if row is None:
                row = StripeConnection(
                    client_id=client_id,
                    name=name or client_id,
                    account_id=account_id,
                    livemode=livemode,
                    created_at=now,
                    updated_at=now,
                )
            row.name = name or row.name
            row.account_id = account_id
            row.account_name = account_name
            row.livemode = livemode
            row.stripe_account = stripe_account
            row.encrypted_key = encrypted
            row.masked_key = mask_key(secret_key)
            row.missing_permissions = list(missing_permissions)
            _mark_checked(row, now, CheckOutcome(ok=True))
            session.add(row)
            session.add(CredentialCheck(client_id=client_id, checked_at=now, ok=True))
            session.flush()
            return _to_connection(row)

    def record_check(
        self,
        client_id: str,
        *,
        ok: bool,
        reason: str | None = None,
        steps: tuple[str, ...] | list[str] = (),
        error_code: str | None = None,
        request_id: str | None = None,
        missing_permissions: tuple[str, ...] | list[str] | None = None,
        account_id: str | None = None,
    ) -> ClientConnection:
        """Record a credential check: ok makes the client `connected`, not ok `failed`.

        `missing_permissions=None` keeps the ones already recorded. `account_id`, the
        account a passing check found, fills a client stored without one (never replaces
        one: a key of another account fails the check instead).
        """
        if account_id is not None:
            _check_account_id(account_id)
        now = utc_now()
        with self._writing() as session:
            row = self._locked_row(session, client_id)
            if row.state == ConnectionState.DISCONNECTED.value:  # meanwhile: nothing to mark
                raise ClientNotConnected(client_id, "was disconnected and has no stored key")
            _mark_checked(row, now, CheckOutcome(ok, reason, steps, error_code, request_id))
            if missing_permissions is not None:
                row.missing_permissions = list(missing_permissions)
            if ok and account_id and not row.account_id:
                row.account_id = account_id
            session.add(row)
            session.add(CredentialCheck(client_id=client_id, checked_at=now, ok=ok,
                                        error_code=error_code, request_id=request_id,
                                        reason=reason))
            session.flush()
            return _to_connection(row)

    def save_env_connection(self, client_id: str, *, account_id: str,
                            livemode: bool) -> ClientConnection:
        """Track a client whose key is in the environment, after a passing check: its account,
        state and checks, never the key (nor its last four characters, which go stale when
        the variable's key is rolled). A disconnected client stays disconnected."""
        check_client_id(client_id)
        _check_account_id(account_id)
        now = utc_now()
        with self._writing() as session:
            row = session.get(StripeConnection, client_id, with_for_update=True)
            if row is not None and row.state == ConnectionState.DISCONNECTED.value:
                raise ClientNotConnected(client_id, "was disconnected meanwhile")
            row = row or StripeConnection(client_id=client_id, name=client_id, account_id="",
                                          livemode=livemode, created_at=now, updated_at=now)
            row.account_id = account_id
            row.livemode = livemode
            _mark_checked(row, now, CheckOutcome(ok=True))
            session.add(row)
            session.add(CredentialCheck(client_id=client_id, checked_at=now, ok=True))
            session.flush()
            return _to_connection(row)

    def forget_key(self, client_id: str) -> bool:
        """Drop the client's stored key, keeping its state: its key is in the environment
        now. Whether there was one."""
        with self._writing() as session:
            row = session.get(StripeConnection, client_id, with_for_update=True)
            if row is None or row.encrypted_key is None:
                return False
            row.encrypted_key = None
            row.masked_key = None
            row.updated_at = utc_now()
            session.add(row)
            return True

    def record_sync(self, client_id: str, at: datetime) -> None:
        """Remember a successful sync; runs finishing out of order never move it back."""
        at = _as_utc(at)
        with self._writing() as session:
            row = self._locked_row(session, client_id)
            if row.last_sync_at is None or at > row.last_sync_at:
                row.last_sync_at = at
                row.updated_at = utc_now()
                session.add(row)

    def disconnect(self, client_id: str) -> ClientConnection:
        """Drop the stored key; the client stays listed as `disconnected`."""
        now = utc_now()
        with self._writing() as session:
            row = self._locked_row(session, client_id)
            row.encrypted_key = None
            row.state = ConnectionState.DISCONNECTED.value
            row.reason = "The Stripe key was removed (stripe-reports disconnect)."
            row.steps = [f"Run `stripe-reports connect {client_id}` and paste a Stripe Secret key."]
            row.error_code = None
            row.request_id = None
            row.updated_at = now
            session.add(row)
            session.flush()
            return _to_connection(row)

    def remove(self, client_id: str) -> None:
        """Forget the client entirely, with its check history. Nothing to do if unknown."""
        with self._writing() as session:
            session.exec(delete(CredentialCheck).where(col(CredentialCheck.client_id) == client_id))
            session.exec(
                delete(StripeConnection).where(col(StripeConnection.client_id) == client_id)
            )


def _check_account_id(account_id: object) -> None:
    """A client's account id is never stored empty: an empty one turns the account guard
    (a key of another account needs --replace-account) off for good."""
    if not isinstance(account_id, str) or not account_id.strip():
        raise ValueError("A Stripe account id is needed to store a client's key; nothing "
                         "was stored.")


@dataclass(frozen=True)
class CheckOutcome:
    """What a credential check found; a failure carries why and what to do."""

    ok: bool
    reason: str | None = None
    steps: tuple[str, ...] | list[str] = ()
    error_code: str | None = None
    request_id: str | None = None


def _mark_checked(row: StripeConnection, now: datetime, outcome: CheckOutcome) -> None:
    """A check's outcome on the row: a passing check clears the last failure's details."""
    failed = not outcome.ok
    row.state = (ConnectionState.FAILED if failed else ConnectionState.CONNECTED).value
    row.reason = outcome.reason if failed else None
    row.steps = list(outcome.steps) if failed else []
    row.error_code = outcome.error_code if failed else None
    row.request_id = outcome.request_id if failed else None
    row.last_check_at = now
    row.last_check_ok = outcome.ok
    row.updated_at = now
