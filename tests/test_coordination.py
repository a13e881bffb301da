from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from tests.fixtures.executing import execute

import asyncflow
import asyncflow.executor as executor_module
from asyncflow import Status
from asyncflow.coordination import (
    Claim,
    CommitCheck,
    Coordinator,
    Holder,
    LeaseOutcome,
    NullCoordinator,
)
from asyncflow.graph import Probes
from asyncflow.targets import MemoryStore, MemoryTarget

pytestmark = pytest.mark.anyio

PACKAGE = Path(asyncflow.__file__).parent
# The executor's modules and what lies below it: none may know the journal.
BELOW_THE_JOURNAL = ("executor.py", "_attempt.py", "_scheduler.py", "coordination.py", "graph.py")


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the asyncflow modules ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the asyncflow package (these modules sit at its root)
                base = "asyncflow" + ("." + base if base else "")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", BELOW_THE_JOURNAL)
def test_the_executor_imports_nothing_of_the_journal(module: str) -> None:
    """The executor sees the coordination interface only, never the journal."""
    imported = _imported_modules(PACKAGE / module)
    journal = sorted(
        m for m in imported if m == "asyncflow.journal" or m.startswith("asyncflow.journal.")
    )
    assert journal == [], f"{module} imports {journal}"


STORE = MemoryStore()


class Step(asyncflow.Task):
    """Writes its output, after the steps named in `needs`."""

    name = asyncflow.Parameter()
    needs = asyncflow.ListParameter(default=[])
    ran: list[str] = []

    def requires(self) -> list[Step]:
        return [Step(n) for n in self.needs]

    def output(self) -> MemoryTarget:
        return MemoryTarget(self.name, store=STORE)

    async def run(self) -> None:
        Step.ran.append(self.name)
        async with self.output().open("w") as f:  # a commit the guard is asked about
            f.write("done")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    STORE.clear()
    Step.ran = []
    Quiet.ran = []


async def test_the_null_coordinator_gives_every_lease_at_once() -> None:
    """Without a journal every task is this run's at once, and commits need no lease."""
    null = NullCoordinator()
    claim = await null.claim("run", ["a", "b"], since=0.0)
    assert (claim.taken, claim.held, claim.done, claim.unsettled) == (["a", "b"], {}, set(), [])
    assert null.commit_check("run") is None
    assert await null.watch(["a"]) == {"a": LeaseOutcome.ABANDONED}
    statuses = await execute([Step("top", needs=["a", "b"])], NullCoordinator())
    assert statuses == {"top": Status.DONE, "a": Status.DONE, "b": Status.DONE}
    assert sorted(Step.ran) == ["a", "b", "top"]


class _Counting(NullCoordinator):
    """Every lease at once, as without a journal, keeping what each claim asked for
    (claimed as from a journal other runs share)."""

    shared = True

    def __init__(self) -> None:
        self.claims: list[list[str]] = []

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        self.claims.append(list(task_ids))
        return await super().claim(run_id, task_ids, since=since)


async def test_leases_no_other_run_shares_are_not_claimed() -> None:
    """Without a journal (leases no other run can hold), a run asks for none: each
    claim would hand over every task, for 0.7 µs a task in a 400,000-task run)."""

    class Unshared(_Counting):
        shared = False

    unshared = Unshared()
    leaves = [f"leaf-{n}" for n in range(50)]
    statuses = await execute([Step("top", needs=leaves)], unshared)
    assert set(statuses.values()) == {Status.DONE} and len(statuses) == 51
    assert unshared.claims == []


async def test_a_graph_of_a_chunk_or_fewer_is_leased_in_one_claim() -> None:
    """Tasks ready or not, one claim before any runs: a claim taken in the background
    while tasks run waits for the busy loop at every trip to the journal, and the
    last task of a wide graph waited for its lease (5-9% of a 10,000-task run)."""
    counting = _Counting()
    leaves = [f"leaf-{n}" for n in range(50)]
    statuses = await execute([Step("top", needs=leaves)], counting)
    assert set(statuses.values()) == {Status.DONE}
    [claimed] = counting.claims
    assert sorted(claimed) == sorted(
        Step(name, needs=leaves if name == "top" else []).task_id for name in ["top", *leaves]
    )


