"""asyncflow.metrics.PrometheusMetrics, /metrics, and ``asyncflow run --metrics-port``."""

from __future__ import annotations

import datetime
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.fixtures import Child
from tests.web.conftest import asgi_client
from tests.web.pipeline import Report

import asyncflow
from asyncflow.metrics import PrometheusMetrics
from asyncflow.web import create_app

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels, parsed by prometheus-client."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def test_metrics_after_a_run_with_a_failure_and_a_retry(tmp_path: Path) -> None:
    """/metrics, parsed: attempts started, succeeded, failed, retried, timed, the run."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    result = await asyncflow.run(
        Report(day=datetime.date(2026, 1, 2)), journal=None, metrics=metrics
    )
    assert not result.ok
    async with asgi_client(create_app(journal=tmp_path / "j.db", registry=registry)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)
    started = "asyncflow_tasks_started_total"
    assert value(found, started, family="Extract") == 1
    assert value(found, started, family="Flaky") == 2
    assert value(found, started, family="Broken") == 1
    assert value(found, started, family="Report") is None  # upstream failed: never started
    assert value(found, "asyncflow_tasks_succeeded_total", family="Extract") == 1
    assert value(found, "asyncflow_tasks_succeeded_total", family="Flaky") == 1
    assert value(found, "asyncflow_tasks_failed_total", family="Broken") == 1
    assert value(found, "asyncflow_tasks_failed_total", family="Flaky") == 0
    assert value(found, "asyncflow_task_retries_total", family="Flaky") == 1
    assert value(found, "asyncflow_task_retries_total", family="Broken") == 0
    assert value(found, "asyncflow_task_duration_seconds_count", family="Flaky") == 2
    assert value(found, "asyncflow_task_duration_seconds_count", family="Broken") == 1
    flaky_time = value(found, "asyncflow_task_duration_seconds_sum", family="Flaky")
    assert flaky_time is not None and 0 <= flaky_time < 5
    for family in ("Extract", "Flaky", "Broken"):
        assert value(found, "asyncflow_tasks_running", family=family) == 0
    assert value(found, "asyncflow_runs_total", status="failed") == 1
    assert value(found, "asyncflow_runs_total", status="success") is None


class Holding(asyncflow.Task):
    """Holds 2 of resource ``db`` until the test lets it go."""

    n = asyncflow.IntParameter()
    resources: ClassVar[dict[str, int]] = {"db": 2}
    started: ClassVar[anyio.Event]
    release: ClassVar[anyio.Event]

    async def run(self) -> None:
        type(self).started.set()
        await type(self).release.wait()


async def test_running_tasks_and_resources_in_use_while_a_run_goes_on() -> None:
    """While a task runs: tasks_running and resource_in_use say so; after: zero, one run."""
    Holding.started, Holding.release = anyio.Event(), anyio.Event()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    result: list[asyncflow.RunResult] = []

    async def run() -> None:
        result.append(
            await asyncflow.run(Holding(1), journal=None, resources={"db": 4}, metrics=metrics)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await Holding.started.wait()
        during = samples(generate_latest(registry).decode())
        Holding.release.set()
    after = samples(generate_latest(registry).decode())
    assert result[0].ok
    assert value(during, "asyncflow_tasks_running", family="Holding") == 1
    assert value(during, "asyncflow_resource_in_use", resource="db") == 2
    assert value(after, "asyncflow_tasks_running", family="Holding") == 0
    assert value(after, "asyncflow_resource_in_use", resource="db") == 0
    assert value(after, "asyncflow_runs_total", status="success") == 1


async def test_a_cancelled_run_counts_as_cancelled() -> None:
    """A run cancelled from outside: runs_total{status="cancelled"}, nothing left running."""
    Holding.started, Holding.release = anyio.Event(), anyio.Event()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)

    async def run() -> None:
        await asyncflow.run(Holding(4), journal=None, resources={"db": 2}, metrics=metrics)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await Holding.started.wait()
        tg.cancel_scope.cancel()
    found = samples(generate_latest(registry).decode())
    assert value(found, "asyncflow_runs_total", status="cancelled") == 1
    assert value(found, "asyncflow_tasks_running", family="Holding") == 0
    assert value(found, "asyncflow_resource_in_use", resource="db") == 0


async def test_as_a_plain_handler_and_shared_by_two_instances() -> None:
    """In handlers= it counts tasks (not runs); a second instance shares the registry."""
    registry = CollectorRegistry()
    first, second = PrometheusMetrics(registry), PrometheusMetrics(registry)
    await asyncflow.run(Holding(2), journal=None, handlers=[first], resources={"db": 2})
    Holding.started, Holding.release = anyio.Event(), anyio.Event()
    Holding.release.set()
    await asyncflow.run(Holding(3), journal=None, metrics=second, resources={"db": 2})
    found = samples(generate_latest(registry).decode())
    assert value(found, "asyncflow_tasks_started_total", family="Holding") == 2
    assert value(found, "asyncflow_runs_total", status="success") == 1  # the second run only


@pytest.fixture(autouse=True)
def _released() -> None:
    """Holding never waits in tests that do not hold it on purpose."""
    Holding.started, Holding.release = anyio.Event(), anyio.Event()
    Holding.release.set()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        return samples(response.read().decode())


def test_cli_serves_metrics_while_the_run_lasts(tmp_path: Path) -> None:
    """``asyncflow run --metrics-port 0``: the run's metrics on 127.0.0.1 until it ends."""
    gate = tmp_path / "go"
    child = Child(
        "run", "tests.web.pipeline:Gated", "--path", str(gate), "--no-journal",
        "--metrics-port", "0", cwd=tmp_path,
    )  # fmt: skip
    try:
        url = child.wait_for("metrics.serving")["url"]
        assert url.startswith("http://127.0.0.1:")
        child.wait_for("task.start")
        during = scrape(url)
        gate.touch()
        assert child.finish() == 0
    finally:
        child.kill()
    assert value(during, "asyncflow_tasks_running", family="Gated") == 1
    assert value(during, "asyncflow_tasks_started_total", family="Gated") == 1
    with pytest.raises(urllib.error.URLError):
        scrape(url)  # gone with the run
