"""The turn to commit to the lake: a PostgreSQL advisory lock, and the sessions that take it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

from engine.user_errors import FAILED, CommandError

# The commit turn's advisory lock (see CommitTurn): namespace "SRET", key 0.
TURN_NAMESPACE = 0x53524554
# A writer waits at most this long for its turn to commit, then fails with a message.
TURN_TIMEOUT_SECONDS = 600


class TurnSessions:
    """Idle PostgreSQL sessions for commit turns, kept between writers of one process:
    opening one for every writer took ~4% of a busy run worker, and a server process each."""

    def __init__(self, dsn: str, keep: int) -> None:
        self.dsn, self._keep = dsn, keep  # as many as the process's writers commit at once
        self._idle: list[Any] = []
        self._mutex = threading.Lock()

    def take(self) -> Any:
        with self._mutex:
            if self._idle:
                return self._idle.pop()
        session = psycopg2.connect(
            self.dsn, application_name=f"stripe-reports writer (pid {os.getpid()})",
            connect_timeout=30, options=f"-c lock_timeout={TURN_TIMEOUT_SECONDS * 1000}")
        session.autocommit = True
        return session

    def give_back(self, session: Any) -> None:
        with self._mutex:
            if len(self._idle) < self._keep:
                self._idle.append(session)
                return
        session.close()

    def close(self) -> None:
        with self._mutex:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()


class CommitTurn:
    """The turn to commit to the lake: a PostgreSQL advisory lock on the catalog database.

    DuckLake detects conflicts per table (a delete and an insert into the same table, by
    any clients), so under several writers a long transaction that lost can lose again on
    every re-run while shorter ones keep committing: one client build took 14.5 s for
    0.7 s of work, re-run 11 times. Every commit therefore takes the turn briefly, and a
    transaction that conflicted is re-run holding the turn from its start to its commit:
    nobody commits in between, so the re-run cannot conflict again. The lock belongs to a
    session of this process's own, so it ends with the process if that dies.
    """

    def __init__(self, sessions: TurnSessions) -> None:
        self._sessions = sessions
        self._session: Any = None
        self._clean = True  # False once a lock or unlock failed: the session is not reused

    @contextmanager
    def held(self) -> Iterator[None]:
        cursor = self._cursor()
        self._clean = False
        try:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", (TURN_NAMESPACE,))
        except psycopg2.errors.LockNotAvailable:
            raise CommandError(
                f"Waited {TURN_TIMEOUT_SECONDS} s for a turn to commit to the DuckLake "
                "warehouse: another writer held it all along. Look for a stuck sync (its "
                "session in pg_stat_activity on the catalog database), then run again.",
                FAILED) from None
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, 0)", (TURN_NAMESPACE,))
            self._clean = True

    def _cursor(self) -> Any:
        if self._session is None:
            self._session = self._sessions.take()
        return self._session.cursor()

    def close(self) -> None:
        if self._session is None:
            return
        if self._clean and not self._session.closed:
            self._sessions.give_back(self._session)
        else:
            self._session.close()  # ends the session: a turn it may still hold is released
        self._session = None

