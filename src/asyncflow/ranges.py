"""Backfills: one wrapper task for a range of dates or hours, requiring only what is missing.

::

    backfill = asyncflow.range_daily(Report, date(2026, 11, 1), date(2026, 11, 23))
    await asyncflow.run(backfill)

The range is ``[start, stop)``. To find what is missing, the wrapper asks the
task class once if it defines a bulk check, e.g. one bucket listing for the
whole range::

    class Report(asyncflow.Task):
        date = asyncflow.DateParameter()

        @classmethod
        async def bulk_complete(cls, tasks):
            present = await list_report_dates()          # one request
            return [t for t in tasks if t.date in present]

and otherwise probes every candidate's ``complete()`` concurrently.
"""

from __future__ import annotations

import datetime
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from ._turns import drain, in_turns
from .errors import ParameterError
from .graph import outputs_complete
from .parameters import (
    DateHourParameter,
    DateParameter,
    DictParameter,
    Parameter,
    ParameterVisibility,
)
from .task import Task, WrapperTask, flatten

__all__ = ["range_daily", "range_hourly"]

_PROBES_IN_FLIGHT = 64
_TASKS_PER_TURN = 1024  # made, or asked for their outputs (user code), between two turns


class _Range(WrapperTask):
    """Requires every task of ``of`` over ``[start, stop)`` that is not complete."""

    of: ClassVar[type[Task]]
    param: ClassVar[str]
    step: ClassVar[datetime.timedelta]

    start: Any
    stop: Any
    fixed: Any  # the other parameters of every task
    # Values of the task's HIDDEN and PRIVATE parameters, kept with that visibility
    # (only when the task has such parameters): never shown in the range's repr or id.
    fixed_hidden: Any
    fixed_private: Any

    def candidates(self) -> list[Task]:
        """Every task of the range, complete or not."""
        make = self._maker()
        return [make(moment) for moment in self._moments()]

    async def requires(self) -> list[Task]:
        # A range of 100,000 hours is 100,000 tasks made, and outputs asked for:
        # in slices, with a turn of the loop between two.
        make = self._maker()
        candidates: list[Task] = []
        async for moments in in_turns(self._moments(), _TASKS_PER_TURN):
            candidates.extend(make(moment) for moment in moments)
        done = await _complete_among(self.of, candidates)
        return [task for task in candidates if task not in done]

    def _moments(self) -> list[Any]:
        moments = []
        moment = self.start
        while moment < self.stop:
            moments.append(moment)
            moment = moment + self.step
        return moments

    def _maker(self) -> Callable[[Any], Task]:
        """A task of the range from its date (hour)."""
        fixed = {**self.fixed}
        for name in _SECRET_FIELDS.values():
            fixed.update(self.param_kwargs.get(name, {}))
        of, param = self.of, self.param
        return lambda moment: of(**{param: moment}, **fixed)


async def _complete_among(cls: type[Task], tasks: list[Task]) -> set[Task]:
    bulk = getattr(cls, "bulk_complete", None)
    if bulk is not None:
        found = bulk(tasks)
        if inspect.isawaitable(found):
            found = await found
        return set(found)
    if cls._default_complete and tasks:
        # Complete means "every output exists": probe them all together.
        outputs: list[tuple[Task, list[Any]]] = []
        async for some in in_turns(tasks, _TASKS_PER_TURN):
            outputs.extend((task, flatten(task.output())) for task in some)
        done = await outputs_complete(outputs, _PROBES_IN_FLIGHT)
        return {task for task, complete in done.items() if complete}
    complete: set[Task] = set()

    async def probe(task: Task) -> None:
        if await task.complete():
            complete.add(task)

    await drain(deque(tasks), probe, _PROBES_IN_FLIGHT)
    return complete


_CLASSES: dict[tuple[type[Task], str, str], type[_Range]] = {}
_SECRET_FIELDS = {
    ParameterVisibility.HIDDEN: "fixed_hidden",
    ParameterVisibility.PRIVATE: "fixed_private",
}


def _range_class(
    of: type[Task], param: str, kind: str, bound: Parameter[Any], step: datetime.timedelta
) -> type[_Range]:
    key = (of, param, kind)
    cls = _CLASSES.get(key)
    if cls is None:
        default_param = "date" if kind == "Daily" else "date_hour"
        suffix = "" if param == default_param else f".{param}"
        cls = type(
            f"Range{kind}",
            (_Range,),
            {
                "__module__": __name__,
                "task_family": f"Range{kind}.{of.task_family}{suffix}",
                "of": of,
                "param": param,
                "step": step,
                "start": bound,
                "stop": type(bound)(),
                "fixed": DictParameter(default={}, description="the other parameters"),
                **{
                    name: DictParameter(default={}, visibility=visibility)
                    for visibility, name in _SECRET_FIELDS.items()
                    if any(p.visibility is visibility for p in of.get_params().values())
                },
            },
        )
        _CLASSES[key] = cls
    return cls


def range_daily(
    of: type[Task], start: Any, stop: Any, *, param: str = "date", **fixed: Any
) -> Task:
    """A wrapper requiring ``of`` for every missing day in ``[start, stop)``.

    Raises:
        ParameterError: ``param`` is not a DateParameter of ``of``, or a value is bad.
    """
    return _make(of, start, stop, param, fixed, "Daily", DateParameter, datetime.timedelta(days=1))


def range_hourly(
    of: type[Task], start: Any, stop: Any, *, param: str = "date_hour", **fixed: Any
) -> Task:
    """A wrapper requiring ``of`` for every missing hour in ``[start, stop)``.

    Raises:
        ParameterError: ``param`` is not a DateHourParameter of ``of``, or a value is bad.
    """
    return _make(
        of, start, stop, param, fixed, "Hourly", DateHourParameter, datetime.timedelta(hours=1)
    )


def _make(
    of: type[Task],
    start: Any,
    stop: Any,
    param: str,
    fixed: dict[str, Any],
    kind: str,
    expected: type[Parameter[Any]],
    step: datetime.timedelta,
) -> Task:
    if not (isinstance(of, type) and issubclass(of, Task)):
        raise TypeError(f"range_{kind.lower()}() takes a Task class, got {of!r}")
    declared = of.get_params().get(param)
    if not isinstance(declared, expected):
        raise ParameterError(
            f"{of.task_family}: range_{kind.lower()}() needs a {expected.__name__} named "
            f"{param!r} (parameters: {', '.join(of.get_params()) or 'none'})"
        )
    if param in fixed:
        raise ParameterError(f"{of.task_family}: {param!r} is set by the range; leave it out")
    cls = _range_class(of, param, kind, expected(), step)
    params = of.get_params()
    split: dict[str, dict[str, Any]] = {"fixed": {}}
    for name, value in fixed.items():
        visibility = params[name].visibility if name in params else ParameterVisibility.PUBLIC
        split.setdefault(_SECRET_FIELDS.get(visibility, "fixed"), {})[name] = value
    task = cls(start=start, stop=stop, **split)
    if task.stop < task.start:
        raise ParameterError(f"{cls.task_family}: stop {task.stop} is before start {task.start}")
    of(**{param: task.start}, **fixed)  # bad or missing other parameters fail now, not later
    return task
