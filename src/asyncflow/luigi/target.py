"""Luigi's target classes over asyncflow's targets.

Luigi's ``exists()``, ``open()`` and ``remove()`` are synchronous. On the
event loop (the engine probing outputs, or your own coroutine) the shim's
targets answer with asyncflow's async forms instead: ``exists()`` returns an
awaitable and ``open()`` an ``async with`` context. Anywhere else they act
as in Luigi:

* ``f = target.open("w"); f.write(...); f.close()`` publishes the file
  atomically on ``close()``; in a ``with`` block, an exception discards it;
* ``target.open("r")`` reads, and iterates lines.

A subclass of :class:`Target` defines a plain ``def exists(self)``; the
engine calls it in a worker thread.
"""

from __future__ import annotations

import abc
import contextlib
import os
import random
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO

from ..targets import base as _base
from ._sync import dual, in_worker_thread, run_async, wants_awaitable
from .format import Format, Nop, get_default_format

__all__ = [
    "AtomicSink",
    "FileAlreadyExists",
    "FileSystem",
    "FileSystemException",
    "FileSystemTarget",
    "MissingParentDirectory",
    "NotADirectory",
    "Target",
]


class FileSystemException(Exception):
    """A file system operation failed."""


class FileAlreadyExists(FileSystemException):
    """The destination exists already."""


class MissingParentDirectory(FileSystemException):
    """The parent folder does not exist."""


class NotADirectory(FileSystemException):
    """The path is not a folder."""


