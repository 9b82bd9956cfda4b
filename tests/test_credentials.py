"""Connecting, checking and syncing clients with good and bad Stripe keys, through the real CLI.

Every case runs `stripe-reports` in a subprocess against the sandbox (key on stdin) and
asserts both what the user reads and the state the connection store ends in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType

from engine.connection_store import ConnectionStore
from engine.failures import StripeAccessError
from engine.keys import mask_key
from sandbox import AccountSpec

CLI = Path(sys.executable).parent / "stripe-reports"
SMALL = {"charges": 20, "customers": 6, "subscriptions": 4, "products": 2, "history_days": 60}


def run_cli(*args: str, stdin: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    """`stripe-reports ARGS` in its own process, with this test's home and sandbox."""
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env=os.environ.copy(), cwd=os.environ["STRIPE_REPORTS_HOME"],
    )


def stored(client_id: str) -> dict | None:
    with ConnectionStore.from_settings() as store:
        connection = store.get(client_id)
        return None if connection is None else connection.to_dict()


def one_line(text: str) -> str:
    """CLI text with its line breaks and indentation folded, for phrase matching."""
    return " ".join(text.split())


@pytest.fixture
def sandbox(home, sandbox_factory):
    return sandbox_factory([AccountSpec("acme", **SMALL), AccountSpec("globex", **SMALL)])


@pytest.fixture
def acme_connected(sandbox):
    """acme connected with its good key (straight into the store: the set-up, not the test)."""
    acme = sandbox.world.accounts["acme"]
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key=acme.secret_key, account_id=acme.account_id,
                              account_name="Acme", livemode=False)
    return stored("acme")


# -- keys accepted ---------------------------------------------------------------------------


def test_a_secret_key_pasted_with_white_space_is_trimmed_and_stored(sandbox):
    acme = sandbox.world.accounts["acme"]
    done = run_cli("connect", "acme", "--name", "Acme Inc", stdin=f"\n \t {acme.secret_key}  \r\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"Connected acme: Stripe account {acme.account_id} (Acme), "
        f"key {mask_key(acme.secret_key)}, test mode.")
    assert "test-mode key" in done.stderr
    assert acme.secret_key not in done.stdout + done.stderr
    row = stored("acme")
    assert row["state"] == "connected" and row["account_id"] == acme.account_id
    assert row["name"] == "Acme Inc" and row["masked_key"] == mask_key(acme.secret_key)
    with ConnectionStore.from_settings() as store:
        assert store.secret_key("acme") == acme.secret_key  # trimmed, nothing around it


def test_a_restricted_key_missing_one_permission_is_accepted_with_a_warning(sandbox):
    key = sandbox.world.accounts["acme"].restricted_key(without={"refunds"})
    done = run_cli("connect", "acme", stdin=key + "\n")

    assert done.returncode == 0, done.stderr
    assert ("warning: The restricted key cannot read refunds (rak_refund_read); these widgets "
            "will say they cannot be shown: net_volume, refunds, revenue_over_time."
            ) in done.stderr
    row = stored("acme")
    assert row["state"] == "connected" and row["missing_permissions"] == ["rak_refund_read"]
    assert row["masked_key"] == mask_key(key) and row["masked_key"].startswith("rk_test_")


def test_strict_refuses_a_restricted_key_missing_a_permission_and_stores_nothing(sandbox):
    key = sandbox.world.accounts["acme"].restricted_key(without={"refunds"})
    done = run_cli("connect", "acme", "--strict", stdin=key + "\n")

    assert done.returncode == 1
    assert (f"error: The restricted key {mask_key(key)} cannot read: refunds (rak_refund_read). "
            "Refused because of --strict; nothing was stored.") in done.stderr
    assert "grant Read on those resources" in one_line(done.stderr)
    assert stored("acme") is None


# -- keys refused ----------------------------------------------------------------------------

