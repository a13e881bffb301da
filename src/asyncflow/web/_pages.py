"""The HTML pages: runs, one run, one task id, search; and their static files.

Server-rendered with Jinja2, autoescaping on: every value from the journal
(task ids, parameters, errors, tracebacks) is text in the page, never markup.
Links are relative to the page (``base`` is ``""`` or ``"../"``), so the app
works under any mount point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .._version import __version__
from ..journal import AttemptStatus, RunStatus
from ._query import BadQuery, attempt_status, load_runs, number, run_filter, text
from ._reader import JournalReader
from ._views import (
    UNRUN,
    graph,
    iso,
    linkable,
    percent,
    reported,
    seconds,
    shares,
    short_label,
    task_rows,
    when,
)

__all__ = ["Pages", "Static"]

_HERE: Final = Path(__file__).parent
_TASKS_PER_PAGE: Final = 200
_REQUESTED_SHOWN: Final = 20
_SEARCH_LIMIT: Final = 100
_TOP: Final = ""
_NESTED: Final = "../"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        urlq=lambda value: quote(str(value), safe=""),
        when=when,
        iso=iso,
        seconds=seconds,
        count=lambda value: f"{value:,}",
        short=short_label,
        percent=percent,
    )
    env.tests.update(reported=reported, linkable=linkable)
    env.globals.update(
        version=__version__,
        run_statuses=list(RunStatus),
        attempt_statuses=list(AttemptStatus),
    )
    return env


def _query(**params: object) -> str:
    """``?a=1&b=2`` of the parameters that are set; ``?`` alone when none are."""
    return "?" + urlencode({name: value for name, value in params.items() if value})


class Pages:
    """The HTML pages over one journal."""

    def __init__(self, reader: JournalReader, page_size: int) -> None:
        self._reader = reader
        self._page_size = page_size
        self._env = _environment()

    def render(
        self, request: Request, template: str, base: str, code: int = 200, **context: Any
    ) -> HTMLResponse:
        page = self._env.get_template(template).render(
            base=base,
            home=base or "./",
            journal_path=str(self._reader.path),
            q=context.pop("q", None) or "",
            live=context.pop("live", False),
            **context,
        )
        return HTMLResponse(page, status_code=code)

    def message(
        self, request: Request, title: str, text: str, code: int, base: str = _TOP
    ) -> HTMLResponse:
        return self.render(request, "message.html", base, code, title=title, text=text)

    async def runs(self, request: Request) -> Response:
        try:
            where = run_filter(request)
            page = number(request, "page", 1, low=1)
        except BadQuery as exc:
            return self.message(request, "Bad request", str(exc), 400)
        size = self._page_size
        async with self._reader.open() as journal:
            if journal is None:
                return self.message(
                    request,
                    "No journal yet",
                    f"There is no journal at {self._reader.path} yet: it appears with the "
                    "first run that uses it.",
                    200,
                )
            found = await load_runs(journal, where, size, (page - 1) * size)
        pages = max(-(-found.total // size), 1)
        status = where.status.value if where.status else None

        def link(**changes: object) -> str:
            params: dict[str, object] = {"status": status, "family": where.family}
            params.update(changes)
            return _query(**params)

        return self.render(
            request,
            "runs.html",
            _TOP,
            runs=found.runs,
            status_counts=found.counts,
            all_runs=sum(found.counts.values()),
            total=found.total,
            status=status,
            family=where.family or "",
            page=page,
            pages=pages,
            first=(page - 1) * size + 1,
            newer=link(page=page - 1 if page > 2 else None) if page > 1 else None,
            older=link(page=page + 1) if page < pages else None,
            status_link=lambda value: _query(status=value, family=where.family),
            live=any(run.status is RunStatus.RUNNING for run in found.runs),
        )

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            wanted = attempt_status(request)
            page = number(request, "page", 1, low=1)
        except BadQuery as exc:
            return self.message(request, "Bad request", str(exc), 400, _NESTED)
        async with self._reader.open() as journal:
            found = None
            if journal is not None:
                found = await journal.run_summary(run_id, requested=_REQUESTED_SHOWN)
            if journal is None or found is None:
                return self.message(
                    request, "No such run", f"No run {run_id!r} in the journal.", 404, _NESTED
                )
            # A page of the run costs about a page: counted and paged in the journal.
            counted = await journal.count_run_tasks(run_id)
            shown = counted.statuses.get(wanted, 0) if wanted else counted.attempted + counted.unrun
            pages = max(-(-shown // _TASKS_PER_PAGE), 1)
            start = (page - 1) * _TASKS_PER_PAGE
            rows = task_rows(
                await journal.run_tasks(run_id, status=wanted, limit=_TASKS_PER_PAGE, offset=start)
            )
            unattempted: list[str] = []
            room = _TASKS_PER_PAGE - len(rows)
            if wanted is None and room > 0 and counted.unrun:
                # Requested tasks with no attempt come after the attempted ones, paged alike.
                skip = max(start - counted.attempted, 0)
                unattempted = await journal.requested(run_id, unrun=True, limit=room, offset=skip)
            caps = shares({**counted.families, UNRUN: counted.unrun})
            states = await journal.task_states(
                run_id, {family: cap for family, cap in caps.items() if family != UNRUN and cap}
            )
            drawn_unrun = (
                await journal.requested(run_id, unrun=True, limit=caps[UNRUN])
                if caps[UNRUN]
                else []
            )
        status = wanted.value if wanted else None
        return self.render(
            request,
            "run.html",
            _NESTED,
            run=found,
            tasks=rows,
            all_tasks=counted.attempted,
            shown_tasks=shown,
            task_counts=counted.statuses,
            status=status,
            page=page,
            pages=pages,
            newer=_query(status=status, page=page - 1 if page > 2 else None) if page > 1 else None,
            older=_query(status=status, page=page + 1) if page < pages else None,
            status_link=lambda value: _query(status=value),
            graph=graph(states, counted.families, drawn_unrun, counted.unrun),
            unrun=unattempted,
            live=found.status is RunStatus.RUNNING,
        )

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        async with self._reader.open() as journal:
            attempts = [] if journal is None else await journal.attempts(task_id)
        if not attempts:
            return self.message(
                request,
                "No such task",
                f"No attempt of task {task_id!r} in the journal.",
                404,
                _NESTED,
            )
        latest = attempts[-1]
        return self.render(
            request,
            "task.html",
            _NESTED,
            task_id=task_id,
            family=latest.family,
            params=latest.params,
            attempts=list(reversed(attempts)),  # newest first, as the runs page
            latest=latest,
            live=any(a.status is AttemptStatus.RUNNING for a in attempts),
        )

    async def search(self, request: Request) -> Response:
        try:
            q = text(request, "q")
        except BadQuery as exc:
            return self.message(request, "Bad request", str(exc), 400)
        found = []
        if q is not None:
            async with self._reader.open() as journal:
                if journal is not None:
                    found = await journal.find_tasks(q, limit=_SEARCH_LIMIT)
        return self.render(request, "search.html", _TOP, q=q, found=found, limit=_SEARCH_LIMIT)


class Static:
    """The stylesheet, the script and the icon, read once."""

    _TYPES: Final = {
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
    }

    def __init__(self) -> None:
        folder = _HERE / "static"
        self._files = {
            path.name: (path.read_bytes(), self._TYPES[path.suffix])
            for path in folder.iterdir()
            if path.suffix in self._TYPES
        }

    async def file(self, request: Request) -> Response:
        found = self._files.get(request.path_params["name"])
        if found is None:
            return Response("404 Not Found\n", status_code=404, media_type="text/plain")
        body, media_type = found
        return Response(body, media_type=media_type, headers={"cache-control": "max-age=300"})
