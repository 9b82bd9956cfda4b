"""`stripe-reports demo`, as a new user runs it: three clients, one needing to reconnect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reports.widgets import widget_catalog

ROOT = Path(__file__).resolve().parent.parent


def test_demo_syncs_prints_every_widget_and_reconnect_guidance(home):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "stripe-reports"), "demo"],
        cwd=home, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "acme: synced" in out and "globex: synced" in out
    assert "initech: FAILED" in out
    assert "Run `stripe-reports connect initech`" in out
    for client in ("acme", "globex", "initech"):
        section = out.split(f"\n{client}:\n", 1)[1]
        for widget in widget_catalog():
            assert widget.name in section, f"{client} lacks {widget.name}"
    initech = out.split("\ninitech:\n", 1)[1]
    assert "reconnect_required" in initech and "$" not in initech.split("Next:")[0]
    assert "dagster dev" in out and "stripe-reports serve" in out
