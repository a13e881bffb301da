"""The Target base: hook defaults, the open() context object, and the exports."""

from __future__ import annotations

import io
import math
import types
from typing import BinaryIO

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

import asyncflow.targets
from asyncflow.targets import MemoryStore, MemoryTarget, Target
from asyncflow.targets.base import AtomicWriter

from ._support import AsyncOnlyTarget, Boom

pytestmark = pytest.mark.anyio


class RecordingWriter(AtomicWriter):
    """An async-only writer that records what happened to it, and can fail on request."""

    def __init__(self, *, fail_commit: bool = False, fail_discard: bool = False) -> None:
        self.file = io.BytesIO()
        self.events: list[str] = []
        self._fail_commit = fail_commit
        self._fail_discard = fail_discard

    async def acommit(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._fail_commit:
            raise OSError("upload failed")
        self.events.append("committed")

    async def adiscard(self) -> None:
        # A deadline of -inf means a cancelled scope: a real cleanup would be cut short.
        cancelled = anyio.current_effective_deadline() == -math.inf
        self.events.append("discarded while cancelled" if cancelled else "discarded")
        await anyio.lowlevel.checkpoint()
        if self._fail_discard:
            raise OSError("cleanup failed")


class WriterTarget(Target):
    """Hands out one given writer; reading is not supported."""

    def __init__(self, writer: RecordingWriter) -> None:
        self.writer = writer

    def __repr__(self) -> str:
        return "WriterTarget()"

    async def exists(self) -> bool:
        return False

    async def remove(self) -> None:
        pass

    async def _aopen_reader(self) -> BinaryIO:
        raise NotImplementedError

    async def _aopen_writer(self) -> AtomicWriter:
        return self.writer


# --- Hook defaults --------------------------------------------------------------


def test_backend_without_reader_hooks_is_rejected() -> None:
    """A concrete target that overrides neither reader hook fails at class definition."""
    with pytest.raises(TypeError, match=r"_open_reader\(\) or _aopen_reader\(\)"):

        class NoReader(Target):  # pyright: ignore[reportUnusedClass]
            async def exists(self) -> bool:
                return False

            async def remove(self) -> None:
                pass

            def _open_writer(self) -> AtomicWriter:
                raise NotImplementedError


def test_writer_without_commit_is_rejected() -> None:
    """A writer that overrides neither commit() nor acommit() fails at class definition."""
    with pytest.raises(TypeError, match=r"commit\(\) or acommit\(\)"):

        class NoCommit(AtomicWriter):  # pyright: ignore[reportUnusedClass]
            def discard(self) -> None:
                pass


def test_abstract_intermediate_base_is_allowed() -> None:
    """A subclass that is still abstract need not implement the hooks yet."""

    class RemoteTarget(Target):
        """Shared code for cloud backends; exists() and remove() left abstract."""

    assert RemoteTarget.__abstractmethods__ == frozenset({"exists", "remove"})


def test_async_only_backend_sync_form_needs_a_worker_thread() -> None:
    """Without an anyio worker thread, the sync form of an async-only backend raises."""
    target = AsyncOnlyTarget("k", {})
    with pytest.raises(RuntimeError, match="worker thread"), target.open("w"):
        pass


async def test_sync_discard_is_shielded_in_cancelled_worker_thread() -> None:
    """A sync-form discard of an async-only writer completes though the caller was cancelled."""
    writer = RecordingWriter()
    target = WriterTarget(writer)

    def write_then_fail(scope: anyio.CancelScope) -> None:
        with target.open("wb") as f:
            f.write(b"partial")
            anyio.from_thread.run_sync(scope.cancel)
            raise Boom

    with pytest.raises(Boom), anyio.CancelScope() as scope:
        await anyio.to_thread.run_sync(write_then_fail, scope)
    assert writer.events == ["discarded"]


# --- Commit and discard ---------------------------------------------------------


async def test_cancelled_block_still_completes_discard() -> None:
    """The async discard runs shielded, so it finishes even under cancellation."""
    writer = RecordingWriter()
    with anyio.CancelScope() as scope:
        async with WriterTarget(writer).open("wb"):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert writer.events == ["discarded"]


async def test_failed_commit_is_discarded_and_reraised() -> None:
    """When commit raises, the writer is discarded and the commit error propagates."""
    writer = RecordingWriter(fail_commit=True)
    with pytest.raises(OSError, match="upload failed"):
        async with WriterTarget(writer).open("wb") as f:
            f.write(b"data")
    assert writer.events == ["discarded"]


async def test_discard_failure_is_noted_on_the_original_error() -> None:
    """If discarding fails too, the block's own exception propagates with a note."""
    writer = RecordingWriter(fail_discard=True)
    with pytest.raises(Boom) as info:
        async with WriterTarget(writer).open("wb"):
            raise Boom
    (note,) = info.value.__notes__
    assert "WriterTarget()" in note
    assert "cleanup failed" in note


def test_text_is_flushed_into_writer_file_before_commit() -> None:
    """Text still buffered in the UTF-8 wrapper reaches the writer's file before commit."""
    store = MemoryStore()
    with MemoryTarget("k", store).open("w") as f:
        f.write("é" * 10)  # far below the wrapper's buffer size
    assert store.get("k") == ("é" * 10).encode("utf-8")


# --- The context object ---------------------------------------------------------


async def test_open_target_repr_follows_its_state() -> None:
    """repr() names the target and mode, and tells where in its life the context is."""
    target = MemoryTarget("k", MemoryStore())
    writing = target.open("w")
    assert repr(writing) == f"<OpenTarget {target!r} mode='w' not entered>"
    async with writing:
        assert repr(writing).endswith(" open>")
    assert repr(writing).endswith(" committed>")

    failing = target.open("wb")
    with pytest.raises(Boom):
        async with failing:
            raise Boom
    assert repr(failing).endswith(" discarded>")

    reading = target.open("r")
    async with reading:
        pass
    assert repr(reading).endswith(" closed>")


async def test_open_target_can_be_entered_only_once() -> None:
    """Entering the same context object twice raises RuntimeError."""
    opened = MemoryTarget("k", MemoryStore()).open("w")
    async with opened:
        pass
    with pytest.raises(RuntimeError, match="only be entered once"):
        async with opened:
            pass


async def test_file_is_unusable_after_the_block() -> None:
    """Writing to the file after the block has committed raises ValueError."""
    async with MemoryTarget("k", MemoryStore()).open("wb") as f:
        f.write(b"data")
    with pytest.raises(ValueError, match="closed"):
        f.write(b"late")


async def test_closing_the_file_inside_the_block_aborts_the_write() -> None:
    """A file closed inside the block cannot be committed, so nothing is written."""
    store = MemoryStore()

    async def write_and_close() -> None:
        async with MemoryTarget("k", store).open("w") as f:
            f.write("data")
            f.close()

    with pytest.raises(ValueError, match="closed"):
        await write_and_close()
    assert store.keys() == []


# --- Exports --------------------------------------------------------------------


def test_exports_are_complete_and_sorted() -> None:
    """asyncflow.targets.__all__ lists every public name, sorted (those imported on
    first use too: dir() lists them, and each resolves)."""
    public = {
        name
        for name in dir(asyncflow.targets)
        if not name.startswith("_")
        and not isinstance(getattr(asyncflow.targets, name), types.ModuleType)
    }
    assert set(asyncflow.targets.__all__) == public
    assert asyncflow.targets.__all__ == sorted(asyncflow.targets.__all__)
