"""Reading the query string of a page or an API call: filters, paging, search text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

from starlette.requests import Request

from ..journal import AnyJournal, AttemptStatus, RunRecord, RunStatus

__all__ = [
    "BadQuery",
    "RunFilter",
    "RunsPage",
    "attempt_status",
    "load_runs",
    "number",
    "run_filter",
    "text",
]

_MAX_TEXT: Final = 200
_MAX_NUMBER: Final = 10_000_000


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message names it."""


def text(request: Request, name: str) -> str | None:
    """A text parameter, stripped; None when absent or blank."""
    value = request.query_params.get(name, "").strip()
    if len(value) > _MAX_TEXT:
        raise BadQuery(f"{name}: at most {_MAX_TEXT} characters")
    return value or None


def number(request: Request, name: str, default: int, *, low: int, high: int = _MAX_NUMBER) -> int:
    """An integer parameter within [low, high]."""
    value = request.query_params.get(name, "").strip()
    if not value:
        return default
    try:
        found = int(value)
    except ValueError:
        raise BadQuery(f"{name}: expected a whole number, got {value!r}") from None
    if not low <= found <= high:
        raise BadQuery(f"{name}: expected a number from {low} to {high}, got {found}")
    return found


_S = TypeVar("_S", RunStatus, AttemptStatus)


def _status(request: Request, kind: type[_S]) -> _S | None:
    value = text(request, "status")
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(status.value for status in kind)
        raise BadQuery(f"status: expected one of {known}, got {value!r}") from None


def attempt_status(request: Request) -> AttemptStatus | None:
    """``status=`` as a task's status (the run page's filter)."""
    return _status(request, AttemptStatus)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """The runs page's and ``/api/runs``' filters."""

    status: RunStatus | None
    family: str | None


def run_filter(request: Request) -> RunFilter:
    return RunFilter(_status(request, RunStatus), text(request, "family"))


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of the runs, and how many runs stand in each status."""

    runs: list[RunRecord]
    counts: dict[RunStatus, int]
    """Runs by status, over the family filter (not the status one)."""
    total: int
    """Runs matching both filters."""


async def load_runs(journal: AnyJournal, where: RunFilter, limit: int, offset: int) -> RunsPage:
    """The runs matching ``where``, ``limit`` of them after ``offset``, newest first."""
    counts = await journal.count_runs(family=where.family)
    total = counts.get(where.status, 0) if where.status else sum(counts.values())
    runs = (
        await journal.find_runs(
            status=where.status, family=where.family, limit=limit, offset=offset
        )
        if offset < total
        else []
    )
    return RunsPage(runs, counts, total)
