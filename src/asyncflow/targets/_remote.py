"""What the S3 and GCS backends share: URLs, retries, spooling, the object target.

A cloud backend supplies a *client* (:class:`RemoteClient`): a handful of async
operations on ``(bucket, key)`` pairs for one configuration, borrowed with
:func:`~asyncflow.targets._clients.borrow_client` so that a run shares one per
configuration. Everything that does not depend on the wire protocol lives here:

- :class:`RemoteTarget` implements the target contract on top of a client.
  Reads download into a *spool* (memory up to one part, then an anonymous
  temporary file). Writes spool the bytes and upload on commit, in one request
  or as a multipart/resumable upload for large objects, so the object appears
  only when the ``with`` block exits cleanly.
- :class:`RequestRetry` and :func:`retrying`: transient failures (5xx,
  throttling, timeouts, resets) are retried with capped exponential backoff and
  full jitter. An error is never read as "missing" or "present".
- :class:`RequestCounter`: requests sent, by operation, for callers that
  want to know what something cost.
- :class:`WriteTag`: every object committed carries, as user metadata, a
  random name for the write and the identity of the task attempt that made it
  (:data:`~asyncflow.targets.base.writer_identity`). When the store's answer
  to a commit is lost (the connection drops after the store acted) the retry
  may find the object already there, or the upload gone: the tag tells this
  write's own object (success) from another writer's (an error naming it).
- Fencing: a write by an attempt holding a journal lease (its writer identity
  has a token) is conditional. It reads the object's version and tag,
  refuses to replace an object written under a greater token (a newer holder
  of the task), and uploads only if the object is still that version (S3
  ``If-Match`` / ``If-None-Match: *``, GCS ``ifGenerationMatch``); when it
  changed meanwhile, it looks again. So a holder that stalled past its lease
  with its upload in flight can never replace the new holder's object. A
  small body is first uploaded on the condition that no object is there (the
  common case: the task runs because its output is missing), and read about
  only if one is.

Prefix targets are in :mod:`._prefix`, bulk probing in :mod:`._probe`.
Nothing here imports a cloud library.
"""

from __future__ import annotations

import abc
import collections
import os
import random
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, Generic, Protocol, TypeVar, cast, final
from urllib.parse import quote, unquote

import anyio
import anyio.abc
import anyio.to_thread

from ..errors import TargetError
from ._clients import client_scope, current_clients
from .base import AtomicWriter, Target, WriterIdentity, writer_identity

__all__ = [
    "DEFAULT_PART_SIZE",
    "LIST_PAGE_SIZE",
    "RemoteClient",
    "RemoteConfig",
    "RemoteTarget",
    "RequestCounter",
    "RequestRetry",
    "WriteTag",
    "WriteUncertain",
    "ensure_client_scope",
    "new_spool",
    "parent_prefix",
    "part_reader",
    "retrying",
    "split_url",
    "task_group",
    "upload_deadline",
    "within",
]

MiB: Final = 1024 * 1024
DEFAULT_PART_SIZE: Final = 8 * MiB
"""Part size of multipart (S3) and chunk size of resumable (GCS) uploads."""

LIST_PAGE_SIZE: Final = 1000
"""Keys per listing request (the most S3 and GCS return at once)."""

SLOWEST_UPLOAD: Final = 64 * 1024
"""Bytes per second below which a request sending a body is taken for stuck."""

_T = TypeVar("_T")
_ConfigT = TypeVar("_ConfigT", bound="RemoteConfig")


# --------------------------------------------------------------------------- URLs


def split_url(url: str, scheme: str, *, prefix: bool = False) -> tuple[str, str]:
    """Split ``scheme://bucket/key`` into ``(bucket, key)``.

    With ``prefix=True`` the key is a folder-like prefix: it may be empty (the
    whole bucket) and is returned ending with ``/``.

    Raises:
        ValueError: wrong scheme, no bucket, or (for an object) no key or a key
            ending with ``/``. The message names the URL.
    """
    head = f"{scheme}://"
    if not isinstance(url, str) or not url.startswith(head):
        raise ValueError(f"invalid URL {url!r}: expected {head}bucket/key")
    bucket, _, key = url[len(head) :].partition("/")
    if not bucket:
        raise ValueError(f"invalid URL {url!r}: no bucket name")
    if prefix:
        return bucket, key if not key or key.endswith("/") else key + "/"
    if not key:
        raise ValueError(f"invalid URL {url!r}: no object key after the bucket")
    if key.endswith("/"):
        raise ValueError(f"invalid URL {url!r}: an object key cannot end with '/'")
    return bucket, key


