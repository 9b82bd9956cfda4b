"""Share links and the client report, against a real uvicorn server served as off loopback
(staff sign-in required): a link printed by `stripe-reports share` opens that client's
report without a session; its figures are the widget JSON's, in the client's locale; it
holds no operator text; tampered, expired and revoked links are one 404."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from babel.numbers import format_currency

from apps.web.auth import hash_password
from apps.web.client_report import TILES, change, client_locale
from apps.web.share import share_token
from engine.connection_store import ConnectionStore
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import run_widget
from tests.test_reporting_support import seed_report_data
from tests.web_server import AppServer, free_port

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "sk_test_" + "ShareKeyBodyA" * 3
KEY_B = "rk_test_" + "ShareKeyBodyB" * 3
OPERATOR_TEXT = ("acct_", "sk_", "rk_", "stripe-reports", "STRIPE_REPORTS", "--start", "--end",
                 "`", "/clients/", "/api/", "Dagster")


def _share(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apps.cli", "share", *args], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)


@pytest.fixture()
def served(home, tmp_path, monkeypatch):
    port = free_port()
    (tmp_path / "clients.yaml").write_text(
        "clients:\n  acme:\n    name: Acme Corp\n  bergmann:\n    name: Bergmann GmbH\n"
        "    locale: de_DE\n")
    monkeypatch.setenv("STRIPE_REPORTS_ADMIN_PASSWORD_HASH", hash_password("pw"))
    monkeypatch.setenv("STRIPE_REPORTS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("STRIPE_REPORTS_BRAND_NAME", "Northwind Agency")
    monkeypatch.setenv("STRIPE_REPORTS_BRAND_COLOR", "#0a7d5a")
    now = datetime.now(UTC)
    warehouse = warehouse_from_settings()
    seed_report_data(warehouse, "acme", now)
    seed_report_data(warehouse, "bergmann", now, seed=5, currency="eur", scale=3)
    with ConnectionStore.from_settings() as store:
        for client_id, key in (("acme", KEY_A), ("bergmann", KEY_B)):
            store.save_connection(client_id, secret_key=key, account_id=f"acct_{client_id}",
                                  livemode=False, name=client_id.title())
            store.record_sync(client_id, now)
    with AppServer("0.0.0.0", port) as server:
        yield server


def _tiles(html: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r'data-widget="(\w+)" data-state="\w+"\s+data-value="([^"]*)">\s*'
                       r'<h3>[^<]*</h3>\s*<p class="tile-value[^"]*">([^<]*)</p>', html)
    return {name: (value, text) for name, value, text in found}


def test_a_share_link_opens_that_clients_report_with_the_widget_figures(served):
    made = _share("bergmann", "--expires", "7d")
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    assert url.startswith(f"{served.url}/r/")
    with httpx.Client() as http:
        page = http.get(url)
        assert page.status_code == 200
        html = page.text
        assert "Northwind Agency" in html and "Bergmann GmbH" in html and "#0a7d5a" in html
        for text in OPERATOR_TEXT:
            assert text not in html, text
        shown = _tiles(html)
        assert set(shown) == set(TILES)
        for name in TILES:
            widget = run_widget("bergmann", name)
            assert widget.state == "ok" and shown[name][0] == str(widget.value), name
        gross = run_widget("bergmann", "gross_volume").value
        assert shown["gross_volume"][1] == format_currency(gross, "EUR", locale="de_DE")
        assert re.fullmatch(r"[\d.]+,\d\d\xa0€", shown["gross_volume"][1])  # 4.578,50 €
        acme = run_widget("acme", "gross_volume").value
        assert str(acme) not in html and "Acme" not in html  # another client's figures
        assert http.get(f"{served.url}/api/clients").status_code == 401  # no session given
        assert http.get(f"{served.url}/", follow_redirects=False).status_code == 303


def test_rates_change_in_percentage_points_and_customers_by_name(served):
    churn = run_widget("acme", "churn_rate")
    assert churn.state == "ok" and churn.previous is not None
    text, _delta = change(churn.value, churn.previous, churn.unit, client_locale("acme"))
    assert text.endswith(" pp")
    assert change(5.0, 3.4, "percent", client_locale("acme"))[0] == "+1.6 pp"
    assert change(3.4, 5.0, "percent", client_locale("bergmann"))[0] == "-1,6 pp"
    with ConnectionStore.from_settings() as store:
        token = share_token(store, "acme", timedelta(days=1))
    html = httpx.get(f"{served.url}/r/{token}").text
    tile = html.split('data-widget="churn_rate"', 1)[1].split("</article>", 1)[0]
    assert f"{text} <span" in tile
    payments = html.split('data-widget="recent_payments"', 1)[1].split("<tbody>", 1)[1]
    assert payments.count("<tr>") == 20 and "cus_" not in payments
    assert "Ada Lovelace" in payments or "Grace Hopper" in payments or "@example.com" in payments


def test_tampered_expired_and_revoked_links_are_404(served):
    with ConnectionStore.from_settings() as store:
        good = share_token(store, "acme", timedelta(days=1))
        expired = share_token(store, "acme", timedelta(seconds=1))
        other = share_token(store, "bergmann", timedelta(days=1))
    time.sleep(1.5)
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    # Another client's name in acme's token (the payload is readable, not forgeable).
    swapped = good.replace(good.split(".")[0], other.split(".")[0])
    with httpx.Client(base_url=served.url) as http:
        assert http.get(f"/r/{good}").status_code == 200
        for bad in (flipped, expired, swapped, "nonsense", good + "x"):
            gone = http.get(f"/r/{bad}")
            assert gone.status_code == 404, bad
            assert "Acme" not in gone.text and "Bergmann" not in gone.text
            assert "<a " not in gone.text and "/api" not in gone.text
        revoked = _share("--revoke", "acme")
        assert revoked.returncode == 0, revoked.stderr
        assert http.get(f"/r/{good}").status_code == 404
        assert http.get(f"/r/{other}").status_code == 200  # bergmann's links still work
        fresh = _share("acme").stdout.strip()
        assert httpx.get(fresh).status_code == 200
    assert _share("acme", "--expires", "forever").returncode == 2
    assert _share("nobody").returncode == 2


def test_the_client_report_keeps_operator_text_out(served):
    """A stale client (its last sync failed with an operator's message) and a bad period."""
    warehouse_from_settings().record_failure(
        "acme", "Stripe did not answer within 180 s (STRIPE_REPORTS_RETRY_SECONDS).")
    with ConnectionStore.from_settings() as store:
        token = share_token(store, "acme", timedelta(days=1))
    with httpx.Client(base_url=served.url) as http:
        stale = http.get(f"/r/{token}").text
        assert "last updated on" in stale
        bad_period = http.get(f"/r/{token}", params={"start": "yesterday"})
        assert bad_period.status_code == 200 and "cannot be shown" in bad_period.text
        for html in (stale, bad_period.text):
            for text in OPERATOR_TEXT:
                assert text not in html, text


def test_a_printer_gets_a_period_without_a_session(served):
    """The path the PDF and deliveries print (staff sign-in is on for this server)."""
    from apps.web.share import client_report_path

    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=40), today - timedelta(days=10)
    with ConnectionStore.from_settings() as store:
        path = client_report_path(store, "acme", start, end)
    html = httpx.get(f"{served.url}{path}").text
    widget = run_widget("acme", "gross_volume", start, end)
    assert widget.state == "ok" and _tiles(html)["gross_volume"][0] == str(widget.value)
    assert str(end.year) in html.split('id="period">', 1)[1].split("<", 1)[0]


def test_a_client_whose_key_failed_reads_no_reason_and_no_figures(served):
    reason = "Stripe rejected the key of client 'acme' (acct_acme): it was revoked."
    with ConnectionStore.from_settings() as store:
        store.record_check("acme", ok=False, reason=reason,
                           steps=["Run `stripe-reports connect acme`."])
        token = share_token(store, "acme", timedelta(days=1))
    html = httpx.get(f"{served.url}/r/{token}").text
    assert "being refreshed" in html and "revoked" not in html
    assert 'class="tile-value">' not in html and "<tbody>" not in html
    for text in OPERATOR_TEXT:
        assert text not in html, text
