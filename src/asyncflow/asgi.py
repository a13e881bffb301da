"""Runs that end when the HTTP client goes away (Starlette, FastAPI).

::

    from fastapi import FastAPI, Request, Response
    from asyncflow.asgi import run_until_disconnected

    app = FastAPI()

    @app.post("/reports/{day}")
    async def report(day: datetime.date, request: Request):
        result = await run_until_disconnected(request, Report(date=day))
        if result is None:  # the client went away: the run was cancelled
            return Response(status_code=499)
        return {"ok": result.ok}

Neither uvicorn nor Starlette (nor FastAPI, built on it) cancels an endpoint
whose client disconnects: a plain ``await asyncflow.run(...)`` goes on to
the end for nobody. What the server does is answer the request's ``receive()`` with
an ``http.disconnect`` message. :func:`cancel_on_disconnect` waits for that
message beside the block it guards and cancels the block when it comes;
:func:`run_until_disconnected` is a run under it. The cancelled run does what
any cancelled run does: running bodies are cancelled, their half-written
outputs discarded, and the journal records the run as ``cancelled``.

The request's body is read first (Starlette keeps it, so ``request.body()``,
``json()`` and ``form()`` still work inside the block): the messages that
carry it come through the same ``receive()``.

This module needs Starlette (``pip install 'asyncflow[web]'``); importing
:mod:`asyncflow` does not import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
from starlette.requests import ClientDisconnect, Request

from .result import RunResult
from .runner import run
from .task import Task

__all__ = ["cancel_on_disconnect", "run_until_disconnected"]

# What Starlette's Request.stream() raises once the endpoint has streamed the
# body itself: nothing is left for us to read, which is what we want.
_STREAM_CONSUMED: Final = "Stream consumed"


async def run_until_disconnected(
    request: Request, *tasks: Task | Iterable[Task], **options: Any
) -> RunResult | None:
    """``await asyncflow.run(*tasks, **options)``, cancelled if the client disconnects.

    Args:
        request: the Starlette request being answered (FastAPI's ``Request``
            is one).
        tasks, options: as for :func:`asyncflow.run`.

    Returns:
        The run's result, or None when the client disconnected first (the run
        was then cancelled, or never started if the client had already gone).

    Raises:
        Whatever :func:`asyncflow.run` raises, unchanged; a cancellation from
        outside (server shutdown) propagates.
    """
    result: RunResult | None = None
    async with cancel_on_disconnect(request):
        result = await run(*tasks, **options)
    return result


@asynccontextmanager
async def cancel_on_disconnect(request: Request) -> AsyncIterator[anyio.CancelScope]:
    """A cancel scope around the block, cancelled when the client of ``request`` disconnects.

    ::

        async with cancel_on_disconnect(request) as scope:
            result = await asyncflow.run(Report(date=day))
        if scope.cancelled_caught:
            ...  # the client left mid-run: nobody reads the response

    The block is cancelled at once if the client has already gone. Code
    after the block runs either way; ``scope.cancelled_caught`` tells whether
    the disconnect cut the block short. Watching stops when the block ends.

    Raises:
        Whatever the block raises, unchanged (never wrapped in an
        ``ExceptionGroup``); a cancellation from outside propagates.
    """
    scope = anyio.CancelScope()
    if not await _read_body(request):
        scope.cancel()
    raised: BaseException | None = None
    async with anyio.create_task_group() as watcher:
        if not scope.cancel_called:
            watcher.start_soon(_cancel_when_disconnected, request, scope)
        try:
            with scope:
                yield scope
        except BaseException as error:
            # Re-raised below, outside the task group, which would otherwise
            # wrap it in an ExceptionGroup that no FastAPI handler matches.
            raised = error
        watcher.cancel_scope.cancel()  # the block is over: stop watching
    if raised is not None:
        raise raised


async def _read_body(request: Request) -> bool:
    """Read (and so keep) the request's body unless already read; False if the client left.

    The watcher takes every message ``receive()`` gives: body messages it
    took would be lost to the endpoint.
    """
    try:
        await request.body()
    except ClientDisconnect:
        return False
    except RuntimeError as error:
        if str(error) != _STREAM_CONSUMED:
            raise
    return True


async def _cancel_when_disconnected(request: Request, scope: anyio.CancelScope) -> None:
    # Once the body has been read, the server's next message is
    # http.disconnect, sent when the client goes away; receive() waits for it.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