def parent_prefix(key: str) -> str:
    """The listing prefix holding ``key``: everything up to its last ``/``."""
    return key[: key.rfind("/") + 1]


# --------------------------------------------------------------------------- retries


@final
@dataclass(frozen=True, slots=True)
class RequestRetry:
    """How transient failures of one request are retried.

    ``attempts`` counts the first try. Before retry ``n`` (1, 2, ...) the
    backend sleeps a random time between 0 and
    ``min(max_delay, base_delay * 2 ** (n - 1))`` ("full jitter", so that many
    clients failing at once do not retry in lockstep). The defaults give up
    on a request that keeps failing after about 10 s of waiting (21 s at
    most), and lose about one request in 170,000 when 30% of them fail.
    """

    attempts: int = 10
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RequestRetry.attempts must be at least 1, not {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RequestRetry delays cannot be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        cap = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return random.uniform(0.0, cap)  # jitter, not cryptography


@final
class RequestCounter:
    """Requests sent, by operation (``"head"``, ``"list"``, ...), retries included.

    Pass one to :func:`probe_many` to see what a probe cost.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"<RequestCounter total={self.total} {dict(self._counts)}>"

    def __getitem__(self, operation: str) -> int:
        return self._counts[operation]

    def add(self, operation: str, count: int = 1) -> None:
        """Record ``count`` requests of ``operation``."""
        self._counts[operation] += count

    @property
    def total(self) -> int:
        """All requests recorded."""
        return self._counts.total()

    def as_dict(self) -> dict[str, int]:
        """Requests by operation."""
        return dict(self._counts)


async def retrying(
    call: Callable[[], Awaitable[_T]],
    *,
    policy: RequestRetry,
    is_transient: Callable[[Exception], bool],
    counter: RequestCounter | None = None,
    operation: str = "request",
) -> _T:
    """Await ``call()``, again after a backoff while it fails transiently.

    Each attempt is one request for ``counter``. The last error propagates
    (with a note saying how many attempts were made); cancellation is never
    caught.
    """
    attempt = 1
    while True:
        if counter is not None:
            counter.add(operation)
        try:
            return await call()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= policy.attempts:
                error.add_note(f"gave up after {attempt} attempts")
                raise
        await anyio.sleep(policy.delay(attempt))
        attempt += 1


async def request(
    service: str,
    operation: str,
    url: str,
    call: Callable[[bool], Awaitable[_T]],
    *,
    policy: RequestRetry,
    is_transient: Callable[[Exception], bool],
    lost_connection: Callable[[Exception], bool],
    counter: RequestCounter | None = None,
    deadline: float | None = None,
) -> _T:
    """:func:`retrying` ``call(fresh)``, with a final error raised as a
    :class:`TargetError` naming the service, the operation and the URL (a
    ``TargetError`` as is).

    ``fresh`` is True for a retry after a try that got no answer at all
    (``lost_connection``: reset, closed, timed out). It is to go over a new
    connection: a pool hands out its idle connections without knowing
    whether they still lead anywhere (a peer or middlebox that silently
    dropped them leaves them looking open), and a retry on the next dead one
    would fail, or hang until the read timeout, all over again.

    ``deadline`` bounds each try (see :func:`upload_deadline`): the HTTP
    client's read timeout starts only once the body is sent, which never
    happens on a dead connection (botocore waits for ``100 Continue`` first).
    """
    fresh = False

    async def attempt() -> _T:
        nonlocal fresh
        try:
            return await within(deadline, call(fresh))
        except Exception as error:
            fresh = lost_connection(error)
            raise

    try:
        return await retrying(
            attempt, policy=policy, is_transient=is_transient, counter=counter, operation=operation
        )
    except TargetError:
        raise
    except Exception as error:
        raise TargetError(f"{service} {operation} of {url} failed: {error}") from error


def upload_deadline(config: RemoteConfig, size: int) -> float:
    """Seconds one request sending ``size`` bytes may take: connecting, sending at
    :data:`SLOWEST_UPLOAD` bytes per second, and the read timeout for the answer."""
    return config.connect_timeout + size / SLOWEST_UPLOAD + config.read_timeout


async def within(deadline: float | None, call: Awaitable[_T]) -> _T:
    """Await ``call``; after ``deadline`` seconds (if any) give up on it with TimeoutError."""
    if deadline is None:
        return await call
    with anyio.move_on_after(deadline):
        return await call
    raise TimeoutError(f"no answer within {deadline:g} s: the connection may be dead")


@asynccontextmanager
async def task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """An anyio task group that raises a child's error itself, not wrapped in a group.

    Callers of a target expect a :class:`~asyncflow.errors.TargetError`, not an
    ``ExceptionGroup``. When several children fail, the first error is raised
    with a note counting the others; a group holding anything but plain
    errors (a cancellation, a KeyboardInterrupt) propagates unchanged.
    """
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        errors = [error for error in leaves if isinstance(error, Exception)]
        if not errors or len(errors) != len(leaves):
            raise
        if len(errors) > 1:
            errors[0].add_note(f"{len(errors) - 1} concurrent operation(s) failed too")
        raise errors[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


# --------------------------------------------------------------------------- write tags

_TAG: Final = "asyncflow-"
_MAX_TASK_ID: Final = 512  # S3 allows 2 KiB of user metadata in all


@final
@dataclass(frozen=True, slots=True)
class WriteTag:
    """What an object committed by one write carries as user metadata.

    ``nonce`` is random and names this one write; ``writer`` is the task
    attempt that made it (None outside a run). On S3 the keys become
    ``x-amz-meta-asyncflow-write``, ``-run``, ``-task``, ``-attempt`` and
    ``-token`` headers; on GCS, the same keys in the object's ``metadata``.
    """

    nonce: str
    writer: WriterIdentity | None

    @classmethod
    def new(cls) -> WriteTag:
        """A tag for a write starting now, by the attempt running in this context."""
        return cls(secrets.token_hex(8), writer_identity.get())

    def metadata(self) -> dict[str, str]:
        """The user metadata to store with the object (ASCII: HTTP headers on S3)."""
        tags = {"write": self.nonce}
        writer = self.writer
        if writer is not None:
            tags["run"] = quote(writer.run_id, safe="")
            tags["task"] = quote(writer.task_id[:_MAX_TASK_ID], safe="")
            tags["attempt"] = str(writer.attempt)
            if writer.token is not None:
                tags["token"] = str(writer.token)
        return {_TAG + name: value for name, value in tags.items()}

    def made(self, metadata: Mapping[str, str]) -> bool:
        """Whether an object with this ``metadata`` is this very write's."""
        return metadata.get(_TAG + "write") == self.nonce


def describe_writer(metadata: Mapping[str, str]) -> str:
    """Who wrote an object, from its metadata, for an error message."""
    run = metadata.get(_TAG + "run")
    if run is None:
        if _TAG + "write" in metadata:
            return "written outside any run"
        return "not written by asyncflow"
    text = f"written by run {unquote(run)}"
    task = metadata.get(_TAG + "task")
    if task is not None:
        text += f", task {unquote(task)}"
    for name in ("attempt", "token"):
        value = metadata.get(_TAG + name)
        if value is not None:
            text += f", {'lease token' if name == 'token' else name} {value}"
    return text


def written_under(metadata: Mapping[str, str]) -> int | None:
    """The lease token an object's tag names, if any."""
    value = metadata.get(_TAG + "token")
    if value is None or not value.isdigit():
        return None
    return int(value)


class WriteUncertain(TargetError):
    """A client's upload got an answer that leaves open whether the object is its own.

    A create-only write found the object there, or a multipart upload had
    vanished when completed: what an earlier try of the same request does when
    the store acted on it but its answer was lost. :class:`RemoteTarget` then
    reads the object's tag to tell.
    """


async def settle_uncertain(
    client: RemoteClient, bucket: str, key: str, tag: WriteTag, error: WriteUncertain
) -> None:
    """Return if the object is ``tag``'s write; else raise ``error``, naming the writer."""
    metadata = await client.read_metadata(bucket, key)
    if metadata is not None and tag.made(metadata):
        return  # an earlier try committed it; only its answer was lost
    if metadata is not None:
        raise TargetError(f"{error}: {describe_writer(metadata)}") from error.__cause__
    raise error


# --------------------------------------------------------------------------- spools


def new_spool(max_memory: int) -> BinaryIO:
    """A binary file kept in memory up to ``max_memory`` bytes, then on disk."""
    return cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=max_memory, mode="w+b"))


