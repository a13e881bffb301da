"""The behaviour every target backend promises, run against each backend."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from asyncflow.errors import TargetNotFoundError

from ._support import Boom, TargetFactory, write_then_raise

pytestmark = pytest.mark.anyio

UNICODE = "naïve café, 日本語, Ελληνικά, emoji 🐍\nsecond line\n"


async def test_missing_target_does_not_exist(target_factory: TargetFactory) -> None:
    """A target nobody wrote does not exist."""
    assert not await target_factory("missing.txt").exists()


async def test_text_write_then_exists_and_reads_back(target_factory: TargetFactory) -> None:
    """Text written in "w" mode exists afterwards and reads back in "r" mode."""
    target = target_factory("out.txt")
    async with target.open("w") as f:
        f.write("hello\n")
        f.write("world\n")
    assert await target.exists()
    async with target.open("r") as f:
        assert f.read() == "hello\nworld\n"


async def test_binary_write_then_reads_back(target_factory: TargetFactory) -> None:
    """Bytes written in "wb" mode read back unchanged in "rb" mode."""
    target = target_factory("out.bin")
    payload = bytes(range(256)) * 10
    async with target.open("wb") as f:
        f.write(payload)
    async with target.open("rb") as f:
        assert f.read() == payload


async def test_unicode_text_round_trips_as_utf8(target_factory: TargetFactory) -> None:
    """Non-ASCII text is stored as UTF-8, whatever the locale."""
    target = target_factory("unicode.txt")
    async with target.open("w") as f:
        f.write(UNICODE)
    async with target.open("r") as f:
        assert f.read() == UNICODE
    async with target.open("rb") as f:
        assert f.read() == UNICODE.encode("utf-8")


async def test_overwrite_replaces_content(target_factory: TargetFactory) -> None:
    """A second write replaces the first entirely, even if shorter."""
    target = target_factory("twice.txt")
    await target.write_text("a long first version\n")
    await target.write_text("short\n")
    assert await target.read_text() == "short\n"


async def test_exception_in_write_block_leaves_nothing(target_factory: TargetFactory) -> None:
    """An exception inside the write block means the target is never created."""
    target = target_factory("failed.txt")
    with pytest.raises(Boom):
        await write_then_raise(target, "partial")
    assert not await target.exists()


async def test_exception_in_write_block_keeps_previous_version(
    target_factory: TargetFactory,
) -> None:
    """An exception inside the write block leaves the existing version untouched."""
    target = target_factory("kept.txt")
    await target.write_text("old\n")
    with pytest.raises(Boom):
        await write_then_raise(target, "new\n")
    assert await target.read_text() == "old\n"


async def test_cancelled_write_leaves_nothing(target_factory: TargetFactory) -> None:
    """A write block cancelled while it waits is discarded and the cancellation propagates."""
    target = target_factory("cancelled.txt")
    with anyio.CancelScope() as scope:
        async with target.open("w") as f:
            f.write("partial")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert not await target.exists()


async def test_cancelled_write_keeps_previous_version(target_factory: TargetFactory) -> None:
    """A cancelled write block leaves the existing version untouched."""
    target = target_factory("kept-on-cancel.txt")
    await target.write_text("old\n")
    with anyio.CancelScope() as scope:
        async with target.open("w") as f:
            f.write("new\n")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert await target.read_text() == "old\n"


async def test_sync_form_in_worker_thread_writes_and_reads(
    target_factory: TargetFactory,
) -> None:
    """Plain `with` works for writing and reading inside anyio.to_thread.run_sync."""
    target = target_factory("threaded.txt")

    def write_then_read() -> str:
        with target.open("w") as f:
            f.write(UNICODE)
        with target.open("r") as f:
            return f.read()

    assert await anyio.to_thread.run_sync(write_then_read) == UNICODE
    assert await target.read_text() == UNICODE


async def test_sync_form_in_worker_thread_discards_on_exception(
    target_factory: TargetFactory,
) -> None:
    """An exception in a sync write block in a worker thread leaves nothing."""
    target = target_factory("threaded-failed.bin")

    def failing_write() -> None:
        with target.open("wb") as f:
            f.write(b"partial")
            raise Boom

    with pytest.raises(Boom):
        await anyio.to_thread.run_sync(failing_write)
    assert not await target.exists()


async def test_reading_missing_target_raises_not_found(target_factory: TargetFactory) -> None:
    """Reading a missing target raises TargetNotFoundError, a FileNotFoundError, naming it."""
    target = target_factory("nowhere.txt")
    with pytest.raises(TargetNotFoundError, match=r"nowhere\.txt") as info:
        async with target.open("r"):
            pass
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("mode", ["a", "r+", "x", "", "rt", "W"])
async def test_bad_mode_raises_value_error(target_factory: TargetFactory, mode: str) -> None:
    """An unsupported mode raises ValueError naming the mode and the target."""
    target = target_factory("mode.txt")
    with pytest.raises(ValueError, match="mode") as info:
        target.open(mode)
    assert repr(mode) in str(info.value)
    assert repr(target) in str(info.value)


async def test_byte_helpers_round_trip(target_factory: TargetFactory) -> None:
    """write_bytes() then read_bytes() returns the same bytes."""
    target = target_factory("helpers.bin")
    await target.write_bytes(b"\x00\xffdata")
    assert await target.read_bytes() == b"\x00\xffdata"


async def test_text_helpers_round_trip(target_factory: TargetFactory) -> None:
    """write_text() then read_text() returns the same text, stored as UTF-8."""
    target = target_factory("helpers.txt")
    await target.write_text(UNICODE)
    assert await target.read_text() == UNICODE
    assert await target.read_bytes() == UNICODE.encode("utf-8")


async def test_read_helper_on_missing_target_raises_not_found(
    target_factory: TargetFactory,
) -> None:
    """read_bytes() on a missing target raises TargetNotFoundError."""
    with pytest.raises(TargetNotFoundError):
        await target_factory("absent.bin").read_bytes()


async def test_remove_deletes_target(target_factory: TargetFactory) -> None:
    """remove() makes an existing target disappear."""
    target = target_factory("doomed.txt")
    await target.write_text("x")
    await target.remove()
    assert not await target.exists()


async def test_remove_missing_target_is_a_no_op(target_factory: TargetFactory) -> None:
    """remove() on a missing target neither raises nor creates anything."""
    target = target_factory("never.txt")
    await target.remove()
    assert not await target.exists()


async def test_discard_partial_writes_finds_nothing_after_finished_writes(
    target_factory: TargetFactory,
) -> None:
    """Committed and failed writes leave nothing to discard, and discarding keeps the target."""
    target = target_factory("kept.txt")
    await target.write_text("committed")
    with pytest.raises(Boom):
        await write_then_raise(target, "failed")
    assert await target.discard_partial_writes() == 0
    assert await target.read_text() == "committed"
