"""Luigi's parameter classes, on top of asyncflow's parameters.

Each class takes Luigi's arguments (``default``, ``significant``,
``description``, ``config_path``, ``positional``, ``always_in_help``,
``batch_method``, ``visibility``) and reads and writes Luigi's text forms.
A task's identity is built from the parameters' text forms, as Luigi does,
so ``to_str_params()`` round-trips through ``from_str_params()``.

A value missing from a task's constructor comes, in order, from the command
line (``--Family-param``), the configuration (``[Family] param``), the
parameter's ``config_path`` and its ``default``. ``None`` is accepted for
any parameter, as in Luigi.

``batch_method`` is accepted and kept, but batches are not formed: each task
runs on its own (see the migration guide).
"""

from __future__ import annotations

import ast
import contextvars
import datetime as dt
import enum
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from .. import parameters as _engine
from ..errors import ParameterError
from ..errors import short_repr as _shown
from . import date_interval as _intervals
from .configuration import get_config

__all__ = [
    "BoolParameter",
    "BoolParameterParsing",
    "ChoiceListParameter",
    "ChoiceParameter",
    "DateHourParameter",
    "DateIntervalParameter",
    "DateMinuteParameter",
    "DateParameter",
    "DateSecondParameter",
    "DictParameter",
    "DuplicateParameterException",
    "EnumListParameter",
    "EnumParameter",
    "FloatParameter",
    "IntParameter",
    "ListParameter",
    "MissingParameterException",
    "MonthParameter",
    "NumericalParameter",
    "OptionalBoolParameter",
    "OptionalChoiceParameter",
    "OptionalDictParameter",
    "OptionalFloatParameter",
    "OptionalIntParameter",
    "OptionalListParameter",
    "OptionalNumericalParameter",
    "OptionalParameter",
    "OptionalPathParameter",
    "OptionalStrParameter",
    "OptionalTupleParameter",
    "Parameter",
    "ParameterException",
    "ParameterVisibility",
    "PathParameter",
    "StrParameter",
    "TaskParameter",
    "TimeDeltaParameter",
    "TupleParameter",
    "UnknownParameterException",
    "YearParameter",
]


ParameterVisibility = _engine.ParameterVisibility
"""Luigi's PUBLIC / HIDDEN / PRIVATE (the engine's own enum: it masks and leaves
out values the same way everywhere it shows or stores them)."""


class ParameterException(ParameterError):
    """A parameter is missing, unknown or set twice (Luigi's base class)."""


class MissingParameterException(ParameterException):
    """A parameter has no value anywhere: constructor, command line, configuration, default."""


class UnknownParameterException(ParameterException):
    """A task was given a parameter it does not declare."""


class DuplicateParameterException(ParameterException):
    """A parameter was given both positionally and by keyword."""


class _NoValue:
    """The ``default`` of a parameter that has none."""

    def __repr__(self) -> str:
        return "_no_value"

    def __bool__(self) -> bool:
        return False


_no_value: Final = _NoValue()

cmdline_values: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "asyncflow_luigi_cmdline", default=None
)
"""Values given on the command line as ``--Family-param``, by ``Family_param``
(set by the command line while its tasks are built and run)."""

_counter = itertools.count()


