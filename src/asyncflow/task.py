"""Tasks: identity, parameters, and the requires/output/run/complete protocol.

A task is a class with parameters as class attributes::

    class Transform(asyncflow.Task):
        date = asyncflow.DateParameter()

        def requires(self):
            return Extract(self.date)

        def output(self):
            return asyncflow.LocalTarget(f"data/{self.date}.parquet")

        async def run(self): ...

Instances with equal significant parameters are equal and share a
``task_id``: ``<family>_<readable summary>_<16 hex digits of SHA-256>`` over the
canonical JSON of the significant parameters.

Everything that shows a task (``repr``, the id's summary, the journal's copy of
its parameters, and so every log, summary and graph render built on them) goes
through :meth:`Task.public_params` and its kin: a ``HIDDEN`` parameter's value
is masked there, a ``PRIVATE`` one left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import difflib
import functools
import hashlib
import inspect
import json
import operator
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

import anyio.from_thread

from . import _redact, _status
from ._redact import MASK
from .errors import AsyncflowError, ConfigError, ParameterError, TaskDefinitionError
from .events import Event
from .parameters import (
    MISSING,
    BoolParameter,
    DateHourParameter,
    DateParameter,
    EnumParameter,
    EnvVar,
    FloatParameter,
    IntParameter,
    Parameter,
    ParameterVisibility,
    TimeDeltaParameter,
)
from .resources import AMOUNT, is_amount, running_release

if TYPE_CHECKING:
    pass

__all__ = [
    "ExternalTask",
    "Task",
    "WrapperTask",
    "flatten",
    "map_structure",
    "secret_texts",
    "secrets_known",
]

_C = TypeVar("_C", bound=Callable[..., object])
_V = TypeVar("_V")

_SUMMARY_PARAMS = 3
_SUMMARY_WIDTH = 16
_HASH_HEX = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
# Parameter classes whose to_json() returns the normalized value itself.
_PLAIN_JSON = frozenset({Parameter, IntParameter, BoolParameter})
# Parameters whose serialize() of a value other than None is str() of it.
_TEXT_IS_STR = frozenset({Parameter, IntParameter})
# Parameter classes whose normalized values are equal exactly when their JSON is.
_SCALAR_PARAMS = frozenset(
    {
        Parameter,
        IntParameter,
        FloatParameter,
        BoolParameter,
        DateParameter,
        DateHourParameter,
        TimeDeltaParameter,
        EnumParameter,
    }
)


def _values_getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function from a task's values to those of ``names``, as a tuple (in C for
    two or more names: every task built pays for it)."""
    if len(names) >= 2:
        return operator.itemgetter(*names)
    if names:
        name = names[0]
        return lambda values: (values[name],)
    return _no_values


def _no_values(values: dict[str, Any]) -> tuple[Any, ...]:
    return ()


class _cached_in_instance:
    """A property computed once, then stored in the instance ``__dict__``.

    It defines only ``__get__``, so once the value is stored, reading the
    attribute is a plain instance-dict lookup: the engine reads task ids many
    times per task.
    """

    def __init__(self, func: Callable[[Any], str]) -> None:
        self._func = func
        self._name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> _cached_in_instance: ...
    @overload
    def __get__(self, instance: object, owner: type) -> str: ...
    def __get__(self, instance: object | None, owner: type) -> str | _cached_in_instance:
        if instance is None:
            return self
        value: str = self._func(instance)
        instance.__dict__[self._name] = value
        return value


class _SetByInit(Generic[_V]):
    """Stands in the class for an attribute ``Task.__init__`` stores in each instance.

    The instance's own value hides it (it defines only ``__get__``), so a task
    built properly never reaches it and pays nothing. It is reached only on a
    task that ``Task.__init__`` never saw (an ``__init__`` that skipped it, or
    ``Task.__new__`` alone): there, instead of an ``AttributeError`` from deep
    inside the engine, the error names the class.
    """

    @overload
    def __get__(self, instance: None, owner: type) -> _SetByInit[_V]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> _V: ...
    def __get__(self, instance: object | None, owner: type) -> _V | _SetByInit[_V]:
        if instance is None:
            return self
        raise _skipped_init(type(instance))


