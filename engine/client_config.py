"""Per-client settings from workspace_config/clients.yaml (cadence, rate, key variable).

A file that cannot be read as a whole (bad YAML, a client declared twice, the wrong shape)
raises ClientsFileError. A problem in one client's entry (an invalid id, an unknown field,
a bad cron line) leaves that client out and is reported in `ClientsFile.problems`: the
other clients keep their settings and their schedules.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from engine.connection_store import InvalidClientId, check_client_id
from engine.cron import CronError, parse_cron
from engine.settings import environment_variable, load_settings

DEFAULT_SCHEDULE = "0 * * * *"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
Text = Annotated[str, Field(min_length=1, strict=True)]


class ClientsFileError(ValueError):
    """clients.yaml cannot be used as a whole; the message names the file and the fix."""


class _Entry(BaseModel):
    """What clients.yaml may say; an unknown field is refused (a typo must not pass unseen)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")


def check_emails(addresses: Any) -> tuple[str, ...]:
    """The addresses if each looks like one; a ValueError naming the first that does not."""
    checked = []
    for address in addresses:
        if not isinstance(address, str) or not _EMAIL.fullmatch(address.strip()):
            raise ValueError(f"{address!r} is not an email address")
        checked.append(address.strip())
    return tuple(checked)


class Delivery(_Entry):
    """One scheduled delivery of the client report (docs/interface.md, clients.yaml)."""

    cadence: Literal["weekly", "monthly"]
    day: Annotated[str | int, Field(union_mode="left_to_right")]
    period: Literal["last_week", "last_month", "month_to_date"]
    to: Annotated[list[Text], Field(min_length=1)]

    @field_validator("to")
    @classmethod
    def _email_addresses(cls, value: list[str]) -> list[str]:
        return list(check_emails(value))

    @model_validator(mode="after")
    def _day_fits_cadence(self) -> Delivery:
        weekly = self.cadence == "weekly"
        if weekly and str(self.day).upper() not in WEEKDAYS:
            raise ValueError(f"day must be one of {'/'.join(WEEKDAYS)} for a weekly "
                             f"delivery, not {self.day!r}")
        if not weekly and not (isinstance(self.day, int) and 1 <= self.day <= 28):
            raise ValueError(f"day must be 1 to 28 for a monthly delivery, not {self.day!r}")
        return self


def check_timezone(value: str) -> str:
    """An IANA time zone name, or a ValueError saying what one looks like."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (like Europe/Berlin or "
                         "America/New_York)") from None
    return value


class ClientConfig(_Entry):
    client_id: str
    name: Text | None = None
    key_env: Text | None = None
    schedule: Text = DEFAULT_SCHEDULE
    max_requests_per_second: Annotated[float, Field(gt=0, strict=True)] | None = None
    stripe_account: Text | None = None
    timezone: Text = "UTC"  # the client's calendar days everywhere
    locale: Text = "en_US"  # money and dates on the client report
    deliveries: tuple[Delivery, ...] = ()

    @field_validator("key_env")
    @classmethod
    def _an_environment_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"must name an environment variable (like ACME_STRIPE_KEY), not "
                             f"{value!r}")
        return value

    @field_validator("schedule")
    @classmethod
    def _a_cron_line(cls, value: str) -> str:
        try:
            return parse_cron(value).line
        except CronError as error:
            raise ValueError(f"{value!r} is not a valid cron line: {error} (for example "
                             "\"0 * * * *\" for hourly)") from None

    @field_validator("timezone")
    @classmethod
    def _an_iana_zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("locale")
    @classmethod
    def _a_babel_locale(cls, value: str) -> str:
        try:
            return str(Locale.parse(value))
        except (UnknownLocaleError, ValueError, TypeError):
            raise ValueError(f"{value!r} is not a known locale (like en_US or de_DE)") from None

    def key_from_env(self) -> str | None:
        return environment_variable(self.key_env) if self.key_env else None

    @property
    def stale_after(self) -> timedelta:
        """How old the last successful sync may be before widgets say `stale`."""
        return 2 * parse_cron(self.schedule).interval + timedelta(minutes=15)


FIELDS = tuple(name for name in ClientConfig.model_fields if name != "client_id")


class ClientsFile(BaseModel):
    """The usable clients, and why each unusable one was left out (client id -> message)."""

    model_config = ConfigDict(frozen=True)

    configs: dict[str, ClientConfig] = Field(default_factory=dict)
    problems: dict[str, str] = Field(default_factory=dict)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a client declared twice must be refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # an unhashable key: PyYAML itself refuses it below
            if key in seen:
                raise ClientsFileError(
                    f"{key!r} is declared twice (the second at line {key_node.start_mark.line + 1}"
                    "); keep one entry"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _entry(client_id: Any, entry: Any) -> ClientConfig | str:
    """The client's settings, or what is wrong with its entry (the field named)."""
    try:
        check_client_id(client_id)
    except InvalidClientId as error:
        return str(error)
    if entry is not None and not isinstance(entry, dict):
        return f"its entry must be a mapping of {', '.join(FIELDS)}"
    if "client_id" in (entry or {}):
        return "client_id is the entry's own name, not a field"
    try:
        return ClientConfig(client_id=client_id, **(entry or {}))
    except ValidationError as error:
        return _problem(error.errors())


