from __future__ import annotations

import collections.abc
import datetime as dt
import enum
import math
import pickle
import typing
from typing import Annotated, Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

import asyncflow.parameters as parameters_module
from asyncflow.errors import ParameterError
from asyncflow.parameters import (
    MISSING,
    BoolParameter,
    DateHourParameter,
    DateParameter,
    DictParameter,
    EnumParameter,
    FloatParameter,
    FrozenDict,
    IntParameter,
    ListParameter,
    Parameter,
    TimeDeltaParameter,
    parameter_for_annotation,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = 2
    CRIMSON = "red"  # an alias of RED


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
json_lists = st.lists(json_values, max_size=5)
json_dicts = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


# --- the module -------------------------------------------------------------


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps __all__ in: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_names_exist() -> None:
    """__all__ is sorted (isort-style) and every name in it is defined."""
    names = parameters_module.__all__
    assert names == sorted(names, key=_isort_key)
    assert all(hasattr(parameters_module, name) for name in names)


def test_every_parameter_class_is_exported() -> None:
    """Every Parameter subclass defined in the module is in __all__."""
    defined = {
        name
        for name, value in vars(parameters_module).items()
        if isinstance(value, type) and issubclass(value, Parameter) and not name.startswith("_")
    }
    assert defined <= set(parameters_module.__all__)


# --- behaviour shared by all parameters ---------------------------------------


def test_parameter_without_default_is_required() -> None:
    """A parameter declared without a default has none."""
    param = IntParameter()
    assert param.default is MISSING
    assert not param.has_default


def test_set_name_records_name_and_owner() -> None:
    """Declaring a parameter in a class records its attribute and class names."""

    class Owner:
        size = IntParameter(default=1)

    assert Owner.size.name == "size"
    assert Owner.size.owner_name == "Owner"
    assert "Owner.size" in repr(Owner.size)


def test_significant_and_description_are_kept() -> None:
    """significant and description are stored as given."""
    param = Parameter(significant=False, description="the region")
    assert param.significant is False
    assert param.description == "the region"


def test_default_is_normalized_at_declaration() -> None:
    """A default given as text is stored in its normalized form."""
    assert IntParameter(default="3").default == 3
    assert DateParameter(default="2026-11-23").default == dt.date(2026, 11, 23)


def test_bad_default_raises_parameter_error() -> None:
    """An invalid default raises ParameterError naming the parameter class and value."""
    with pytest.raises(ParameterError, match=r"IntParameter.*'many'"):

        class Owner:
            count = IntParameter(default="many")


def test_bad_default_type_raises_parameter_error() -> None:
    """A default of the wrong type raises ParameterError."""
    with pytest.raises(ParameterError, match="DateParameter"):
        DateParameter(default=dt.datetime(2026, 1, 1))


def test_none_default_makes_parameter_optional() -> None:
    """With default None, the parameter has a default and accepts None."""
    param = IntParameter(default=None)
    assert param.has_default
    assert param.normalize(None) is None


def test_required_parameter_rejects_none() -> None:
    """A parameter without default None rejects None with a TypeError."""
    with pytest.raises(TypeError, match="None"):
        IntParameter(default=1).normalize(None)


@pytest.mark.parametrize(
    "param",
    [
        IntParameter(default=None),
        FloatParameter(default=None),
        BoolParameter(default=None),
        DateParameter(default=None),
        DateHourParameter(default=None),
        TimeDeltaParameter(default=None),
        EnumParameter(enum=Color, default=None),
        ListParameter(default=None),
        DictParameter(default=None),
        Parameter(default=None),
    ],
)
def test_optional_none_round_trips_through_empty_text(param: Parameter[Any]) -> None:
    """None serializes to the empty string, which parses back to None."""
    assert param.serialize(None) == ""
    assert param.parse("") is None
    assert param.to_json(None) is None


def test_required_parameter_rejects_empty_text() -> None:
    """Without default None, the empty string is not a value of an int parameter."""
    with pytest.raises(ValueError, match="''"):
        IntParameter().parse("")


# --- Parameter (str) --------------------------------------------------------------


@given(st.text())
def test_str_round_trip(value: str) -> None:
    """A string serializes to itself and parses back."""
    param = Parameter()
    assert param.serialize(value) == value
    assert param.parse(param.serialize(value)) == value


def test_str_rejects_non_str() -> None:
    """A str parameter rejects an int instead of calling str() on it."""
    with pytest.raises(TypeError, match=r"5 \(int\)"):
        Parameter().normalize(5)


def test_str_subclass_becomes_plain_str() -> None:
    """A StrEnum member given to a str parameter becomes a plain str."""
    value = Parameter().normalize(Mode.FAST)
    assert type(value) is str
    assert value == "fast"


def test_required_str_keeps_empty_string() -> None:
    """A required str parameter keeps the empty string as a value."""
    assert Parameter().normalize("") == ""


def test_optional_str_reads_empty_string_as_none() -> None:
    """An optional str parameter normalizes the empty string to None."""
    assert Parameter(default=None).normalize("") is None


@given(st.none() | st.text(min_size=1))
def test_optional_str_round_trip(value: str | None) -> None:
    """An optional str parameter round-trips None and every non-empty string."""
    param: Parameter[str | None] = Parameter(default=None)
    assert param.parse(param.serialize(value)) == value


# --- IntParameter ---------------------------------------------------------------


@given(st.integers())
def test_int_round_trip(value: int) -> None:
    """Every int survives serialize then parse, and to_json is the int."""
    param = IntParameter()
    assert param.parse(param.serialize(value)) == value
    assert param.to_json(value) == value


@pytest.mark.parametrize(("text", "expected"), [("42", 42), ("-7", -7), ("1_000", 1000)])
def test_int_parses_known_text(text: str, expected: int) -> None:
    """Decimal integer text parses to the int."""
    assert IntParameter().normalize(text) == expected


@pytest.mark.parametrize("text", ["4.2", "abc", "0x10", "1e3"])
def test_int_rejects_bad_text(text: str) -> None:
    """Text that is no decimal integer raises ValueError quoting it."""
    with pytest.raises(ValueError, match=repr(text)):
        IntParameter().parse(text)


@pytest.mark.parametrize("value", [True, 3.0, dt.date(2026, 1, 1)])
def test_int_rejects_other_types(value: object) -> None:
    """bool, float and other types raise TypeError naming the value."""
    with pytest.raises(TypeError, match="expected an int"):
        IntParameter().normalize(value)


def test_int_enum_becomes_plain_int() -> None:
    """An IntEnum member is an exact integer and becomes a plain int."""
    value = IntParameter().normalize(Level.LOW)
    assert type(value) is int
    assert value == 1


# --- FloatParameter ---------------------------------------------------------------


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trip(value: float) -> None:
    """Every finite float survives serialize then parse exactly."""
    param = FloatParameter()
    normalized = param.normalize(value)
    assert param.parse(param.serialize(normalized)) == normalized


def test_float_converts_int() -> None:
    """An int becomes a float."""
    value = FloatParameter().normalize(2)
    assert type(value) is float
    assert value == 2.0


@pytest.mark.parametrize(("text", "expected"), [("1.5", 1.5), ("-2", -2.0), ("1e-3", 0.001)])
def test_float_parses_known_text(text: str, expected: float) -> None:
    """Decimal and exponent text parses to the float."""
    assert FloatParameter().parse(text) == expected


@pytest.mark.parametrize("text", ["abc", "1.2.3", "nan", "inf", "-Infinity"])
def test_float_rejects_bad_text(text: str) -> None:
    """Non-numbers, NaN and infinity as text raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text)):
        FloatParameter().parse(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_float_rejects_non_finite_values(value: float) -> None:
    """NaN and infinity given natively raise ValueError."""
    with pytest.raises(ValueError, match="finite"):
        FloatParameter().normalize(value)


def test_float_rejects_bool() -> None:
    """A bool is not taken as a number."""
    with pytest.raises(TypeError, match="True"):
        FloatParameter().normalize(True)


def test_float_negative_zero_has_same_json_as_zero() -> None:
    """-0.0 equals 0.0, so it normalizes to 0.0 and gives the same JSON."""
    param = FloatParameter()
    value = param.normalize(-0.0)
    assert math.copysign(1.0, value) == 1.0
    assert param.serialize(value) == param.serialize(0.0)


# --- BoolParameter ----------------------------------------------------------------


def test_bool_defaults_to_false() -> None:
    """A BoolParameter without an explicit default defaults to False."""
    assert BoolParameter().default is False


def test_bool_with_missing_default_is_required() -> None:
    """Passing default=MISSING makes a BoolParameter required."""
    assert not BoolParameter(default=MISSING).has_default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("YES", True),
        ("no", False),
        ("On", True),
        ("off", False),
        ("1", True),
        ("0", False),
    ],
)
def test_bool_parses_known_text(text: str, expected: bool) -> None:
    """The usual boolean words parse in any case."""
    assert BoolParameter().parse(text) is expected


@pytest.mark.parametrize("value", [True, False])
def test_bool_round_trip(value: bool) -> None:
    """Both booleans survive serialize then parse."""
    param = BoolParameter()
    assert param.parse(param.serialize(value)) is value
    assert param.to_json(value) is value


@pytest.mark.parametrize("text", ["maybe", "2", "tru"])
def test_bool_rejects_bad_text(text: str) -> None:
    """Other words raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text)):
        BoolParameter().parse(text)


