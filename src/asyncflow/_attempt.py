"""Running one attempt of a task body: on the loop, in a thread, or as a generator."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import structlog

from .errors import MissingOutputError, TaskDefinitionError, TaskError
from .graph import Node, _outputs, missing_targets
from .resources import running_release
from .targets.base import abandoned_attempt
from .task import RunKind

__all__ = ["call_run", "check_outputs"]


async def call_run(
    node: Node,
    threads: anyio.CapacityLimiter,
    release: Callable[[Mapping[str, float]], None] | None,
) -> None:
    """Run the task body once, with ``task_id`` bound for logging.

    ``release`` (when the task holds resources) backs
    ``Task.decrease_running_resources()``.
    """
    task = node.task
    kind = type(task)._run_kind
    # bind/reset rather than bound_contextvars(): a third of the cost, per task.
    tokens = structlog.contextvars.bind_contextvars(task_id=node.task_id)
    releasing = running_release.set(release) if release is not None else None
    try:
        if kind is RunKind.ASYNC:
            await task.run()
        elif kind is RunKind.SYNC:
            await _call_sync(node, threads)
        else:
            await _run_generator(node)
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
        if releasing is not None:
            running_release.reset(releasing)


async def _call_sync(node: Node, threads: anyio.CapacityLimiter) -> None:
    """A plain ``def run()`` in a worker thread.

    A thread cannot be killed: on timeout or cancellation the run stops waiting
    for it (``abandon_on_cancel``) and flags the attempt as abandoned, so that
    the thread's late writes are discarded instead of committed.
    """
    abandoned = threading.Event()
    token = abandoned_attempt.set(abandoned)  # copied into the thread's context
    try:
        outcome = await anyio.to_thread.run_sync(
            node.task.run, limiter=threads, abandon_on_cancel=True
        )
    except BaseException:
        abandoned.set()
        raise
    finally:
        abandoned_attempt.reset(token)
    if inspect.isawaitable(outcome):
        close = getattr(outcome, "close", None)
        if close is not None:
            close()
        raise TaskError(
            f"{node.task_id}: run() is a plain function but returned an awaitable; "
            "declare it `async def run(self)`",
            task_id=node.task_id,
        )


async def _run_generator(node: Node) -> None:
    body: Any = node.task.run()
    async for _ in body:
        await body.aclose()
        raise TaskError(
            f"{node.task_id}: run() yielded requirements, and dynamic requirements are "
            "not supported yet",
            task_id=node.task_id,
        )


async def check_outputs(node: Node) -> None:
    """Fail the attempt when the body returned without producing every output."""
    outputs = node.outputs
    if outputs is None:
        try:
            outputs = node.outputs = _outputs(node.task)
        except Exception as exc:
            raise TaskDefinitionError(node.task_id, "output", exc) from exc
    if outputs:
        missing = await missing_targets(outputs)
        if missing:
            raise MissingOutputError(node.task_id, [str(t) for t in missing])
