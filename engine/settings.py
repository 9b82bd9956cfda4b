"""Settings read from the environment, in one place (docs/interface.md lists them).

`load_settings()` reads every variable through one typed pydantic-settings model and gives
the resolved values (defaults filled in from STRIPE_REPORTS_HOME). No other product module
reads the environment (tests/test_architecture.py fails if one does). A value that cannot be
used raises SettingsError: one line naming the variable and what it takes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.home import HOME_ENV, resolve_home

STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"
# STRIPE_REPORTS_WAREHOUSE in DuckDB's ATTACH form for a DuckLake catalog.
DUCKLAKE_PREFIX = "ducklake:"
DEFAULT_RETRY_SECONDS = 180.0
DEFAULT_CLIENTS_FILE = Path(__file__).resolve().parent.parent / "workspace_config" / "clients.yaml"

WAREHOUSE_ENV = "STRIPE_REPORTS_WAREHOUSE"
LAKE_DATA_PATH_ENV = "STRIPE_REPORTS_LAKE_DATA_PATH"
CONNECTIONS_URL_ENV = "STRIPE_REPORTS_CONNECTIONS_URL"
SECRET_ENV = "STRIPE_REPORTS_SECRET"
API_BASE_ENV = "STRIPE_API_BASE"
RETRY_SECONDS_ENV = "STRIPE_REPORTS_RETRY_SECONDS"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
STORAGE_URL_ENV = "STRIPE_REPORTS_DAGSTER_STORAGE_URL"
CLIENTS_FILE_ENV = "STRIPE_REPORTS_CLIENTS_FILE"
ALERT_WEBHOOK_ENV = "STRIPE_REPORTS_ALERT_WEBHOOK"
SMTP_URL_ENV = "STRIPE_REPORTS_SMTP_URL"
MAIL_FROM_ENV = "STRIPE_REPORTS_MAIL_FROM"
AGENCY_EMAIL_ENV = "STRIPE_REPORTS_AGENCY_EMAIL"
BRAND_NAME_ENV = "STRIPE_REPORTS_BRAND_NAME"
CHROMIUM_ENV = "STRIPE_REPORTS_CHROMIUM"
DEFAULT_BRAND_NAME = "Stripe reports"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
ADMIN_PASSWORD_ENV = "STRIPE_REPORTS_ADMIN_PASSWORD"
ADMIN_PASSWORD_HASH_ENV = "STRIPE_REPORTS_ADMIN_PASSWORD_HASH"
PUBLIC_URL_ENV = "STRIPE_REPORTS_PUBLIC_URL"
TRUSTED_PROXY_HEADER_ENV = "STRIPE_REPORTS_TRUSTED_PROXY_HEADER"
BRAND_LOGO_ENV = "STRIPE_REPORTS_BRAND_LOGO"
BRAND_COLOR_ENV = "STRIPE_REPORTS_BRAND_COLOR"
# Set by the report page for the CLI it spawns, so its runs say `web` (never shown in --help).
LAUNCHER_ENV = "STRIPE_REPORTS_LAUNCHED_BY"

# PostgreSQL URLs are opened with the driver we ship, psycopg2: SQLAlchemy 2.1 would open a
# plain `postgresql://` with psycopg 3, which is not installed (and dagster-postgres needs 2).
PSYCOPG2_SCHEME = "postgresql+psycopg2"
_POSTGRES_SCHEMES = ("postgresql", "postgres", PSYCOPG2_SCHEME)
_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
_POSTGRES_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable and the accepted forms."""


