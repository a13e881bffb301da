"""Deep and wide graphs cost time and memory in proportion to their size."""

from __future__ import annotations

import functools
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import asyncflow
from asyncflow import Status
from asyncflow.dag import render
from asyncflow.graph import Graph, expand
from asyncflow.journal import Journal

FORMATS = ("text", "mermaid", "dot")
MAX_PEAK = 64 * 2**20  # bytes: a 50,000-task render needs about 18 MiB


class Link(asyncflow.Task):
    """A chain: Link(n) requires Link(n - 1), down to Link(0)."""

    n = asyncflow.IntParameter()

    def requires(self) -> asyncflow.Task | None:
        return Link(self.n - 1) if self.n else None


class Cell(asyncflow.Task):
    """A lattice: Cell(i, j) requires Cell(i - 1, j) and Cell(i, j - 1)."""

    i = asyncflow.IntParameter()
    j = asyncflow.IntParameter()

    def requires(self) -> list[asyncflow.Task]:
        return [Cell(self.i - 1, self.j)] * (self.i > 0) + [Cell(self.i, self.j - 1)] * (self.j > 0)


class Leaf(asyncflow.Task):
    i = asyncflow.IntParameter()


class Fan(asyncflow.Task):
    """One task requiring ``width`` others."""

    width = asyncflow.IntParameter()

    def requires(self) -> list[asyncflow.Task]:
        return [Leaf(i) for i in range(self.width)]


def _graph(task: asyncflow.Task) -> Graph:
    return anyio.run(functools.partial(expand, [task], probe=False), backend="asyncio")


def _size(graph: Graph) -> int:
    """V + E."""
    return len(graph) + sum(len(node.deps) for node in graph.order)


def _render_measured(graph: Graph, fmt: str) -> tuple[str, int]:
    """The rendering and the peak of memory allocated while rendering."""
    tracemalloc.start()
    try:
        text = render(graph, fmt)
        return text, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_50000_long_chain_renders_in_linear_size_and_memory() -> None:
    """Every format renders a 50,000-long chain in under 200 bytes a task, without
    recursion, and text indentation stops growing (depth shown instead)."""
    short = _graph(Link(2_000))  # a quadratic renderer fails here at once, not after GiBs
    for fmt in FORMATS:
        assert len(render(short, fmt)) < 200 * len(short), fmt
    graph = _graph(Link(50_000))
    for fmt in FORMATS:
        text, peak = _render_measured(graph, fmt)
        assert len(text) < 200 * len(graph), fmt
        assert peak < MAX_PEAK, (fmt, peak)
    lines = render(graph, "text").splitlines()
    assert len(lines) == 50_001
    assert lines[0] == "[ ] Link(n=50000)"
    assert lines[1] == "    [ ] Link(n=49999)"
    assert lines[-1] == " " * 80 + "depth 50000: [ ] Link(n=0)"
    assert max(len(line) for line in lines) < 120


def test_lattices_and_wide_fans_render_each_shared_task_once() -> None:
    """A lattice's shared subtrees are shown once, then referred to; its size and a
    wide fan's stay linear in tasks plus requirements in every format."""
    lattice = _graph(Cell(100, 100))
    fan = _graph(Fan(20_000))
    for graph in (lattice, fan):
        for fmt in FORMATS:
            text, peak = _render_measured(graph, fmt)
            assert len(text) < 200 * _size(graph), fmt
            assert peak < MAX_PEAK, (fmt, peak)
    lines = render(lattice, "text").splitlines()
    edges = _size(lattice) - len(lattice)
    assert len(lines) == 1 + edges  # the root, then one line per requirement
    in_full = [line for line in lines if not line.endswith(" (see above)")]
    # Each task once in full, but Cell(0, 0): a leaf is shown under both its users.
    assert len(in_full) == len(lattice) + 1
    assert sum(1 for line in in_full if line.endswith("[ ] Cell(i=50, j=50)")) == 1


class Level(asyncflow.Task):
    """Level n yields level n - 1 from its body; level 0 fails."""

    n = asyncflow.IntParameter()

    async def run(self) -> AsyncIterator[asyncflow.Task]:
        if self.n == 0:
            raise ValueError("the bottom of the chain is broken")
        yield Level(self.n - 1)


@pytest.mark.anyio
async def test_a_failing_3000_deep_chain_of_dynamic_requirements_keeps_the_journal_small(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each level of a deep failing chain stores its own error and one line on the
    root cause, not the tracebacks of every level below it (quadratic)."""
    depth = 3_000
    path = tmp_path / "journal.db"
    caplog.set_level(logging.ERROR, logger="asyncflow")
    started = time.perf_counter()
    result = await asyncflow.run(Level(depth), journal=path)
    elapsed = time.perf_counter() - started
    assert elapsed < 100  # a sanity bound (the quadratic journal took over 2 minutes)
    stored = sum(f.stat().st_size for f in tmp_path.iterdir() if f.name.startswith("journal.db"))
    assert stored < 5 * 2**20  # 3.8 MB (it was 850 MB)

    root = Level(0).task_id
    why = "ValueError: the bottom of the chain is broken"
    assert result.status(Level(0)) is Status.FAILED
    assert isinstance(result.error(Level(1)).__cause__, ValueError)  # the level right above
    for n in range(1, depth + 1):
        error = result.error(Level(n))
        assert isinstance(error, asyncflow.UpstreamFailed)
        assert error.root == root and why in str(error), n
        assert len(result[Level(n)].traceback or "") < 5_000, n
    summary = result.summary()
    assert f"root cause: {root} failed: {why}" in summary and len(summary) < 20_000

    async with Journal.open(path) as journal:
        run = await journal.run(result.run_id)
    assert run is not None
    upstream = [a for a in run.attempts if a.task_id != root]
    assert len(upstream) == depth
    for attempt in upstream:
        assert root in (attempt.error_message or ""), attempt.task_id
        assert why in (attempt.error_message or ""), attempt.task_id
        assert len(attempt.traceback or "") < 5_000, attempt.task_id

    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("task.failed")]
    assert len(failed) == depth + 1
    assert all(root in message and why in message for message in failed)
