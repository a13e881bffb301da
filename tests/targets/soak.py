"""A pipeline writing to S3 through a :class:`~.faults.FaultProxy`, and what it left behind.

Shared by ``tests/targets/test_ambiguous.py`` (a short run of it in the suite)
and ``benchmarks/soak_faults.py`` (ten runs, a table). Nothing here imports
pytest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

import asyncflow
from asyncflow.targets import RequestRetry, S3Config, S3Target

from .faults import FAULT_KINDS, FaultKind, FaultProxy

__all__ = ["SoakRun", "part_data", "run_pipeline"]

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
"""The smallest part size S3 allows: objects above it go up as multipart uploads."""


def part_data(n: int, large: Sequence[int]) -> bytes:
    """Content of part ``n``: 6 MiB (a two-part multipart upload) for the ``large`` ones."""
    size = 6 * MiB if n in large else 1000 + n
    return bytes([n % 256]) * size


@dataclass
class SoakRun:
    """The outcome of one pipeline run and the state of its bucket afterwards."""

    ok: bool
    seconds: float
    requests: int
    faults: Counter[str]
    failed: list[str] = field(default_factory=list)
    """Each failed task with (the start of) its error."""
    partial: list[str] = field(default_factory=list)
    """Objects present whose content is not what their task wrote."""
    missing: list[str] = field(default_factory=list)
    """Objects of tasks reported done that are absent."""
    leftover_uploads: int = 0
    """Multipart uploads still pending in the bucket."""


async def run_pipeline(
    endpoint: str,
    bucket: str,
    *,
    seed: int,
    fault_rate: float,
    tasks: int = 20,
    large: Sequence[int] = (3, 11),
    fault_kinds: tuple[FaultKind, ...] = FAULT_KINDS,
    retry: RequestRetry | None = None,
    create_only: bool = True,
) -> SoakRun:
    """Run ``tasks`` tasks (``tasks - 1`` parts and a total over them) writing to
    ``bucket`` on the S3 server at ``endpoint`` through a proxy injecting
    ``fault_rate`` faults (503s and resets), then look at the bucket directly.

    ``retry`` None keeps the default :class:`RequestRetry`; the tasks keep the
    default ``retry_count`` (no second attempt), so a failed write fails the run.
    """
    count = tasks - 1
    with FaultProxy(endpoint, seed=seed) as proxy:
        proxy.fault_rate = fault_rate
        proxy.fault_kinds = fault_kinds
        proxy.fault_statuses = (503,)
        options: dict[str, Any] = {"endpoint_url": proxy.url, "part_size": PART_SIZE}
        if retry is not None:
            options["retry"] = retry
        config = S3Config.from_env(**options)

        class Part(asyncflow.Task):
            n = asyncflow.IntParameter()

            def output(self) -> S3Target:
                url = f"s3://{bucket}/pipeline/part-{self.n:02d}"
                return S3Target(url, config=config, create_only=create_only)

            async def run(self) -> None:
                await self.output().write_bytes(part_data(self.n, large))

        class Total(asyncflow.Task):
            def requires(self) -> list[Part]:
                return [Part(n=n) for n in range(count)]

            def output(self) -> S3Target:
                url = f"s3://{bucket}/pipeline/total"
                return S3Target(url, config=config, create_only=create_only)

            def run(self) -> None:  # a sync body, in a worker thread
                total = 0
                for target in self.input():
                    with target.open("rb") as f:
                        total += len(f.read())
                with self.output().open("w") as f:
                    f.write(str(total))

        began = time.perf_counter()
        with anyio.fail_after(300):
            result = await asyncflow.run(Total(), journal=None, workers=8)
        seconds = time.perf_counter() - began
        run = SoakRun(result.ok, seconds, proxy.requests, Counter(proxy.counts))
        for failed in result.failed:
            message = " ".join(str(failed.error).split())[:400]
            run.failed.append(f"{failed.task_id}: {message}")

    direct = S3Config.from_env(endpoint_url=endpoint)
    expected = {f"pipeline/part-{n:02d}": part_data(n, large) for n in range(count)}
    expected["pipeline/total"] = str(sum(len(v) for v in expected.values())).encode()
    for key, data in expected.items():
        target = S3Target(f"s3://{bucket}/{key}", config=direct)
        if not await target.exists():
            run.missing.append(key)
        elif await target.read_bytes() != data:
            run.partial.append(key)
    if not run.ok:
        run.missing.clear()  # absent outputs of a failed run are expected, not a fault
    run.leftover_uploads = await _pending_uploads(endpoint, bucket)
    return run


async def _pending_uploads(endpoint: str, bucket: str) -> int:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        response = await s3.list_multipart_uploads(Bucket=bucket)
        return len(response.get("Uploads", ()))
