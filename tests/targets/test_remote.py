"""What S3 and GCS share: bulk probing, prefix targets, retries, and a pipeline under faults."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow.errors import TargetError
from asyncflow.targets import (
    GCSPrefixTarget,
    LocalTarget,
    MemoryStore,
    MemoryTarget,
    RequestCounter,
    RequestRetry,
    S3Config,
    S3PrefixTarget,
    S3Target,
    probe_many,
)
from asyncflow.targets._clients import client_scope
from asyncflow.targets._remote import RemoteClient, RemoteTarget, retrying, task_group

from ._support import FAST, Backend, Boom
from .faults import FaultProxy

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the backend's server."""
    with FaultProxy(backend.endpoint, seed=3) as proxy:
        yield proxy


async def write_many(targets: list[RemoteTarget[Any]], data: bytes = b"x") -> None:
    """Write ``data`` to every target, a few at a time, sharing one client."""
    limiter = anyio.CapacityLimiter(16)

    async def write(target: RemoteTarget[Any]) -> None:
        async with limiter:
            await target.write_bytes(data)

    async with client_scope(), anyio.create_task_group() as tg:
        for target in targets:
            tg.start_soon(write, target)


# --------------------------------------------------------------------------- probing


async def test_probing_1000_targets_under_one_prefix_takes_at_most_5_requests(
    backend: Backend,
) -> None:
    """A thousand targets sharing a parent prefix are answered by listing it."""
    targets = [backend.target(f"data/part-{i:04d}") for i in range(1000)]
    present = set(targets[::20])
    await write_many(list(present))
    await write_many([backend.target("data/zz-unrelated"), backend.target("data/sub/deeper")])
    counter = RequestCounter()
    result = await probe_many(targets, counter=counter)
    assert counter.total <= 5
    assert counter["head"] == 0
    assert result == {t: t in present for t in targets}


async def test_small_groups_are_probed_one_request_each(backend: Backend) -> None:
    """Below the threshold, each target costs one request (all concurrent)."""
    targets = [backend.target(f"spread/{i}/out") for i in range(12)]
    await write_many(targets[:5])
    counter = RequestCounter()
    result = await probe_many(targets, counter=counter)
    assert counter.as_dict() == {"head": 12}
    assert [result[t] for t in targets] == [True] * 5 + [False] * 7


async def test_probe_mixes_backends_and_prefix_targets(backend: Backend, tmp_path: Path) -> None:
    """Local, memory, object and prefix targets can be probed together, each answered right."""
    store = MemoryStore()
    local, memory = LocalTarget(tmp_path / "here"), MemoryTarget("m", store)
    await local.write_text("x")
    done, not_done = backend.prefix("done/"), backend.prefix("not-done/")
    await done.write_files({"a.txt": "a"})
    await not_done.child("a.txt").write_text("a")  # files without a marker: incomplete
    obj = backend.target("obj")
    result = await probe_many([local, memory, done, not_done, obj, obj])
    assert result == {local: True, memory: False, done: True, not_done: False, obj: False}


async def test_probe_error_is_raised_not_guessed(backend: Backend, proxy: FaultProxy) -> None:
    """A probe that fails raises TargetError naming the URL; no target is reported missing."""
    proxy.fault_rate, proxy.fault_statuses = 1.0, (403,)
    config = backend.config(proxy.url)
    targets = [backend.target(f"d/{i}", config) for i in range(3)]
    with pytest.raises(TargetError, match=backend.bucket):
        await probe_many(targets)


class _ListingOnlyStore:
    """An in-memory RemoteClient that lists pages of ``page_size`` keys and counts calls."""

    def __init__(self, keys: list[str], page_size: int) -> None:
        self.keys = sorted(keys)
        self.page_size = page_size
        self.calls: list[str] = []

    async def head(self, bucket: str, key: str, *, counter: RequestCounter | None = None) -> bool:
        self.calls.append("head")
        return key in self.keys

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
        self.calls.append("list")
        begin = int(token) if token else sum(k < (start or "") for k in self.keys)
        page = self.keys[begin : begin + self.page_size]
        end = begin + len(page)
        return page, (str(end) if end < len(self.keys) else None)


@dataclass(frozen=True)
class _FakeConfig:
    part_size: int = 8 * MiB


