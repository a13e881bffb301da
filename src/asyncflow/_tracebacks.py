"""Tracebacks as users read them: from their own code on.

An error raised in a task's body reaches the engine through its own frames
(the attempt, the call of the body) and, for a plain ``def`` body, through
anyio's and asyncio's hand-over to a worker thread: up to eight frames of
machinery before the line the user wrote. :func:`format_error` leaves out the
machinery's frames *before* the first frame of other code, in the error and in
every error chained to it, the way the import system leaves out its own frames.
Frames after that one are kept whatever their module (a target's ``open()``
the body called, asyncio's ``sleep`` it was waiting in), and an error whose
frames are all the machinery's (one the engine raised) keeps them all.

Leaving them out also makes the text cheap: Python 3.11 looks up each frame's
column positions by walking its code's position table, which took ~0.2 ms an
error for the engine's frames alone, once per failed attempt journaled.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from types import TracebackType

__all__ = ["format_error"]

_MACHINERY = frozenset({"asyncflow", "anyio", "asyncio", "concurrent", "contextlib", "threading"})
"""Top-level packages whose frames lead to the user's code."""


def format_error(error: BaseException) -> str:
    """``error`` formatted as :func:`traceback.format_exception` does, from the
    first frame of user code on (see the module's docstring)."""
    # traceback formats an error's chain with each error's own __traceback__, and
    # takes no frames to skip: each is set to where its user code starts while
    # the text is made, then given back. The errors are not changed.
    swapped: list[tuple[BaseException, TracebackType]] = []
    try:
        for exc in _chained(error):
            tb = exc.__traceback__
            if tb is not None:
                start = _user_code(tb)
                if start is not tb:
                    swapped.append((exc, tb))
                    exc.__traceback__ = start
        return "".join(traceback.format_exception(error))
    finally:
        for exc, tb in swapped:
            exc.__traceback__ = tb


def _user_code(tb: TracebackType) -> TracebackType:
    """The first entry of ``tb`` whose frame is not the machinery's, else ``tb``."""
    entry: TracebackType | None = tb
    while entry is not None:
        module = entry.tb_frame.f_globals.get("__name__")
        if not isinstance(module, str) or module.partition(".")[0] not in _MACHINERY:
            return entry
        entry = entry.tb_next
    return tb


def _chained(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every error the traceback module formats with it."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        exc = stack.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        if exc.__cause__ is not None:
            stack.append(exc.__cause__)
        if exc.__context__ is not None:
            stack.append(exc.__context__)
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