def test_bool_rejects_int() -> None:
    """The int 1 is not taken as True."""
    with pytest.raises(TypeError, match=r"1 \(int\)"):
        BoolParameter().normalize(1)


# --- DateParameter ------------------------------------------------------------------


@given(st.dates())
def test_date_round_trip(value: dt.date) -> None:
    """Every date survives serialize then parse, and to_json is its ISO text."""
    param = DateParameter()
    assert param.parse(param.serialize(value)) == value
    assert param.to_json(value) == value.isoformat()


def test_date_parses_iso_text() -> None:
    """YYYY-MM-DD parses to the date."""
    assert DateParameter().normalize("2026-11-23") == dt.date(2026, 11, 23)


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "23/11/2026", "20261123", "soon"])
def test_date_rejects_bad_text(text: str) -> None:
    """Invalid dates and other formats raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text)):
        DateParameter().parse(text)


def test_date_rejects_datetime_suggesting_date() -> None:
    """A datetime is rejected with a hint to call .date()."""
    with pytest.raises(TypeError, match=r"\.date\(\)"):
        DateParameter().normalize(dt.datetime(2026, 11, 23, 5))


def test_date_rejects_other_types() -> None:
    """A non-date value raises TypeError."""
    with pytest.raises(TypeError, match="20261123"):
        DateParameter().normalize(20261123)


# --- DateHourParameter -------------------------------------------------------------

whole_hours = st.datetimes().map(lambda d: d.replace(minute=0, second=0, microsecond=0, fold=0))


@given(whole_hours)
def test_date_hour_round_trip(value: dt.datetime) -> None:
    """Every whole-hour datetime survives serialize then parse."""
    param = DateHourParameter()
    assert param.parse(param.serialize(value)) == value


@pytest.mark.parametrize(
    "text", ["2026-11-23T05", "2026-11-23T05:00", "2026-11-23T05:00:00", "2026-11-23 05"]
)
def test_date_hour_parses_known_forms(text: str) -> None:
    """The Luigi form and its common variants all parse."""
    assert DateHourParameter().parse(text) == dt.datetime(2026, 11, 23, 5)


def test_date_hour_serializes_luigi_form() -> None:
    """serialize and to_json give YYYY-MM-DDTHH, with four-digit years."""
    param = DateHourParameter()
    assert param.serialize(dt.datetime(2026, 11, 23, 5)) == "2026-11-23T05"
    assert param.to_json(dt.datetime(5, 1, 2, 23)) == "0005-01-02T23"


@pytest.mark.parametrize(
    "text", ["2026-11-23", "2026-11-23T24", "2026-11-23T05:30", "2026-11-31T05", "later"]
)
def test_date_hour_rejects_bad_text(text: str) -> None:
    """Missing hours, bad hours, minutes and bad dates raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text)):
        DateHourParameter().parse(text)


