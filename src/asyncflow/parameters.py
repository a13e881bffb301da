"""Task parameters: typed values that a task is constructed from and identified by.

Parameters are declared as class attributes of a task::

    class Report(Task):
        date = DateParameter()
        region = Parameter(default="eu")
        retries = IntParameter(default=3, significant=False)

Every parameter class turns values into one canonical, immutable form:

* ``normalize(value)`` accepts the native type or its text form (it is called on
  every value a task is built with, so the native case is a fast path);
* ``parse(text)`` reads the text form (command line, configuration);
* ``serialize(value)`` writes it back, so that ``parse(serialize(v)) == v``;
* ``to_json(value)`` gives a JSON-native value, equal for equal values, from which
  the task's identity hash is built.

These methods raise :class:`~asyncflow.errors.ParameterError` (a ``ValueError``)
describing the value, and naming ``Class.parameter`` once the parameter belongs
to a task class; the task module names the task instead. A bad ``default`` is
found when the parameter is declared.

Every parser runs in time linear in its input, and hostile input gets a
``ParameterError``, never another exception: text is bounded where Python's own
conversions are not (integers of at most 4,300 digits, the limit of
``int(str)``; JSON nested at most 100 levels deep), and text must be valid
Unicode (no lone surrogates: it could not be written as UTF-8). Error messages
quote at most a short prefix of a long value.

A parameter's ``visibility`` (:class:`ParameterVisibility`) says where its value
may be seen: a ``HIDDEN`` one is part of the task's identity but shown nowhere
(:data:`MASK` stands for it), a ``PRIVATE`` one is neither part of the identity
nor stored nor shown. Error messages about such a value never quote it. A
default may name an environment variable (``default=env("DB_PASSWORD")``),
read when a task is built.

A new parameter type subclasses ``Parameter[X]`` and overrides the hooks
``_convert`` (native values other than ``str`` and ``None``), ``_parse``,
``_serialize`` and ``_to_json``, which raise ``ValueError`` or ``TypeError``; the
base class handles ``None`` and ``""`` and turns those errors into
``ParameterError``.

``None`` is a valid value only for an *optional* parameter, one whose default is
``None``. Its text form is the empty string, so ``parse("")`` gives ``None``; for
a plain string parameter this means ``""`` and ``None`` are the same value, and
``normalize("")`` gives ``None`` (as Luigi's ``OptionalParameter`` does).
"""

from __future__ import annotations

import collections
import collections.abc
import datetime as dt
import enum
import json
import math
import operator
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeAlias, cast, final

from ._redact import MASK
from .errors import ConfigError, ParameterError, ParameterTypeError
from .errors import short_repr as _shown

if TYPE_CHECKING:
    # A TypeVar default makes a bare ``Parameter()`` a ``Parameter[str]`` for type
    # checkers; Python 3.11's own TypeVar has no ``default`` and needs none at runtime.
    from typing_extensions import TypeVar

    T = TypeVar("T", default=str)
else:
    from typing import TypeVar

    T = TypeVar("T")

E = TypeVar("E", bound=enum.Enum)

__all__ = [
    "MASK",
    "MISSING",
    "BoolParameter",
    "DateHourParameter",
    "DateParameter",
    "DictParameter",
    "EnumParameter",
    "EnvVar",
    "FloatParameter",
    "FrozenDict",
    "IntParameter",
    "JSONValue",
    "ListParameter",
    "Parameter",
    "ParameterVisibility",
    "TimeDeltaParameter",
    "env",
    "parameter_for_annotation",
]

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
"""A value the standard :mod:`json` module writes as-is."""


class _Missing(enum.Enum):
    """The type of :data:`MISSING` (an enum, so that type checkers can narrow it)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""The ``default`` of a parameter that has none: a value must be given."""


class ParameterVisibility(enum.IntEnum):
    """Where a parameter's value may be seen (Luigi's names and meaning).

    * ``PUBLIC`` (the default): shown and stored like any value.
    * ``HIDDEN``: part of the task's identity, but shown nowhere: ``***`` stands
      for it in ``repr(task)``, logs, error messages, the journal, summaries,
      graph renders and ``--help``, and the readable part of the task id leaves
      it out (the id's hash still covers it).
    * ``PRIVATE``: never part of the identity, never stored or shown anywhere;
      only the task's own code reads it. It cannot be ``significant=True``.
    """

    PUBLIC = 0
    HIDDEN = 1
    PRIVATE = 2


_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@final
class EnvVar:
    """A default read from an environment variable when a task is built: see :func:`env`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise ValueError(f"env() takes an environment variable's name, got {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"env({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvVar) and other.name == self.name

    def __hash__(self) -> int:
        return hash((EnvVar, self.name))

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The variable's text now (from ``environ``, default ``os.environ``).

        Raises:
            ConfigError: the variable is not set; the message names it.
        """
        text = (os.environ if environ is None else environ).get(self.name)
        if text is None:
            raise ConfigError(f"environment variable {self.name} is not set")
        return text


def env(name: str) -> EnvVar:
    """A parameter default read from the environment variable ``name``.

    ::

        class Load(asyncflow.Task):
            password = asyncflow.Parameter(
                default=asyncflow.env("DB_PASSWORD"),
                visibility=asyncflow.ParameterVisibility.PRIVATE,
            )

    The variable is read, and its text parsed, each time a task is built with
    no value for the parameter.

    Raises:
        ValueError: ``name`` is not a variable name.
    """
    return EnvVar(name)


