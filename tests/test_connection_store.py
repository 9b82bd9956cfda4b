"""The connection store behaves the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from engine.connection_store import (
    ClientNotConnected,
    ConnectionState,
    ConnectionStore,
)
from engine.encryption import KeyCipher, WrongMasterKey
from engine.keys import mask_key
from engine.settings import Settings

# Sentinels: searched for in what the store leaves behind.
ACME_KEY = "sk_live_51SentinelAcmeKeyDoNotLeak000000wxyz"
ACME_NEW_KEY = "sk_live_51SentinelAcmeRotatedKey00000000abcd"
BETA_KEY = "rk_test_51SentinelBetaRestrictedKey0000qrst"
MASTER_KEY = Fernet.generate_key()


@dataclass
class Backend:
    name: str
    url: str
    raw_dump: Callable[[], bytes]  # everything the database holds for the store, as stored


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "store" / "connections.db"

    def raw_dump() -> bytes:  # the database file with its WAL and shared-memory files
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob("connections.db*")))

    return Backend("sqlite", f"sqlite:///{path}", raw_dump)


_TABLES = ("stripe_connections", "credential_checks")


def _postgres_backend(request: pytest.FixtureRequest) -> Backend:
    server = request.getfixturevalue("postgres_server")
    url = server.url()
    # One database for the session, emptied per test (much faster than a database each).
    with closing(server.connect()) as connection, connection, connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(_TABLES)}")

    def raw_dump() -> bytes:
        dumps = [server.dump_table(table) for table in _TABLES]
        with closing(server.connect()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT * FROM stripe_connections")
            rows = cursor.fetchall()
        return ("\n".join(dumps) + repr(rows)).encode()

    return Backend("postgresql", url, raw_dump)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _postgres_backend(request)


@pytest.fixture
def store(backend: Backend) -> Iterator[ConnectionStore]:
    with ConnectionStore(backend.url, KeyCipher(MASTER_KEY)) as opened:
        yield opened


def connect_acme(store: ConnectionStore, key: str = ACME_KEY, **changes: object):
    values: dict[str, object] = {
        "secret_key": key,
        "account_id": "acct_1Acme",
        "account_name": "Acme Shop",
        "livemode": True,
        "name": "Acme",
    }
    values.update(changes)
    return store.save_connection("acme", **values)  # type: ignore[arg-type]


def test_saved_clients_are_listed_without_their_keys(store: ConnectionStore) -> None:
    before = datetime.now(UTC)
    connect_acme(store)
    store.save_connection(
        "beta",
        secret_key=BETA_KEY,
        account_id="acct_1Beta",
        livemode=False,
        stripe_account="acct_1Connected",
        missing_permissions=["rak_charge_read"],
    )

    acme = store.get("acme")
    assert acme is not None
    assert (acme.name, acme.account_id, acme.account_name, acme.livemode) == (
        "Acme",
        "acct_1Acme",
        "Acme Shop",
        True,
    )
    assert acme.state is ConnectionState.CONNECTED and acme.connected
    assert acme.masked_key == mask_key(ACME_KEY) == "sk_live_…wxyz"
    assert acme.last_check_ok is True and acme.last_sync_at is None
    for moment in (acme.last_check_at, acme.created_at, acme.updated_at):
        assert moment is not None and moment.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= moment <= datetime.now(UTC)

    beta = store.get("beta")
    assert beta is not None
    assert beta.name == "beta" and beta.livemode is False
    assert beta.stripe_account == "acct_1Connected"
    assert beta.missing_permissions == ("rak_charge_read",)

    assert [client.client_id for client in store.list()] == ["acme", "beta"]
    assert store.get("nobody") is None
    shown = repr(store.list()) + str([client.to_dict() for client in store.list()])
    assert ACME_KEY not in shown and BETA_KEY not in shown


def test_the_key_comes_back_decrypted_in_a_new_process(backend: Backend) -> None:
    with ConnectionStore(backend.url, KeyCipher(MASTER_KEY)) as first:
        connect_acme(first)
    with ConnectionStore(backend.url, KeyCipher(MASTER_KEY)) as second:
        assert second.secret_key("acme") == ACME_KEY


def test_the_key_is_not_stored_in_clear(store: ConnectionStore, backend: Backend) -> None:
    connect_acme(store)
    store.record_check("acme", ok=False, reason="Stripe rejected the key", error_code="x")

    stored = backend.raw_dump()

    assert b"acct_1Acme" in stored  # we are looking at the real stored rows
    assert b"gAAAAA" in stored  # a Fernet token where the key is
    assert ACME_KEY.encode() not in stored
    assert ACME_KEY.encode("utf-16-le") not in stored
    assert ACME_KEY[8:].encode() not in stored  # not even without its prefix


def test_a_failed_check_marks_the_client_failed_with_guidance(store: ConnectionStore) -> None:
    connect_acme(store)

    failed = store.record_check(
        "acme",
        ok=False,
        reason="Stripe says this key was revoked.",
        steps=["Create a new Secret key", "Run `stripe-reports connect acme`"],
        error_code="api_key_expired",
        request_id="req_123",
    )

    assert failed == store.get("acme")
    assert failed.state is ConnectionState.FAILED and not failed.connected
    assert failed.reason == "Stripe says this key was revoked."
    assert failed.steps == ("Create a new Secret key", "Run `stripe-reports connect acme`")
    assert (failed.error_code, failed.request_id) == ("api_key_expired", "req_123")
    assert failed.last_check_ok is False
    assert store.secret_key("acme") == ACME_KEY  # kept: the next check retries it
    history = store.check_history("acme")
    assert [check.ok for check in history] == [False, True]
    assert history[0].request_id == "req_123"


def test_reconnecting_a_failed_client_clears_the_failure(store: ConnectionStore) -> None:
    created = connect_acme(store).created_at
    store.record_sync("acme", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    store.record_check("acme", ok=False, reason="revoked", steps=["reconnect"], error_code="e")

    again = connect_acme(store, key=ACME_NEW_KEY, name=None)

    assert again.state is ConnectionState.CONNECTED
    assert (again.reason, again.steps, again.error_code, again.request_id) == (None, (), None, None)
    assert again.masked_key == "sk_live_…abcd"
    assert again.name == "Acme"  # kept when not given again
    assert again.created_at == created
    assert again.last_sync_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert store.secret_key("acme") == ACME_NEW_KEY


def test_a_passing_check_clears_an_earlier_failure(store: ConnectionStore) -> None:
    connect_acme(store, missing_permissions=["rak_payout_read"])
    store.record_check("acme", ok=False, reason="Stripe was unreachable", request_id="req_9")

    healthy = store.record_check("acme", ok=True)

    assert healthy.state is ConnectionState.CONNECTED
    assert (healthy.reason, healthy.steps, healthy.request_id) == (None, (), None)
    assert healthy.missing_permissions == ("rak_payout_read",)  # None keeps them
    assert store.record_check("acme", ok=True, missing_permissions=()).missing_permissions == ()


def test_disconnect_drops_the_key(store: ConnectionStore, backend: Backend) -> None:
    connect_acme(store)

    gone = store.disconnect("acme")

    assert gone.state is ConnectionState.DISCONNECTED
    assert [client.state for client in store.list()] == [ConnectionState.DISCONNECTED]
    with pytest.raises(ClientNotConnected, match=r"(?i)run `stripe-reports connect acme`"):
        store.secret_key("acme")
    with pytest.raises(ClientNotConnected):
        store.record_check("acme", ok=True)  # a stale check cannot revive it
    engine = sa.create_engine(backend.url)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT encrypted_key FROM stripe_connections"))
        assert stored.scalar_one() is None
    engine.dispose()


def test_unknown_clients_get_guidance(store: ConnectionStore) -> None:
    with pytest.raises(ClientNotConnected) as raised:
        store.secret_key("nobody")
    assert "`stripe-reports connect nobody`" in str(raised.value)
    assert isinstance(raised.value, LookupError)
    with pytest.raises(ClientNotConnected):
        store.record_check("nobody", ok=False)
    with pytest.raises(ClientNotConnected):
        store.record_sync("nobody", datetime.now(UTC))


def test_remove_forgets_the_client(store: ConnectionStore) -> None:
    connect_acme(store)
    store.record_check("acme", ok=False)

    store.remove("acme")
    store.remove("acme")  # nothing left to remove: not an error

    assert store.get("acme") is None and store.list() == []
    assert store.check_history("acme") == []


def test_last_sync_only_moves_forward(store: ConnectionStore) -> None:
    connect_acme(store)
    later = datetime(2025, 6, 1, 12, tzinfo=UTC)
    earlier_elsewhere = datetime(2025, 6, 1, 13, tzinfo=timezone(timedelta(hours=2)))  # 11:00Z

    store.record_sync("acme", later)
    store.record_sync("acme", earlier_elsewhere)  # a slower run finishing last

    assert store.get("acme").last_sync_at == later  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_sync("acme", datetime(2025, 6, 2))


def test_client_ids_must_be_slugs(store: ConnectionStore) -> None:
    with pytest.raises(ValueError, match="Invalid client id 'Acme Shop'"):
        store.save_connection("Acme Shop", secret_key=ACME_KEY, account_id="a", livemode=True)
    assert store.list() == []


def test_another_master_key_gives_a_clear_error(backend: Backend) -> None:
    with ConnectionStore(backend.url, KeyCipher(MASTER_KEY)) as saved_with:
        connect_acme(saved_with)
    other = KeyCipher(Fernet.generate_key(), source="STRIPE_REPORTS_SECRET")

    with ConnectionStore(backend.url, other) as store, pytest.raises(WrongMasterKey) as raised:
        store.secret_key("acme")

    message = str(raised.value)
    assert "client 'acme'" in message
    assert "encrypted with another STRIPE_REPORTS_SECRET" in message
    printed = "".join(traceback.format_exception(raised.value))
    assert "gAAAAA" not in printed and ACME_KEY not in printed


def test_from_settings_uses_the_home_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        warehouse_path=home / "warehouse.duckdb",
        connections_url=f"sqlite:///{home / 'connections.db'}",
        secret=None,
        api_base="http://127.0.0.1:1",
        dagster_home=home / "dagster_home",
        alert_webhook_url=None,
    )
    with ConnectionStore.from_settings(settings) as store:
        connect_acme(store)
    with ConnectionStore.from_settings(settings) as store:
        assert store.secret_key("acme") == ACME_KEY
    assert (home / "connections.db").exists()
    assert (home / "master.key").stat().st_mode & 0o077 == 0


# -- several writers at once ---------------------------------------------------------------

WRITES_PER_WORKER = 15


def _write_many(store: ConnectionStore, worker: int) -> None:
    for step in range(WRITES_PER_WORKER):
        store.record_check("acme", ok=step % 3 != 0, reason=f"worker {worker} step {step}")
        store.record_sync("acme", datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=step))
        assert store.secret_key("acme") == ACME_KEY


BARRIER_TIMEOUT = 60  # a worker that fails breaks the barrier: nobody waits for ever


def _process_worker(url: str, worker: int, start: Any, results: Any) -> None:
    try:
        start.wait(BARRIER_TIMEOUT)
        with ConnectionStore(url, KeyCipher(MASTER_KEY)) as store:  # tables made concurrently
            start.wait(BARRIER_TIMEOUT)
            _write_many(store, worker)
        results.put("ok")
    except BaseException:
        start.abort()
        results.put(traceback.format_exc())


def test_processes_writing_at_once_on_sqlite_do_not_fail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'connections.db'}"
    workers = 4
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(workers + 1), context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(url, worker, start, results))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    store = None
    try:
        start.wait(BARRIER_TIMEOUT)  # every worker opens the brand-new store at once
        store = ConnectionStore(url, KeyCipher(MASTER_KEY))
        connect_acme(store)
        start.wait(BARRIER_TIMEOUT)  # ...then they all write at once
    except threading.BrokenBarrierError:
        pass  # a worker failed: its traceback is among the outcomes
    finally:
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    assert outcomes == ["ok"] * workers, "\n".join(o for o in outcomes if o != "ok")
    assert store is not None
    with store:
        assert len(store.check_history("acme", limit=1000)) == 1 + workers * WRITES_PER_WORKER
        final = store.get("acme")
        assert final is not None
        last_write = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=WRITES_PER_WORKER - 1)
        assert final.last_sync_at == last_write


def test_threads_sharing_a_store_write_at_once(store: ConnectionStore) -> None:
    connect_acme(store)
    errors: list[str] = []
    start = threading.Barrier(6)

    def worker(number: int) -> None:
        try:
            start.wait(BARRIER_TIMEOUT)
            _write_many(store, number)
        except Exception:
            start.abort()
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(store.check_history("acme", limit=1000)) == 1 + 6 * WRITES_PER_WORKER
