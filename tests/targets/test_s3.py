"""S3Target against a moto server on loopback: what goes beyond the shared contract."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

import asyncflow
from asyncflow.errors import TargetError
from asyncflow.targets import RequestRetry, S3Config, S3PrefixTarget, S3Target
from asyncflow.targets._clients import current_clients

from ._support import Boom, write_bytes_then_raise
from .faults import FaultProxy

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
FAST = RequestRetry(attempts=3, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def proxy(s3_env: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto."""
    with FaultProxy(s3_env, seed=1) as proxy:
        yield proxy


@pytest.fixture
def via_proxy(proxy: FaultProxy) -> S3Config:
    """Configuration reaching moto through the proxy, with quick retries."""
    return S3Config.from_env(endpoint_url=proxy.url, retry=FAST)


@pytest.fixture
async def raw_s3(s3_env: str) -> AsyncIterator[Any]:
    """A plain aiobotocore client, to look at the bucket behind the target's back."""
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=s3_env) as client:
        yield client


def payload(size: int) -> bytes:
    return os.urandom(size)


def on_parts(func: Callable[[], object]) -> Callable[[bytes], bool]:
    """A proxy ``fault_filter`` that runs ``func`` on this event loop for each part sent.

    The proxy calls it in its own thread, once the request has waited out the
    proxy's ``latency`` and before forwarding it. It fails no request.
    """
    token = anyio.lowlevel.current_token()

    def fault_filter(request_line: bytes) -> bool:
        if b"partNumber=" in request_line:
            anyio.from_thread.run_sync(func, token=token)
        return False

    return fault_filter


@pytest.mark.parametrize(
    "url",
    [
        "gs://bucket/key",
        "s3:/bucket/key",
        "s3://",
        "s3:///key",
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/folder/",
        "bucket/key",
    ],
)
def test_bad_url_raises_value_error_naming_it(url: str) -> None:
    """A URL that is not s3://bucket/key is refused at construction, naming the URL."""
    with pytest.raises(ValueError, match="invalid URL") as info:
        S3Target(url)
    assert repr(url) in str(info.value)


def test_targets_are_equal_by_location_and_config() -> None:
    """Targets compare and hash by bucket, key and configuration."""
    assert S3Target("s3://b/k") == S3Target("s3://b/k")
    assert hash(S3Target("s3://b/k")) == hash(S3Target("s3://b/k"))
    assert S3Target("s3://b/k") != S3Target("s3://b/other")
    assert S3Target("s3://b/k") != S3Target("s3://b/k", config=S3Config(region="eu-west-1"))
    assert str(S3Target("s3://b/dir/k")) == "s3://b/dir/k"


def test_config_reads_standard_environment_variables() -> None:
    """S3Config.from_env reads the AWS variables a user sets, the S3-specific endpoint first."""
    config = S3Config.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
        },
        max_pool_connections=8,
    )
    assert config.endpoint_url == "http://127.0.0.1:2"
    assert config.region == "eu-west-3"
    assert (config.access_key_id, config.secret_access_key) == ("key", "secret")
    assert config.max_pool_connections == 8
    assert "secret" not in repr(config)


async def test_explicit_config_works_without_environment(
    s3_env: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit S3Config reaches the server even with no AWS variables set."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    config = S3Config(
        endpoint_url=s3_env, region="us-east-1", access_key_id="a", secret_access_key="b"
    )
    target = S3Target(f"s3://{s3_bucket}/explicit.txt", config=config)
    await target.write_text("hello")
    assert await target.read_text() == "hello"


async def test_large_object_is_uploaded_in_parts(s3_bucket: str, raw_s3: Any) -> None:
    """A 20 MB object goes up as a 3-part multipart upload and reads back identical."""
    data = payload(20 * MiB)
    target = S3Target(f"s3://{s3_bucket}/big.bin")
    await target.write_bytes(data)
    head = await raw_s3.head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert await target.read_bytes() == data