def _describe(value: object) -> str:
    """Short ``repr`` of a value followed by its type, for error messages."""
    return f"{_shown(value)} ({type(value).__name__})"


def _check_text(text: str) -> str:
    """``text``, if it is valid Unicode; ``ValueError`` if it has a lone surrogate.

    Such a string (``"\\ud800"``, from ``surrogateescape`` decoding or a JSON
    escape) cannot be written as UTF-8: not to the journal, nor into a task id.
    """
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{_shown(text)} is not valid Unicode text: lone surrogate "
            f"{text[exc.start]!r} at index {exc.start}"
        ) from None
    return text


_HOOK_ERRORS: Final = (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)
"""What a parameter's hooks may raise for a bad value (AttributeError: the value
given to ``serialize`` is of another type; ArithmeticError: an overflow;
RecursionError: a structure nested beyond what Python handles)."""


class Parameter(Generic[T]):
    """A task parameter; used directly, a string parameter.

    Subclasses handle other types. A plain ``Parameter`` takes ``str`` values only:
    other types such as ``5`` are rejected rather than converted with ``str()``.
    Its text form is the string itself. With ``default=None`` it is optional and
    the empty string stands for ``None``.

    Args:
        default: the value used when none is given, normalized once here;
            ``MISSING`` (the default) makes the parameter required, ``None`` makes
            it optional.
            An :func:`env` default reads an environment variable when a
            task is built.
        significant: whether the value is part of the task's identity
            (default: yes, unless the parameter is ``PRIVATE``).
        description: help text for the command line.
        visibility: where the value may be seen (:class:`ParameterVisibility`).

    Raises:
        ParameterError: ``default`` is not a valid value for this parameter.
        TypeError: ``visibility`` is not a :class:`ParameterVisibility`.
    """

    type_name: str = "str"
    """How the command line's help names the type of the values."""

    def __init__(
        self,
        default: object = MISSING,
        *,
        significant: bool | None = None,
        description: str | None = None,
        visibility: ParameterVisibility = ParameterVisibility.PUBLIC,
    ) -> None:
        if not isinstance(visibility, ParameterVisibility):
            raise TypeError(
                f"visibility must be an asyncflow.ParameterVisibility, got {visibility!r}"
            )
        self.name: str | None = None
        self.owner_name: str | None = None
        self.visibility = visibility
        # A PRIVATE value is never part of the identity; significant=True with it is
        # refused when the task class is defined, where the error can name both.
        self.significant = visibility is not ParameterVisibility.PRIVATE
        if significant is not None:
            self.significant = significant
        self.description = description
        self.default: T | _Missing | EnvVar | None = MISSING
        self.default = self._declare_default(default)

    def _declare_default(self, default: object) -> T | _Missing | EnvVar | None:
        # Python 3.11 wraps exceptions raised in __set_name__ in RuntimeError, so a
        # bad default is reported here, where the name is not known yet; the
        # traceback points at the declaring line.
        if default is MISSING or default is None or isinstance(default, EnvVar):
            return default
        try:
            return self.normalize(default)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"invalid default for {type(self).__name__}: {self.problem(exc)}"
            ) from None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner_name = owner.__name__

    def __repr__(self) -> str:
        where = f" {self.owner_name}.{self.name}" if self.name is not None else ""
        default = self.default
        shown = repr(default) if self.is_public or type(default) in _SHOWN_DEFAULTS else MASK
        visibility = "" if self.is_public else f" {self.visibility.name}"
        return f"<{type(self).__name__}{where} default={shown}{visibility}>"

    @property
    def has_default(self) -> bool:
        """Whether the parameter has a default (possibly ``None``) and may be omitted."""
        return self.default is not MISSING

    @property
    def is_public(self) -> bool:
        """Whether values may be shown (``visibility`` is ``PUBLIC``)."""
        return self.visibility is ParameterVisibility.PUBLIC

    def shown(self, value: T | None) -> str:
        """The text that stands for ``value`` where people (or the journal) see it.

        Its text form, ``""`` for None; :data:`MASK` for a hidden or private
        parameter, whatever the value.
        """
        if not self.is_public:
            return MASK
        return "" if value is None else self.serialize(value)

    def default_text(self) -> str:
        """The default as the command line's help shows it.

        ``none``, ``$NAME`` for an :func:`env` default, :data:`MASK` for a
        hidden or private one.

        Raises:
            ValueError: the parameter has no default.
        """
        default = self.default
        if default is MISSING:
            raise ValueError(f"{self!r} has no default")
        if isinstance(default, EnvVar):
            return f"${default.name}"
        if default is None:
            return "none"
        return self.shown(default)

    def problem(self, error: Exception) -> str:
        """What an error message may say of a bad value: the error's own text,
        which quotes the value, only for a public parameter."""
        if isinstance(error, ParameterError) and error.problem is not None:
            return error.problem  # raised by a parameter's method: masked already
        if self.is_public:
            return str(error)
        kind = "private" if self.visibility is ParameterVisibility.PRIVATE else "hidden"
        return f"not a valid {self.type_name} (the value is not shown: the parameter is {kind})"

    def from_env(self, default: EnvVar) -> T:
        """The value of an :func:`env` default, read and parsed now.

        Raises:
            ConfigError: the variable is not set.
            ParameterError: its text does not parse (the message names the
                variable, and quotes the text only for a public parameter).
        """
        text = default.read()
        try:
            return self.parse(text)
        except ParameterError as exc:
            raise ParameterError(
                f"environment variable {default.name}: {self.problem(exc)}"
            ) from None

    def normalize(self, value: object) -> T:
        """Return the canonical, immutable form of a native value or its text form.

        Optional parameters also return ``None``.

        Raises:
            ParameterTypeError: the value has a type this parameter does not
                take (a ``ParameterError`` and a ``TypeError``).
            ParameterError: the value is not allowed (also a ``ValueError``).
        """
        if isinstance(value, str):
            return self.parse(value)
        try:
            if value is None:
                return self._none()
            return self._convert(value)
        except _HOOK_ERRORS as exc:
            raise self._error(exc) from None

    def parse(self, text: str) -> T:
        """Read a value from its text form (command line, configuration).

        Optional parameters read ``""`` as ``None``. Takes time linear in the
        length of ``text``.

        Raises:
            ParameterError: the text is not a valid value; the message quotes
                (the start of) it.
        """
        if not text and self.default is None:
            return cast(T, None)
        try:
            if type(text) is str and not text.isascii():
                _check_text(text)  # every parser's, so that no value holds a lone surrogate
            return self._parse(text)
        except _HOOK_ERRORS as exc:
            raise self._error(exc) from None

    def serialize(self, value: T) -> str:
        """Write a normalized value as text; ``parse(serialize(v)) == v``.

        Raises:
            ParameterError: ``value`` is not a value of this parameter (it
                was not normalized).
        """
        if value is None:
            return ""
        try:
            text = self._serialize(value)
            if type(text) is str and not text.isascii():
                _check_text(text)  # no text that cannot be written as UTF-8
        except _HOOK_ERRORS as exc:
            raise self._error(exc) from None
        return text

    def to_json(self, value: T) -> JSONValue:
        """A JSON-native form of a normalized value, equal for equal values.

        Raises:
            ParameterError: ``value`` is not a value of this parameter.
        """
        if value is None:
            return None
        try:
            return self._to_json(value)
        except _HOOK_ERRORS as exc:
            raise self._error(exc) from None

    def _error(self, error: Exception) -> ParameterError:
        """The ``ParameterError`` for a hook's error: naming ``Class.parameter``
        once the parameter is declared in a task class, else the parameter type."""
        if isinstance(error, ParameterError) and error.problem is not None:
            return error
        where = type(self).__name__ if self.name is None else f"{self.owner_name}.{self.name}"
        problem = self.problem(error)
        kind = ParameterTypeError if isinstance(error, TypeError) else ParameterError
        bad = kind(f"{where}: {problem}")
        bad.problem = problem
        return bad

    def _none(self) -> T:
        if self.default is None:
            return cast(T, None)
        raise TypeError(
            f"expected a {self.type_name}, got None "
            "(None is allowed only for a parameter whose default is None)"
        )

    # The hooks below implement the string parameter; subclasses override them.

    def _convert(self, value: object) -> T:
        """Normalize a value that is neither ``str`` nor ``None``."""
        raise TypeError(f"expected a str, got {_describe(value)}")

    def _parse(self, text: str) -> T:
        # str.__str__ turns a str subclass (a StrEnum member, say) into a plain str.
        if type(text) is not str:
            text = _check_text(str.__str__(text))
        return cast(T, text)

    def _serialize(self, value: T) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a str, got {_describe(value)}")
        return _check_text(value)

    def _to_json(self, value: T) -> JSONValue:
        return self._serialize(value)


