"""Running a settled graph: a ready queue, a fixed pool of workers, failure policy.

Every task to run has a counter of requirements still pending. When a task
succeeds, each dependent's counter drops by one; at zero it enters the ready
queue. ``workers`` coroutines take tasks from the queue, so the whole run costs
O(V + E) and never rescans pending tasks. A failure marks everything
downstream ``UPSTREAM_FAILED``; with ``keep_going=False`` it also cancels the
running tasks and stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import anyio
import structlog

from ._scheduler import Scheduler
from .errors import MissingOutputError, TaskDefinitionError, TaskError, UpstreamFailed
from .events import Event, EventBus
from .graph import Graph, Node, _outputs, missing_targets
from .resources import running_release
from .result import Status
from .task import RunKind

__all__ = ["Executor"]

_YIELD_EVERY = 64

_UPSTREAM_WHY = {
    Status.FAILED: "failed",
    Status.MISSING: "is missing (an external input that does not exist)",
    Status.UPSTREAM_FAILED: "was not run",
    Status.CANCELLED: "was cancelled",
}


class Executor:
    """Runs the incomplete tasks of one graph."""

    def __init__(
        self,
        graph: Graph,
        *,
        run_id: str,
        workers: int,
        keep_going: bool,
        bus: EventBus,
        logger: Any,
        scheduler: Scheduler,
    ) -> None:
        self._graph = graph
        self._run_id = run_id
        self._workers = workers
        self._keep_going = keep_going
        self._bus = bus
        self._log = logger
        self._queue = scheduler
        self._outstanding = 0
        self._threads = anyio.CapacityLimiter(workers)
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self._log_info = _enabled(logger, logging.INFO)

    async def run(self) -> None:
        """Run every task that can run; returns when none is left."""
        graph = self._graph
        to_run = [n for n in graph.nodes.values() if n.status is None]
        self._outstanding = len(to_run)
        for node in graph.nodes.values():
            if node.status is Status.MISSING:
                self._bus.emit(Event.DEPENDENCY_MISSING, node.task, self._run_id)
                self._log.warning("task.missing", task_id=node.task_id)
                self._propagate(node)
            elif node.status is Status.FAILED:
                self._bus.emit(Event.FAILURE, node.task, self._run_id, error=node.error)
                self._log_failure(node)
                self._propagate(node)
        if not self._keep_going and self._outstanding < len(to_run):
            # Fail fast: something failed while the graph was built; start nothing.
            for node in to_run:
                if node.status is None:
                    node.status = Status.CANCELLED
            return
        for node in to_run:
            if node.status is None and node.pending == 0:
                self._queue.push(node)
        if self._outstanding == 0:
            return
        try:
            async with anyio.create_task_group() as tg:
                self._cancel_scope = tg.cancel_scope
                self._bus.set_spawn(tg.start_soon)
                for _ in range(min(self._workers, self._outstanding)):
                    tg.start_soon(self._worker)
        finally:
            self._bus.set_spawn(None)
            for node in to_run:
                if node.status is None:
                    node.status = Status.CANCELLED

    async def _worker(self) -> None:
        queue = self._queue
        handled = 0
        while True:
            node = await queue.get()
            if node is None:
                return
            try:
                await self._execute(node)
            finally:
                queue.done(node)  # resources and family slot, on every path
            self._finish(node)
            handled += 1
            if handled % _YIELD_EVERY == 0:
                # No-op bodies never suspend: give the rest of the loop a turn.
                await asyncio.sleep(0)

    async def _execute(self, node: Node) -> None:
        task = node.task
        run_id = self._run_id
        node.attempts += 1
        node.started = time.time()
        self._bus.emit(Event.START, task, run_id, attempt=node.attempts)
        if self._log_info:
            self._log.info("task.start", task_id=node.task_id, attempt=node.attempts)
        try:
            await self._call_run(node)
            await self._check_outputs(node)
        except self._cancelled_exc:
            node.status = Status.CANCELLED
            node.finished = time.time()
            self._bus.emit(Event.CANCELLED, task, run_id, attempt=node.attempts)
            self._log.warning("task.cancelled", task_id=node.task_id)
            raise
        except Exception as exc:
            node.finished = time.time()
            node.fail(exc)
            self._bus.emit(Event.FAILURE, task, run_id, attempt=node.attempts, error=exc)
            self._log_failure(node)
        else:
            node.finished = finished = time.time()
            node.status = Status.DONE
            duration = finished - node.started
            self._bus.emit(Event.SUCCESS, task, run_id, attempt=node.attempts)
            self._bus.emit(Event.PROCESSING_TIME, task, run_id, duration=duration)
            if self._log_info:
                self._log.info("task.done", task_id=node.task_id, duration=round(duration, 6))

    async def _call_run(self, node: Node) -> None:
        task = node.task
        kind = type(task)._run_kind
        # bind/reset rather than bound_contextvars(): a third of the cost, per task.
        tokens = structlog.contextvars.bind_contextvars(task_id=node.task_id)
        release = running_release.set(self._releaser(node)) if node.held else None
        try:
            if kind is RunKind.ASYNC:
                await task.run()
            elif kind is RunKind.SYNC:
                outcome = await anyio.to_thread.run_sync(task.run, limiter=self._threads)
                if inspect.isawaitable(outcome):
                    _close(outcome)
                    raise TaskError(
                        f"{node.task_id}: run() is a plain function but returned an awaitable; "
                        "declare it `async def run(self)`",
                        task_id=node.task_id,
                    )
            else:
                await self._run_generator(node)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            if release is not None:
                running_release.reset(release)

    def _releaser(self, node: Node) -> Any:
        def release(amounts: Any) -> None:
            self._queue.release(node, amounts)

        return release

    async def _run_generator(self, node: Node) -> None:
        body = node.task.run()
        async for _ in body:
            await body.aclose()
            raise TaskError(
                f"{node.task_id}: run() yielded requirements, and dynamic requirements are "
                "not supported yet",
                task_id=node.task_id,
            )

    async def _check_outputs(self, node: Node) -> None:
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

    def _finish(self, node: Node) -> None:
        self._outstanding -= 1
        if node.status is Status.DONE:
            queue = self._queue
            for parent in node.dependents:
                if parent.status is None:
                    parent.pending -= 1
                    if parent.pending == 0:
                        queue.push(parent)
        else:
            self._propagate(node)
            if not self._keep_going and self._cancel_scope is not None:
                self._cancel_scope.cancel()
        if self._outstanding <= 0:
            self._queue.close()

    def _propagate(self, failed: Node) -> None:
        """Mark everything downstream of ``failed`` as UPSTREAM_FAILED."""
        why = _UPSTREAM_WHY.get(failed.status or Status.FAILED, "did not complete")
        stack = [(failed, why)]
        while stack:
            node, reason = stack.pop()
            for parent in node.dependents:
                if parent.status is None:
                    parent.fail(
                        UpstreamFailed(parent.task_id, node.task_id, reason),
                        Status.UPSTREAM_FAILED,
                    )
                    self._outstanding -= 1
                    stack.append((parent, _UPSTREAM_WHY[Status.UPSTREAM_FAILED]))
        if self._outstanding <= 0:
            self._queue.close()

    def _log_failure(self, node: Node) -> None:
        error = node.error
        self._log.error(
            "task.failed",
            task_id=node.task_id,
            error=f"{type(error).__name__}: {error}" if error is not None else None,
        )


def _enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` would emit at ``level`` (so hot paths can skip building records)."""
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return True
    try:
        return bool(check(level))
    except Exception:
        return True


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
