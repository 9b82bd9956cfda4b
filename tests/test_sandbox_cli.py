"""`python -m sandbox` serves the demo world and tells the user how to reach it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


# As from a terminal: a run started in the background (`make test &`) ignores Ctrl-C, and
# the server would inherit that. The child restores Python's own Ctrl-C handling itself: a
# preexec_fn would fork this many-threaded test process and can hang before the exec.
SANDBOX_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'sandbox'; runpy.run_module('sandbox', run_name='__main__', alter_sys=True)"
)


def test_cli_serves_demo_accounts_until_interrupted():
    process = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_WITH_CTRL_C, "--port", "0", "--seed", "7",
         "--charges", "300"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Use it with"):
                break
        text = "".join(lines)
        base_url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text).group(1)
        keys = dict(re.findall(r"^\s+(\w+)\s+acct_\w+\s+(sk_test_\w+)", text, re.MULTILINE))
        assert set(keys) == {"acme", "globex", "initech"}
        assert "(revoked)" in next(line for line in lines if "initech" in line)

        acme = {"Authorization": f"Bearer {keys['acme']}"}
        charges = requests.get(f"{base_url}/v1/charges?limit=100", headers=acme, timeout=10)
        assert charges.status_code == 200 and len(charges.json()["data"]) == 100
        revoked = requests.get(
            f"{base_url}/v1/charges",
            headers={"Authorization": f"Bearer {keys['initech']}"},
            timeout=10,
        )
        assert revoked.status_code == 401

        charge = next(c for c in charges.json()["data"] if c["status"] == "succeeded")
        refund = requests.post(
            f"{base_url}/_sandbox/accounts/acme/refund",
            data={"charge": charge["id"], "amount": 5},
            timeout=10,
        )
        assert refund.status_code == 200 and refund.json()["amount"] == 5
        events = requests.get(
            f"{base_url}/v1/events", params={"type": "refund.created"}, headers=acme, timeout=10
        )
        assert events.json()["data"][0]["data"]["object"]["id"] == refund.json()["id"]
    finally:
        process.send_signal(signal.SIGINT)
        # Drain both pipes while it stops: a full pipe would block its exit.
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