_INT_DIGITS: Final = 4300
"""Python's default limit on the digits ``int(str)`` and ``str(int)`` convert."""
_INT_BOUND: Final = 10**_INT_DIGITS


def _bounded_int(value: int) -> int:
    if -_INT_BOUND < value < _INT_BOUND:
        return value
    raise ValueError(
        f"expected an int of at most {_INT_DIGITS:,} digits, got one of "
        f"{value.bit_length():,} bits (it has no text form)"
    )


class IntParameter(Parameter[int]):
    """An integer parameter; ``bool`` and ``float`` values are rejected.

    Text forms: ``42``, ``-7``, ``1_000``. At most 4,300 digits (Python's limit
    for converting an int to text and back).
    """

    type_name = "int"

    def normalize(self, value: object) -> int:
        if type(value) is int and -_INT_BOUND < value < _INT_BOUND:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> int:
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            raise TypeError(f"expected an int, got {_describe(value)}")
        # Objects with __index__ (IntEnum members, numpy integers) are exact integers.
        return _bounded_int(operator.index(value))  # type: ignore[arg-type]

    def _parse(self, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            hint = f" (at most {_INT_DIGITS:,} digits)" if len(text) > _INT_DIGITS else ""
            raise ValueError(f"expected an integer like 42, got {_shown(text)}{hint}") from None

    def _serialize(self, value: int) -> str:
        return str(self._to_json(value))

    def _to_json(self, value: int) -> int:
        if type(value) is not int:  # not normalized: only an int has this text form
            raise TypeError(f"expected an int, got {_describe(value)}")
        return _bounded_int(value)


def _finite(value: float, shown: object) -> float:
    """``value`` with -0.0 made 0.0, or ``ValueError`` if it is NaN or infinite."""
    if not math.isfinite(value):
        raise ValueError(
            f"expected a finite number, got {_shown(shown)} (NaN and infinity are not allowed)"
        )
    # Adding 0.0 turns -0.0 into 0.0: the two are equal, so their JSON must be too.
    return value + 0.0


class FloatParameter(Parameter[float]):
    """A finite floating-point parameter; ``int`` values are converted to ``float``.

    NaN and infinity are rejected: they have no JSON form. Text forms: ``1.5``,
    ``-2``, ``1e-3``.
    """

    type_name = "float"

    def normalize(self, value: object) -> float:
        if type(value) is float and math.isfinite(value):
            return value + 0.0  # -0.0 becomes 0.0: see _finite
        return super().normalize(value)

    def _convert(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a float or an int, got {_describe(value)}")
        try:
            return _finite(float(value), value)
        except OverflowError:
            raise ValueError(f"{_shown(value)} is too large for a float") from None

    def _parse(self, text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number like 1.5, got {_shown(text)}") from None
        return _finite(number, text)

    def _serialize(self, value: float) -> str:
        # The shortest text that reads back as the same float; NaN would not.
        return repr(_finite(value, value))

    def _to_json(self, value: float) -> JSONValue:
        return _finite(value, value)


_SHOWN_DEFAULTS: Final = frozenset({_Missing, EnvVar, type(None)})
"""Defaults that are no secret value: shown in a hidden parameter's repr too."""

_TRUE_TEXTS: Final = frozenset({"true", "1", "yes", "on"})
_FALSE_TEXTS: Final = frozenset({"false", "0", "no", "off"})


class BoolParameter(Parameter[bool]):
    """A boolean parameter, ``False`` unless another default is given.

    Only ``bool`` values and text are accepted (not ``1`` or ``0``). Text forms,
    in any case: ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``.
    """

    type_name = "bool"

    def __init__(
        self,
        default: object = False,
        *,
        significant: bool | None = None,
        description: str | None = None,
        visibility: ParameterVisibility = ParameterVisibility.PUBLIC,
    ) -> None:
        super().__init__(
            default, significant=significant, description=description, visibility=visibility
        )

    def normalize(self, value: object) -> bool:
        if value is True or value is False:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> bool:
        raise TypeError(f"expected a bool, got {_describe(value)}")

    def _parse(self, text: str) -> bool:
        folded = text.strip().lower()
        if folded in _TRUE_TEXTS:
            return True
        if folded in _FALSE_TEXTS:
            return False
        raise ValueError(
            f"expected a boolean (true/false, yes/no, on/off or 1/0), got {_shown(text)}"
        )

    def _serialize(self, value: bool) -> str:
        return "true" if self._to_json(value) else "false"

    def _to_json(self, value: bool) -> bool:
        if value is True or value is False:
            return value
        raise TypeError(f"expected a bool, got {_describe(value)}")


_DATE_TEXT: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(text: str, expected: str, shown: str) -> dt.date:
    """The date of an exact ``YYYY-MM-DD`` text, or ``ValueError`` quoting ``shown``."""
    if _DATE_TEXT.fullmatch(text) is None:
        raise ValueError(f"expected {expected}, got {_shown(shown)}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"expected {expected}, got {_shown(shown)}: {exc}") from None


class DateParameter(Parameter[dt.date]):
    """A calendar date parameter (``datetime.date``; a ``datetime`` is rejected).

    Text form: ISO 8601 ``YYYY-MM-DD``, e.g. ``2026-11-23``.
    """

    type_name = "date (YYYY-MM-DD)"

    def normalize(self, value: object) -> dt.date:
        if type(value) is dt.date:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> dt.date:
        if isinstance(value, dt.datetime):
            raise TypeError(f"expected a date, got the datetime {_shown(value)}; use its .date()")
        if not isinstance(value, dt.date):
            raise TypeError(f"expected a date, got {_describe(value)}")
        return dt.date(value.year, value.month, value.day)

    def _parse(self, text: str) -> dt.date:
        return _parse_date(text.strip(), "a date like 2026-11-23", text)

    def _serialize(self, value: dt.date) -> str:
        return value.isoformat()

    def _to_json(self, value: dt.date) -> JSONValue:
        return value.isoformat()


_DATE_HOUR_TEXT: Final = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2})(?::00(?::00)?)?")


class DateHourParameter(Parameter[dt.datetime]):
    """A naive ``datetime.datetime`` at a whole hour (minutes, seconds and microseconds zero).

    Datetimes with a timezone are rejected. Text form: ``2026-11-23T05``; parsing
    also accepts ``2026-11-23T05:00``, ``2026-11-23T05:00:00`` and ``2026-11-23 05``.
    """

    type_name = "date and hour (YYYY-MM-DDTHH)"

    def normalize(self, value: object) -> dt.datetime:
        if (
            type(value) is dt.datetime
            and value.tzinfo is None
            and not (value.minute or value.second or value.microsecond)
        ):
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime at a whole hour, got {_describe(value)}")
        if value.tzinfo is not None:
            raise ValueError(f"expected a naive datetime (no timezone), got {_shown(value)}")
        if value.minute or value.second or value.microsecond:
            raise ValueError(
                "expected a datetime at a whole hour (minute, second and microsecond zero), "
                f"got {_shown(value)}"
            )
        return dt.datetime(value.year, value.month, value.day, value.hour)

    def _parse(self, text: str) -> dt.datetime:
        expected = "a date and hour like 2026-11-23T05"
        match = _DATE_HOUR_TEXT.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"expected {expected}, got {_shown(text)}")
        day = _parse_date(match[1], expected, text)
        hour = int(match[2])
        if hour > 23:
            raise ValueError(f"expected {expected}, got {_shown(text)}: hour must be in 0..23")
        return dt.datetime(day.year, day.month, day.day, hour)

    def _serialize(self, value: dt.datetime) -> str:
        # Not strftime: its padding of years before 1000 differs between platforms.
        return f"{value.date().isoformat()}T{value.hour:02d}"

    def _to_json(self, value: dt.datetime) -> JSONValue:
        return self._serialize(value)


# Every quantifier is possessive (``++``, ``*+``, ``?+``): numbers, units and spaces
# are disjoint, so giving back what one matched can never help another match, and
# without backtracking each pattern runs in time linear in the text. (With plain
# quantifiers, the compact form's runs of ``\s*`` made "1w" + 200 spaces + "x"
# take seconds: cubic backtracking.)
_NUMBER: Final = r"(\d++(?:\.\d++)?+|\.\d++)"
_ISO_NUMBER: Final = r"(\d++(?:[.,]\d++)?+|[.,]\d++)"  # ISO 8601 allows a decimal comma
_ISO_DURATION: Final = re.compile(
    rf"P(?:{_ISO_NUMBER}W)?+(?:{_ISO_NUMBER}D)?+"
    rf"(?:T(?:{_ISO_NUMBER}H)?+(?:{_ISO_NUMBER}M)?+(?:{_ISO_NUMBER}S)?+)?+",
    re.IGNORECASE,
)
_COMPACT_DURATION: Final = re.compile(
    rf"(?:{_NUMBER}\s*+w)?+\s*+(?:{_NUMBER}\s*+d)?+\s*+(?:{_NUMBER}\s*+h)?+"
    rf"\s*+(?:{_NUMBER}\s*+m)?+\s*+(?:{_NUMBER}\s*+s)?+",
    re.IGNORECASE,
)
_SECONDS: Final = re.compile(_NUMBER)
_CALENDAR_UNITS: Final = re.compile(r"\s*+P[^TYM]*+[YM]", re.IGNORECASE)
_MAX_NUMBER_LENGTH: Final = 64
"""Characters in one number of a duration: more is no duration, and converting it
exactly would be slow (or, past 4,300 digits, refused by ``int``)."""
_MICROSECONDS_PER: Final = (604_800_000_000, 86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000)
"""Microseconds in a week, day, hour, minute and second: the units of the patterns."""
_ZERO: Final = dt.timedelta(0)


def _duration_microseconds(text: str) -> int | None:
    """Whole microseconds in a duration text (rounded), or ``None`` if it has no known form."""
    match = _ISO_DURATION.fullmatch(text)
    if match is None or text[-1] in "Tt":  # "PT" and "P1DT" name no time part
        match = _COMPACT_DURATION.fullmatch(text)
    if match is not None:
        amounts = zip(match.groups(), _MICROSECONDS_PER, strict=True)
        found = [(amount, unit) for amount, unit in amounts if amount is not None]
    elif _SECONDS.fullmatch(text) is not None:
        found = [(text, 1_000_000)]
    else:
        return None
    if not found:
        return None
    for amount, _ in found:
        if len(amount) > _MAX_NUMBER_LENGTH:
            raise ValueError(
                f"expected a duration, got {_shown(text)}: a number in it has more than "
                f"{_MAX_NUMBER_LENGTH} characters"
            )
    total = sum(Fraction(amount.replace(",", ".")) * unit for amount, unit in found)
    return round(total)


class TimeDeltaParameter(Parameter[dt.timedelta]):
    """A non-negative duration (``datetime.timedelta``), to the microsecond.

    Text forms (units in any case):

    * ISO 8601: ``P1DT2H30M``, ``PT90S``, ``P2W``, ``PT1.5S`` (no years or months:
      their length varies);
    * compact: ``1d2h30m15s``, ``1d 2h``, ``90s``, ``1.5h`` (units w, d, h, m, s);
    * a bare number of seconds: ``3600``, ``0.25``.

    ``serialize`` writes ISO 8601 with days, hours, minutes and (fractional)
    seconds: ``P1DT2H30M15S``, ``PT0.5S``, and ``PT0S`` for zero.
    """

    type_name = "duration (e.g. P1DT2H30M, 1d2h30m or seconds)"

    def normalize(self, value: object) -> dt.timedelta:
        if type(value) is dt.timedelta and value.days >= 0:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> dt.timedelta:
        if not isinstance(value, dt.timedelta):
            raise TypeError(
                f"expected a timedelta, got {_describe(value)}; "
                "give a timedelta or a text such as '3600' or 'PT1H'"
            )
        if value < _ZERO:
            raise ValueError(f"expected a non-negative duration, got {_shown(value)}")
        return dt.timedelta(value.days, value.seconds, value.microseconds)

    def _parse(self, text: str) -> dt.timedelta:
        microseconds = _duration_microseconds(text.strip())
        if microseconds is None:
            hint = "; years and months are not supported" if _CALENDAR_UNITS.match(text) else ""
            raise ValueError(
                "expected a duration like P1DT2H30M, 1d2h30m or 3600 (seconds), "
                f"got {_shown(text)}{hint}"
            )
        try:
            return dt.timedelta(microseconds=microseconds)
        except OverflowError:
            raise ValueError(
                f"duration {_shown(text)} is too long (at most {dt.timedelta.max})"
            ) from None

    def _serialize(self, value: dt.timedelta) -> str:
        hours, rest = divmod(value.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        date_part = f"{value.days}D" if value.days else ""
        time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        if seconds or value.microseconds:
            fraction = f".{value.microseconds:06d}".rstrip("0").rstrip(".")
            time_part += f"{seconds}{fraction}S"
        if not (date_part or time_part):
            return "PT0S"
        return f"P{date_part}T{time_part}" if time_part else f"P{date_part}"

    def _to_json(self, value: dt.timedelta) -> JSONValue:
        return self._serialize(value)


_Enum: Final = enum.Enum  # EnumParameter's argument named ``enum`` hides the module


class EnumParameter(Parameter[E]):
    """A parameter whose values are the members of an :class:`enum.Enum`.

    Members are given as themselves or as text: a member's *name* (``RED``), or,
    when the text is no name, the text of its value (``red``, ``1``).
    ``serialize`` and ``to_json`` give the name.

    Args:
        enum: the Enum class (required).

    Raises:
        TypeError: ``enum`` is not an Enum class.
        ParameterError: ``default`` is not a member of ``enum``.
    """

    def __init__(
        self,
        *,
        enum: type[E],
        default: object = MISSING,
        significant: bool | None = None,
        description: str | None = None,
        visibility: ParameterVisibility = ParameterVisibility.PUBLIC,
    ) -> None:
        if not (isinstance(enum, type) and issubclass(enum, _Enum)):
            raise TypeError(f"EnumParameter(enum=...) must be an Enum class, got {enum!r}")
        self.enum = enum
        self._by_name: dict[str, E] = dict(enum.__members__)
        self._by_value: dict[str, E] = {}
        for member in enum:
            self._by_value.setdefault(str(member.value), member)
        self._names = ", ".join(member.name for member in enum)
        self.type_name = f"{enum.__name__} ({'|'.join(member.name for member in enum)})"
        super().__init__(
            default, significant=significant, description=description, visibility=visibility
        )

    def normalize(self, value: object) -> E:
        if type(value) is self.enum:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> E:
        raise TypeError(
            f"expected a member of {self.enum.__name__} or its name, got {_describe(value)}"
        )

    def _parse(self, text: str) -> E:
        member = self._by_name.get(text)
        if member is None:
            member = self._by_value.get(text)
        if member is None:
            raise ValueError(
                f"expected a name of {self.enum.__name__} ({self._names}), got {_shown(text)}"
            )
        return member

    def _serialize(self, value: E) -> str:
        return value.name

    def _to_json(self, value: E) -> JSONValue:
        return value.name


@final
class FrozenDict(Mapping[str, Any]):
    """An immutable, hashable mapping; the normalized form of a ``DictParameter`` value.

    It compares equal to any mapping with the same items, like ``dict`` does, and
    its hash does not depend on the order of the items. Values must be hashable
    for ``hash()`` to work.

    >>> FrozenDict({"b": 1, "a": 2}) == {"a": 2, "b": 1}
    True
    """

    __slots__ = ("_data", "_hash", "_json")

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /) -> None:
        self._data: dict[str, Any] = dict(items)
        self._hash: int | None = None
        self._json = False  # set by _freeze once the contents are known to be frozen JSON

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (self._data,))


