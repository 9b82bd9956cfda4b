"""A figure whose inputs a restricted key may not read is never `ok`: each widget declares
what it is computed from (reports/widgets/catalog.py, `needs`), and a key connected without
one of those says why the widget cannot be shown instead of showing a wrong figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.connection_store import ConnectionStore
from engine.permissions import OTHER_READS, readable_permissions, unreadable
from engine.streams import STREAMS
from reports.widgets import OK, WIDGETS, run_widgets
from reports.widgets.catalog import needed_data
from sandbox import AccountSpec
from tests.test_credentials import run_cli

# -- the declarations hold together -----------------------------------------------------------


def test_every_widget_declares_what_it_is_computed_from():
    known = set(readable_permissions())
    for widget in WIDGETS:
        assert needed_data(widget), f"{widget.name} declares no needs"
        assert set(needed_data(widget)) <= known, widget.name
    assert needed_data(WIDGETS[[w.name for w in WIDGETS].index("arr")]) == ("subscriptions",)


def test_the_connect_warnings_name_exactly_the_widgets_the_catalog_says():
    """The warnings come from the engine, which cannot import the catalog: they must agree."""
    declared = {spec.name: spec.widgets for spec in STREAMS}
    declared.update({name: widgets for name, _, _, widgets in OTHER_READS})
    for name, widgets in declared.items():
        expected = [w.name for w in WIDGETS if name in needed_data(w)]
        assert sorted(widgets) == sorted(expected), name


def test_permissions_map_back_to_what_they_guard():
    assert unreadable(["rak_balance_transaction_source_read"]) == ["balance_transactions"]
    assert unreadable(["rak_refund_read", "rak_balance_read", "rak_unknown"]) == [
        "refunds", "balance"]
    assert unreadable(["rak_payment_intent_read", "rak_credit_note_read", "rak_coupon_read",
                       "rak_dispute_read"]) == [
        "disputes", "coupons", "credit_notes", "payment_intents"]


# -- a full key and restricted keys on the same account, through the sandbox ------------------

VARIANTS = {
    "no-fees": {"balance_transactions"},
    "no-refunds": {"refunds"},
    "no-invoices": {"invoices"},
    "no-balance": {"balance"},
    "no-customers": {"customers"},
    "no-subs": {"subscriptions"},
    "no-events": {"events"},
    "no-disputes": {"disputes"},
}
SPEC = {"charges": 160, "customers": 30, "subscriptions": 20, "products": 3,
        "history_days": 90}


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """One sandbox account connected as `full` (its Secret key) and as one client per
    restricted key, every one synced through `stripe-reports sync`."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("needs")
    clients = root / "clients.yaml"
    clients.write_text("clients: {}\n")
    for name, value in {"STRIPE_REPORTS_HOME": root / "home", "DAGSTER_HOME": root / "dh",
                        "STRIPE_REPORTS_SECRET": "test-master-passphrase-not-a-stripe-key",
                        "STRIPE_REPORTS_CLIENTS_FILE": clients}.items():
        mp.setenv(name, str(value))
    for name in ("STRIPE_REPORTS_WAREHOUSE", "STRIPE_REPORTS_CONNECTIONS_URL",
                 "STRIPE_REPORTS_DAGSTER_STORAGE_URL", "STRIPE_REPORTS_LAKE_DATA_PATH"):
        mp.delenv(name, raising=False)
    (root / "home").mkdir()
    from sandbox import SandboxServer, SandboxWorld  # the fixture's own, module-wide

    world = SandboxWorld.generate(seed=3, specs=[AccountSpec("shop", **SPEC)])
    server = SandboxServer(world).start()
    mp.setenv("STRIPE_API_BASE", server.base_url)
    shop = world.accounts["shop"]
    lines = [f"full\t{shop.secret_key}\n"] + [
        f"{client}\t{shop.restricted_key(without=without)}\n"
        for client, without in VARIANTS.items()]
    connected = run_cli("connect", "--bulk", stdin="".join(lines))
    assert connected.returncode == 0, connected.stdout + connected.stderr
    done = run_cli("sync", "--all", "--parallel", "2", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    yield connected
    server.stop()
    mp.undo()


def widgets_of(client: str) -> dict:
    start = (datetime.now(UTC) - timedelta(days=45)).date()
    with ConnectionStore.from_settings() as store:
        return {r.widget: r for r in run_widgets(client, start=start, store=store)}


def test_connect_warns_which_widgets_will_not_be_shown(synced):
    out = " ".join(synced.stdout.split())
    assert ("cannot read balance_transactions (rak_balance_transaction_source_read); these "
            "widgets will say they cannot be shown: net_volume, revenue_over_time.") in out
    assert ("cannot read invoices (rak_invoice_read); these widgets will say they cannot be "
            "shown: delinquent_churn, mrr_recovered.") in out
    assert ("cannot read disputes (rak_dispute_read); these widgets will say they cannot be "
            "shown: disputes.") in out


@pytest.mark.parametrize("client", list(VARIANTS))
def test_a_restricted_key_never_shows_a_figure_the_full_key_would_not(synced, client):
    full, restricted = widgets_of("full"), widgets_of(client)
    compared = [w.name for w in WIDGETS if VARIANTS[client] & set(needed_data(w))]
    # The comparison means something: the full key shows each, unless the period has none.
    assert [w for w in compared if full[w].state != OK
            and not (full[w].message or "").startswith("No figures for")] == []
    for name, result in restricted.items():
        if result.state == OK:
            expected = full[name]
            assert (result.value, result.previous, result.rows, result.currency) == (
                expected.value, expected.previous, expected.rows, expected.currency), name
        else:
            assert result.value is None and result.rows == [], name
    denied = set(unreadable(ConnectionStore.from_settings().get(client).missing_permissions))
    assert denied == VARIANTS[client]
    shown = {name for name, result in restricted.items() if result.state == OK}
    assert shown == {w.name for w in WIDGETS
                     if full[w.name].state == OK and not denied & set(needed_data(w))}


def test_without_balance_transactions_net_figures_say_why_and_show_none(synced):
    full, restricted = widgets_of("full"), widgets_of("no-fees")
    # Without the gate these would be wrong: the fees are in the full key's figures only.
    assert full["net_volume"].value < full["gross_volume"].value - full["refunds"].value
    for name in ("net_volume", "revenue_over_time"):
        result = restricted[name]
        assert result.state == "no_data" and result.value is None and result.rows == []
        assert result.message == (
            f"{result.title} cannot be shown: it is computed from the account's balance "
            "transactions, which the Stripe key connected for these reports is not allowed "
            "to read.")
        assert "Balance transactions (rak_balance_transaction_source_read)" in result.steps[0]
        assert "stripe-reports connect no-fees" in result.steps[1]
    assert restricted["gross_volume"].state == OK
    assert restricted["gross_volume"].value == full["gross_volume"].value


def test_arr_follows_mrr(synced):
    """Without invoices both are shown (MRR is computed from subscriptions); without
    subscriptions neither is."""
    full, no_invoices, no_subs = (widgets_of(c) for c in ("full", "no-invoices", "no-subs"))
    for name in ("mrr", "arr"):
        assert no_invoices[name].state == OK and no_invoices[name].value == full[name].value
        assert no_subs[name].state == "no_data" and "subscriptions" in no_subs[name].message