class Target(_base.Target):
    """A Luigi target: subclasses define ``exists()`` (synchronous)."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        exists = cls.__dict__.get("exists")
        if (
            exists is not None
            and not getattr(exists, "__asyncflow_dual__", False)
            and not getattr(exists, "__isabstractmethod__", False)
        ):
            # Luigi targets answer synchronously; the engine awaits the answer
            # from a worker thread, where the user's blocking calls belong.
            cls.exists = dual(exists)  # type: ignore[method-assign]
        for sync_name, async_name in (
            ("_open_reader", "_aopen_reader"),
            ("_open_writer", "_aopen_writer"),
        ):
            # A Luigi target that only answers exists() cannot be opened: say so
            # when asked, rather than be refused as an incomplete backend. One that
            # also derives from an asyncflow backend opens through it.
            sync_hook = _own_hook(cls, sync_name)
            if sync_hook is None and _own_hook(cls, async_name) is not None:
                sync_hook = getattr(_base.Target, sync_name)
            setattr(cls, sync_name, sync_hook or _cannot_open)
        super().__init_subclass__(**kwargs)

    @abc.abstractmethod
    def exists(self) -> Any:
        """Whether the target exists."""

    def remove(self) -> Any:
        """Remove the target (where the target type supports it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be removed")


def _own_hook(cls: type, name: str) -> Any:
    """The first definition of a backend hook below asyncflow's Target base, if any."""
    for klass in cls.__mro__:
        if klass is _base.Target:
            return None
        found = klass.__dict__.get(name)
        if found is not None and found is not _cannot_open:
            return found
    return None


def _cannot_open(self: Target) -> Any:
    raise NotImplementedError(f"{type(self).__name__} cannot be opened")


class FileSystem(abc.ABC):  # noqa: B024  # a base for users' own file systems
    """The file operations a :class:`FileSystemTarget` delegates to."""

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        raise NotImplementedError

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        raise NotImplementedError

    def isdir(self, path: str) -> bool:
        raise NotImplementedError

    def listdir(self, path: str) -> Iterator[str]:
        raise NotImplementedError

    def move(self, path: str, dest: str) -> None:
        raise NotImplementedError

    def rename_dont_move(self, path: str, dest: str) -> None:
        """Rename ``path`` to ``dest`` (never into ``dest`` if it is a folder)."""
        if self.exists(dest):
            raise FileAlreadyExists(f"destination exists: {dest}")
        self.move(path, dest)

    def rename(self, *args: Any, **kwargs: Any) -> None:
        self.move(*args, **kwargs)

    def copy(self, path: str, dest: str) -> None:
        raise NotImplementedError


class FileSystemTarget(Target):
    """A target at a ``path`` of a :class:`FileSystem` (``fs``)."""

    __slots__ = ()

    path: str

    def __init__(self, path: Any) -> None:
        self.path = str(path)  # type: ignore[misc]

    def __str__(self) -> str:
        return self.path

    @property
    def fs(self) -> FileSystem:
        raise NotImplementedError

    def exists(self) -> Any:
        return self.fs.exists(self.path)

    def remove(self) -> Any:
        self.fs.remove(self.path)

    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """A path to write to; moved onto the target's path if the block succeeds."""
        number = random.randrange(10_000_000_000)
        bare = self.path.rstrip("/").rstrip("\\")
        slash = self.path[-1] if self.path[-1:] in ("/", "\\") else ""
        temp = f"{bare}-luigi-tmp-{number:010}{slash}"
        folder = os.path.dirname(bare)
        if folder:
            self.fs.mkdir(folder, parents=True, raise_if_exists=False)
        yield temp
        self.fs.rename_dont_move(temp, self.path)


class AtomicSink:
    """The binary end of a Luigi-style write to an asyncflow target.

    It holds an entered :class:`~asyncflow.targets.base.OpenTarget` in
    ``"wb"`` mode: ``close()`` commits (through the run's commit guard, when
    inside a run), ``abort()`` discards.
    """

    def __init__(self, target: _base.Target) -> None:
        self._open = _base.OpenTarget[BinaryIO](target, "wb")
        self._bridged = _needs_bridge(target)
        self.path = getattr(target, "path", str(target))
        if self._bridged:
            self._file: BinaryIO = run_async(self._open.__aenter__)
        else:
            self._file = self._open.__enter__()
        self.closed = False

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._file.flush()

    def _exit(self, error: BaseException | None) -> None:
        kind = None if error is None else type(error)
        if self._bridged:
            run_async(self._open.__aexit__, kind, error, None)
        else:
            self._open.__exit__(kind, error, None)

    def close(self) -> None:
        """Publish the data."""
        if not self.closed:
            self.closed = True
            self._exit(None)

    def abort(self) -> None:
        """Discard the data."""
        if not self.closed:
            self.closed = True
            self._exit(_Aborted())

    def __enter__(self) -> AtomicSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            with contextlib.suppress(Exception):
                self.abort()


class _Aborted(Exception):
    """Why a write was discarded: the file was dropped or its block raised."""


def _needs_bridge(target: _base.Target) -> bool:
    """Whether a synchronous open of ``target`` must run on an event loop of its own:
    its hooks are async-only (S3, GCS) and this is no worker thread of a run."""
    sync_hooks = type(target)._open_writer is not _base.Target._open_writer
    return not sync_hooks and not in_worker_thread()


def open_reader(target: _base.Target) -> BinaryIO:
    """The target's bytes for reading, from synchronous code."""
    if type(target)._open_reader is not _base.Target._open_reader or in_worker_thread():
        return target._open_reader()
    return run_async(target._aopen_reader)


def open_luigi(
    target: _base.Target, mode: str, fmt: Format | None, *, before_write: Any = None
) -> Any:
    """Luigi's ``open(mode)``: a file through ``fmt`` (``b`` in the mode means raw bytes
    when no format was given); on the event loop, asyncflow's ``async with`` form."""
    kind = mode.replace("b", "").replace("t", "")
    if kind not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w' (got {mode!r}) for {target!r}")
    binary = "b" in mode or (fmt is not None and fmt.output == "bytes" and fmt.input == "bytes")
    if wants_awaitable():
        return _base.Target.open(target, kind + ("b" if binary else ""))
    chosen = fmt if fmt is not None else (Nop if "b" in mode else get_default_format())
    if kind == "w":
        if before_write is not None:
            before_write()
        return chosen.pipe_writer(AtomicSink(target))
    return chosen.pipe_reader(open_reader(target))


def remove_dual(sync: Any, engine_remove: Any, target: Any) -> Any:
    """``remove()`` that is awaitable on the event loop and immediate elsewhere."""
    if wants_awaitable():
        return engine_remove(target)
    return sync()