_JSON_KINDS: Final = "str, int, float, bool, None, list, tuple or dict with str keys"


_SHOWN_LEVELS: Final = 6  # of the path to a bad element, in an error message


class _NotJSON(Exception):
    """Raised inside ``_freeze``; collects the path to the bad element on the way out."""

    def __init__(self, error: type[Exception], problem: str) -> None:
        super().__init__(problem)
        self.error = error
        self.problem = problem
        self.path: list[str] = []

    def to_error(self) -> Exception:
        """The ``TypeError`` or ``ValueError`` to show, naming the element's path."""
        path = self.path[::-1]
        if len(path) > _SHOWN_LEVELS:  # deep: the outermost steps and the innermost one
            path[_SHOWN_LEVELS - 1 : -1] = [f"...({len(path) - _SHOWN_LEVELS} more)..."]
        where = "".join(path) or "the value"
        return self.error(f"element {where}: {self.problem}")


_MAX_DEPTH: Final = 100
"""Levels of lists and dicts a JSON parameter value may nest: deeper is no
sensible parameter (or a list that contains itself), and Python's recursion in
hashing, comparing and writing it would fail somewhere else."""


def _freeze(value: object, depth: int = 0) -> object:
    """A deep-frozen copy of JSON-like ``value``: tuples for lists, FrozenDicts for dicts.

    Already frozen parts are returned as they are, without copying. ``depth``
    is how many containers hold ``value``.
    """
    kind = type(value)
    if kind is str:
        return value if cast(str, value).isascii() else _freeze_text(cast(str, value))
    if kind is bool or value is None:
        return value
    if kind is int:
        return _freeze_int(cast(int, value))
    if kind is float:
        return _freeze_float(cast(float, value))
    if depth >= _MAX_DEPTH and isinstance(value, list | tuple | Mapping):
        raise _NotJSON(
            ValueError,
            f"nested more than {_MAX_DEPTH} levels deep (does a list or dict contain itself?)",
        )
    if kind is tuple or kind is list:
        return _freeze_sequence(cast("tuple[object, ...] | list[object]", value), depth)
    if kind is FrozenDict and cast(FrozenDict, value)._json:
        return value
    return _freeze_other(value, depth)


