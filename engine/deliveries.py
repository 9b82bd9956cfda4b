"""Scheduled deliveries of a client's report: what clients.yaml declares (`deliveries`), when
each is due and which period it covers.

A delivery is `{cadence: weekly|monthly, day: MON..SUN or 1..28, period: last_week|last_month|
month_to_date, to: [emails]}`. Periods are whole days: last_week is the last complete Monday
to Sunday, last_month the last complete calendar month, month_to_date the 1st of the month
to the day before the delivery (on the 1st: the whole previous month).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

CADENCES = ("weekly", "monthly")
PERIODS = ("last_week", "last_month", "month_to_date")
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
FIELDS = ("cadence", "day", "period", "to")
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")


@dataclass(frozen=True)
class DeliverySpec:
    cadence: str
    day: str | int
    period: str
    to: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"cadence": self.cadence, "day": self.day, "period": self.period,
                "to": list(self.to)}

    def describe(self) -> str:
        when = f"every {self.day}" if self.cadence == "weekly" else f"on day {self.day} monthly"
        return f"{self.period.replace('_', ' ')} {when} to {', '.join(self.to)}"


def check_emails(addresses: Iterable[Any]) -> tuple[str, ...]:
    """The addresses if each looks like one; a ValueError naming the first that does not."""
    checked = []
    for address in addresses:
        if not isinstance(address, str) or not _EMAIL.fullmatch(address.strip()):
            raise ValueError(f"{address!r} is not an email address")
        checked.append(address.strip())
    return tuple(checked)


def check_period(period: Any) -> str:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return period


def _day(cadence: str, day: Any) -> str | int:
    if cadence == "weekly":
        if not isinstance(day, str) or day.upper()[:3] not in WEEKDAYS:
            raise ValueError(f"a weekly delivery's day is one of {', '.join(WEEKDAYS)}, "
                             f"not {day!r}")
        return day.upper()[:3]
    if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 28:
        raise ValueError(f"a monthly delivery's day is a day of the month from 1 to 28, "
                         f"not {day!r}")
    return day


def parse_delivery(entry: Any) -> DeliverySpec:
    """One `deliveries` entry of clients.yaml; a ValueError says what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError(f"a delivery is a mapping of {', '.join(FIELDS)}, not {entry!r}")
    unknown = sorted(str(name) for name in entry if name not in FIELDS)
    if unknown:
        raise ValueError(f"a delivery has unknown field(s) {', '.join(unknown)} (known: "
                         f"{', '.join(FIELDS)})")
    cadence = entry.get("cadence")
    if cadence not in CADENCES:
        raise ValueError(f"a delivery's cadence is weekly or monthly, not {cadence!r}")
    recipients = entry.get("to")
    if isinstance(recipients, str):
        recipients = [recipients]
    if not isinstance(recipients, list) or not recipients:
        raise ValueError("a delivery needs `to`: a list of email addresses")
    return DeliverySpec(cadence, _day(cadence, entry.get("day")),
                        check_period(entry.get("period")), check_emails(recipients))


def parse_deliveries(value: Any) -> tuple[DeliverySpec, ...]:
    if not isinstance(value, list):
        raise ValueError("deliveries must be a list of {cadence, day, period, to}")
    return tuple(parse_delivery(entry) for entry in value)


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


def last_due_date(spec: DeliverySpec, today: date) -> date:
    """The latest day on or before `today` the delivery was due."""
    if spec.cadence == "weekly":
        return today - timedelta(days=(today.weekday() - WEEKDAYS.index(str(spec.day))) % 7)
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


def due_delivery(client_id: str, spec: DeliverySpec, today: date) -> DueDelivery:
    """The delivery `spec` owes as of `today`: the period of its latest due date."""
    start, end = period_dates(spec.period, last_due_date(spec, today))
    return DueDelivery(client_id, spec.period, start, end, spec.to)