class _PartReader:
    """Reads parts of a spooled file from worker threads, one at a time."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            self._file.seek(offset)
            return self._file.read(size)

    async def aread(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset`` in a worker thread (the file may be on disk)."""
        return await anyio.to_thread.run_sync(self.read, offset, size)


def part_reader(file: BinaryIO) -> _PartReader:
    """Thread-safe positional reads of ``file`` for uploading it in parts."""
    return _PartReader(file)


# --------------------------------------------------------------------------- clients


class RemoteClient(Protocol):
    """The operations a cloud backend provides, for one configuration.

    Every method retries transient failures itself and raises
    :class:`~asyncflow.errors.TargetError` naming the URL for anything else.
    """

    async def head(self, bucket: str, key: str, *, counter: RequestCounter | None = None) -> bool:
        """Whether the object exists: False only on a definite "not found"."""
        ...

    async def download(self, bucket: str, key: str, sink: BinaryIO) -> None:
        """Write the object's bytes to ``sink``.

        Raises:
            TargetNotFoundError: the object does not exist.
        """
        ...

    async def upload(
        self,
        bucket: str,
        key: str,
        source: BinaryIO,
        size: int,
        *,
        create_only: bool,
        tag: WriteTag,
        if_version: str | None = None,
    ) -> None:
        """Publish the ``size`` bytes of ``source`` (positioned at 0) as the object, at once,
        with ``tag``'s metadata.

        With ``create_only`` the upload is refused if the object exists; with
        ``if_version``, unless the object is still that version (see
        :meth:`read_version`).

        Raises:
            WriteUncertain: the object exists (``create_only``), is no longer
                ``if_version``, or the upload vanished before completion:
                perhaps this write's own doing.
        """
        ...

    async def read_metadata(self, bucket: str, key: str) -> dict[str, str] | None:
        """The object's user metadata; None if it does not exist."""
        ...

    async def read_version(self, bucket: str, key: str) -> tuple[str, dict[str, str]] | None:
        """The object's version (S3 ETag, GCS generation) and user metadata; None if absent."""
        ...

    async def delete(self, bucket: str, key: str) -> None:
        """Delete the object; no error if it does not exist."""
        ...

    async def delete_many(self, bucket: str, keys: list[str]) -> None:
        """Delete several objects of one bucket."""
        ...

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        start: str | None = None,
        token: str | None = None,
        counter: RequestCounter | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of the keys under ``prefix`` in lexicographic order, and the next token.

        ``start`` is a hint: the page may begin at the first key not less than it
        (keys before it may also be returned). With ``delimiter="/"``, keys in
        deeper "folders" are left out.
        """
        ...


class RemoteConfig(Protocol):
    """What the shared code needs of a backend's configuration.

    It is hashable: the key under which a run shares one client.
    """

    @property
    def part_size(self) -> int:
        """Largest object uploaded in one request; the part or chunk size beyond."""
        ...

    @property
    def connect_timeout(self) -> float:
        """Seconds to wait for a connection."""
        ...

    @property
    def read_timeout(self) -> float:
        """Seconds to wait for the next bytes of an answer."""
        ...

    def __hash__(self) -> int: ...


# --------------------------------------------------------------------------- targets


class RemoteTarget(Target, Generic[_ConfigT]):
    """An object in a cloud bucket. See :class:`~asyncflow.targets.s3.S3Target`.

    Subclasses set :attr:`scheme` and implement :meth:`_resolved_config` and
    :meth:`_client`.
    """

    scheme: str = ""
    __slots__ = ("bucket", "config", "create_only", "key")

    def __init__(self, url: str, *, config: _ConfigT | None = None, create_only: bool = False):
        self.bucket, self.key = split_url(url, self.scheme)
        self.config = config
        self.create_only = create_only

    @property
    def url(self) -> str:
        """``scheme://bucket/key``."""
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        extra = ", create_only=True" if self.create_only else ""
        if self.config is not None:
            extra += f", config={self.config!r}"
        return f"{type(self).__name__}({self.url!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemoteTarget) and type(other) is type(self):
            return (self.bucket, self.key, self.config) == (other.bucket, other.key, other.config)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), self.bucket, self.key, self.config))

    @abc.abstractmethod
    def _resolved_config(self) -> _ConfigT:
        """:attr:`config`, or the configuration read from the environment now."""

    @abc.abstractmethod
    def _client(self, config: _ConfigT) -> AbstractAsyncContextManager[RemoteClient]:
        """Borrow the client for ``config`` (shared within a run)."""

    async def exists(self) -> bool:
        """Whether the object exists: one request (plus retries of transient failures).

        Raises:
            TargetError: the store answered with an error (access denied, or a
                transient error that outlasted the retries); the message names
                the URL.
        """
        config = self._resolved_config()
        async with self._client(config) as client:
            return await client.head(self.bucket, self.key)

    async def remove(self) -> None:
        """Delete the object if it exists."""
        config = self._resolved_config()
        async with self._client(config) as client:
            await client.delete(self.bucket, self.key)

    async def _aopen_reader(self) -> BinaryIO:
        config = self._resolved_config()
        spool = new_spool(config.part_size)
        try:
            async with self._client(config) as client:
                await client.download(self.bucket, self.key, spool)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool

    async def _aopen_writer(self) -> AtomicWriter:
        config = self._resolved_config()
        return _RemoteWriter(self, config, new_spool(config.part_size))