def _freeze_text(value: str) -> str:
    try:
        return _check_text(value)
    except ValueError as exc:
        raise _NotJSON(ValueError, str(exc)) from None


def _freeze_int(value: int) -> int:
    try:
        return _bounded_int(value)
    except ValueError as exc:
        raise _NotJSON(ValueError, str(exc)) from None


def _freeze_float(value: float) -> float:
    if not math.isfinite(value):
        raise _NotJSON(ValueError, f"{value!r} is not allowed (NaN and infinity have no JSON form)")
    return value + 0.0  # -0.0 == 0.0, so both must give the same JSON


def _freeze_other(value: object, depth: int) -> object:
    """Freeze the rarer kinds: mappings and subclasses of the JSON types."""
    if isinstance(value, Mapping):
        return _freeze_mapping(value, depth)
    if isinstance(value, list | tuple):
        return _freeze_sequence(value, depth)
    # Subclasses (StrEnum and IntEnum members, numpy floats) become the plain type.
    if isinstance(value, str):
        return _freeze(str.__str__(value))
    if isinstance(value, int):
        return _freeze_int(int(value))
    if isinstance(value, float):
        return _freeze_float(float(value))
    raise _NotJSON(TypeError, f"{_describe(value)} is not JSON; allowed are {_JSON_KINDS}")


