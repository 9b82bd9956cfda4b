"""After a failed sync the widgets must never show the old figures as `ok`: they turn
`stale` with why, carry the time of the data they were built from, and `clients` does not
move the client's last sync forward."""

from __future__ import annotations

import json
import time

import pytest

from sandbox import AccountSpec
from tests.test_credentials import SMALL, run_cli


def widget(client: str, name: str) -> dict:
    done = run_cli("widget", client, name, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def last_sync(client: str) -> str | None:
    listed = json.loads(run_cli("clients", "--json").stdout)
    return next(c for c in listed if c["client_id"] == client)["last_sync_at"]


@pytest.fixture
def synced(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    key = server.world.accounts["acme"].secret_key
    assert run_cli("connect", "acme", stdin=key + "\n").returncode == 0
    assert run_cli("sync", "acme").returncode == 0
    return server


def test_a_failed_sync_turns_the_figures_stale_and_a_good_one_brings_them_back(
        synced, monkeypatch):
    before = widget("acme", "gross_volume")
    synced_at = last_sync("acme")
    assert before["state"] == "ok"
    for _ in range(3):
        synced.world.create_charge("acme", 5_000_000)
    time.sleep(3)  # past the settle window

    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "0")
    synced.fault_rate = 1.0
    assert run_cli("sync", "acme").returncode == 1
    synced.fault_rate = 0.0

    after = widget("acme", "gross_volume")
    assert after["state"] == "stale"
    assert after["message"].startswith("The last sync (") and "failed" in after["message"]
    assert after["value"] == before["value"] and after["as_of"] == before["as_of"]
    assert last_sync("acme") == synced_at

    assert run_cli("sync", "acme").returncode == 0
    fresh = widget("acme", "gross_volume")
    assert fresh["state"] == "ok" and fresh["value"] == before["value"] + 150_000
    assert fresh["as_of"] > before["as_of"] and last_sync("acme") > synced_at


def test_a_restricted_key_without_charges_still_builds_every_other_widget(
        home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL)])
    key = server.world.accounts["acme"].restricted_key(without={"charges"})
    assert run_cli("connect", "acme", stdin=key + "\n").returncode == 0
    assert run_cli("sync", "acme").returncode == 0

    mrr, customers = widget("acme", "mrr"), widget("acme", "new_customers")
    assert mrr["state"] == "ok" and mrr["value"] > 0
    assert customers["state"] == "ok"
    gross = widget("acme", "gross_volume")
    assert gross["state"] == "no_data"
    assert gross["message"] == ("Gross volume cannot be shown: it is computed from the "
                                "account's charges, which the Stripe key connected for these "
                                "reports is not allowed to read.")
    assert "Charges (rak_charge_read)" in gross["steps"][0]