class _RemoteWriter(AtomicWriter, Generic[_ConfigT]):
    """Spools the written bytes; uploads them on commit."""

    def __init__(self, target: RemoteTarget[_ConfigT], config: _ConfigT, spool: BinaryIO):
        self._target = target
        self._config = config
        self.file = spool

    async def acommit(self) -> None:
        target = self._target
        size = self.file.seek(0, os.SEEK_END)
        self.file.seek(0)
        tag = WriteTag.new()
        async with target._client(self._config) as client:
            if tag.writer is not None and tag.writer.token is not None:
                await _fenced_upload(client, target, self.file, size, tag, tag.writer.token)
            else:
                try:
                    await client.upload(
                        target.bucket,
                        target.key,
                        self.file,
                        size,
                        create_only=target.create_only,
                        tag=tag,
                    )
                except WriteUncertain as error:
                    await settle_uncertain(client, target.bucket, target.key, tag, error)
        self.file.close()

    async def adiscard(self) -> None:
        # Nothing was published: an upload that had started cleaned up after itself.
        self.file.close()


_FENCED_TRIES: Final = 5
"""Uploads a fenced write tries before it gives up (the object kept changing)."""

_LOOK_FIRST_ABOVE: Final = 256 * 1024
"""A fenced write of a larger body reads the object's version before it uploads.
A smaller one first tries to create the object: when nothing is there (the
usual case) that saves a request, and when something is, the refused upload
costs little more than the read would have."""