def _skipped_init(cls: type, culprit: type | None = None) -> TaskDefinitionError:
    """The error for a task of class ``cls`` that ``Task.__init__`` never set up."""
    return TaskDefinitionError(
        getattr(cls, "task_family", cls.__qualname__), "__init__", _skipped_init_text(cls, culprit)
    )


def _skipped_init_text(cls: type, culprit: type | None = None) -> str:
    if culprit is None:  # the first class whose own __init__ ran
        culprit = next((k for k in cls.__mro__ if "__init__" in vars(k)), cls)
    return (
        f"{culprit.__qualname__}.__init__ did not call super().__init__(), so the task "
        "has no parameters and no identity; call super().__init__(*args, **kwargs) in it"
    )


def _checking_init(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    """``cls``'s own ``__init__``, followed by a check that it called ``Task.__init__``.

    Only classes that define ``__init__`` get it (few do): the mistake is then
    reported where the task is built, naming the class.
    """

    @functools.wraps(init)
    def __init__(self: Task, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if "param_kwargs" not in self.__dict__:
            raise _skipped_init(type(self), cls)

    __init__._checks_task_init = True  # type: ignore[attr-defined]
    return __init__


class RunKind:
    """How a task's ``run()`` is called."""

    SYNC = "sync"  # plain def: in a worker thread (a generator, too: step by step)
    ASYNC = "async"  # async def: on the loop
    GENERATOR = "generator"  # async generator: may yield dynamic requirements


def _run_kind(run: object) -> str:
    if inspect.isasyncgenfunction(run):
        return RunKind.GENERATOR
    if inspect.iscoroutinefunction(run):
        return RunKind.ASYNC
    return RunKind.SYNC


def _is_async(method: object) -> bool:
    return inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)


MAX_RETRY_BACKOFF = 1000
"""The largest ``retry_backoff``: x1000 per attempt; beyond it, every retry but the
first would wait ``retry_max_delay`` anyway."""


def _check_class_attributes(cls: type[Task]) -> None:
    """Reject nonsensical class attributes when the class is defined, not mid-run."""
    name = cls.__qualname__
    resources = cls.resources
    if not isinstance(resources, Mapping):
        raise TypeError(f"{name}.resources must be a dict of name -> amount, got {resources!r}")
    for key, amount in resources.items():
        if not isinstance(key, str) or not is_amount(amount):
            raise TypeError(f"{name}.resources[{key!r}] must be {AMOUNT}, got {amount!r}")
    for attr, allow_none in (("max_running", True), ("retry_count", False), ("priority", False)):
        value = getattr(cls, attr)
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}.{attr} must be an int, got {value!r}")
        if attr == "max_running" and value < 1:
            raise TypeError(f"{name}.max_running must be at least 1 (or None), got {value!r}")
        if attr == "retry_count" and value < 0:
            raise TypeError(f"{name}.retry_count must be >= 0, got {value!r}")
    retry_on = cls.retry_on
    if not isinstance(retry_on, tuple) or not all(
        isinstance(k, type) and issubclass(k, BaseException) for k in retry_on
    ):
        raise TypeError(f"{name}.retry_on must be a tuple of exception classes, got {retry_on!r}")
    if not 1 <= cls.retry_backoff <= MAX_RETRY_BACKOFF:  # NaN too: a delay of NaN seconds
        raise TypeError(
            f"{name}.retry_backoff must be >= 1 (and at most {MAX_RETRY_BACKOFF}), "
            f"got {cls.retry_backoff!r}"
        )
    if not 0 <= cls.retry_jitter <= 1:
        raise TypeError(f"{name}.retry_jitter must be between 0 and 1, got {cls.retry_jitter!r}")
    for attr in ("retry_delay", "retry_max_delay", "timeout"):
        value = getattr(cls, attr)
        if value is None and attr == "timeout":
            continue
        if not is_amount(value):
            raise TypeError(f"{name}.{attr} must be {AMOUNT}, in seconds, got {value!r}")
        if attr == "timeout" and value == 0:
            raise TypeError(f"{name}.timeout must be positive (or None), got {value!r}")


