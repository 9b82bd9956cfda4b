"""Who may use the report page, against a real uvicorn server: `serve` refuses to listen off
loopback without a staff password, every console page and JSON route needs a session,
sign-in is slowed and rate-limited, forms need the session's token and our own Origin, and
a foreign Host (DNS rebinding, a forged request) changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from apps.web.app import ROUTES, create_app
from apps.web.auth import hash_password
from engine.access_records import audit_entries
from engine.connection_store import ConnectionStore
from engine.credentials import connect_client
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec
from tests.test_reporting_support import seed_report_data
from tests.web_server import AppServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
KEY = "sk_test_" + "Acc3ssKeyBody" * 3


def _cli(*args: str, env: dict[str, str] | None = None,
         stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, input=stdin,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


def test_serve_off_loopback_refuses_without_a_staff_password(home, monkeypatch):
    monkeypatch.delenv("STRIPE_REPORTS_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("STRIPE_REPORTS_ADMIN_PASSWORD_HASH", raising=False)
    refused = _cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "STRIPE_REPORTS_ADMIN_PASSWORD" in refused.stderr
    no_url = _cli("serve", "--host", "0.0.0.0", env={"STRIPE_REPORTS_ADMIN_PASSWORD": "x"})
    assert no_url.returncode == 2 and "STRIPE_REPORTS_PUBLIC_URL" in no_url.stderr
    made = _cli("serve", "--hash-password", stdin=PASSWORD + "\n")
    assert made.returncode == 0 and made.stdout.startswith("scrypt:")
    assert PASSWORD not in made.stdout
    bad = _cli("serve", env={"STRIPE_REPORTS_ADMIN_PASSWORD_HASH": "nope"})
    assert bad.returncode == 2 and "--hash-password" in bad.stderr


@pytest.fixture()
def staff_server(home, monkeypatch):
    """Served as off loopback: a hashed staff password and the public URL's Host only."""
    port = free_port()
    monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD_HASH", hash_password(PASSWORD))
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    now = datetime.now(UTC)
    seed_report_data(warehouse_from_settings(), "acme", now)
    with ConnectionStore.from_settings() as store:
        store.save_connection("acme", secret_key=KEY, account_id="acct_acme", livemode=False,
                              name="Acme Corp")
        store.record_sync("acme", now)
    with AppServer("0.0.0.0", port) as server:
        yield server


def _paths() -> list[tuple[str, str]]:
    """Every route of the app but sign-in, share links and static files, as GET/POST."""
    found = []
    for route in ROUTES:
        path = getattr(route, "path", "")
        if path.startswith(("/signin", "/r/", "/static")):
            continue
        path = path.replace("{client_id}", "acme").replace("{widget}", "mrr")
        found += [(method, path) for method in sorted(route.methods or {"GET"} - {"HEAD"})]
    return found


