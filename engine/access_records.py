"""Tables kept beside the connection store for the report page's access: share-link
generations (revoking a client's links bumps its generation, which every link signs) and
the audit of destructive console actions (who, when, which client, what).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, Session, SQLModel, col, select

from engine.connection_store import ConnectionStore, UTCDateTime


class ShareGeneration(SQLModel, table=True):
    """A client's share-link generation: links signed with an older one are revoked."""

    __tablename__ = "share_generations"

    client_id: str = Field(primary_key=True, max_length=63)
    generation: int = 0
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                       nullable=True))


class AuditEntry(SQLModel, table=True):
    """One destructive action taken in the console."""

    __tablename__ = "console_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    who: str
    client_id: str = Field(index=True, max_length=63)
    action: str
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


_TABLES = [ShareGeneration.__table__, AuditEntry.__table__]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    who: str
    client_id: str
    action: str
    detail: str | None


def _session(store: ConnectionStore) -> Session:
    # checkfirst: opening is idempotent; the tables appear the first time they are needed.
    SQLModel.metadata.create_all(store.sql_engine, tables=_TABLES, checkfirst=True)
    return Session(store.sql_engine, expire_on_commit=False)


def share_generation(store: ConnectionStore, client_id: str) -> int:
    """The generation a new share link of the client signs (0 until its links are revoked)."""
    with _session(store) as session:
        row = session.get(ShareGeneration, client_id)
        return row.generation if row else 0


def revoke_shares(store: ConnectionStore, client_id: str) -> int:
    """Ends every share link of the client; returns the new generation."""
    with _session(store) as session, session.begin():
        row = session.get(ShareGeneration, client_id, with_for_update=True)
        if row is None:
            row = ShareGeneration(client_id=client_id)
            session.add(row)
        row.generation += 1
        row.revoked_at = datetime.now(UTC)
        return row.generation


def record_audit(store: ConnectionStore, *, who: str, client_id: str, action: str,
                 detail: str | None = None) -> None:
    with _session(store) as session, session.begin():
        session.add(AuditEntry(at=datetime.now(UTC), who=who, client_id=client_id,
                               action=action, detail=detail))


def audit_entries(store: ConnectionStore, client_id: str | None = None,
                  limit: int = 50) -> list[AuditRecord]:
    """The latest audit entries, newest first (one client's, or everyone's)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if client_id is not None:
        query = query.where(AuditEntry.client_id == client_id)
    with _session(store) as session:
        return [AuditRecord(r.at, r.who, r.client_id, r.action, r.detail)
                for r in session.exec(query).all()]
