"""Cron lines (clients.yaml `schedule`), read without Dagster: the engine imports no Dagster.

Five fields, minute hour day-of-month month day-of-week, each `*`, a number or a name
(JAN..DEC, SUN..SAT), a range `a-b`, a step `*/n`, `a/n` or `a-b/n`, or a list of these;
plus the aliases @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually. That
is a subset of what Dagster's schedules take (tests/test_dagster_private_api.py compares
the two), so a line accepted here never stops the Definitions from loading.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Two years of days, from a Monday: every month and weekday combination comes round.
_SCAN_FROM, _DAYS_SCANNED = date(2024, 1, 1), 731


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0


_FIELDS = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day of month", 1, 31),
           _Field("month", 1, 12, _MONTHS, 1), _Field("day of week", 0, 7, _DAYS, 0))


class CronError(ValueError):
    """A cron line that cannot be used; the message names the field at fault."""


@dataclass(frozen=True)
class Cron:
    """A checked cron line: `line` is its five-field form, the values each field allows."""

    line: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    # Cron's rule: with both day fields restricted, a day matching either one fires.
    either_day: bool

    @property
    def interval(self) -> timedelta:
        """The longest wait between two runs (a leap day aside): what staleness is judged by."""
        times = sorted(hour * 60 + minute for hour in self.hours for minute in self.minutes)
        within = max((b - a for a, b in pairwise(times)), default=0)
        across = self._widest_day_gap() * 24 * 60 - times[-1] + times[0]
        return timedelta(minutes=max(within, across))

    def _widest_day_gap(self) -> int:
        firing = [n for n in range(_DAYS_SCANNED) if self._fires_on(_SCAN_FROM + timedelta(n))]
        return max((b - a for a, b in pairwise(firing)), default=_DAYS_SCANNED)

    def _fires_on(self, day: date) -> bool:
        by_date, by_weekday = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        matches = by_date or by_weekday if self.either_day else by_date and by_weekday
        return day.month in self.months and matches


@functools.lru_cache(maxsize=256)
def parse_cron(line: str) -> Cron:
    """The checked cron line; raises CronError naming what is wrong."""
    text = ALIASES.get(line.strip().lower(), line.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"a cron line has 5 fields (minute hour day month weekday), not "
                        f"{len(parts)}")
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = values
    if not any(day <= _DAYS_IN_MONTH[month - 1] for day in days for month in months):
        raise CronError("its day of month never occurs in its months")
    weekdays = frozenset(day % 7 for day in weekdays)  # 7 is Sunday too
    return Cron(" ".join(parts), minutes, hours, days, months, weekdays,
                either_day=not parts[2].startswith("*") and not parts[4].startswith("*"))


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    found: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = _number(step_text, spec, step=True) if step_text else 1
        if span == "*":
            low, high = spec.low, spec.high
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _number(first, spec), _number(last, spec)
        else:
            low = _number(span, spec)
            high = spec.high if step_text else low
        if low > high:
            raise CronError(f"the {spec.name} range {span!r} runs backwards")
        found.update(range(low, high + 1, step))
    return frozenset(found)


def _number(text: str, spec: _Field, *, step: bool = False) -> int:
    upper = text.strip().upper()
    if not step and upper in spec.names:
        return spec.names.index(upper) + spec.first_name
    if not upper.isdigit():
        raise CronError(f"{text!r} is not a {spec.name} ({_accepted(spec)})")
    value = int(upper)
    if step and value < 1:
        raise CronError(f"the {spec.name} step must be 1 or more, not {value}")
    if not step and not spec.low <= value <= spec.high:
        raise CronError(f"{spec.name} {value} is out of range ({_accepted(spec)})")
    return value


def _accepted(spec: _Field) -> str:
    names = f", or {spec.names[0]}..{spec.names[-1]}" if spec.names else ""
    return f"{spec.low} to {spec.high}{names}"


