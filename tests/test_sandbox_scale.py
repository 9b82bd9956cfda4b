"""A million-charge account starts in seconds, fits in memory and serves pages quickly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_million_charge_account_is_fast_and_small():
    # A fresh interpreter, so the peak memory measured is the sandbox's alone.
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.perf", "--charges", "1000000", "--pages", "150", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["pages_match"] and figures["oldest_page_ok"], figures
    assert figures["generate_s"] < 10, figures
    assert figures["peak_rss_mb"] < 1500, figures
    # Server and client share one interpreter here (unloaded: ~40,000/s; the server alone does
    # more). The floor leaves room for a busy machine while still catching a regression.
    assert figures["charges_per_s"] > 10_000, figures
