"""Per-client settings from workspace_config/clients.yaml (cadence, rate, key variable).

A file that cannot be read as a whole (bad YAML, a client declared twice, the wrong shape)
raises ClientsFileError. A problem in one client's entry (an invalid id, an unknown field,
a bad cron line) leaves that client out and is reported in `ClientsFile.problems`: the
other clients keep their settings and their schedules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from engine.connection_store import InvalidClientId, check_client_id
from engine.settings import environment_variable, load_settings

DEFAULT_SCHEDULE = "0 * * * *"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClientsFileError(ValueError):
    """clients.yaml cannot be used as a whole; the message names the file and the fix."""


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    name: str | None = None
    key_env: str | None = None
    schedule: str = DEFAULT_SCHEDULE
    max_requests_per_second: float | None = None
    stripe_account: str | None = None

    def key_from_env(self) -> str | None:
        return environment_variable(self.key_env) if self.key_env else None

    @property
    def stale_after(self) -> timedelta:
        """How old the last successful sync may be before widgets say `stale`."""
        return 2 * schedule_interval(self.schedule) + timedelta(minutes=15)


FIELDS = tuple(f.name for f in fields(ClientConfig) if f.name != "client_id")


@dataclass(frozen=True)
class ClientsFile:
    """The usable clients, and why each unusable one was left out (client id -> message)."""

    configs: dict[str, ClientConfig] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def schedule_interval(cron: str) -> timedelta:
    """A rough period for common cron shapes; enough to judge staleness."""
    minute, hour, day_of_month, _month, day_of_week = (cron.split() + ["*"] * 5)[:5]
    if minute.startswith("*/"):
        return timedelta(minutes=int(minute[2:]))
    if minute == "*":
        return timedelta(minutes=1)
    if hour.startswith("*/"):
        return timedelta(hours=int(hour[2:]))
    if hour == "*":
        return timedelta(hours=1)
    if day_of_month == "*" and day_of_week == "*":
        return timedelta(days=1)
    if day_of_week != "*":
        return timedelta(days=7)
    return timedelta(days=31)


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


def _valid_cron(cron: str) -> bool:
    from dagster._utils.schedules import is_valid_cron_string  # Dagster's own rule

    try:
        return is_valid_cron_string(cron) and schedule_interval(cron) > timedelta(0)
    except (ValueError, TypeError, KeyError, IndexError):
        return False


def _field_problem(name: str, value: Any) -> str | None:
    """What is wrong with one field of a client's entry, if anything."""
    if name == "max_requests_per_second":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return f"max_requests_per_second must be a number above 0, not {value!r}"
        return None
    if not isinstance(value, str) or not value.strip():
        return f"{name} must be text, not {value!r}"
    if name == "key_env" and not _ENV_NAME.fullmatch(value):
        return f"key_env must name an environment variable (like ACME_STRIPE_KEY), not {value!r}"
    if name == "schedule" and not _valid_cron(value):
        return (f"schedule {value!r} is not a valid cron expression (5 fields, for example "
                "\"0 * * * *\" for hourly)")
    return None


def _entry_problem(client_id: Any, entry: Any) -> str | None:
    try:
        check_client_id(client_id)
    except InvalidClientId as error:
        return str(error)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        return f"its entry must be a mapping of {', '.join(FIELDS)}"
    unknown = sorted(str(name) for name in entry if name not in FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"
    return next((p for p in (_field_problem(n, v) for n, v in entry.items()) if p), None)


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
    result = ClientsFile()
    for client_id, entry in _document(path).items():
        problem = _entry_problem(client_id, entry)
        if problem:
            result.problems[str(client_id)] = (
                f"{path}: client {str(client_id)!r} is left out: {problem.rstrip('.')}.")
        else:
            result.configs[client_id] = ClientConfig(client_id=client_id, **(entry or {}))
    return result


def load_client_configs(path: Path | None = None) -> dict[str, ClientConfig]:
    """The usable clients of the clients file (see read_clients_file for the others)."""
    return read_clients_file(path).configs


def client_config(client_id: str) -> ClientConfig:
    return load_client_configs().get(client_id) or ClientConfig(client_id=client_id)
