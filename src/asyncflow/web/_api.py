"""The JSON API: the pages' data, for scripts and dashboards.

``GET /api/runs?status=&family=&limit=&offset=``,
``GET /api/runs/{run_id}?limit=&offset=&requested_limit=&requested_offset=``,
``GET /api/tasks/{task_id}``, ``GET /api/search?q=&limit=``. Lists of runs hold
each run's first requested task ids and ``requested_count``; one run pages its
attempts and its requested ids. Times are seconds
since the epoch (floats); durations are seconds. Errors answer
``{"error": "..."}`` with status 400 (a bad parameter, named) or 404.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from ._query import BadQuery, load_runs, number, run_filter, text
from ._reader import JournalReader
from ._views import attempt_json, run_json, task_summary_json

__all__ = ["Api"]

_MAX_LIMIT: Final = 500
_ATTEMPTS: Final = 1000
"""Attempts of a run in one answer unless asked otherwise."""
_MAX_ATTEMPTS: Final = 10_000
_REQUESTED: Final = 1000
"""Requested task ids of a run in one answer unless asked otherwise."""
_MAX_REQUESTED: Final = 100_000


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Api:
    """The JSON endpoints over one journal."""

    def __init__(self, reader: JournalReader, page_size: int) -> None:
        self._reader = reader
        self._page_size = page_size

    async def runs(self, request: Request) -> JSONResponse:
        try:
            where = run_filter(request)
            limit = number(request, "limit", self._page_size, low=1, high=_MAX_LIMIT)
            offset = number(request, "offset", 0, low=0)
        except BadQuery as exc:
            return _error(str(exc), 400)
        async with self._reader.open() as journal:
            if journal is None:
                return JSONResponse(
                    {"runs": [], "total": 0, "counts": {}, "limit": limit, "offset": offset}
                )
            page = await load_runs(journal, where, limit, offset)
        return JSONResponse(
            {
                "runs": [run_json(run) for run in page.runs],
                "total": page.total,
                "counts": {status.value: count for status, count in page.counts.items()},
                "limit": limit,
                "offset": offset,
            }
        )

    async def run(self, request: Request) -> JSONResponse:
        run_id = request.path_params["run_id"]
        try:
            limit = number(request, "limit", _ATTEMPTS, low=0, high=_MAX_ATTEMPTS)
            offset = number(request, "offset", 0, low=0)
            listed = number(request, "requested_limit", _REQUESTED, low=0, high=_MAX_REQUESTED)
            skipped = number(request, "requested_offset", 0, low=0)
        except BadQuery as exc:
            return _error(str(exc), 400)
        async with self._reader.open() as journal:
            found = None if journal is None else await journal.run_summary(run_id, requested=0)
            if journal is None or found is None:
                return _error(f"no run {run_id!r} in the journal", 404)
            total = sum(found.counts.values())
            attempts = (
                await journal.run_attempts(run_id, limit=limit, offset=offset)
                if limit and offset < total
                else []
            )
            requested = (
                await journal.requested(run_id, limit=listed, offset=skipped)
                if listed and skipped < found.requested_count
                else []
            )
        data = run_json(found)
        data.update(
            requested=requested,
            requested_limit=listed,
            requested_offset=skipped,
            attempts=[attempt_json(attempt) for attempt in attempts],
            attempts_total=total,
            limit=limit,
            offset=offset,
        )
        return JSONResponse(data)

    async def task(self, request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        async with self._reader.open() as journal:
            attempts = [] if journal is None else await journal.attempts(task_id)
        if not attempts:
            return _error(f"no attempt of task {task_id!r} in the journal", 404)
        latest = attempts[-1]
        return JSONResponse(
            {
                "task_id": task_id,
                "family": latest.family,
                "params": dict(latest.params),
                "attempts": [attempt_json(attempt) for attempt in attempts],
            }
        )

    async def search(self, request: Request) -> JSONResponse:
        try:
            q = text(request, "q")
            limit = number(request, "limit", self._page_size, low=1, high=_MAX_LIMIT)
        except BadQuery as exc:
            return _error(str(exc), 400)
        async with self._reader.open() as journal:
            found = [] if journal is None or q is None else await journal.find_tasks(q, limit=limit)
        return JSONResponse({"q": q, "tasks": [task_summary_json(summary) for summary in found]})
