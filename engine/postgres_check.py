"""A PostgreSQL database a setting names, opened or refused in one line.

Dagster's storage retries its first connection for half a minute and then ends in a
traceback; the store's SQLAlchemy error is a page with the SQL. Both are asked here first
(or explained here after), with a short connect timeout, and a failure names the setting,
what libpq said (never the URL: it holds the password) and what to do.
"""

from __future__ import annotations

import re
from typing import Any

from engine.settings import CONNECTIONS_URL_ENV, DAGSTER_HOME_ENV, STORAGE_URL_ENV, load_settings

# A server that does not answer is named after this long.
CONNECT_TIMEOUT_SECONDS = 5
_FALLBACKS = {
    STORAGE_URL_ENV: f"unset it to keep Dagster's runs in SQLite files under {DAGSTER_HOME_ENV}",
    CONNECTIONS_URL_ENV: "unset it to keep the store in STRIPE_REPORTS_HOME/connections.db",
}


class DatabaseUnreachable(RuntimeError):
    """A database a setting names cannot be opened; the message says which and what to do."""

    def __init__(self, setting: str, url: str, error: BaseException) -> None:
        super().__init__(
            f"Cannot open the database {setting} names ({_detail(error, url)}). Check its host, "
            f"port, database name, user and password, or {_FALLBACKS[setting]}; nothing was "
            "changed.")


def libpq_url(url: str) -> str:
    """The URL as libpq reads it: `postgresql://`, whatever SQLAlchemy driver it names."""
    return "postgresql://" + url.split("://", 1)[1]


def check_postgres(url: str, setting: str) -> None:
    """Open and close one connection; raises DatabaseUnreachable."""
    # psycopg2 (libpq): only loaded when a PostgreSQL database is configured.
    import psycopg2

    try:
        psycopg2.connect(libpq_url(url), connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg2.Error as error:
        raise DatabaseUnreachable(setting, url, error) from None


def check_dagster_storage() -> None:
    """The Dagster storage, when STRIPE_REPORTS_DAGSTER_STORAGE_URL names one."""
    url = load_settings().dagster_storage_url
    if url:
        check_postgres(url, STORAGE_URL_ENV)


def _detail(error: BaseException, url: str) -> str:
    """libpq's message on one line, with the URL's password masked should it appear."""
    detail = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
    password = _password(url)
    if password:
        detail = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", "***", detail)
    return detail.rstrip(".") or type(error).__name__


def _password(url: str) -> Any:
    # SQLAlchemy's parser: imported only when a failure is being described.
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password
    except Exception:  # a URL SQLAlchemy cannot parse: nothing to mask by name
        return None
