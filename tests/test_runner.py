from __future__ import annotations

import pickle
from typing import Any

import pytest

import asyncflow
from asyncflow.targets import MemoryStore, MemoryTarget

STORE = MemoryStore()


class Leaf(asyncflow.Task):
    n = asyncflow.IntParameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"leaf/{self.n}", store=STORE)

    async def run(self) -> None:
        await self.output().write_bytes(b"1")


class Failing(asyncflow.Task):
    async def run(self) -> None:
        raise RuntimeError("nope")


def test_build_runs_from_sync_code() -> None:
    """build() runs tasks from code without an event loop and returns a RunResult."""
    STORE.clear()
    result = asyncflow.build(Leaf(1), Leaf(2), journal=None)
    assert isinstance(result, asyncflow.RunResult) and result.ok
    assert sorted(STORE.keys()) == ["leaf/1", "leaf/2"]


def test_build_accepts_one_list() -> None:
    """build([a, b]) works as luigi.build([...]) does."""
    STORE.clear()
    result = asyncflow.build([Leaf(3), Leaf(4)], journal=None)
    assert [r.status for r in result] == [asyncflow.Status.DONE] * 2


@pytest.mark.anyio
async def test_build_inside_running_loop_is_refused() -> None:
    """build() inside a running loop says to await run() instead."""
    with pytest.raises(asyncflow.AsyncflowError, match=r"await asyncflow.run"):
        asyncflow.build(Leaf(5), journal=None)


def test_task_class_instead_of_instance_is_refused() -> None:
    """Passing a class instead of an instance gives a clear error."""
    with pytest.raises(asyncflow.ConfigError, match=r"got the class Leaf"):
        asyncflow.build(Leaf, journal=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be a positive int"),
        ({"resources": {"gpu": -1}}, r"resources\['gpu'\]"),
        ({"journal": 42}, "journal must be a path or None"),
        ({"max_running": {"Leaf": 0}}, r"max_running\['Leaf'\]"),
    ],
)
def test_bad_run_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Invalid run() keywords raise ConfigError naming the keyword."""
    with pytest.raises(asyncflow.ConfigError, match=message):
        asyncflow.build(Leaf(6), **kwargs)


def test_ok_is_false_when_a_requested_task_failed() -> None:
    """ok is False when any requested task is not complete."""
    STORE.clear()
    result = asyncflow.build(Leaf(7), Failing(), journal=None)
    assert result.status(Leaf(7)) is asyncflow.Status.DONE
    assert not result.ok


def test_status_of_unknown_task_is_a_key_error() -> None:
    """Asking for a task that was not in the run names it."""
    STORE.clear()
    result = asyncflow.build(Leaf(8), journal=None)
    with pytest.raises(KeyError, match="Leaf_9"):
        result.status(Leaf(9))


def test_summary_counts_and_explains_failures() -> None:
    """The summary has counts per status and each failure with its error."""
    STORE.clear()

    class Needs(asyncflow.Task):
        def requires(self) -> Failing:
            return Failing()

    result = asyncflow.build(Leaf(10), Needs(), journal=None)
    summary = result.summary()
    assert "Scheduled 3 tasks" in summary
    assert "* 1 ran successfully:" in summary and "Leaf(n=10)" in summary
    assert "* 1 failed:" in summary and "Failing(): RuntimeError: nope" in summary
    assert "* 1 not run because a requirement failed" in summary
    assert summary.rstrip().endswith("1 of 2 requested task(s) not complete.")


def test_summary_groups_large_families() -> None:
    """Many tasks of one family are summarised as a count with examples."""
    STORE.clear()
    result = asyncflow.build([Leaf(n) for n in range(100, 130)], journal=None)
    assert "30 Leaf (e.g. Leaf(n=100), Leaf(n=101), ...)" in result.summary()


def test_repr_is_compact() -> None:
    """repr(result) is one short line with the counts, whatever the run's size."""
    STORE.clear()
    result = asyncflow.build([Leaf(n) for n in range(200, 300)], journal=None)
    text = repr(result)
    assert text == f"<RunResult {result.run_id} ok=True done=100>"


class _Needs(asyncflow.Task):
    def requires(self) -> list[asyncflow.Task]:
        return [Leaf(13), Failing()]


