"""MemoryTarget and MemoryStore: targets for tests and notebooks."""

from __future__ import annotations

import asyncio

import pytest

from asyncflow.targets import MemoryStore, MemoryTarget
from asyncflow.targets.memory import default_store

from ._support import Boom, write_then_raise

pytestmark = pytest.mark.anyio


async def test_separate_stores_are_isolated() -> None:
    """The same key in two stores names two different targets."""
    first, second = MemoryStore(), MemoryStore()
    await MemoryTarget("k", first).write_text("in first")
    assert not await MemoryTarget("k", second).exists()
    assert "k" in first
    assert "k" not in second


async def test_default_store_is_shared_by_key(clean_default_store: MemoryStore) -> None:
    """Two targets made without a store, with the same key, see the same data."""
    await MemoryTarget("shared").write_text("hello")
    assert await MemoryTarget("shared").read_text() == "hello"
    assert clean_default_store.get("shared") == b"hello"


async def test_default_store_accessor_returns_one_store() -> None:
    """default_store() is the store targets use when none is given."""
    assert default_store() is default_store()
    assert MemoryTarget("k").store is default_store()


async def test_store_inspection(clean_default_store: MemoryStore) -> None:
    """keys(), get(), len() and `in` show what was written; clear() empties the store."""
    store = MemoryStore()
    await MemoryTarget("b", store).write_bytes(b"2")
    await MemoryTarget("a", store).write_bytes(b"1")
    assert store.keys() == ["a", "b"]
    assert store.get("a") == b"1"
    assert store.get("missing") is None
    assert len(store) == 2
    assert "b" in store
    store.clear()
    assert len(store) == 0
    assert not await MemoryTarget("a", store).exists()
    assert len(clean_default_store) == 0


async def test_failed_write_leaves_store_unchanged() -> None:
    """A write block that raises adds no key to the store."""
    store = MemoryStore()
    with pytest.raises(Boom):
        await write_then_raise(MemoryTarget("k", store), "partial")
    assert store.keys() == []


async def test_exists_never_suspends() -> None:
    """exists() finishes without yielding to the event loop: no lock, no thread hop."""
    store = MemoryStore()
    await MemoryTarget("k", store).write_bytes(b"")
    probe = MemoryTarget("k", store).exists()
    with pytest.raises(StopIteration) as info:
        probe.send(None)
    assert info.value.value is True


def test_equality_by_store_and_key() -> None:
    """Targets are equal, and hash alike, when both store and key are the same."""
    store = MemoryStore()
    assert MemoryTarget("k", store) == MemoryTarget("k", store)
    assert hash(MemoryTarget("k", store)) == hash(MemoryTarget("k", store))
    assert MemoryTarget("k") == MemoryTarget("k", default_store())
    assert MemoryTarget("k", store) != MemoryTarget("k", MemoryStore())
    assert MemoryTarget("k", store) != MemoryTarget("j", store)


def test_repr_names_the_key_and_a_custom_store() -> None:
    """repr() shows the key, and the store when it is not the default one."""
    assert repr(MemoryTarget("data/x.csv")) == "MemoryTarget('data/x.csv')"
    store = MemoryStore()
    assert repr(MemoryTarget("k", store)) == f"MemoryTarget('k', store={store!r})"
    assert "0 keys" in repr(store)


def test_sync_form_works_without_event_loop() -> None:
    """Plain synchronous code with no event loop can write and read."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    store = MemoryStore()
    target = MemoryTarget("k", store)
    with target.open("w") as f:
        f.write("no loop")
    with target.open("r") as f:
        assert f.read() == "no loop"
    assert store.get("k") == b"no loop"


async def test_discard_partial_writes_has_nothing_to_do() -> None:
    """An unfinished write dies with its buffer: discarding returns 0 and keeps the store."""
    store = MemoryStore()
    target = MemoryTarget("k", store)
    await target.write_text("kept")
    abandoned = target.open("w")
    (await abandoned.__aenter__()).write("never committed")
    assert await target.discard_partial_writes() == 0
    assert store.keys() == ["k"]
    assert await target.read_text() == "kept"
