"""A client's own calendar days (`timezone` in clients.yaml): a Europe/Berlin client's
payments around midnight and across both daylight-saving changes land on its days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.client_config import read_clients_file
from engine.connection_store import ConnectionStore
from engine.settings import load_settings
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from tests.test_reporting_support import build, charge, land, price, subscription

NOW = datetime(2024, 10, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 November in Berlin (CET)
# UTC instant -> Berlin day: the amounts make each day's sum say which charges it holds.
CHARGES = [
    ("2024-06-09T22:30:00", 100),   # 00:30 on 10 June (CEST, +2)
    ("2024-06-10T21:59:00", 200),   # 23:59 on 10 June
    ("2024-06-10T22:00:00", 400),   # 00:00 on 11 June
    ("2024-03-30T23:30:00", 1_000),  # 00:30 on 31 March, before the change (CET, +1)
    ("2024-03-31T22:30:00", 2_000),  # 00:30 on 1 April, after it (CEST, +2)
    ("2024-10-26T22:30:00", 4_000),  # 00:30 on 27 October (CEST), the day clocks go back
    ("2024-10-27T23:30:00", 8_000),  # 00:30 on 28 October (CET)
]


@pytest.fixture()
def clients(home):
    load_settings().clients_file.write_text(
        "clients:\n  berlin:\n    timezone: Europe/Berlin\n  london: {}\n")
    warehouse = warehouse_from_settings()
    with ConnectionStore.from_settings() as store:
        for client in ("berlin", "london"):
            store.save_connection(client, secret_key="sk_test_" + "a" * 24,
                                  account_id=f"acct_{client}", livemode=False)
            store.record_sync(client, NOW)
            land(warehouse, client, "charges", [charge(at, amount) for at, amount in CHARGES])
            land(warehouse, client, "subscriptions", [subscription(
                "cus_1", [(price(3_000), 1)], start="2024-06-09T22:30:00")])
            build(warehouse, client, NOW)
    return warehouse


def gross(client: str, start: str, end: str | None = None) -> float:
    return run_widget(client, "gross_volume", start, end or start, now=NOW).value


@pytest.mark.parametrize(("day", "berlin", "utc"), [
    ("2024-06-09", 0.0, 1.0), ("2024-06-10", 3.0, 6.0), ("2024-06-11", 4.0, 0.0),
    ("2024-03-30", 0.0, 10.0), ("2024-03-31", 10.0, 20.0), ("2024-04-01", 20.0, 0.0),
    ("2024-10-26", 0.0, 40.0), ("2024-10-27", 40.0, 80.0), ("2024-10-28", 80.0, 0.0),
])
def test_days_are_the_clients_own(clients, day, berlin, utc):
    assert gross("berlin", day) == berlin
    assert gross("london", day) == utc  # no timezone: UTC


def test_today_rows_and_mrr_start_are_the_clients_own(clients):
    result = run_widget("berlin", "revenue_over_time", now=NOW)
    assert str(result.end) == "2024-11-01"  # already 1 November in Berlin
    assert str(run_widget("london", "revenue_over_time", now=NOW).end) == "2024-10-31"
    rows = run_widget("berlin", "revenue_over_time", "2024-06-09", "2024-06-11",
                      now=NOW).rows
    assert [(r["day"], r["gross"]) for r in rows] == [
        ("2024-06-09", 0.0), ("2024-06-10", 3.0), ("2024-06-11", 4.0)]
    # The subscription started at 00:30 on 10 June in Berlin, on 9 June in UTC.
    assert run_widget("berlin", "new_subscriptions", "2024-06-10", "2024-06-10",
                      now=NOW).value == 1
    assert run_widget("london", "new_subscriptions", "2024-06-10", "2024-06-10",
                      now=NOW).value == 0


def test_an_unknown_zone_leaves_that_client_out_with_the_reason(home):
    load_settings().clients_file.write_text(
        "clients:\n  berlin:\n    timezone: Europe/Berlinn\n  paris:\n    timezone: "
        "Europe/Paris\n")
    found = read_clients_file()
    assert "is not an IANA time zone" in found.problems["berlin"]
    assert found.configs["paris"].timezone == "Europe/Paris"


# -- set on `connect` ---------------------------------------------------------------------


def test_connect_sets_the_zone_and_a_bad_one_changes_nothing(home, sandbox_factory):
    from sandbox import AccountSpec
    from tests.test_credentials import SMALL, run_cli, stored

    server = sandbox_factory([AccountSpec("berlin", **SMALL)])
    key = server.world.accounts["berlin"].secret_key
    clients_file = load_settings().clients_file
    clients_file.write_text("# Our clients (kept at the top when a field is set)\n"
                            "clients:\n  berlin:\n    name: Berlin GmbH\n")
    done = run_cli("connect", "berlin", "--timezone", "Europe/Berlin", stdin=key + "\n")
    assert done.returncode == 0, done.stderr
    assert "Time zone of berlin: Europe/Berlin" in done.stdout
    config = read_clients_file().configs["berlin"]
    assert (config.timezone, config.name) == ("Europe/Berlin", "Berlin GmbH")
    assert clients_file.read_text().startswith("# Our clients")
    before = (clients_file.read_text(), stored("berlin"))

    for bad in ("Europe/Berlinn", "Mars/Olympus_Mons", "../etc/passwd"):
        refused = run_cli("connect", "berlin", "--timezone", bad, stdin=key + "\n")
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: --timezone {bad!r} is not an IANA time zone (like Europe/Berlin or "
            "America/New_York): nothing was changed."]
        assert (clients_file.read_text(), stored("berlin")) == before
    # A key that is refused changes the zone no more than the key.
    refused = run_cli("connect", "berlin", "--timezone", "Asia/Tokyo",
                      stdin="sk_test_" + "x" * 24 + "\n")
    assert refused.returncode == 1
    assert (clients_file.read_text(), stored("berlin")) == before
