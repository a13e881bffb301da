"""Calling from both worlds: Luigi's API is synchronous, the engine's is async.

Luigi code calls ``target.exists()`` and ``task.complete()`` and expects a
bool; the engine awaits the same methods on its event loop. The rule the shim
follows everywhere:

* called by the engine on its event loop (or by your own ``async def``),
  these methods return an awaitable;
* called from synchronous code (a script, a sync ``run()`` in its worker
  thread, or Luigi code the engine calls on its loop, such as ``requires()``
  and ``output()``: see :func:`sync_caller`), they return the value.

Async operations of targets (S3, GCS) are reached from sync code through the
run's event loop when called in one of its worker threads, and through a
short-lived event loop of their own otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

__all__ = [
    "dual",
    "in_worker_thread",
    "on_event_loop",
    "ready",
    "run_async",
    "sync_caller",
    "wants_awaitable",
]

_T = TypeVar("_T")

try:  # where anyio keeps the loop token of its worker threads
    from anyio._core._eventloop import threadlocals as _threadlocals
except ImportError:  # pragma: no cover - a future anyio; fall back to trying
    _threadlocals = None  # type: ignore[assignment]


def on_event_loop() -> bool:
    """Whether this thread is running an event loop right now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_in_sync_code: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncflow_luigi_sync_code", default=False
)


def wants_awaitable() -> bool:
    """Whether a dual method should answer with an awaitable: on an event loop, and not
    inside Luigi code that the engine called synchronously there."""
    return on_event_loop() and not _in_sync_code.get()


def sync_caller(func: Callable[..., _T]) -> Callable[..., _T]:
    """Wrap Luigi code the engine calls on its event loop (``requires()``, ``output()``,
    event handlers): inside it, targets and tasks answer synchronously, as in Luigi."""
    if getattr(func, "__asyncflow_sync_caller__", False):
        return func

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> _T:
        token = _in_sync_code.set(True)
        try:
            return func(*args, **kwargs)
        finally:
            _in_sync_code.reset(token)

    call.__asyncflow_sync_caller__ = True  # type: ignore[attr-defined]
    return call


def in_worker_thread() -> bool:
    """Whether this is a worker thread of a running anyio event loop."""
    if _threadlocals is None:  # pragma: no cover
        return False
    return getattr(_threadlocals, "current_token", None) is not None


async def ready(value: _T) -> _T:
    """An awaitable of a value already known."""
    return value


def run_async(func: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
    """Run a coroutine function to its end from synchronous code.

    Synchronous Luigi code running on an event loop (see :func:`sync_caller`)
    blocks that loop while the call runs on a loop of its own in another
    thread, as Luigi itself would block.

    Raises:
        RuntimeError: called from a coroutine (await the method instead).
    """
    if on_event_loop():
        if not _in_sync_code.get():
            raise RuntimeError(
                f"{getattr(func, '__qualname__', func)}: a blocking call on the event loop; "
                "inside a coroutine, await the method instead"
            )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = functools.partial(anyio.run, functools.partial(func, *args), backend="asyncio")
            return pool.submit(call).result()
    if in_worker_thread():
        return anyio.from_thread.run(func, *args)
    return anyio.run(functools.partial(func, *args), backend="asyncio")


def dual(sync: Callable[..., _T], in_thread: bool = True) -> Callable[..., _T | Awaitable[_T]]:
    """Wrap a synchronous method so that, called on an event loop, it returns an awaitable.

    On the loop, the body runs in a worker thread (``in_thread``), where its own
    blocking calls (and the sync ``exists()`` of the targets it probes) are
    allowed; off the loop it simply runs.
    """
    if getattr(sync, "__asyncflow_dual__", False):
        return sync

    @functools.wraps(sync)
    def method(*args: Any, **kwargs: Any) -> Any:
        if not wants_awaitable():
            return sync(*args, **kwargs)
        if in_thread:
            return anyio.to_thread.run_sync(functools.partial(sync, *args, **kwargs))
        return ready(sync(*args, **kwargs))

    method.__asyncflow_dual__ = True  # type: ignore[attr-defined]
    method.__wrapped_sync__ = sync  # type: ignore[attr-defined]
    return method
