"""clients.yaml read through one pydantic model: every field of the contract accepted, and an
entry at fault left out alone with one line naming the client and the field."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from engine.client_config import read_clients_file
from engine.cron import CronError, parse_cron
from tests.test_bad_input import refused, run_cli

GOOD = """clients:
  acme:
    name: Acme Corp
    key_env: ACME_STRIPE_KEY
    schedule: "@daily"
    max_requests_per_second: 10
    stripe_account: acct_123
    timezone: Europe/Berlin
    locale: de_DE
    deliveries:
      - {cadence: weekly, day: MON, period: last_week, to: [boss@acme.test]}
      - {cadence: monthly, day: 1, period: last_month, to: [boss@acme.test, cfo@acme.test]}
"""


def _write(body: str) -> Path:
    path = Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"])
    path.write_text(body)
    return path


def test_every_field_of_the_contract_is_taken(home) -> None:
    clients = read_clients_file(_write(GOOD))
    assert clients.problems == {}
    acme = clients.configs["acme"]
    assert (acme.schedule, acme.timezone, acme.locale) == ("0 0 * * *", "Europe/Berlin", "de_DE")
    assert [d.cadence for d in acme.deliveries] == ["weekly", "monthly"]
    assert acme.deliveries[1].to == ["boss@acme.test", "cfo@acme.test"]
    assert acme.stale_after == timedelta(days=2, minutes=15)


@pytest.mark.parametrize("entry,phrases", [
    ("{timezone: Mars/Olympus}", ["timezone 'Mars/Olympus'", "IANA"]),
    ("{locale: xx_YY}", ["locale 'xx_YY'"]),
    ("{max_requests_per_second: true}", ["max_requests_per_second must be a number above 0"]),
    ("{deliveries: [{cadence: weekly, day: 9, period: last_week, to: [a@b.test]}]}",
     ["deliveries[0].day", "MON"]),
    ("{deliveries: [{cadence: monthly, day: 1, period: last_month, to: [a@b.test], cc: x}]}",
     ["unknown field(s) deliveries[0].cc", "known: cadence, day, period, to"]),
    ("{schedule: '0 0 30 2 *'}", ["schedule '0 0 30 2 *'", "never occurs"]),
])
def test_an_entry_at_fault_is_one_line_naming_client_and_field(home, entry, phrases) -> None:
    _write(f"clients:\n  acme: {{key_env: ACME_KEY}}\n  globex: {entry}\n")
    clients = read_clients_file()
    assert list(clients.configs) == ["acme"]  # the others keep their settings
    refused(run_cli("sync", "globex"), 2, "client 'globex' is left out", *phrases)


@pytest.mark.parametrize("line,every", [
    ("*/15 * * * *", timedelta(minutes=15)), ("0 * * * *", timedelta(hours=1)),
    ("0,30 9 * * *", timedelta(hours=23, minutes=30)), ("0 6 * * 1-5", timedelta(days=3)),
    ("0 0 1 * *", timedelta(days=31)), ("@weekly", timedelta(days=7)),
])
def test_the_longest_wait_between_runs_judges_staleness(line, every) -> None:
    assert parse_cron(line).interval == every


@pytest.mark.parametrize("line", ["every hour", "61 * * * *", "*/0 * * * *", "0 0 L * *",
                                  "0 0 * * 8", "10-5 * * * *", "0 0 31 4 *", "* * * * * *"])
def test_lines_cron_does_not_take_are_refused(line) -> None:
    with pytest.raises(CronError):
        parse_cron(line)
