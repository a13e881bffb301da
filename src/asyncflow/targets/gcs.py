"""Objects in Google Cloud Storage (or an emulator): :class:`GCSTarget`.

::

    out = GCSTarget("gs://bucket/reports/2026-11-23.csv")
    async with out.open("w") as f:       # uploaded when the block exits cleanly
        f.write("...")

Configuration comes from the environment, read when a client is needed:
``STORAGE_EMULATOR_HOST`` (an emulator such as fake-gcs-server; requests are
then anonymous unless a token is given) and ``GOOGLE_CLOUD_PROJECT``; otherwise
credentials are found the way gcsfs finds them (``token=None``: gcloud
defaults, then the metadata server). Pass a :class:`GCSConfig` to set it
explicitly.

The target speaks the GCS JSON API over one aiohttp session per
configuration, shared by every target of a run, with a pool of 64
connections. gcsfs supplies the credentials (``gcsfs.credentials``, the same
``token=`` values as gcsfs and pandas accept); its filesystem class is not
used, which keeps its listing cache, its retry loop (up to 6 attempts with
sleeps of up to 32 s) and, in recent versions, the zonal-bucket detection that
stalls against emulators out of the way. Transient failures are retried with
the configuration's :class:`~asyncflow.targets.RequestRetry`.

Writes are spooled (memory, then a temporary file) and uploaded on commit:
objects up to ``part_size`` (8 MiB) in one multipart request, larger ones with
a resumable upload in ``part_size`` chunks, cancelled if anything fails. A
chunk that fails starts the upload over in a new session (as many times as
the retry policy allows attempts): how much of it the session kept is
unknown, and emulators mishandle both re-sent bytes and status queries. A
killed process leaves its resumable upload session open; GCS cannot list those,
and expires them a week after they start, so
:meth:`GCSTarget.discard_partial_writes` has nothing to do.
``create_only=True`` sends ``ifGenerationMatch=0`` so the upload is refused,
and :class:`~asyncflow.errors.TargetError` raised naming the object's writer,
if the object exists by then.

Every object written carries metadata naming the write (``asyncflow-write``,
random) and, inside a run, the task attempt that made it (``asyncflow-run``,
``-task``, ``-attempt``), so that a write whose answer was lost after GCS
acted on it tells its own object (success) from another writer's. Retries
after a try that got no answer go over a new connection, as for S3.

gcsfs and aiohttp are imported on first use, in a worker thread.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, TypeVar, final
from urllib.parse import quote

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
    within,
)

__all__ = ["GCSConfig", "GCSPrefixTarget", "GCSTarget"]

_T = TypeVar("_T")

DEFAULT_ENDPOINT: Final = "https://storage.googleapis.com"
_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK_QUANTUM: Final = 256 * 1024  # resumable chunks are multiples of 256 KiB
_READ_CHUNK: Final = 1 * MiB


@final
@dataclass(frozen=True)
class GCSConfig:
    """Where and how to reach GCS.

    The configuration is also the key under which a run shares one session,
    so targets with equal configurations share a connection pool.
    """

    endpoint_url: str | None = None
    """``http(s)://host:port`` of an emulator; None for Google's endpoint."""
    project: str | None = None
    token: str | None = None
    """As for gcsfs: None (find credentials), ``"anon"``, ``"google_default"``,
    ``"cloud"``, or the path of a service-account or authorized-user JSON file."""
    credentials: object = field(default=None, repr=False)
    """A ``google.auth`` credentials object; takes precedence over ``token``."""
    max_pool_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    part_size: int = DEFAULT_PART_SIZE
    """Objects larger than this use a resumable upload in chunks of this size."""
    retry: RequestRetry = field(default_factory=RequestRetry)

    def __post_init__(self) -> None:
        if self.part_size < _CHUNK_QUANTUM or self.part_size % _CHUNK_QUANTUM:
            raise ValueError(
                f"GCSConfig.part_size must be a positive multiple of 256 KiB, not {self.part_size}"
            )
        if self.max_pool_connections < 1:
            raise ValueError("GCSConfig.max_pool_connections must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> GCSConfig:
        """The configuration the environment describes.

        ``STORAGE_EMULATOR_HOST`` (with or without ``http://``) sets the
        endpoint and, unless a token is given, anonymous access;
        ``GOOGLE_CLOUD_PROJECT`` (or ``GCLOUD_PROJECT``) the project.
        ``environ`` defaults to ``os.environ``; keyword arguments override fields.
        """
        env = os.environ if environ is None else environ
        endpoint = env.get("STORAGE_EMULATOR_HOST", "")
        values: dict[str, Any] = {
            "project": env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT") or None
        }
        if endpoint and endpoint != "default":
            if not endpoint.startswith(("http://", "https://")):
                endpoint = "http://" + endpoint
            values["endpoint_url"] = endpoint.rstrip("/")
            values["token"] = "anon"
        values.update(overrides)
        return cls(**values)

    def with_options(self, **changes: Any) -> GCSConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


class GCSTarget(RemoteTarget[GCSConfig]):
    """An object in GCS, ``gs://bucket/key``, with the same contract as a local file.

    Args:
        url: ``gs://bucket/key``.
        config: where and how to reach GCS; by default read from the
            environment each time a client is needed.
        create_only: refuse to overwrite an existing object (the write raises
            :class:`~asyncflow.errors.TargetError` naming the URL).

    Raises:
        ValueError: the URL is not ``gs://bucket/key``.
    """

    scheme = "gs"
    __slots__ = ()

    def _resolved_config(self) -> GCSConfig:
        return self.config if self.config is not None else GCSConfig.from_env()

    def _client(self, config: GCSConfig) -> AbstractAsyncContextManager[RemoteClient]:
        return _borrow(config)

    async def discard_partial_writes(self) -> int:
        """Return 0 at once: there is nothing this target could discard.

        An interrupted large write leaves a resumable upload session open, but
        the JSON API has no way to list upload sessions, and only the session
        URL (lost with the process) can cancel one. The object never appears,
        and GCS expires the session a week after it started. No request is
        made. The same holds for :class:`GCSPrefixTarget`.
        """
        return 0


class GCSPrefixTarget(RemotePrefixTarget[GCSTarget]):
    """A folder-like prefix ``gs://bucket/dir/``, complete once ``dir/_SUCCESS`` exists.

    See :class:`~asyncflow.targets._prefix.RemotePrefixTarget` for publishing.
    """

    scheme = "gs"
    __slots__ = ("config",)

    def __init__(
        self, url: str, *, config: GCSConfig | None = None, create_only: bool = False
    ) -> None:
        super().__init__(url, create_only=create_only)
        self.config = config

    def _make_child(self, url: str, *, create_only: bool) -> GCSTarget:
        return GCSTarget(url, config=self.config, create_only=create_only)


# --------------------------------------------------------------------------- client


@asynccontextmanager
async def _borrow(config: GCSConfig) -> AsyncIterator[RemoteClient]:
    async with borrow_client(("asyncflow.gcs", config), lambda: _open_client(config)) as client:
        yield client


def _load_credentials(config: GCSConfig) -> Any:
    """gcsfs's credential lookup; may read files or ask the metadata server, so in a thread."""
    from gcsfs.credentials import GoogleCredentials

    token: Any = config.credentials if config.credentials is not None else config.token
    return GoogleCredentials(config.project, "full_control", token)


@asynccontextmanager
async def _open_client(config: GCSConfig) -> AsyncIterator[_GCSClient]:
    credentials = await anyio.to_thread.run_sync(_load_credentials, config)
    import aiohttp

    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
    )

    def open_session(**connector: Any) -> aiohttp.ClientSession:
        limit = config.max_pool_connections
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, **connector), timeout=timeout
        )

    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(open_session())

        async def open_unpooled() -> Any:
            # Retries after a lost connection go over a new connection each.
            return await stack.enter_async_context(open_session(force_close=True))

        yield _GCSClient(session, open_unpooled, credentials, config)


