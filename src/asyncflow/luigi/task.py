"""Luigi's ``Task``, ``WrapperTask``, ``ExternalTask`` and ``Config`` over asyncflow's Task.

A Luigi task class is an :class:`asyncflow.Task` subclass: the engine builds
its graph, probes it, runs it, retries it and journals it. What this module
adds is Luigi's surface:

* parameters positional in declaration order (``positional=False`` opts
  out), and values missing from the constructor taken from the command line,
  ``[Family] param`` in the configuration, ``config_path`` and defaults;
* ``complete()`` and the targets' ``exists()`` synchronous, as Luigi code
  calls them (see :mod:`asyncflow.luigi._sync` for how the engine awaits
  them);
* ``run()`` generators may yield :class:`DynamicRequirements`;
* ``retry_count`` counts every attempt (Luigi's meaning; asyncflow's counts
  the extra ones), ``worker_timeout`` is the engine's ``timeout``, and
  ``priority`` may be a property;
* ``task_namespace``, :func:`namespace` and :func:`auto_namespace`;
* ``get_params()`` as a list of ``(name, parameter)`` pairs,
  ``to_str_params()``, ``from_str_params()``, ``clone()``;
* ``event_handler()`` with Luigi's event names, ``trigger_event()``,
  ``set_status_message()``, ``set_progress_percentage()``,
  ``set_tracking_url()``.

Task ids keep asyncflow's form (``Family_summary_hash`` with another hash
than Luigi's): paths built from ``task_id`` change when migrating.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, ClassVar

import structlog

from ..errors import TaskDefinitionError
from ..events import Event as EngineEvent
from ..graph import all_exist
from ..parameters import Parameter as EngineParameter
from ..task import Task as EngineTask
from ..task import _run_kind
from ..task import flatten as engine_flatten
from . import parameter as _parameter
from ._sync import dual, sync_caller, wants_awaitable
from .event import ENGINE_EVENTS, Event
from .parameter import (
    DuplicateParameterException,
    MissingParameterException,
    ParameterVisibility,
    UnknownParameterException,
    _no_value,
)

__all__ = [
    "Config",
    "DynamicRequirements",
    "ExternalTask",
    "Task",
    "TaskClassException",
    "TaskClassNotFoundException",
    "WrapperTask",
    "auto_namespace",
    "externalize",
    "flatten",
    "flatten_output",
    "getpaths",
    "namespace",
    "task_class",
]

_log = structlog.get_logger("asyncflow")

_SAME_AS_MODULE = "_same_as_python_module"
_namespaces: dict[str, str] = {}
"""Scope (module prefix) -> namespace set by namespace(); Luigi's API is global by design."""


def namespace(namespace: str | None = None, scope: str = "") -> None:
    """Give task classes defined from now on in modules under ``scope`` this namespace.

    A class's own ``task_namespace`` wins, and is inherited by its subclasses.
    """
    _namespaces[scope] = namespace or ""


def auto_namespace(scope: str = "") -> None:
    """Like :func:`namespace`, with each class's module name as its namespace."""
    namespace(_SAME_AS_MODULE, scope)


def _namespace_for(module: str) -> str:
    best = ""
    found = ""
    for scope, name in _namespaces.items():
        if (module == scope or module.startswith(scope + ".") or not scope) and len(scope) >= len(
            best
        ):
            best, found = scope, name
    return module if found == _SAME_AS_MODULE else found


class _PerInstance:
    """A class attribute the engine reads on the class (a default) that Luigi code
    defines as a property computed per instance (``priority``)."""

    def __init__(self, prop: property, default: Any) -> None:
        self.prop = prop
        self.default = default

    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self.default
        assert self.prop.fget is not None
        return self.prop.fget(instance)


class TaskClassException(Exception):
    """A task family cannot be found, or is ambiguous."""


class TaskClassNotFoundException(TaskClassException):
    """No task class has this family."""


class TaskClassAmbigiousException(TaskClassException):
    """Several task classes have this family."""


