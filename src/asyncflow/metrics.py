"""Prometheus metrics of runs and tasks, fed by the run's events.

::

    from asyncflow.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()                 # prometheus_client's default registry
    result = await asyncflow.run(Report(date=d), metrics=metrics)

Serve them with ``asyncflow.web.create_app(...)`` (``/metrics``), with
``prometheus_client.start_http_server``, or, from the command line, with
``asyncflow run ... --metrics-port 9100`` for as long as the run lasts.

Exported (counters and the histogram by ``family``, the task family):

========================================  =========  ==========================================
``asyncflow_tasks_started_total``         counter    attempts started
``asyncflow_tasks_succeeded_total``       counter    attempts that succeeded
``asyncflow_tasks_failed_total``          counter    tasks that failed for good (retries spent)
``asyncflow_task_retries_total``          counter    failed attempts followed by another try
``asyncflow_task_duration_seconds``       histogram  how long attempts ran (every outcome)
``asyncflow_tasks_running``               gauge      attempts running now, by ``family``
``asyncflow_resource_in_use``             gauge      amount held now, by ``resource``
``asyncflow_runs_total``                  counter    runs ended, by ``status``: success,
                                                     failed or cancelled
========================================  =========  ==========================================

``asyncflow_runs_total`` needs to be told how each run ended, which the task
events do not say: ``run(metrics=...)`` does that (or call
:meth:`PrometheusMetrics.run_ended`); as a plain handler
(``run(handlers=[metrics])``) it gives every other metric.

Needs ``prometheus-client`` (``pip install 'asyncflow[web]'``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Final, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .events import Event, TaskEvent
from .resources import ResourcePool, current_pool

__all__ = ["DURATION_BUCKETS", "PrometheusMetrics"]

DURATION_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, float("inf"),
)  # fmt: skip
"""Buckets of ``asyncflow_task_duration_seconds``: 10 ms to 6 hours."""


class _Resources(Collector):
    """``asyncflow_resource_in_use``, read from the pools of runs at scrape time.

    Pools are held weakly (they go with their run's graph); a resource once
    seen is reported from then on, at 0 when no live run holds any of it, so
    its series does not vanish between runs.
    """

    def __init__(self) -> None:
        self._pools: weakref.WeakSet[ResourcePool] = weakref.WeakSet()
        self._lock = threading.Lock()  # scrapes come from other threads
        self._seen: set[str] = set()

    def watch(self, pool: ResourcePool) -> None:
        """Report ``pool``'s resources from now on."""
        with self._lock:
            self._pools.add(pool)
            self._seen.update(pool.statistics())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "asyncflow_resource_in_use",
            "Amount of each resource held by running tasks.",
            labels=["resource"],
        )
        with self._lock:
            pools = list(self._pools)
            totals = dict.fromkeys(self._seen, 0.0)
            for pool in pools:
                for name, stats in pool.statistics().items():
                    totals[name] = totals.get(name, 0.0) + stats.in_use
            self._seen.update(totals)
        for name in sorted(totals):
            family.add_metric([name], totals[name])
        yield family


class _Instruments(NamedTuple):
    started: Counter
    succeeded: Counter
    failed: Counter
    retries: Counter
    duration: Histogram
    running: Gauge
    runs: Counter
    resources: _Resources


# One set per registry: a second PrometheusMetrics on the same registry shares
# the first one's metrics (prometheus_client refuses a name registered twice).
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Instruments] = (
    weakref.WeakKeyDictionary()
)
_BY_REGISTRY_LOCK = threading.Lock()


