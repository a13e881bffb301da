from __future__ import annotations

import datetime
import enum
from pathlib import Path

import pytest

import asyncflow
from asyncflow.targets import MemoryStore, MemoryTarget

pytestmark = pytest.mark.anyio

STORE = MemoryStore()


class Color(enum.Enum):
    RED = "r"
    BLUE = "b"


@asyncflow.task(output=lambda name: MemoryTarget(f"greet/{name}", store=STORE))
async def greet(self: asyncflow.Task, name: str, times: int = 1) -> None:
    await self.output().write_text(" ".join([f"hello {name}"] * times))


@asyncflow.task(
    requires=lambda name: greet(name=name, times=2),
    output=lambda name: MemoryTarget(f"shout/{name}", store=STORE),
    retry_count=2,
    priority=5,
)
async def shout(self: asyncflow.Task, name: str) -> None:
    text = await self.input().read_text()
    await self.output().write_text(text.upper())


def test_decorated_function_is_a_task_class() -> None:
    """@task returns a Task subclass named after the function."""
    assert isinstance(greet, type) and issubclass(greet, asyncflow.Task)
    assert greet.task_family == "greet"
    assert greet(name="ada").task_id.startswith("greet_ada_1_")


def test_parameters_come_from_the_signature() -> None:
    """Annotations give parameter types; defaults give defaults; order is kept."""

    @asyncflow.task
    async def typed(
        day: datetime.date,
        hour: datetime.datetime,
        n: int,
        x: float,
        flag: bool,
        color: Color,
        items: list[int],
        mapping: dict[str, int],
        delay: datetime.timedelta,
        label: str = "l",
    ) -> None:
        pass

    params = typed.get_params()
    assert [type(p).__name__ for p in params.values()] == [
        "DateParameter",
        "DateHourParameter",
        "IntParameter",
        "FloatParameter",
        "BoolParameter",
        "EnumParameter",
        "ListParameter",
        "DictParameter",
        "TimeDeltaParameter",
        "Parameter",
    ]
    assert params["label"].default == "l"


def test_keywords_become_class_attributes() -> None:
    """Decorator keywords set the Task class attributes."""
    assert (shout.retry_count, shout.priority) == (2, 5)


def test_positional_construction_works() -> None:
    """A decorated task takes its parameters positionally too."""
    assert greet("bob", 3) == greet(name="bob", times=3)


def test_missing_annotation_is_a_clear_error() -> None:
    """A parameter without annotation is refused, naming it."""
    with pytest.raises(TypeError, match=r"parameter 'x' of bad\(\) needs a type annotation"):

        @asyncflow.task
        async def bad(x) -> None:  # type: ignore[no-untyped-def]
            pass


def test_provider_naming_unknown_parameter_is_refused() -> None:
    """output= taking a name that is not a parameter is refused at decoration."""
    with pytest.raises(TypeError, match=r"output= of f\(\) takes 'nope'"):

        @asyncflow.task(output=lambda nope: None)
        async def f(name: str) -> None:
            pass


async def test_decorated_pipeline_runs() -> None:
    """Decorated tasks require each other and run end to end."""
    STORE.clear()
    result = await asyncflow.run(shout(name="ada"), journal=None)
    assert result.ok
    assert await MemoryTarget("shout/ada", store=STORE).read_text() == "HELLO ADA HELLO ADA"


async def test_function_without_self_gets_values(tmp_path: Path) -> None:
    """A function without `self` receives only the parameter values."""
    seen: list[tuple[str, int]] = []

    @asyncflow.task
    async def plain(name: str, n: int = 2) -> None:
        seen.append((name, n))

    result = await asyncflow.run(plain("z"), journal=None)
    assert result.ok and seen == [("z", 2)]


async def test_sync_function_runs_in_a_thread() -> None:
    """A plain def decorated with @task runs in a worker thread."""
    import threading

    names: list[str] = []

    @asyncflow.task
    def blocking(n: int) -> None:
        names.append(threading.current_thread().name)

    result = await asyncflow.run(blocking(1), journal=None)
    assert result.ok and names and names[0] != threading.main_thread().name
