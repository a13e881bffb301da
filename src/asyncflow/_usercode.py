"""Calling a task's plain-``def`` ``requires()``, ``output()`` and ``complete()``
without blocking the event loop.

These are user code, and Luigi code does blocking work there all the time
(listing a bucket with boto3 in ``requires()``). On the loop, such a call
stalls every other task, the probes and the journal's heartbeat. In a worker
thread it costs 50-100 µs, more than the engine spends on a whole no-op task,
while most of these methods build a target from parameters in a microsecond.

So each method (one function, whatever class calls it) starts on trial: its
calls go to worker threads, one at a time until one is slow, then side by
side, at most as many at once as completeness probes. Once it has returned
quickly :data:`_TRIAL` times in a row, it is called on the loop, timed. A call
on the loop that takes longer than :data:`SLOW_CALL` sends the method back to
worker threads, for a trial twice as long as the last one (at most
:data:`_MAX_TRIAL` calls): a method that is slow now and then blocks the loop
for one call, then seldom again. A call during which a full garbage collection
ran proves nothing either way: such a pause, in a large graph, lasts longer
than any quick method. A pause of the machine caught in a quick method's call
(the process descheduled, its container throttled: up to ~100 ms) cannot be
told from a slow call: hence the cap, else each pause doubled the trial for
good, and on a busy machine a large graph's requires() ended up called in
threads for most of its tasks (a run of 1,000,000 tasks three times as long).
"""

from __future__ import annotations

import asyncio
import enum
import gc
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, Final, Literal, TypeVar

import anyio
import anyio.to_thread

from ._turns import drain

__all__ = ["LATER", "SLOW_CALL", "Later", "UserCode"]

_T = TypeVar("_T")

SLOW_CALL = 0.005
"""Seconds a call of user code may take on the event loop."""

_TRIAL_PATIENCE = 0.02
"""Seconds other calls wait for a trial call (which may wait for the GIL) to end."""

_TRIAL = 8
"""Quick calls in worker threads before a method is called on the loop."""

_MAX_TRIAL = 256
"""The longest trial: a call in a worker thread costs 50-100 µs, a pause of the
machine caught in a quick method's call at most this many of them."""


class Later(enum.Enum):
    """The type of :data:`LATER`."""

    LATER = enum.auto()


LATER: Final = Later.LATER
"""What :meth:`UserCode.now` returns for a call it did not make: it must be awaited."""


class _Method:
    """Where one method's calls go: a worker thread (on trial) or the loop."""

    __slots__ = ("inline", "pinned", "quick", "slow", "trial", "trying")

    def __init__(self) -> None:
        self.pinned = False  # the engine's own quick default: always inline, never timed
        self.inline = False
        self.slow = False  # its last call was slow
        self.trying: anyio.Event | None = None  # set when the trial call under way ends
        self.quick = 0  # quick calls in a row while on trial
        self.trial = _TRIAL

    def took(self, seconds: float) -> None:
        self.slow = seconds > SLOW_CALL
        if self.slow:
            if self.inline:  # it blocked the loop: back to threads, for a longer trial
                self.inline = False
                self.trial = min(2 * self.trial, _MAX_TRIAL)
            self.quick = 0
        elif not self.inline:
            self.quick += 1
            self.inline = self.quick >= self.trial