class _LuigiParameter(_engine.Parameter[Any]):
    """What every Luigi parameter adds to an asyncflow parameter."""

    #: Luigi's ``Parameter`` keeps any value; typed subclasses turn text into values.
    _batch_method: Callable[[Iterable[Any]], Any] | None

    def __init__(
        self,
        default: Any = _no_value,
        is_global: bool = False,
        significant: bool = True,
        description: str | None = None,
        config_path: Mapping[str, str] | None = None,
        positional: bool = True,
        always_in_help: bool = False,
        batch_method: Callable[[Iterable[Any]], Any] | None = None,
        visibility: ParameterVisibility = ParameterVisibility.PUBLIC,
        **engine_options: Any,
    ) -> None:
        if is_global:
            positional = False
        if config_path is not None and not {"section", "name"} <= set(config_path):
            raise ParameterException("config_path must be a dict with entries section and name")
        self.positional = positional
        self.always_in_help = always_in_help
        self._batch_method = batch_method
        self._config_path = dict(config_path) if config_path is not None else None
        self._counter = next(_counter)
        engine_default = _engine.MISSING if default is _no_value else default
        self.luigi_significant = significant
        """``significant`` as Luigi reports it: a PRIVATE parameter keeps it, though
        neither Luigi nor the engine lets a private value into the task id."""
        try:
            visible = ParameterVisibility(visibility)
        except ValueError:  # Luigi takes an unknown visibility as public
            visible = ParameterVisibility.PUBLIC
        super().__init__(
            default=engine_default,
            # Luigi leaves a private value out of the task id whatever `significant`
            # says; the engine refuses significant=True with PRIVATE.
            significant=significant and visible is not ParameterVisibility.PRIVATE,
            description=description,
            visibility=visible,
            **engine_options,
        )

    @property
    def _default(self) -> Any:
        return _no_value if self.default is _engine.MISSING else self.default

    # values --------------------------------------------------------------------

    def normalize(self, value: object) -> Any:
        """The canonical form of a value (``None`` stays ``None``, as in Luigi)."""
        if value is None:
            return None
        return super().normalize(value)

    def parse(self, text: Any) -> Any:
        """Read a value from its text form; values that are not text are normalized."""
        if not isinstance(text, str):
            return self.normalize(text)
        return super().parse(text)

    #: Optional parameters write None as ""; the others as "None" (as Luigi does).
    _optional = False

    def serialize(self, value: Any) -> str:
        """The text form of a value, as Luigi writes it.

        Raises:
            ParameterError: the value has no text form here.
        """
        if value is None:
            return "" if self._optional else "None"
        text = super().serialize(value)
        # Luigi's Parameter writes any value with str(); asyncflow's keeps str values.
        return text if isinstance(text, str) else str(text)

    def to_json(self, value: Any) -> _engine.JSONValue:
        # The identity comes from the text forms, as Luigi's task ids do.
        return None if value is None else self.serialize(value)

    def next_in_enumeration(self, value: Any) -> Any:
        """The next value of an enumerable type (Luigi's summaries use it), else None."""
        return None

    def _is_batchable(self) -> bool:
        return self._batch_method is not None

    def _parse_list(self, texts: Iterable[str]) -> Any:
        if self._batch_method is None:
            raise NotImplementedError("No batch method found")
        return self._batch_method(map(self.parse, texts))

    # where a missing value comes from ------------------------------------------

    def _values(self, family: str, name: str) -> Iterable[Any]:
        given = cmdline_values.get()
        if given is not None:
            text = given.get(f"{family}_{name}")
            if text:
                yield self.parse(text)
        yield self._config_value(family, name)
        if self._config_path is not None:
            yield self._config_value(self._config_path["section"], self._config_path["name"])
        yield self._default

    def _config_value(self, section: str, option: str) -> Any:
        config = get_config()
        if not config.has_option(section, option):
            return _no_value
        text = config.get(section, option)
        try:
            return self.parse(text)
        except (TypeError, ValueError) as exc:
            raise ParameterException(
                f"configuration [{section}] {option} = {_shown(text)}: {exc}"
            ) from None

    def has_task_value(self, task_name: str, param_name: str) -> bool:
        """Whether a value is found for ``task_name``'s ``param_name`` beyond the constructor."""
        return self.task_value_or_none(task_name, param_name) is not _no_value

    def task_value(self, task_name: str, param_name: str) -> Any:
        """The value found for ``task_name``'s ``param_name``, normalized.

        Raises:
            MissingParameterException: none was found.
        """
        value = self.task_value_or_none(task_name, param_name)
        if value is _no_value:
            raise MissingParameterException(f"{task_name}: requires the {param_name!r} parameter")
        return self.normalize(value)

    def task_value_or_none(self, task_name: str, param_name: str) -> Any:
        for value in self._values(task_name, param_name):
            if value is not _no_value:
                return value
        return _no_value


class Parameter(_LuigiParameter):
    """A parameter of any value; its text form is ``str(value)``."""

    def _convert(self, value: object) -> Any:
        # Its text form is its identity: a value without one (an int of more digits
        # than str() writes) is refused here, where the error can name the task.
        _engine._check_text(self._serialize(value))
        return value

    def _serialize(self, value: Any) -> str:
        return str(value)


StrParameter = Parameter


