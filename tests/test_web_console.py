"""The agency console: states in words with attention first, search, and the reconnect
panel in Oviond's order (check again on a real sandbox, the account, remove key with
confirmation and audit, a key from the environment stores nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from apps.web.app import create_app
from engine.access_records import audit_entries
from engine.connection_store import ConnectionState, ConnectionStore
from engine.credentials import connect_client
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec
from tests.test_reporting_support import seed_report_data

KEY = "sk_test_" + "ConsoleKeyBody" * 3


@pytest.fixture()
def console(home, tmp_path, monkeypatch):
    (tmp_path / "clients.yaml").write_text(
        "clients:\n  envco:\n    name: Env Co\n    key_env: ENVCO_STRIPE_KEY\n")
    monkeypatch.setenv("ENVCO_STRIPE_KEY", "sk_test_" + "FromTheEnvironment" * 2)
    now = datetime.now(UTC)
    seed_report_data(warehouse_from_settings(), "acme", now)
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key=KEY, account_id="acct_acme", livemode=False,
                              name="Acme Corp")
        store.record_sync("acme", now)
        store.save_connection("newco", secret_key=KEY, account_id="acct_newco",
                              livemode=False, name="Newco")
        store.save_connection("oldco", secret_key=KEY, account_id="acct_oldco",
                              livemode=False, name="Oldco")
        store.record_sync("oldco", now - timedelta(days=3))
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as client:
        yield client


def _token(client: TestClient, client_id: str) -> str:
    page = client.get(f"/clients/{client_id}/connect").text
    return page.split('name="form_token" value="', 1)[1].split('"', 1)[0]


def test_the_list_says_what_is_happening_attention_first(console):
    page = console.get("/").text
    order = [page.index(f'data-client="{c}"') for c in ("oldco", "newco", "acme")]
    assert order == sorted(order)  # out of date, then waiting, then up to date
    assert "waiting for first sync" in page and "figures out of date" in page
    assert "up to date" in page and "1 needs attention" in page
    assert "Open console" in page  # loopback without a password says so
    found = console.get("/", params={"q": "acm"}).text
    assert 'data-client="acme"' in found and 'data-client="newco"' not in found
    listed = {c["client"]: c for c in console.get("/api/clients").json()}
    assert listed["newco"]["status"] == "waiting for first sync"
    assert listed["oldco"]["needs_attention"] is True


def test_a_key_from_the_environment_is_said_and_nothing_is_stored(console, monkeypatch):
    calls = []
    monkeypatch.setattr("pipelines.instance.connect_and_register",
                        lambda *a, **k: calls.append(a))
    panel = console.get("/clients/envco/connect").text
    assert "comes from the environment variable" in panel and "ENVCO_STRIPE_KEY" in panel
    assert 'name="secret_key"' not in panel and 'id="remove-key"' not in panel
    answer = console.post("/clients/envco/connect", data={
        "secret_key": KEY, "form_token": _token(console, "envco")})
    assert answer.status_code == 409 and "nothing was stored" in answer.text
    assert calls == []
    with ConnectionStore.from_settings() as store:
        assert store.get("envco") is None


def test_remove_key_asks_for_confirmation_and_is_audited(console):
    token = _token(console, "acme")
    unconfirmed = console.post("/clients/acme/remove-key", data={"form_token": token,
                                                                 "confirm": "acm"})
    assert unconfirmed.status_code == 400 and "Nothing was removed" in unconfirmed.text
    with ConnectionStore.from_settings() as store:
        assert store.get("acme").state is ConnectionState.CONNECTED
    removed = console.post("/clients/acme/remove-key", follow_redirects=False,
                           data={"form_token": token, "confirm": "acme"})
    assert removed.status_code == 303
    with ConnectionStore.from_settings() as store:
        assert store.get("acme").state is ConnectionState.DISCONNECTED
        [entry] = audit_entries(store, "acme")
    assert entry.action == "remove key" and "loopback" in entry.who
    assert abs(entry.at - datetime.now(UTC)) < timedelta(minutes=1)
    panel = console.get("/clients/acme/connect").text
    assert "remove key" in panel and "key removed" in console.get("/").text


def test_moving_accounts_needs_confirmation(console, monkeypatch):
    calls = []
    monkeypatch.setattr("pipelines.instance.connect_and_register",
                        lambda *a, **k: calls.append(a))
    answer = console.post("/clients/acme/connect", data={
        "secret_key": KEY, "replace_account": "yes", "form_token": _token(console, "acme")})
    assert answer.status_code == 400 and "Nothing was changed" in answer.text
    assert calls == []


def test_check_again_runs_the_credential_check_now(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("initech", charges=3)])
    account = server.world.accounts["initech"]
    connect_client("initech", account.secret_key, name="Initech", api_base=server.base_url)
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as client:
        panel = client.get("/clients/initech/connect").text
        assert account.account_id in panel and "passed" in panel
        server.world.revoke_key("initech")
        checked = client.post("/clients/initech/check",
                              data={"form_token": _token(client, "initech")})
        assert checked.status_code == 200 and "Checked just now" in checked.text
        assert "failed" in checked.text.split('id="last-check"', 1)[1][:80]
        assert "reconnect required" in client.get("/").text


def test_the_panel_makes_and_ends_share_links(console):
    made = console.post("/clients/acme/share", data={"form_token": _token(console, "acme")})
    link = made.text.split('id="share-link" readonly value="', 1)[1].split('"', 1)[0]
    assert link.startswith("http://127.0.0.1:8050/r/")
    path = link.removeprefix("http://127.0.0.1:8050")
    assert console.get(path).status_code == 200
    unconfirmed = console.post("/clients/acme/share", data={
        "form_token": _token(console, "acme"), "revoke": "yes", "confirm": ""})
    assert unconfirmed.status_code == 400 and console.get(path).status_code == 200
    ended = console.post("/clients/acme/share", data={
        "form_token": _token(console, "acme"), "revoke": "yes", "confirm": "acme"})
    assert "now ends in 404" in ended.text and console.get(path).status_code == 404
    with ConnectionStore.from_settings() as store:
        assert [e.action for e in audit_entries(store, "acme")] == ["revoke share links"]


def test_the_list_shows_each_clients_last_delivery(console):
    from datetime import date

    from engine.deliveries import DueDelivery
    from engine.delivery_log import DeliveryLog

    log = DeliveryLog.from_settings()
    sent = DueDelivery("acme", "last_month", date(2026, 11, 1), date(2026, 11, 30),
                       ("boss@acme.example",))
    log.claim(sent, run_id=None)
    log.record_sent(sent, run_id=None)
    held = DueDelivery("oldco", "last_week", date(2026, 11, 23), date(2026, 11, 29),
                       ("cfo@oldco.example",))
    log.record_held(held, "the last sync is older than the period", None, None, False)
    rows = {row.split('data-client="', 1)[1].split('"', 1)[0]: row
            for row in console.get("/").text.split("<tr")[1:] if 'data-client="' in row}
    assert "sent " in rows["acme"] and " UTC" in rows["acme"]
    assert "held: the last sync is older than the period" in rows["oldco"]
    assert "sent" not in rows["newco"] and "held" not in rows["newco"]
