"""The report page keeps answering while a sync in another process writes the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

from apps.web.app import create_app
from engine.credentials import connect_client
from engine.warehouse_factory import warehouse_from_settings
from sandbox import AccountSpec
from tests.sync_helpers import run_sync

ROOT = Path(__file__).resolve().parent.parent

SYNC_SCRIPT = """
import sys
from engine.sync import sync_client
from engine.streams import STREAMS
from engine.stripe_api import StripeAccount
from engine.warehouse_factory import warehouse_from_settings
account = StripeAccount("acme", sys.argv[2], api_base=sys.argv[1], requests_per_second=2000)
sync_client(account, warehouse_from_settings(), STREAMS, concurrency=4, chunk_rows=500)
"""


def test_pages_answer_while_a_sync_writes(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", charges=200), AccountSpec("big", charges=8000)],
                             latency_ms=10)
    connect_client("acme", server.world.accounts["acme"].secret_key)
    run_sync(server, "acme", warehouse_from_settings())
    writer = subprocess.Popen(
        [sys.executable, "-c", SYNC_SCRIPT, server.base_url,
         server.world.accounts["big"].secret_key],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    slowest = 0.0
    answers = 0
    try:
        with TestClient(create_app(), base_url="http://127.0.0.1:8050") as client:
            while writer.poll() is None:
                started = time.monotonic()
                page = client.get("/clients/acme")
                api = client.get("/api/clients/acme/widgets/gross_volume")
                slowest = max(slowest, time.monotonic() - started)
                assert page.status_code == 200 and api.status_code == 200
                assert api.json()["state"] in ("ok", "no_data")
                answers += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert answers >= 3, "the sync ended before the page was asked anything"
    assert slowest < 5.0, f"a page waited {slowest:.1f}s for the writer"