class OptionalParameter(Parameter):
    """A string parameter that may be None (``""`` on the command line)."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


OptionalStrParameter = OptionalParameter


class IntParameter(_LuigiParameter, _engine.IntParameter):
    """An integer parameter."""

    def next_in_enumeration(self, value: Any) -> Any:
        return value + 1


class OptionalIntParameter(IntParameter):
    """An integer parameter that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class FloatParameter(_LuigiParameter, _engine.FloatParameter):
    """A float parameter."""


class OptionalFloatParameter(FloatParameter):
    """A float parameter that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class BoolParameterParsing(enum.StrEnum):
    """How the command line reads a BoolParameter: ``--flag`` (implicit) or ``--flag true``."""

    IMPLICIT = "implicit"
    EXPLICIT = "explicit"


class BoolParameter(_LuigiParameter, _engine.BoolParameter):
    """A boolean parameter, False unless another default is given.

    On the command line ``--flag`` sets it (``--flag false`` also works).
    """

    parsing: BoolParameterParsing = BoolParameterParsing.IMPLICIT

    def __init__(self, default: Any = False, *args: Any, **kwargs: Any) -> None:
        parsing = kwargs.pop("parsing", None)
        if parsing is not None:
            self.parsing = BoolParameterParsing(parsing)
        super().__init__(default, *args, **kwargs)

    def normalize(self, value: object) -> Any:
        if isinstance(value, str) and not value:
            return False if self.default is not None else None
        return super().normalize(value)

    def _serialize(self, value: Any) -> str:
        return str(value)  # True / False, as Luigi writes them


class OptionalBoolParameter(BoolParameter):
    """A boolean parameter that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


# dates -------------------------------------------------------------------------------------


class _DateFormat(_LuigiParameter):
    """Dates and datetimes written with ``date_format`` (strftime) and snapped down
    to a whole ``interval`` of their unit counted from ``start``."""

    date_format: str = ""

    def __init__(
        self, default: Any = _no_value, interval: int = 1, start: Any = None, **kwargs: Any
    ) -> None:
        self.interval = interval
        self.start = start
        super().__init__(default, **kwargs)

    def _strptime(self, text: str) -> dt.datetime:
        try:
            return dt.datetime.strptime(text.strip(), self.date_format)
        except ValueError:
            example = dt.datetime(2026, 11, 23, 5, 30, 15).strftime(self.date_format)
            raise ValueError(f"expected a value like {example}, got {_shown(text)}") from None


class DateParameter(_DateFormat):
    """A date (``YYYY-MM-DD``); a datetime is taken as its date."""

    date_format = "%Y-%m-%d"

    def _convert(self, value: object) -> Any:
        if isinstance(value, dt.datetime):
            value = value.date()
        if not isinstance(value, dt.date):
            raise TypeError(f"expected a date, got {_shown(value)}")
        return self._snap(dt.date(value.year, value.month, value.day))

    def _parse(self, text: str) -> Any:
        return self._convert(self._strptime(text).date())

    def _serialize(self, value: Any) -> str:
        return str(value.strftime(self.date_format))

    def _snap(self, value: dt.date) -> dt.date:
        if self.interval == 1:
            return value
        start = self.start or dt.date(1970, 1, 1)
        return value - dt.timedelta(days=(value - start).days % self.interval)

    def next_in_enumeration(self, value: Any) -> Any:
        return value + dt.timedelta(days=self.interval)


