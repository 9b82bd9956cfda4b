"""One sync per client across machines: an advisory lock on the catalog database."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

from engine.warehouse import ClientBusy, waiting_message

LOCK_POLL_SECONDS = 0.2
# The advisory-lock namespace of per-client sync locks (pg_locks.classid): "SREP".
LOCK_NAMESPACE = 0x53524550


def _lock_key(client_id: str) -> int:
    digest = hashlib.blake2b(client_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _lock_holder(conn: Any, key: int) -> str:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 2", (LOCK_NAMESPACE, key))
        row = cursor.fetchone()
    return f"{row[0]} from {row[1] or 'this host'}" if row else "another process"


def _try_lock(conn: Any, key: int) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
        return bool(cursor.fetchone()[0])


@contextmanager
def postgres_client_lock(dsn: str, client_id: str, timeout: float,
                         on_wait: Callable[[str], None]) -> Iterator[None]:
    """One sync per client across machines: an advisory lock on the catalog database.

    Held by a session of its own; the lock ends with that session, so also when the
    process dies. Waits (saying once who holds it) rather than failing.
    """
    me = f"stripe-reports sync {client_id} (pid {os.getpid()} on {os.uname().nodename})"
    conn = psycopg2.connect(dsn, application_name=me[:63], connect_timeout=30)
    try:
        conn.autocommit = True
        key, told = _lock_key(client_id), False
        deadline = time.monotonic() + timeout
        while not _try_lock(conn, key):
            holder = _lock_holder(conn, key)
            if time.monotonic() > deadline:
                raise ClientBusy(client_id, holder, timeout)
            if not told:
                told = True
                on_wait(waiting_message(client_id, holder))
            time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        conn.close()  # ending the session releases the lock
