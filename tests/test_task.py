from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asyncflow
from asyncflow.targets import MemoryStore, MemoryTarget


class Extract(asyncflow.Task):
    date = asyncflow.DateParameter()
    source = asyncflow.Parameter(default="api")
    limit = asyncflow.IntParameter(default=10)
    verbose = asyncflow.BoolParameter(default=False, significant=False)


class Options(asyncflow.Task):
    options = asyncflow.DictParameter()
    names = asyncflow.ListParameter(default=[])


D = datetime.date(2026, 11, 23)


def test_keyword_construction_sets_values() -> None:
    """Keyword arguments set parameters, defaults fill the rest."""
    task = Extract(date=D, limit=3)
    assert (task.date, task.source, task.limit, task.verbose) == (D, "api", 3, False)


def test_positional_construction_follows_declaration_order() -> None:
    """Positional arguments bind in declaration order."""
    assert Extract(D, "db", 5) == Extract(date=D, source="db", limit=5)


def test_positional_and_keyword_mix() -> None:
    """A value can be given positionally and the rest by keyword."""
    assert Extract(D, limit=7).limit == 7


def test_string_values_are_parsed() -> None:
    """A string for a typed parameter is parsed by that parameter."""
    assert Extract(date="2026-11-23", limit="4") == Extract(date=D, limit=4)


def test_missing_parameter_names_task_and_parameter() -> None:
    """A required parameter left out raises ParameterError naming both."""
    with pytest.raises(
        asyncflow.ParameterError, match=r"Extract: missing required parameter 'date'"
    ):
        Extract()


def test_unknown_parameter_suggests_close_name() -> None:
    """An unknown keyword is refused with the known names and a suggestion."""
    with pytest.raises(
        asyncflow.ParameterError, match=r"unknown parameter 'lmit'.*did you mean 'limit'"
    ):
        Extract(date=D, lmit=3)


def test_bad_value_names_task_and_parameter() -> None:
    """An unparseable value names the task class, the parameter and the value."""
    with pytest.raises(asyncflow.ParameterError, match=r"Extract: parameter 'date'.*2026-13-45"):
        Extract(date="2026-13-45")


def test_too_many_positional_arguments() -> None:
    """More positional values than parameters is an error naming the parameters."""
    with pytest.raises(asyncflow.ParameterError, match=r"takes 4 positional parameter"):
        Extract(D, "a", 1, True, "extra")


def test_parameter_given_twice() -> None:
    """The same parameter positionally and by keyword is refused."""
    with pytest.raises(asyncflow.ParameterError, match=r"'date' given twice"):
        Extract(D, date=D)


def test_non_json_value_rejected_at_construction() -> None:
    """A value that cannot be serialised to JSON is refused when the task is built."""
    with pytest.raises(asyncflow.ParameterError, match=r"Options: parameter 'options'"):
        Options(options={"when": object()})


def test_task_id_shape() -> None:
    """The id is family, a readable summary and 16 hex digits of hash."""
    task_id = Extract(date=D).task_id
    family, day, source, limit, digest = task_id.split("_")
    assert (family, day, source, limit) == ("Extract", "2026-11-23", "api", "10")
    assert len(digest) == 16
    int(digest, 16)


def test_insignificant_parameter_not_in_identity() -> None:
    """Parameters with significant=False do not change the identity."""
    assert Extract(date=D, verbose=True) == Extract(date=D, verbose=False)
    assert Extract(date=D, verbose=True).task_id == Extract(date=D).task_id


def test_different_values_give_different_ids() -> None:
    """Changing a significant value changes the id."""
    assert Extract(date=D).task_id != Extract(date=D, limit=11).task_id


def test_dict_key_order_does_not_matter() -> None:
    """Dicts with the same items in another order give the same task."""
    a = Options(options={"x": 1, "y": [1, 2]})
    b = Options(options={"y": [1, 2], "x": 1})
    assert a == b and hash(a) == hash(b)


def test_equal_tasks_hash_equal_and_dedupe_in_sets() -> None:
    """Equal parameters give equal tasks with equal hashes."""
    assert len({Extract(date=D), Extract(D), Extract(date="2026-11-23")}) == 1


def test_same_parameters_other_class_not_equal() -> None:
    """Tasks of different classes are never equal."""

    class Other(asyncflow.Task):
        date = asyncflow.DateParameter()
        source = asyncflow.Parameter(default="api")
        limit = asyncflow.IntParameter(default=10)

    assert Other(date=D) != Extract(date=D)


def test_parameters_are_read_only() -> None:
    """Assigning to a parameter is refused (it would change the identity)."""
    task = Extract(date=D)
    with pytest.raises(AttributeError, match="read-only"):
        task.limit = 5  # type: ignore[misc]


def test_repr_shows_significant_parameters() -> None:
    """repr is the family with the significant parameter values."""
    assert repr(Extract(date=D)) == "Extract(date=2026-11-23, source=api, limit=10)"


def test_inherited_parameters_come_first() -> None:
    """A subclass keeps its base's parameters first, then its own."""

    class Child(Extract):
        extra = asyncflow.IntParameter(default=1)

    assert list(Child.get_params()) == ["date", "source", "limit", "verbose", "extra"]
    assert Child(D, "x", 2, False, 9).extra == 9


def test_from_str_params_round_trip() -> None:
    """A task rebuilt from its text parameters is the same task."""
    task = Extract(date=D, source="db", limit=2)
    assert Extract.from_str_params(task.to_str_params()) == task


def test_task_namespace_prefixes_family() -> None:
    """task_namespace is part of the family and the id."""

    class Spaced(asyncflow.Task):
        task_namespace = "team"

    assert Spaced().task_id.startswith("team.Spaced_")


