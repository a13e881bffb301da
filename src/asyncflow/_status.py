"""What a running task says about itself: status message, progress, tracking URL.

A task body calls ``self.set_status_message(...)``, ``set_progress_percentage(...)``
or ``set_tracking_url(...)`` (Luigi's names), from ``async def run()`` on the
loop or from a plain ``def run()`` in its worker thread. The values are checked
and bounded here (:func:`checked_message`, :func:`checked_percentage`,
:func:`checked_url`), then handed to the run's :class:`StatusChannel`, which
keeps the attempt's latest status and turns it into ``Event.STATUS`` events
on the loop.

A body may report thousands of times a second (a percentage per row): the
channel keeps only the latest value of each attempt and delivers what changed
at most every :data:`EVERY` seconds, so the subscribers (the journal, the
progress display) see a handful of events, never a flood, and a body in a
thread does not wake the loop on every call. An attempt's last status is
delivered at once as it ends, before the event that ends it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from typing import TYPE_CHECKING, Any, Final

from . import _redact
from ._log import log
from .events import Event, EventBus, TaskStatus
from .targets.base import writer_identity

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "EVERY",
    "MAX_MESSAGE",
    "MAX_URL",
    "StatusChannel",
    "checked_message",
    "checked_percentage",
    "checked_url",
    "report",
    "reporting",
]

MAX_MESSAGE: Final = 2000
"""Characters of a status message kept; a longer one is cut, ending in ``…``."""
MAX_URL: Final = 2000
"""Characters a tracking URL may have."""

EVERY: Final = 0.1
"""Seconds at least between two deliveries of a run's status events."""

_UNSET: Final[Any] = object()

reporting: contextvars.ContextVar[StatusChannel | None] = contextvars.ContextVar(
    "asyncflow_status_channel", default=None
)
"""The channel of the run whose task bodies run in this context (set by the
executor around its workers, copied into the worker threads of plain bodies)."""


def checked_message(task_id: str, message: object) -> str | None:
    """``message`` as text, at most :data:`MAX_MESSAGE` characters (None clears it)."""
    if message is None:
        return None
    text = message if isinstance(message, str) else str(message)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    secrets = _redact.known_secrets()  # a body may quote a hidden parameter
    return _redact.redact(text, secrets) if secrets else text


def checked_percentage(task_id: str, percentage: object) -> float:
    """``percentage`` as a float.

    Raises:
        TypeError: not a number.
        ValueError: not from 0 to 100.
    """
    if isinstance(percentage, bool) or not isinstance(percentage, int | float):
        raise TypeError(
            f"{task_id}: progress percentage must be a number from 0 to 100, "
            f"got {type(percentage).__name__} {percentage!r}"
        )
    value = float(percentage)
    if not (0.0 <= value <= 100.0) or math.isnan(value):
        raise ValueError(
            f"{task_id}: progress percentage must be from 0 to 100, got {percentage!r}"
        )
    return value


def checked_url(task_id: str, url: object) -> str | None:
    """``url`` (None clears it).

    Raises:
        TypeError: not a string.
        ValueError: longer than :data:`MAX_URL` characters.
    """
    if url is None:
        return None
    if not isinstance(url, str):
        raise TypeError(f"{task_id}: tracking URL must be a string, got {type(url).__name__}")
    if len(url) > MAX_URL:
        raise ValueError(
            f"{task_id}: tracking URL is {len(url):,} characters long, more than {MAX_URL:,}"
        )
    return url


def report(task: Task, **values: Any) -> None:
    """Hand checked ``values`` (``message``, ``percentage``, ``tracking_url``) to the
    run of ``task``'s attempt under way in this context; nothing outside one.

    Outside its own ``run()`` (a test calling ``run()`` itself, ``requires()``,
    another task's body), on a Dask worker, or after its attempt ended, a
    task's report goes nowhere.
    """
    channel = reporting.get()
    if channel is None:
        return
    writer = writer_identity.get()
    if writer is None or writer.task_id != task.task_id:
        return
    channel.report(task, writer.attempt, **values)


