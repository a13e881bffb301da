"""Every exception asyncflow raises, in one place.

The hierarchy::

    AsyncflowError
    ├── ParameterError        a parameter value is missing, unknown or unparseable
    │   └── ParameterTypeError    ... of a type the parameter does not take (a TypeError)
    ├── ConfigError           a configuration file, variable or run() argument is invalid
    ├── GraphError            the task graph cannot be built
    │   └── CycleError        requires() forms a cycle (the path is in the message)
    ├── ResourceError         a task asks for more of a resource than exists
    ├── PermanentError        raised by a task: fail now, do not retry
    ├── TaskError             a task failed; raised and recorded per task
    │   ├── TaskTimeout           an attempt ran longer than the task's timeout
    │   ├── MissingOutputError    run() returned without producing an output
    │   ├── UpstreamFailed        a requirement of the task failed or is missing
    │   └── TaskDefinitionError   requires(), output() or complete() raised, or
    │                             __init__ did not call Task.__init__
    ├── TargetError           a target could not be read, written or probed
    │   └── TargetNotFoundError   reading a target that does not exist (also FileNotFoundError)
    └── JournalError          the journal cannot be opened or written

Every message names the task id, and the path or URL where there is one.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence

__all__ = [
    "AsyncflowError",
    "ConfigError",
    "CycleError",
    "GraphError",
    "JournalError",
    "MissingOutputError",
    "ParameterError",
    "ParameterTypeError",
    "PermanentError",
    "ResourceError",
    "TargetError",
    "TargetNotFoundError",
    "TaskDefinitionError",
    "TaskError",
    "TaskTimeout",
    "UpstreamFailed",
]


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = 60
_SHORT_REPR.maxlevel = 3


def short_repr(value: object) -> str:
    """A short ``repr`` of a value for an error message, whatever the value.

    Long strings are cut in the middle (their length follows), nesting beyond
    three levels is elided, and a value whose ``repr`` fails (an int of more
    digits than ``str()`` allows, a broken ``__repr__``) is named by its type.
    """
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    if isinstance(value, str) and len(value) > _SHORT_REPR.maxstring:
        text += f" ({len(value):,} characters)"
    return text


class AsyncflowError(Exception):
    """Base class of every asyncflow error."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled as it is, not re-made through __init__ (whose arguments most
        # subclasses do not keep as ``args``): a failed run's result, or an error,
        # sent to another process comes back whole.
        return _unpickled, (type(self), self.args, self.__dict__)


def _unpickled(
    cls: type[AsyncflowError], args: tuple[object, ...], state: dict[str, object]
) -> AsyncflowError:
    error = cls.__new__(cls, *args)
    error.args = args  # OSError's __new__ (TaskTimeout is a TimeoutError) leaves them to __init__
    error.__dict__.update(state)
    return error


class ParameterError(AsyncflowError, ValueError):
    """A task parameter is missing, unknown, or has a value that cannot be used."""

    problem: str | None = None
    """When a parameter's own method raised it: what is wrong with the value,
    without the parameter's name (for a message naming the task instead)."""


class ParameterTypeError(ParameterError, TypeError):
    """A parameter was given a value of a type it does not take (``5`` for a date).

    Also a ``TypeError``, as the same mistake is in plain Python.
    """


class ConfigError(AsyncflowError, ValueError):
    """Configuration (file, environment or run() arguments) is invalid."""


class GraphError(AsyncflowError):
    """The task graph cannot be built."""


class CycleError(GraphError):
    """The requirements form a cycle.

    ``cycle`` holds the task ids along the cycle, the first repeated at the end.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


class ResourceError(AsyncflowError, ValueError):
    """A task requests more of a resource than the run has."""


class TaskError(AsyncflowError):
    """A task failed. ``task_id`` names it."""

    def __init__(self, message: str, *, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(message)


class PermanentError(AsyncflowError):
    """Raise this from ``run()`` for a failure that retrying cannot fix (bad data, say).

    The task fails at once, whatever its ``retry_count``.
    """


class TaskTimeout(TaskError, TimeoutError):
    """An attempt ran longer than the task's ``timeout``."""

    def __init__(self, task_id: str, timeout: float, attempt: int) -> None:
        self.timeout = timeout
        self.attempt = attempt
        super().__init__(
            f"{task_id}: attempt {attempt} timed out after {timeout:g} s", task_id=task_id
        )


class MissingOutputError(TaskError):
    """``run()`` returned without producing every output."""

    def __init__(self, task_id: str, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        names = ", ".join(self.missing)
        super().__init__(
            f"{task_id}: run() returned but did not produce its output(s): {names}",
            task_id=task_id,
        )


class UpstreamFailed(TaskError):
    """A requirement failed, was cancelled, or is an absent external input.

    ``upstream`` is the requirement's task id; ``root`` the task whose own
    failure started it all (``upstream`` itself when the requirement failed on
    its own) and ``root_cause`` one line saying how, which the message quotes:
    the levels of a deep chain name the root cause, not each other's errors.
    """

    def __init__(
        self,
        task_id: str,
        upstream: str,
        why: str,
        *,
        root: str | None = None,
        root_cause: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.root = upstream if root is None else root
        self.root_cause = root_cause
        message = f"{task_id}: not run because {upstream} {why}"
        if root_cause is not None and self.root != upstream:
            message += f" (root cause: {root_cause})"
        super().__init__(message, task_id=task_id)


class TaskDefinitionError(TaskError):
    """``requires()``, ``output()`` or ``complete()`` of a task raised, or the
    class is unusable (its ``__init__`` did not call ``Task.__init__``).

    ``error`` is what the method raised, or the problem as text.
    """

    def __init__(self, task_id: str, method: str, error: BaseException | str) -> None:
        self.method = method
        if isinstance(error, str):
            what = error
        else:
            what = f"{method}() raised {type(error).__name__}: {error}"
            self.__cause__ = error  # the error the method raised, wherever this is raised from
        super().__init__(f"{task_id}: {what}", task_id=task_id)


class TargetError(AsyncflowError):
    """A target could not be probed, read or written. The message names its path or URL."""


class TargetNotFoundError(TargetError, FileNotFoundError):
    """A target was opened for reading but does not exist."""


class JournalError(AsyncflowError):
    """The journal cannot be opened, migrated or written. The message names its path."""
