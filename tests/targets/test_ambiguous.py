"""Ambiguous commits: the store acted on a write, but its answer never reached the client.

The proxy resets the connection after the server answered; the client's retry
then finds the object already there (create-only), or its upload gone. Each
object carries the tag of the write that made it, so the target tells its own
write from another writer's.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

import asyncflow
from asyncflow.errors import TargetError

from ._support import Backend
from .faults import FaultProxy, nth_matching
from .soak import run_pipeline

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    """A proxy in front of the backend's server that resets connections after the answer."""
    with FaultProxy(backend.endpoint, seed=5) as proxy:
        proxy.fault_rate = 1.0
        proxy.fault_kinds = ("reset_after",)
        proxy.fault_filter = lambda line: False  # each test says which requests
        yield proxy


def is_simple_upload(line: bytes) -> bool:
    """The one request that writes a small object (S3 PutObject, GCS multipart upload)."""
    return (line.startswith(b"PUT ") and b"uploadId" not in line) or b"uploadType=multipart" in line


async def test_create_only_write_whose_answer_was_lost_succeeds(
    backend: Backend, proxy: FaultProxy
) -> None:
    """The store committed, the connection was reset, the retry found the object: ours, so done."""
    proxy.fault_filter = nth_matching(is_simple_upload)
    target = backend.target("once.txt", backend.config(proxy.url), create_only=True)
    await target.write_bytes(b"mine")
    assert proxy.counts["reset_after"] == 1
    assert len([line for line in proxy.request_lines if is_simple_upload(line)]) == 2
    assert await backend.target("once.txt").read_bytes() == b"mine"


def is_large_upload_step(line: bytes) -> bool:
    """Starting or finishing a large upload: S3 CreateMultipartUpload and
    CompleteMultipartUpload, GCS resumable start and chunks."""
    if line.startswith(b"POST ") and (b"?uploads" in line or b"uploadId=" in line):
        return True
    return b"uploadType=resumable" in line or b"upload_id=" in line


async def test_large_write_whose_answers_were_lost_succeeds_and_leaves_no_upload(
    backend: Backend, proxy: FaultProxy
) -> None:
    """Lost answers to the start and the end of a large upload: the object is whole and ours,
    and the upload the first start began is aborted."""
    config = backend.config(proxy.url).with_options(part_size=5 * MiB)
    # S3: create, create again, complete; GCS: start, start again, chunk, last chunk.
    last = 3 if backend.name == "s3" else 4
    proxy.fault_filter = nth_matching(is_large_upload_step, 1, last)
    data = bytes(range(256)) * (6 * MiB // 256)
    target = backend.target("big.bin", config, create_only=True)
    await target.write_bytes(data)
    assert proxy.counts["reset_after"] == 2
    assert await backend.target("big.bin").read_bytes() == data
    assert await backend.pending_uploads() == 0


async def test_create_only_conflict_names_the_other_writer(backend: Backend) -> None:
    """An object another run wrote: the create-only write fails naming the URL and that writer."""

    class First(asyncflow.Task):
        def output(self) -> asyncflow.Target:
            return backend.target("shared.txt", create_only=True)

        async def run(self) -> None:
            await self.output().write_text("first")

    first = await asyncflow.run(First(), journal=None)
    assert first.ok, first.summary()
    target = backend.target("shared.txt", create_only=True)
    with pytest.raises(TargetError) as info:
        await target.write_text("second")
    message = str(info.value)
    assert f"{target.url} already exists: not overwritten (create_only)" in message
    assert f"written by run {first.run_id}, task {First().task_id}, attempt 1" in message
    assert await target.read_text() == "first"


async def test_writes_carry_the_identity_of_their_attempt(backend: Backend) -> None:
    """A write inside a run is tagged with its run, task and attempt (a thread's too);
    one outside a run only with its own write name."""

    class Flaky(asyncflow.Task):
        retry_count = 1
        retry_delay = 0.0
        tries = 0

        def output(self) -> asyncflow.Target:
            return backend.target("flaky.txt")

        def run(self) -> None:  # a sync body, in a worker thread
            Flaky.tries += 1
            if Flaky.tries == 1:
                raise RuntimeError("first attempt fails before writing")
            with self.output().open("w") as f:
                f.write("second attempt")

    result = await asyncflow.run(Flaky(), journal=None)
    assert result.ok, result.summary()
    tags = await backend.stored_metadata("flaky.txt")
    assert tags["asyncflow-run"] == quote(result.run_id, safe="")
    assert tags["asyncflow-task"] == quote(Flaky().task_id, safe="")
    assert tags["asyncflow-attempt"] == "2"
    assert len(tags["asyncflow-write"]) == 16

    await backend.target("loose.txt").write_text("no run")
    loose = await backend.stored_metadata("loose.txt")
    assert set(loose) == {"asyncflow-write"}
    assert loose["asyncflow-write"] != tags["asyncflow-write"]


@pytest.mark.parametrize("seed", [11, 12])
async def test_pipeline_completes_through_faults_and_resets(backend: Backend, seed: int) -> None:
    """8 create-only tasks (one large write) through 30% 503s and resets, default retries:
    the run completes, every object is whole, no upload is left pending."""
    run = await run_pipeline(backend, seed=seed, fault_rate=0.3, tasks=8, large=(3,))
    assert run.ok, run.failed
    assert run.faults["reset_after"] > 0
    assert (run.partial, run.missing, run.leftover_uploads) == ([], [], 0)
