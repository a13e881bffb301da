"""How the progress display draws (see :mod:`asyncflow.progress`): the counts a
frame shows, and where frames go: status lines, a notebook's HTML block, or a
live terminal display drawn with ``rich`` (imported only for that one)."""

from __future__ import annotations

import importlib
import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO

from ._render import COLOURS, bar, duration_text, esc, table

__all__ = ["INTERVALS", "Drawer", "Mode", "Snapshot", "Tally", "make_drawer"]

Mode = Literal["auto", "live", "lines", "html"]
INTERVALS: Final = {"live": 0.25, "lines": 5.0, "html": 0.5}
_MAX_FAMILIES: Final = 12  # rows of the per-family table
_BAR: Final = 30  # cells of the live display's bar
_BAR_CELL: Final = "━"


@dataclass(slots=True)
class Tally:
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

    def add(self, other: Tally) -> None:
        self.total += other.total
        self.done += other.done
        self.failed += other.failed
        self.skipped += other.skipped
        self.running += other.running
        self.busy += other.busy


@dataclass(frozen=True)
class Snapshot:
    """What a frame shows."""

    run_id: str
    overall: Tally
    families: list[tuple[str, Tally]]
    running: list[str]
    already_complete: int
    elapsed: float
    left: float | None
    finished: bool = False


@dataclass
class Drawer:
    """Draws frames: at the start, every ``interval`` seconds, at the end; then
    ``close()`` releases what it holds, whatever happened."""

    interval: float
    begin: Callable[[Snapshot], None] = field(default=lambda snapshot: None)
    update: Callable[[Snapshot], None] = field(default=lambda snapshot: None)
    end: Callable[[Snapshot], None] = field(default=lambda snapshot: None)
    close: Callable[[], None] = field(default=lambda: None)


def make_drawer(mode: Mode, stream: TextIO | None, interval: float | None) -> Drawer:
    """The drawer for ``mode``; "auto": a notebook's block in a notebook (when no
    stream is given), a live display on a terminal with rich, status lines else."""
    if mode == "auto":
        if stream is None and _in_notebook():
            mode = "html"
        else:
            out = sys.stderr if stream is None else stream
            mode = "live" if _isatty(out) and _has_rich() else "lines"
    every = interval if interval is not None else INTERVALS[mode]
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


def _lines_drawer(out: TextIO, interval: float) -> Drawer:
    def write(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    def begin(s: Snapshot) -> None:
        already = f" ({s.already_complete} already complete)" if s.already_complete else ""
        write(f"asyncflow: run {s.run_id}: {s.overall.total} tasks to run{already}")

    return Drawer(
        interval,
        begin,
        lambda s: write(f"asyncflow: {_status_text(s)}"),
        lambda s: write(f"asyncflow: finished: {_status_text(s)}"),
    )


def _status_text(s: Snapshot) -> str:
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


def _html_drawer(interval: float) -> Drawer:
    # A notebook has IPython; typed as Any, as IPython ships no type hints.
    ipython: Any = importlib.import_module("IPython.display")
    handle: Any = None

    def begin(s: Snapshot) -> None:
        nonlocal handle
        handle = ipython.display(ipython.HTML(_html(s)), display_id=True)

    def update(s: Snapshot) -> None:
        handle.update(ipython.HTML(_html(s)))

    return Drawer(interval, begin, update, update)


def _html(s: Snapshot) -> str:
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


def _live_drawer(out: TextIO, interval: float) -> Drawer:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out, force_terminal=True, highlight=False)
    live = Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
    # What is written to stderr meanwhile (warnings) is held, then printed above
    # the display as each frame is drawn. (rich's own redirection redrew the
    # display for every line: a run with 20,000 failures took five times longer.)
    # stdout is left alone: it is the application's.
    held = _HeldLines(sys.stderr) if out is sys.stderr else None

    def draw(s: Snapshot) -> None:
        lines = held.take() if held is not None else None
        if lines is not None:
            # Above the display; wrapped by the terminal, as they would be without
            # it (rich's own wrapping took 60 µs a line).
            console.print(lines, soft_wrap=True)
        live.update(_rich(s), refresh=True)

    def begin(s: Snapshot) -> None:
        # The first frame comes with the first update: a run shorter than that
        # draws one frame, its last (so none is built here).
        live.start()
        if held is not None:
            sys.stderr = held

    def end(s: Snapshot) -> None:
        live.update(_rich(s))  # drawn by stop()

    def close() -> None:
        if held is not None and sys.stderr is held:
            sys.stderr = held.stream
        try:
            if held is not None and (rest := held.take(everything=True)) is not None:
                console.print(rest, soft_wrap=True)
        finally:
            live.stop()

    return Drawer(interval, begin, draw, end, close)


class _HeldLines(io.TextIOBase):
    """Stands for ``stream`` while the live display is drawn: what is written waits
    for the next frame (from any thread)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def take(self, *, everything: bool = False) -> Any:
        """The lines written so far, as rich text (colours kept), but the last if
        unfinished (unless ``everything``); None if none."""
        from rich.ansi import AnsiDecoder
        from rich.text import Text

        with self._lock:
            text = "".join(self._parts)
            done, newline, rest = text.rpartition("\n")
            if everything and rest:
                done, rest = text.removesuffix("\n"), ""
            elif not newline:
                return None
            self._parts = [rest] if rest else []
        if not (done or newline):
            return None
        return Text("\n").join(AnsiDecoder().decode(done)) if "\x1b" in done else Text(done)

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding


def _rich(s: Snapshot) -> Any:
    # One Text laid out here, not rich Tables and a ProgressBar: measuring a
    # table's columns took about 3 ms a frame, most of what the display cost a
    # short run (its last frame is drawn however short the run).
    from rich.text import Text

    o = s.overall
    timing = f"{duration_text(s.elapsed)} elapsed"
    if s.left is not None and not s.finished:
        timing += f" · ~{duration_text(s.left)} left"
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append("asyncflow ", style="bold")
    filled = round(_BAR * o.settled / o.total) if o.total else 0
    text.append(_BAR_CELL * filled, style=COLOURS["failed" if o.failed else "done"])
    text.append(_BAR_CELL * (_BAR - filled), style="grey23")
    text.append(f" {o.settled}/{o.total} ")
    text.append(timing, style="dim")
    rows = [("all", o), *s.families[:_MAX_FAMILIES]]
    counts = [[str(getattr(t, column)) for column in _COLUMNS] for _, t in rows]
    name_width = max(len("family"), *(len(name) for name, _ in rows))
    widths = [max(len(c), *(len(row[i]) for row in counts)) for i, c in enumerate(_COLUMNS)]
    text.append("\n" + "family".ljust(name_width), style="bold")
    for column, width in zip(_COLUMNS, widths, strict=True):
        text.append(" " + column.rjust(width), style="bold")
    for (name, _), row in zip(rows, counts, strict=True):
        text.append("\n" + name.ljust(name_width), style="bold" if name == "all" else "")
        for column, count, width in zip(_COLUMNS, row, widths, strict=True):
            text.append(" " + count.rjust(width), style=COLOURS[column] if count != "0" else "dim")
    more = len(s.families) - _MAX_FAMILIES
    if more > 0:
        text.append(f"\n... {more} more families", style="dim")
    if s.running:
        extra = f" and {o.running - len(s.running)} more" if o.running > len(s.running) else ""
        text.append(f"\nrunning: {', '.join(s.running)}{extra}")
    return text