def _freeze_sequence(
    value: tuple[object, ...] | list[object], depth: int = 0
) -> tuple[object, ...]:
    if type(value) is tuple:
        for item in value:
            # Plain scalars need no copy, if the text is ASCII (no lone surrogate
            # then) and the ints have a text form.
            kind = type(item)
            if kind is str:
                if not cast(str, item).isascii():
                    break
            elif kind is int:
                if not -_INT_BOUND < cast(int, item) < _INT_BOUND:
                    break
            elif kind is not bool and item is not None:
                break
        else:
            return value  # the common case, a normalized tuple of scalars: no copy
    frozen: list[object] = []
    depth += 1
    try:
        for item in value:
            frozen.append(_freeze(item, depth))
    except _NotJSON as exc:
        exc.path.append(f"[{len(frozen)}]")  # the failing item is the next one
        raise
    if type(value) is tuple and all(a is b for a, b in zip(frozen, value, strict=True)):
        return value
    return tuple(frozen)


def _freeze_mapping(value: Mapping[Any, object], depth: int = 0) -> FrozenDict:
    for key in value:
        if not isinstance(key, str):
            raise _NotJSON(TypeError, f"key {_describe(key)} is not a str (JSON keys are strings)")
        if not key.isascii():
            try:
                _check_text(key)
            except ValueError as exc:
                raise _NotJSON(ValueError, f"key {exc}") from None
    data: dict[str, object] = {}
    depth += 1
    for key in sorted(value):  # one canonical order, whatever order the items came in
        try:
            data[str.__str__(key)] = _freeze(value[key], depth)
        except _NotJSON as exc:
            exc.path.append(f"[{_shown(key)}]")
            raise
    frozen = FrozenDict(data)
    frozen._json = True
    return frozen


