"""Typed task events and their dispatch.

The executor emits one stream of :class:`TaskEvent`. Two kinds of listener
receive it:

* handlers passed to a run (``run(..., handlers=[...])``): callables taking the
  :class:`TaskEvent`;
* class handlers registered with ``Task.event_handler(Event.X)``: called for
  tasks of that class and its subclasses with Luigi's arguments (see
  :func:`class_handler_args`).

A handler may be a plain function or a coroutine function. Coroutine handlers
run in the bus's own task group (:meth:`EventBus.delivering`), which the run
keeps open around everything that emits: they get every event a plain handler
gets, including those emitted before the first task starts and while a
fail-fast stop cancels the run's tasks. A handler that raises is logged and
never breaks the run. A handler marked with
:func:`handles` gets only the kinds it names, and the bus builds no event
that no handler wants. A handler marked with :func:`tallies` (a counter, such
as the progress display's) is called with the task and the duration only: no
event is built for it.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, cast

import anyio

from ._log import log as _log

if TYPE_CHECKING:
    from .task import Task

__all__ = ["Event", "EventHandler", "TaskEvent", "TaskStatus", "handles", "tallies"]


class Event(enum.StrEnum):
    """The kinds of task event."""

    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    TIMEOUT = "timeout"
    PROCESSING_TIME = "processing_time"
    DEPENDENCY_MISSING = "dependency_missing"
    CANCELLED = "cancelled"
    STATUS = "status"
    """A running attempt said how it is doing (``TaskEvent.status``): its body
    called ``set_status_message()``, ``set_progress_percentage()`` or
    ``set_tracking_url()``. Calls in quick succession come as one event."""


class TaskStatus(NamedTuple):
    """What a running attempt last said about itself (None: not said)."""

    message: str | None = None
    percentage: float | None = None
    """From 0 to 100."""
    tracking_url: str | None = None


class TaskEvent(NamedTuple):
    """One thing that happened to one task in one run (immutable; cheap to build)."""

    kind: Event
    task: Task
    run_id: str
    attempt: int = 1
    error: BaseException | None = None
    duration: float | None = None
    time: float = 0.0
    """Wall-clock seconds since the epoch."""
    where: str | None = None
    """Where the attempt's body ran when not in the run's own process: a Dask
    worker's address (``"dask"`` while it waited for one). Set on the events
    that end an attempt."""
    status: TaskStatus | None = None
    """The attempt's latest status, on STATUS events."""

    @property
    def task_id(self) -> str:
        return self.task.task_id


Spawn = Callable[[Callable[[], Coroutine[Any, Any, Any]]], object]
"""Starts a coroutine function in the run's task group (``TaskGroup.start_soon``)."""

EventHandler = Callable[[TaskEvent], object]
"""A run-level handler: called with every event of the run (see :func:`handles`)."""

Tally = Callable[["Task", float | None], object]
"""A handler marked with :func:`tallies`: called with the task and the duration."""


_KINDS: Final = "__asyncflow_event_kinds__"
_TALLY: Final = "__asyncflow_tally__"

_H = TypeVar("_H", bound=Callable[..., object])


def handles(*kinds: Event) -> Callable[[_H], _H]:
    """Mark a run-level handler as wanting only events of ``kinds``.

    ::

        @handles(Event.SUCCESS, Event.FAILURE)
        def on_done(event: TaskEvent) -> None: ...

    Works on functions and on methods (a bound method finds its function's mark).
    """
    wanted = frozenset(kinds)

    def mark(handler: _H) -> _H:
        setattr(handler, _KINDS, wanted)
        return handler

    return mark


def tallies(*kinds: Event) -> Callable[[_H], _H]:
    """Mark a run-level handler as a tally of ``kinds``: the bus calls it as
    ``handler(task, duration)`` (``duration`` None but for PROCESSING_TIME),
    building no :class:`TaskEvent` for it.

    For subscribers that only count what happens, for every task (the progress
    display): building an event per change costs a run of no-op tasks several
    percent. A tally must be a plain function; like any handler, one that raises
    is logged and never breaks the run.
    """
    mark_kinds = handles(*kinds)

    def mark(handler: _H) -> _H:
        setattr(mark_kinds(handler), _TALLY, True)
        return handler

    return mark