async def _fenced_upload(
    client: RemoteClient,
    target: RemoteTarget[Any],
    source: BinaryIO,
    size: int,
    tag: WriteTag,
    token: int,
) -> None:
    """Upload ``source`` as ``target`` unless a writer under a greater token got there
    first, conditionally on the version seen (see the module's docstring)."""
    bucket, key, url = target.bucket, target.key, target.url
    seen: tuple[str, dict[str, str]] | None = None
    look = size > _LOOK_FIRST_ABOVE
    for _ in range(_FENCED_TRIES):
        if look:
            seen = await client.read_version(bucket, key)
        look = True  # from the second try on: refused, or uncertain
        if seen is not None:
            metadata = seen[1]
            if tag.made(metadata):
                return  # an earlier try committed it; only its answer was lost
            newer = written_under(metadata)
            if newer is not None and newer > token:
                raise TargetError(
                    f"{url}: write not committed: the object there was written under "
                    f"lease token {newer}, newer than this attempt's {token} (another "
                    f"process took the task over): {describe_writer(metadata)}"
                )
            if target.create_only:
                raise TargetError(
                    f"{url} already exists: not overwritten (create_only): "
                    f"{describe_writer(metadata)}"
                )
        source.seek(0)
        try:
            await client.upload(
                bucket,
                key,
                source,
                size,
                create_only=seen is None,
                tag=tag,
                if_version=None if seen is None else seen[0],
            )
        except WriteUncertain:
            continue  # it changed since we looked (or it is ours): look again
        return
    raise TargetError(
        f"{url}: write not committed: the object kept changing while this attempt "
        f"(lease token {token}) tried to replace it"
    )


# --------------------------------------------------------------------------- client scope


@asynccontextmanager
async def ensure_client_scope() -> AsyncIterator[None]:
    """Share clients within the block, unless a run already does."""
    if current_clients() is not None:
        yield
        return
    async with client_scope():
        yield