class _FakeTarget(RemoteTarget[_FakeConfig]):
    scheme = "fake"
    store: _ListingOnlyStore

    def _resolved_config(self) -> _FakeConfig:
        return _FakeConfig()

    def _client(self, config: _FakeConfig) -> AbstractAsyncContextManager[RemoteClient]:
        @asynccontextmanager
        async def borrow() -> AsyncIterator[RemoteClient]:
            yield self.store  # type: ignore[misc]  # a partial client: probing only

        return borrow()


async def test_long_listing_falls_back_to_one_request_per_remaining_key() -> None:
    """When the wanted keys are spread over many pages, listing stops early and probes the rest."""
    _FakeTarget.store = store = _ListingOnlyStore([f"d/k{i:04d}" for i in range(5000)], 1000)
    wanted = [f"d/k{i:04d}" for i in range(0, 5000, 250)] + ["d/m-missing"]
    targets = [_FakeTarget(f"fake://b/{key}") for key in wanted]
    result = await probe_many(targets)
    assert store.calls.count("list") == 1  # budget: one page per 16 keys wanted
    assert store.calls.count("head") == len([k for k in wanted if k > "d/k0999"])
    assert result == {t: t.key != "d/m-missing" for t in targets}


# --------------------------------------------------------------------------- prefixes


async def test_prefix_is_complete_only_once_its_marker_is_written_last(
    backend: Backend, proxy: FaultProxy
) -> None:
    """Files go up first, the _SUCCESS marker last; only then does the prefix exist."""
    prefix = backend.prefix("out/2026-11-23", config=backend.config(proxy.url))
    async with prefix.publish() as out:
        await out.child("part-0.csv").write_text("a\n")
        await out.child("part-1.csv").write_text("b\n")
        assert not await prefix.exists()
    assert await prefix.exists()
    writes = [line for line in proxy.request_lines if line.startswith((b"PUT", b"POST"))]
    assert len(writes) == 3 and b"_SUCCESS" in writes[-1]
    assert await prefix.list_files() == ["part-0.csv", "part-1.csv"]


async def test_failed_publish_writes_no_marker(backend: Backend) -> None:
    """An exception inside publish() leaves the prefix incomplete."""
    prefix = backend.prefix("failed/")

    async def publish_then_fail() -> None:
        async with prefix.publish() as out:
            await out.child("part-0.csv").write_text("a\n")
            raise Boom

    with pytest.raises(Boom):
        await publish_then_fail()
    assert await prefix.list_files() == ["part-0.csv"]
    assert not await prefix.exists()


async def test_remove_deletes_the_marker_first(backend: Backend, proxy: FaultProxy) -> None:
    """remove() makes the prefix incomplete before deleting its files, then deletes them all."""
    prefix = backend.prefix("gone/", config=backend.config(proxy.url))
    await prefix.write_files({f"f{i}": b"x" for i in range(5)} | {"sub/g": b"y"})
    proxy.reset_counts()
    await prefix.remove()
    deletes = [line for line in proxy.request_lines if b"DELETE" in line or b"delete" in line]
    assert b"_SUCCESS" in deletes[0]
    assert not await prefix.exists()
    assert await prefix.list_files() == []


async def test_create_only_prefix_refuses_a_second_publish(backend: Backend) -> None:
    """A create-only prefix will not be marked complete twice."""
    prefix = backend.prefix("once/", create_only=True)
    await prefix.write_files({"a": b"1"})
    with pytest.raises(TargetError, match="already exists"):
        await prefix.write_files({"a": b"2"})


async def test_prefix_cannot_be_opened(backend: Backend) -> None:
    """Opening a prefix is an error pointing at child()."""
    with pytest.raises(TargetError, match="child"):
        async with backend.prefix("p/").open("r"):
            pass


def test_prefix_urls_are_normalised() -> None:
    """A prefix URL gets its trailing slash; the whole bucket is a valid prefix."""
    assert S3PrefixTarget("s3://b/dir").url == "s3://b/dir/"
    assert GCSPrefixTarget("gs://b").prefix == ""
    assert S3PrefixTarget("s3://b/dir").marker == S3Target("s3://b/dir/_SUCCESS")
    with pytest.raises(ValueError, match="no bucket"):
        GCSPrefixTarget("gs:///dir/")