class MonthParameter(DateParameter):
    """A month (``YYYY-MM``), held as the date of its first day."""

    date_format = "%Y-%m"

    def _snap(self, value: dt.date) -> dt.date:
        months = value.year * 12 + value.month - 1
        if self.interval != 1:
            start = self.start or dt.date(1970, 1, 1)
            months -= (months - (start.year * 12 + start.month - 1)) % self.interval
        return dt.date(months // 12, months % 12 + 1, 1)

    def next_in_enumeration(self, value: Any) -> Any:
        months = value.year * 12 + value.month - 1 + self.interval
        return dt.date(months // 12, months % 12 + 1, 1)


class YearParameter(DateParameter):
    """A year (``YYYY``), held as the date of its first day."""

    date_format = "%Y"

    def _snap(self, value: dt.date) -> dt.date:
        year = value.year
        if self.interval != 1:
            start = self.start or dt.date(1970, 1, 1)
            year -= (year - start.year) % self.interval
        return dt.date(year, 1, 1)

    def next_in_enumeration(self, value: Any) -> Any:
        return dt.date(value.year + self.interval, 1, 1)


class _DatetimeParameter(_DateFormat):
    _unit: dt.timedelta = dt.timedelta(hours=1)

    def _convert(self, value: object) -> Any:
        if not isinstance(value, dt.datetime):
            if isinstance(value, dt.date):
                value = dt.datetime(value.year, value.month, value.day)
            else:
                raise TypeError(f"expected a datetime, got {_shown(value)}")
        value = value.replace(tzinfo=None)
        start = self.start or dt.datetime(1970, 1, 1)
        step = self._unit * self.interval
        return value - (value - start) % step

    def _parse(self, text: str) -> Any:
        return self._convert(self._strptime(text))

    def _serialize(self, value: Any) -> str:
        return str(value.strftime(self.date_format))

    def next_in_enumeration(self, value: Any) -> Any:
        return value + self._unit * self.interval


class DateHourParameter(_DatetimeParameter):
    """A datetime at a whole hour (``YYYY-MM-DDTHH``)."""

    date_format = "%Y-%m-%dT%H"


class DateMinuteParameter(_DatetimeParameter):
    """A datetime at a whole minute (``YYYY-MM-DDTHHMM``, e.g. ``2026-11-23T0530``)."""

    date_format = "%Y-%m-%dT%H%M"
    _unit = dt.timedelta(minutes=1)

    def _parse(self, text: str) -> Any:
        try:
            return super()._parse(text)
        except ValueError as error:
            try:  # the older form, 2026-11-23T05H30
                return self._convert(dt.datetime.strptime(text.strip(), "%Y-%m-%dT%HH%M"))
            except ValueError:
                raise error from None


class DateSecondParameter(_DatetimeParameter):
    """A datetime at a whole second (``YYYY-MM-DDTHHMMSS``)."""

    date_format = "%Y-%m-%dT%H%M%S"
    _unit = dt.timedelta(seconds=1)


class DateIntervalParameter(_LuigiParameter):
    """A :mod:`~asyncflow.luigi.date_interval`: ``2026-11-23``, ``2026-W47``,
    ``2026-11``, ``2026`` or ``2026-11-01-2026-11-23``."""

    def _convert(self, value: object) -> Any:
        if not isinstance(value, _intervals.DateInterval):
            raise TypeError(f"expected a DateInterval, got {_shown(value)}")
        return value

    def _parse(self, text: str) -> Any:
        for kind in (
            _intervals.Date,
            _intervals.Week,
            _intervals.Month,
            _intervals.Year,
            _intervals.Custom,
        ):
            found = kind.parse(text)
            if found is not None:
                return found
        raise ValueError(
            f"expected a date interval like 2026-11-23, 2026-W47, 2026-11, got {_shown(text)}"
        )

    def _serialize(self, value: Any) -> str:
        return str(value)


# Possessive quantifiers throughout: digits, unit words and spaces are disjoint, so
# no match needs to give anything back, and the pattern runs in linear time (with
# plain ones, the runs of \s* backtrack cubically: "1w" + 200 spaces + "x" took 25 s).
_TIMEDELTA_WORDS: Final = re.compile(
    r"\s*+(?:(\d++)\s*+w(?:eeks?+)?+)?+\s*+(?:(\d++)\s*+d(?:ays?+)?+)?+"
    r"\s*+(?:(\d++)\s*+h(?:ours?+)?+)?+\s*+(?:(\d++)\s*+m(?:inutes?+)?+)?+"
    r"\s*+(?:(\d++)\s*+s(?:econds?+)?+)?+\s*+",
    re.IGNORECASE,
)


class TimeDeltaParameter(_LuigiParameter, _engine.TimeDeltaParameter):
    """A duration: ISO 8601 (``P1DT2H``), ``1 w 2 d 3 h 4 m 5 s``, or words (``2 days``)."""

    def _parse(self, text: str) -> Any:
        try:
            return super()._parse(text)
        except ValueError:
            match = _TIMEDELTA_WORDS.fullmatch(text)
            if match is None or not any(match.groups()):
                raise
            weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
            return dt.timedelta(
                weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
            )

    def _serialize(self, value: Any) -> str:
        weeks, days = divmod(value.days, 7)
        hours, rest = divmod(value.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{weeks} w {days} d {hours} h {minutes} m {seconds} s"


# structures ------------------------------------------------------------------------------


class EnumParameter(_LuigiParameter, _engine.EnumParameter[Any]):
    """A member of ``enum``, written as its name."""


class EnumListParameter(_LuigiParameter):
    """A tuple of members of ``enum``, written as their names joined by commas."""

    def __init__(self, default: Any = _no_value, *, enum: type[enum.Enum], **kwargs: Any) -> None:
        self._enum = enum
        super().__init__(default, **kwargs)

    def _convert(self, value: object) -> Any:
        if not isinstance(value, Iterable):
            raise TypeError(f"expected members of {self._enum.__name__}, got {_shown(value)}")
        members = tuple(value)
        for member in members:
            if not isinstance(member, self._enum):
                raise TypeError(f"{_shown(member)} is not a member of {self._enum.__name__}")
        return members

    def _parse(self, text: str) -> Any:
        if not text:
            return ()
        try:
            return tuple(self._enum[name.strip()] for name in text.split(","))
        except KeyError as exc:
            names = ", ".join(self._enum.__members__)
            raise ValueError(
                f"{_shown(exc.args[0])} is not a name of {self._enum.__name__} ({names})"
            ) from None

    def _serialize(self, value: Any) -> str:
        return ",".join(member.name for member in value)


class DictParameter(_LuigiParameter, _engine.DictParameter):
    """A JSON object, held as an immutable mapping (keys sorted). ``schema=`` is accepted
    and not checked."""

    def __init__(self, default: Any = _no_value, *args: Any, schema: Any = None, **kwargs: Any):
        self.schema = schema
        super().__init__(default, *args, **kwargs)

    def _serialize(self, value: Any) -> str:
        return json_of(value)  # Luigi's spacing: {"a": 1}


class OptionalDictParameter(DictParameter):
    """A JSON object that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class ListParameter(_LuigiParameter, _engine.ListParameter):
    """A JSON array, held as a tuple. ``schema=`` is accepted and not checked."""

    def __init__(self, default: Any = _no_value, *args: Any, schema: Any = None, **kwargs: Any):
        self.schema = schema
        super().__init__(default, *args, **kwargs)

    def _serialize(self, value: Any) -> str:
        return json_of(value)  # Luigi's spacing: [1, 2]


class OptionalListParameter(ListParameter):
    """A JSON array that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


_LONGEST_LITERAL: Final = 10_000


class TupleParameter(ListParameter):
    """A tuple; its text form is JSON (``[[1, 2], [3, 4]]``) or a Python tuple literal."""

    def _parse(self, text: str) -> Any:
        try:
            return super()._parse(text)
        except ValueError:
            expected = f"expected a JSON array or a tuple literal, got {_shown(text)}"
            if len(text) > _LONGEST_LITERAL:  # Python's parser is slow on such
                raise ValueError(
                    f"{expected}: a tuple literal has at most {_LONGEST_LITERAL:,} "
                    "characters (JSON may be longer)"
                ) from None
            try:
                data = ast.literal_eval(text)
            # Deep nesting overflows the parser's stack: MemoryError or RecursionError.
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise ValueError(expected) from None
            return self.normalize(_lists(data))


def _lists(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_lists(item) for item in value]
    return value


class OptionalTupleParameter(TupleParameter):
    """A tuple that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class NumericalParameter(_LuigiParameter):
    """A number of ``var_type`` with ``left_op(min_value, x)`` and ``right_op(x, max_value)``
    (by default ``min_value <= x < max_value``)."""

    def __init__(
        self,
        default: Any = _no_value,
        *,
        var_type: type | None = None,
        min_value: Any = None,
        max_value: Any = None,
        left_op: Callable[[Any, Any], bool] = operator.le,
        right_op: Callable[[Any, Any], bool] = operator.lt,
        **kwargs: Any,
    ) -> None:
        if var_type is None or min_value is None or max_value is None:
            raise ParameterException("NumericalParameter needs var_type, min_value and max_value")
        self._type = var_type
        self._min = min_value
        self._max = max_value
        self._left = left_op
        self._right = right_op
        self._bounds = (
            f"{min_value} {'<=' if left_op is operator.le else '<'} x "
            f"{'<=' if right_op is operator.le else '<'} {max_value}"
        )
        super().__init__(default, **kwargs)

    def _check(self, value: Any) -> Any:
        if self._left(self._min, value) and self._right(value, self._max):
            return value
        raise ValueError(f"{_shown(value)} is outside the permitted range {self._bounds}")

    def _convert(self, value: object) -> Any:
        return self._check(self._type(value))

    def _serialize(self, value: Any) -> str:
        return str(value)

    def _parse(self, text: str) -> Any:
        try:
            number = self._type(text)
        except (TypeError, ValueError, ArithmeticError):
            raise ValueError(f"expected a {self._type.__name__}, got {_shown(text)}") from None
        return self._check(number)


class OptionalNumericalParameter(NumericalParameter):
    """A bounded number that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class ChoiceParameter(_LuigiParameter):
    """One of ``choices`` (of ``var_type``, str by default)."""

    def __init__(
        self,
        default: Any = _no_value,
        *,
        choices: Iterable[Any] | None = None,
        var_type: type = str,
        **kwargs: Any,
    ) -> None:
        if choices is None:
            raise ParameterException("ChoiceParameter needs choices")
        self._type = var_type
        self._choices = frozenset(choices)
        self._shown = ", ".join(sorted(str(choice) for choice in self._choices))
        super().__init__(default, **kwargs)

    @property
    def choices(self) -> frozenset[Any]:
        return self._choices

    def _check(self, value: Any) -> Any:
        if value not in self._choices:
            raise ValueError(f"{_shown(value)} is not a valid choice ({self._shown})")
        return value

    def _convert(self, value: object) -> Any:
        return self._check(value)

    def _parse(self, text: str) -> Any:
        return self._check(self._type(text))

    def _serialize(self, value: Any) -> str:
        return str(value)


class OptionalChoiceParameter(ChoiceParameter):
    """A choice that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


class ChoiceListParameter(ChoiceParameter):
    """A tuple of choices, written joined by commas."""

    def _convert(self, value: object) -> Any:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TypeError(f"expected a list of choices, got {_shown(value)}")
        return tuple(self._check(item) for item in value)

    def _parse(self, text: str) -> Any:
        if not text:
            return ()
        return tuple(self._check(self._type(item.strip())) for item in text.split(","))

    def _serialize(self, value: Any) -> str:
        return ",".join(str(item) for item in value)


_LONGEST_FAMILY: Final = 200


class TaskParameter(_LuigiParameter):
    """A task class, written as its family name."""

    def _convert(self, value: object) -> Any:
        from .task import Task

        if not (isinstance(value, type) and issubclass(value, Task)):
            raise TypeError(f"expected a task class, got {_shown(value)}")
        return value

    def _parse(self, text: str) -> Any:
        from .task import TaskClassNotFoundException, task_class

        try:
            return task_class(text)
        except TaskClassNotFoundException as exc:
            if len(text) > _LONGEST_FAMILY:  # no family is that long: no need to list them
                raise ValueError(f"no task family {_shown(text)}") from None
            raise ValueError(str(exc)) from None

    def _serialize(self, value: Any) -> str:
        return str(value.get_task_family())


class PathParameter(_LuigiParameter):
    """A :class:`pathlib.Path`; ``absolute=True`` makes it absolute, ``exists=True``
    requires it to exist."""

    def __init__(
        self, default: Any = _no_value, *, absolute: bool = False, exists: bool = False, **kw: Any
    ) -> None:
        self.absolute = absolute
        self.exists = exists
        super().__init__(default, **kw)

    def _convert(self, value: object) -> Any:
        path = Path(value)  # type: ignore[arg-type]
        if self.absolute:
            path = path.absolute()
        if self.exists and not path.exists():
            raise ValueError(f"the path {path} does not exist")
        return path

    def _parse(self, text: str) -> Any:
        return self._convert(text)

    def _serialize(self, value: Any) -> str:
        return str(value)


class OptionalPathParameter(PathParameter):
    """A path that may be None."""

    _optional = True

    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        super().__init__(default, **kwargs)


def is_luigi_parameter(value: object) -> bool:
    """Whether ``value`` is one of this module's parameters."""
    return isinstance(value, _LuigiParameter)


def json_of(value: Any) -> str:
    """``json.dumps`` for parameter values (frozen mappings and tuples included)."""
    return json.dumps(_engine._thaw(value))
