"""``@asyncflow.task``: a Task class from a function.

::

    @asyncflow.task(
        requires=lambda date: Extract(date),
        output=lambda date: asyncflow.LocalTarget(f"data/{date}.parquet"),
        retry_count=2,
    )
    async def transform(self, date: datetime.date, scale: float = 1.0) -> None:
        async with self.output().open("w") as f: ...

Every parameter of the function (but a leading ``self``) becomes a task
parameter, its type from the annotation and its default from the default.
``requires`` and ``output`` are tasks/targets, or callables that receive the
task parameters they name. The function receives the parameter values, and
the task itself when its first parameter is ``self``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, overload

from .parameters import MISSING, Parameter, parameter_for_annotation
from .task import RunKind, Task

__all__ = ["task"]

_Fn = Callable[..., Any]


@overload
def task(fn: _Fn, /) -> type[Task]: ...


@overload
def task(
    *,
    name: str | None = None,
    requires: Any = None,
    output: Any = None,
    resources: Mapping[str, float] | None = None,
    max_running: int | None = None,
    priority: int | None = None,
    retry_count: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: float | None = None,
    retry_max_delay: float | None = None,
    retry_jitter: float | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
    namespace: str | None = None,
    base: type[Task] = Task,
) -> Callable[[_Fn], type[Task]]: ...


def task(
    fn: _Fn | None = None,
    /,
    *,
    name: str | None = None,
    requires: Any = None,
    output: Any = None,
    resources: Mapping[str, float] | None = None,
    max_running: int | None = None,
    priority: int | None = None,
    retry_count: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: float | None = None,
    retry_max_delay: float | None = None,
    retry_jitter: float | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
    namespace: str | None = None,
    base: type[Task] = Task,
) -> type[Task] | Callable[[_Fn], type[Task]]:
    """Turn a function into a :class:`Task` subclass.

    Works bare (``@task``) or with keywords (``@task(retry_count=2)``). The
    keywords are the Task class attributes, plus ``requires``/``output``,
    ``name`` (the family, default: the function's name) and ``base``.

    Raises:
        TypeError: a function parameter has no supported annotation, or is
            ``*args``/``**kwargs``.
    """
    given = {
        "priority": priority,
        "retry_count": retry_count,
        "retry_delay": retry_delay,
        "retry_backoff": retry_backoff,
        "retry_max_delay": retry_max_delay,
        "retry_jitter": retry_jitter,
        "retry_on": retry_on,
        "timeout": timeout,
        "max_running": max_running,
        "resources": dict(resources) if resources is not None else None,
        "task_namespace": namespace,
    }
    # Only what was given: an unset retry attribute lets the run's defaults apply.
    attributes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}

    def decorate(function: _Fn) -> type[Task]:
        return _make_task_class(function, name, requires, output, attributes, base)

    if fn is not None:
        return decorate(fn)
    return decorate


def _make_task_class(
    fn: _Fn,
    name: str | None,
    requires: Any,
    output: Any,
    attributes: dict[str, Any],
    base: type[Task],
) -> type[Task]:
    if not callable(fn):
        raise TypeError(f"@task decorates a function, got {fn!r}")
    params, wants_self = _parameters(fn)
    namespace: dict[str, Any] = dict(params)
    namespace.update(attributes)
    namespace["__module__"] = fn.__module__
    namespace["__qualname__"] = getattr(fn, "__qualname__", fn.__name__)
    namespace["__doc__"] = fn.__doc__
    namespace["__wrapped__"] = fn
    kind = _kind(fn)
    namespace["run"] = _run_method(fn, kind, wants_self)
    if requires is not None:
        namespace["requires"] = _provider(requires, params, "requires", fn)
    if output is not None:
        namespace["output"] = _provider(output, params, "output", fn)
    family = name or fn.__name__
    if attributes.get("task_namespace"):
        family = f"{attributes['task_namespace']}.{family}"
    namespace["task_family"] = family
    cls: type[Task] = type(name or fn.__name__, (base,), namespace)
    cls._run_kind = kind
    return cls


def _parameters(fn: _Fn) -> tuple[dict[str, Parameter[Any]], bool]:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)  # keeps a visibility
    except Exception as exc:
        raise TypeError(f"@task: cannot resolve the annotations of {fn.__name__}(): {exc}") from exc
    items = list(signature.parameters.values())
    wants_self = bool(items) and items[0].name == "self"
    if wants_self:
        items = items[1:]
    params: dict[str, Parameter[Any]] = {}
    for item in items:
        if item.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"@task: {fn.__name__}() cannot take *args or **kwargs ({item})")
        if item.name not in hints:
            raise TypeError(
                f"@task: parameter {item.name!r} of {fn.__name__}() needs a type annotation "
                "(e.g. `date: datetime.date`)"
            )
        default = MISSING if item.default is inspect.Parameter.empty else item.default
        try:
            param = parameter_for_annotation(hints[item.name], default)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"@task: parameter {item.name!r} of {fn.__name__}(): {exc}") from exc
        params[item.name] = param
    return params, wants_self


def _kind(fn: _Fn) -> str:
    if inspect.isasyncgenfunction(fn):
        return RunKind.GENERATOR
    if inspect.iscoroutinefunction(fn):
        return RunKind.ASYNC
    return RunKind.SYNC


def _run_method(fn: _Fn, kind: str, wants_self: bool) -> Callable[..., Any]:
    def call(self: Task) -> Any:
        if wants_self:
            return fn(self, **self.param_kwargs)
        return fn(**self.param_kwargs)

    if kind is RunKind.ASYNC:

        async def run_async(self: Task) -> Any:
            return await call(self)

        return run_async

    def run(self: Task) -> Any:
        return call(self)

    return run


def _provider(value: Any, params: Mapping[str, Parameter[Any]], what: str, fn: _Fn) -> Any:
    """A requires()/output() method from a constant or a callable of parameters."""
    if not callable(value) or isinstance(value, Task | type):
        constant = value

        def fixed(self: Task) -> Any:
            return constant

        return fixed
    signature = inspect.signature(value)
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    names = [
        p.name for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = [n for n in names if n not in params and n != "self"]
    if unknown:
        raise TypeError(
            f"@task: {what}= of {fn.__name__}() takes {', '.join(map(repr, unknown))}, "
            f"which {'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
            f"(parameters: {', '.join(params) or 'none'})"
        )

    def pick(self: Task) -> dict[str, Any]:
        if takes_all:
            return dict(self.param_kwargs)
        return {n: (self if n == "self" else self.param_kwargs[n]) for n in names}

    if inspect.iscoroutinefunction(value):

        async def provide_async(self: Task) -> Any:
            return await value(**pick(self))

        return provide_async

    def provide(self: Task) -> Any:
        return value(**pick(self))

    return provide