def _instruments(registry: CollectorRegistry) -> _Instruments:
    with _BY_REGISTRY_LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            by_family = ["family"]
            resources = _Resources()
            registry.register(resources)
            found = _BY_REGISTRY[registry] = _Instruments(
                Counter(
                    "asyncflow_tasks_started",
                    "Task attempts started.",
                    by_family,
                    registry=registry,
                ),
                Counter(
                    "asyncflow_tasks_succeeded",
                    "Task attempts that succeeded.",
                    by_family,
                    registry=registry,
                ),
                Counter(
                    "asyncflow_tasks_failed",
                    "Tasks that failed for good (their retries spent).",
                    by_family,
                    registry=registry,
                ),
                Counter(
                    "asyncflow_task_retries",
                    "Failed task attempts followed by another try.",
                    by_family,
                    registry=registry,
                ),
                Histogram(
                    "asyncflow_task_duration_seconds",
                    "How long task attempts ran, whatever their outcome.",
                    by_family,
                    registry=registry,
                    buckets=DURATION_BUCKETS,
                ),
                Gauge(
                    "asyncflow_tasks_running",
                    "Task attempts running now.",
                    by_family,
                    registry=registry,
                ),
                Counter(
                    "asyncflow_runs",
                    "Runs ended, by how they ended.",
                    ["status"],
                    registry=registry,
                ),
                resources,
            )
        return found


class _Family(NamedTuple):
    """The instruments' children of one task family (labels looked up once)."""

    started: Counter
    succeeded: Counter
    failed: Counter
    retries: Counter
    duration: Histogram
    running: Gauge


class PrometheusMetrics:
    """An event handler that keeps Prometheus metrics of the runs it is given.

    Pass it as ``run(..., metrics=m)`` (or in ``handlers=``); one instance may
    serve any number of runs, one after another or at once. Its metrics live
    in ``registry`` (default: prometheus_client's ``REGISTRY``); instances on
    the same registry share them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self._instruments = _instruments(self.registry)
        self._families: dict[str, _Family] = {}
        self._running: dict[tuple[str, str], Gauge] = {}  # (run id, task id) -> its gauge
        self._pools: weakref.WeakSet[ResourcePool] = weakref.WeakSet()

    def __call__(self, event: TaskEvent) -> None:
        """Count ``event`` (called by the run for each of its events)."""
        kind = event.kind
        family = self._families.get(event.task.task_family) or self._family(event)
        if kind is Event.START:
            family.started.inc()
            key = (event.run_id, event.task_id)
            if key not in self._running:
                self._running[key] = family.running
                family.running.inc()
            pool = current_pool()
            if pool is not None and pool not in self._pools:
                self._pools.add(pool)
                self._instruments.resources.watch(pool)
        elif kind is Event.SUCCESS:
            family.succeeded.inc()
            self._ended(event)
        elif kind is Event.PROCESSING_TIME:  # a success's duration
            if event.duration is not None:
                family.duration.observe(event.duration)
        elif kind is Event.RETRY or kind is Event.FAILURE:
            (family.retries if kind is Event.RETRY else family.failed).inc()
            if self._ended(event) and event.duration is not None:
                family.duration.observe(event.duration)
        elif kind is Event.CANCELLED:
            self._ended(event)
        # TIMEOUT is followed by RETRY or FAILURE for the same attempt, which
        # count it; DEPENDENCY_MISSING is no attempt.

    def run_ended(self, run_id: str, status: str) -> None:
        """Count a run that ended so (``success``, ``failed``, ``cancelled``).

        ``run(metrics=...)`` calls it; call it yourself when you pass the
        handler in ``handlers=``. Attempts of the run still counted as running
        stop being counted.
        """
        self._instruments.runs.labels(str(status)).inc()
        for key in [key for key in self._running if key[0] == run_id]:
            self._running.pop(key).dec()

    def _family(self, event: TaskEvent) -> _Family:
        name = event.task.task_family
        i = self._instruments
        found = self._families[name] = _Family(
            i.started.labels(name),
            i.succeeded.labels(name),
            i.failed.labels(name),
            i.retries.labels(name),
            i.duration.labels(name),
            i.running.labels(name),
        )
        return found

    def _ended(self, event: TaskEvent) -> bool:
        """Stop counting the event's attempt as running; False if it was not."""
        gauge = self._running.pop((event.run_id, event.task_id), None)
        if gauge is None:
            return False
        gauge.dec()
        return True
