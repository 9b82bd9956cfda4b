"""Settings read from the environment (see the table in README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"
# STRIPE_REPORTS_WAREHOUSE in DuckDB's ATTACH form for a DuckLake catalog.
DUCKLAKE_PREFIX = "ducklake:"


@dataclass(frozen=True)
class Settings:
    home: Path
    warehouse_path: Path
    connections_url: str
    secret: str | None
    api_base: str
    dagster_home: Path
    alert_webhook_url: str | None
    # STRIPE_REPORTS_WAREHOUSE as given when it names a DuckLake catalog (not a file path).
    warehouse_target: str = ""
    # Where DuckLake writes its data files: a folder here, object storage in production.
    lake_data_path: str | None = None

    @property
    def warehouse(self) -> str:
        """The warehouse to open: a DuckDB file path, or a `ducklake:` catalog."""
        return self.warehouse_target or str(self.warehouse_path)

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"

    @property
    def clients_file(self) -> Path:
        configured = os.environ.get("STRIPE_REPORTS_CLIENTS_FILE")
        if configured:
            return Path(configured)
        return Path(__file__).resolve().parent.parent / "workspace_config" / "clients.yaml"


def load_settings() -> Settings:
    """Read the settings now (not at import), so tests and the CLI can change them."""
    home = Path(os.environ.get("STRIPE_REPORTS_HOME") or Path.cwd() / ".stripe-reports").resolve()
    configured = os.environ.get("STRIPE_REPORTS_WAREHOUSE") or ""
    warehouse = Path(configured or home / "warehouse.duckdb")
    lake = configured if configured.startswith(DUCKLAKE_PREFIX) else ""
    connections = os.environ.get("STRIPE_REPORTS_CONNECTIONS_URL") or (
        f"sqlite:///{home / 'connections.db'}"
    )
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home")
    return Settings(
        home=home,
        warehouse_path=warehouse,
        connections_url=connections,
        secret=os.environ.get("STRIPE_REPORTS_SECRET") or None,
        api_base=(os.environ.get("STRIPE_API_BASE") or STRIPE_DEFAULT_API_BASE).rstrip("/"),
        dagster_home=dagster_home,
        alert_webhook_url=os.environ.get("STRIPE_REPORTS_ALERT_WEBHOOK") or None,
        warehouse_target=lake,
        lake_data_path=os.environ.get("STRIPE_REPORTS_LAKE_DATA_PATH") or None,
    )
