"""Answers of the wrong shape from Stripe: well-formed 200s that lack what the code relies on
(an account without its id, a listed object without one, a balance without amounts, a list
where an object belongs, an empty body). Each is asked for again like a truncated answer and,
when it lasts, is a transient failure: never a verdict on the key, never stored."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from engine.connection_store import ConnectionStore
from engine.failures import CredentialFailure, TransientStripeError
from engine.pager import extract_events
from engine.streams import STREAMS
from engine.stripe_api import StripeAccount, verify_account
from engine.sync import sync_client
from sandbox import AccountSpec
from tests.fault_proxy import SHAPE_KINDS, FaultProxy, misshape
from tests.sync_helpers import new_warehouse
from tests.test_credentials import SMALL, run_cli, stored

ACCOUNT = "/v1/account"


@pytest.fixture
def proxied(home, sandbox_factory, monkeypatch):
    """Three sandbox accounts behind a fault proxy that STRIPE_API_BASE points at."""
    server = sandbox_factory([AccountSpec(name, **SMALL) for name in ("acme", "globex",
                                                                      "initech")])
    proxy = FaultProxy(server.base_url).start()
    monkeypatch.setenv("STRIPE_API_BASE", proxy.base_url)
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "1")
    yield server, proxy
    proxy.stop()


def account_of(server, proxy: FaultProxy, name: str, retry_seconds: float = 30) -> StripeAccount:
    return StripeAccount(name, server.world.accounts[name].secret_key, api_base=proxy.base_url,
                         requests_per_second=2000, retry_seconds=retry_seconds)


def always(path: str, kind: str):
    return lambda target: kind if target.split("?")[0] == path else None


def test_the_proxy_makes_each_shape_from_the_real_answer():
    account = json.dumps({"id": "acct_1", "object": "account", "created": 1}).encode()
    page = json.dumps({"object": "list", "has_more": False,
                       "data": [{"id": "ch_1"}, {"id": "ch_2"}, {"id": "ch_3"}]}).encode()
    assert json.loads(misshape("no_id", account)) == {"object": "account", "created": 1}
    assert json.loads(misshape("only_object", account)) == {"object": "account"}
    assert json.loads(misshape("id_not_string", page))["data"][1] == {"id": 12345}
    assert json.loads(misshape("no_id", page))["data"] == [{"id": "ch_1"}, {}, {"id": "ch_3"}]
    assert json.loads(misshape("wrong_type", account))["created"] == "1"
    event = json.dumps({"object": "list", "has_more": False, "data": [
        {"id": "evt_1", "type": "charge.succeeded", "created": 5,
         "data": {"object": {"id": "ch_1", "object": "charge", "amount": 700}}}]}).encode()
    assert json.loads(misshape("wrong_type", event))["data"][0]["data"]["object"]["amount"] \
        == "700"
    assert json.loads(misshape("a_list", account)) == [json.loads(account)]
    assert misshape("empty_body", account) == b""
    balance = json.dumps({"object": "balance", "available": [], "pending": []}).encode()
    assert "available" not in json.loads(misshape("no_id", balance))


# -- each answer the engine reads is checked, and asked for again ------------------------------


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_every_answer_of_a_wrong_shape_is_asked_for_again(proxied, kind):
    server, proxy = proxied
    clean = account_of(server, proxy, "acme")
    expected = {
        ACCOUNT: clean.get(ACCOUNT), "/v1/balance": clean.get("/v1/balance"),
        "/v1/charges": clean.get_page("/v1/charges", {"limit": 10}),
        "/v1/events": list(extract_events(clean, ("charge.succeeded",), 0, 2**31)),
    }
    account = account_of(server, proxy, "acme")
    for path, answer in expected.items():
        proxy.script([kind] * 2)
        if path == ACCOUNT:
            assert verify_account(account, clean.get(ACCOUNT)["id"]) == answer
        elif path == "/v1/charges":
            assert account.get_page(path, {"limit": 10}) == answer
        elif path == "/v1/events":
            assert list(extract_events(account, ("charge.succeeded",), 0, 2**31)) == answer
        else:
            assert account.get(path) == answer
    assert proxy.injected[kind] == 8


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_an_account_answer_that_stays_wrong_is_transient_never_a_credential_verdict(
        proxied, kind):
    server, proxy = proxied
    proxy.rule = always(ACCOUNT, kind)
    account = account_of(server, proxy, "acme", retry_seconds=0.5)

    with pytest.raises(TransientStripeError) as caught:
        verify_account(account, server.world.accounts["acme"].account_id)

    assert not isinstance(caught.value, CredentialFailure)
    assert caught.value.code == "malformed_response"
    assert str(caught.value).startswith(
        "Stripe kept answering /v1/account with a malformed response for client 'acme' (200); "
        "the key was not marked failed. Tried ")
    assert "None" not in str(caught.value) and proxy.injected[kind] >= 2


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/balance", "/v1/events"])
def test_a_sync_whose_answers_stay_wrong_fails_as_transient(
        proxied, tmp_path, path):
    server, proxy = proxied
    proxy.rule = always(path, "id_not_string")
    warehouse = new_warehouse(tmp_path)
    account = account_of(server, proxy, "acme", retry_seconds=0.5)
    acme = server.world.accounts["acme"]

    if path == "/v1/events":  # events are read from the second sync on
        sync_client(account_of(server, proxy, "acme"), warehouse, STREAMS, include_balance=False)
    if path == "/v1/balance":
        with pytest.raises(TransientStripeError):
            sync_client(account, warehouse, STREAMS, expected_account_id=acme.account_id)
        return
    # The streams reading that answer fail, transiently; the others land.
    report = sync_client(account, warehouse, STREAMS, expected_account_id=acme.account_id,
                         include_balance=False)
    assert report.errors and {type(e) for e in report.errors} == {TransientStripeError}
    assert all("malformed response" in e.message for e in report.errors)
    if path == "/v1/charges":
        with warehouse.reader() as conn:
            assert conn.execute("SELECT count(*) FROM stripe.charges").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0] > 0


# -- connect, bulk connect, and syncs through the real CLI ------------------------------------


@pytest.mark.parametrize("kind", ["only_object", "id_not_string", "empty_body"])
def test_connect_stores_nothing_and_says_to_try_again(proxied, kind):
    server, proxy = proxied
    proxy.rule = always(ACCOUNT, kind)
    key = server.world.accounts["globex"].secret_key

    done = run_cli("connect", "globex", stdin=key + "\n")

    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert "was incomplete or malformed (HTTP 200); nothing was stored or changed. This is a " \
           "temporary problem, not one with the key: try again." in text
    assert "Run `stripe-reports connect globex` again." in text
    assert "Traceback" not in done.stderr and key not in done.stdout + done.stderr
    assert stored("globex") is None


def test_bulk_connect_stores_nothing_for_the_line_whose_answer_is_wrong(proxied, monkeypatch):
    server, proxy = proxied
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "8")  # the good lines ride out a blip
    keys = {name: server.world.accounts[name].secret_key for name in ("acme", "globex",
                                                                      "initech")}
    proxy.key_rule = lambda target, key: (
        "no_id" if key == keys["globex"] and target.startswith(ACCOUNT) else None)
    lines = "".join(f"{name}\t{key}\n" for name, key in keys.items())

    done = run_cli("connect", "--bulk", stdin=lines)

    assert done.returncode == 1
    out = " ".join(done.stdout.split())
    assert "line 2: globex FAILED" in out and "try again" in out
    assert "temporary problem, not one with the key" in out
    assert stored("globex") is None
    for name in ("acme", "initech"):
        assert stored(name)["account_id"] == server.world.accounts[name].account_id


def blank_account_id(client_id: str) -> None:
    """What the old bug left: a client stored with an empty account id."""
    path = Path(os.environ["STRIPE_REPORTS_HOME"]) / "connections.db"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE stripe_connections SET account_id = '' WHERE client_id = ?",
                   [client_id])
    assert stored(client_id)["account_id"] == ""


def widget_states(client_id: str) -> dict[str, str]:
    done = run_cli("widget", client_id, "mrr", "--format", "json")
    gross = run_cli("widget", client_id, "gross_volume", "--format", "json")
    return {"mrr": json.loads(done.stdout)["state"], "gross": json.loads(gross.stdout)["state"]}


def test_a_sync_whose_account_answer_lacks_the_id_fails_transient_and_asks_no_new_key(
        proxied):
    """The issue's case, through `stripe-reports sync`: the figures go stale, the client stays
    connected, the widgets never say reconnect. A client the old bug left without an account
    id gets it back on its next good sync, and the account guard works again."""
    server, proxy = proxied
    acme, globex = server.world.accounts["acme"], server.world.accounts["globex"]
    assert run_cli("connect", "acme", stdin=acme.secret_key + "\n").returncode == 0
    blank_account_id("acme")

    assert run_cli("sync", "acme").returncode == 0
    assert stored("acme")["account_id"] == acme.account_id  # filled by the good check
    assert widget_states("acme") == {"mrr": "ok", "gross": "ok"}

    proxy.rule = always(ACCOUNT, "only_object")
    failed = run_cli("sync", "acme")

    assert failed.returncode == 1
    assert "malformed response" in failed.stdout + failed.stderr
    assert "belongs to Stripe account" not in failed.stdout + failed.stderr
    row = stored("acme")
    assert row["state"] == "connected" and row["account_id"] == acme.account_id
    assert widget_states("acme") == {"mrr": "stale", "gross": "stale"}

    proxy.rule = None
    other = run_cli("connect", "acme", stdin=globex.secret_key + "\n")
    assert other.returncode == 1 and "--replace-account" in other.stderr
    assert stored("acme")["account_id"] == acme.account_id


def test_check_fills_an_empty_account_id(proxied):
    server, proxy = proxied
    acme = server.world.accounts["acme"]
    assert run_cli("connect", "acme", stdin=acme.secret_key + "\n").returncode == 0
    blank_account_id("acme")

    done = run_cli("check", "acme")

    assert done.returncode == 0, done.stderr
    assert stored("acme")["account_id"] == acme.account_id


@pytest.mark.parametrize("account_id", ["", "   ", None])
def test_the_store_refuses_a_key_without_its_account(home, account_id):
    with ConnectionStore.from_settings() as store, pytest.raises(ValueError, match="account id"):
        store.save_connection("acme", secret_key="sk_test_" + "a" * 24, account_id=account_id,
                              livemode=False)
    assert stored("acme") is None