# Pydantic's wording for the error types a clients.yaml entry meets, as "FIELD must ...".
_MUST = {"string_type": "must be text", "string_too_short": "must be text",
         "float_type": "must be a number above 0", "greater_than": "must be a number above 0",
         "too_short": "must not be empty", "tuple_type": "must be a list",
         "list_type": "must be a list", "model_type": "must be a mapping",
         "dict_type": "must be a mapping"}


def _problem(errors: list[ErrorDetails]) -> str:
    """Pydantic's errors as one line: unknown fields together, else the first field's."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        known = Delivery.model_fields if len(unknown[0]["loc"]) > 1 else FIELDS
        return (f"unknown field(s) {', '.join(_where(e['loc']) for e in unknown)} "
                f"(known: {', '.join(known)})")
    first = errors[0]
    where = _where(first["loc"])
    if first["type"] == "value_error":  # ours: the message names the field
        message = first["msg"].removeprefix("Value error, ")
        return f"{where}.{message}" if isinstance(first["loc"][-1], int) else f"{where} {message}"
    must = _MUST.get(first["type"]) or first["msg"].replace("Input should be", "must be", 1)
    return f"{where} {must}, not {first['input']!r}"


def _where(loc: tuple[int | str, ...]) -> str:
    """('deliveries', 0, 'day') -> 'deliveries[0].day'."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except ClientsFileError as error:
        raise ClientsFileError(f"{path}: {error}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ClientsFileError(f"{path} is not valid YAML{where} ({problem}); fix the file "
                               "(see the example at the top of workspace_config/clients.yaml)."
                               ) from None
    except (OSError, UnicodeError) as error:
        raise ClientsFileError(f"Cannot read {path}: {error}.") from None
    clients = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(clients, dict | None):
        raise ClientsFileError(f"{path} must hold a mapping `clients:` of client id -> settings.")
    return clients or {}


def read_clients_file(path: Path | None = None) -> ClientsFile:
    """The clients file: usable clients, and the ones left out with why.

    Read again only when the file changes: every widget and run asks for a client's config.
    """
    path = path or load_settings().clients_file
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ClientsFile()
    except OSError:
        return _parse_clients_file(path)  # says why it cannot be read
    return _read_if_changed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_if_changed(path: Path, mtime_ns: int, size: int) -> ClientsFile:
    return _parse_clients_file(path)


def _parse_clients_file(path: Path) -> ClientsFile:
    configs, problems = {}, {}
    for client_id, entry in _document(path).items():
        config = _entry(client_id, entry)
        if isinstance(config, ClientConfig):
            configs[client_id] = config
        else:
            problems[str(client_id)] = (
                f"{path}: client {str(client_id)!r} is left out: {config.rstrip('.')}.")
    return ClientsFile(configs=configs, problems=problems)


def load_client_configs(path: Path | None = None) -> dict[str, ClientConfig]:
    """The usable clients of the clients file (see read_clients_file for the others)."""
    return read_clients_file(path).configs


def client_config(client_id: str) -> ClientConfig:
    return load_client_configs().get(client_id) or ClientConfig(client_id=client_id)


def set_client_field(client_id: str, field: str, value: Any, path: Path | None = None) -> None:
    """Set one field of a client's clients.yaml entry (`connect --timezone`), creating the
    entry or the file if needed. The comment lines at the top of the file are kept; the
    rest is written back as YAML. Refused, with the file untouched, when the file cannot be
    read as a whole or the entry would not be valid (ClientsFileError says why)."""
    path = path or load_settings().clients_file
    clients = _document(path) if path.exists() else {}
    entry = dict(clients.get(client_id) or {})
    entry[field] = value
    checked = _entry(client_id, entry)
    if not isinstance(checked, ClientConfig):
        raise ClientsFileError(f"{path}: not changed: {checked.rstrip('.')}.")
    clients[client_id] = entry
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    header = "".join(line for line in _leading_comments(text))
    body = yaml.safe_dump({"clients": clients}, sort_keys=False, allow_unicode=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(header + body, encoding="utf-8")
    os.replace(temporary, path)  # readers see the old file or the new one, never half


def _leading_comments(text: str) -> list[str]:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return lines