class Task(EngineTask):
    """Luigi's Task: subclass it, declare parameters, define requires/output/run."""

    task_namespace: ClassVar[str | None] = None
    worker_timeout: ClassVar[float | None] = None
    disabled: ClassVar[bool] = False
    max_batch_size: ClassVar[float] = float("inf")
    accepts_messages: ClassVar[bool] = False
    owner_email: ClassVar[Any] = None
    use_cmdline_section: ClassVar[bool] = True
    _visible_in_registry: ClassVar[bool] = True
    _explicit_namespace: ClassVar[Any] = _no_value
    _luigi_retry_count: ClassVar[int | None] = None
    _luigi_handlers: ClassVar[dict[str, list[Callable[..., object]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        own = cls.__dict__
        if "task_namespace" in own and not own.get("_namespace_set_here", False):
            cls._explicit_namespace = own["task_namespace"]
        explicit = cls._explicit_namespace
        found = _namespace_for(cls.__module__) if explicit is _no_value else explicit
        type.__setattr__(cls, "task_namespace", found or None)
        type.__setattr__(cls, "_namespace_set_here", True)
        _translate_attributes(cls)
        super().__init_subclass__(**kwargs)
        _adapt_methods(cls)
        _apply_visibility(cls)
        params = [(n, p) for n, p in cls._params.items()]
        params.sort(key=lambda pair: getattr(pair[1], "_counter", -1))
        cls._luigi_params = params

    _luigi_params: ClassVar[list[tuple[str, EngineParameter[Any]]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        family = self.task_family
        params = self._luigi_params
        by_name = dict(params)
        values: dict[str, Any] = {}
        positional = [name for name, p in params if getattr(p, "positional", True)]
        if len(args) > len(positional):
            raise UnknownParameterException(
                f"{family}[args={args}, kwargs={kwargs}]: takes at most {len(positional)} "
                f"positional parameter(s) ({', '.join(positional) or 'none'}), "
                f"{len(args)} given"
            )
        values.update(zip(positional, args, strict=False))
        for name, value in kwargs.items():
            if name in values:
                raise DuplicateParameterException(
                    f"{family}: parameter {name!r} was already set as a positional parameter"
                )
            if name not in by_name:
                close = difflib.get_close_matches(name, list(by_name), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UnknownParameterException(
                    f"{family}: unknown parameter {name!r} "
                    f"(parameters: {', '.join(by_name) or 'none'}){hint}"
                )
            values[name] = value
        for name, param in params:
            if name in values:
                continue
            if isinstance(param, _parameter._LuigiParameter):
                found = param.task_value_or_none(family, name)
            else:
                found = _no_value if not param.has_default else param.default
            if found is _no_value:
                raise MissingParameterException(
                    f"{family}[args={args}, kwargs={kwargs}]: requires the {name!r} parameter "
                    "to be set"
                )
            values[name] = found
        super().__init__(**values)

    # Luigi's class and instance helpers ----------------------------------------------

    @classmethod
    def get_task_family(cls) -> str:
        return cls.task_family

    @classmethod
    def get_task_namespace(cls) -> str:
        return cls.task_namespace or ""

    @property
    def task_module(self) -> str:
        return type(self).__module__

    @classmethod
    def get_params(cls) -> list[tuple[str, EngineParameter[Any]]]:  # type: ignore[override]
        """Every parameter as ``(name, parameter)``, in declaration order."""
        return list(cls._luigi_params)

    @classmethod
    def get_param_names(cls, include_significant: bool = False) -> list[str]:
        return [n for n, p in cls._luigi_params if include_significant or _significant(p)]

    @classmethod
    def batch_param_names(cls) -> list[str]:
        return [n for n, p in cls._luigi_params if getattr(p, "_batch_method", None) is not None]

    @classmethod
    def get_param_values(
        cls,
        params: Iterable[tuple[str, EngineParameter[Any]]],
        args: Iterable[Any],
        kwargs: Mapping[str, Any],
    ) -> list[tuple[str, Any]]:
        """Values for ``params`` from ``args``/``kwargs``, then the usual sources."""
        params = list(params)
        values = dict(zip((n for n, _ in params), args, strict=False))
        values.update(kwargs)
        out: list[tuple[str, Any]] = []
        for name, param in params:
            if name in values:
                value = values[name]
            elif isinstance(param, _parameter._LuigiParameter):
                value = param.task_value(cls.task_family, name)
            elif param.has_default:
                value = param.default
            else:
                raise MissingParameterException(f"{cls.task_family}: requires {name!r}")
            out.append((name, param.normalize(value)))
        return out

    @property
    def param_args(self) -> tuple[Any, ...]:
        return tuple(self.param_kwargs[name] for name, _ in self._luigi_params)

    def initialized(self) -> bool:
        return "param_kwargs" in self.__dict__

    def to_str_params(
        self, only_significant: bool = False, only_public: bool = False
    ) -> dict[str, str]:
        """Every parameter as text (private ones never)."""
        out: dict[str, str] = {}
        for name, param in self._luigi_params:
            visibility = getattr(param, "visibility", ParameterVisibility.PUBLIC)
            if visibility == ParameterVisibility.PRIVATE:
                continue
            if only_significant and not _significant(param):
                continue
            if only_public and visibility != ParameterVisibility.PUBLIC:
                continue
            out[name] = param.serialize(self.param_kwargs[name])
        return out

    @classmethod
    def from_str_params(cls, params_str: Mapping[str, Any]) -> Task:
        """A task from text values; names it does not declare are ignored, as in Luigi."""
        kwargs: dict[str, Any] = {}
        for name, param in cls._luigi_params:
            if name in params_str:
                text = params_str[name]
                if isinstance(text, list) and isinstance(param, _parameter._LuigiParameter):
                    kwargs[name] = param._parse_list(text)
                else:
                    kwargs[name] = param.parse(text)
        return cls(**kwargs)

    def clone(self, cls: type[Task] | None = None, **kwargs: Any) -> Task:
        """A task of ``cls`` (default: this class) with this task's values for the
        parameters it shares, and ``kwargs`` on top."""
        target = type(self) if cls is None else cls
        values: dict[str, Any] = {}
        for name, _ in target._luigi_params:
            if name in kwargs:
                values[name] = kwargs[name]
            elif name in self.param_kwargs:
                values[name] = self.param_kwargs[name]
        return target(**values)

    # the protocol, Luigi's way ---------------------------------------------------------

    def requires(self) -> Any:
        return []

    def output(self) -> Any:
        return []

    def complete(self) -> Any:
        """True when every output exists; False for a task without outputs (as in Luigi)."""
        if wants_awaitable():
            return self._outputs_exist()
        outputs = engine_flatten(self.output())
        if not outputs:
            return False
        return all(target.exists() for target in outputs)

    async def _outputs_exist(self) -> bool:
        outputs = engine_flatten(self.output())
        return bool(outputs) and await all_exist(outputs)

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[Any]) -> Any:
        """Those of ``parameter_tuples`` whose task is complete (Luigi's range tools call it)."""
        raise BulkCompleteNotImplementedError()

    def _requires(self) -> list[Any]:
        return engine_flatten(self.requires())

    def deps(self) -> list[Any]:
        return engine_flatten(self._requires())

    def process_resources(self) -> Mapping[str, float]:
        return self.resources

    def no_unpicklable_properties(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    # progress -------------------------------------------------------------------------

    # The engine's methods (an Event.STATUS of the attempt: the progress display,
    # the journal and the status pages show it), plus Luigi's attribute and a log record.

    def set_status_message(self, message: str | None) -> None:
        """Record a status message for this task (also logged as ``task.status_message``)."""
        super().set_status_message(message)
        self.__dict__["status_message"] = message
        _log.info("task.status_message", task_id=self.task_id, message=message)

    def set_progress_percentage(self, percentage: float) -> None:
        """Record how far this task is, from 0 to 100 (also logged as ``task.progress``).

        Raises:
            TypeError: ``percentage`` is not a number.
            ValueError: ``percentage`` is not from 0 to 100.
        """
        super().set_progress_percentage(percentage)
        self.__dict__["progress_percentage"] = percentage
        _log.info("task.progress", task_id=self.task_id, percentage=percentage)

    def set_tracking_url(self, url: str | None) -> None:
        """Record where to follow this task (also logged as ``task.tracking_url``).

        Raises:
            TypeError: ``url`` is not a string.
            ValueError: ``url`` is longer than 2,000 characters.
        """
        super().set_tracking_url(url)
        self.__dict__["tracking_url"] = url
        _log.info("task.tracking_url", task_id=self.task_id, url=url)

    # events -----------------------------------------------------------------------

    @classmethod
    def event_handler(cls, event: Any) -> Callable[[Any], Any]:
        """Register ``callback`` for a Luigi event (``luigi.Event.SUCCESS``...) on this
        class and its subclasses. asyncflow's own ``Event`` members work too."""
        if isinstance(event, EngineEvent):
            return super().event_handler(event)

        def register(callback: Any) -> Any:
            handlers = cls.__dict__.get("_luigi_handlers")
            if handlers is None:
                handlers = {}
                type.__setattr__(cls, "_luigi_handlers", handlers)
            handlers.setdefault(event, []).append(callback)
            for kind in ENGINE_EVENTS.get(event, ()):
                EngineTask.event_handler.__func__(cls, kind)(  # type: ignore[attr-defined]
                    _engine_callback(event, kind, callback)
                )
            return callback

        return register

    @classmethod
    def remove_event_handler(cls, event: Any, callback: Callable[..., object]) -> None:
        """Undo :meth:`event_handler`."""
        handlers = cls.__dict__.get("_luigi_handlers", {})
        if callback in handlers.get(event, []):
            handlers[event].remove(callback)
        registry = cls.__dict__.get("_event_handlers", {})
        for kind, callbacks in registry.items():
            registry[kind] = [
                c for c in callbacks if getattr(c, "__luigi_callback__", None) is not callback
            ]
            del kind

    def trigger_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Call the handlers registered for ``event`` on this task's classes."""
        for klass in reversed(type(self).__mro__):
            for callback in klass.__dict__.get("_luigi_handlers", {}).get(event, []):
                try:
                    callback(*args, **kwargs)
                except Exception:
                    _log.exception("event handler failed", luigi_event=event)


class BulkCompleteNotImplementedError(NotImplementedError):
    """``bulk_complete()`` is not defined for this task class."""


def _engine_callback(
    event: str, kind: EngineEvent, callback: Callable[..., object]
) -> Callable[..., object]:
    """The engine-side handler that calls a Luigi callback with Luigi's arguments.

    The engine reports a task whose ``requires()``, ``complete()`` or
    ``output()`` raised while the graph was built as a FAILURE with a
    TaskDefinitionError; Luigi calls that BROKEN_TASK (``requires()``) or
    DEPENDENCY_MISSING (the others), never FAILURE.
    """

    @sync_caller
    def call(task: Any, *args: Any) -> object:
        if kind is EngineEvent.FAILURE:
            error = args[0] if args else None
            method = error.method if isinstance(error, TaskDefinitionError) else None
            if event == Event.FAILURE and method is not None:
                return None
            if event == Event.BROKEN_TASK:
                if method != "requires":
                    return None
                assert error is not None
                return callback(task, error.__cause__ or error)
            if event == Event.DEPENDENCY_MISSING:
                return callback(task) if method in ("complete", "output") else None
        if kind is EngineEvent.DEPENDENCY_MISSING:
            return callback(task)
        return callback(task, *args)

    call.__luigi_callback__ = callback  # type: ignore[attr-defined]
    return call


def _translate_attributes(cls: type[Task]) -> None:
    """Luigi's class attributes in the engine's terms (before the engine checks them)."""
    own = cls.__dict__
    if "retry_count" in own:
        count = own["retry_count"]
        if isinstance(count, property):
            type.__setattr__(cls, "retry_count", 0)
        elif count is None:
            type.__delattr__(cls, "retry_count")
        elif isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            # Luigi's retry_count counts every attempt; the engine's, the ones after the first.
            type.__setattr__(cls, "_luigi_retry_count", count)
            type.__setattr__(cls, "retry_count", max(0, count - 1))
    if "worker_timeout" in own and own["worker_timeout"] is not None:
        type.__setattr__(cls, "timeout", own["worker_timeout"] or None)
    for name, default in (("priority", 0), ("resources", {})):
        value = own.get(name)
        if isinstance(value, property):
            type.__setattr__(cls, name, _PerInstance(value, default))


def _adapt_methods(cls: type[Task]) -> None:
    """Make Luigi's synchronous methods awaitable by the engine, and let run()
    generators yield DynamicRequirements."""
    own = cls.__dict__
    complete = own.get("complete")
    # The shim's own complete() methods answer on the loop themselves (no thread).
    if (
        complete is not None
        and not inspect.iscoroutinefunction(complete)
        and cls.__module__ != __name__
    ):
        type.__setattr__(cls, "complete", dual(complete))
    for name in ("requires", "output", "on_success", "on_failure"):
        method = own.get(name)
        if callable(method) and not (
            inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)
        ):
            # The engine calls these on its event loop: inside them, Luigi code's
            # exists() and complete() calls answer synchronously.
            type.__setattr__(cls, name, sync_caller(method))
    # The engine calls complete() for every Luigi task: a task without outputs is
    # complete only by its own complete(), never by the journal (Luigi's meaning).
    cls._default_complete = False
    run = own.get("run")
    if (
        run is not None
        and inspect.isgeneratorfunction(run)
        and not getattr(run, "__luigi_generator__", False)
    ):
        type.__setattr__(cls, "run", _yielding_requirements(run))
        cls._run_kind = _run_kind(cls.run)


def _yielding_requirements(run: Callable[[Any], Generator[Any, Any, Any]]) -> Any:
    """``run()`` generators may yield :class:`DynamicRequirements`: the engine gets
    the requirements they wrap."""

    @functools.wraps(run)
    def generator(self: Task) -> Generator[Any, Any, Any]:
        body = run(self)
        sent: Any = None
        try:
            while True:
                try:
                    item = body.send(sent)
                except StopIteration as stop:
                    return stop.value
                if isinstance(item, DynamicRequirements):
                    item = item.requirements
                sent = yield item
        finally:
            body.close()

    generator.__luigi_generator__ = True  # type: ignore[attr-defined]
    return generator


def _significant(param: Any) -> bool:
    return bool(getattr(param, "luigi_significant", param.significant))


def _apply_visibility(cls: type[Task]) -> None:
    """HIDDEN parameters are not part of the identity, as in Luigi (the engine keeps
    them in the id's hash; it masks them, and leaves PRIVATE ones out, itself)."""
    hidden = {
        name
        for name, p in cls._params.items()
        if getattr(p, "visibility", ParameterVisibility.PUBLIC) == ParameterVisibility.HIDDEN
    }
    if not hidden:
        return
    cls._significant = tuple(n for n in cls._significant if n not in hidden)
    cls._json_keys = tuple(key for key in cls._json_keys if key[1] not in hidden)
    cls._scalar_identity = False


class WrapperTask(Task):
    """A task that only groups requirements: complete when all of them are."""

    # As in Luigi, a wrapper's complete() is asked first, and its requirements are
    # looked at only when it is not complete.

    def complete(self) -> Any:
        """True when every requirement is complete."""
        if wants_awaitable():
            return self._requirements_complete()
        return all(task.complete() for task in engine_flatten(self.requires()))

    async def _requirements_complete(self) -> bool:
        for task in engine_flatten(self.requires()):
            done = task.complete()
            if inspect.isawaitable(done):
                done = await done
            if not done:
                return False
        return True


class ExternalTask(Task):
    """Data made outside the pipeline: never run; a missing output is reported."""

    _is_external = True
    run = None  # type: ignore[assignment]


class Config(Task):
    """Settings read from the configuration section named after the class.

    ``class mysection(luigi.Config): x = luigi.IntParameter(default=1)``; then
    ``mysection().x`` is ``[mysection] x`` from ``luigi.cfg``, or 1.
    """


def externalize(taskclass_or_taskobject: Any) -> Any:
    """An external copy of a task class or task: it never runs."""
    if isinstance(taskclass_or_taskobject, type):
        cls: type[Task] = taskclass_or_taskobject
        return type(
            cls.__name__,
            (cls,),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "run": None,
                "_is_external": True,
                "_visible_in_registry": False,
                "task_family": cls.task_family,
            },
        )
    task = taskclass_or_taskobject
    clone = externalize(type(task))(**task.param_kwargs)
    return clone


class DynamicRequirements:
    """Requirements a ``run()`` yields, with an optional bulk completeness check.

    The engine probes the requirements itself; ``custom_complete`` is kept for
    code that calls :meth:`complete` and is not used by the engine.
    """

    def __init__(
        self,
        requirements: Any,
        custom_complete: Callable[[Callable[[Any], bool]], bool] | None = None,
    ) -> None:
        self.requirements = requirements
        self.custom_complete = custom_complete

    @property
    def flat_requirements(self) -> list[Any]:
        return flatten(self.requirements)

    @property
    def paths(self) -> Any:
        return getpaths(self.requirements)

    def complete(self, complete_fn: Callable[[Any], bool] | None = None) -> bool:
        check = complete_fn or (lambda task: bool(task.complete()))
        if self.custom_complete is not None:
            return bool(self.custom_complete(check))
        return all(check(task) for task in self.flat_requirements)


def flatten(struct: Any) -> list[Any]:
    """The leaves of a structure of lists, tuples and dicts (a string is a leaf)."""
    if struct is None:
        return []
    if isinstance(struct, dict):
        return [item for value in struct.values() for item in flatten(value)]
    if isinstance(struct, str):
        return [struct]
    if isinstance(struct, list | tuple | set | frozenset):
        return [item for value in struct for item in flatten(value)]
    return [struct]


def getpaths(struct: Any) -> Any:
    """The outputs of a structure of tasks, in the same structure."""
    if isinstance(struct, EngineTask):
        return struct.output()
    if isinstance(struct, dict):
        return {key: getpaths(value) for key, value in struct.items()}
    if isinstance(struct, list | tuple):
        return type(struct)(getpaths(item) for item in struct)
    try:
        return [getpaths(item) for item in struct]
    except TypeError:
        raise TypeError(f"cannot map {struct!r} to its outputs") from None


def flatten_output(task: Any) -> list[Any]:
    """The outputs of ``task``, or of its requirements where it has none, recursively."""
    seen: dict[Any, None] = {}
    todo = [task]
    found: list[Any] = []
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen[current] = None
        outputs = flatten(current.output())
        if outputs:
            found.extend(outputs)
        else:
            todo.extend(flatten(current.requires()))
    return found


def _all_classes() -> list[type[Task]]:
    found: list[type[Task]] = []
    stack: list[type[Task]] = [Task]
    seen: set[type[Task]] = set()
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if sub.__dict__.get("_visible_in_registry", True):
                    found.append(sub)
    return found


def task_classes() -> dict[str, type[Task]]:
    """Every Luigi task and config class by family (the last defined wins)."""
    by_family: dict[str, type[Task]] = {}
    for cls in _all_classes():
        if cls in (WrapperTask, ExternalTask, Config):
            continue
        by_family[cls.task_family] = cls
    return by_family


def task_class(family: str) -> type[Task]:
    """The task class of a family name.

    Raises:
        TaskClassNotFoundException: no class has this family; the message
            suggests close names.
    """
    classes = task_classes()
    found = classes.get(family)
    if found is None:
        close = difflib.get_close_matches(family, list(classes), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TaskClassNotFoundException(
            f"No task {family}. Candidates are: {', '.join(sorted(classes)) or 'none'}.{hint}"
        )
    return found


def warn_unconsumed(family: str, section_keys: Iterable[str], params: Iterable[str]) -> None:
    """Warn about configuration options of a task's section that name no parameter."""
    known = set(params)
    for key in section_keys:
        if key.replace("-", "_") not in known:
            warnings.warn(
                f"The configuration contains the parameter {key!r} that is not consumed by "
                f"the task {family!r}",
                stacklevel=3,
            )
