"""Live progress of a run, for people: a terminal display, status lines, or a
block in a notebook.

``run(..., progress=True)`` shows it on stderr; the command line shows it by
default. It is one more event subscriber (the executor knows nothing of it):
it counts what the run's events say, per task family, and redraws a few times
a second from a coroutine of its own. Where it draws depends on where it is:

* in a Jupyter notebook: one HTML block, updated in place (IPython's display
  handles; no widgets);
* on a terminal: a live display drawn with ``rich`` (imported only then);
* anywhere else (CI, pipes, files): a short status line every few seconds.

Beside each running task it names, it shows what the task last said of itself
(``set_progress_percentage()``, ``set_status_message()``).

It never writes to stdout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from operator import attrgetter, countOf
from typing import TYPE_CHECKING, Final, TextIO

import anyio

from ._log import log
from ._progress_draw import INTERVALS, Drawer, Mode, Snapshot, Tally, make_drawer
from .events import Event, TaskEvent, TaskStatus, handles, tallies
from .result import Status

if TYPE_CHECKING:
    from .graph import Graph, Node
    from .task import Task

__all__ = ["Progress"]

_MAX_NAMES: Final = 4  # running tasks named
_MAX_SAID: Final = 60  # characters of a running task's status message shown
_TASK: Final = attrgetter("task")
_STATUS: Final = attrgetter("status")


class Progress:
    """Shows a run's progress while it runs.

    Pass it as ``run(..., progress=Progress(...))`` to choose where and how;
    ``progress=True`` is ``Progress()``. One instance serves one run at a time.

    Args:
        stream: where to draw; default: ``sys.stderr`` as it is when the run
            starts (in a notebook: the cell's output).
        mode: ``"auto"`` (a notebook block in a notebook, a live display on a
            terminal, status lines otherwise), ``"live"``, ``"lines"`` or
            ``"html"``.
        interval: seconds between redraws (default: 0.25 live, 0.5 in a
            notebook) or between status lines (default: 5).

    Raises:
        ValueError: an unknown mode or a non-positive interval.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        mode: Mode = "auto",
        interval: float | None = None,
    ) -> None:
        if mode not in ("auto", "live", "lines", "html"):
            raise ValueError(f"progress mode must be auto, live, lines or html, got {mode!r}")
        if interval is not None and not interval > 0:
            raise ValueError(f"progress interval must be > 0 seconds, got {interval!r}")
        self._stream = stream
        self._mode: Mode = mode
        self._interval = interval
        self._reset()

    def _reset(self) -> None:
        self._families: dict[str, Tally] = {}
        self._running: dict[int, Task] = {}  # by id(task): no task_id lookup per task
        self._said: dict[int, TaskStatus] = {}  # what running tasks last said of themselves
        self._blocked: set[str] = set()
        self._graph: Graph | None = None
        self._order: list[Node] = []  # the graph's nodes, in the order they were added
        self._seen = 0  # order[:seen] are counted
        self._already = 0
        self._run_id = ""
        self._workers = 1
        self._began = time.monotonic()
        self._drawer: Drawer | None = None
        self._finished = False

    async def _show(
        self, graph: Graph, run_id: str, workers: int, body: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``body`` (the executor) with the display on; draw the final frame after it."""
        self._reset()
        self._graph, self._run_id, self._workers = graph, run_id, workers
        self._order = graph.order
        self._count_new()
        try:
            drawer = self._drawer = make_drawer(self._mode, self._stream, self._interval)
        except Exception:
            drawer = Drawer(INTERVALS["lines"])  # draws nothing
            self._broke()
        self._draw(drawer.begin)
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._animate, drawer)
                try:
                    await body()
                except Exception as exc:
                    # Raised below, outside the task group (which would wrap it
                    # in an ExceptionGroup).
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._settle_from_graph()
            self._finished = True
            self._draw(drawer.end)
            try:
                drawer.close()  # even after a failed draw: give the terminal back
            except Exception:
                if self._drawer is not None:
                    self._broke()
        if error is not None:
            raise error

    async def _animate(self, drawer: Drawer) -> None:
        while True:
            await anyio.sleep(drawer.interval)
            self._draw(drawer.update)

    def _draw(self, how: Callable[[Snapshot], None]) -> None:
        if self._drawer is None:
            return
        try:
            how(self._snapshot())
        except Exception:
            self._broke()

    def _broke(self) -> None:
        """A display that cannot draw (a closed stream, a missing package) must not
        break the run: it stops, and says why once."""
        log.exception("progress.failed", run_id=self._run_id)
        self._drawer = None

    # events --------------------------------------------------------------------
    # One handler per kind, so that the bus does the dispatching. START and
    # PROCESSING_TIME come for every task: those two are tallies (the bus
    # builds no event for them), kept short, and keyed by id(task).

    def _handlers(self) -> list[Callable[..., None]]:
        """The run-level event handlers that feed this display."""
        return [self._on_start, self._on_success, self._on_other, self._on_status]

    @tallies(Event.START)
    def _on_start(self, task: Task, _duration: float | None) -> None:
        self._running[id(task)] = task

    @handles(Event.STATUS)
    def _on_status(self, event: TaskEvent) -> None:
        key = id(event.task)
        if event.status is not None and key in self._running:
            self._said[key] = event.status

    @tallies(Event.PROCESSING_TIME)  # emitted with the duration, after SUCCESS
    def _on_success(self, task: Task, duration: float | None) -> None:
        if self._running.pop(id(task), None) is not None and self._said:
            self._said.pop(id(task), None)
        try:
            tally = self._families[task.task_family]
        except KeyError:  # a yielded task, before the next frame counts the new ones
            tally = self._family(task.task_family)
        tally.done += 1
        tally.busy += duration or 0.0

    @handles(Event.FAILURE, Event.DEPENDENCY_MISSING, Event.CANCELLED, Event.RETRY)
    def _on_other(self, event: TaskEvent) -> None:
        task = event.task
        task_id = task.task_id
        self._running.pop(id(task), None)
        self._said.pop(id(task), None)  # a retry starts afresh
        if event.kind is Event.RETRY:
            return  # waiting again, which the counts already say
        tally = self._families.get(task.task_family) or self._family(task.task_family)
        if event.kind is Event.CANCELLED:
            tally.skipped += 1
            return
        if task_id in self._blocked:  # it had waited on what failed first
            self._blocked.discard(task_id)
            tally.skipped -= 1
        tally.failed += 1
        self._block_dependents(task_id)

    def _family(self, name: str) -> Tally:
        tally = self._families[name] = Tally()
        return tally

    def _count_new(self) -> None:
        """Add the graph's nodes not counted yet to their families' totals."""
        new = self._order[self._seen :]
        self._seen += len(new)
        # Counted in C (map, attrgetter, Counter, countOf): this sees every node of the run.
        classes: Counter[type[Task]] = Counter(map(type, map(_TASK, new)))
        for cls, count in classes.items():
            family = cls.task_family
            (self._families.get(family) or self._family(family)).total += count
        if countOf(map(_STATUS, new), Status.ALREADY_COMPLETE):
            for node in [n for n in new if n.status is Status.ALREADY_COMPLETE]:
                self._families[node.task.task_family].total -= 1
                self._already += 1

    def _block_dependents(self, task_id: str) -> None:
        """Count what waits on a failed task as skipped: it will not run."""
        assert self._graph is not None
        node = self._graph.nodes.get(task_id)
        stack: list[Node] = list(node.dependents) if node is not None else []
        while stack:
            parent = stack.pop()
            pid = parent.task_id
            running = id(parent.task) in self._running
            if parent.status is None and pid not in self._blocked and not running:
                self._blocked.add(pid)
                family = parent.task.task_family
                (self._families.get(family) or self._family(family)).skipped += 1
                stack.extend(parent.dependents)

    def _settle_from_graph(self) -> None:
        """The final counts. Every task that ran sent its outcome as an event;
        the statuses the run ended with tell the rest (not run because a
        requirement failed, cancelled, completed by another process)."""
        graph = self._graph
        if graph is None:
            return
        self._count_new()
        self._running.clear()
        self._said.clear()
        if all(t.done + t.failed == t.total for t in self._families.values()):
            return  # the events told everything: no need to look at every node
        settled: dict[str, Tally] = {}
        for node in graph.order:
            tally = settled.setdefault(node.task.task_family, Tally())
            status = node.status
            if status is Status.DONE:
                tally.done += 1
            elif status is Status.FAILED or status is Status.MISSING:
                tally.failed += 1
            elif status is Status.UPSTREAM_FAILED or status is Status.CANCELLED:
                tally.skipped += 1
        for family, tally in self._families.items():
            final = settled.get(family, Tally())
            # Planned tasks another process completed meanwhile count as done.
            final.done = max(final.done, tally.total - final.failed - final.skipped)
            self._families[family] = replace(final, total=tally.total, busy=tally.busy)

    # frames --------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        if len(self._order) != self._seen:
            self._count_new()  # dynamic requirements joined the graph
        running = list(self._running.values())
        families = {name: replace(tally, running=0) for name, tally in self._families.items()}
        for task in running:
            families.setdefault(task.task_family, Tally()).running += 1
        overall = Tally()
        for tally in families.values():
            overall.add(tally)
        elapsed = time.monotonic() - self._began
        # Families with tasks still to run first, then the largest.
        rows = sorted(families.items(), key=lambda i: (i[1].settled == i[1].total, -i[1].total))
        return Snapshot(
            run_id=self._run_id,
            overall=overall,
            families=rows,
            running=[self._placed(task) for task in running[:_MAX_NAMES]],
            already_complete=self._already,
            elapsed=elapsed,
            left=_time_left(rows, overall, elapsed, self._workers),
            finished=self._finished,
        )

    def _placed(self, task: Task) -> str:
        """The task, where its body runs when not in this process (a Dask worker),
        and what it last said of itself."""
        node = self._graph.nodes.get(task.task_id) if self._graph is not None else None
        where = node.where if node is not None else None
        text = f"{task!r} on {where}" if where else repr(task)
        said = self._said.get(id(task))
        return text if said is None else f"{text}{_said_text(said)}"


def _said_text(said: TaskStatus) -> str:
    """`` 45% reading rows``: a running task's percentage and message, on one short line."""
    text = ""
    if said.percentage is not None:
        text += f" {int(said.percentage)}%"  # 99.7 is not done yet: never rounded up
    if said.message:
        message = " ".join(said.message.split())
        if len(message) > _MAX_SAID:
            message = message[: _MAX_SAID - 1] + "…"
        text += f" {message}"
    return text


def _time_left(
    families: list[tuple[str, Tally]], overall: Tally, elapsed: float, workers: int
) -> float | None:
    """Seconds left: the tasks still to run times their family's mean duration
    (the run's mean for a family with none finished), over the parallelism seen
    so far (between 1 and ``workers``). None until a task has finished."""
    if overall.done == 0:
        return None
    mean = overall.busy / overall.done
    work = 0.0
    for _, tally in families:
        left = tally.waiting + tally.running
        if left:
            work += left * (tally.busy / tally.done if tally.done else mean)
    parallel = min(max(overall.busy / elapsed if elapsed > 0 else 1.0, 1.0), float(workers))
    return work / parallel