class _Environment(BaseSettings):
    """The variables as given (an empty one counts as unset), typed."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True,
                                      extra="ignore", frozen=True)

    home: Path | None = Field(None, validation_alias=HOME_ENV)
    warehouse: str | None = Field(None, validation_alias=WAREHOUSE_ENV)
    lake_data_path: str | None = Field(None, validation_alias=LAKE_DATA_PATH_ENV)
    connections_url: str | None = Field(None, validation_alias=CONNECTIONS_URL_ENV)
    secret: str | None = Field(None, validation_alias=SECRET_ENV)
    api_base: str = Field(STRIPE_DEFAULT_API_BASE, validation_alias=API_BASE_ENV)
    retry_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        DEFAULT_RETRY_SECONDS, validation_alias=RETRY_SECONDS_ENV)
    dagster_home: Path | None = Field(None, validation_alias=DAGSTER_HOME_ENV)
    dagster_storage_url: str | None = Field(None, validation_alias=STORAGE_URL_ENV)
    clients_file: Path | None = Field(None, validation_alias=CLIENTS_FILE_ENV)
    alert_webhook: str | None = Field(None, validation_alias=ALERT_WEBHOOK_ENV)
    launched_by: str | None = Field(None, validation_alias=LAUNCHER_ENV)
    smtp_url: str | None = Field(None, validation_alias=SMTP_URL_ENV)
    mail_from: str | None = Field(None, validation_alias=MAIL_FROM_ENV)
    agency_email: str | None = Field(None, validation_alias=AGENCY_EMAIL_ENV)
    brand_name: str = Field(DEFAULT_BRAND_NAME, validation_alias=BRAND_NAME_ENV)
    chromium: str = Field(DEFAULT_CHROMIUM, validation_alias=CHROMIUM_ENV)
    admin_password: str | None = Field(None, validation_alias=ADMIN_PASSWORD_ENV)
    admin_password_hash: str | None = Field(None, validation_alias=ADMIN_PASSWORD_HASH_ENV)
    public_url: str | None = Field(None, validation_alias=PUBLIC_URL_ENV)
    trusted_proxy_header: str | None = Field(None, validation_alias=TRUSTED_PROXY_HEADER_ENV)
    brand_logo: Path | None = Field(None, validation_alias=BRAND_LOGO_ENV)
    brand_color: str | None = Field(None, validation_alias=BRAND_COLOR_ENV)


_VARIABLES = tuple(field.validation_alias for field in _Environment.model_fields.values())


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
    clients_file: Path = DEFAULT_CLIENTS_FILE
    # How long one Stripe request is retried through transient failures (seconds).
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    # STRIPE_REPORTS_DAGSTER_STORAGE_URL as given; None: SQLite files under DAGSTER_HOME.
    dagster_storage_url: str | None = None
    # Who starts syncs in this process when the caller does not say (`web` for the page's).
    launched_by: str | None = None
    # STRIPE_API_BASE was given: it wins for every client (the demo's sandbox included).
    api_base_configured: bool = False
    # Deliveries: outgoing mail (the URL may hold a password: never shown), sender, agency.
    smtp_url: str | None = None
    mail_from: str | None = None
    agency_email: str | None = None
    brand_name: str = DEFAULT_BRAND_NAME
    # The Chromium that prints PDFs.
    chromium: str = DEFAULT_CHROMIUM
    # The console's staff password, or its scrypt hash (`serve --hash-password` makes one).
    admin_password: str | None = None
    admin_password_hash: str | None = None
    # The base URL share links and emails point to; off loopback, the only Host served.
    public_url: str | None = None
    # A header a trusted sign-in proxy sets to the staff member's name (off unless named).
    trusted_proxy_header: str | None = None
    # The agency's brand on client reports: name, logo file, colour.
    brand_logo: Path | None = None
    brand_color: str | None = None

    @property
    def warehouse(self) -> str:
        """The warehouse to open: a DuckDB file path, or a `ducklake:` catalog."""
        return self.warehouse_target or str(self.warehouse_path)

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"


def load_settings() -> Settings:
    """Read the settings now (not at import), so tests and the CLI can change them.

    Parsed again only when one of our variables changed: widgets and runs ask often, and
    pydantic-settings takes a millisecond to read the environment."""
    # The working directory too: the default home is under it.
    return _resolve(os.getcwd(), tuple(os.environ.get(name) for name in _VARIABLES))


@functools.lru_cache(maxsize=8)
def _resolve(_cwd: str, _values: tuple[str | None, ...]) -> Settings:
    env = _read_environment()
    home = resolve_home(env.home)
    configured = env.warehouse or ""
    lake = configured if configured.startswith(DUCKLAKE_PREFIX) else ""
    return Settings(
        home=home,
        warehouse_path=Path(configured or home / "warehouse.duckdb"),
        connections_url=_connections_url(env.connections_url, home),
        secret=env.secret,
        api_base=env.api_base.rstrip("/"),
        dagster_home=env.dagster_home or home / "dagster_home",
        alert_webhook_url=env.alert_webhook,
        warehouse_target=lake,
        lake_data_path=env.lake_data_path,
        clients_file=env.clients_file or DEFAULT_CLIENTS_FILE,
        retry_seconds=env.retry_seconds,
        dagster_storage_url=_storage_url(env.dagster_storage_url),
        launched_by=env.launched_by,
        api_base_configured="api_base" in env.model_fields_set,
        smtp_url=env.smtp_url, mail_from=env.mail_from, agency_email=env.agency_email,
        brand_name=env.brand_name.strip() or DEFAULT_BRAND_NAME, chromium=env.chromium,
        admin_password=env.admin_password,
        admin_password_hash=(env.admin_password_hash or "").strip() or None,
        public_url=(env.public_url or "").strip().rstrip("/") or None,
        trusted_proxy_header=(env.trusted_proxy_header or "").strip() or None,
        brand_logo=env.brand_logo,
        brand_color=(env.brand_color or "").strip() or None,
    )


def _read_environment() -> _Environment:
    try:
        return _Environment()
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "a setting"
        # Never echo the value: a URL or secret may hold a password.
        raise SettingsError(f"{name} cannot be used: {first['msg'].lower()}; fix or unset "
                            "it.") from None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].strip().lower() if "://" in url else ""


def _given_as(url: str) -> str:
    """How a refused URL is named: its scheme only, never the rest (it may hold a password)."""
    scheme = _scheme(url)
    return repr(f"{scheme}://") if scheme else "a value without a scheme"


def psycopg2_url(url: str) -> str:
    """A PostgreSQL URL in any accepted form (`postgresql://`, `postgres://`,
    `postgresql+psycopg2://`) with the psycopg2 driver spelt out; other URLs unchanged."""
    scheme = _scheme(url)
    if scheme not in _POSTGRES_SCHEMES:
        return url
    return f"{PSYCOPG2_SCHEME}://{url.split('://', 1)[1]}"


def _connections_url(url: str | None, home: Path) -> str:
    url = (url or "").strip()
    if not url:
        return f"sqlite:///{home / 'connections.db'}"
    if _scheme(url) in _SQLITE_SCHEMES:
        return url
    if _scheme(url) in _POSTGRES_SCHEMES:
        return psycopg2_url(url)
    raise SettingsError(
        f"{CONNECTIONS_URL_ENV} must be sqlite:///PATH or {_POSTGRES_FORM} (postgres:// and "
        f"postgresql+psycopg2:// are taken too), not {_given_as(url)}; unset it to keep the "
        f"store in {HOME_ENV}/connections.db.")


def _storage_url(url: str | None) -> str | None:
    url = (url or "").strip()
    if not url:
        return None
    if _scheme(url) not in _POSTGRES_SCHEMES:
        raise SettingsError(
            f"{STORAGE_URL_ENV} must be a postgresql:// URL ({_POSTGRES_FORM}), not "
            f"{_given_as(url)}; unset it to keep Dagster's runs in SQLite files under "
            f"{DAGSTER_HOME_ENV}.")
    return psycopg2_url(url)


def environment_variable(name: str) -> str | None:
    """A variable named at run time (a clients.yaml `key_env`), empty counting as unset."""
    return os.environ.get(name) or None


@dataclass(frozen=True)
class MailSettings:
    """What deliveries need of the settings (STRIPE_REPORTS_SMTP_URL and friends)."""

    smtp_url: str | None
    mail_from: str | None
    agency_email: str | None
    brand_name: str
    outbox: Path


def load_mail_settings() -> MailSettings:
    settings = load_settings()
    return MailSettings(smtp_url=settings.smtp_url, mail_from=settings.mail_from,
                        agency_email=settings.agency_email, brand_name=settings.brand_name,
                        outbox=settings.home / "outbox")
