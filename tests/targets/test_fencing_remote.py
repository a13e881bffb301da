"""Fenced remote commits: a writer under an older lease token never replaces a newer one's object.

An attempt holding a journal lease writes with its token in its writer
identity; the commit reads the object's version and tag, refuses to replace
an object written under a greater token, and uploads conditionally on the
version it saw (S3 ``If-Match`` / ``If-None-Match``, GCS ``ifGenerationMatch``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from tests.fixtures.stall_trials import s3_trial, violations

from asyncflow.errors import TargetError
from asyncflow.targets import S3Target
from asyncflow.targets.base import WriterIdentity, writer_identity

from ._support import Backend
from .faults import FaultProxy

pytestmark = pytest.mark.anyio


@contextmanager
def writing_as(run_id: str, token: int | None) -> Iterator[None]:
    """Write as an attempt of ``run_id`` holding the lease under ``token``."""
    reset = writer_identity.set(WriterIdentity(run_id, "Task_x", 1, token))
    try:
        yield
    finally:
        writer_identity.reset(reset)


def is_upload(line: bytes) -> bool:
    """A request that publishes an object (S3 PutObject or CompleteMultipartUpload, GCS upload)."""
    if line.startswith(b"PUT ") and b"uploadId" not in line:
        return True
    return b"uploadType=" in line or (line.startswith(b"POST ") and b"uploadId=" in line)


async def test_a_newer_token_replaces_the_object_and_an_older_one_is_refused(
    backend: Backend,
) -> None:
    """An object of a run without leases, then of an older holder, is replaced; once
    the object was written under token 7, a write under token 5 is refused, naming
    the newer writer, and the object stays as it was."""
    target = backend.target("out.txt")
    await target.write_bytes(b"no lease")
    with writing_as("run-old", 5):
        await target.write_bytes(b"old")
    with writing_as("run-new", 7):
        await target.write_bytes(b"new")
    assert (await backend.stored_metadata("out.txt"))["asyncflow-token"] == "7"
    with writing_as("run-old", 5), pytest.raises(TargetError) as info:
        await target.write_bytes(b"old")
    message = str(info.value)
    assert target.url in message
    assert "lease token 7, newer than this attempt's 5" in message
    assert "written by run run-new" in message
    assert await target.read_bytes() == b"new"


async def test_a_small_fenced_write_where_nothing_is_costs_one_request(backend: Backend) -> None:
    """The usual fenced write (a task writes its missing output) is one create-only
    upload, without reading first; where an object is, the refused upload is
    followed by the read and the conditional upload (or the refusal), as before."""
    with FaultProxy(backend.endpoint) as proxy:
        target = backend.target("small.txt", backend.config(proxy.url))
        with writing_as("run-old", 5):
            await target.write_bytes(b"old")
        assert proxy.requests == 1
        proxy.reset_counts()
        with writing_as("run-new", 7):
            await target.write_bytes(b"new")  # over an older token's object
        assert proxy.requests == 3  # refused create, read, conditional replace
        proxy.reset_counts()
        with writing_as("run-old", 5), pytest.raises(TargetError, match="newer than"):
            await target.write_bytes(b"stale")
        assert proxy.requests == 2  # refused create, read: never replaced
    assert await backend.target("small.txt").read_bytes() == b"new"
    assert (await backend.stored_metadata("small.txt"))["asyncflow-token"] == "7"


async def test_a_stale_upload_in_flight_never_replaces_the_new_holders_object(
    backend: Backend,
) -> None:
    """The old holder's upload is held in flight (as by a stalled process) while the
    new holder writes: when it goes through, the store refuses it (its condition
    no longer holds), and the old holder's write fails naming the new writer.

    (The emulators check the condition on single-request uploads only: moto not
    on CompleteMultipartUpload, fake-gcs-server not on resumable uploads; S3 and
    GCS check it on every upload.)
    """
    size = 1024
    config = backend.config()
    failures: list[TargetError] = []
    with FaultProxy(backend.endpoint) as proxy:
        proxy.hold_filter = is_upload
        stale = backend.target("out.bin", backend.config(proxy.url))

        async def stale_write() -> None:
            with writing_as("run-old", 5), pytest.raises(TargetError) as info:
                await stale.write_bytes(b"o" * size)
            failures.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stale_write)
            await anyio.to_thread.run_sync(proxy.wait_held)
            with writing_as("run-new", 7):
                await backend.target("out.bin", config).write_bytes(b"n" * size)
            proxy.open_gate()
    assert await backend.target("out.bin").read_bytes() == b"n" * size
    (failure,) = failures
    assert "lease token 7, newer than this attempt's 5" in str(failure)
    assert await backend.pending_uploads() == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_stalled_holder_with_its_s3_put_in_flight_never_replaces_the_new_holders_object(
    s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    """A holder stopped (SIGSTOP) past its lease while its PUT is in flight (held by a
    proxy): another process takes the task over and writes the object. The held PUT
    then reaches the store, which refuses it; woken up (SIGCONT), the first process
    takes the other's success. The object is the new holder's; one success is journaled."""
    url = f"s3://{s3_bucket}/out.txt"
    with FaultProxy(s3_env) as proxy:
        trial = s3_trial(tmp_path, url, s3_env, proxy)
    content = functools.partial(anyio.run, S3Target(url).read_text)
    assert violations(trial, "s3", content) == [], trial.first.output