def class_handler_args(event: TaskEvent) -> tuple[Any, ...]:
    """The positional arguments a ``Task.event_handler`` callback receives.

    As in Luigi: ``(task)`` for START, SUCCESS, DEPENDENCY_MISSING and CANCELLED;
    ``(task, exception)`` for FAILURE, RETRY and TIMEOUT; ``(task, seconds)`` for
    PROCESSING_TIME; ``(task, status)`` for STATUS (asyncflow's own).
    """
    if event.kind is Event.PROCESSING_TIME:
        return (event.task, event.duration)
    if event.kind is Event.STATUS:
        return (event.task, event.status)
    if event.kind in (Event.FAILURE, Event.RETRY, Event.TIMEOUT):
        return (event.task, event.error)
    return (event.task,)


def _handlers_by_kind(cls: type) -> dict[Event, tuple[Callable[..., object], ...]]:
    """The class handlers of ``cls`` and its bases, base classes' first; {} if none."""
    found: dict[Event, list[Callable[..., object]]] = {}
    for klass in reversed(cls.__mro__):
        registry = klass.__dict__.get("_event_handlers")
        if registry:
            for kind, callbacks in registry.items():
                found.setdefault(kind, []).extend(callbacks)
    return {kind: tuple(callbacks) for kind, callbacks in found.items()}


