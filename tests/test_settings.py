"""Settings from the environment, as a user meets them through the real command: one typed
reader (engine/settings.py), database URLs taken in the forms users write, and one clear line
for a value that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import load_settings
from tests.test_bad_input import refused, run_cli


@pytest.mark.parametrize("value", ["soon", "-5", "nan"])
def test_a_bad_retry_budget_is_one_line_naming_the_variable(home: Path, value: str) -> None:
    result = run_cli("clients", env={"STRIPE_REPORTS_RETRY_SECONDS": value})
    line = refused(result, 2, "STRIPE_REPORTS_RETRY_SECONDS")
    assert value not in line.replace("STRIPE_REPORTS_RETRY_SECONDS", "")


def test_settings_follow_the_environment_as_it_changes(home: Path, monkeypatch) -> None:
    assert load_settings().retry_seconds == 180
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "2.5")
    assert load_settings().retry_seconds == 2.5
    monkeypatch.setenv("STRIPE_REPORTS_RETRY_SECONDS", "")  # empty: unset
    assert load_settings().retry_seconds == 180
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9/")
    assert load_settings().api_base == "http://127.0.0.1:9"
