"""The client report printed to PDF by the product's own command, `stripe-reports report
--pdf`, in a child process.

The printer is an app (the report page in headless Chromium, apps/report_pdf.py). Dagster
code (a delivery run) and the web page's PDF route, which that printer itself serves, reach
it through this command line rather than an import; a child process also keeps Chromium's
memory out of a long-lived server or run worker.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT_TIMEOUT_SECONDS = 600


class RenderError(Exception):
    """The report could not be printed; the message says why (one line)."""


def print_report(client_id: str, start: date, end: date, path: Path,
                 paper: str = "A4", compare: str | None = None) -> Path:
    command = [sys.executable, "-m", "apps.cli", "report", client_id, "--pdf", str(path),
               "--start", start.isoformat(), "--end", end.isoformat(), "--paper", paper,
               *(("--compare", compare) if compare else ())]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                              timeout=PRINT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Printing the report took over {PRINT_TIMEOUT_SECONDS} s.") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RenderError(f"The report could not be printed: {last.removeprefix('error: ')}")
    return path