async def test_a_claims_tasks_are_taken_over_in_turns_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim's tasks are marked this run's (and the parked ones queued) a slice at
    a time, other coroutines running in between: 32,768 of them, taken while a
    run's tasks went by, held the loop 25 ms. With slices of one task, the claim
    and then the first filling of the ready queue give a turn per task each."""
    monkeypatch.setattr(executor_module, "_PUSH_TURN", 1)
    turns = 0
    at_claim: list[int] = []
    done = False

    class Noting(_Counting):
        async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
            found = await super().claim(run_id, task_ids, since=since)
            at_claim.append(turns)
            return found

    class Noted(Step):
        def requires(self) -> list[Step]:
            return [Noted(n) for n in self.needs]

        async def run(self) -> None:
            if len(at_claim) == 1:  # the first body
                at_claim.append(turns)
            await super().run()

    async def watch() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await anyio.lowlevel.checkpoint()

    leaves = [f"leaf-{n}" for n in range(50)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        statuses = await execute([Noted("top", needs=leaves)], Noting())
        done = True
    assert set(statuses.values()) == {Status.DONE}
    claimed, first_body = at_claim
    assert first_body - claimed >= 2 * 51 - 2, (claimed, first_body)


class Link(asyncflow.Task):
    """Link ``n`` of a chain: after link ``n - 1``."""

    n = asyncflow.IntParameter()

    @property
    def name(self) -> str:  # what execute() reports statuses by
        return f"link-{self.n}"

    def requires(self) -> Link | None:
        return Link(n=self.n - 1) if self.n else None

    def output(self) -> MemoryTarget:
        return MemoryTarget(self.name, store=STORE)

    async def run(self) -> None:
        Step.ran.append(self.name)
        async with self.output().open("w") as f:
            f.write("done")


async def test_a_larger_graph_is_leased_a_chunk_first_the_soonest_ready_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first claim is a whole chunk: the task that can start, then those that
    start soonest (a chain's next links), the rest in chunks in the background."""
    monkeypatch.setattr(executor_module, "_CLAIM_CHUNK", 4)
    counting = _Counting()
    statuses = await execute([Link(n=9)], counting)
    assert statuses == {f"link-{n}": Status.DONE for n in range(10)}
    assert Step.ran == [f"link-{n}" for n in range(10)]
    ids = [Link(n=n).task_id for n in range(10)]
    assert counting.claims == [ids[0:4], ids[4:8], ids[8:10]]


class Quiet(asyncflow.Task):
    """No output: complete once the journal holds a success for it."""

    name = asyncflow.Parameter()
    ran: list[str] = []

    async def run(self) -> None:
        Quiet.ran.append(self.name)