def _thaw(value: object) -> JSONValue:
    """The plain JSON form (lists and dicts) of a value made by ``_freeze``."""
    if type(value) is tuple:
        return [_thaw(item) for item in value]
    if type(value) is FrozenDict:
        return {key: _thaw(item) for key, item in value.items()}
    return cast(JSONValue, value)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        counts = collections.Counter(key for key, _ in pairs)
        twice = next(key for key, count in counts.items() if count > 1)
        raise ValueError(f"key {_shown(twice)} appears twice")
    return data


def _load_json(text: str, expected: str, kind: type) -> object:
    """Parse JSON text that must be of ``kind``, or raise ``ValueError`` quoting it."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ValueError(f"expected {expected}, got {_shown(text)}: {exc}") from None
    except RecursionError:
        raise ValueError(
            f"expected {expected}, got {_shown(text)}: nested more than {_MAX_DEPTH} levels deep"
        ) from None
    if not isinstance(data, kind):
        raise ValueError(f"expected {expected}, got {_shown(text)}")
    return data


def _canonical_json(value: JSONValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _frozen_or_error(value: object) -> object:
    try:
        return _freeze(value)
    except _NotJSON as exc:
        raise exc.to_error() from None


class ListParameter(Parameter[tuple[Any, ...]]):
    """A list of JSON values, normalized to a deep-frozen tuple.

    Takes a list or tuple whose contents are str, int, float, bool, None, lists,
    tuples and dicts with str keys; nested lists become tuples and nested dicts
    :class:`FrozenDict`. JSON types are kept as given, so ``[1]`` and ``[1.0]``
    are different values to the identity hash. Text form: a JSON array, e.g.
    ``["a", 1, {"k": true}]``; ``serialize`` writes canonical JSON (sorted keys,
    no spaces).
    """

    type_name = "JSON list"

    def normalize(self, value: object) -> tuple[Any, ...]:
        if type(value) is tuple or type(value) is list:
            try:
                return cast(tuple[Any, ...], _frozen_or_error(value))
            except _HOOK_ERRORS as exc:
                raise self._error(exc) from None
        return super().normalize(value)

    def _convert(self, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list or tuple, got {_describe(value)}")
        return cast(tuple[Any, ...], _frozen_or_error(value))

    def _parse(self, text: str) -> tuple[Any, ...]:
        data = _load_json(text, 'a JSON array like ["a", 1]', list)
        return cast(tuple[Any, ...], _frozen_or_error(data))

    def _serialize(self, value: tuple[Any, ...]) -> str:
        return _canonical_json(self._to_json(value))

    def _to_json(self, value: tuple[Any, ...]) -> JSONValue:
        # Frozen again: for a normalized value, a walk that copies nothing; for
        # any other, the checks normalize() makes (a list containing itself...).
        return _thaw(self._convert(value))


class DictParameter(Parameter[FrozenDict]):
    """A mapping from str to JSON values, normalized to a deep-frozen :class:`FrozenDict`.

    Takes any mapping with str keys; the contents follow the rules of
    :class:`ListParameter`. Key order never matters: normalized dicts hold their
    keys in sorted order. Text form: a JSON object,
    e.g. ``{"region": "eu", "limit": 10}``; ``serialize`` writes canonical JSON.
    """

    type_name = "JSON object"

    def normalize(self, value: object) -> FrozenDict:
        if type(value) is FrozenDict and value._json:
            return value
        return super().normalize(value)

    def _convert(self, value: object) -> FrozenDict:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping with str keys, got {_describe(value)}")
        return cast(FrozenDict, _frozen_or_error(value))

    def _parse(self, text: str) -> FrozenDict:
        data = _load_json(text, 'a JSON object like {"key": 1}', dict)
        return cast(FrozenDict, _frozen_or_error(data))

    def _serialize(self, value: FrozenDict) -> str:
        return _canonical_json(self._to_json(value))

    def _to_json(self, value: FrozenDict) -> JSONValue:
        # Frozen again, as ListParameter does; a normalized dict is returned at once.
        return _thaw(self._convert(value))


_SUPPORTED_ANNOTATIONS: Final = (
    "str, int, float, bool, datetime.date, datetime.datetime, datetime.timedelta, "
    "an Enum subclass, list/tuple/Sequence, dict/Mapping with str keys, "
    "and X | None of these"
)
_Factory: TypeAlias = Callable[[object, ParameterVisibility], Parameter[Any]]
_SCALAR_PARAMETERS: Final[dict[object, type[Parameter[Any]]]] = {
    str: Parameter,
    int: IntParameter,
    float: FloatParameter,
    bool: BoolParameter,
    # Looked up by identity, so datetime (a subclass of date) cannot match date.
    dt.datetime: DateHourParameter,
    dt.date: DateParameter,
    dt.timedelta: TimeDeltaParameter,
}
_SEQUENCE_ORIGINS: Final = (list, tuple, collections.abc.Sequence)
_MAPPING_ORIGINS: Final = (dict, collections.abc.Mapping)


def _without_none(annotation: object) -> object:
    """``X`` for ``X | None`` or ``Optional[X]``; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _unannotated(annotation: object) -> tuple[object, ParameterVisibility | None]:
    """The type inside ``Annotated[...]``, and a visibility found among its extras."""
    visibility = None
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, ParameterVisibility):
                visibility = extra
    return annotation, visibility


