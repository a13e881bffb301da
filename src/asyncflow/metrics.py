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

The handler runs for every event of every task, so it only adds to plain
numbers; they become Prometheus samples when scraped (a collector on the
registry). Needs ``prometheus-client`` (``pip install 'asyncflow[web]'``).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .events import Event, TaskEvent
from .resources import ResourcePool, current_pool

__all__ = ["DURATION_BUCKETS", "PrometheusMetrics"]

DURATION_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, float("inf"),
)  # fmt: skip
"""Upper bounds of ``asyncflow_task_duration_seconds``' buckets: 10 ms to 6 hours."""

_BOUNDS: Final = tuple(
    "+Inf" if bound == float("inf") else repr(bound) for bound in DURATION_BUCKETS
)
"""The bounds as the exposition writes them (``le="0.01"``, ``le="+Inf"``)."""

_START: Final = Event.START
_SUCCESS: Final = Event.SUCCESS
_PROCESSING_TIME: Final = Event.PROCESSING_TIME
_RETRY: Final = Event.RETRY
_FAILURE: Final = Event.FAILURE
_CANCELLED: Final = Event.CANCELLED


class _Family:
    """The numbers of one task family."""

    __slots__ = ("buckets", "failed", "retries", "running", "seconds", "started", "succeeded")

    def __init__(self) -> None:
        self.started = self.succeeded = self.failed = self.retries = self.running = 0
        self.buckets = [0] * len(DURATION_BUCKETS)  # observations per bucket, not cumulative
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.seconds += seconds


class _Tallies(Collector):
    """Everything counted for one registry, turned into samples when scraped.

    Scrapes come from other threads: each number is read whole (the GIL), and
    a histogram's count is the sum of its buckets, so it always agrees with
    its ``+Inf`` bucket.
    """

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self.runs: dict[str, int] = {}
        self._pools: weakref.WeakSet[ResourcePool] = weakref.WeakSet()
        self._resources: set[str] = set()
        self._lock = threading.Lock()  # the pools: added here, read by scrapes

    def watch(self, pool: ResourcePool) -> None:
        """Report ``pool``'s resources from now on (held weakly: it goes with its run)."""
        with self._lock:
            self._pools.add(pool)
            self._resources.update(pool.statistics())

    def collect(self) -> Iterator[Metric]:
        families = list(self.families.items())
        counters = {
            "started": CounterMetricFamily(
                "asyncflow_tasks_started", "Task attempts started.", labels=["family"]
            ),
            "succeeded": CounterMetricFamily(
                "asyncflow_tasks_succeeded", "Task attempts that succeeded.", labels=["family"]
            ),
            "failed": CounterMetricFamily(
                "asyncflow_tasks_failed",
                "Tasks that failed for good (their retries spent).",
                labels=["family"],
            ),
            "retries": CounterMetricFamily(
                "asyncflow_task_retries",
                "Failed task attempts followed by another try.",
                labels=["family"],
            ),
        }
        for attribute, metric in counters.items():
            for name, family in families:
                metric.add_metric([name], getattr(family, attribute))
            yield metric
        durations = HistogramMetricFamily(
            "asyncflow_task_duration_seconds",
            "How long task attempts ran, whatever their outcome.",
            labels=["family"],
        )
        for name, family in families:
            counts = list(family.buckets)
            cumulative, buckets = 0, []
            for bound, count in zip(_BOUNDS, counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            durations.add_metric([name], buckets, sum_value=family.seconds)
        yield durations
        running = GaugeMetricFamily(
            "asyncflow_tasks_running", "Task attempts running now.", labels=["family"]
        )
        for name, family in families:
            running.add_metric([name], family.running)
        yield running
        yield self._in_use()
        runs = CounterMetricFamily(
            "asyncflow_runs", "Runs ended, by how they ended.", labels=["status"]
        )
        for status, count in list(self.runs.items()):
            runs.add_metric([status], count)
        yield runs

    def _in_use(self) -> GaugeMetricFamily:
        # A resource once seen is reported from then on, at 0 when no live run
        # holds any of it, so its series does not vanish between runs.
        in_use = GaugeMetricFamily(
            "asyncflow_resource_in_use",
            "Amount of each resource held by running tasks.",
            labels=["resource"],
        )
        with self._lock:
            pools = list(self._pools)
            totals = dict.fromkeys(self._resources, 0.0)
        for pool in pools:
            for name, stats in pool.statistics().items():
                totals[name] = totals.get(name, 0.0) + stats.in_use
        for name in sorted(totals):
            in_use.add_metric([name], totals[name])
        return in_use


# One set of tallies per registry: a second PrometheusMetrics on the same
# registry adds to the first one's (prometheus_client refuses a name twice).
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Tallies] = weakref.WeakKeyDictionary()
_BY_REGISTRY_LOCK: Final = threading.Lock()


def _tallies(registry: CollectorRegistry) -> _Tallies:
    with _BY_REGISTRY_LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = _Tallies()
            registry.register(found)
        return found


class PrometheusMetrics:
    """An event handler that keeps Prometheus metrics of the runs it is given.

    Pass it as ``run(..., metrics=m)`` (or in ``handlers=``); one instance may
    serve any number of runs, one after another or at once, from the event
    loop's thread. Its metrics live in ``registry`` (default: prometheus_client's
    ``REGISTRY``); instances on the same registry add to the same metrics.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self._tallies = _tallies(self.registry)
        self._families = self._tallies.families
        self._running: dict[tuple[str, str], _Family] = {}  # (run id, task id) -> its family
        self._pool: ResourcePool | None = None  # the last pool handed to the tallies

    def __call__(self, event: TaskEvent) -> None:
        """Count ``event`` (called by the run for each of its events)."""
        kind = event.kind
        name = event.task.task_family
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family()
        if kind is _START:
            family.started += 1
            key = (event.run_id, event.task_id)
            if key not in self._running:
                self._running[key] = family
                family.running += 1
            pool = current_pool()
            if pool is not None and pool is not self._pool:
                self._pool = pool
                self._tallies.watch(pool)
        elif kind is _SUCCESS:
            family.succeeded += 1
            self._ended(event)
        elif kind is _PROCESSING_TIME:  # a success's duration
            if event.duration is not None:
                family.observe(event.duration)
        elif kind is _RETRY or kind is _FAILURE:
            if kind is _RETRY:
                family.retries += 1
            else:
                family.failed += 1
            if self._ended(event) and event.duration is not None:
                family.observe(event.duration)
        elif kind is _CANCELLED:
            self._ended(event)
        # TIMEOUT is followed by RETRY or FAILURE for the same attempt, which
        # count it; DEPENDENCY_MISSING is no attempt.

    def run_ended(self, run_id: str, status: str) -> None:
        """Count a run that ended so (``success``, ``failed``, ``cancelled``).

        ``run(metrics=...)`` calls it; call it yourself when you pass the
        handler in ``handlers=``. Attempts of the run still counted as running
        stop being counted.
        """
        runs = self._tallies.runs
        runs[str(status)] = runs.get(str(status), 0) + 1
        for key in [key for key in self._running if key[0] == run_id]:
            self._running.pop(key).running -= 1

    def _ended(self, event: TaskEvent) -> bool:
        """Stop counting the event's attempt as running; False if it was not."""
        family = self._running.pop((event.run_id, event.task_id), None)
        if family is None:
            return False
        family.running -= 1
        return True
