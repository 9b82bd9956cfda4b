"""The README's queries for analysts run, as written there, against a warehouse synced from
the sandbox with its reporting tables built, and say what the README says they say."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.currencies import currency_exponent
from engine.reporting import build_reporting_tables
from engine.streams import STREAMS
from engine.warehouse_factory import open_warehouse
from sandbox import AccountSpec, SandboxServer, SandboxWorld
from tests.sync_helpers import run_sync, source_objects

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## For analysts: querying the warehouse"
CHARGES = next(spec for spec in STREAMS if spec.name == "charges")
CLIENTS = {"acme": ("Acme GmbH", "Europe/Berlin"), "umbrella": ("umbrella", "UTC")}


def readme_queries() -> list[str]:
    text = README.read_text()
    assert SECTION in text, "the README lost its section for analysts"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> tuple[list[list[tuple]], dict[str, Decimal]]:
    """Each README query's rows, and each client's successful charges in the source."""
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("analysts")
    clients = root / "clients.yaml"
    clients.write_text("clients:\n  acme: {name: Acme GmbH, timezone: Europe/Berlin, "
                       "key_env: ACME_KEY}\n  umbrella: {key_env: UMBRELLA_KEY}\n")
    monkeypatch.setenv("STRIPE_REPORTS_CLIENTS_FILE", str(clients))
    world = SandboxWorld.generate(seed=11, specs=[
        AccountSpec("acme", charges=150, customers=25),
        AccountSpec("umbrella", charges=90, customers=15, currency="jpy")])
    server = SandboxServer(world).start()
    try:
        warehouse = open_warehouse(root / "warehouse.duckdb")
        source = {}
        for client in CLIENTS:
            assert not run_sync(server, client, warehouse).errors
            with warehouse.writer() as conn:
                build_reporting_tables(conn, client, state="connected",
                                       now=datetime.now(UTC) + timedelta(minutes=1))
            source[client] = _succeeded(source_objects(server, client, CHARGES).values())
        with warehouse.reader() as conn:
            yield [conn.execute(sql).fetchall() for sql in readme_queries()], source
    finally:
        server.stop()
        monkeypatch.undo()


def _succeeded(charges) -> dict[str, Decimal]:
    """Captured amounts of successful charges per currency, in major units."""
    totals: dict[str, Decimal] = {}
    for charge in charges:
        if charge["status"] == "succeeded":
            cur = charge["currency"]
            totals[cur] = totals.get(cur, Decimal(0)) + Decimal(charge["amount_captured"]) \
                / 10 ** currency_exponent(cur)
    return totals


def test_the_readme_has_five_queries():
    assert len(readme_queries()) == 5


def test_tables_listed_with_their_comments(answers):
    tables = {(schema, table): comment for schema, table, comment in answers[0][0]}
    assert ("reporting", "clients") in tables and ("stripe", "charges") in tables
    assert all(tables.values())


def test_clients_with_name_timezone_currency_and_state(answers):
    rows = {row[0]: row[1:] for row in answers[0][1]}
    assert rows["acme"][:2] == CLIENTS["acme"] and rows["umbrella"][:2] == CLIENTS["umbrella"]
    assert rows["umbrella"][2] == "jpy"
    assert {row[3] for row in rows.values()} == {"connected"}


def test_monthly_revenue_adds_up_to_the_source_in_major_units(answers):
    rows, source = answers[0][2], answers[1]
    got: dict[str, dict[str, Decimal]] = {}
    for client, currency, _month, gross, *_ in rows:
        got.setdefault(client, {}).setdefault(currency, Decimal(0))
        got[client][currency] += gross
    assert got == {client: {c: v for c, v in totals.items() if v} for client, totals in
                   source.items()}


def test_latest_mrr_per_client_and_currency(answers):
    rows = answers[0][3]
    assert {row[0] for row in rows} == set(CLIENTS)
    assert len({row[2] for row in rows if row[0] == "acme"}) == 1  # one day per client
    assert any(row[3] > 0 for row in rows)


def test_one_charge_two_units(answers):
    rows = answers[0][4]
    assert len(rows) == 10
    for _client, _id, currency, minor, major, same_as_stripe in rows:
        assert major * 10 ** currency_exponent(currency) == minor
        assert same_as_stripe