def test_date_hour_rejects_part_hours() -> None:
    """A datetime with minutes raises ValueError explaining the whole-hour rule."""
    with pytest.raises(ValueError, match="whole hour"):
        DateHourParameter().normalize(dt.datetime(2026, 11, 23, 5, 30))


def test_date_hour_rejects_timezone() -> None:
    """A timezone-aware datetime raises ValueError."""
    with pytest.raises(ValueError, match="naive"):
        DateHourParameter().normalize(dt.datetime(2026, 11, 23, 5, tzinfo=dt.UTC))


def test_date_hour_rejects_date() -> None:
    """A date without an hour raises TypeError."""
    with pytest.raises(TypeError, match="datetime"):
        DateHourParameter().normalize(dt.date(2026, 11, 23))


# --- TimeDeltaParameter -----------------------------------------------------------


@given(st.timedeltas(min_value=dt.timedelta(0)))
def test_timedelta_round_trip(value: dt.timedelta) -> None:
    """Every non-negative timedelta survives serialize then parse."""
    param = TimeDeltaParameter()
    assert param.parse(param.serialize(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1DT2H30M", dt.timedelta(days=1, hours=2, minutes=30)),
        ("PT90S", dt.timedelta(seconds=90)),
        ("P2W", dt.timedelta(weeks=2)),
        ("PT1.5S", dt.timedelta(seconds=1.5)),
        ("PT0,5S", dt.timedelta(seconds=0.5)),
        ("p1d", dt.timedelta(days=1)),
        ("1d2h30m15s", dt.timedelta(days=1, hours=2, minutes=30, seconds=15)),
        ("1d 2h", dt.timedelta(days=1, hours=2)),
        ("90s", dt.timedelta(seconds=90)),
        ("1.5h", dt.timedelta(hours=1.5)),
        ("3600", dt.timedelta(hours=1)),
        ("0.25", dt.timedelta(seconds=0.25)),
    ],
)
def test_timedelta_parses_known_text(text: str, expected: dt.timedelta) -> None:
    """ISO 8601, compact and bare-seconds text parse to the duration."""
    assert TimeDeltaParameter().parse(text) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(days=1, hours=2, minutes=30, seconds=15), "P1DT2H30M15S"),
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(days=14), "P14D"),
        (dt.timedelta(seconds=90), "PT1M30S"),
        (dt.timedelta(seconds=0.5), "PT0.5S"),
        (dt.timedelta(hours=1, microseconds=1), "PT1H0.000001S"),
    ],
)
def test_timedelta_serializes_canonical_iso(value: dt.timedelta, text: str) -> None:
    """serialize and to_json give one canonical ISO 8601 duration."""
    param = TimeDeltaParameter()
    assert param.serialize(value) == text
    assert param.to_json(value) == text


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "abc", "-5", "1x", "1,5", "1e3", "P1.D"])
def test_timedelta_rejects_bad_text(text: str) -> None:
    """Text in no known duration form raises ValueError quoting it."""
    with pytest.raises(ValueError, match=repr(text)):
        TimeDeltaParameter().parse(text)


