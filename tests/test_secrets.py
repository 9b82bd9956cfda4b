"""Secrets stay secret: a sentinel key goes through connect, sync, failure, check and the report
page, then is searched for in everything the product leaves behind. It must be nowhere.

Two sandbox keys with distinctive secret parts: acme's stays valid (the success path), globex's
is revoked after connecting (the failure path). Both go through one `sync` invocation.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from engine.connection_store import ConnectionStore
from engine.keys import mask_key
from pipelines.instance import get_instance
from sandbox import AccountSpec
from sandbox.world import KeyInfo
from tests.test_credentials import SMALL, run_cli

SENTINELS = {
    "acme": "sk_test_S3ntinelAcmeNeverInClear7Qz9",
    "globex": "sk_test_S3ntinelGlobexNeverInClearK2x8",
}


def secret_parts(key: str) -> list[str]:
    """The whole key and its secret body without the last four characters (the masked form
    shows those): finding either means the key leaked."""
    body = key.split("_", 2)[2]
    return [key, body[:-4]]


def leaks(haystack: bytes | str) -> list[str]:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [part for key in SENTINELS.values() for part in secret_parts(key)
            if part.encode() in data]


@pytest.fixture
def sandbox(home, sandbox_factory):
    server = sandbox_factory([AccountSpec("acme", **SMALL), AccountSpec("globex", **SMALL)])
    for name, key in SENTINELS.items():  # valid keys of their accounts, like any other
        server.world.keys[key] = KeyInfo(server.world.accounts[name], "secret")
    return server


def report_pages() -> dict[str, str]:
    """What the report page serves: HTML and JSON, including a refused reconnect."""
    from starlette.testclient import TestClient

    from apps.web.app import create_app

    served = {}
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as client:
        for path in ("/", "/clients/acme", "/clients/globex", "/clients/globex/connect",
                     "/api/clients", "/api/clients/globex/status", "/api/clients/acme/widgets"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            served[path] = answer.text
        page = served["/clients/globex/connect"]
        token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
        refused = client.post("/clients/globex/connect",
                              data={"secret_key": SENTINELS["globex"], "form_token": token})
        assert refused.status_code == 400 and "Stripe rejected the key" in refused.text
        served["POST /clients/globex/connect"] = refused.text
    return served


def every_file(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_sentinel_key_is_nowhere_in_what_the_product_leaves(sandbox, home, tmp_path):
    outputs = []

    def cli(*args: str, stdin: str = ""):
        done = run_cli(*args, stdin=stdin)
        outputs.append((args, done.stdout, done.stderr))
        return done

    for name, key in SENTINELS.items():
        done = cli("connect", name, stdin=f"  {key}\n")
        assert done.returncode == 0, done.stderr
        assert f"key {mask_key(key)}, test mode." in done.stdout
    sandbox.world.revoked.add(SENTINELS["globex"])  # revoked in Stripe after connecting

    synced = cli("sync", "acme", "globex")
    assert synced.returncode == 1
    assert re.search(r"^acme: synced \(Dagster run ", synced.stdout, re.M)
    assert f"Stripe rejected the key {mask_key(SENTINELS['globex'])}" in synced.stdout
    checked = cli("check")
    assert checked.returncode == 1
    assert f"acme: connected (account {sandbox.world.accounts['acme'].account_id}, " \
        f"key {mask_key(SENTINELS['acme'])})" in checked.stdout
    assert "globex: FAILED: Stripe rejected the key" in checked.stdout
    listing = json.loads(cli("clients", "--json").stdout)
    assert {c["client_id"]: (c["state"], c["masked_key"]) for c in listing} == {
        name: ("connected" if name == "acme" else "failed", mask_key(key))
        for name, key in SENTINELS.items()}
    table = cli("clients").stdout
    assert all(mask_key(key) in table for key in SENTINELS.values())

    # Captured CLI output.
    for args, stdout, stderr in outputs:
        assert leaks(stdout + stderr) == [], args

    # Run config and tags, as the instance holds them.
    instance = get_instance()
    runs = instance.get_runs()
    assert len(runs) == 2
    for run in runs:
        assert leaks(json.dumps([run.run_config, run.tags], default=str)) == []

    # The report page, HTML and JSON (a missing report module skips only this part).
    if importlib.util.find_spec("apps.web") is not None:
        served = report_pages()
        # Staff see which key a client is on, masked, on the client's page.
        assert mask_key(SENTINELS["acme"]) in served["/clients/acme"]
        for path, text in served.items():
            assert leaks(text) == [], path

    # Every file left behind: Dagster instance (run and event-log SQLite files),
    # DuckDB warehouse, connection store with its WAL, clients file, anything else.
    files = every_file(tmp_path)
    names = {p.relative_to(home).as_posix() for p in files if p.is_relative_to(home)}
    assert {"warehouse.duckdb", "connections.db", "dagster_home/history/runs.db"} <= names
    assert sum(n.startswith("dagster_home/history/runs/") for n in names) >= 2  # event logs
    # No compute logs: dagster.yaml keeps step output in the event log (NoOpComputeLogManager).
    for path in files:
        assert leaks(path.read_bytes()) == [], path

    # The store holds the keys, encrypted: readable with the master key, absent in clear.
    with ConnectionStore.from_settings() as store:
        assert {name: store.secret_key(name) for name in SENTINELS} == SENTINELS