class UserCode:
    """Calls a run's plain-``def`` task methods: on the loop while they are quick,
    else in at most ``concurrency`` worker threads at once."""

    def __init__(self, concurrency: int, quick: Sequence[object] = ()) -> None:
        """``quick``: methods known to return at once (the engine's own defaults)."""
        self._concurrency = concurrency
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._methods: dict[object, _Method] = {}
        for method in quick:
            self._methods[method] = state = _Method()
            state.inline = state.pinned = True
        self._full_collections = _full_collections()

    def slow(self, method: object) -> bool:
        """Whether ``method``'s last call was slow (its calls then go to worker
        threads side by side: see :meth:`call`)."""
        state = self._methods.get(method)
        return state is not None and state.slow

    def now(self, method: object, fn: Callable[[Any], _T], arg: Any) -> _T | Literal[Later.LATER]:
        """``fn(arg)`` made here and now, as :meth:`call` would, when ``method``'s calls
        are made on the loop; else :data:`LATER`, and nothing was called.

        Raises:
            Exception: whatever ``fn`` raises.
        """
        state = self._methods.get(method)
        if state is None or not state.inline:
            return LATER
        if state.pinned:
            return fn(arg)
        return self._here(state, fn, arg)

    async def call(self, method: object, fn: Callable[[Any], _T], arg: Any) -> _T:
        """``fn(arg)``, which runs the user's ``method`` (a function: the key for its cost).

        Raises:
            Exception: whatever ``fn`` raises.
        """
        state = self._methods.get(method)
        if state is None:
            state = self._methods[method] = _Method()
        if state.pinned:
            # Never judged: on a busy machine any call can be caught by a pause of
            # several milliseconds, and a default sent to worker threads then would
            # cost every task of a large graph a thread's round trip.
            return fn(arg)
        if state.inline:
            return self._here(state, fn, arg)
        return await self._off_loop(state, fn, arg)

    def _here(self, state: _Method, fn: Callable[[Any], _T], arg: Any) -> _T:
        start = perf_counter()
        try:
            return fn(arg)
        finally:
            took = perf_counter() - start
            if took > SLOW_CALL:
                self._judge(state, took)

    async def _off_loop(self, state: _Method, fn: Callable[[Any], _T], arg: Any) -> _T:
        while state.trying is not None:
            # One trial call at a time, until the method proves slow: otherwise a
            # graph's first wave of probes would all pay for a thread before a
            # quick method is found quick.
            await state.trying.wait()
        if state.inline:
            return self._here(state, fn, arg)
        took = -1.0
        trying = patience = None
        if not state.slow:
            trying = state.trying = anyio.Event()
            # A trial call out for much longer than a quick one takes, even with
            # the trip to its thread, has proved the method slow already (it may
            # hang for long): the calls waiting for it go ahead, side by side.
            patience = asyncio.get_running_loop().call_later(
                _TRIAL_PATIENCE, _end_trial, state, trying, True
            )

        def timed() -> _T:
            nonlocal took
            start = perf_counter()
            try:
                return fn(arg)
            finally:
                took = perf_counter() - start

        try:
            # Abandoned on cancellation: a run being stopped does not wait for a
            # listing that hangs (the thread ends on its own; its answer is dropped).
            return await anyio.to_thread.run_sync(
                timed, limiter=self._limiter, abandon_on_cancel=True
            )
        finally:
            if took >= 0:
                self._judge(state, took)
            if trying is not None and patience is not None:
                patience.cancel()
                _end_trial(state, trying, False)

    async def map(
        self, method_of: Callable[[Any], object], fn: Callable[[Any], _T], items: Sequence[Any]
    ) -> list[_T | Exception]:
        """``fn(item)`` for each item, in order, an exception in place of its result.

        ``method_of(item)`` is the user's method that ``fn`` calls. At most
        ``concurrency`` calls are under way at once, as :meth:`call` makes them:
        a method on trial one call at a time, a slow one side by side, a quick
        one on the loop, in turns of it (a backfill's 200,000 ``output()`` calls).
        """
        results: list[Any] = [None] * len(items)

        def one(index: int) -> Awaitable[None] | None:
            item = items[index]
            try:
                found = self.now(method_of(item), fn, item)
            except Exception as exc:
                results[index] = exc
                return None
            if found is LATER:
                return later(index)
            results[index] = found
            return None

        async def later(index: int) -> None:
            item = items[index]
            try:
                results[index] = await self.call(method_of(item), fn, item)
            except Exception as exc:
                results[index] = exc

        await drain(deque(range(len(items))), one, self._concurrency)
        return results

    def _judge(self, state: _Method, took: float) -> None:
        if took > SLOW_CALL:
            full = _full_collections()
            if full != self._full_collections:  # maybe a pause of the collector's
                self._full_collections = full
                return
        state.took(took)


def _end_trial(state: _Method, trying: anyio.Event, slow: bool) -> None:
    if state.trying is trying:
        state.trying = None
        state.slow = state.slow or slow
    trying.set()


def _full_collections() -> int:
    """How many times the garbage collector has collected its oldest generation."""
    return int(gc.get_stats()[-1]["collections"])