class EventBus:
    """Delivers a run's events to its handlers and to class handlers.

    Async handlers run as tasks of the bus's own group, open for the duration
    of :meth:`delivering`: a slow handler never holds a worker, and stopping
    the run's tasks (fail-fast) does not cancel the handlers of its events.
    """

    def __init__(self, handlers: Iterable[EventHandler]) -> None:
        handlers = tuple(handlers)
        everything = frozenset(Event)
        wanted = {
            kind: [h for h in handlers if kind in getattr(h, _KINDS, everything)] for kind in Event
        }
        self._handlers = {
            kind: tuple(h for h in found if not getattr(h, _TALLY, False))
            for kind, found in wanted.items()
        }
        # Only the kinds that have tallies: without any, emit() tests an empty dict.
        self._tallies: dict[Event, tuple[Tally, ...]] = {
            kind: tallied
            for kind, found in wanted.items()
            if (tallied := tuple(cast(Tally, h) for h in found if getattr(h, _TALLY, False)))
        }
        self._spawn: Spawn | None = None
        # Async handlers' coroutines waiting for a deliverer (see _schedule()).
        self._awaiting: deque[tuple[Callable[..., object], Awaitable[object], TaskEvent]] = deque()
        self._delivering = 0
        self._class_cache: dict[type, dict[Event, tuple[Callable[..., object], ...]]] = {}

    @contextlib.asynccontextmanager
    async def delivering(self) -> AsyncIterator[None]:
        """Run async handlers while the block runs; on exit, wait for those still running.

        Events emitted outside such a block reach plain handlers only (there is
        no task group to run a coroutine in). An exception of the block
        propagates as itself, not inside an exception group.
        """
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                self._spawn = group.start_soon
                try:
                    yield
                except Exception as exc:
                    error = exc  # raised below, outside the group, so it is not wrapped
                finally:
                    self._spawn = None
        finally:
            # Left only if the deliverers were cancelled: never to be awaited.
            while self._awaiting:
                _close(self._awaiting.popleft()[1])
        if error is not None:
            raise error

    def emit(
        self,
        kind: Event,
        task: Task,
        run_id: str,
        attempt: int = 1,
        error: BaseException | None = None,
        duration: float | None = None,
        at: float | None = None,
        where: str | None = None,
        status: TaskStatus | None = None,
    ) -> None:
        """Deliver one event; cheap when nobody listens for its kind.

        ``at`` is when it happened (wall-clock seconds; default: now): an emitter
        that has just read the clock passes what it read. ``where``: where the
        attempt's body ran, when not in this process (a Dask worker). ``status``:
        the attempt's latest status (STATUS events).
        """
        if self._tallies and kind in self._tallies:
            for tally in self._tallies[kind]:
                try:
                    tally(task, duration)
                except Exception:
                    self.tally_failed(tally, kind, task, run_id, duration)
        handlers = self._handlers[kind]
        try:
            class_handlers = self._class_cache[type(task)][kind]
        except KeyError:
            class_handlers = self._cache_class(type(task))[kind]
        if not handlers and not class_handlers:
            return
        if at is None:
            at = _now()
        # tuple.__new__ is what TaskEvent() calls, minus a Python-level frame.
        event = _new_event(
            TaskEvent, (kind, task, run_id, attempt, error, duration, at, where, status)
        )
        for handler in handlers:
            # _call() inlined: this runs for every event of every task.
            try:
                outcome = handler(event)
            except Exception:
                _log_failure(handler, event)
                continue
            if outcome is not None and inspect.isawaitable(outcome):
                self._schedule(handler, outcome, event)
        if class_handlers:
            args = class_handler_args(event)
            for callback in class_handlers:
                self._call(callback, args, event)

    def heard(self, cls: type) -> frozenset[Event]:
        """The kinds of event of a task of class ``cls`` that some handler or class
        handler receives (tallies aside: see :meth:`tallies_of`).

        :meth:`emit` costs a few tenths of a microsecond even when nobody listens:
        an emitter of an event per task asks once per class, and for a kind not
        heard calls the kind's tallies itself (or nothing).
        """
        by_class = self._class_cache.get(cls) or self._cache_class(cls)
        return frozenset(kind for kind in Event if self._handlers[kind] or by_class[kind])

    def tallies_of(self, kind: Event) -> tuple[Tally, ...]:
        """The tallies of ``kind`` (see :func:`tallies`); a caller of them catches
        what they raise and passes it to :meth:`tally_failed`."""
        return self._tallies.get(kind, ())

    def tally_failed(
        self, tally: Tally, kind: Event, task: Task, run_id: str, duration: float | None
    ) -> None:
        """Log the exception being handled: ``tally`` raised it (the run goes on)."""
        _log_failure(tally, TaskEvent(kind, task, run_id, duration=duration))

    def _cache_class(self, cls: type) -> dict[Event, tuple[Callable[..., object], ...]]:
        """The class handlers of ``cls`` for every kind (``()`` for none), kept."""
        found = _handlers_by_kind(cls)
        by_kind = self._class_cache[cls] = {kind: found.get(kind, ()) for kind in Event}
        return by_kind

    def _call(
        self, handler: Callable[..., object], args: tuple[Any, ...], event: TaskEvent
    ) -> None:
        try:
            outcome = handler(*args)
            if outcome is None:
                return
        except Exception:
            _log_failure(handler, event)
            return
        if inspect.isawaitable(outcome):
            self._schedule(handler, outcome, event)

    def _schedule(
        self, handler: Callable[..., object], awaitable: Awaitable[object], event: TaskEvent
    ) -> None:
        if self._spawn is None:
            # Outside a run there is no task group to own the coroutine; close it
            # rather than leave a "never awaited" warning behind.
            _close(awaitable)
            return
        self._awaiting.append((handler, awaitable, event))
        if self._delivering < _DELIVERERS:
            # A task per coroutine cost ~25 µs an event (80 µs a task): a few
            # deliverers await them in turn, as many at once as there are deliverers.
            self._delivering += 1
            self._spawn(self._deliver)

    async def _deliver(self) -> None:
        awaiting = self._awaiting
        try:
            while awaiting:
                handler, awaitable, event = awaiting.popleft()
                try:
                    await awaitable
                except Exception:
                    _log_failure(handler, event)
        finally:
            self._delivering -= 1


_DELIVERERS: Final = 64
"""Async handlers' coroutines awaited at once, at most (started in the order of
their events)."""


def _close(awaitable: Awaitable[object]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


_new_event: Final = tuple.__new__
_now: Final = time.time


def _log_failure(handler: Callable[..., object], event: TaskEvent) -> None:
    """Log the exception being handled: ``handler`` raised it for ``event``."""
    _log.exception(
        "event handler failed", handler=_name(handler), kind=event.kind.value, task_id=event.task_id
    )


def _name(handler: Callable[..., object]) -> str:
    return getattr(handler, "__qualname__", repr(handler))