# --------------------------------------------------------------------------- retries


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap() -> None:
    """Delay n is uniform in [0, min(max, base * 2**(n-1))]."""
    policy = RequestRetry(attempts=10, base_delay=0.1, max_delay=0.5)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2
    with pytest.raises(ValueError, match="attempts"):
        RequestRetry(attempts=0)


async def test_retrying_stops_at_the_first_permanent_error() -> None:
    """Transient errors are retried and counted; a permanent one propagates at once."""
    outcomes: list[Exception | str] = [TimeoutError(), TimeoutError(), "ok"]
    counter = RequestCounter()

    async def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def transient(error: Exception) -> bool:
        return isinstance(error, TimeoutError)

    assert await retrying(call, policy=FAST, is_transient=transient, counter=counter) == "ok"
    assert counter.total == 3
    outcomes[:] = [KeyError("permanent"), "never"]
    with pytest.raises(KeyError):
        await retrying(call, policy=FAST, is_transient=transient)
    assert outcomes == ["never"]


async def test_task_group_raises_the_first_error_itself() -> None:
    """Concurrent failures surface as the first error, noting the others, not as a group."""

    async def fail(message: str) -> None:
        raise TargetError(message)

    async def both_fail() -> None:
        async with task_group() as tg:
            tg.start_soon(fail, "one")
            tg.start_soon(fail, "two")

    with pytest.raises(TargetError) as info:
        await both_fail()
    assert "failed too" in "".join(info.value.__notes__)


def test_importing_asyncflow_does_not_import_cloud_libraries() -> None:
    """import asyncflow (targets included) loads no cloud or dataframe library."""
    code = (
        "import sys, asyncflow, asyncflow.targets\n"
        "asyncflow.targets.S3Target('s3://b/k'); asyncflow.targets.GCSTarget('gs://b/k')\n"
        "heavy = {'aiobotocore', 'botocore', 'gcsfs', 'aiohttp', 'pandas', 'pyarrow'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- a pipeline


def part_data(n: int) -> bytes:
    """Content of part n: two parts are large enough for multipart uploads."""
    size = 6 * MiB if n in (3, 11) else 1000 + n
    return bytes([n]) * size


async def test_pipeline_survives_a_faulty_store(s3_bucket: str, s3_env: str, raw_s3: Any) -> None:
    """20 tasks writing to S3 through a proxy failing 20% of requests all complete, whole."""
    with FaultProxy(s3_env, seed=4) as proxy:
        proxy.fault_rate = 0.2
        config = S3Config.from_env(
            endpoint_url=proxy.url,
            part_size=5 * MiB,
            retry=RequestRetry(attempts=10, base_delay=0.005),
        )

        class Part(asyncflow.Task):
            n = asyncflow.IntParameter()

            def output(self) -> S3Target:
                return S3Target(f"s3://{s3_bucket}/pipeline/part-{self.n:02d}", config=config)

            async def run(self) -> None:
                await self.output().write_bytes(part_data(self.n))

        class Total(asyncflow.Task):
            def requires(self) -> list[Part]:
                return [Part(n=n) for n in range(19)]

            def output(self) -> S3Target:
                return S3Target(f"s3://{s3_bucket}/pipeline/total", config=config)

            def run(self) -> None:  # a sync body, in a worker thread
                total = 0
                for target in self.input():
                    with target.open("rb") as f:
                        total += len(f.read())
                with self.output().open("w") as f:
                    f.write(str(total))

        with anyio.fail_after(60):
            result = await asyncflow.run(Total(), journal=None, workers=8)
        assert result.ok, result.summary()
        assert proxy.faults > 0

    for n in range(19):
        body = await S3Target(f"s3://{s3_bucket}/pipeline/part-{n:02d}").read_bytes()
        assert body == part_data(n)
    total = await S3Target(f"s3://{s3_bucket}/pipeline/total").read_text()
    assert int(total) == sum(len(part_data(n)) for n in range(19))
    listing = await raw_s3.list_objects_v2(Bucket=s3_bucket, Prefix="pipeline/")
    assert len(listing["Contents"]) == 20
    uploads = await raw_s3.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


@pytest.fixture
async def raw_s3(s3_env: str) -> AsyncIterator[Any]:
    """A plain aiobotocore client, to look at the bucket behind the target's back."""
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=s3_env) as client:
        yield client