class Task:
    """Base class of every task.

    Subclasses declare parameters as class attributes and may define
    ``requires()``, ``output()``, ``run()`` and ``complete()``.

    Class attributes (all optional):

    * ``resources`` - amounts of named resources held while running.
    * ``max_running`` - at most this many tasks of the family at once.
    * ``priority`` - higher starts first among ready tasks.
    * ``retry_count`` / ``retry_delay`` - extra attempts and the first delay;
      ``retry_backoff`` (x2), ``retry_max_delay`` (300 s), ``retry_jitter``
      (a fraction) and ``retry_on`` (exception types; default ``Exception``).
    * ``timeout`` - seconds an attempt may take.
    * ``task_namespace`` - prefixed to the family (``"ns.Family"``).
    """

    task_namespace: ClassVar[str | None] = None
    task_family: ClassVar[str] = "Task"
    resources: ClassVar[Mapping[str, float]] = {}
    max_running: ClassVar[int | None] = None
    priority: ClassVar[int] = 0
    retry_count: ClassVar[int] = 0
    retry_delay: ClassVar[float] = 0.0
    retry_backoff: ClassVar[float] = 2.0
    retry_max_delay: ClassVar[float] = 300.0
    retry_jitter: ClassVar[float] = 0.0
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    timeout: ClassVar[float | None] = None

    _params: ClassVar[dict[str, Parameter[Any]]] = {}
    _significant: ClassVar[tuple[str, ...]] = ()
    _json_keys: ClassVar[tuple[tuple[str, str, bool], ...]] = ()
    _text_keys: ClassVar[tuple[tuple[str, str, Callable[[Any], str] | None], ...]] = ()
    _summary_names: ClassVar[tuple[str, ...]] = ()
    _secret_names: ClassVar[tuple[str, ...]] = ()
    _run_kind: ClassVar[str] = RunKind.SYNC
    _default_complete: ClassVar[bool] = True
    # requires() / complete() are plain functions: user code the engine keeps off the loop.
    _sync_requires: ClassVar[bool] = True
    _sync_complete: ClassVar[bool] = False
    _is_external: ClassVar[bool] = False
    _has_hooks: ClassVar[bool] = False
    _scalar_identity: ClassVar[bool] = True
    # Read through the class (type(self)._key_values): a plain function, not a method.
    _key_values: ClassVar[Callable[[dict[str, Any]], tuple[Any, ...]]] = _no_values
    _settles_by_requirements: ClassVar[bool] = False

    # Both are set in each instance by __init__; see _SetByInit.
    param_kwargs: _SetByInit[dict[str, Any]] = _SetByInit()
    _key: _SetByInit[Any] = _SetByInit()  # identity key for deduplication: see _scalar_identity

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, Parameter[Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Parameter):
                    params[attr] = value
                elif attr in params:
                    del params[attr]  # a subclass replaced the parameter with a plain value
        for name in params:
            if name in _RESERVED or name.startswith("_"):
                why = (
                    "names starting with '_' are the engine's"
                    if name.startswith("_")
                    else f"it would hide Task.{name}"
                )
                raise TypeError(
                    f"{cls.__qualname__}: a parameter cannot be named {name!r}: {why}; rename it"
                )
        for name, param in params.items():
            if param.visibility is ParameterVisibility.PRIVATE and param.significant:
                raise ParameterError(
                    f"{cls.__qualname__}.{name}: a PRIVATE parameter is never part of the "
                    "task's identity, so it cannot be significant=True (leave significant "
                    "out, or make it HIDDEN: part of the identity, shown nowhere)"
                )
        cls._params = params
        cls._significant = tuple(n for n, p in params.items() if p.significant)
        cls._key_values = _values_getter(cls._significant)
        cls._summary_names = tuple(n for n in cls._significant if params[n].is_public)[
            :_SUMMARY_PARAMS
        ]
        cls._secret_names = tuple(n for n, p in params.items() if not p.is_public)
        cls._scalar_identity = all(type(p) in _SCALAR_PARAMS for p in params.values())
        cls._json_keys = tuple(
            (_encode_str(n) + ":", n, type(params[n]) in _PLAIN_JSON)
            for n in sorted(cls._significant)
        )
        cls._text_keys = tuple(
            _text_key(n, p)
            for n, p in params.items()
            if p.visibility is not ParameterVisibility.PRIVATE
        )
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checks_task_init", False):
            setattr(cls, "__init__", _checking_init(cls, init))  # noqa: B010 (mypy: a method)
        if "task_family" not in cls.__dict__:
            ns = cls.task_namespace
            cls.task_family = f"{ns}.{cls.__name__}" if ns else cls.__name__
        cls._run_kind = _run_kind(cls.run)
        cls._default_complete = cls.complete is Task.complete
        cls._sync_requires = not _is_async(cls.requires)
        cls._sync_complete = not _is_async(cls.complete)
        cls._has_hooks = cls.on_success is not Task.on_success or (
            cls.on_failure is not Task.on_failure
        )
        _check_class_attributes(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        params = self._params
        given = self._given(args, kwargs) if args else kwargs
        values: dict[str, Any] = {}
        used = 0
        for name, param in params.items():
            value = given.get(name, _ABSENT)
            if value is not _ABSENT:
                used += 1
                try:
                    values[name] = param.normalize(value)
                except (TypeError, ValueError) as exc:
                    raise ParameterError(
                        f"{self.task_family}: parameter {name!r}: {param.problem(exc)}"
                    ) from None
            elif param.default is not MISSING:
                default = param.default
                if type(default) is EnvVar:
                    default = self._default_from_env(name, param, default)
                values[name] = default
            else:
                raise ParameterError(f"{self.task_family}: missing required parameter {name!r}")
        if used != len(given):
            unknown = next(name for name in given if name not in params)
            raise ParameterError(_unknown_parameter(self.task_family, unknown, params))
        state = self.__dict__
        state.update(values)
        state["param_kwargs"] = values
        if self._secret_names and _redact.active():
            # Built inside a run (requires(), a yielding body): the run's log
            # redaction learns its secrets.
            _redact.remember(self._secret_texts())
        if self._scalar_identity:
            # Equal values <=> equal canonical JSON for these parameter types, so the
            # id (JSON + SHA-256) can wait until asked: a graph dedupes on the values.
            cls = type(self)
            state["_key"] = (cls, *cls._key_values(values))
        else:
            state["task_id"] = task_id = self._make_task_id(values)
            state["_key"] = task_id

    @_cached_in_instance
    def task_id(self) -> str:
        """``<family>_<summary>_<16 hex digits>``; stable across processes."""
        return self._make_task_id(self.param_kwargs)

    def _default_from_env(self, name: str, param: Parameter[Any], default: EnvVar) -> Any:
        try:
            return param.from_env(default)
        except (ConfigError, ParameterError) as exc:
            raise type(exc)(f"{self.task_family}: parameter {name!r}: {exc}") from None

    def _secret_texts(self) -> list[str]:
        """The text forms of the hidden and private values (for the log redaction)."""
        values = self.param_kwargs
        texts: list[str] = []
        for name in self._secret_names:
            value = values[name]
            if value is not None:
                texts.extend(_redact.texts_of(value, self._params[name].serialize(value)))
        return texts

    def _given(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword values by parameter name."""
        params = self._params
        if len(args) > len(params):
            names = ", ".join(params) or "none"
            raise ParameterError(
                f"{self.task_family}() takes {len(params)} positional parameter(s) ({names}) "
                f"but {len(args)} were given"
            )
        given = dict(zip(params, args, strict=False))
        for name, value in kwargs.items():
            if name in given:
                raise ParameterError(f"{self.task_family}: parameter {name!r} given twice")
            given[name] = value
        return given

    def _make_task_id(self, values: dict[str, Any]) -> str:
        params = self._params
        try:
            # Canonical JSON of the significant parameters, keys sorted (see _canonical_params).
            canonical = (
                "{"
                + ",".join(
                    [
                        key + _json_text(values[n] if plain else params[n].to_json(values[n]))
                        for key, n, plain in self._json_keys
                    ]
                )
                + "}"
            )
            data = canonical.encode()
        except (TypeError, ValueError, RecursionError) as exc:
            # Normalized values always encode; a custom parameter's may not.
            raise ParameterError(
                f"{self.task_family}: parameters are not JSON-serialisable: {exc}"
            ) from None
        digest = hashlib.sha256(data).hexdigest()[:_HASH_HEX]
        parts = [self.task_family]
        for name in self._summary_names:
            text = _summary_text(params[name], values[name])
            if text:
                parts.append(text)
        parts.append(digest)
        return "_".join(parts)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._params:
            raise AttributeError(
                f"{self.task_family}: parameter {name!r} is read-only (it is part of the task's "
                "identity); build a new task instead"
            )
        object.__setattr__(self, name, value)

    # identity ----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return type(self) is type(other) and self.task_id == other.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def __repr__(self) -> str:
        """``Family(name=value, ...)`` of the significant parameters, hidden ones as ``***``."""
        if "param_kwargs" not in self.__dict__:  # a repr must not raise: say what is wrong
            return f"<{type(self).__qualname__}, not set up: {_skipped_init_text(type(self))}>"
        params = self._params
        hidden = self._secret_names
        shown = ", ".join(
            f"{n}={MASK if n in hidden else 'None' if v is None else params[n].serialize(v)}"
            for n, v in self.param_kwargs.items()
            if params[n].significant
        )
        return f"{self.task_family}({shown})"

    def to_str_params(self) -> dict[str, str]:
        """Every parameter's real value in its text form, hidden and private ones too.

        For building the same task elsewhere (``from_str_params``); never for
        showing or storing it: that is :meth:`public_params`.
        """
        params = self._params
        return {
            n: "" if v is None else params[n].serialize(v) for n, v in self.param_kwargs.items()
        }

    def public_params(self) -> dict[str, str]:
        """The parameters as people and the journal may see them, as text.

        Public values in their text form, ``HIDDEN`` ones as ``***``;
        ``PRIVATE`` ones are left out.
        """
        params = self._params
        return {
            n: params[n].shown(v)
            for n, v in self.param_kwargs.items()
            if params[n].visibility is not ParameterVisibility.PRIVATE
        }

    def _params_json(self) -> str:
        """``json.dumps(self.public_params(), ensure_ascii=False)``, compact, in one
        pass: what the journal keeps of the parameters."""
        # Journaled for every task: a plain loop (no comprehension frame) and, for
        # text and integer parameters, str() rather than two calls through serialize().
        values = self.param_kwargs
        parts = []
        for key, name, text in self._text_keys:
            if text is None:  # a hidden parameter: the key holds the mask too
                parts.append(key)
                continue
            value = values[name]
            parts.append(key + _encode_str("" if value is None else text(value)))
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_str_params(cls, texts: Mapping[str, str]) -> Task:
        """Build a task from text values (as on a command line).

        Raises:
            ParameterError: a name is unknown or a text does not parse.
        """
        values: dict[str, Any] = {}
        for name, text in texts.items():
            param = cls._params.get(name)
            if param is None:
                raise ParameterError(_unknown_parameter(cls.task_family, name, cls._params))
            try:
                values[name] = param.parse(text)
            except (TypeError, ValueError) as exc:
                raise ParameterError(
                    f"{cls.task_family}: parameter {name!r}: {param.problem(exc)}"
                ) from None
        return cls(**values)

    @classmethod
    def get_params(cls) -> dict[str, Parameter[Any]]:
        """The task's parameters by name, in declaration order."""
        return dict(cls._params)

    # the protocol --------------------------------------------------------------

    def requires(self) -> Any:
        """The tasks this one needs: a task, a list/tuple/dict of tasks, or None.

        May be ``async def`` to discover requirements at run time.
        """
        return None

    def output(self) -> Any:
        """What this task produces: a Target, a list/dict of targets, or None."""
        return None

    def run(self) -> Any:
        """Do the work. ``async def`` runs on the loop; a plain ``def`` in a worker thread.

        Either may be a generator that yields tasks (or a list/dict of tasks) found
        at run time: they are scheduled, and the body is resumed with their
        outputs, in the same shape. While it waits it holds no worker.
        """
        return None

    async def complete(self) -> bool:
        """True when the task need not run. Default: every output exists.

        A task without outputs is never complete by this method (the engine
        may still find it complete in the run journal).
        """
        outputs = flatten(self.output())
        if not outputs:
            return False
        for target in outputs:
            if not await target.exists():
                return False
        return True

    def input(self) -> Any:
        """The outputs of ``requires()``, in the same structure."""
        resolved = self.__dict__.get("_resolved_requires", _UNRESOLVED)
        if resolved is _UNRESOLVED:
            if inspect.iscoroutinefunction(type(self).requires):
                raise AsyncflowError(
                    f"{self.task_id}: input() of a task with an async requires() is only "
                    "known once the engine has resolved its requirements (inside run())"
                )
            resolved = self.requires()
        return map_structure(lambda t: t.output(), resolved)

    def _set_resolved_requires(self, requirements: Any) -> None:
        self.__dict__["_resolved_requires"] = requirements

    def on_success(self) -> Any:
        """Called once the task succeeded (after its last attempt). May be ``async def``."""
        return None

    def on_failure(self, exception: BaseException) -> Any:
        """Called once the task failed for good (after its retries). May be ``async def``."""
        return None

    def decrease_running_resources(self, amounts: Mapping[str, float]) -> None:
        """Give back part of this task's resources while it runs (as in Luigi).

        For example, after a memory-heavy phase: ``self.decrease_running_resources(
        {"memory_gb": 6})``. Works from ``async def run()`` and from a sync
        ``run()`` in its worker thread.

        Raises:
            AsyncflowError: called outside this task's ``run()``.
        """
        release = running_release.get()
        if release is None:
            raise AsyncflowError(
                f"{self.task_id}: decrease_running_resources() works only inside run()"
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a sync body in its worker thread
            anyio.from_thread.run_sync(release, dict(amounts))
        else:
            release(dict(amounts))

    # status ---------------------------------------------------------------------
    # Luigi's names. Shown beside the running task by the progress display, kept
    # with the attempt in the journal (the status pages and the JSON API show
    # them), and sent to handlers as Event.STATUS.

    def set_status_message(self, message: str | None) -> None:
        """Say what this task is doing now, from its ``run()`` (None clears it).

        Works from ``async def run()`` and from a sync ``run()`` in its worker
        thread, and is cheap enough to call for every row: the latest value is
        what is shown and journaled. A message longer than 2,000 characters is
        cut. Outside its ``run()`` nothing is recorded.
        """
        _status.report(self, message=_status.checked_message(self.task_id, message))

    def set_progress_percentage(self, percentage: float) -> None:
        """Say how far this task's ``run()`` has got, from 0 to 100.

        As :meth:`set_status_message`: from either kind of ``run()``, latest
        value kept.

        Raises:
            TypeError: ``percentage`` is not a number.
            ValueError: ``percentage`` is not from 0 to 100 (the message names the task).
        """
        _status.report(self, percentage=_status.checked_percentage(self.task_id, percentage))

    def set_tracking_url(self, url: str | None) -> None:
        """Say where to follow this task's ``run()`` (a job's page elsewhere).

        The status pages link to it when it is an ``http(s)`` URL. None clears it.

        Raises:
            TypeError: ``url`` is not a string.
            ValueError: ``url`` is longer than 2,000 characters.
        """
        _status.report(self, tracking_url=_status.checked_url(self.task_id, url))

    # events ---------------------------------------------------------------------

    @classmethod
    def event_handler(cls, event: Event) -> Callable[[_C], _C]:
        """Register a callback for ``event`` on this class and its subclasses.

        ::

            @Transform.event_handler(asyncflow.Event.FAILURE)
            def alert(task, exception): ...
        """
        if not isinstance(event, Event):
            raise TypeError(f"event_handler() takes an asyncflow.Event, got {event!r}")

        def register(callback: _C) -> _C:
            registry = cls.__dict__.get("_event_handlers")
            if registry is None:
                registry = {}
                type.__setattr__(cls, "_event_handlers", registry)
            registry.setdefault(event, []).append(callback)
            return callback

        return register


class WrapperTask(Task):
    """A task that only groups requirements: complete when all of them are."""

    _settles_by_requirements = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The graph settles a wrapper from its requirements' states, unless it
        # defines its own complete().
        cls._settles_by_requirements = cls.complete is WrapperTask.complete

    async def complete(self) -> bool:
        for task in flatten(await _resolve(self.requires())):
            if not await task.complete():
                return False
        return True


class ExternalTask(Task):
    """An input produced outside asyncflow. It never runs; a missing output is reported."""

    _is_external = True


_UNRESOLVED = object()
_ABSENT = object()


def _is_resolved(requirements: Any) -> bool:
    """Whether what ``requires()`` returned needs no resolving (see :func:`_resolve`)."""
    kind = type(requirements)
    return (
        requirements is None
        or kind is list
        or kind is tuple
        or kind is dict
        or isinstance(requirements, Task)
    )


async def _resolve(requirements: Any) -> Any:
    if _is_resolved(requirements):
        return requirements
    if inspect.isawaitable(requirements):
        requirements = await requirements
    if inspect.isasyncgen(requirements):
        requirements = [item async for item in requirements]
    elif inspect.isgenerator(requirements):
        requirements = list(requirements)
    return requirements


async def resolve_requires(task: Task) -> Any:
    """Call ``task.requires()`` (sync, async, or a generator) and return the structure."""
    return await _resolve(task.requires())


def _text_key(name: str, param: Parameter[Any]) -> tuple[str, str, Callable[[Any], str] | None]:
    """How ``_params_json`` writes one parameter: the key, and the text function
    (None for a hidden parameter, whose key then carries the mask)."""
    key = _encode_str(name) + ":"
    if not param.is_public:
        return key + _encode_str(MASK), name, None
    return key, name, str if type(param) in _TEXT_IS_STR else param.serialize


@contextlib.contextmanager
def secrets_known(tasks: Iterable[Task]) -> Iterator[None]:
    """Within the block (a run), the hidden and private values of ``tasks``, and of
    every task built meanwhile, are masked in the log records asyncflow's logging
    set-up writes (see :mod:`asyncflow._redact`)."""
    with _redact.scope(secret_texts(tasks)):
        yield


def secret_texts(tasks: Iterable[Task]) -> Iterator[str]:
    """The text forms of the hidden and private values of ``tasks``."""
    for task in tasks:
        if task._secret_names:
            yield from task._secret_texts()


def sync_requires(task: Task) -> Any:
    """Call a plain ``def requires()`` and run it to the end if it is a generator
    (in a worker thread: both are user code that may block)."""
    requirements = task.requires()
    if type(requirements) is types.GeneratorType:  # (inspect.isgenerator(), without a call)
        requirements = list(requirements)
    return requirements


def _summary_text(param: Parameter[Any], value: Any) -> str:
    """A short, file-name-safe rendering of one value for the readable part of an id."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)  # always safe; skips serialize() and the regex
    if kind is datetime.date:
        return str(value.isoformat())
    if value is None:
        return ""
    text = param.serialize(value)
    if _UNSAFE.search(text):
        text = _UNSAFE.sub("_", text).strip("_")
    return text[:_SUMMARY_WIDTH]


_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_canonical_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def _json_text(value: Any) -> str:
    """``value`` as compact JSON; scalars without the encoder's overhead."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _canonical_dumps(value)


def _canonical_params(values: dict[str, Any], names: Sequence[str]) -> str:
    """``json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    for ``names`` given sorted; the same text, built faster (every task id needs one).
    """
    return "{" + ",".join(f"{_encode_str(n)}:{_json_text(values[n])}" for n in names) + "}"


def flatten(struct: Any) -> list[Any]:
    """The leaves of a task/target structure: None, a leaf, or nested list/tuple/dict."""
    if struct is None:
        return []
    kind = type(struct)
    if kind is list or kind is tuple:
        out: list[Any] = []
        for item in struct:
            if item is None:
                continue
            if type(item) in _LEAF_TYPES or not _is_container(item):  # (most items: no call)
                out.append(item)
            else:
                out.extend(flatten(item))
        return out
    if _is_container(struct):
        return flatten(list(struct.values()) if isinstance(struct, Mapping) else list(struct))
    return [struct]


_LEAF_TYPES: set[type] = set()  # types seen not to be containers: skips the ABC check


def _is_container(item: object) -> bool:
    kind = type(item)
    if kind is list or kind is tuple or kind is dict:
        return True
    if kind in _LEAF_TYPES:
        return False
    if isinstance(item, list | tuple | Mapping):
        return True
    _LEAF_TYPES.add(kind)
    return False


def map_structure(fn: Callable[[Any], Any], struct: Any) -> Any:
    """Apply ``fn`` to every leaf, keeping list/tuple/dict shape."""
    if struct is None:
        return None
    if isinstance(struct, list):
        return [map_structure(fn, item) for item in struct]
    if isinstance(struct, tuple):
        return tuple(map_structure(fn, item) for item in struct)
    if isinstance(struct, Mapping):
        return {key: map_structure(fn, value) for key, value in struct.items()}
    return fn(struct)


def _unknown_parameter(family: str, name: str, params: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(params), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(params) or "none"
    return f"{family}: unknown parameter {name!r} (parameters: {known}){hint}"


_RESERVED: frozenset[str] = frozenset(
    {name for name in vars(Task) if not name.startswith("_")} | {"param_kwargs"}
)
"""Names a parameter may not take: what the engine reads from a task."""
