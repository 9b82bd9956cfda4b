"""Scheduled delivery, gated on good data: real sandbox clients synced through Dagster, real
`stripe_delivery_job` runs, the PDF printed by Chromium, and a real SMTP server (aiosmtpd on
127.0.0.1) that receives what is sent."""

from __future__ import annotations

import email
import importlib.util
import io
import os
import socket
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from dagster import DagsterEventType, DagsterInstance, RunsFilter, build_sensor_context
from pypdf import PdfReader

from apps.cli import main
from apps.launch import materialize_client
from engine.credentials import connect_client
from engine.deliveries import WEEKDAYS
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec

AGENCY = "ops@agency.example"
SMALL = {"charges": 60, "customers": 12, "subscriptions": 8, "products": 3, "history_days": 60}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                       reason="Debian's Chromium is not installed (scripts/system-deps.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed"),
]


class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [message for rcpt, message in self.messages if address in rcpt]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def inbox(home, monkeypatch):
    received = Inbox()
    controller = Controller(received, hostname="127.0.0.1", port=_free_port())
    controller.start()
    monkeypatch.setenv("STRIPE_REPORTS_SMTP_URL", f"smtp://127.0.0.1:{controller.port}")
    monkeypatch.setenv("STRIPE_REPORTS_MAIL_FROM", "reports@agency.example")
    monkeypatch.setenv("STRIPE_REPORTS_AGENCY_EMAIL", AGENCY)
    monkeypatch.setenv("STRIPE_REPORTS_BRAND_NAME", "Northwind Analytics")
    yield received
    controller.stop()


def _declare_weekly_deliveries(clients: list[str]) -> None:
    """Each client gets last week's report every week on today's weekday: due today."""
    today = WEEKDAYS[datetime.now(UTC).weekday()]
    document = {"clients": {c: {"deliveries": [
        {"cadence": "weekly", "day": today, "period": "last_week", "to": [f"boss@{c}.example"]}
    ]} for c in clients}}
    Path(os.environ["STRIPE_REPORTS_CLIENTS_FILE"]).write_text(yaml.safe_dump(document))


def _age_figures(client_id: str, days: int) -> None:
    """As if the client's last successful sync was `days` ago (syncs kept failing since)."""
    with warehouse_from_settings().writer() as conn:
        conn.execute("UPDATE reporting.freshness SET built_at = built_at - to_days(?) "
                     "WHERE client_id = ?", [days, client_id])


def _delivery_metadata(instance: DagsterInstance) -> dict[str, list[dict]]:
    """Each client's delivery runs' output metadata, oldest first, read from the instance."""
    found: dict[str, list[dict]] = {}
    runs = instance.get_runs(RunsFilter(job_name="stripe_delivery_job"))
    for run in reversed(runs):
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_OUTPUT):
            data = entry.dagster_event.step_output_data.metadata
            found.setdefault(run.tags["dagster/partition"], []).append(
                {key: value.value for key, value in data.items()})
    return found


@pytest.fixture()
def clients(home, sandbox_factory):
    names = ["acme", "globex", "initech"]
    server = sandbox_factory([AccountSpec(n, **SMALL) for n in names])
    for name in names:
        connect_client(name, server.world.accounts[name].secret_key, name=name.title())
        outcome = materialize_client(name)
        assert outcome.success, outcome.message
    _declare_weekly_deliveries(names)
    server.world.revoke_key("initech")  # revoked after its last sync, as a client's admin might
    _age_figures("globex", 30)
    return server


def _pdf_text(message: email.message.EmailMessage) -> str:
    attachment = next(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    reader = PdfReader(io.BytesIO(attachment.get_content()))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_healthy_sent_revoked_and_stale_held_then_never_twice(clients, inbox, capsys):
    assert main(["deliver", "--all"]) == 1  # two of three held

    sent = inbox.to("boss@acme.example")
    assert len(sent) == 1
    message = sent[0]
    assert "Northwind Analytics" in message["From"] and "Acme" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    for operator_text in ("stripe-reports", "acct_", "sk_test", "STRIPE_REPORTS"):
        assert operator_text not in body
    assert "Acme" in _pdf_text(message)
    assert inbox.to("boss@initech.example") == [] and inbox.to("boss@globex.example") == []

    notices = {m["Subject"]: m.get_body(("plain",)).get_content() for m in inbox.to(AGENCY)}
    assert len(notices) == 2
    initech = next(text for subject, text in notices.items() if "Initech" in subject)
    assert "stripe-reports connect initech" in initech and "API keys" in initech
    globex = next(text for subject, text in notices.items() if "Globex" in subject)
    assert "before the end of the period" in globex and "stripe-reports sync globex" in globex

    meta = _delivery_metadata(DagsterInstance.get())
    assert meta["acme"][0]["status"] == "sent" and meta["acme"][0]["to"] == "boss@acme.example"
    assert meta["initech"][0]["status"] == "held"
    assert "revoked" in meta["initech"][0]["reason"] or "rejected" in meta["initech"][0]["reason"]
    assert meta["globex"][0]["status"] == "held"
    assert "before the end of the period" in meta["globex"][0]["reason"]

    # The same period again: nothing more to anyone (the agency heard of each hold once).
    count = len(inbox.messages)
    assert main(["deliver", "--all"]) == 1
    assert len(inbox.messages) == count
    meta = _delivery_metadata(DagsterInstance.get())
    assert [m["status"] for m in meta["acme"]] == ["sent", "already_sent"]


def test_a_held_delivery_goes_out_after_the_next_good_sync(clients, inbox):
    from pipelines.deliveries import report_deliveries_sensor, stripe_delivery_job

    assert main(["deliver", "globex"]) == 1
    assert inbox.to("boss@globex.example") == []
    instance = DagsterInstance.get()
    # Nothing new since the hold: the sensor asks for no globex run.
    assert _requests_for(report_deliveries_sensor, instance, "globex") == []

    assert materialize_client("globex").success  # the next good sync
    requests = _requests_for(report_deliveries_sensor, instance, "globex")
    assert len(requests) == 1 and "after-sync@" in requests[0].run_key
    result = stripe_delivery_job.execute_in_process(
        run_config=requests[0].run_config, instance=instance, partition_key="globex")
    assert result.output_for_node("deliver_report") == "sent"
    assert len(inbox.to("boss@globex.example")) == 1
    assert _requests_for(report_deliveries_sensor, instance, "globex") == []


def _requests_for(sensor_def, instance: DagsterInstance, client: str) -> list:
    result = sensor_def(build_sensor_context(instance=instance))
    requests = getattr(result, "run_requests", None) or []
    return [r for r in requests if r.partition_key == client]


def test_a_delivery_with_no_smtp_is_kept_in_the_outbox(clients, home, monkeypatch, capsys):
    monkeypatch.delenv("STRIPE_REPORTS_SMTP_URL", raising=False)
    assert main(["deliver", "acme", "--period", "last_week", "--to", "cfo@acme.example"]) == 0
    outbox = home / "outbox" / "acme"
    assert len(list(outbox.glob("*.pdf"))) == 1 and len(list(outbox.glob("*.eml"))) == 1
    assert "sent" in capsys.readouterr().out
    assert main(["deliver", "acme", "--to", "not-an-address"]) == 2
    assert main(["deliver"]) == 2
