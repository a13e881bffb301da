"""Luigi's range tasks: ``RangeDaily`` and ``RangeHourly`` require the missing
instances of a dated task over a range.

``RangeDaily(of=Report, start=date(2026, 11, 1), stop=date(2026, 11, 23))``
requires ``Report(date=d)`` for every day in ``[start, stop)`` whose task is
not complete, at most ``task_limit`` of them (the oldest first, or the newest
with ``reverse=True``), and no further back than ``days_back`` (100) days
before now. A task class with ``bulk_complete()`` is asked once for the whole
range; otherwise every day's task is probed.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Any

from ..parameter import (
    BoolParameter,
    DateHourParameter,
    DateParameter,
    DictParameter,
    IntParameter,
    Parameter,
    ParameterException,
    TaskParameter,
)
from ..task import BulkCompleteNotImplementedError, Task, WrapperTask

__all__ = ["RangeBase", "RangeDaily", "RangeDailyBase", "RangeHourly", "RangeHourlyBase"]


class RangeBase(WrapperTask):
    """What the range tasks share; subclasses say how dates step."""

    of = TaskParameter(description="the task class to complete over the range")
    of_params = DictParameter(default={}, description="other arguments of the 'of' task")
    start: Any = Parameter()
    stop: Any = Parameter()
    reverse = BoolParameter(default=False, description="fill in the newest first")
    task_limit = IntParameter(default=50, description="at most this many tasks at a time")
    now = IntParameter(default=None, description="the current time, in seconds since the epoch")
    param_name = Parameter(
        default=None, description="the parameter the range sets", positional=False
    )

    def _v(self, name: str) -> Any:
        """A parameter's value (typed as Any: parameters are class attributes)."""
        return self.param_kwargs[name]

    @property
    def of_cls(self) -> type[Task]:
        found: type[Task] = self._v("of")
        return found

    @property
    def _param_name(self) -> str:
        if self._v("param_name") is not None:
            return str(self._v("param_name"))
        params = self.of_cls.get_params()
        return next(name for name, p in params if getattr(p, "positional", True))

    def _task(self, value: Any) -> Task:
        return self._v("of")(**{**dict(self._v("of_params")), self._param_name: value})  # type: ignore[no-any-return]

    def datetime_to_parameter(self, moment: dt.datetime) -> Any:
        raise NotImplementedError

    def parameter_to_datetime(self, value: Any) -> dt.datetime:
        raise NotImplementedError

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        raise NotImplementedError

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        raise NotImplementedError

    def finite_datetimes(self, start: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
        raise NotImplementedError

    def requires(self) -> list[Task]:
        cached = self.__dict__.get("_cached_requires")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        if self._v("start") is None and self._v("stop") is None:
            raise ParameterException("At least one of start and stop needs to be specified")
        if self._v("start") is None and not self._v("reverse"):
            raise ParameterException(
                "Either start needs to be specified or reverse needs to be True"
            )
        if (
            self._v("start") is not None
            and self._v("stop") is not None
            and self._v("start") > self._v("stop")
        ):
            raise ParameterException("Can't have start > stop")
        seconds = time.time() if self._v("now") is None else self._v("now")
        now = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(tzinfo=None)
        start = self.moving_start(now)
        if self._v("start") is not None:
            start = max(self.parameter_to_datetime(self._v("start")), start)
        stop = self.moving_stop(now)
        if self._v("stop") is not None:
            stop = min(self.parameter_to_datetime(self._v("stop")), stop)
        moments = self.finite_datetimes(start, stop) if start <= stop else []
        missing = sorted(self.missing_datetimes(moments)) if moments else []
        if self._v("reverse"):
            chosen = missing[-self._v("task_limit") :]
            chosen.reverse()
        else:
            chosen = missing[: self._v("task_limit")]
        tasks = [self._task(self.datetime_to_parameter(moment)) for moment in chosen]
        self.__dict__["_cached_requires"] = tasks
        return tasks

    def missing_datetimes(self, finite_datetimes: list[dt.datetime]) -> list[dt.datetime]:
        """The moments whose task is not complete (``bulk_complete()`` when defined)."""
        values = [self.datetime_to_parameter(moment) for moment in finite_datetimes]
        try:
            with_params = functools.partial(self._v("of"), **dict(self._v("of_params")))
            done = self._v("of").bulk_complete.__func__(with_params, values)
        except (BulkCompleteNotImplementedError, NotImplementedError):
            return [
                m
                for m, v in zip(finite_datetimes, values, strict=True)
                if not self._task(v).complete()
            ]
        complete = {self.parameter_to_datetime(value) for value in done}
        return [moment for moment in finite_datetimes if moment not in complete]


class RangeDailyBase(RangeBase):
    """A range of days."""

    start = DateParameter(default=None, description="the first day, included")
    stop = DateParameter(default=None, description="the last day, excluded")
    days_back = IntParameter(default=100, description="how far back from now to look")
    days_forward = IntParameter(default=0, description="how far ahead of now to look")

    def datetime_to_parameter(self, moment: dt.datetime) -> Any:
        return moment.date()

    def parameter_to_datetime(self, value: Any) -> dt.datetime:
        return dt.datetime(value.year, value.month, value.day)

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        return now - dt.timedelta(days=self._v("days_back"))

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(days=self._v("days_forward"))

    def finite_datetimes(self, start: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
        day = dt.datetime(start.year, start.month, start.day)
        found = []
        while day < stop:
            if day >= start:
                found.append(day)
            day += dt.timedelta(days=1)
        return found


class RangeHourlyBase(RangeBase):
    """A range of hours."""

    start = DateHourParameter(default=None, description="the first hour, included")
    stop = DateHourParameter(default=None, description="the last hour, excluded")
    hours_back = IntParameter(default=100 * 24, description="how far back from now to look")
    hours_forward = IntParameter(default=0, description="how far ahead of now to look")

    def datetime_to_parameter(self, moment: dt.datetime) -> Any:
        return moment

    def parameter_to_datetime(self, value: Any) -> dt.datetime:
        return value  # type: ignore[no-any-return]

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        return now - dt.timedelta(hours=self._v("hours_back"))

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(hours=self._v("hours_forward"))

    def finite_datetimes(self, start: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
        hour = dt.datetime(start.year, start.month, start.day, start.hour)
        found = []
        while hour < stop:
            if hour >= start:
                found.append(hour)
            hour += dt.timedelta(hours=1)
        return found


class RangeDaily(RangeDailyBase):
    """Every missing day of ``of`` over ``[start, stop)``."""


class RangeHourly(RangeHourlyBase):
    """Every missing hour of ``of`` over ``[start, stop)``."""
