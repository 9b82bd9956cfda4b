"""After `make demo`: its clients keep reaching the demo's sandbox (remembered per client),
fail at once with the way to start it when it is not running, and real clients never go
there."""

from __future__ import annotations

import time

from apps.cli import main
from engine.credentials import connect_client
from engine.demo_sandbox import remember_demo_sandbox, sandbox_address
from sandbox import AccountSpec


def test_demo_clients_keep_their_sandbox(home, sandbox_factory, monkeypatch, capsys):
    server = sandbox_factory([AccountSpec("acme", charges=20), AccountSpec("globex", charges=20)])
    acme = server.world.accounts["acme"]
    connect_client("acme", acme.secret_key, api_base=server.base_url)
    connect_client("globex", server.world.accounts["globex"].secret_key,
                   api_base=server.base_url)
    remember_demo_sandbox(server.base_url, 1, {"acme": acme.account_id})
    monkeypatch.delenv("STRIPE_API_BASE")  # as in a new shell after `make demo`

    assert main(["check", "acme"]) == 0  # the sandbox answered, not Stripe
    assert sandbox_address("globex", server.world.accounts["globex"].account_id) is None
    assert sandbox_address("acme", "acct_another_real_account") is None
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")
    assert sandbox_address("acme", acme.account_id) is None  # set, it wins for everyone
    monkeypatch.delenv("STRIPE_API_BASE")

    server.stop()
    capsys.readouterr()
    began = time.monotonic()
    assert main(["check", "acme"]) == 1
    assert time.monotonic() - began < 20  # not the 180 s of retries against a dead address
    said = capsys.readouterr()
    text = said.out + said.err
    assert "sandbox" in text and "make dev" in text and "Traceback" not in text


def test_sandbox_for_demo_needs_a_demo(home, capsys):
    assert main(["sandbox", "--for-demo"]) == 2
    assert "make demo" in capsys.readouterr().err