def test_timedelta_rejects_years_and_months() -> None:
    """ISO years and months are refused with an explanation."""
    with pytest.raises(ValueError, match="years and months"):
        TimeDeltaParameter().parse("P1Y2M")


def test_timedelta_rejects_too_long_text() -> None:
    """A duration beyond timedelta's range raises ValueError."""
    with pytest.raises(ValueError, match="too long"):
        TimeDeltaParameter().parse("P9999999999D")


def test_timedelta_rejects_negative() -> None:
    """A negative timedelta raises ValueError."""
    with pytest.raises(ValueError, match="non-negative"):
        TimeDeltaParameter().normalize(dt.timedelta(seconds=-1))


def test_timedelta_rejects_bare_number_value() -> None:
    """A number given natively is not guessed to be seconds."""
    with pytest.raises(TypeError, match="3600"):
        TimeDeltaParameter().normalize(3600)


# --- EnumParameter -----------------------------------------------------------------


def test_enum_requires_enum_argument() -> None:
    """EnumParameter without enum= raises TypeError."""
    with pytest.raises(TypeError, match="enum"):
        EnumParameter()  # type: ignore[call-arg]


def test_enum_rejects_non_enum_class() -> None:
    """enum= must be an Enum class."""
    with pytest.raises(TypeError, match="Enum class"):
        EnumParameter(enum=str)  # type: ignore[type-var]


def test_enum_accepts_member() -> None:
    """A member is its own normalized value."""
    assert EnumParameter(enum=Color).normalize(Color.GREEN) is Color.GREEN


def test_enum_parses_name() -> None:
    """Text naming a member gives that member."""
    assert EnumParameter(enum=Color).parse("GREEN") is Color.GREEN


def test_enum_parses_alias_name() -> None:
    """An alias name gives the canonical member."""
    assert EnumParameter(enum=Color).parse("CRIMSON") is Color.RED


@pytest.mark.parametrize(("text", "member"), [("red", Color.RED), ("2", Color.GREEN)])
def test_enum_parses_value_text(text: str, member: Color) -> None:
    """Text that is no name but a member's value (as text) gives that member."""
    assert EnumParameter(enum=Color).parse(text) is member


