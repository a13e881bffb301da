"""Task ids are stable identities, kept in users' journals: these were computed by
an earlier release, and any change to how ids are built (a faster canonical JSON,
a cache) must give exactly the same text."""

from __future__ import annotations

import datetime as dt
import enum

import pytest

import asyncflow
from asyncflow.parameters import ParameterVisibility


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Ints(asyncflow.Task):
    k = asyncflow.IntParameter()
    j = asyncflow.IntParameter()
    width = asyncflow.IntParameter()


class Texts(asyncflow.Task):
    name = asyncflow.Parameter()
    flag = asyncflow.BoolParameter(default=False)


class Mixed(asyncflow.Task):
    task_namespace = "pinned"
    day = asyncflow.DateParameter()
    hour = asyncflow.DateHourParameter()
    ratio = asyncflow.FloatParameter()
    span = asyncflow.TimeDeltaParameter()
    color = asyncflow.EnumParameter(enum=Color)


class Structured(asyncflow.Task):
    items = asyncflow.ListParameter()
    options = asyncflow.DictParameter()
    token = asyncflow.Parameter(visibility=ParameterVisibility.HIDDEN)
    note = asyncflow.Parameter(default=None, significant=False)


class Bare(asyncflow.Task):
    pass


PINNED = [
    (lambda: Ints(k=0, j=0, width=1), "Ints_0_0_1_5cb44d35e74df07e"),
    (
        lambda: Ints(k=9, j=-12345, width=10**30),
        "Ints_9_-12345_1000000000000000000000000000000_402890295de353d6",
    ),
    (lambda: Texts(name="plain"), "Texts_plain_false_4ab0e1c6e67a0bb7"),
    (
        lambda: Texts(name='naïve / "quoted" \\ tab\t ☃', flag=True),
        "Texts_na_ve_quoted_tab_true_18f7ad4150da3960",
    ),
    (lambda: Texts(name=""), "Texts_false_cae752022fd27ac1"),
    (
        lambda: Mixed(
            day=dt.date(2026, 12, 5),
            hour=dt.datetime(2026, 12, 5, 7),
            ratio=0.1,
            span=dt.timedelta(hours=1, seconds=30),
            color=Color.BLUE,
        ),
        "pinned.Mixed_2026-12-05_2026-12-05T07_0.1_f2101be2202e2867",
    ),
    (
        lambda: Mixed(
            day=dt.date(1999, 1, 31),
            hour=dt.datetime(2000, 2, 29, 23),
            ratio=-1e300,
            span=dt.timedelta(0),
            color=Color.RED,
        ),
        "pinned.Mixed_1999-01-31_2000-02-29T23_-1e_300_0f07c6f4250681d6",
    ),
    (
        lambda: Structured(
            items=[1, "two", [3.5, None]], options={"b": [1, 2], "a": {"z": True}}, token="s3cr3t"
        ),
        "Structured_1_two_3.5_null_a_z_true_b_1_2_313e9293e195fa36",
    ),
    (lambda: Bare(), "Bare_44136fa355b3678a"),
]


@pytest.mark.parametrize(("build", "task_id"), PINNED, ids=[i for _, i in PINNED])
def test_task_id_is_the_pinned_one(build: object, task_id: str) -> None:
    """Every parameter kind, text that JSON escapes, huge and negative numbers."""
    assert callable(build)
    task = build()
    assert task.task_id == task_id
    # The lazily computed id of a scalar task and the one a graph keys it by agree.
    assert build().task_id == task_id and build() == task
