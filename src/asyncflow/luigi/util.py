"""Luigi's task decorators: ``requires``, ``inherits``, ``copies``, ``delegates``, and
``common_params``.

The decorators return a subclass of the decorated class under the same name
(the engine reads a class's parameters when the class is made, so they
cannot be added to it afterwards); the class they were given stays out of
the command line's task lookup.
"""

from __future__ import annotations

from typing import Any

from .task import Task

__all__ = ["common_params", "copies", "delegates", "inherits", "requires"]


def common_params(task_instance: Task, task_cls: type[Task]) -> dict[str, Any]:
    """The values of ``task_instance`` for the parameters ``task_cls`` also declares.

    Raises:
        TypeError: ``task_cls`` is not a task class.
    """
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise TypeError("task_cls must be an uninstantiated Task")
    mine = dict(task_instance.get_params())
    theirs = dict(task_cls.get_params())
    names = [name for name in theirs if name in mine]
    return {name: task_instance.param_kwargs[name] for name in names}


def _remade(cls: type[Task], extra: dict[str, Any]) -> type[Task]:
    """``cls`` again with ``extra`` attributes: a subclass under the same name."""
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        **extra,
    }
    if cls.__dict__.get("_explicit_namespace") is None and "task_namespace" in cls.__dict__:
        namespace["task_namespace"] = cls.task_namespace
    made: type[Task] = type(cls.__name__, (cls,), namespace)
    type.__setattr__(cls, "_visible_in_registry", False)
    return made


class inherits:
    """Give the decorated task the parameters of ``tasks_to_inherit`` it lacks, and
    ``clone_parent()`` / ``clone_parents()`` to build them from its own values."""

    def __init__(self, *tasks_to_inherit: type[Task], **kw_tasks_to_inherit: type[Task]):
        if not tasks_to_inherit and not kw_tasks_to_inherit:
            raise TypeError(
                "tasks_to_inherit or kw_tasks_to_inherit must contain at least one task"
            )
        if tasks_to_inherit and kw_tasks_to_inherit:
            raise TypeError("Only one of tasks_to_inherit or kw_tasks_to_inherit may be present")
        self.tasks_to_inherit = tasks_to_inherit
        self.kw_tasks_to_inherit = kw_tasks_to_inherit

    def __call__(self, task_that_inherits: type[Task]) -> type[Task]:
        extra: dict[str, Any] = {}
        parents = self.tasks_to_inherit or tuple(self.kw_tasks_to_inherit.values())
        for parent in parents:
            for name, param in parent.get_params():
                if not hasattr(task_that_inherits, name) and name not in extra:
                    extra[name] = param
        if self.tasks_to_inherit:
            first = self.tasks_to_inherit[0]
            tasks = self.tasks_to_inherit

            def clone_parent(_self: Task, **kwargs: Any) -> Task:
                return _self.clone(cls=first, **kwargs)

            def clone_parents(_self: Task, **kwargs: Any) -> list[Task]:
                return [_self.clone(cls=task, **kwargs) for task in tasks]

            extra["clone_parent"] = clone_parent
            extra["clone_parents"] = clone_parents
        else:
            named = self.kw_tasks_to_inherit

            def clone_named(_self: Task, **kwargs: Any) -> dict[str, Task]:
                return {key: _self.clone(cls=task, **kwargs) for key, task in named.items()}

            extra["clone_parents"] = clone_named
        return _remade(task_that_inherits, extra)


class requires:
    """Like :class:`inherits`, and ``requires()`` returns the cloned parents."""

    def __init__(self, *tasks_to_require: type[Task], **kw_tasks_to_require: type[Task]):
        if not tasks_to_require and not kw_tasks_to_require:
            raise TypeError(
                "tasks_to_require or kw_tasks_to_require must contain at least one task"
            )
        if tasks_to_require and kw_tasks_to_require:
            raise TypeError("Only one of tasks_to_require or kw_tasks_to_require may be present")
        self.tasks_to_require = tasks_to_require
        self.kw_tasks_to_require = kw_tasks_to_require

    def __call__(self, task_that_requires: type[Task]) -> type[Task]:
        inherited = inherits(*self.tasks_to_require, **self.kw_tasks_to_require)(task_that_requires)
        single = len(self.tasks_to_require) == 1

        def requires(_self: Any) -> Any:
            return _self.clone_parent() if single else _self.clone_parents()

        type.__setattr__(inherited, "requires", requires)
        return inherited


class copies:
    """A task that copies the output of ``task_to_copy`` to its own output."""

    def __init__(self, task_to_copy: type[Task]) -> None:
        self.requires = requires(task_to_copy)

    def __call__(self, task_that_copies: type[Task]) -> type[Task]:
        made = self.requires(task_that_copies)

        def run(_self: Any) -> None:
            source, target = _self.input(), _self.output()
            with source.open("r") as reader, target.open("w") as writer:
                for line in reader:
                    writer.write(line)

        type.__setattr__(made, "run", run)
        made._run_kind = "sync"
        return made


def delegates(task_that_delegates: type[Task]) -> type[Task]:
    """A task whose ``subtasks()`` it needs, and whose ``run()`` may call them."""
    if not hasattr(task_that_delegates, "subtasks"):
        raise AttributeError(f"{task_that_delegates} needs a subtasks() method")

    def deps(_self: Any) -> list[Any]:
        from .task import flatten

        return flatten(_self.requires()) + flatten(_self.subtasks())

    original_requires = task_that_delegates.requires

    def requires_all(_self: Any) -> list[Any]:
        from .task import flatten

        return flatten(original_requires(_self)) + flatten(_self.subtasks())

    return _remade(task_that_delegates, {"deps": deps, "requires": requires_all})
