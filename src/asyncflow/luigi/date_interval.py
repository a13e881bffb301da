"""Date intervals: a day, an ISO week, a month, a year, or any range of days.

Each is a half-open range of dates ``[date_a, date_b)`` with a text form that
:class:`~asyncflow.luigi.DateIntervalParameter` reads: ``2026-11-23``
(:class:`Date`), ``2026-W47`` (:class:`Week`), ``2026-11`` (:class:`Month`),
``2026`` (:class:`Year`) and ``2026-11-01-2026-11-23`` (:class:`Custom`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["Custom", "Date", "DateInterval", "Month", "Week", "Year"]


class DateInterval:
    """The dates from ``date_a`` (included) to ``date_b`` (excluded)."""

    def __init__(self, date_a: dt.date, date_b: dt.date) -> None:
        self.date_a = date_a
        self.date_b = date_b

    def dates(self) -> list[dt.date]:
        """Every date of the interval, in order."""
        days = (self.date_b - self.date_a).days
        return [self.date_a + dt.timedelta(days=i) for i in range(days)]

    def hours(self) -> list[dt.datetime]:
        """Every whole hour of the interval, in order."""
        return [
            dt.datetime(d.year, d.month, d.day, hour) for d in self.dates() for hour in range(24)
        ]

    def to_string(self) -> str:
        return f"{self.date_a.isoformat()}-{self.date_b.isoformat()}"

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_string()!r})"

    def prev(self) -> DateInterval:
        """The interval of the same kind just before this one."""
        return self.from_date(self.date_a - dt.timedelta(days=1))

    def next(self) -> DateInterval:
        """The interval of the same kind just after this one."""
        return self.from_date(self.date_b)

    @classmethod
    def from_date(cls, day: dt.date) -> DateInterval:
        raise NotImplementedError(f"{cls.__name__} has no interval for a single date")

    @classmethod
    def parse(cls, text: str) -> DateInterval | None:
        """The interval a text names, or None if it is not of this kind."""
        return None

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.date_a <= day < self.date_b

    def __iter__(self) -> Iterator[dt.date]:
        return iter(self.dates())

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.date_a, self.date_b))

    def _key(self, other: object) -> tuple[Any, Any]:
        if not isinstance(other, DateInterval):
            raise TypeError(f"cannot compare a date interval with {other!r}")
        return (self.date_a, self.date_b), (other.date_a, other.date_b)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DateInterval):
            return NotImplemented
        return type(self) is type(other) and (self.date_a, self.date_b) == (
            other.date_a,
            other.date_b,
        )

    def __lt__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return bool(mine < theirs)

    def __le__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return bool(mine <= theirs)

    def __gt__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return bool(mine > theirs)

    def __ge__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return bool(mine >= theirs)


_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_YEAR = re.compile(r"(\d{4})")
_CUSTOM = re.compile(r"(\d{4}-\d{2}-\d{2})-(\d{4}-\d{2}-\d{2})")


class Date(DateInterval):
    """One day: ``2026-11-23``."""

    def __init__(self, y: int, m: int, d: int) -> None:
        day = dt.date(y, m, d)
        super().__init__(day, day + dt.timedelta(days=1))

    def to_string(self) -> str:
        return self.date_a.isoformat()

    @classmethod
    def from_date(cls, day: dt.date) -> Date:
        return cls(day.year, day.month, day.day)

    @classmethod
    def parse(cls, text: str) -> Date | None:
        match = _DAY.fullmatch(text)
        return cls(*map(int, match.groups())) if match else None


class Week(DateInterval):
    """One ISO week, Monday to Sunday: ``2026-W47``."""

    def __init__(self, y: int, w: int) -> None:
        monday = dt.date.fromisocalendar(y, w, 1)
        super().__init__(monday, monday + dt.timedelta(weeks=1))
        self.year, self.week = y, w

    def to_string(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @classmethod
    def from_date(cls, day: dt.date) -> Week:
        year, week, _ = day.isocalendar()
        return cls(year, week)

    @classmethod
    def parse(cls, text: str) -> Week | None:
        match = _WEEK.fullmatch(text)
        return cls(*map(int, match.groups())) if match else None


class Month(DateInterval):
    """One calendar month: ``2026-11``."""

    def __init__(self, y: int, m: int) -> None:
        first = dt.date(y, m, 1)
        following = dt.date(y + m // 12, m % 12 + 1, 1)
        super().__init__(first, following)

    def to_string(self) -> str:
        return f"{self.date_a.year}-{self.date_a.month:02d}"

    @classmethod
    def from_date(cls, day: dt.date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> Month | None:
        match = _MONTH.fullmatch(text)
        return cls(*map(int, match.groups())) if match else None


class Year(DateInterval):
    """One calendar year: ``2026``."""

    def __init__(self, y: int) -> None:
        super().__init__(dt.date(y, 1, 1), dt.date(y + 1, 1, 1))

    def to_string(self) -> str:
        return str(self.date_a.year)

    @classmethod
    def from_date(cls, day: dt.date) -> Year:
        return cls(day.year)

    @classmethod
    def parse(cls, text: str) -> Year | None:
        match = _YEAR.fullmatch(text)
        return cls(int(match.group(1))) if match else None


class Custom(DateInterval):
    """Any range of days: ``2026-11-01-2026-11-23`` (the second date excluded)."""

    @classmethod
    def parse(cls, text: str) -> Custom | None:
        match = _CUSTOM.fullmatch(text)
        if not match:
            return None
        return cls(dt.date.fromisoformat(match.group(1)), dt.date.fromisoformat(match.group(2)))
