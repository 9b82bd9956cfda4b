"""`stripe-reports widgets` and `stripe-reports widget CLIENT WIDGET ...`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from reports.widgets import UnknownWidget, render, run_widget, widget_catalog


def print_catalog(as_json: bool, out: TextIO) -> int:
    catalog = [widget.describe() for widget in widget_catalog()]
    if as_json:
        out.write(json.dumps(catalog, indent=2) + "\n")
        return 0
    width = max(len(w["name"]) for w in catalog)
    for w in catalog:
        out.write(f"{w['name']:<{width}}  {w['kind']:<6}  {w['title']:<22}  "
                  f"{', '.join(w['parameters'])}\n")
    return 0


def print_widget(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        result = run_widget(args.client, args.widget, args.start, args.end, args.currency)
    except (UnknownWidget, ValueError) as error:
        err.write(f"error: {error}\n")
        return 2
    # Every state is an answer (its JSON says which): exit 0, as scripts piping to jq expect.
    out.write(render(result, args.format).rstrip("\n") + "\n")
    return 0


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if getattr(args, "client", None) is None:
        return print_catalog(bool(getattr(args, "json", False)), out)
    return print_widget(args, out, err)
