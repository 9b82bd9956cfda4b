"""Dagster's PostgreSQL storage (dagster-postgres), opened with the psycopg2 driver.

SQLAlchemy 2.1 opens a plain `postgresql://` URL with psycopg 3, which dagster-postgres cannot
use (its `NOTIFY run_events, %(id)s` needs psycopg2's client-side parameters), while a user
writes STRIPE_REPORTS_DAGSTER_STORAGE_URL as a plain `postgresql://` URL. The generated
dagster.yaml names this class as custom storage, so every process that reads the file (daemon,
webserver, code server, run workers) picks psycopg2, and the file still holds only the variable's
name, never the URL. Kept small on purpose: the daemon and webserver import it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from engine.settings import psycopg2_url


class PostgresStorage(DagsterPostgresStorage):
    """dagster-postgres' run, event-log and schedule storage; the URL's driver is psycopg2."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=psycopg2_url(pg_url_from_config(config_value)),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