class StatusChannel:
    """Carries what one run's task bodies report about themselves to its events.

    Thread-safe: :meth:`report` may be called from the loop and from worker
    threads. Events are emitted on the loop only.
    """

    def __init__(self, bus: EventBus, run_id: str) -> None:
        self._bus = bus
        self._run_id = run_id
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Task, int, TaskStatus]] = {}
        """Per task id: the task, its attempt, what that attempt last reported."""
        self._dirty: dict[str, None] = {}  # reported since the last event, in order
        self._ended: dict[str, int] = {}  # per task id: its last attempt that ended
        self._scheduled = False
        self._delivered = -EVERY  # loop time of the last delivery
        self.used = False
        """Whether any body of the run has reported (until then, attempts that
        end have nothing to close)."""
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._loop_thread = threading.get_ident()

    def report(
        self,
        task: Task,
        attempt: int,
        *,
        message: str | None = _UNSET,
        percentage: float | None = _UNSET,
        tracking_url: str | None = _UNSET,
    ) -> None:
        """Set what ``attempt`` of ``task`` says (checked values); the others stay.

        A body that outlived its attempt (a thread left behind by a timeout)
        reports nothing any more.
        """
        task_id = task.task_id
        with self._lock:
            if self._ended.get(task_id, 0) >= attempt:
                return
            self.used = True
            found = self._latest.get(task_id)
            status = found[2] if found is not None and found[1] == attempt else _BLANK
            if message is not _UNSET:
                status = status._replace(message=message)
            if percentage is not _UNSET:
                status = status._replace(percentage=percentage)
            if tracking_url is not _UNSET:
                status = status._replace(tracking_url=tracking_url)
            self._latest[task_id] = (task, attempt, status)
            self._dirty[task_id] = None
            if self._scheduled:
                return  # the event on its way will carry this value too
            self._scheduled = True
        self._schedule()

    def _schedule(self) -> None:
        loop = self._loop
        try:
            if threading.get_ident() == self._loop_thread:
                if loop is None:
                    loop = self._loop = asyncio.get_running_loop()
                loop.call_soon(self._arm)  # not now: the body may say more before it awaits
                return
            if loop is not None:
                loop.call_soon_threadsafe(self._arm)
                return
        except RuntimeError:  # the run is over and its loop closed: nobody to tell
            pass
        with self._lock:
            self._scheduled = False

    def _arm(self) -> None:
        """On the loop: deliver now, or once :data:`EVERY` has passed since the last time."""
        assert self._loop is not None
        wait = self._delivered + EVERY - self._loop.time()
        if wait > 0:
            self._loop.call_later(wait, self._deliver)
        else:
            self._deliver()

    def _deliver(self) -> None:
        """On the loop: one event per attempt that reported since the last time."""
        if self._loop is not None:
            self._delivered = self._loop.time()
        with self._lock:
            self._scheduled = False
            dirty, self._dirty = self._dirty, {}
            found = [self._latest[task_id] for task_id in dirty if task_id in self._latest]
        for task, attempt, status in found:
            self._emit(task, attempt, status)

    def close(self, task_id: str, attempt: int) -> None:
        """On the loop, as ``attempt`` of ``task_id`` ends (or is abandoned): deliver
        what it reported last, now, before the event that ends it; forget it."""
        with self._lock:
            self._ended[task_id] = attempt
            found = self._latest.pop(task_id, None)
            pending = self._dirty.pop(task_id, _UNSET) is not _UNSET
        if found is not None and pending and found[1] == attempt:
            self._emit(*found)

    def _emit(self, task: Task, attempt: int, status: TaskStatus) -> None:
        try:
            self._bus.emit(Event.STATUS, task, self._run_id, attempt=attempt, status=status)
        except Exception:  # the bus logs what its handlers raise; this is a bug
            log.exception("task.status_not_delivered", task_id=task.task_id)


_BLANK: Final = TaskStatus()
