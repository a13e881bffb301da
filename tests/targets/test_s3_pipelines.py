"""Pipelines over the S3 server: bulk probing of a backfill, discovering inputs in a bucket."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import asyncflow
from asyncflow.graph import expand
from asyncflow.targets import S3PrefixTarget, S3Target

from .faults import FaultProxy

pytestmark = pytest.mark.anyio

START = datetime.date(2026, 1, 1)
DAYS = 120


def daily(bucket: str) -> type[asyncflow.Task]:
    class Daily(asyncflow.Task):
        date = asyncflow.DateParameter()
        runs: list[datetime.date] = []

        def output(self) -> S3Target:
            return S3Target(f"s3://{bucket}/daily/{self.date}.csv")

        async def run(self) -> None:
            Daily.runs.append(self.date)
            await self.output().write_text("x")

    return Daily


def probe_requests(proxy: FaultProxy) -> list[bytes]:
    """HEAD and GET requests: probes and listings, not writes."""
    return [line for line in proxy.request_lines if line.split(b" ")[0] in (b"HEAD", b"GET")]


async def test_backfill_probes_by_listing(
    s3_bucket: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 dated objects, half present: a few listings, not 120 requests; half runs."""
    task_cls = daily(s3_bucket)
    days = [START + datetime.timedelta(days=n) for n in range(DAYS)]
    for day in days[::2]:
        await task_cls(day).output().write_text("x")
    with FaultProxy(s3_env, seed=7) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backfill = asyncflow.range_daily(task_cls, days[0], days[-1] + datetime.timedelta(days=1))
        graph = await expand([backfill])
        probes = probe_requests(proxy)
        assert len(probes) <= 10, probes
        assert all(b"list-type=2" in line for line in probes)
        assert len(graph) == 1 + DAYS // 2
        proxy.reset_counts()
        result = await asyncflow.run(backfill, journal=None)
    assert result.ok
    assert sorted(task_cls.runs) == days[1::2]  # type: ignore[attr-defined]


class Upper(asyncflow.Task):
    """Upper-cases one object of the inbox into the outbox."""

    url = asyncflow.Parameter()

    def output(self) -> S3Target:
        return S3Target(self.url.replace("/inbox/", "/outbox/"))

    async def run(self) -> None:
        text = await S3Target(self.url).read_text()
        await self.output().write_text(text.upper())


async def test_discover_inputs_in_a_bucket(s3_bucket: str) -> None:
    """An async requires() lists the bucket prefix; each object found gets a task."""
    inbox = S3PrefixTarget(f"s3://{s3_bucket}/inbox/")
    for name in ("a.txt", "b.txt", "c.txt"):
        await inbox.child(name).write_text(name)

    class ProcessInbox(asyncflow.WrapperTask):
        async def requires(self) -> list[Upper]:
            return [Upper(inbox.child(name).url) for name in await inbox.list_files()]

    result = await asyncflow.run(ProcessInbox(), journal=None)
    assert result.ok
    outbox = S3PrefixTarget(f"s3://{s3_bucket}/outbox/")
    assert await outbox.list_files() == ["a.txt", "b.txt", "c.txt"]
    assert await outbox.child("b.txt").read_text() == "B.TXT"


async def test_generator_discovers_inputs_at_run_time(s3_bucket: str) -> None:
    """A generator body lists the bucket while running and yields a task per object."""
    inbox = S3PrefixTarget(f"s3://{s3_bucket}/inbox/")
    await inbox.child("x.txt").write_text("x")
    await inbox.child("y.txt").write_text("y")

    class Sweep(asyncflow.Task):
        def output(self) -> S3Target:
            return S3Target(f"s3://{s3_bucket}/sweep.txt")

        async def run(self) -> Any:
            names = await inbox.list_files()
            outputs = yield [Upper(inbox.child(n).url) for n in names]
            texts = [await t.read_text() for t in outputs]
            await self.output().write_text(",".join(texts))

    result = await asyncflow.run(Sweep(), journal=None)
    assert result.ok
    assert await S3Target(f"s3://{s3_bucket}/sweep.txt").read_text() == "X,Y"
