"""A million-charge account starts in seconds, fits in memory and serves pages quickly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter so its peak memory is the sandbox's alone.
_PROBE = textwrap.dedent(
    """
    import http.client, json, resource, time
    import orjson
    from sandbox import AccountSpec, SandboxServer, SandboxWorld

    started = time.perf_counter()
    world = SandboxWorld.generate(
        1, [AccountSpec("big", charges=1_000_000, customers=20_000, subscriptions=2_000)]
    )
    generate_s = time.perf_counter() - started
    table = world.accounts["big"].tables["charges"]
    key = world.accounts["big"].secret_key
    with SandboxServer(world) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        headers = {"Authorization": f"Bearer {key}"}
        seen, after, pages = [], None, 150
        started = time.perf_counter()
        for _ in range(pages):
            query = "/v1/charges?limit=100" + (f"&starting_after={after}" if after else "")
            conn.request("GET", query, headers=headers)
            page = orjson.loads(conn.getresponse().read())
            seen += [c["id"] for c in page["data"]]
            after = page["data"][-1]["id"]
        per_second = len(seen) / (time.perf_counter() - started)
        oldest = table.created_at(99)
        conn.request("GET", f"/v1/charges?limit=100&created[lte]={oldest}", headers=headers)
        last = orjson.loads(conn.getresponse().read())
    expected = [table.id_of(i) for i in range(len(table) - 1, len(table) - 1 - len(seen), -1)]
    print(json.dumps({
        "generate_s": generate_s,
        "charges_per_s": per_second,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pages_match": seen == expected,
        "last_page_ok": last["data"][-1]["id"] == table.id_of(0) and not last["has_more"],
    }))
    """
)


def test_million_charge_account_is_fast_and_small():
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["pages_match"] and figures["last_page_ok"]
    assert figures["generate_s"] < 10, figures
    assert figures["peak_mb"] < 1500, figures
    # Server and client share one interpreter here, so this is a floor for the server alone.
    assert figures["charges_per_s"] > 15_000, figures
