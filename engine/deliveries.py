"""Scheduled deliveries of a client's report: when each `deliveries` entry of clients.yaml
(engine.client_config.Delivery) is due and which period it covers.

Periods are whole days: last_week is the last complete Monday to Sunday, last_month the
last complete calendar month, month_to_date the 1st of the month to the day before the
delivery (on the 1st: the whole previous month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from engine.client_config import WEEKDAYS, Delivery

PERIODS = ("last_week", "last_month", "month_to_date")


def check_period(period: Any) -> str:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return period


def describe(spec: Delivery) -> str:
    when = (f"every {str(spec.day).upper()}" if spec.cadence == "weekly"
            else f"on day {spec.day} monthly")
    return f"{spec.period.replace('_', ' ')} {when} to {', '.join(spec.to)}"


def period_dates(period: str, day: date) -> tuple[date, date]:
    """The first and last day of `period` as seen on `day` (both included)."""
    check_period(period)
    if period == "last_week":
        end = day - timedelta(days=day.weekday() + 1)
        return end - timedelta(days=6), end
    if period == "last_month":
        end = day.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    end = day - timedelta(days=1)
    return end.replace(day=1), end


def last_due_date(spec: Delivery, today: date) -> date:
    """The latest day on or before `today` the delivery was due."""
    if spec.cadence == "weekly":
        weekday = WEEKDAYS.index(str(spec.day).upper())
        return today - timedelta(days=(today.weekday() - weekday) % 7)
    due = int(spec.day)
    if today.day >= due:
        return today.replace(day=due)
    return (today.replace(day=1) - timedelta(days=1)).replace(day=due)


@dataclass(frozen=True)
class DueDelivery:
    """One delivery of one client's report: a period and its recipients."""

    client_id: str
    period: str
    start: date
    end: date
    to: tuple[str, ...]

    @property
    def key(self) -> str:
        """Sent at most once: the same client, days and recipients are the same delivery."""
        return f"{self.client_id}|{self.start}|{self.end}|{','.join(sorted(self.to))}"


def due_delivery(client_id: str, spec: Delivery, today: date) -> DueDelivery:
    """The delivery `spec` owes as of `today`: the period of its latest due date."""
    start, end = period_dates(spec.period, last_due_date(spec, today))
    return DueDelivery(client_id, spec.period, start, end, tuple(spec.to))