@pytest.mark.parametrize("member", list(Color))
def test_enum_round_trip_uses_name(member: Color) -> None:
    """serialize and to_json give the name, which parses back to the member."""
    param = EnumParameter(enum=Color)
    assert param.serialize(member) == member.name
    assert param.to_json(member) == member.name
    assert param.parse(param.serialize(member)) is member


def test_enum_error_lists_names() -> None:
    """An unknown name raises ValueError quoting it and listing the valid names."""
    with pytest.raises(ValueError, match=r"RED, GREEN.*'BLUE'"):
        EnumParameter(enum=Color).parse("BLUE")


def test_enum_rejects_other_types() -> None:
    """A value that is neither a member nor text raises TypeError."""
    with pytest.raises(TypeError, match="Color"):
        EnumParameter(enum=Color).normalize(2)


def test_enum_default_is_normalized() -> None:
    """A default given by name is stored as the member."""
    assert EnumParameter(enum=Color, default="GREEN").default is Color.GREEN


def test_enum_bad_default_raises_parameter_error() -> None:
    """A default that names no member raises ParameterError."""
    with pytest.raises(ParameterError, match="'BLUE'"):
        EnumParameter(enum=Color, default="BLUE")


def test_enum_type_name_lists_names() -> None:
    """The help text type names the enum and its members."""
    assert EnumParameter(enum=Color).type_name == "Color (RED|GREEN)"


# --- FrozenDict ---------------------------------------------------------------------


def test_frozendict_equals_dict_with_same_items() -> None:
    """A FrozenDict equals a dict with the same items, in either order and direction."""
    frozen = FrozenDict({"a": 1, "b": 2})
    assert frozen == {"b": 2, "a": 1}
    assert dict.__eq__({"b": 2, "a": 1}, frozen) is NotImplemented  # so Python asks frozen
    assert {"b": 2, "a": 1} == frozen  # noqa: SIM300 (the reflected comparison is the point)
    assert frozen != {"a": 1}


def test_frozendict_hash_ignores_order() -> None:
    """Equal FrozenDicts built in different orders hash the same."""
    first = FrozenDict({"a": 1, "b": 2})
    second = FrozenDict([("b", 2), ("a", 1)])
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_frozendict_is_not_equal_to_non_mapping() -> None:
    """A FrozenDict does not equal a list of its items."""
    assert FrozenDict({"a": 1}) != [("a", 1)]


