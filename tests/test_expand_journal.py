"""Expansion asks the journal few questions: batched lookups and per-family snapshots.

Tasks without outputs are complete once the journal holds a success for them.
Each question is a trip to the journal's database thread, so expansion batches
them (``graph.JournalAnswers``); these tests count the questions a real journal
is asked and check that the answers are the same as asking task by task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import asyncflow
from asyncflow.graph import JournalAnswers, Probes, expand
from asyncflow.journal import Journal, open_journal

pytestmark = pytest.mark.anyio

RAN: list[str] = []


class Step(asyncflow.Task):
    """A chain: step i requires step i - 1; no outputs (the journal says if done)."""

    i = asyncflow.IntParameter()

    def requires(self) -> Any:
        return Step(i=self.i - 1) if self.i > 0 else None

    async def run(self) -> None:
        RAN.append(self.task_id)


class Stepper(asyncflow.Task):
    """A family whose name starts like Step's: its ids must not count as Step's."""

    i = asyncflow.IntParameter()

    async def run(self) -> None:
        RAN.append(self.task_id)


class Fan(asyncflow.Task):
    n = asyncflow.IntParameter()

    def requires(self) -> Any:
        return [Stepper(i=i) for i in range(self.n)]

    async def run(self) -> None:
        RAN.append(self.task_id)


class Counted:
    """The journal's two lookups, counted (the journal itself answers)."""

    SNAPSHOT_ROWS = JournalAnswers.SNAPSHOT_ROWS

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.by_id: list[int] = []  # ids per succeeded() question
        self.under: list[tuple[str, int]] = []

    async def succeeded(self, task_ids: list[str]) -> set[str]:
        self.by_id.append(len(task_ids))
        return await self.journal.succeeded(task_ids)

    async def succeeded_under(self, prefix: str, limit: int) -> set[str] | None:
        self.under.append((prefix, limit))
        return await self.journal.succeeded_under(prefix, limit)

    def probes(self) -> Probes:
        return Probes(self.succeeded, None, self.succeeded_under)


async def test_a_long_chain_reads_its_familys_successes_at_once(tmp_path: Path) -> None:
    """Probing a 300-step chain, half of it done, asks a few questions, not 150,
    finds exactly the done half complete, and the run runs the other half."""
    path = tmp_path / "journal.db"
    assert (await asyncflow.run(Step(i=149), journal=path)).ok  # steps 0-149 succeed
    async with Journal.open(path) as journal:
        counted = Counted(journal)
        graph = await expand([Step(i=299)], probes=counted.probes())
    statuses = {node.task.i: node.status for node in graph}  # type: ignore[attr-defined]
    assert statuses == {
        **{i: None for i in range(150, 300)},  # to run
        149: asyncflow.Status.ALREADY_COMPLETE,  # expansion stops at the first complete one
    }
    assert counted.under and all(prefix == "Step_" for prefix, _ in counted.under)
    assert len(counted.by_id) + len(counted.under) < 80
    RAN.clear()  # and the run runs the missing half, once each
    assert (await asyncflow.run(Step(i=299), journal=path)).ok
    assert sorted(RAN) == sorted(Step(i=i).task_id for i in range(150, 300))


async def test_a_family_new_to_the_journal_is_asked_about_once(tmp_path: Path) -> None:
    """A 300-step chain on a journal without any of its successes is probed with
    one question (its family's successes: none), not one per step."""
    path = tmp_path / "journal.db"
    assert (await asyncflow.run(Stepper(i=0), journal=path)).ok  # another family's success
    async with Journal.open(path) as journal:
        counted = Counted(journal)
        graph = await expand([Step(i=299)], probes=counted.probes())
    assert len(graph) == 300 and all(node.status is None for node in graph)  # all to run
    assert counted.under == [("Step_", Counted.SNAPSHOT_ROWS)]
    assert counted.by_id == []


async def test_probes_in_flight_together_ask_in_one_question(tmp_path: Path) -> None:
    """The 200 requirements of one task are looked up in a handful of questions,
    and those that succeeded before are found complete."""
    path = tmp_path / "journal.db"
    assert (await asyncflow.run(*[Stepper(i=i) for i in range(0, 200, 2)], journal=path)).ok
    async with Journal.open(path) as journal:
        counted = Counted(journal)
        graph = await expand([Fan(n=200)], probes=counted.probes(), probe_concurrency=64)
    done = {node.task.i for node in graph if node.status is asyncflow.Status.ALREADY_COMPLETE}  # type: ignore[attr-defined]
    assert done == set(range(0, 200, 2))
    assert sum(counted.by_id) + sum(1 for _ in counted.under) < 200
    assert len(counted.by_id) <= 10, counted.by_id


async def test_succeeded_under_is_exact_and_bounded(journal_where: str) -> None:
    """The journal's successes under a prefix (either backend): the ids with that
    prefix only, and None (nothing read past the limit) when there are more."""
    path = journal_where
    assert (await asyncflow.run(Step(i=4), *[Stepper(i=i) for i in range(3)], journal=path)).ok
    async with open_journal(path) as journal:
        steps = await journal.succeeded_under("Step_", 10)
        assert steps == {Step(i=i).task_id for i in range(5)}
        assert await journal.succeeded_under("Stepper_", 10) == {
            Stepper(i=i).task_id for i in range(3)
        }
        assert await journal.succeeded_under("Step_", 5) == steps
        assert await journal.succeeded_under("Step_", 4) is None
        assert await journal.succeeded_under("Nothing_", 4) == set()
        with pytest.raises(ValueError, match="non-empty prefix"):
            await journal.succeeded_under("", 4)
