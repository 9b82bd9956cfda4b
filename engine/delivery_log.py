"""The delivery log: every scheduled or requested delivery of a client's report, sent or held.

One row per delivery (client, period, recipients: `DueDelivery.key`), in the connection
store's database (SQLite or PostgreSQL), so a period is sent at most once whoever launches
it, and a held delivery is found again when the client's next good sync lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import JSON, Column, Date, Text
from sqlmodel import Field, Session, SQLModel, select

from engine.connection_store import (
    UTCDateTime,
    create_tables_once,
    store_engine,
    utc_now,
    writing,
)
from engine.deliveries import DueDelivery
from engine.settings import Settings, load_settings

SENT, HELD, SENDING = "sent", "held", "sending"
# A claim older than this belongs to a process that died while sending: it may be taken again.
CLAIM_TIMEOUT = timedelta(minutes=15)


class ReportDelivery(SQLModel, table=True):
    __tablename__ = "report_deliveries"

    key: str = Field(primary_key=True)
    client_id: str = Field(index=True, max_length=63)
    period: str
    start: date = Field(sa_column=Column(Date, nullable=False))
    end: date = Field(sa_column=Column(Date, nullable=False))
    recipients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The figures' build time when it was held: a newer one is the next good sync.
    held_built_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    agency_notified_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    run_id: str | None = None
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True)
class DeliveryRecord:
    key: str
    client_id: str
    period: str
    start: date
    end: date
    recipients: tuple[str, ...]
    status: str
    reason: str | None
    held_built_at: datetime | None
    agency_notified_at: datetime | None
    sent_at: datetime | None
    run_id: str | None


def _record(row: ReportDelivery) -> DeliveryRecord:
    return DeliveryRecord(row.key, row.client_id, row.period, row.start, row.end,
                          tuple(row.recipients), row.status, row.reason, row.held_built_at,
                          row.agency_notified_at, row.sent_at, row.run_id)


class DeliveryLog:
    def __init__(self, url: str) -> None:
        self._engine = store_engine(url)
        create_tables_once(self._engine, [ReportDelivery.__table__])  # type: ignore[attr-defined]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DeliveryLog:
        return cls((settings or load_settings()).connections_url)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, key: str) -> DeliveryRecord | None:
        with Session(self._engine) as session:
            row = session.get(ReportDelivery, key)
            return None if row is None else _record(row)

    def records(self, client_id: str | None = None) -> list[DeliveryRecord]:
        with Session(self._engine) as session:
            query = select(ReportDelivery).order_by(ReportDelivery.updated_at)
            if client_id:
                query = query.where(ReportDelivery.client_id == client_id)
            return [_record(row) for row in session.exec(query)]

    @contextmanager
    def _row(self, due: DueDelivery) -> Iterator[ReportDelivery]:
        with writing(self._engine) as session:
            row = session.get(ReportDelivery, due.key, with_for_update=True)
            if row is None:
                row = ReportDelivery(key=due.key, client_id=due.client_id, period=due.period,
                                     start=due.start, end=due.end, recipients=list(due.to),
                                     status=HELD, updated_at=utc_now())
            yield row
            row.updated_at = utc_now()
            session.add(row)

    def claim(self, due: DueDelivery, run_id: str | None) -> DeliveryRecord | None:
        """Mark the delivery as being sent by this run; None if it was sent already or another
        live run is sending it (the caller then sends nothing)."""
        with self._row(due) as row:
            busy = row.status == SENDING and utc_now() - row.updated_at < CLAIM_TIMEOUT
            if row.status == SENT or busy:
                return None
            row.status, row.run_id = SENDING, run_id
        return _record(row)

    def record_sent(self, due: DueDelivery, run_id: str | None) -> None:
        with self._row(due) as row:
            row.status, row.reason, row.sent_at, row.run_id = SENT, None, utc_now(), run_id

    def record_held(self, due: DueDelivery, reason: str, built_at: datetime | None,
                    run_id: str | None, notified: bool) -> None:
        with self._row(due) as row:
            row.status, row.reason, row.held_built_at, row.run_id = HELD, reason, built_at, run_id
            if notified:
                row.agency_notified_at = utc_now()
