"""`stripe-reports widgets` and `stripe-reports widget CLIENT WIDGET ...`."""

from __future__ import annotations

import difflib
import json
import sys
from typing import TextIO

from apps.terminal import console, print_table
from reports.widgets import UnknownWidget, render, run_widget, widget_catalog


def print_catalog(as_json: bool, out: TextIO | None = None) -> int:
    catalog = [widget.describe() for widget in widget_catalog()]
    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(catalog, indent=2) + "\n")
        return 0
    print_table(console(out), ["name", "kind", "title", "parameters"],
                [[w["name"], w["kind"], w["title"], ", ".join(w["parameters"])]
                 for w in catalog])
    return 0


def print_widget(client_id: str, widget: str, start: str | None, end: str | None,
                 currency: str | None, fmt: str, out: TextIO | None = None,
                 err: TextIO | None = None, compare: str | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        result = run_widget(client_id, widget, start, end, currency, compare=compare)
    except UnknownWidget:
        names = [w.name for w in widget_catalog()]
        close = difflib.get_close_matches(widget, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        err.write(f"error: Unknown widget '{widget}'.{hint} `stripe-reports widgets` lists "
                  "them.\n")
        return 2
    except ValueError as error:
        err.write(f"error: {error}\n")
        return 2
    # Every state is an answer (its JSON says which): exit 0, as scripts piping to jq expect.
    out.write(render(result, fmt).rstrip("\n") + "\n")
    return 0
