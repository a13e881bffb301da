"""A pipeline writing to S3 or GCS through a :class:`~.faults.FaultProxy`, and what it left.

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
from asyncflow.targets import RequestRetry
from asyncflow.targets._remote import RemoteTarget

from ._support import Backend
from .faults import FAULT_KINDS, FaultKind, FaultProxy

__all__ = ["SoakRun", "part_data", "run_pipeline"]

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
"""The smallest part size S3 allows: objects above it go up as multipart (S3) or
resumable (GCS) uploads."""


def part_data(n: int, large: Sequence[int]) -> bytes:
    """Content of part ``n``: 6 MiB (a two-part upload) for the ``large`` ones."""
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
    backend: Backend,
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
    the backend's bucket through a proxy injecting ``fault_rate`` faults (503s
    and resets), then look at the bucket directly.

    ``retry`` None keeps the default :class:`RequestRetry`; the tasks keep the
    default ``retry_count`` (no second attempt), so a failed write fails the run.
    """
    count = tasks - 1
    with FaultProxy(backend.endpoint, seed=seed) as proxy:
        proxy.fault_rate = fault_rate
        proxy.fault_kinds = fault_kinds
        proxy.fault_statuses = (503,)
        config = backend.config(proxy.url, retry=retry or RequestRetry())
        config = config.with_options(part_size=PART_SIZE)

        def output(name: str) -> RemoteTarget[Any]:
            return backend.target(f"pipeline/{name}", config, create_only=create_only)

        class Part(asyncflow.Task):
            n = asyncflow.IntParameter()

            def output(self) -> RemoteTarget[Any]:
                return output(f"part-{self.n:02d}")

            async def run(self) -> None:
                await self.output().write_bytes(part_data(self.n, large))

        class Total(asyncflow.Task):
            def requires(self) -> list[Part]:
                return [Part(n=n) for n in range(count)]

            def output(self) -> RemoteTarget[Any]:
                return output("total")

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

    expected = {f"pipeline/part-{n:02d}": part_data(n, large) for n in range(count)}
    expected["pipeline/total"] = str(sum(len(v) for v in expected.values())).encode()
    for key, data in expected.items():
        target = backend.target(key)
        if not await target.exists():
            run.missing.append(key)
        elif await target.read_bytes() != data:
            run.partial.append(key)
    if not run.ok:
        run.missing.clear()  # absent outputs of a failed run are expected, not a fault
    run.leftover_uploads = await backend.pending_uploads()
    return run