def test_frozendict_rejects_item_assignment() -> None:
    """Items cannot be set or deleted."""
    frozen = FrozenDict({"a": 1})
    with pytest.raises(TypeError):
        frozen["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        del frozen["a"]  # type: ignore[attr-defined]
    assert frozen == {"a": 1}


def test_frozendict_rejects_new_attributes() -> None:
    """No attributes can be added to a FrozenDict."""
    with pytest.raises(AttributeError):
        FrozenDict().extra = 1  # type: ignore[attr-defined]


def test_frozendict_repr() -> None:
    """The repr shows the items like a dict."""
    assert repr(FrozenDict({"a": 1})) == "FrozenDict({'a': 1})"


def test_frozendict_pickles() -> None:
    """A FrozenDict survives pickling."""
    frozen = FrozenDict({"a": (1, 2)})
    assert pickle.loads(pickle.dumps(frozen)) == frozen


# --- ListParameter ------------------------------------------------------------------


@given(json_lists)
def test_list_round_trip(value: list[Any]) -> None:
    """Every JSON list survives normalize, serialize and parse."""
    param = ListParameter()
    normalized = param.normalize(value)
    assert param.parse(param.serialize(normalized)) == normalized


@given(json_lists)
def test_list_to_json_matches_input(value: list[Any]) -> None:
    """to_json gives back plain lists and dicts equal to the input."""
    param = ListParameter()
    assert param.to_json(param.normalize(value)) == value


def test_list_deep_freezes() -> None:
    """Nested lists become tuples and nested dicts FrozenDicts, so the value is hashable."""
    value = ListParameter().normalize([1, [2, [3]], {"k": [4]}])
    assert value == (1, (2, (3,)), FrozenDict({"k": (4,)}))
    assert type(value[1][1]) is tuple
    assert type(value[2]) is FrozenDict
    assert type(value[2]["k"]) is tuple
    hash(value)


def test_list_keeps_normalized_value() -> None:
    """An already normalized tuple is returned as it is."""
    param = ListParameter()
    value = param.normalize(["a", {"b": [1]}])
    assert param.normalize(value) is value


def test_list_parses_json_text() -> None:
    """A JSON array text parses to the frozen tuple."""
    assert ListParameter().parse('["a", 1, {"k": true}]') == ("a", 1, FrozenDict({"k": True}))


def test_list_serializes_canonical_json() -> None:
    """serialize writes compact JSON with sorted keys and unescaped text."""
    value = ListParameter().normalize(["é", {"b": 1, "a": None}])
    assert ListParameter().serialize(value) == '["é",{"a":null,"b":1}]'


@pytest.mark.parametrize(
    ("value", "error", "where"),
    [
        ([1, {2}], TypeError, r"\[1\]"),
        ([1, [object()]], TypeError, r"\[1\]\[0\]"),
        ([[math.nan]], ValueError, r"\[0\]\[0\]"),
        ([{"a": {1: "x"}}], TypeError, r"\[0\]\['a'\]"),
        ([dt.date(2026, 1, 1)], TypeError, r"\[0\]"),
    ],
)
def test_list_rejects_non_json_contents(
    value: list[Any], error: type[Exception], where: str
) -> None:
    """Sets, objects, NaN and non-str keys are rejected, naming the element's path."""
    with pytest.raises(error, match=f"element {where}"):
        ListParameter().normalize(value)


@pytest.mark.parametrize("value", [{"a": 1}, {1, 2}, 5])
def test_list_rejects_non_sequences(value: object) -> None:
    """Dicts, sets and scalars are not lists."""
    with pytest.raises(TypeError, match="list or tuple"):
        ListParameter().normalize(value)


@pytest.mark.parametrize("text", ["[1,", '{"a": 1}', "[NaN]", "[Infinity]", "1"])
def test_list_rejects_bad_text(text: str) -> None:
    """Bad JSON, non-arrays and NaN raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text).replace("[", r"\[")):
        ListParameter().parse(text)


def test_list_negative_zero_has_same_json_as_zero() -> None:
    """-0.0 inside a list normalizes to 0.0, so equal lists give equal JSON."""
    param = ListParameter()
    assert param.serialize(param.normalize([-0.0])) == param.serialize(param.normalize([0.0]))


def test_list_accepts_tuple() -> None:
    """A tuple is taken like a list."""
    assert ListParameter().normalize((1, [2])) == (1, (2,))


# --- DictParameter ------------------------------------------------------------------


@given(json_dicts)
def test_dict_round_trip(value: dict[str, Any]) -> None:
    """Every JSON object survives normalize, serialize and parse."""
    param = DictParameter()
    normalized = param.normalize(value)
    assert param.parse(param.serialize(normalized)) == normalized


@given(json_dicts)
def test_dict_json_ignores_key_order(value: dict[str, Any]) -> None:
    """Reversing the key order changes neither serialize nor to_json."""
    param = DictParameter()
    reordered = dict(reversed(list(value.items())))
    assert param.serialize(param.normalize(value)) == param.serialize(param.normalize(reordered))
    assert param.to_json(param.normalize(value)) == param.to_json(param.normalize(reordered))


def test_dict_normalizes_to_deep_frozen_dict() -> None:
    """Nested lists become tuples and the result is a hashable FrozenDict."""
    value = DictParameter().normalize({"a": [1, {"b": [2]}]})
    assert type(value) is FrozenDict
    assert value == FrozenDict({"a": (1, FrozenDict({"b": (2,)}))})
    hash(value)


def test_dict_normalizes_to_sorted_keys() -> None:
    """The normalized FrozenDict iterates its keys in sorted order, whatever the input order."""
    assert list(DictParameter().normalize({"b": 1, "a": {"d": 2, "c": 3}})) == ["a", "b"]
    assert list(DictParameter().normalize({"a": {"d": 2, "c": 3}})["a"]) == ["c", "d"]


def test_dict_to_json_gives_plain_containers() -> None:
    """to_json gives dicts and lists."""
    param = DictParameter()
    result = param.to_json(param.normalize({"a": ({"b": 1},)}))
    assert result == {"a": [{"b": 1}]}
    assert type(result) is dict
    assert type(result["a"]) is list


def test_dict_keeps_normalized_value() -> None:
    """An already normalized FrozenDict is returned as it is."""
    param = DictParameter()
    value = param.normalize({"a": [1]})
    assert param.normalize(value) is value


def test_dict_freezes_user_built_frozendict() -> None:
    """A FrozenDict holding a list is deep-frozen too."""
    value = DictParameter().normalize(FrozenDict({"a": [1]}))
    assert type(value["a"]) is tuple


def test_dict_rejects_non_str_keys() -> None:
    """Keys must be strings."""
    with pytest.raises(TypeError, match=r"key 1 \(int\)"):
        DictParameter().normalize({1: "a"})


def test_dict_rejects_non_mapping() -> None:
    """A list of pairs is not a mapping."""
    with pytest.raises(TypeError, match="mapping"):
        DictParameter().normalize([("a", 1)])


def test_dict_parses_json_text() -> None:
    """A JSON object text parses to the FrozenDict."""
    assert DictParameter().parse('{"b": [1], "a": null}') == {"a": None, "b": (1,)}


@pytest.mark.parametrize("text", ["[1]", "{", '{"a": 1, "a": 2}', '{"a": NaN}'])
def test_dict_rejects_bad_text(text: str) -> None:
    """Non-objects, bad JSON, duplicate keys and NaN raise ValueError quoting the text."""
    with pytest.raises(ValueError, match=repr(text).replace("[", r"\[").replace("{", r"\{")):
        DictParameter().parse(text)


# --- parameter_for_annotation --------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "kind"),
    [
        (str, Parameter),
        (int, IntParameter),
        (float, FloatParameter),
        (bool, BoolParameter),
        (dt.date, DateParameter),
        (dt.datetime, DateHourParameter),
        (dt.timedelta, TimeDeltaParameter),
        (list, ListParameter),
        (list[int], ListParameter),
        (typing.List[str], ListParameter),  # noqa: UP006 (the old spelling must work too)
        (tuple[int, ...], ListParameter),
        (collections.abc.Sequence[str], ListParameter),
        (typing.Sequence, ListParameter),
        (dict, DictParameter),
        (dict[str, int], DictParameter),
        (collections.abc.Mapping[str, Any], DictParameter),
        (Annotated[int, "count"], IntParameter),
    ],
)
def test_annotation_maps_to_parameter(annotation: object, kind: type[Parameter[Any]]) -> None:
    """Each supported annotation gives its parameter class."""
    assert type(parameter_for_annotation(annotation)) is kind


def test_annotation_enum_gives_enum_parameter() -> None:
    """An Enum subclass gives an EnumParameter for that enum."""
    param = parameter_for_annotation(Color)
    assert isinstance(param, EnumParameter)
    assert param.enum is Color


@pytest.mark.parametrize("annotation", [Optional[int], int | None])  # noqa: UP045
def test_annotation_optional_with_none_default(annotation: object) -> None:
    """X | None with default None gives an optional parameter for X."""
    param = parameter_for_annotation(annotation, default=None)
    assert type(param) is IntParameter
    assert param.normalize(None) is None


def test_annotation_optional_without_default_is_required() -> None:
    """X | None without a default gives a required parameter that rejects None."""
    param = parameter_for_annotation(int | None)
    assert not param.has_default
    with pytest.raises(TypeError, match="None"):
        param.normalize(None)


def test_annotation_default_is_normalized() -> None:
    """The default is normalized by the built parameter."""
    assert parameter_for_annotation(dt.date, default="2026-11-23").default == dt.date(2026, 11, 23)


def test_annotation_bool_without_default_is_required() -> None:
    """A bool annotation without default gives a required parameter, not default False."""
    assert not parameter_for_annotation(bool).has_default


def test_annotation_bad_default_raises_parameter_error() -> None:
    """A default that does not fit the annotation raises ParameterError."""
    with pytest.raises(ParameterError, match="'x'"):
        parameter_for_annotation(int, default="x")


@pytest.mark.parametrize(
    "annotation", [set[int], complex, int | str, dict[int, str], typing.Any, None]
)
def test_annotation_unsupported(annotation: object) -> None:
    """Unsupported annotations raise TypeError naming them and listing supported types."""
    with pytest.raises(TypeError, match="supported are str, int") as info:
        parameter_for_annotation(annotation)
    assert repr(annotation) in str(info.value)


def test_annotation_string_suggests_resolving() -> None:
    """An unresolved string annotation raises TypeError pointing at get_type_hints."""
    with pytest.raises(TypeError, match="get_type_hints"):
        parameter_for_annotation("int")
