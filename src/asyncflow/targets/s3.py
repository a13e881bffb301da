"""Objects in Amazon S3 (or MinIO, LocalStack, moto...): :class:`S3Target`.

::

    out = S3Target("s3://bucket/reports/2026-11-23.csv")
    async with out.open("w") as f:       # uploaded when the block exits cleanly
        f.write("...")

Configuration comes from the usual AWS environment variables, read when a
client is needed: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (a MinIO,
LocalStack or moto server), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``,
``AWS_PROFILE``; anything not set falls back to botocore's own chain (config
files, instance metadata). Pass an :class:`S3Config` to set it explicitly.

One aiobotocore client is created per configuration and shared by every
target of a run (see :mod:`asyncflow.targets._clients`); its connection pool
holds 64 connections by default, enough for concurrent probing. botocore's own
retries are turned off: the target retries transient failures itself, with
the configuration's :class:`~asyncflow.targets.RequestRetry`. A retry after a
try that got no answer (a reset, a closed or dead connection) goes over a new
connection rather than the pool's next one, and a request sending a body
gives up on a connection that takes longer than the timeouts plus 1 s per
64 KiB.

Writes are spooled (memory, then a temporary file) and uploaded on commit:
objects up to ``part_size`` (8 MiB) with one ``PutObject``, larger ones as a
multipart upload of ``part_size`` parts, a few in flight at once, aborted if
anything fails. ``create_only=True`` sends ``If-None-Match: *`` so the upload
is refused, and :class:`~asyncflow.errors.TargetError` raised naming the
object's writer, if the object exists by then. Only a killed process leaves an
upload pending (invisible, but its parts are billed until a lifecycle rule
aborts it); :meth:`S3Target.discard_partial_writes` aborts those.

Every object written carries user metadata naming the write
(``x-amz-meta-asyncflow-write``, random) and, inside a run, the task attempt
that made it (``-run``, ``-task``, ``-attempt``). When the answer to a write
is lost after S3 acted on it, the retry can find the object already there
(create-only) or the multipart upload already completed; the tag tells the
write's own object, which is success, from another writer's. A
``CreateMultipartUpload`` whose answer was lost is retried and the upload it
may have started is aborted.

aiobotocore is imported on first use, in a worker thread.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, Literal, TypeVar, final

import anyio
import anyio.to_thread

from ..errors import TargetError, TargetNotFoundError
from ._clients import OnFirstUse, borrow_client
from ._prefix import RemotePrefixTarget
from ._remote import (
    DEFAULT_PART_SIZE,
    LIST_PAGE_SIZE,
    MiB,
    RemoteClient,
    RemoteTarget,
    RequestCounter,
    RequestRetry,
    WriteTag,
    WriteUncertain,
    part_reader,
    request,
    task_group,
    upload_deadline,
)

__all__ = ["S3Config", "S3PrefixTarget", "S3Target"]

_T = TypeVar("_T")

_NOT_FOUND: Final = frozenset({"404", "NoSuchKey", "NotFound"})
_TRANSIENT_CODES: Final = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ConditionalRequestConflict",  # a concurrent conditional write: retry to learn the outcome
    }
)
_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_MIN_PART_SIZE: Final = 5 * MiB  # S3's minimum for every part but the last
_READ_CHUNK: Final = 1 * MiB


@final
@dataclass(frozen=True)
class S3Config:
    """Where and how to reach S3. Every field left as None means botocore's default.

    The configuration is also the key under which a run shares one client, so
    targets with equal configurations share a connection pool.
    """

    endpoint_url: str | None = None
    """A custom endpoint (MinIO, LocalStack, moto), e.g. ``http://127.0.0.1:9000``."""
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    max_pool_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    part_size: int = DEFAULT_PART_SIZE
    """Objects larger than this are uploaded in parts of this size (at least 5 MiB)."""
    upload_concurrency: int = 4
    """Parts of one multipart upload in flight at once."""
    retry: RequestRetry = field(default_factory=RequestRetry)

    def __post_init__(self) -> None:
        if self.part_size < _MIN_PART_SIZE:
            raise ValueError(f"S3Config.part_size must be at least 5 MiB, not {self.part_size}")
        if self.max_pool_connections < 1 or self.upload_concurrency < 1:
            raise ValueError("S3Config pool and upload concurrency must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> S3Config:
        """The configuration the standard AWS environment variables describe.

        ``environ`` defaults to ``os.environ``; keyword arguments override
        fields (``S3Config.from_env(retry=RequestRetry(attempts=8))``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            "access_key_id": env.get("AWS_ACCESS_KEY_ID") or None,
            "secret_access_key": env.get("AWS_SECRET_ACCESS_KEY") or None,
            "session_token": env.get("AWS_SESSION_TOKEN") or None,
            "profile": env.get("AWS_PROFILE") or None,
        }
        values.update(overrides)
        return cls(**values)

    def with_options(self, **changes: Any) -> S3Config:
        """A copy with some fields changed."""
        return replace(self, **changes)


class S3Target(RemoteTarget[S3Config]):
    """An object in S3, ``s3://bucket/key``, with the same contract as a local file.

    Args:
        url: ``s3://bucket/key``.
        config: where and how to reach S3; by default read from the
            environment each time a client is needed.
        create_only: refuse to overwrite an existing object (the write raises
            :class:`~asyncflow.errors.TargetError` naming the URL and the
            object's writer), so a task never replaces an output another
            process committed.

    Raises:
        ValueError: the URL is not ``s3://bucket/key``.
    """

    scheme = "s3"
    __slots__ = ()

    def _resolved_config(self) -> S3Config:
        return self.config if self.config is not None else S3Config.from_env()

    def _client(self, config: S3Config) -> AbstractAsyncContextManager[RemoteClient]:
        return _borrow(config)

    async def discard_partial_writes(self) -> int:
        """Abort the multipart uploads to this key that interrupted writes left pending.

        Uploads to other keys stay, including keys that merely start with this
        one (``a/bc`` for ``a/b``). Returns how many were aborted; an upload
        that ends in the meantime is not counted. Costs one listing request per
        1,000 pending uploads to keys starting with this one, plus one request
        per abort.

        Raises:
            TargetError: listing or aborting failed (after retrying transient
                errors); the message names the URL.
        """
        async with _borrow(self._resolved_config()) as client:
            return await client.abort_uploads(self.bucket, self.key, exact=True)


class S3PrefixTarget(RemotePrefixTarget[S3Target]):
    """A folder-like prefix ``s3://bucket/dir/``, complete once ``dir/_SUCCESS`` exists.

    See :class:`~asyncflow.targets._prefix.RemotePrefixTarget` for publishing.
    """

    scheme = "s3"
    __slots__ = ("config",)

    def __init__(
        self, url: str, *, config: S3Config | None = None, create_only: bool = False
    ) -> None:
        super().__init__(url, create_only=create_only)
        self.config = config

    def _make_child(self, url: str, *, create_only: bool) -> S3Target:
        return S3Target(url, config=self.config, create_only=create_only)

    async def discard_partial_writes(self) -> int:
        """Abort every pending multipart upload under the prefix; return how many.

        See :meth:`S3Target.discard_partial_writes`. Uploads to keys outside
        the prefix (``dir2/x`` for ``dir/``) stay.
        """
        async with _borrow(self.marker._resolved_config()) as client:
            return await client.abort_uploads(self.bucket, self.prefix, exact=False)


# --------------------------------------------------------------------------- client


@asynccontextmanager
async def _borrow(config: S3Config) -> AsyncIterator[_S3Client]:
    async with borrow_client(("asyncflow.s3", config), lambda: _open_client(config)) as client:
        yield client


# botocore's loader holds the parsed S3 service model, endpoint rules and
# partitions: read-only data that takes 0.1-0.3 s to load. Loaded once per
# process (in a worker thread) and lent to every session.
_loader: Any = None
_loader_lock = threading.Lock()


def _prepare_session(config: S3Config) -> tuple[Any, Any, Any]:
    """Import aiobotocore and get a session with the S3 model loaded, and the client
    configurations (pooled, and one connection per request): blocking, so in a thread."""
    global _loader
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    with _loader_lock:
        if _loader is None:
            session.warm_up_loader_caches("s3")
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)
    if config.profile is not None and config.access_key_id is None:
        session.set_config_variable("profile", config.profile)
    options: dict[str, Any] = {
        "max_pool_connections": config.max_pool_connections,
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "retries": {"total_max_attempts": 1},  # we retry, with our policy
    }
    if config.addressing_style is not None:
        options["s3"] = {"addressing_style": config.addressing_style}
    unpooled = AioConfig(**options, connector_args={"force_close": True, "keepalive_timeout": None})
    return session, AioConfig(**options), unpooled


@asynccontextmanager
async def _open_client(config: S3Config) -> AsyncIterator[_S3Client]:
    session, pooled, unpooled = await anyio.to_thread.run_sync(_prepare_session, config)
    credentials: dict[str, str] = {}
    if config.access_key_id is not None and config.secret_access_key is not None:
        credentials["aws_access_key_id"] = config.access_key_id
        credentials["aws_secret_access_key"] = config.secret_access_key
        if config.session_token is not None:
            credentials["aws_session_token"] = config.session_token

    def create(aio_config: Any) -> AbstractAsyncContextManager[Any]:
        return session.create_client(  # type: ignore[no-any-return]
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            config=aio_config,
            **credentials,
        )

    async with AsyncExitStack() as stack:
        raw = await stack.enter_async_context(create(pooled))
        # Retries after a lost connection go over a client that opens a new
        # connection per request, created on the first such retry.
        yield _S3Client(raw, config, lambda: stack.enter_async_context(create(unpooled)))


def _response_of(error: Exception) -> tuple[int | None, str]:
    """HTTP status and error code of a botocore ClientError (None, "" for other errors)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code", "")
    return (status if isinstance(status, int) else None), str(code)


def _is_not_found(error: Exception) -> bool:
    status, code = _response_of(error)
    return code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket")


def _is_transient(error: Exception) -> bool:
    """5xx, throttling, timeouts, resets and broken connections; not 4xx answers."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, ClientError):
        status, code = _response_of(error)
        return status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
    if isinstance(error, HTTPClientError | BotoConnectionError | IncompleteReadError):
        return True
    if isinstance(error, BotoCoreError):
        return False
    import aiohttp

    return isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError)


def _lost_connection(error: Exception) -> bool:
    """A transient failure that got no answer from S3: a reset, a closed connection, a timeout."""
    return _response_of(error)[0] is None and _is_transient(error)


def _op(name: str, **params: Any) -> Callable[[Any], Awaitable[Any]]:
    """A call of the aiobotocore client operation ``name`` with ``params``, on a given client."""
    return lambda raw: getattr(raw, name)(**params)


class _S3Client:
    """The :class:`RemoteClient` operations over one aiobotocore S3 client."""

    def __init__(
        self, raw: Any, config: S3Config, open_unpooled: Callable[[], Awaitable[Any]]
    ) -> None:
        self._raw = raw
        self._config = config
        # The client that opens a new connection for every request.
        self._unpooled = OnFirstUse(open_unpooled)

    async def _call(
        self,
        operation: str,
        url: str,
        call: Callable[[Any], Awaitable[_T]],
        counter: RequestCounter | None = None,
        *,
        sending: int | None = None,
    ) -> _T:
        """``call(client)``, retried: on the pooled client, or after a lost
        connection on the unpooled one. ``sending``: the size of the body."""

        async def attempt(fresh: bool) -> _T:
            return await call(await self._unpooled.get() if fresh else self._raw)

        return await request(
            "S3",
            operation,
            url,
            attempt,
            policy=self._config.retry,
            is_transient=_is_transient,
            lost_connection=_lost_connection,
            counter=counter,
            deadline=None if sending is None else upload_deadline(self._config, sending),
        )

    async def head(self, bucket: str, key: str, *, counter: RequestCounter | None = None) -> bool:
        async def attempt(raw: Any) -> bool:
            try:
                await raw.head_object(Bucket=bucket, Key=key)
            except Exception as error:
                if _is_not_found(error):
                    return False
                raise
            return True

        return await self._call("head", _url(bucket, key), attempt, counter)

    async def download(self, bucket: str, key: str, sink: BinaryIO) -> None:
        url = _url(bucket, key)

        async def attempt(raw: Any) -> None:
            sink.seek(0)
            sink.truncate()
            try:
                response = await raw.get_object(Bucket=bucket, Key=key)
            except Exception as error:
                if _is_not_found(error):
                    raise TargetNotFoundError(f"no such object: {url}") from error
                raise
            async with response["Body"] as stream:
                while chunk := await stream.read(_READ_CHUNK):
                    # A spool write is a memory copy, or a page-cache write once
                    # the spool is on disk: short enough to stay on the loop.
                    sink.write(chunk)

        await self._call("get", url, attempt)

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
        url = _url(bucket, key)
        metadata = tag.metadata()
        condition = {"IfNoneMatch": "*"} if create_only else {}
        if if_version is not None:
            # S3 checks it on PutObject and CompleteMultipartUpload (moto on the first only).
            condition["IfMatch"] = if_version
        try:
            if size <= self._config.part_size:
                body = source.read()  # still in memory: the spool rolls over only past part_size
                put = _op(
                    "put_object", Bucket=bucket, Key=key, Body=body, Metadata=metadata, **condition
                )
                await self._call("put", url, put, sending=len(body))
            else:
                await self._multipart(bucket, key, source, size, metadata, condition)
        except TargetError as error:
            cause = error.__cause__
            if not isinstance(cause, Exception):
                raise
            if create_only and _is_precondition_failed(cause):
                raise WriteUncertain(
                    f"{url} already exists: not overwritten (create_only)"
                ) from cause
            if if_version is not None and _is_precondition_failed(cause):
                raise WriteUncertain(f"{url} changed since it was read: not overwritten") from cause
            if _response_of(cause)[1] == "NoSuchUpload":
                raise WriteUncertain(str(error)) from cause
            raise

    async def _multipart(
        self,
        bucket: str,
        key: str,
        source: BinaryIO,
        size: int,
        metadata: dict[str, str],
        condition: dict[str, str],
    ) -> None:
        url = _url(bucket, key)
        tries = 0

        async def create(raw: Any) -> Any:
            nonlocal tries
            tries += 1
            return await raw.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)

        # Shielded: cancelled while the request is in flight, we would never
        # learn the upload's id and could not abort it. Cancellation lands
        # right after, inside the try, which aborts.
        with anyio.CancelScope(shield=True):
            created = await self._call("create_multipart_upload", url, create)
        upload_id: str = created["UploadId"]
        try:
            if tries > 1:
                await self._abort_lost_uploads(bucket, key, upload_id, tries - 1)
            parts = await self._upload_parts(bucket, key, upload_id, source, size)
            complete = _op(
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
            await self._call("complete_multipart_upload", url, complete)
        except BaseException as error:
            await self._abort(bucket, key, upload_id, error)
            raise

    async def _abort_lost_uploads(self, bucket: str, key: str, upload_id: str, lost: int) -> None:
        """Abort the uploads that tries of our CreateMultipartUpload whose answers were
        lost may have started: up to ``lost`` pending uploads of ``key`` listed just
        before ours (S3 lists the uploads of a key oldest first).

        Best effort: if the listing fails, they stay pending (invisible, and
        :meth:`S3Target.discard_partial_writes` removes them); the write goes on.
        """
        earlier: list[str] = []
        with contextlib.suppress(TargetError):
            async with aclosing(self._pending_uploads(bucket, key)) as uploads:
                async for upload in uploads:
                    if upload["Key"] != key:
                        continue
                    if upload["UploadId"] == upload_id:
                        for orphan in earlier[-lost:]:
                            await self._abort_upload(bucket, key, orphan)
                        return
                    earlier.append(upload["UploadId"])

    async def _upload_parts(
        self, bucket: str, key: str, upload_id: str, source: BinaryIO, size: int
    ) -> list[dict[str, Any]]:
        url = _url(bucket, key)
        part_size = self._config.part_size
        count = math.ceil(size / part_size)
        etags: list[str] = [""] * count
        reader = part_reader(source)
        # Bounds the parts held in memory as well as the requests in flight.
        slots = anyio.Semaphore(self._config.upload_concurrency)

        async def send(index: int) -> None:
            try:
                body = await reader.aread(index * part_size, part_size)
                send_part = _op(
                    "upload_part",
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=body,
                )
                response = await self._call("upload_part", url, send_part, sending=len(body))
                etags[index] = response["ETag"]
            finally:
                slots.release()

        async with task_group() as tg:
            for index in range(count):
                await slots.acquire()
                tg.start_soon(send, index)
        return [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]

    async def _abort(self, bucket: str, key: str, upload_id: str, reason: BaseException) -> None:
        # Shielded and bounded: a cancelled write must still not leave parts behind.
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            try:
                await self._abort_upload(bucket, key, upload_id)
            except Exception as error:
                reason.add_note(f"aborting multipart upload {upload_id} also failed: {error}")

    async def _abort_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False if it no longer existed."""

        async def attempt(raw: Any) -> bool:
            try:
                await raw.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as error:
                if _response_of(error)[1] == "NoSuchUpload":
                    return False
                raise
            return True

        return await self._call("abort_multipart_upload", _url(bucket, key), attempt)

    async def _pending_uploads(
        self, bucket: str, prefix: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The pending multipart uploads of keys starting with ``prefix``, by key, then age."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = await self._call(
                "list_multipart_uploads",
                _url(bucket, prefix),
                _op("list_multipart_uploads", **params),
            )
            for upload in page.get("Uploads", ()):
                yield upload
            if not page.get("IsTruncated"):
                return
            # Uploads are listed by key, then by upload id within a key.
            params["KeyMarker"] = page["NextKeyMarker"]
            params["UploadIdMarker"] = page["NextUploadIdMarker"]

    async def abort_uploads(self, bucket: str, prefix: str, *, exact: bool) -> int:
        """Abort the pending multipart uploads under ``prefix``; return how many.

        With ``exact``, only uploads to the key ``prefix`` itself. Not part of
        :class:`RemoteClient`: GCS has nothing to list.
        """
        aborted = 0
        async for upload in self._pending_uploads(bucket, prefix):
            if exact and upload["Key"] != prefix:
                continue  # a longer key that starts with this one
            if await self._abort_upload(bucket, upload["Key"], upload["UploadId"]):
                aborted += 1
        return aborted

    async def read_metadata(self, bucket: str, key: str) -> dict[str, str] | None:
        seen = await self.read_version(bucket, key)
        return None if seen is None else seen[1]

    async def read_version(self, bucket: str, key: str) -> tuple[str, dict[str, str]] | None:
        async def attempt(raw: Any) -> tuple[str, dict[str, str]] | None:
            try:
                response = await raw.head_object(Bucket=bucket, Key=key)
            except Exception as error:
                if _is_not_found(error):
                    return None
                raise
            return str(response.get("ETag") or ""), dict(response.get("Metadata") or {})

        return await self._call("head", _url(bucket, key), attempt)

    async def delete(self, bucket: str, key: str) -> None:
        await self._call("delete", _url(bucket, key), _op("delete_object", Bucket=bucket, Key=key))

    async def delete_many(self, bucket: str, keys: list[str]) -> None:
        url = f"s3://{bucket}/"
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            call = _op("delete_objects", Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            response = await self._call("delete_objects", url, call)
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise TargetError(
                    f"S3 delete of {len(errors)} objects under {url} failed, first "
                    f"s3://{bucket}/{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

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
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE_SIZE}
        if delimiter:
            params["Delimiter"] = delimiter
        if token is not None:
            params["ContinuationToken"] = token
        elif start:
            # StartAfter is exclusive; any key before ``start`` will do. Dropping
            # the last character gives one that is, at worst, a few keys early.
            params["StartAfter"] = start[:-1]
        response = await self._call(
            "list", f"s3://{bucket}/{prefix}", _op("list_objects_v2", **params), counter
        )
        keys = [item["Key"] for item in response.get("Contents", ())]
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return keys, next_token


def _is_precondition_failed(error: Exception) -> bool:
    status, code = _response_of(error)
    return status == 412 or code == "PreconditionFailed"


def _url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