class _StatusError(Exception):
    """An HTTP error status from GCS."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        message = body.decode("utf-8", "replace")
        try:
            message = json.loads(message)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = message[:200]
        super().__init__(f"HTTP {status}: {message}")


def _is_transient(error: Exception) -> bool:
    """5xx, 408, 429, timeouts, resets and broken connections."""
    if isinstance(error, _StatusError):
        return error.status in _TRANSIENT_STATUS
    import aiohttp

    return isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError)


def _lost_connection(error: Exception) -> bool:
    """A transient failure that got no answer from GCS: a reset, a closed connection, a timeout."""
    return not isinstance(error, _StatusError) and _is_transient(error)


class _SessionLost(Exception):
    """A chunk of a resumable upload failed: how much of it the session kept is unknown."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a stream, which aiohttp cannot send a second time on its own."""
    view = memoryview(data)
    for start in range(0, len(data), _READ_CHUNK):
        yield view[start : start + _READ_CHUNK].tobytes()


class _GCSClient:
    """The :class:`RemoteClient` operations over the GCS JSON API."""

    def __init__(
        self,
        session: Any,
        open_unpooled: Callable[[], Awaitable[Any]],
        credentials: Any,
        config: GCSConfig,
    ) -> None:
        self._session = session
        # The session that opens a new connection for every request.
        self._unpooled = OnFirstUse(open_unpooled)
        self._credentials = credentials
        self._config = config
        endpoint = (config.endpoint_url or DEFAULT_ENDPOINT).rstrip("/")
        self._api = f"{endpoint}/storage/v1"
        self._upload_api = f"{endpoint}/upload/storage/v1"
        self._download_api = f"{endpoint}/download/storage/v1"

    # Plumbing.

    async def _session_for(self, fresh: bool) -> Any:
        """The pooled session, or (``fresh``) the one opening a new connection per request."""
        return await self._unpooled.get() if fresh else self._session

    async def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        google = self._credentials.credentials
        if google is not None:
            if not google.valid:
                # A token refresh is a blocking HTTP call in google-auth.
                await anyio.to_thread.run_sync(self._credentials.maybe_refresh)
            google.apply(headers)
        return headers

    async def _send(
        self,
        session: Any,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        json_body: object = None,
        once: bool = False,
    ) -> _Response:
        """One request; raises _StatusError unless the status is in ``ok``.

        With ``once`` the body is never sent twice: aiohttp resends an
        idempotent request by itself when a kept-alive connection turns out
        closed, which a resumable upload session must not receive.
        """
        body: object = data
        if data is not None and once:
            body = _once(data)
            headers = {**(headers or {}), "Content-Length": str(len(data))}
        elif data is not None and len(data) > _READ_CHUNK:
            # aiohttp writes a file-like body in pieces, yielding to the loop in
            # between; a BytesIO over bytes shares their buffer rather than copying.
            body = io.BytesIO(data)
        async with session.request(
            method,
            url,
            params=params,
            headers=await self._headers(headers),
            data=body,
            json=json_body,
            allow_redirects=False,  # a resumable session's 308 means "go on", not "go there"
        ) as response:
            content = await response.read()
            if response.status not in ok:
                raise _StatusError(response.status, content)
            return _Response(response.status, response.headers, content)

    async def _call(
        self,
        operation: str,
        url: str,
        call: Callable[[Any], Awaitable[_T]],
        counter: RequestCounter | None = None,
        *,
        sending: int | None = None,
    ) -> _T:
        """``call(session)``, retried: on the pooled session, or after a lost
        connection on the unpooled one. ``sending``: the size of the body."""

        async def attempt(fresh: bool) -> _T:
            return await call(await self._session_for(fresh))

        return await request(
            "GCS",
            operation,
            url,
            attempt,
            policy=self._config.retry,
            is_transient=_is_transient,
            lost_connection=_lost_connection,
            counter=counter,
            deadline=None if sending is None else upload_deadline(self._config, sending),
        )

    def _object_url(self, bucket: str, key: str) -> str:
        return f"{self._api}/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}"

    # Operations.

    async def head(self, bucket: str, key: str, *, counter: RequestCounter | None = None) -> bool:
        async def attempt(session: Any) -> bool:
            response = await self._send(
                session,
                "GET",
                self._object_url(bucket, key),
                ok=(200, 404),
                params={"fields": "name"},
            )
            return response.status == 200

        return await self._call("head", _url(bucket, key), attempt, counter)

    async def download(self, bucket: str, key: str, sink: BinaryIO) -> None:
        url = _url(bucket, key)
        media = f"{self._download_api}/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}"

        async def attempt(session: Any) -> None:
            sink.seek(0)
            sink.truncate()
            async with session.request(
                "GET", media, params={"alt": "media"}, headers=await self._headers()
            ) as response:
                if response.status == 404:
                    raise TargetNotFoundError(f"no such object: {url}")
                if response.status != 200:
                    raise _StatusError(response.status, await response.read())
                async for chunk in response.content.iter_chunked(_READ_CHUNK):
                    # A memory copy, or a page-cache write once the spool is on disk.
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
        params = {"name": key}
        if create_only:
            params["ifGenerationMatch"] = "0"
        elif if_version is not None:
            params["ifGenerationMatch"] = if_version
        resource: dict[str, object] = {"name": key, "metadata": tag.metadata()}
        try:
            if size <= self._config.part_size:
                body = source.read()  # still in memory: the spool rolls over only past part_size
                await self._simple_upload(bucket, key, body, params, resource)
            else:
                await self._resumable_upload(bucket, key, source, size, params, resource)
        except TargetError as error:
            cause = error.__cause__
            if create_only and isinstance(cause, _StatusError) and cause.status == 412:
                raise WriteUncertain(
                    f"{url} already exists: not overwritten (create_only)"
                ) from cause
            if if_version is not None and isinstance(cause, _StatusError) and cause.status == 412:
                raise WriteUncertain(f"{url} changed since it was read: not overwritten") from cause
            raise

    async def _simple_upload(
        self,
        bucket: str,
        key: str,
        data: bytes,
        params: dict[str, str],
        resource: dict[str, object],
    ) -> None:
        # A multipart/related upload: unlike uploadType=media, every emulator
        # honours ifGenerationMatch on it.
        boundary = secrets.token_hex(16)
        metadata = json.dumps(resource).encode()
        body = b"".join(
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                metadata,
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        await self._call(
            "upload",
            _url(bucket, key),
            lambda session: self._send(
                session,
                "POST",
                f"{self._upload_api}/b/{quote(bucket, safe='')}/o",
                params={"uploadType": "multipart", **params},
                headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                data=body,
            ),
            sending=len(body),
        )

    async def _resumable_upload(
        self,
        bucket: str,
        key: str,
        source: BinaryIO,
        size: int,
        params: dict[str, str],
        resource: dict[str, object],
    ) -> None:
        """Upload in ``part_size`` chunks through a resumable upload session.

        A chunk is sent once per session. When one fails (no answer, or a
        5xx), how much of it the session kept is unknown, and the emulators
        get both re-sent bytes and status queries wrong, so the session is
        cancelled and the upload starts over in a new one, as many times as
        the retry policy allows attempts. Should the lost chunk have been the
        last, the object is there already: a create-only write then finds
        its own tag, anything else writes the same bytes again.
        """
        url = _url(bucket, key)
        policy = self._config.retry
        fresh = False
        restart = 1
        while True:
            started = await self._call(
                "start resumable upload",
                url,
                lambda session: self._send(
                    session,
                    "POST",
                    f"{self._upload_api}/b/{quote(bucket, safe='')}/o",
                    params={"uploadType": "resumable", **params},
                    json_body=resource,
                    headers={"X-Upload-Content-Type": "application/octet-stream"},
                ),
            )
            session_url = started.headers["Location"]
            try:
                await self._send_chunks(url, session_url, source, size, fresh)
                return
            except _SessionLost as lost:
                await self._cancel(session_url, lost)
                error = lost.__cause__
                assert isinstance(error, Exception)
                if restart >= policy.attempts:
                    error.add_note(f"gave up after {restart} upload sessions")
                    raise TargetError(f"GCS upload chunk of {url} failed: {error}") from error
                fresh = _lost_connection(error)
            except BaseException as error:
                await self._cancel(session_url, error)
                raise
            await anyio.sleep(policy.delay(restart))
            restart += 1

    async def _send_chunks(
        self, url: str, session_url: str, source: BinaryIO, size: int, fresh: bool
    ) -> None:
        """Send the chunks, each once; :class:`_SessionLost` when one fails transiently."""
        reader = part_reader(source)
        chunk_size = self._config.part_size
        session = await self._session_for(fresh)
        offset = 0
        while offset < size:
            chunk = await reader.aread(offset, chunk_size)
            end = offset + len(chunk) - 1
            total = str(size) if end + 1 >= size else "*"
            send = self._send(
                session,
                "PUT",
                session_url,
                ok=(200, 201, 308),
                headers={"Content-Range": f"bytes {offset}-{end}/{total}"},
                data=chunk,
                once=True,
            )
            try:
                response = await within(upload_deadline(self._config, len(chunk)), send)
            except Exception as error:
                if _is_transient(error):
                    raise _SessionLost() from error
                raise TargetError(f"GCS upload chunk of {url} failed: {error}") from error
            if response.status != 308:
                return
            # The server says how much it has; resume right after that.
            persisted = response.headers.get("Range")
            offset = int(persisted.rsplit("-", 1)[1]) + 1 if persisted else 0

    async def _cancel(self, session_url: str, reason: BaseException) -> None:
        # Shielded and bounded: a cancelled write must not leave an upload session open.
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            try:
                await self._call(
                    "cancel resumable upload",
                    session_url,
                    lambda session: self._send(
                        session, "DELETE", session_url, ok=(200, 204, 404, 410, 499)
                    ),
                )
            except Exception as error:
                reason.add_note(f"cancelling the resumable upload also failed: {error}")

    async def read_metadata(self, bucket: str, key: str) -> dict[str, str] | None:
        seen = await self.read_version(bucket, key)
        return None if seen is None else seen[1]

    async def read_version(self, bucket: str, key: str) -> tuple[str, dict[str, str]] | None:
        async def attempt(session: Any) -> tuple[str, dict[str, str]] | None:
            response = await self._send(
                session,
                "GET",
                self._object_url(bucket, key),
                ok=(200, 404),
                params={"fields": "generation,metadata"},
            )
            if response.status == 404:
                return None
            found = json.loads(response.body)
            metadata = found.get("metadata") or {}
            return str(found.get("generation") or ""), {
                str(name): str(value) for name, value in metadata.items()
            }

        return await self._call("head", _url(bucket, key), attempt)

    async def delete(self, bucket: str, key: str) -> None:
        await self._call(
            "delete",
            _url(bucket, key),
            lambda session: self._send(
                session, "DELETE", self._object_url(bucket, key), ok=(200, 204, 404)
            ),
        )

    async def delete_many(self, bucket: str, keys: list[str]) -> None:
        limiter = anyio.CapacityLimiter(16)

        async def delete(key: str) -> None:
            async with limiter:
                await self.delete(bucket, key)

        async with task_group() as tg:
            for key in keys:
                tg.start_soon(delete, key)

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
        params = {
            "prefix": prefix,
            "maxResults": str(LIST_PAGE_SIZE),
            "fields": "items(name),prefixes,nextPageToken",
        }
        if delimiter:
            params["delimiter"] = delimiter
        if token is not None:
            params["pageToken"] = token
        elif start:
            params["startOffset"] = start
        listing = f"{self._api}/b/{quote(bucket, safe='')}/o"
        response = await self._call(
            "list",
            f"gs://{bucket}/{prefix}",
            lambda session: self._send(session, "GET", listing, params=params),
            counter,
        )
        page = json.loads(response.body)
        keys = [item["name"] for item in page.get("items", ())]
        next_token: str | None = page.get("nextPageToken") or None
        return keys, next_token


def _url(bucket: str, key: str) -> str:
    return f"gs://{bucket}/{key}"
