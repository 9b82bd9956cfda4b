"""When a delivery is due and which days it covers; a bad `deliveries` entry in clients.yaml
leaves that client out with a message saying what is wrong."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from engine.client_config import Delivery, read_clients_file
from engine.deliveries import due_delivery, last_due_date, period_dates


def test_periods_are_whole_weeks_and_months():
    wednesday = date(2026, 12, 2)
    assert period_dates("last_week", wednesday) == (date(2026, 11, 23), date(2026, 11, 29))
    assert period_dates("last_week", date(2026, 11, 30)) == (date(2026, 11, 23),
                                                             date(2026, 11, 29))
    assert period_dates("last_month", date(2026, 3, 1)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_dates("month_to_date", date(2026, 3, 15)) == (date(2026, 3, 1),
                                                                date(2026, 3, 14))
    assert period_dates("month_to_date", date(2026, 3, 1)) == (date(2026, 2, 1),
                                                               date(2026, 2, 28))


def test_the_latest_due_date_and_its_period():
    monthly = Delivery(cadence="monthly", day=5, period="last_month", to=["a@b.example"])
    assert last_due_date(monthly, date(2026, 12, 4)) == date(2026, 11, 5)
    assert last_due_date(monthly, date(2026, 12, 5)) == date(2026, 12, 5)
    weekly = Delivery(cadence="weekly", day="mon", period="last_week", to=["a@b.example"])
    assert last_due_date(weekly, date(2026, 12, 6)) == date(2026, 11, 30)  # a Sunday
    due = due_delivery("acme", monthly, date(2026, 12, 4))
    assert (due.start, due.end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert due.key == due_delivery("acme", monthly, date(2026, 11, 30)).key  # same period


def test_a_bad_delivery_leaves_the_client_out(home):
    Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"]).write_text(
        "clients:\n"
        "  acme:\n    deliveries: [{cadence: monthly, day: 31, period: last_month, to: [a@b.co]}]\n"
        "  globex:\n    deliveries: [{cadence: weekly, day: FRI, period: last_week, to: [nope]}]\n"
        "  initech:\n    deliveries: [{cadence: weekly, day: fri, period: last_week, "
        "to: [boss@initech.example]}]\n")
    clients = read_clients_file()
    assert "1 to 28" in clients.problems["acme"]
    assert "'nope' is not an email address" in clients.problems["globex"]
    assert [d.to for d in clients.configs["initech"].deliveries] == [["boss@initech.example"]]


def test_deliveries_command_adds_lists_and_removes(home, capsys):
    from apps.cli import main

    path = Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"])
    path.write_text("# the agency's clients\nclients:\n  acme:\n    name: Acme Corp\n")
    assert main(["deliveries", "acme", "--add", "--cadence", "weekly", "--day", "mon",
                 "--period", "last_week", "--to", "boss@acme.example"]) == 0
    assert main(["deliveries", "acme", "--add", "--to", "cfo@acme.example"]) == 0
    config = read_clients_file().configs["acme"]
    assert config.name == "Acme Corp" and [d.to for d in config.deliveries] == [
        ["boss@acme.example"], ["cfo@acme.example"]]
    assert path.read_text().startswith("# the agency's clients\n")
    capsys.readouterr()
    assert main(["deliveries", "acme"]) == 0
    listed = capsys.readouterr().out
    assert "last week every MON to boss@acme.example" in listed
    assert "last month on day 1 monthly to cfo@acme.example" in listed
    assert main(["deliveries", "acme", "--remove", "1"]) == 0
    assert [d.to for d in read_clients_file().configs["acme"].deliveries] == [
        ["cfo@acme.example"]]
    before = path.read_text()
    assert main(["deliveries", "acme", "--add", "--day", "31", "--to", "x@y.example"]) == 2
    assert main(["deliveries", "acme", "--remove", "5"]) == 2
    assert main(["deliveries", "nobody", "--add", "--to", "x@y.example"]) == 2
    assert path.read_text() == before
