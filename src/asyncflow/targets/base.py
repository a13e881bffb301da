"""The target base: what every storage backend implements, and what tasks use.

A task reads and writes its data through a :class:`Target`. Users call
:meth:`Target.open`, :meth:`Target.exists` and the convenience helpers; a
backend implements a handful of hooks:

============================  ========================================================
``exists()``                  async; is the target there? (abstract)
``remove()``                  async; delete it, no error if absent (abstract)
``_open_reader()``            sync; a binary file positioned at the start of the data,
                              or raise :class:`~asyncflow.errors.TargetNotFoundError`
``_aopen_reader()``           async flavour of the same
``_open_writer()``            sync; a fresh :class:`AtomicWriter`
``_aopen_writer()``           async flavour of the same
``discard_partial_writes()``  async; remove what interrupted writes left behind,
                              return how many (default: nothing to remove, 0)
============================  ========================================================

Each sync/async pair needs only one side: by default the async flavour runs the
sync one in a worker thread (``anyio.to_thread.run_sync``), and the sync flavour
calls the async one on the event loop (``anyio.from_thread.run``), which works
from a worker thread started by ``anyio.to_thread.run_sync``. A local backend
therefore writes sync hooks; a cloud backend whose primitives are async (upload
on commit) writes async hooks. :class:`AtomicWriter` follows the same pattern
with ``commit``/``acommit`` and ``discard``/``adiscard``. A class that overrides
neither side of a pair is rejected when it is defined.
"""

from __future__ import annotations

import abc
import contextvars
import io
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Generic,
    Literal,
    NamedTuple,
    TypeVar,
    cast,
    final,
    overload,
)

import anyio
import anyio.from_thread
import anyio.to_thread

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AtomicWriter",
    "OpenTarget",
    "Target",
    "WriterIdentity",
    "check_commit",
    "writer_identity",
]

_MODES = ("r", "w", "rb", "wb")

_F = TypeVar("_F", bound=IO[Any])


def _is_abstract(cls: type) -> bool:
    return any(
        getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in dir(cls)
    )