async def test_failed_part_aborts_upload_and_leaves_nothing(
    s3_bucket: str, raw_s3: Any, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """When a part keeps failing, the multipart upload is aborted: no object, no upload left."""
    proxy.fault_rate = 1.0
    proxy.fault_filter = lambda line: b"partNumber=2" in line
    target = S3Target(f"s3://{s3_bucket}/broken.bin", config=via_proxy)
    with pytest.raises(TargetError, match=f"s3://{s3_bucket}/broken.bin"):
        await target.write_bytes(payload(20 * MiB))
    assert any(b"DELETE" in line and b"uploadId" in line for line in proxy.request_lines)
    assert not await target.exists()
    uploads = await raw_s3.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


async def test_exception_in_large_write_block_uploads_nothing(
    s3_bucket: str, raw_s3: Any, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """An exception after writing 20 MB sends no request at all: the spool is dropped."""
    target = S3Target(f"s3://{s3_bucket}/never.bin", config=via_proxy)
    with pytest.raises(Boom):
        await write_bytes_then_raise(target, payload(20 * MiB))
    assert proxy.requests == 0
    uploads = await raw_s3.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


async def test_cancelled_multipart_upload_is_aborted(
    s3_bucket: str, raw_s3: Any, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """Cancelling a write while its parts upload aborts the multipart upload."""
    scope = anyio.CancelScope()
    proxy.latency = 0.1
    proxy.fault_filter = on_parts(scope.cancel)
    target = S3Target(f"s3://{s3_bucket}/cancelled.bin", config=via_proxy)
    with scope:
        await target.write_bytes(payload(20 * MiB))
    assert scope.cancelled_caught
    assert any(b"DELETE" in line and b"uploadId" in line for line in proxy.request_lines)
    proxy.latency = 0.0
    assert not await target.exists()
    uploads = await raw_s3.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


@pytest.mark.parametrize("size", [10, 20 * MiB], ids=["small", "multipart"])
async def test_create_only_refuses_to_overwrite(s3_bucket: str, size: int) -> None:
    """A create-only write to an existing object raises TargetError naming it, changing nothing."""
    url = f"s3://{s3_bucket}/once.bin"
    first = payload(size)
    target = S3Target(url, create_only=True)
    await target.write_bytes(first)
    with pytest.raises(TargetError, match=f"{url} already exists"):
        await target.write_bytes(payload(size))
    assert await target.read_bytes() == first


async def test_exists_on_missing_object_is_false_in_one_request(
    s3_bucket: str, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """A 404 answers False, without retrying."""
    assert not await S3Target(f"s3://{s3_bucket}/nope", config=via_proxy).exists()
    assert proxy.requests == 1


async def test_exists_on_forbidden_raises_target_error_without_retry(
    s3_bucket: str, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """A 403 is an error naming the URL, not "missing", and is not retried."""
    proxy.fault_rate, proxy.fault_statuses = 1.0, (403,)
    url = f"s3://{s3_bucket}/secret"
    with pytest.raises(TargetError, match=url):
        await S3Target(url, config=via_proxy).exists()
    assert proxy.requests == 1


async def test_exists_on_persistent_server_error_raises_after_retries(
    s3_bucket: str, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """A 500 that outlasts the retries is an error naming the URL, after every attempt."""
    proxy.fault_rate, proxy.fault_statuses = 1.0, (500,)
    url = f"s3://{s3_bucket}/flaky"
    with pytest.raises(TargetError, match=url) as info:
        await S3Target(url, config=via_proxy).exists()
    assert proxy.requests == FAST.attempts
    assert "gave up after 3 attempts" in "".join(getattr(info.value.__cause__, "__notes__", []))


async def test_transient_errors_are_retried(
    s3_bucket: str, proxy: FaultProxy, via_proxy: S3Config
) -> None:
    """With half the requests failing with 500/503, reads, writes and probes still succeed."""
    config = via_proxy.with_options(retry=RequestRetry(attempts=12, base_delay=0.001))
    proxy.fault_rate = 0.5
    target = S3Target(f"s3://{s3_bucket}/retried.txt", config=config)
    await target.write_text("survived")
    assert await target.exists()
    assert await target.read_text() == "survived"
    assert proxy.faults > 0


async def test_a_run_shares_one_client(s3_bucket: str) -> None:
    """All S3 targets of a run with one configuration share one client, closed at the end."""
    seen: list[int] = []

    class Write(asyncflow.Task):
        name = asyncflow.Parameter()

        def output(self) -> S3Target:
            return S3Target(f"s3://{s3_bucket}/shared/{self.name}")

        def run(self) -> None:  # a sync body, in a worker thread
            with self.output().open("w") as f:
                f.write(self.name)

    class Check(asyncflow.Task):
        def requires(self) -> list[Write]:
            return [Write(name=str(i)) for i in range(4)]

        async def run(self) -> None:
            clients = current_clients()
            assert clients is not None
            seen.append(len(clients))

    result = await asyncflow.run(Check(), journal=None)
    assert result.ok, result.summary()
    assert seen == [1]


# --------------------------------------------------------------------------- leftovers


async def start_upload(raw_s3: Any, bucket: str, key: str) -> str:
    """Start a multipart upload with one part sent, and never finish it; return its id."""
    created = await raw_s3.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id: str = created["UploadId"]
    await raw_s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024
    )
    return upload_id


async def pending_uploads(raw_s3: Any, bucket: str) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload in progress in the bucket, sorted."""
    response = await raw_s3.list_multipart_uploads(Bucket=bucket)
    return sorted((u["Key"], u["UploadId"]) for u in response.get("Uploads", ()))


# Writes 20 MiB (a multipart upload) to the URL in argv[1], through the
# configuration the environment gives; the test kills it mid-upload.
_KILLED_WRITER = """
import asyncio, os, sys
from asyncflow.targets import S3Target
asyncio.run(S3Target(sys.argv[1]).write_bytes(os.urandom(20 * 1024 * 1024)))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
async def test_discard_aborts_upload_of_a_killed_writer(
    s3_bucket: str, raw_s3: Any, proxy: FaultProxy
) -> None:
    """kill -9 during a multipart upload leaves it pending; discarding aborts it."""
    uploading = anyio.Event()
    proxy.fault_filter = on_parts(uploading.set)
    # Every request waits this long in the proxy, the one completing the
    # upload too: the kill lands well before it could be sent.
    proxy.latency = 0.5
    url = f"s3://{s3_bucket}/killed.bin"
    command = [sys.executable, "-c", _KILLED_WRITER, url]
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}  # the writer goes through the proxy
    async with (
        await anyio.open_process(command, stdin=None, stdout=None, stderr=None, env=env) as proc,
        anyio.create_task_group() as tg,
    ):

        async def stop_waiting_if_it_exits() -> None:
            await proc.wait()
            uploading.set()

        tg.start_soon(stop_waiting_if_it_exits)
        await uploading.wait()
        assert proc.returncode is None, "the writer exited before uploading a part"
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert [key for key, _ in await pending_uploads(raw_s3, s3_bucket)] == ["killed.bin"]

    assert await S3Target(url).discard_partial_writes() == 1
    assert await pending_uploads(raw_s3, s3_bucket) == []
    assert not await S3Target(url).exists()


async def test_discard_aborts_only_uploads_of_this_exact_key(s3_bucket: str, raw_s3: Any) -> None:
    """Both pending uploads to a/b are aborted; a/bc and a/b/c keep theirs; the object stays."""
    target = S3Target(f"s3://{s3_bucket}/a/b")
    await target.write_text("committed")
    for key in ("a/b", "a/b", "a/bc", "a/b/c", "z"):
        await start_upload(raw_s3, s3_bucket, key)

    assert await target.discard_partial_writes() == 2
    assert [key for key, _ in await pending_uploads(raw_s3, s3_bucket)] == ["a/b/c", "a/bc", "z"]
    assert await target.read_text() == "committed"
    assert await target.discard_partial_writes() == 0


async def test_prefix_discard_aborts_uploads_under_the_prefix(s3_bucket: str, raw_s3: Any) -> None:
    """A prefix target aborts the uploads of every key under it, none outside."""
    for key in ("dir/part-0", "dir/sub/part-1", "dir2/part-0", "dirx"):
        await start_upload(raw_s3, s3_bucket, key)
    prefix = S3PrefixTarget(f"s3://{s3_bucket}/dir")
    assert await prefix.discard_partial_writes() == 2
    assert [key for key, _ in await pending_uploads(raw_s3, s3_bucket)] == ["dir2/part-0", "dirx"]


class _PagedUploads(BaseHTTPRequestHandler):
    """Just enough of S3 to list multipart uploads two per page, and abort them.

    moto always answers ListMultipartUploads in a single page, so paging is
    tested against this instead.
    """

    uploads: ClassVar[list[tuple[str, str]]] = []
    lists: ClassVar[int] = 0

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        assert "uploads" in query, self.path
        type(self).lists += 1
        prefix = query.get("prefix", [""])[0]
        marker = (query.get("key-marker", [""])[0], query.get("upload-id-marker", [""])[0])
        after = [u for u in sorted(self.uploads) if u[0].startswith(prefix) and u > marker]
        page, truncated = after[:2], len(after) > 2
        body = "".join(
            f"<Upload><Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId></Upload>"
            for key, upload_id in page
        )
        if truncated:
            body += f"<NextKeyMarker>{escape(page[-1][0])}</NextKeyMarker>"
            body += f"<NextUploadIdMarker>{page[-1][1]}</NextUploadIdMarker>"
        self._answer(
            200,
            '<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult>'
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{body}"
            "</ListMultipartUploadsResult>",
        )

    def do_DELETE(self) -> None:
        url = urlsplit(self.path)
        key = unquote(url.path.split("/", 2)[2])
        (upload_id,) = parse_qs(url.query)["uploadId"]
        self.uploads.remove((key, upload_id))
        self._answer(204, "")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_discard_follows_listing_pages() -> None:
    """Pending uploads spread over several listing pages are all found and aborted."""
    _PagedUploads.lists = 0
    _PagedUploads.uploads = [("a/b", f"id-{i}") for i in range(5)] + [("a/bc", "id-x")]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagedUploads)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        config = S3Config(
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            region="us-east-1",
            access_key_id="a",
            secret_access_key="b",
            retry=FAST,
        )
        assert await S3Target("s3://bucket/a/b", config=config).discard_partial_writes() == 5
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert _PagedUploads.uploads == [("a/bc", "id-x")]
    assert _PagedUploads.lists == 3