def _sign_in(http: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    return http.post("/signin", data={"password": password, "name": "Dana"},
                     headers={"Origin": str(http.base_url).rstrip("/")})


def test_every_console_page_and_json_route_needs_a_session(staff_server):
    with httpx.Client(base_url=staff_server.url) as http:
        answers = {(m, p): http.request(m, p, follow_redirects=False) for m, p in _paths()}
        assert len(answers) >= 12
        for (method, path), answer in answers.items():
            expected = 401 if path.startswith("/api/") else 303
            assert answer.status_code == expected, (method, path, answer.status_code)
            assert "acct_acme" not in answer.text and "Acme Corp" not in answer.text
        assert answers[("GET", "/")].headers["location"] == "/signin?next=/"
        signed_in = _sign_in(http)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert http.get("/").status_code == 200
        assert http.get("/api/clients").json()[0]["client"] == "acme"
        assert "Signed in as Dana" in http.get("/clients/acme/connect").text


def test_a_wrong_password_is_refused_slowed_and_then_blocked(staff_server):
    with httpx.Client(base_url=staff_server.url, timeout=60) as http:
        started = time.monotonic()
        wrong = _sign_in(http, "guess")
        assert wrong.status_code == 401 and time.monotonic() - started >= 1.0
        assert "set-cookie" not in wrong.headers
        for _ in range(4):
            _sign_in(http, "guess")
        blocked = _sign_in(http)  # the right password, too late
        assert blocked.status_code == 429 and "try again" in blocked.text
        assert http.get("/api/clients").status_code == 401


def test_a_cross_site_post_is_refused(staff_server, monkeypatch):
    calls = []
    monkeypatch.setattr("pipelines.instance.connect_and_register",
                        lambda *a, **k: calls.append(a))
    with httpx.Client(base_url=staff_server.url) as http:
        _sign_in(http)
        page = http.get("/clients/acme/connect").text
        token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        for path, data in (("/clients/acme/connect", {"secret_key": KEY}),
                           ("/clients/acme/remove-key", {"confirm": "acme"})):
            answer = http.post(path, data={**data, "form_token": token},
                               headers={"Origin": "http://evil.example"})
            assert answer.status_code == 403, path
        forged = http.post("/clients/acme/remove-key", data={"confirm": "acme",
                                                             "form_token": "0" * 64})
        assert forged.status_code == 403
    assert calls == []
    with ConnectionStore.from_settings() as store:
        assert store.get("acme").masked_key is not None  # not removed


def test_session_cookie_is_secure_behind_https(home, monkeypatch):
    monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", "https://reports.example.com")
    app = create_app(host="0.0.0.0", port=8050)
    with TestClient(app, base_url="https://reports.example.com") as client:
        answer = client.post("/signin", data={"password": PASSWORD},
                             headers={"Origin": "https://reports.example.com"},
                             follow_redirects=False)
        assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()
        other_host = client.get("/signin", headers={"Host": "127.0.0.1:8050"})
        assert other_host.status_code == 400  # off loopback: the public Host only


def _rows(client_id: str) -> int:
    with warehouse_from_settings().reader() as conn:
        return conn.execute("SELECT count(*) FROM reporting.payments WHERE client_id = ?",
                            [client_id]).fetchone()[0]


@pytest.mark.parametrize("told_host", ["127.0.0.1", "0.0.0.0"])
def test_a_foreign_host_changes_nothing(home, sandbox_factory, monkeypatch, told_host):
    """The issue's attack: fetch /clients/c4/connect, post another account's key with
    replace_account=yes, under a foreign Host and a matching forged Origin."""
    server = sandbox_factory([AccountSpec("c4", charges=5), AccountSpec("attacker", charges=5)])
    port = free_port()
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    if told_host != "127.0.0.1":
        monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD", PASSWORD)
    accounts = server.world.accounts
    connect_client("c4", accounts["c4"].secret_key, api_base=server.base_url)
    seed_report_data(warehouse_from_settings(), "c4", datetime.now(UTC))
    before = _rows("c4")
    forged = {"Host": "evil.example", "Origin": "http://evil.example"}
    with AppServer(told_host, port) as app, httpx.Client(base_url=app.url) as http:
        assert http.get("/clients/c4/connect", headers=forged).status_code == 400
        token = "0" * 64
        if told_host == "127.0.0.1":  # the open console's real token, as a local page gets it
            page = http.get("/clients/c4/connect").text
            token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        attack = http.post("/clients/c4/connect", headers=forged, data={
            "secret_key": accounts["attacker"].secret_key, "replace_account": "yes",
            "confirm": "c4", "form_token": token})
        assert attack.status_code == 400
    with ConnectionStore.from_settings() as store:
        assert store.get("c4").account_id == accounts["c4"].account_id
        assert audit_entries(store, "c4") == []
    assert before > 0 and _rows("c4") == before


def test_a_trusted_proxy_header_signs_staff_in_only_when_named(home, monkeypatch):
    monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", "https://reports.example.com")
    base = "https://reports.example.com"
    with TestClient(create_app(host="0.0.0.0", port=8050), base_url=base) as client:
        sent = {"X-Forwarded-User": "dana@agency.example"}
        assert client.get("/api/clients", headers=sent).status_code == 401  # off by default
    monkeypatch.setenv("STRIPE_REPORTS_TRUSTED_PROXY_HEADER", "X-Forwarded-User")
    with TestClient(create_app(host="0.0.0.0", port=8050), base_url=base) as client:
        assert client.get("/api/clients", headers=sent).status_code == 200
        assert "dana@agency.example (via proxy)" in client.get("/", headers=sent).text
        assert client.get("/api/clients").status_code == 401