def _factory_for(annotation: object) -> _Factory | None:
    scalar = _SCALAR_PARAMETERS.get(annotation)
    if scalar is None:
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            enum_class = annotation
            return lambda default, visibility: EnumParameter(
                enum=enum_class, default=default, visibility=visibility
            )
        origin = typing.get_origin(annotation) or annotation
        args = typing.get_args(annotation)
        if origin in _SEQUENCE_ORIGINS:
            scalar = ListParameter
        elif origin in _MAPPING_ORIGINS and (not args or args[0] is str):
            scalar = DictParameter
        else:
            return None
    kind = scalar
    return lambda default, visibility: kind(default, visibility=visibility)


def parameter_for_annotation(annotation: object, default: object = MISSING) -> Parameter[Any]:
    """Build the parameter for a type annotation, as the ``@task`` decorator does.

    ``X | None`` gives the parameter for ``X``; it accepts ``None`` only when
    ``default`` is ``None``. Element types of lists and dicts are not checked, only
    that the contents are JSON. ``Annotated[X, ParameterVisibility.HIDDEN]``
    gives a hidden parameter (likewise ``PRIVATE``).

    >>> parameter_for_annotation(int, default="3").default
    3

    Raises:
        TypeError: the annotation is not supported (for instance, still a string).
        ParameterError: ``default`` is not a valid value for the parameter.
    """
    inner, visibility = _unannotated(annotation)
    inner, inside = _unannotated(_without_none(inner))  # Annotated[X, ...] | None
    factory = _factory_for(inner)
    if factory is None:
        hint = (
            " (resolve string annotations with typing.get_type_hints)"
            if isinstance(annotation, str)
            else ""
        )
        raise TypeError(
            f"unsupported parameter annotation {annotation!r}{hint}; "
            f"supported are {_SUPPORTED_ANNOTATIONS}"
        )
    for found in (visibility, inside):
        if found is not None:
            return factory(default, found)
    return factory(default, ParameterVisibility.PUBLIC)