def test_bad_class_attribute_rejected_at_definition() -> None:
    """Nonsense class attributes fail when the class is defined, naming it."""
    with pytest.raises(TypeError, match=r"Bad.retry_count must be >= 0"):

        class Bad(asyncflow.Task):
            retry_count = -1


def test_input_mirrors_requires_structure() -> None:
    """input() gives the outputs of requires() in the same shape."""
    store = MemoryStore()

    class Leaf(asyncflow.Task):
        name = asyncflow.Parameter()

        def output(self) -> MemoryTarget:
            return MemoryTarget(self.name, store=store)

    class Top(asyncflow.Task):
        def requires(self) -> dict[str, object]:
            return {"a": Leaf("a"), "bs": [Leaf("b1"), Leaf("b2")]}

    assert Top().input() == {
        "a": MemoryTarget("a", store=store),
        "bs": [MemoryTarget("b1", store=store), MemoryTarget("b2", store=store)],
    }


ID_SCRIPT = textwrap.dedent(
    """
    import datetime, asyncflow
    class Extract(asyncflow.Task):
        date = asyncflow.DateParameter()
        source = asyncflow.Parameter(default="api")
        limit = asyncflow.IntParameter(default=10)
        options = asyncflow.DictParameter(default={"b": 1, "a": [1, 2]})
    class Scalar(asyncflow.Task):  # only scalar parameters: the id is computed lazily
        date = asyncflow.DateParameter()
        n = asyncflow.IntParameter(default=3)
    print(Extract(date=datetime.date(2026, 11, 23)).task_id)
    print(Scalar(date=datetime.date(2026, 11, 23)).task_id)
    """
)


def test_task_id_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    """Two interpreters with different PYTHONHASHSEED compute the same id."""
    ids = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", ID_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        ids.add(out.stdout.strip())
    assert len(ids) == 1
    extract_id, scalar_id = ids.pop().splitlines()
    assert extract_id.startswith("Extract_2026-11-23_api_10_")
    assert scalar_id.startswith("Scalar_2026-11-23_3_")


def test_canonical_encoding_matches_json_dumps() -> None:
    """The fast canonical encoder gives exactly json.dumps(sort_keys=True) text."""
    import json

    from hypothesis import given
    from hypothesis import strategies as st

    from asyncflow.task import _canonical_params

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False)
    )
    values = st.recursive(
        scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=8
    )

    @given(st.dictionaries(st.text(min_size=1), values, max_size=5))
    def check(params: dict[str, object]) -> None:
        expected = json.dumps(
            params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        assert _canonical_params(params, sorted(params)) == expected

    check()


def test_lazy_task_id_equals_the_eager_one() -> None:
    """A scalar-only task computes its id on demand, the same id as computed at once."""

    class Scalar(asyncflow.Task):
        day = asyncflow.DateParameter()
        n = asyncflow.IntParameter()
        ratio = asyncflow.FloatParameter(default=0.5)

    task = Scalar(D, 4)
    assert "_task_id" not in task.__dict__  # not computed yet
    assert task.task_id == task._make_task_id(task.param_kwargs)
    assert task == Scalar(day="2026-11-23", n="4") and hash(task) == hash(Scalar(D, 4))
    assert Scalar(D, 4, 0.5) != Scalar(D, 4, 0.25)


@pytest.mark.parametrize(
    "name", ["task_id", "output", "input", "priority", "param_kwargs", "_secret"]
)
def test_parameter_named_like_an_engine_attribute_is_refused(name: str) -> None:
    """A parameter may not hide what the engine reads from a task; the error names it."""
    with pytest.raises(TypeError, match=f"cannot be named '{name}'"):
        type("Clash", (asyncflow.Task,), {name: asyncflow.Parameter()})


def test_task_id_is_computed_once_and_then_a_plain_attribute() -> None:
    class Lazy(asyncflow.Task):
        n = asyncflow.IntParameter()

    task = Lazy(n=1)
    assert "task_id" not in vars(task)  # scalar-only tasks compute it when asked
    first = task.task_id
    assert vars(task)["task_id"] == first == Lazy(n=1).task_id


def test_params_json_is_json_of_the_text_parameters() -> None:
    """What the journal stores for a task's parameters: exactly json.dumps of
    to_str_params(), whatever the text (quotes, newlines, non-ASCII, empty)."""
    import json

    from hypothesis import given
    from hypothesis import strategies as st

    class Mixed(asyncflow.Task):
        name = asyncflow.Parameter()
        n = asyncflow.IntParameter()
        maybe = asyncflow.Parameter(default=None)
        count = asyncflow.IntParameter(default=None)
        items = asyncflow.ListParameter(default=())
        options = asyncflow.DictParameter(default={})
        flag = asyncflow.BoolParameter(default=False, significant=False)

    @given(
        st.text(),
        st.integers(),
        st.none() | st.text(),
        st.none() | st.integers(),
        st.lists(st.text() | st.integers(), max_size=3),
        st.dictionaries(st.text(), st.text(), max_size=3),
        st.booleans(),
    )
    def check(
        name: str,
        n: int,
        maybe: str | None,
        count: int | None,
        items: list[object],
        options: dict[str, str],
        flag: bool,
    ) -> None:
        task = Mixed(
            name=name, n=n, maybe=maybe, count=count, items=items, options=options, flag=flag
        )
        expected = json.dumps(task.to_str_params(), separators=(",", ":"), ensure_ascii=False)
        assert task._params_json() == expected
        assert json.loads(task._params_json()) == task.to_str_params()

    check()