def _overrides(cls: type, base: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(base, name)


def _require_one_of_each(cls: type, base: type, pairs: tuple[tuple[str, str], ...]) -> None:
    """Reject a concrete subclass that would bounce between two default hooks forever."""
    if _is_abstract(cls):
        return
    for sync_name, async_name in pairs:
        if not (_overrides(cls, base, sync_name) or _overrides(cls, base, async_name)):
            raise TypeError(
                f"{cls.__qualname__} must override {sync_name}() or {async_name}() (or both)"
            )


class AtomicWriter:
    """A pending write: bytes go to :attr:`file`, and none are visible until commit.

    When the block succeeds, :meth:`commit` (or :meth:`acommit`) makes the data
    visible at the target in one step, or raises and leaves the previous version
    in place. Otherwise, and also after a commit that raised, :meth:`discard` (or
    :meth:`adiscard`) releases whatever the writer holds; it must therefore
    tolerate a half-done commit.
    """

    file: BinaryIO

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _require_one_of_each(cls, AtomicWriter, (("commit", "acommit"), ("discard", "adiscard")))

    def commit(self) -> None:
        """Publish the data; by default runs :meth:`acommit` on the event loop."""
        anyio.from_thread.run(self.acommit)

    async def acommit(self) -> None:
        """Publish the data; by default runs :meth:`commit` in a worker thread."""
        await anyio.to_thread.run_sync(self.commit)

    def discard(self) -> None:
        """Drop the data; by default runs :meth:`adiscard` on the event loop, shielded."""
        anyio.from_thread.run(_shielded, self.adiscard)

    async def adiscard(self) -> None:
        """Drop the data; by default runs :meth:`discard` in a worker thread."""
        await anyio.to_thread.run_sync(self.discard)


async def _shielded(func: Callable[[], Awaitable[None]]) -> None:
    # Cleanup must finish even if the task that started the worker thread was cancelled.
    with anyio.CancelScope(shield=True):
        await func()


class Target(abc.ABC):
    """Something a task reads or produces: a file, an object, a key in memory.

    See the module docstring for the hooks a backend implements.
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _require_one_of_each(
            cls,
            Target,
            (("_open_reader", "_aopen_reader"), ("_open_writer", "_aopen_writer")),
        )

    @abc.abstractmethod
    async def exists(self) -> bool:
        """Return whether the target exists. Called often: backends keep it cheap."""

    @abc.abstractmethod
    async def remove(self) -> None:
        """Remove the target if it exists; do nothing if it does not."""

    async def discard_partial_writes(self) -> int:
        """Remove what writes to this target left behind when their process died.

        A write interrupted by ``kill -9`` never makes its target partial, but
        it can leave a leftover beside it: a temporary file next to a local
        file, a pending multipart upload in S3 (invisible, yet billed). This
        is for the engine to call before running again a task whose previous
        attempt was interrupted, holding the task's lease. Call it only when no
        write to this target is in progress: a live write's leftovers look the
        same and would be removed.

        Returns how many leftovers were removed. This default has nothing to
        remove and returns 0: it suits backends whose pending writes die with
        the process, such as :class:`~asyncflow.targets.MemoryTarget`.

        Raises:
            TargetError: a leftover could not be removed; the message names it.
        """
        return 0

    @overload
    def open(self, mode: Literal["r", "w"] = "r") -> OpenTarget[io.TextIOWrapper]: ...
    @overload
    def open(self, mode: Literal["rb", "wb"]) -> OpenTarget[BinaryIO]: ...
    @overload
    def open(self, mode: str) -> OpenTarget[IO[Any]]: ...

    def open(self, mode: str = "r") -> OpenTarget[Any]:
        """Open the target for reading or writing.

        ``mode`` is ``"r"`` or ``"w"`` (UTF-8 text) or ``"rb"`` or ``"wb"`` (bytes).
        The result is a context manager usable as ``async with`` on the event loop,
        or as ``with`` in synchronous code (for backends with async-only hooks,
        that means inside a worker thread started by ``anyio.to_thread.run_sync``).
        Nothing happens until the block is entered.

        A write becomes visible only when the block exits without an exception;
        on any exception, cancellation included, it is discarded and the previous
        version of the target is left untouched. Closing the file inside the
        block aborts the write.

        Raises:
            ValueError: ``mode`` is not one of the four above.
            TargetNotFoundError: on entering a read of a missing target.
        """
        if mode not in _MODES:
            raise ValueError(f"invalid mode {mode!r} for {self!r}: expected 'r', 'w', 'rb' or 'wb'")
        return OpenTarget(self, mode)

    async def read_bytes(self) -> bytes:
        """Return the whole content.

        Raises:
            TargetNotFoundError: the target does not exist.
        """
        async with self.open("rb") as file:
            # The read itself may block (a local file), so it runs in a worker thread.
            return await anyio.to_thread.run_sync(file.read)

    async def read_text(self) -> str:
        """Return the whole content decoded as UTF-8.

        Raises:
            TargetNotFoundError: the target does not exist.
        """
        async with self.open("r") as file:
            return await anyio.to_thread.run_sync(file.read)

    async def write_bytes(self, data: bytes) -> None:
        """Atomically replace the content with ``data``."""
        async with self.open("wb") as file:
            await anyio.to_thread.run_sync(file.write, data)

    async def write_text(self, text: str) -> None:
        """Atomically replace the content with ``text`` encoded as UTF-8."""
        async with self.open("w") as file:
            await anyio.to_thread.run_sync(file.write, text)

    # DataFrame helpers: see targets/dataframe.py (needs pandas and pyarrow).

    async def read_parquet(self, **kwargs: Any) -> pd.DataFrame:
        """Read the target as parquet into a DataFrame, decoding in a worker thread."""
        from .dataframe import read_parquet

        return await read_parquet(self, **kwargs)

    async def write_parquet(self, frame: pd.DataFrame, **kwargs: Any) -> None:
        """Atomically write ``frame`` as parquet, encoding in a worker thread."""
        from .dataframe import write_parquet

        await write_parquet(self, frame, **kwargs)

    async def read_csv(self, **kwargs: Any) -> pd.DataFrame:
        """Read the target as UTF-8 CSV into a DataFrame, parsing in a worker thread."""
        from .dataframe import read_csv

        return await read_csv(self, **kwargs)

    async def write_csv(self, frame: pd.DataFrame, *, index: bool = False, **kwargs: Any) -> None:
        """Atomically write ``frame`` as UTF-8 CSV (no index by default), in a worker thread."""
        from .dataframe import write_csv

        await write_csv(self, frame, index=index, **kwargs)

    # Backend hooks. Override the sync flavour, the async flavour, or both.

    def _open_reader(self) -> BinaryIO:
        """Open the data for reading; by default runs :meth:`_aopen_reader` on the loop.

        Raises:
            TargetNotFoundError: the target does not exist.
        """
        return anyio.from_thread.run(self._aopen_reader)

    async def _aopen_reader(self) -> BinaryIO:
        """Open the data for reading; by default runs :meth:`_open_reader` in a thread.

        The returned file's ``close()`` is called directly, even from the event
        loop, so it must be quick.

        Raises:
            TargetNotFoundError: the target does not exist.
        """
        return await anyio.to_thread.run_sync(self._open_reader)

    def _open_writer(self) -> AtomicWriter:
        """Start a write; by default runs :meth:`_aopen_writer` on the event loop."""
        return anyio.from_thread.run(self._aopen_writer)

    async def _aopen_writer(self) -> AtomicWriter:
        """Start a write; by default runs :meth:`_open_writer` in a worker thread."""
        return await anyio.to_thread.run_sync(self._open_writer)


CommitGuard = Callable[["Target"], None]
"""Called with a target before a write to it is committed; raises to refuse it."""

commit_guard: contextvars.ContextVar[CommitGuard | None] = contextvars.ContextVar(
    "asyncflow_commit_guard", default=None
)
"""Set by the executor around a task body. Called with the target just before
each write is committed; it raises :class:`TargetError` when the write must not
be committed: the attempt was abandoned (it timed out or was cancelled while
its worker thread went on), or the run lost the task's journal lease to
another process."""


class WriterIdentity(NamedTuple):
    """Which task attempt is writing: remote backends tag each object they commit with it.

    After a commit whose outcome is unknown (the connection dropped once the
    store had the data) a backend tells its own object from another writer's
    by the tag, and an error about another writer's object names it.
    """

    run_id: str
    task_id: str
    attempt: int
    token: int | None = None
    """The fencing token of the lease the attempt holds, when there is one."""


writer_identity: contextvars.ContextVar[WriterIdentity | None] = contextvars.ContextVar(
    "asyncflow_writer_identity", default=None
)
"""Set by the executor around each attempt of a task body (and copied into the
worker thread of a plain ``def run()``); None outside a run."""


def check_commit(target: Target) -> None:
    """Ask the engine's guard (:data:`commit_guard`), if any, before committing to ``target``.

    :class:`OpenTarget` asks it for every write; a backend that commits by
    another way (a shortcut, or again at the very moment of its commit) asks it
    too.

    Raises:
        TargetError: the write must not be committed.
    """
    guard = commit_guard.get()
    if guard is not None:
        guard(target)


@final
class OpenTarget(Generic[_F]):
    """What :meth:`Target.open` returns: enter it once, with ``with`` or ``async with``.

    Text modes wrap the backend's binary file in a UTF-8 :class:`io.TextIOWrapper`.
    Reads and writes on the file object are plain buffered file operations; only
    opening, committing and discarding go through the backend's hooks.
    """

    __slots__ = ("_file", "_mode", "_state", "_target", "_writer")

    def __init__(self, target: Target, mode: str) -> None:
        self._target = target
        self._mode = mode
        self._state = "not entered"
        self._file: IO[Any] | None = None
        self._writer: AtomicWriter | None = None

    def __repr__(self) -> str:
        return f"<OpenTarget {self._target!r} mode={self._mode!r} {self._state}>"

    @property
    def _writing(self) -> bool:
        return self._mode.startswith("w")

    def _enter(self) -> None:
        if self._state != "not entered":
            raise RuntimeError(f"{self!r} can only be entered once")
        self._state = "opening"

    def _attach(self, binary: BinaryIO) -> _F:
        file: IO[Any] = binary
        if not self._mode.endswith("b"):
            file = io.TextIOWrapper(binary, encoding="utf-8")
        self._file = file
        self._state = "open"
        return cast(_F, file)  # the open() overloads tie _F to the mode

    def _attach_writer(self, writer: AtomicWriter) -> _F:
        self._writer = writer
        return self._attach(writer.file)

    def _close_reader(self) -> None:
        assert self._file is not None
        self._file.close()
        self._state = "closed"

    def _finish_text(self) -> None:
        # Push text still buffered in the wrapper down to the writer's file
        # without closing it: the writer owns that file.
        if isinstance(self._file, io.TextIOWrapper):
            self._file.detach()

    def _note_discard_failure(self, reason: BaseException, error: Exception) -> None:
        # The exception that caused the discard matters more (it may be a
        # cancellation), so it keeps propagating and the failure is noted on it.
        reason.add_note(f"discarding the write to {self._target!r} also failed: {error!r}")

    # Synchronous form.

    def __enter__(self) -> _F:
        self._enter()
        try:
            if self._writing:
                return self._attach_writer(self._target._open_writer())
            return self._attach(self._target._open_reader())
        except BaseException:
            self._state = "failed to open"
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer = self._writer
        if writer is None:
            self._close_reader()
        elif exc is not None:
            self._discard(writer, exc)
        else:
            try:
                self._finish_text()
                check_commit(self._target)
                writer.commit()
            except BaseException as error:
                self._discard(writer, error)
                raise
            self._state = "committed"

    def _discard(self, writer: AtomicWriter, reason: BaseException) -> None:
        self._state = "discarded"
        try:
            writer.discard()
        except Exception as error:
            self._note_discard_failure(reason, error)

    # Asynchronous form.

    async def __aenter__(self) -> _F:
        self._enter()
        try:
            if self._writing:
                return self._attach_writer(await self._target._aopen_writer())
            return self._attach(await self._target._aopen_reader())
        except BaseException:
            self._state = "failed to open"
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer = self._writer
        if writer is None:
            self._close_reader()
        elif exc is not None:
            await self._adiscard(writer, exc)
        else:
            try:
                self._finish_text()
                check_commit(self._target)
                await writer.acommit()
            except BaseException as error:
                await self._adiscard(writer, error)
                raise
            self._state = "committed"

    async def _adiscard(self, writer: AtomicWriter, reason: BaseException) -> None:
        self._state = "discarded"
        with anyio.CancelScope(shield=True):
            try:
                await writer.adiscard()
            except Exception as error:
                self._note_discard_failure(reason, error)
