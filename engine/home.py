"""Where the product keeps its files, by one rule that loads nothing: the settings use it, and
so does the CLI's hand-off to a resident process, before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path

HOME_ENV = "STRIPE_REPORTS_HOME"


def resolve_home(value: str | Path | None) -> Path:
    """STRIPE_REPORTS_HOME as given, else `.stripe-reports` in the working directory."""
    return (Path(value) if value else Path.cwd() / ".stripe-reports").resolve()
