"""Comparisons people choose: the previous period, the same period last year, and the same
days of the previous month or quarter; through run_widgets, the CLI and the JSON API."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from starlette.testclient import TestClient

from apps.web.app import create_app
from engine.warehouse_factory import warehouse_from_settings
from reports.widgets import Period, render, run_widget
from tests.test_bad_input import refused
from tests.test_cli import run_cli, save
from tests.test_reporting_support import build, charge, land

NOW = datetime(2024, 12, 6, 18, tzinfo=UTC)


@pytest.mark.parametrize(("start", "end", "compare", "expected"), [
    ("2024-12-01", "2024-12-06", "previous_month", ("2024-11-01", "2024-11-06")),
    ("2024-12-01", "2024-12-06", "previous_period", ("2024-11-25", "2024-11-30")),
    ("2024-02-01", "2024-02-29", "previous_month", ("2024-01-01", "2024-01-31")),
    ("2024-03-01", "2024-03-31", "previous_month", ("2024-02-01", "2024-02-29")),
    ("2024-03-15", "2024-03-30", "previous_month", ("2024-02-15", "2024-02-29")),
    ("2024-04-01", "2024-05-15", "previous_quarter", ("2024-01-01", "2024-02-15")),
    ("2024-01-01", "2024-02-29", "previous_year", ("2023-01-01", "2023-02-28")),
    ("2024-01-01", "2024-12-06", "previous_year", ("2023-01-01", "2023-12-06")),
])
def test_compared_periods(start, end, compare, expected):
    period = Period(date.fromisoformat(start), date.fromisoformat(end)).compared(compare)
    assert (period.start.isoformat(), period.end.isoformat()) == expected


@pytest.fixture()
def sold(home):
    """Gross volume: 50 on 2 Dec 2024, 100 on 3 Nov, 999 on 20 Nov, 70 on 2 Dec 2023."""
    warehouse = warehouse_from_settings()
    land(warehouse, "acme", "charges", [
        charge("2024-12-02", 5_000), charge("2024-11-03", 10_000),
        charge("2024-11-20", 99_900), charge("2023-12-02", 7_000)])
    build(warehouse, "acme", NOW)
    save("acme")
    return warehouse


def test_month_to_date_against_each_comparison(sold):
    def previous(compare: str | None) -> tuple:
        result = run_widget("acme", "gross_volume", "2024-12-01", "2024-12-06", now=NOW,
                            compare=compare)
        data = result.to_json()
        return result.value, data["previous"], data["previous_start"], data["compare"]

    assert previous(None) == (50.0, 0.0, "2024-11-25", "previous_period")
    assert previous("previous_month") == (50.0, 100.0, "2024-11-01", "previous_month")
    assert previous("previous_year") == (50.0, 70.0, "2023-12-01", "previous_year")
    text = render(run_widget("acme", "gross_volume", "2024-12-01", "2024-12-06", now=NOW,
                             compare="previous_year"), "table")
    assert "same period last year: $70.00 (-28.6%)" in text


def test_cli_and_api_take_compare(sold):
    done = run_cli("widget", "acme", "gross_volume", "--start", "2024-12-01", "--end",
                   "2024-12-06", "--compare", "previous_month", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["previous"], data["previous_start"], data["previous_end"]) == (
        100.0, "2024-11-01", "2024-11-06")
    refused(run_cli("widget", "acme", "gross_volume", "--compare", "last_week"), 2,
            "--compare must be one of previous_period, previous_year")
    with TestClient(create_app(), base_url="http://127.0.0.1:8050") as web:
        api = "/api/clients/acme/widgets/gross_volume"
        params = {"start": "2024-12-01", "end": "2024-12-06", "compare": "previous_year"}
        assert web.get(api, params=params).json()["previous"] == 70.0
        bad = web.get(api, params={**params, "compare": "yesterday"})
        assert bad.status_code == 400 and "previous_quarter" in bad.json()["error"]
