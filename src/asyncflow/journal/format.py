"""Journal history as plain-text tables (``asyncflow history``, ``asyncflow show``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Final

from .records import AttemptRecord, AttemptStatus, RunRecord

__all__ = ["format_run", "format_runs"]

_ERROR_WIDTH: Final = 72
_SAID_WIDTH: Final = 40
_NONE: Final = "-"
_REQUESTED_SHOWN: Final = 3


def format_runs(runs: Iterable[RunRecord], *, tz: tzinfo | None = None) -> str:
    """One line per run: id, status, start, duration, requested tasks, attempts, host.

    Times are shown in ``tz`` (default: the local time zone).
    """
    rows = [
        [
            run.run_id,
            run.status.value,
            _when(run.started, tz),
            _seconds(run.duration),
            str(run.requested_count),
            _counts(run),
            f"{run.host}:{run.pid}",
        ]
        for run in runs
    ]
    if not rows:
        return "No runs in the journal.\n"
    headers = ["RUN", "STATUS", "STARTED", "DURATION", "REQUESTED", "ATTEMPTS", "HOST:PID"]
    return _table(headers, rows)


def format_run(
    run: RunRecord, *, tz: tzinfo | None = None, tracebacks: bool = False, left_out: int = 0
) -> str:
    """A run's details (its attempts counted by status, its first requested tasks) and
    a table of the attempts it holds (with tracebacks if asked); ``left_out``
    attempts not among them are counted on a last line."""
    lines = [
        f"Run {run.run_id}: {run.status.value}",
        f"  started    {_when(run.started, tz)}",
        f"  ended      {_when(run.ended, tz)}",
        f"  duration   {_seconds(run.duration)}",
        f"  host       {run.host} (pid {run.pid})",
        f"  asyncflow  {run.version}",
        f"  attempts   {_counts(run)}",
        f"  requested  {_requested(run)}",
        "",
    ]
    if not run.attempts:
        lines.append("No task attempts recorded." if not left_out else "No attempt shown.")
        return "\n".join(lines) + "\n" + _left_out(left_out)
    rows = [
        [
            attempt.task_id,
            str(attempt.attempt) if attempt.attempt else _NONE,
            attempt.status.value,
            _when(attempt.started, tz),
            _seconds(attempt.duration),
            _error(attempt),
        ]
        for attempt in run.attempts
    ]
    headers = ["TASK", "ATTEMPT", "STATUS", "STARTED", "DURATION", "ERROR"]
    if any(attempt.worker for attempt in run.attempts):  # some bodies ran elsewhere
        headers.insert(5, "WORKER")
        for row, attempt in zip(rows, run.attempts, strict=True):
            row.insert(5, attempt.worker or _NONE)
    if any(_said(attempt) for attempt in run.attempts):  # some bodies said how they did
        at = headers.index("ERROR")
        headers.insert(at, "PROGRESS")
        for row, attempt in zip(rows, run.attempts, strict=True):
            row.insert(at, _said(attempt))
    text = "\n".join(lines) + "\n" + _table(headers, rows)
    tracked = [attempt for attempt in run.attempts if attempt.tracking_url]
    if tracked:
        text += "\n" + "".join(
            f"Tracking URL of {attempt.task_id}, attempt {attempt.attempt}: "
            f"{attempt.tracking_url}\n"
            for attempt in tracked
        )
    if tracebacks:
        for attempt in run.attempts:
            if attempt.traceback:
                text += f"\nTraceback of {attempt.task_id}, attempt {attempt.attempt}:\n"
                text += "".join(f"  {line}\n" for line in attempt.traceback.rstrip().splitlines())
    return text + _left_out(left_out)


def _requested(run: RunRecord) -> str:
    shown = run.requested[:_REQUESTED_SHOWN]
    more = run.requested_count - len(shown)
    text = ", ".join(shown) or _NONE
    return f"{text} and {more:,} more ({run.requested_count:,} in all)" if more else text


def _left_out(count: int) -> str:
    if not count:
        return ""
    return f"\n{count:,} more attempts not shown (--limit N shows more, --limit 0 all of them)\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    out = []
    for cells in [headers, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def _when(stamp: float | None, tz: tzinfo | None) -> str:
    if stamp is None:
        return _NONE
    return datetime.fromtimestamp(stamp, tz).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return _NONE
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _counts(run: RunRecord) -> str:
    parts = [f"{run.counts[s]} {s.value}" for s in AttemptStatus if run.counts.get(s)]
    return ", ".join(parts) or _NONE


def _said(attempt: AttemptRecord) -> str:
    """What the attempt last said of itself: its percentage and the first line of
    its message, cut short."""
    parts = []
    if attempt.progress_percentage is not None:
        parts.append(f"{int(attempt.progress_percentage)}%")  # 99.9 is not shown as done
    message = (attempt.status_message or "").strip()
    if message:
        parts.append(message.splitlines()[0])
    text = " ".join(parts)
    if len(text) > _SAID_WIDTH:
        text = text[: _SAID_WIDTH - 1] + "…"
    return text


def _error(attempt: AttemptRecord) -> str:
    if attempt.error_type is None:
        return ""
    message = (attempt.error_message or "").strip().splitlines()
    text = f"{attempt.error_type}: {message[0]}" if message else attempt.error_type
    if len(text) > _ERROR_WIDTH:
        text = text[: _ERROR_WIDTH - 1] + "…"
    return text