class _SlowTarget(MemoryTarget):
    """exists() takes a turn of the loop, and counts the probes in flight."""

    in_flight = 0
    most = 0

    async def exists(self) -> bool:
        _SlowTarget.in_flight += 1
        _SlowTarget.most = max(_SlowTarget.most, _SlowTarget.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            return await super().exists()
        finally:
            _SlowTarget.in_flight -= 1


class Slow(Step):
    def output(self) -> MemoryTarget:
        return _SlowTarget(self.name, store=STORE)


async def test_tasks_another_run_let_go_of_are_probed_again_side_by_side() -> None:
    """Tasks taken over from a run that let go of them (it died) are probed again
    together: their outputs side by side, the journal asked once for all those
    without outputs. (One by one, 30,000 tasks taken over took 30 s.)"""
    quiet = [Quiet(f"q{n}") for n in range(20)]
    slow = [Slow(f"s{n}") for n in range(20)]
    other = _OtherRun({t.task_id: LeaseOutcome.ABANDONED for t in [*quiet, *slow]}, set())
    asked: list[list[str]] = []

    async def succeeded(task_ids: list[str]) -> set[str]:
        asked.append(task_ids)
        return {Quiet("q0").task_id}  # it succeeded there; the others did not

    _SlowTarget.most = 0
    await MemoryTarget("s0", store=STORE).write_bytes(b"done")  # written there
    statuses = await execute([*quiet, *slow], other, Probes(succeeded))
    assert other.looked == 1  # held there at first, then let go: taken over here
    assert statuses.pop("q0") is statuses.pop("s0") is Status.ALREADY_COMPLETE
    assert set(statuses.values()) == {Status.DONE}
    assert sorted(Quiet.ran) == sorted(f"q{n}" for n in range(1, 20))
    assert sorted(asked[0]) == sorted(t.task_id for t in quiet)  # one question for the 20
    assert len(asked) == 1, asked
    assert _SlowTarget.most > 1  # their outputs probed side by side


class _OtherRun(Coordinator):
    """Leases in memory, some of them held by another run that ends them as told.

    ``elsewhere`` maps a task id to how the other run lets go of it (reported
    at the first look; ABANDONED: this run may take it then); ``lose`` names
    tasks this run loses while their body runs, as if its lease had lapsed, and
    which the other run then finishes.
    """

    def __init__(self, elsewhere: Mapping[str, LeaseOutcome], lose: set[str]) -> None:
        self.elsewhere = dict(elsewhere)
        self.lose = lose
        self.released: list[tuple[str, LeaseOutcome]] = []
        self.looked = 0

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        held = {
            t: Holder(t, "other", "elsewhere", 1, 0.0, float("inf"))
            for t in task_ids
            if t in self.elsewhere
        }
        return Claim([t for t in task_ids if t not in held], held, set(), [])

    async def watch(self, task_ids: Sequence[str]) -> Mapping[str, Holder | LeaseOutcome]:
        self.looked += 1
        found: dict[str, Holder | LeaseOutcome] = {}
        for task_id in task_ids:
            if task_id in self.lose:  # the other run took it over and finished it
                found[task_id] = LeaseOutcome.SUCCESS
            else:
                found[task_id] = outcome = self.elsewhere.get(task_id, LeaseOutcome.ABANDONED)
                if outcome is LeaseOutcome.ABANDONED:
                    self.elsewhere.pop(task_id, None)  # let go: this run may take it
        return found

    async def renew(self) -> Sequence[tuple[str, str]]:
        return []

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        self.released.append((task_id, outcome))
        return True

    def commit_check(self, run_id: str) -> CommitCheck:
        return _Refusing(self.lose)


class _Refusing(CommitCheck):
    """Says yes once (as the attempt starts), then no (as its body commits)."""

    def __init__(self, task_ids: set[str]) -> None:
        self.task_ids = task_ids
        self.asked: set[str] = set()

    def may_commit(self, task_id: str) -> bool:
        if task_id not in self.task_ids:
            return True
        first = task_id not in self.asked
        self.asked.add(task_id)
        return first


async def test_a_coordinator_of_our_own_drives_the_executor() -> None:
    """Another implementation of the interface decides what runs here, and the outcomes."""
    done, broken, lost = (Step(name).task_id for name in ("done", "broken", "lost"))
    coordinator = _OtherRun({done: LeaseOutcome.SUCCESS, broken: LeaseOutcome.FAILED}, {lost})
    statuses = await execute([Step("top", needs=["mine", "done", "broken", "lost"])], coordinator)
    assert statuses == {
        "top": Status.UPSTREAM_FAILED,
        "mine": Status.DONE,
        "done": Status.ALREADY_COMPLETE,  # the other run's success, taken as it is
        "broken": Status.FAILED,  # the other run's failure, taken as this run's
        "lost": Status.ALREADY_COMPLETE,  # its commit refused here, finished there
    }
    assert sorted(Step.ran) == ["lost", "mine"]  # "lost" ran, but its write was refused
    assert "lost" not in STORE.keys()  # noqa: SIM118 (a MemoryStore has no __contains__)
    assert coordinator.released == []  # nothing failed here
