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

It never writes to stdout.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import anyio

from ._log import log
from ._render import COLOURS, bar, duration_text, esc, table
from .events import Event, TaskEvent, handles
from .result import Status

if TYPE_CHECKING:
    from .graph import Graph, Node
    from .task import Task

__all__ = ["Progress"]

Mode = Literal["auto", "live", "lines", "html"]

_INTERVALS: Final = {"live": 0.25, "lines": 5.0, "html": 0.5}
_MAX_FAMILIES: Final = 12  # rows of the per-family table
_MAX_NAMES: Final = 4  # running tasks named
_TASK_CLASS: Final = attrgetter("task.__class__")
_STATUS: Final = attrgetter("status")


@dataclass(slots=True)
class _Tally:
    """Counts for one family (or the whole run)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # will not run: a requirement failed, or cancelled
    running: int = 0
    busy: float = 0.0  # seconds spent by the successful attempts

    @property
    def waiting(self) -> int:
        return max(self.total - self.done - self.failed - self.skipped - self.running, 0)

    @property
    def settled(self) -> int:
        return self.done + self.failed + self.skipped

    def add(self, other: _Tally) -> None:
        self.total += other.total
        self.done += other.done
        self.failed += other.failed
        self.skipped += other.skipped
        self.running += other.running
        self.busy += other.busy


@dataclass(frozen=True)
class _Snapshot:
    """What a frame shows."""

    run_id: str
    overall: _Tally
    families: list[tuple[str, _Tally]]
    running: list[str]
    already_complete: int
    elapsed: float
    left: float | None
    finished: bool = False


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
        self._families: dict[str, _Tally] = {}
        self._running: dict[str, Task] = {}
        self._blocked: set[str] = set()
        self._graph: Graph | None = None
        self._order: list[Node] = []  # the graph's nodes, in the order they were added
        self._seen = 0  # order[:seen] are counted
        self._already = 0
        self._run_id = ""
        self._workers = 1
        self._began = time.monotonic()
        self._drawer: _Drawer | None = None
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
            drawer = self._drawer = _drawer(self._mode, self._stream, self._interval)
        except Exception:
            drawer = _Drawer(_INTERVALS["lines"])  # draws nothing
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

    async def _animate(self, drawer: _Drawer) -> None:
        while True:
            await anyio.sleep(drawer.interval)
            self._draw(drawer.update)

    def _draw(self, how: Callable[[_Snapshot], None]) -> None:
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
    # PROCESSING_TIME come for every task: those two are kept short.

    def _handlers(self) -> list[Callable[[TaskEvent], None]]:
        """The run-level event handlers that feed this display."""
        return [self._on_start, self._on_success, self._on_other]

    @handles(Event.START)
    def _on_start(self, event: TaskEvent) -> None:
        task = event.task
        self._running[task.task_id] = task

    @handles(Event.PROCESSING_TIME)  # emitted with the duration, after SUCCESS
    def _on_success(self, event: TaskEvent) -> None:
        task = event.task
        self._running.pop(task.task_id, None)
        try:
            tally = self._families[task.task_family]
        except KeyError:  # a yielded task, before the next frame counts the new ones
            tally = self._family(task.task_family)
        tally.done += 1
        tally.busy += event.duration or 0.0

    @handles(Event.FAILURE, Event.DEPENDENCY_MISSING, Event.CANCELLED, Event.RETRY)
    def _on_other(self, event: TaskEvent) -> None:
        task = event.task
        task_id = task.task_id
        self._running.pop(task_id, None)
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

    def _family(self, name: str) -> _Tally:
        tally = self._families[name] = _Tally()
        return tally

    def _count_new(self) -> None:
        """Add the graph's nodes not counted yet to their families' totals."""
        new = self._order[self._seen :]
        self._seen += len(new)
        # Counted in C (map, attrgetter, Counter): this sees every node of the run.
        for cls, count in Counter(map(_TASK_CLASS, new)).items():
            family = cls.task_family
            (self._families.get(family) or self._family(family)).total += count
        if Status.ALREADY_COMPLETE in Counter(map(_STATUS, new)):
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
            if parent.status is None and pid not in self._blocked and pid not in self._running:
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
        if all(t.done + t.failed == t.total for t in self._families.values()):
            return  # the events told everything: no need to look at every node
        settled: dict[str, _Tally] = {}
        for node in graph.order:
            tally = settled.setdefault(node.task.task_family, _Tally())
            status = node.status
            if status is Status.DONE:
                tally.done += 1
            elif status is Status.FAILED or status is Status.MISSING:
                tally.failed += 1
            elif status is Status.UPSTREAM_FAILED or status is Status.CANCELLED:
                tally.skipped += 1
        for family, tally in self._families.items():
            final = settled.get(family, _Tally())
            # Planned tasks another process completed meanwhile count as done.
            final.done = max(final.done, tally.total - final.failed - final.skipped)
            self._families[family] = replace(final, total=tally.total, busy=tally.busy)

    # frames --------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        if len(self._order) != self._seen:
            self._count_new()  # dynamic requirements joined the graph
        running = list(self._running.values())
        families = {name: replace(tally, running=0) for name, tally in self._families.items()}
        for task in running:
            families.setdefault(task.task_family, _Tally()).running += 1
        overall = _Tally()
        for tally in families.values():
            overall.add(tally)
        elapsed = time.monotonic() - self._began
        # Families with tasks still to run first, then the largest.
        rows = sorted(families.items(), key=lambda i: (i[1].settled == i[1].total, -i[1].total))
        return _Snapshot(
            run_id=self._run_id,
            overall=overall,
            families=rows,
            running=[repr(task) for task in running[:_MAX_NAMES]],
            already_complete=self._already,
            elapsed=elapsed,
            left=_time_left(rows, overall, elapsed, self._workers),
            finished=self._finished,
        )


def _time_left(
    families: list[tuple[str, _Tally]], overall: _Tally, elapsed: float, workers: int
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


# where frames go -------------------------------------------------------------------


@dataclass
class _Drawer:
    """Draws frames: at the start, every ``interval`` seconds, at the end; then
    ``close()`` releases what it holds, whatever happened."""

    interval: float
    begin: Callable[[_Snapshot], None] = field(default=lambda snapshot: None)
    update: Callable[[_Snapshot], None] = field(default=lambda snapshot: None)
    end: Callable[[_Snapshot], None] = field(default=lambda snapshot: None)
    close: Callable[[], None] = field(default=lambda: None)


def _drawer(mode: Mode, stream: TextIO | None, interval: float | None) -> _Drawer:
    if mode == "auto":
        if stream is None and _in_notebook():
            mode = "html"
        else:
            out = sys.stderr if stream is None else stream
            mode = "live" if _isatty(out) and _has_rich() else "lines"
    every = interval if interval is not None else _INTERVALS[mode]
    if mode == "html":
        return _html_drawer(every)
    out = sys.stderr if stream is None else stream
    if mode == "live":
        return _live_drawer(out, every)
    return _lines_drawer(out, every)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _has_rich() -> bool:
    try:
        importlib.import_module("rich")
    except ImportError:
        return False
    return True


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (not a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _lines_drawer(out: TextIO, interval: float) -> _Drawer:
    def write(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    def begin(s: _Snapshot) -> None:
        already = f" ({s.already_complete} already complete)" if s.already_complete else ""
        write(f"asyncflow: run {s.run_id}: {s.overall.total} tasks to run{already}")

    return _Drawer(
        interval,
        begin,
        lambda s: write(f"asyncflow: {_status_text(s)}"),
        lambda s: write(f"asyncflow: finished: {_status_text(s)}"),
    )


def _status_text(s: _Snapshot) -> str:
    o = s.overall
    parts = [f"{o.done}/{o.total} done", f"{o.running} running", f"{o.failed} failed"]
    if o.skipped:
        parts.append(f"{o.skipped} skipped")
    if not s.finished:
        parts.append(f"{o.waiting} waiting")
    parts.append(f"{duration_text(s.elapsed)} elapsed")
    if s.left is not None and not s.finished:
        parts.append(f"~{duration_text(s.left)} left")
    return " · ".join(parts)


def _html_drawer(interval: float) -> _Drawer:
    # A notebook has IPython; typed as Any, as IPython ships no type hints.
    ipython: Any = importlib.import_module("IPython.display")
    handle: Any = None

    def begin(s: _Snapshot) -> None:
        nonlocal handle
        handle = ipython.display(ipython.HTML(_html(s)), display_id=True)

    def update(s: _Snapshot) -> None:
        handle.update(ipython.HTML(_html(s)))

    return _Drawer(interval, begin, update, update)


def _html(s: _Snapshot) -> str:
    o = s.overall
    segments = [("done", o.done), ("failed", o.failed), ("skipped", o.skipped)]
    segments.append(("running", o.running))
    timing = f"{duration_text(s.elapsed)} elapsed"
    if s.left is not None and not s.finished:
        timing += f", ~{duration_text(s.left)} left"
    head = (
        f"<div><b>asyncflow</b> <code>{esc(s.run_id)}</code> "
        f"{o.settled} / {o.total} · {timing}</div>"
    )
    rows = [
        [esc(name)] + [_count_html(getattr(t, column), column) for column in _COLUMNS]
        for name, t in s.families[:_MAX_FAMILIES]
    ]
    more = len(s.families) - _MAX_FAMILIES
    if more > 0:
        rows.append([f"... {more} more families", "", "", "", "", ""])
    parts = [head, bar(o.total, segments), table(["family", *_COLUMNS], rows)]
    if s.running:
        names = ", ".join(f"<code>{esc(n)}</code>" for n in s.running)
        extra = f" and {o.running - len(s.running)} more" if o.running > len(s.running) else ""
        parts.append(f"<div>running: {names}{extra}</div>")
    return f'<div class="asyncflow-progress">{"".join(parts)}</div>'


_COLUMNS: Final = ("done", "running", "failed", "skipped", "waiting")


def _count_html(count: int, column: str) -> str:
    if not count:
        return '<span style="color:#bdbdbd">0</span>'
    return f'<span style="color:{COLOURS[column]}">{count}</span>'


def _live_drawer(out: TextIO, interval: float) -> _Drawer:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out, force_terminal=True, highlight=False)
    # A record written to stderr meanwhile (a warning) is printed above the
    # display, not through it. stdout is left alone: it is the application's.
    live = Live(
        console=console,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=out is sys.stderr,
    )

    def begin(s: _Snapshot) -> None:
        # The first frame comes with the first update: a run shorter than that
        # draws one frame, its last.
        live.update(_rich(s))
        live.start()

    def update(s: _Snapshot) -> None:
        live.update(_rich(s), refresh=True)

    def end(s: _Snapshot) -> None:
        live.update(_rich(s))  # drawn by stop()

    return _Drawer(interval, begin, update, end, live.stop)


def _rich(s: _Snapshot) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    o = s.overall
    timing = f"{duration_text(s.elapsed)} elapsed"
    if s.left is not None and not s.finished:
        timing += f" · ~{duration_text(s.left)} left"
    head = Table.grid(padding=(0, 1))
    head.add_row(
        Text("asyncflow", style="bold"),
        ProgressBar(total=max(o.total, 1), completed=o.settled, width=30),
        Text(f"{o.settled}/{o.total}"),
        Text(timing, style="dim"),
    )
    families = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1))
    families.add_column("family")
    for column in _COLUMNS:
        families.add_column(column, justify="right")
    for name, t in [("all", o), *s.families[:_MAX_FAMILIES]]:
        families.add_row(
            Text(name, style="bold" if name == "all" else ""),
            *[_count_rich(getattr(t, column), column) for column in _COLUMNS],
        )
    more = len(s.families) - _MAX_FAMILIES
    if more > 0:
        families.add_row(Text(f"... {more} more families", style="dim"))
    parts: list[Any] = [head, families]
    if s.running:
        extra = f" and {o.running - len(s.running)} more" if o.running > len(s.running) else ""
        parts.append(
            Text(f"running: {', '.join(s.running)}{extra}", no_wrap=True, overflow="ellipsis")
        )
    return Group(*parts)


def _count_rich(count: int, column: str) -> Any:
    from rich.text import Text

    return Text(str(count), style=COLOURS[column] if count else "dim")
