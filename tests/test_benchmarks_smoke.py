"""The benchmark's quick mode on a tiny account: it syncs, measures and verifies every row."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.plan import Plan
from benchmarks.report import render
from benchmarks.suite import run_suite

SETTINGS = ("STRIPE_REPORTS_HOME", "DAGSTER_HOME", "STRIPE_REPORTS_SECRET",
            "STRIPE_REPORTS_CLIENTS_FILE", "STRIPE_REPORTS_WAREHOUSE",
            "STRIPE_REPORTS_CONNECTIONS_URL")


@pytest.mark.timeout(60)
def test_quick_mode_verifies_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run_suite points this process's settings into its work folder; undo that afterwards.
    for name in SETTINGS:
        monkeypatch.setenv(name, "")
    results = run_suite(Plan.quick(sizes=(1_500,), work=tmp_path))

    assert [(row.run, row.condition) for row in results.throughput] == [
        ("charges 1500", "cpu"), ("charges 1500", "live")]
    for row in results.throughput:
        assert row.verified, [v.describe() for v in row.verifications]
        assert row.objects == 1_500
        assert row.objects_per_s > 0 and row.peak_rss_mb > 0
    assert results.floors[1_500].objects == 1_500
    assert results.all_verified
    assert "all verified" in render(results)