REFUSALS = {
    "publishable": (
        lambda account: account.publishable_key,
        ["That is a publishable key (pk_…)", "The reports need the Secret key",
         "Developers → API keys"]),
    "not a key": (
        lambda account: "hunter2-definitely-not-a-key",
        ["That is not a Stripe API key.", "Developers → API keys"]),
    "revoked": (
        lambda account: account.revoked_key,
        ["Stripe rejected the key {masked} for client 'newco': it is invalid or has been "
         "revoked or rolled.", "Run `stripe-reports connect newco`"]),
    "expired": (
        lambda account: account.expired_key,
        ["Stripe says the key {masked} for client 'newco' has expired.",
         "Run `stripe-reports connect newco`"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_keys_say_why_and_store_nothing(sandbox, case):
    pick, phrases = REFUSALS[case]
    key = pick(sandbox.world.accounts["acme"])
    done = run_cli("connect", "newco", stdin=key + "\n")

    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stdout == ""
    for phrase in phrases:
        assert phrase.format(masked=mask_key(key)) in one_line(done.stderr)
    assert key not in done.stderr
    assert stored("newco") is None


def test_a_revoked_key_on_reconnect_leaves_the_working_connection_alone(acme_connected, sandbox):
    key = sandbox.world.accounts["acme"].revoked_key
    done = run_cli("connect", "acme", stdin=key + "\n")

    assert done.returncode == 1
    assert f"Stripe rejected the key {mask_key(key)} for client 'acme'" in done.stderr
    assert stored("acme") == acme_connected


def test_a_key_of_another_account_is_refused_unless_replace_account(acme_connected, sandbox):
    acme, globex = sandbox.world.accounts["acme"], sandbox.world.accounts["globex"]
    refused = run_cli("connect", "acme", stdin=globex.secret_key + "\n")

    assert refused.returncode == 1
    assert (f"That key belongs to Stripe account {globex.account_id}, but client 'acme' was "
            f"connected to {acme.account_id}") in refused.stderr
    assert "Nothing was changed." in refused.stderr
    assert "stripe-reports connect acme --replace-account" in refused.stderr
    assert stored("acme") == acme_connected

    replaced = run_cli("connect", "acme", "--replace-account", stdin=globex.secret_key + "\n")

    assert replaced.returncode == 0, replaced.stderr
    assert f"Stripe account {globex.account_id} (Globex)" in replaced.stdout
    row = stored("acme")
    assert row["account_id"] == globex.account_id and row["state"] == "connected"
    assert row["masked_key"] == mask_key(globex.secret_key)
    assert row["created_at"] == acme_connected["created_at"]  # the same client, moved


# -- Stripe unreachable or throttling: never a verdict on the key ----------------------------


def test_while_stripe_is_down_connect_and_check_say_so_and_change_nothing(
        acme_connected, sandbox, monkeypatch):
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "1")  # give up on a dead Stripe soon
    key = sandbox.world.accounts["globex"].secret_key
    sandbox.stop()
    connect = run_cli("connect", "globex", stdin=key + "\n")

    assert connect.returncode == 1
    assert (f"Stripe did not answer the check of the key {mask_key(key)} for client 'globex' "
            "(no response); nothing was stored or changed.") in connect.stderr
    assert "Check the network connection (and STRIPE_API_BASE, if set)." in connect.stderr
    assert stored("globex") is None

    check = run_cli("check", "acme")

    assert check.returncode == 1
    assert ("Stripe could not be reached for client 'acme' (no response); the key was not "
            "marked failed.") in check.stderr
    assert stored("acme") == acme_connected  # not failed, not even a new check time


def test_dropped_connections_and_a_429_storm_are_retried_and_never_fail_the_key(
        acme_connected, sandbox, monkeypatch):
    sandbox.inject_faults("acme", 2, kind="drop")  # a short blip...
    sandbox.inject_faults("acme", 4, kind="429")  # ...then throttled
    checked = run_cli("check", "acme")

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("acme: connected (account ")
    assert sandbox.stats()["by_status"].get(429) == 4  # every fault was served and waited out
    row = stored("acme")
    assert row["state"] == "connected" and row["last_check_ok"] is True

    globex = sandbox.world.accounts["globex"]
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "1")
    sandbox.inject_faults("globex", 10_000, kind="drop")  # outlasts the retry budget
    dropped = run_cli("connect", "globex", stdin=globex.secret_key)

    assert dropped.returncode == 1
    assert (f"Stripe did not answer the check of the key {mask_key(globex.secret_key)} for "
            "client 'globex' (no response); nothing was stored or changed.") in dropped.stderr
    assert stored("globex") is None


# -- keys that die after connecting ----------------------------------------------------------


def test_check_marks_a_key_that_stopped_working_failed_with_guidance(sandbox):
    acme = sandbox.world.accounts["acme"]
    with ConnectionStore.from_settings() as store:  # a key that worked once, expired since
        store.save_connection("acme", secret_key=acme.expired_key, account_id=acme.account_id,
                              livemode=False)
    done = run_cli("check")

    assert done.returncode == 1
    first, *steps = done.stdout.splitlines()
    row = stored("acme")
    assert first == f"acme: FAILED: {row['reason']}"
    assert mask_key(acme.expired_key) in row["reason"] and "client 'acme'" in row["reason"]
    assert steps == [f"  {n}. {step}" for n, step in enumerate(row["steps"], start=1)]
    assert "Run `stripe-reports connect acme` and paste the key when asked" in row["steps"][2]
    assert row["state"] == "failed" and row["last_check_ok"] is False
    with ConnectionStore.from_settings() as store:
        assert [c.ok for c in store.check_history("acme")] == [False, True]


def _run_id(stdout: str, client_id: str) -> str:
    match = re.search(rf"^{client_id}: FAILED \(Dagster run ([0-9a-f-]+)\)$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def test_sync_with_a_revoked_key_fails_with_the_guidance_dagster_shows(acme_connected, sandbox):
    acme = sandbox.world.accounts["acme"]
    sandbox.world.revoke_key("acme")  # in Stripe, after connecting

    done = run_cli("sync", "acme")

    assert done.returncode != 0
    assert "1 of 1 client failed." in done.stderr
    from pipelines.instance import get_instance

    instance = get_instance()
    run_id = _run_id(done.stdout, "acme")
    failures = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1
    failure = failures[0].dagster_event.step_failure_data.user_failure_data
    description = failure.description
    # The CLI prints Dagster's description itself, indented under the client's line.
    assert "\n".join(f"  {line}" for line in description.splitlines()) in done.stdout
    masked = mask_key(acme.secret_key)
    assert description.splitlines()[0] == (
        f"Stripe rejected the key {masked} for client 'acme': it is invalid or has been "
        "revoked or rolled.")
    assert "Run `stripe-reports connect acme`" in description
    assert {k: v.value for k, v in failure.metadata.items()}.items() >= {
        "client": "acme", "masked_key": masked, "stripe_error_code": "invalid_api_key"}.items()
    assert failure.metadata["stripe_request_id"].value.startswith("req_")

    row = stored("acme")
    assert row["state"] == "failed"
    assert StripeAccessError(row["reason"], tuple(row["steps"])).guidance() == description
    assert row["request_id"] == failure.metadata["stripe_request_id"].value

    checks = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    assert [c.dagster_event.asset_check_evaluation_data.passed for c in checks] == [False]
    assert checks[0].dagster_event.asset_check_evaluation_data.check_name == \
        "stripe_credentials_valid"

    listing = run_cli("clients")
    assert listing.returncode == 0
    assert re.search(r"^acme\s+failed\s+" + acme.account_id, listing.stdout, re.M)
    assert f"\nacme: {description}\n" in listing.stdout  # the same words, from the store


def test_requests_go_through_the_proxy_the_environment_names(acme_connected, sandbox,
                                                             monkeypatch):
    """An agency behind a proxy: HTTP(S)_PROXY is honoured, read once per client."""
    import http.server
    import threading
    import urllib.request

    forwarded: list[str] = []
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not itself

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            forwarded.append(self.path)
            upstream = urllib.request.Request(self.path, headers=dict(self.headers))
            with direct.open(upstream) as answer:
                body = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    try:
        check = run_cli("check", "acme")
    finally:
        proxy.shutdown()

    assert check.returncode == 0, check.stderr
    assert any(path.startswith(sandbox.base_url + "/v1/account") for path in forwarded)
