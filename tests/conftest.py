"""Shared fixtures: an isolated product home per test, and a running sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["support.postgres_server"]

TEST_SECRET = "test-master-passphrase-not-a-stripe-key"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh STRIPE_REPORTS_HOME (warehouse, store, Dagster instance) for one test."""
    root = tmp_path / "home"
    root.mkdir()
    clients = tmp_path / "clients.yaml"
    clients.write_text("clients: {}\n")
    monkeypatch.setenv("STRIPE_REPORTS_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.setenv("STRIPE_REPORTS_SECRET", TEST_SECRET)
    monkeypatch.setenv("STRIPE_REPORTS_CLIENTS_FILE", str(clients))
    for name in ("STRIPE_REPORTS_WAREHOUSE", "STRIPE_REPORTS_CONNECTIONS_URL", "STRIPE_API_BASE",
                 "STRIPE_REPORTS_DAGSTER_STORAGE_URL", "STRIPE_REPORTS_LAKE_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Start sandboxes for given account specs; STRIPE_API_BASE points at the last one."""
    from sandbox import SandboxServer, SandboxWorld

    servers = []

    def start(specs, seed: int = 1, **knobs):
        world = SandboxWorld.generate(seed=seed, specs=specs)
        server = SandboxServer(world, **knobs).start()
        servers.append(server)
        monkeypatch.setenv("STRIPE_API_BASE", server.base_url)
        return server

    yield start
    for server in servers:
        server.stop()
