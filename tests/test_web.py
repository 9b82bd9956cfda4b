"""The report web app over HTTP (Starlette's test client): pages, JSON API, reconnect form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from apps.web.app import create_app
from engine.connection_store import ConnectionStore
from engine.failures import StripeAccessError
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from tests.test_reporting_support import seed_report_data

SECRET = "sk_test_" + "S3cr3tKeyBody" * 3
FAILED_REASON = "Stripe rejected the key of client 'initech': it was revoked (api_key_expired)."
FAILED_STEPS = ["Open Developers → API keys in Initech's Stripe Dashboard.",
                "Create a new Secret key and paste it with Connect."]


@pytest.fixture()
def seeded(home):
    now = datetime.now(UTC)
    warehouse = warehouse_from_settings()
    seed_report_data(warehouse, "acme", now)
    seed_report_data(warehouse, "initech", now, seed=2, currency="jpy")
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key=SECRET, account_id="acct_acme",
                              livemode=False, name="Acme Corp")
        store.record_sync("acme", now)
        store.save_connection("initech", secret_key=SECRET[:-4] + "zzzz",
                              account_id="acct_initech", livemode=False, name="Initech")
        store.record_check("initech", ok=False, reason=FAILED_REASON, steps=FAILED_STEPS)
    return home


@pytest.fixture()
def client(seeded):
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as test_client:
        yield test_client


def test_index_lists_clients_with_state_and_masked_keys_only(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "Acme Corp" in page.text and "Initech" in page.text
    assert ">reconnect required<" in page.text and ">up to date<" in page.text
    assert "1 needs attention" in page.text  # initech, listed first
    assert page.text.index('data-client="initech"') < page.text.index('data-client="acme"')
    assert SECRET not in page.text and "S3cr3tKeyBody" not in page.text
    panel = client.get("/clients/acme/connect").text
    assert "sk_test_…Body" in panel and "acct_acme" in panel
    assert SECRET not in panel and "S3cr3tKeyBody" not in panel
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_api_widget_is_the_cli_json(client):
    end = datetime.now(UTC).date().isoformat()  # periods end at most a year ahead
    api = client.get("/api/clients/acme/widgets/gross_volume",
                     params={"start": "2024-01-01", "end": end}).json()
    cli = run_widget("acme", "gross_volume", "2024-01-01", end).to_json()
    assert api == cli and api["state"] == "ok" and api["value"] > 0
    every = client.get("/api/clients/acme/widgets").json()
    assert {w["widget"] for w in every} >= {"mrr", "payouts", "recent_payments"}
    assert client.get("/api/clients/acme/widgets/nope").status_code == 404
    bad = client.get("/api/clients/acme/widgets/mrr", params={"start": "yesterday"})
    assert bad.status_code == 400 and "2024-05-31" in bad.json()["error"]
    catalog = client.get("/api/widgets").json()
    assert {"name", "title", "kind", "parameters"} <= set(catalog[0])


def test_report_page_shows_tiles_charts_and_payments(client):
    page = client.get("/clients/acme")
    assert page.status_code == 200
    mrr = run_widget("acme", "mrr").to_json()
    assert f'data-widget="mrr" data-state="ok"\n           data-value="{mrr["value"]}"' in page.text
    assert 'id="chart-revenue_over_time"' in page.text and "Recent payments" in page.text
    assert "/static/vendor/chart.umd.min.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    assert client.get("/static/vendor/chart.umd.min.js").status_code == 200


def test_failed_client_shows_reason_steps_and_connect(client):
    page = client.get("/clients/initech")
    assert str(escape(FAILED_REASON)) in page.text
    for step in FAILED_STEPS:
        assert str(escape(step)) in page.text
    assert 'id="connect-button"' in page.text and 'type="password"' in page.text
    assert 'data-state="reconnect_required"' in page.text and "¥" not in page.text


def _token(client: TestClient, client_id: str) -> str:
    page = client.get(f"/clients/{client_id}/connect").text
    return page.split('name="form_token" value="', 1)[1].split('"', 1)[0]


def test_connect_refuses_forged_or_cross_site_posts(client, monkeypatch):
    calls = []
    monkeypatch.setattr("pipelines.instance.connect_and_register",
                        lambda *a, **k: calls.append(a))
    forged = client.post("/clients/initech/connect",
                         data={"secret_key": SECRET, "form_token": "x" * 64})
    assert forged.status_code == 403
    cross_site = client.post("/clients/initech/connect",
                             data={"secret_key": SECRET, "form_token": _token(client, "initech")},
                             headers={"Origin": "http://evil.example"})
    assert cross_site.status_code == 403 and calls == []
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400


def test_connect_shows_stripe_refusal_without_echoing_the_key(client, monkeypatch):
    def refuse(client_id, raw_key, **kwargs):
        raise StripeAccessError(message="Stripe rejected that key (invalid_api_key).",
                                steps=("Copy the Secret key again.", "Paste it whole."))

    monkeypatch.setattr("pipelines.instance.connect_and_register", refuse)
    answer = client.post("/clients/initech/connect",
                         data={"secret_key": SECRET, "form_token": _token(client, "initech")})
    assert answer.status_code == 400
    assert "Stripe rejected that key (invalid_api_key)." in answer.text
    assert "Paste it whole." in answer.text
    assert SECRET not in answer.text and "S3cr3tKeyBody" not in answer.text


def test_connect_stores_then_starts_a_sync_and_follows_it(client, monkeypatch):
    seen: dict = {}

    def connect(client_id, raw_key, **kwargs):
        seen["connect"] = (client_id, raw_key, kwargs)
        with ConnectionStore.from_settings() as store:
            store.save_connection(client_id, secret_key=raw_key, account_id="acct_initech",
                                  livemode=False)

    monkeypatch.setattr("pipelines.instance.connect_and_register", connect)
    monkeypatch.setattr("apps.launch.start_background_sync",
                        lambda client_id: seen.setdefault("sync", client_id))
    answer = client.post("/clients/initech/connect", follow_redirects=False,
                         data={"secret_key": f"  {SECRET}\n", "replace_account": "yes",
                               "confirm": "initech", "form_token": _token(client, "initech")})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/clients/initech?sync_started=") and "sk_" not in location
    assert seen["connect"] == ("initech", f"  {SECRET}\n", {"replace_account": True})
    assert seen["sync"] == "initech"
    page = client.get(location)
    assert 'id="sync-started"' in page.text and 'id="reconnect"' not in page.text
    status = client.get("/api/clients/initech/status").json()
    assert status["connection"] == "connected" and status["has_figures"] is True
