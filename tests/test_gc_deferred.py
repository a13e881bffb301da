"""While a run goes on, full garbage collections are deferred; the application's
collector settings are given back when the last run ends (see asyncflow._gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anyio
import pytest

import asyncflow
from asyncflow._gc import DEFERRED, NODES_PER_STEP, defer_for, fewer_full_collections
from asyncflow.graph import expand

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, ...]]:
    """Each test starts from CPython's defaults and leaves the collector as it found it."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*before)


class Seen(asyncflow.Task):
    """Notes the collector's thresholds from inside its body."""

    n = asyncflow.IntParameter(default=0)
    seen: list[tuple[int, ...]] = []

    async def run(self) -> None:
        Seen.seen.append(gc.get_threshold())


async def test_a_run_defers_full_collections_and_gives_the_settings_back() -> None:
    Seen.seen = []
    result = await asyncflow.run(Seen(), journal=None)
    assert result.ok
    assert Seen.seen == [(700, 10, DEFERRED)]
    assert gc.get_threshold() == (700, 10, 10)


async def test_settings_come_back_when_the_last_of_overlapping_runs_ends() -> None:
    """Two runs at once: the first to end leaves the deferral to the other."""
    Seen.seen = []
    during: list[tuple[int, ...]] = []
    started, release = anyio.Event(), anyio.Event()

    class Held(asyncflow.Task):
        async def run(self) -> None:
            started.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: asyncflow.run(Held(), journal=None))
        await started.wait()  # Held's run goes on
        assert (await asyncflow.run(Seen(n=1), journal=None)).ok
        during.append(gc.get_threshold())
        release.set()
    assert Seen.seen == [(700, 10, DEFERRED)]
    assert during == [(700, 10, DEFERRED)]  # the first run still went on
    assert gc.get_threshold() == (700, 10, 10)


async def test_the_applications_own_settings_are_kept() -> None:
    """A higher third threshold of its own is left alone; thresholds it changes while
    a run goes on are not overwritten when the run ends; a disabled collector stays so."""
    gc.set_threshold(700, 10, 5 * DEFERRED)
    Seen.seen = []
    assert (await asyncflow.run(Seen(), journal=None)).ok
    assert Seen.seen == [(700, 10, 5 * DEFERRED)] and gc.get_threshold() == (700, 10, 5 * DEFERRED)

    gc.set_threshold(700, 10, 10)

    class Changes(asyncflow.Task):
        async def run(self) -> None:
            gc.set_threshold(1000, 20, 30)

    assert (await asyncflow.run(Changes(), journal=None)).ok
    assert gc.get_threshold() == (1000, 20, 30)

    gc.disable()
    try:
        assert (await asyncflow.run(Seen(n=2), journal=None)).ok
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_larger_graph_defers_them_further_while_the_settings_are_ours() -> None:
    """One more younger collection before a full one per NODES_PER_STEP nodes of the
    graph, past DEFERRED; never outside a run, nor over the application's own change."""
    defer_for(10**6)
    assert gc.get_threshold() == (700, 10, 10)  # no run goes on
    with fewer_full_collections():
        defer_for(DEFERRED * NODES_PER_STEP // 2)  # a smaller graph: no change
        assert gc.get_threshold() == (700, 10, DEFERRED)
        defer_for(5 * DEFERRED * NODES_PER_STEP)
        assert gc.get_threshold() == (700, 10, 5 * DEFERRED)
        gc.set_threshold(700, 10, 50)  # the application's own
        defer_for(10 * DEFERRED * NODES_PER_STEP)
        assert gc.get_threshold() == (700, 10, 50)
    assert gc.get_threshold() == (700, 10, 50)
    gc.set_threshold(700, 10, 10)
    with fewer_full_collections():
        defer_for(5 * DEFERRED * NODES_PER_STEP)
    assert gc.get_threshold() == (700, 10, 10)


class Leaf(asyncflow.Task):
    i = asyncflow.IntParameter()


class Wide(asyncflow.Task):
    n = asyncflow.IntParameter()

    def requires(self) -> list[Leaf]:
        return [Leaf(i=i) for i in range(self.n)]


async def test_a_graph_growing_large_defers_them_while_it_is_expanded() -> None:
    """Most of a large graph's full collections would come while it is built: expand()
    defers them further as it grows (every 50,000 nodes)."""
    with fewer_full_collections():
        graph = await expand([Wide(n=150_000)], probe=False)
        assert len(graph) == 150_001
        assert gc.get_threshold() == (700, 10, 150_000 // NODES_PER_STEP)
        assert 150_000 // NODES_PER_STEP > DEFERRED
    assert gc.get_threshold() == (700, 10, 10)
