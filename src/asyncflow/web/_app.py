"""The status pages' ASGI app: routes, the journal it reads, the token, the headers."""

from __future__ import annotations

import hmac
import os
from http.cookies import SimpleCookie
from typing import Final
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import JournalError
from ..journal import AnyJournal
from ._api import Api
from ._pages import Pages, Static
from ._reader import JournalReader

__all__ = ["TOKEN_COOKIE", "create_app"]

TOKEN_COOKIE: Final = "asyncflow_ui_token"

# No inline script or style, nothing from elsewhere: a value from the journal
# that slipped past escaping still could not run.
_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def create_app(
    *,
    journal: str | os.PathLike[str] | AnyJournal,
    token: str | None = None,
    registry: CollectorRegistry | None = None,
    page_size: int = 50,
) -> Starlette:
    """The status pages, their JSON API and ``/metrics``, as a Starlette app.

    Mount it in an application (``app.mount("/pipelines", create_app(...))``:
    every link is relative, so it works under any prefix) or serve it with
    ``asyncflow ui``. Every route is read-only (GET and HEAD).

    Args:
        journal: the journal file (read by each request, never created: a
            missing file shows as an empty history), the URL of a PostgreSQL
            journal (``postgresql://user@host:port/db``: each request connects;
            pages show it without its password), or an open journal
            (:class:`~asyncflow.journal.Journal`,
            :class:`~asyncflow.journal.PostgresJournal`) of the serving event loop.
        token: if given, every request must carry it: ``Authorization:
            Bearer TOKEN``, or a page opened once with ``?token=TOKEN`` (which
            sets a cookie, then redirects to the page without it).
        registry: the Prometheus registry ``/metrics`` serves (default:
            prometheus_client's ``REGISTRY``, where
            :class:`~asyncflow.metrics.PrometheusMetrics` counts by default).
        page_size: runs per page of the runs page and of ``/api/runs``.

    Raises:
        TypeError: ``journal`` is neither a path nor a Journal.
        ValueError: ``page_size`` is not positive, or ``token`` is empty.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    if token is not None and not token:
        raise ValueError("token must not be empty (pass None for no token)")
    reader = JournalReader(journal)
    pages = Pages(reader, page_size)
    api = Api(reader, page_size)
    static = Static()
    metrics_registry = REGISTRY if registry is None else registry

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await anyio.to_thread.run_sync(generate_latest, metrics_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/", pages.runs),
        Route("/runs/{run_id:path}", pages.run),
        Route("/tasks/{task_id:path}", pages.task),
        Route("/search", pages.search),
        Route("/api/runs", api.runs),
        Route("/api/runs/{run_id:path}", api.run),
        Route("/api/tasks/{task_id:path}", api.task),
        Route("/api/search", api.search),
        Route("/metrics", metrics),
        Route("/static/{name}", static.file),
    ]

    async def journal_error(request: Request, exc: Exception) -> Response:
        message = f"cannot read the journal: {exc}"
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return pages.message(request, "Cannot read the journal", str(exc), 500)

    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, token=token)],
        exception_handlers={JournalError: journal_error},
    )


class _Guard:
    """Checks the token (when there is one) and adds the security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self._app = app
        self._token = None if token is None else token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        if self._token is not None:
            refused = self._check(scope)
            if refused is not None:
                await refused(scope, receive, send_with_headers)
                return
        await self._app(scope, receive, send_with_headers)

    def _check(self, scope: Scope) -> Response | None:
        """None if the request carries the token; else the answer to give."""
        assert self._token is not None
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer " and self._same(bearer[7:].strip()):
            return None
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if TOKEN_COOKIE in cookie and self._same(cookie[TOKEN_COOKIE].value.encode()):
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = [value for name, value in query if name == "token"]
        if given and self._same(given[-1].encode()):
            # The token leaves the address (and so the history and the logs):
            # a cookie for this mount point carries it from now on.
            rest = urlencode([(name, value) for name, value in query if name != "token"])
            root = scope.get("root_path", "")
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            response = Response(status_code=303, headers={"location": location})
            response.set_cookie(
                TOKEN_COOKIE,
                given[-1],
                path=f"{root}/" if root else "/",
                httponly=True,
                samesite="strict",
            )
            return response
        return PlainTextResponse(
            "401 Unauthorized: this asyncflow ui needs its token. Send "
            "'Authorization: Bearer TOKEN', or open a page once with ?token=TOKEN.\n",
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    def _same(self, given: bytes) -> bool:
        assert self._token is not None
        return hmac.compare_digest(given, self._token)