def test_results_read_by_task_id_are_made_once() -> None:
    """A run's results are a mapping by task id over every task it scheduled; a
    task's result read twice is the same object, and its history is the run's."""
    STORE.clear()
    result = asyncflow.build(_Needs(), Leaf(14), journal=None)
    ids = {_Needs().task_id, Leaf(13).task_id, Failing().task_id, Leaf(14).task_id}
    assert set(result.results) == ids and len(result.results) == len(result) == 4
    assert result.results[Leaf(13).task_id] is result[Leaf(13)]
    assert [r.task_id for r in result] == list(result.results)
    assert result.counts() == {
        asyncflow.Status.DONE: 2,
        asyncflow.Status.FAILED: 1,
        asyncflow.Status.UPSTREAM_FAILED: 1,
    }
    failed = result[Failing()]
    assert [a.number for a in failed.history] == [1]
    assert isinstance(failed.error, RuntimeError) and failed.attempts == 1
    assert result[Leaf(14)].history[0].duration >= 0
    assert "Leaf_15" not in result.results and Leaf(15) not in result
    copy = pickle.loads(pickle.dumps(result))  # as sent to another process
    assert copy.counts() == result.counts() and copy.ok is result.ok is False
    assert copy[Leaf(13)].history[0].finished == result[Leaf(13)].history[0].finished


def test_ok_reads_statuses_without_making_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """run() and its callers read ``ok``, over requested tasks that may be tens of
    thousands: it reads their statuses, and makes no result."""
    STORE.clear()
    made: list[str] = []
    real = asyncflow.result.TaskResult

    def counted(task: asyncflow.Task, *rest: Any) -> asyncflow.TaskResult:
        made.append(task.task_id)
        return real(task, *rest)

    monkeypatch.setattr(asyncflow.result, "TaskResult", counted)
    result = asyncflow.build([Leaf(n) for n in range(16, 20)], Failing(), journal=None)
    assert result.ok is False and not made
    results = result.results
    assert isinstance(results, asyncflow.result.TaskResults)
    assert results.status(Failing().task_id) is asyncflow.Status.FAILED and not made
    assert results.all_complete([Leaf(17), Leaf(18)]) and not made
    assert not results.all_complete([Leaf(17), Failing()]) and not made
    assert result[Leaf(16)].status is results.status(Leaf(16).task_id) is asyncflow.Status.DONE
    assert made == [Leaf(16).task_id]
    with pytest.raises(KeyError):
        results.status(Leaf(99).task_id)


def test_bool_of_a_result_is_ok() -> None:
    """bool(result) is result.ok, for `if not asyncflow.build(...)` as with luigi.build."""
    STORE.clear()
    failed = asyncflow.build(Leaf(11), Failing(), journal=None)
    assert len(failed) == 2 and not failed
    succeeded = asyncflow.build(Leaf(12), journal=None)
    assert succeeded.ok and succeeded


@pytest.mark.parametrize(
    ("force", "named"),
    [
        (["Nope"], "'Nope'"),
        (["Leaf", "Leef"], "'Leef'"),
        ([Leaf(99)], f"'{Leaf(99).task_id}'"),
        ([Leaf(13).task_id + "x"], f"'{Leaf(13).task_id}x'"),
    ],
)
def test_force_naming_nothing_in_the_graph_is_refused(force: list[object], named: str) -> None:
    """force= entries matching no task id or family raise ConfigError naming them, and
    the families there are; nothing runs."""
    STORE.clear()
    with pytest.raises(asyncflow.ConfigError, match="force") as info:
        asyncflow.build(Leaf(13), Failing(), journal=None, force=force)
    message = str(info.value)
    assert named in message and "families there: Failing, Leaf" in message
    assert "'Leaf'" not in message
    assert STORE.keys() == []


def test_force_may_name_a_requirement_yielded_at_run_time() -> None:
    """A family only run() yields is not in the graph before the run: force= accepts it
    while a task that may yield will run, and still refuses a name no task class has."""
    STORE.clear()

    class Yields(asyncflow.Task):
        def output(self) -> MemoryTarget:
            return MemoryTarget("yields", store=STORE)

        async def run(self):  # type: ignore[no-untyped-def]
            yield Leaf(14)
            await self.output().write_bytes(b"1")

    assert asyncflow.build(Yields(), journal=None).ok
    result = asyncflow.build(Yields(), journal=None, force=["Yields", "Leaf"])
    assert result.ok and result.status(Leaf(14)) is asyncflow.Status.DONE
    with pytest.raises(asyncflow.ConfigError, match="'Nope'"):
        asyncflow.build(Yields(), journal=None, force=["Yields", "Nope"])
