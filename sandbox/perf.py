"""`python -m sandbox.perf`: how fast the sandbox starts and serves, and how much memory it needs.

Generates one account, pages through its charges over HTTP with a keep-alive connection
(cursor paging, 100 per page, like the SDK) and reports the figures. Run it in a fresh
interpreter: the peak memory it reports is the whole process's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from sandbox.context import AccountSpec
from sandbox.server import SandboxServer
from sandbox.world import SandboxWorld


def measure(charges: int = 1_000_000, pages: int = 200, seed: int = 1) -> dict[str, Any]:
    started = time.perf_counter()
    spec = AccountSpec(
        "big",
        charges=charges,
        customers=max(40, charges // 50),
        subscriptions=max(30, charges // 500),
    )
    world = SandboxWorld.generate(seed, [spec])
    generate_s = time.perf_counter() - started
    table = world.accounts["big"].tables["charges"]
    headers = {"Authorization": f"Bearer {world.accounts['big'].secret_key}"}
    with SandboxServer(world) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        seen: list[str] = []
        after = None
        started = time.perf_counter()
        for _ in range(pages):
            query = "/v1/charges?limit=100" + (f"&starting_after={after}" if after else "")
            conn.request("GET", query, headers=headers)
            page = orjson.loads(conn.getresponse().read())
            seen += [c["id"] for c in page["data"]]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        serve_s = time.perf_counter() - started
        conn.request(
            "GET", f"/v1/charges?limit=100&created[lte]={table.created_at(99)}", headers=headers
        )
        oldest = orjson.loads(conn.getresponse().read())
        conn.close()
    expected = [table.id_of(len(table) - 1 - i) for i in range(len(seen))]
    return {
        "charges": charges,
        "generate_s": round(generate_s, 3),
        "charges_per_s": round(len(seen) / serve_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "pages_match": seen == expected,
        "oldest_page_ok": bool(oldest["data"])
        and oldest["data"][-1]["id"] == table.id_of(0)
        and not oldest["has_more"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.perf", description=__doc__)
    parser.add_argument("--charges", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    figures = measure(args.charges, args.pages)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<16} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
