"""Journal records as what the pages and the JSON API show: plain values, no HTML.

Escaping is the templates' business (autoescape); nothing here builds markup.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from ..journal import AttemptRecord, AttemptStatus, RunRecord, TaskSummary
from ..journal.format import _seconds
from ..journal.records import TaskState

__all__ = [
    "MAX_SHAPES",
    "NO_ATTEMPT",
    "UNRUN",
    "Graph",
    "Heading",
    "Shape",
    "TaskRow",
    "attempt_json",
    "graph",
    "iso",
    "linkable",
    "percent",
    "reported",
    "run_json",
    "seconds",
    "shares",
    "short_label",
    "task_rows",
    "task_summary_json",
    "when",
]

seconds = _seconds
"""A duration as people read it (``0.120s``, ``12.3s``, ``4m05s``); ``-`` for None."""


def when(stamp: float | None) -> str:
    """A time in the server's time zone, to the second; ``-`` for None."""
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def iso(stamp: float | None) -> str:
    """A time as ISO 8601 in UTC (for ``<time datetime=...>``); empty for None."""
    if stamp is None:
        return ""
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def reported(attempt: AttemptRecord) -> bool:
    """Whether the attempt said anything of itself (message, percentage, tracking URL)."""
    return (
        attempt.status_message is not None
        or attempt.progress_percentage is not None
        or attempt.tracking_url is not None
    )


def percent(value: float) -> str:
    """``45%``: never rounded up (99.7 is not done yet)."""
    return f"{int(value)}%"


def linkable(url: str) -> bool:
    """Whether a tracking URL may be a link: ``http(s)://host...`` only (not
    ``javascript:``, ``data:`` or a relative path, which a task could also report)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


# JSON ---------------------------------------------------------------------------


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run for the JSON API: ``requested`` holds the ids the record holds (the first
    few, in a list of runs), ``requested_count`` how many the run requested."""
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "status": run.status.value,
        "started": run.started,
        "ended": run.ended,
        "duration": run.duration,
        "host": run.host,
        "pid": run.pid,
        "version": run.version,
        "requested": list(run.requested),
        "requested_count": run.requested_count,
        "counts": {status.value: count for status, count in run.counts.items()},
    }
    return data


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    """One attempt for the JSON API."""
    return {
        "run_id": attempt.run_id,
        "task_id": attempt.task_id,
        "family": attempt.family,
        "params": dict(attempt.params),
        "attempt": attempt.attempt,
        "status": attempt.status.value,
        "started": attempt.started,
        "ended": attempt.ended,
        "duration": attempt.duration,
        "error_type": attempt.error_type,
        "error_message": attempt.error_message,
        "traceback": attempt.traceback,
        "host": attempt.host,
        "pid": attempt.pid,
        "worker": attempt.worker,
        "status_message": attempt.status_message,
        "progress_percentage": attempt.progress_percentage,
        "tracking_url": attempt.tracking_url,
    }


def task_summary_json(summary: TaskSummary) -> dict[str, Any]:
    """One search result for the JSON API."""
    return {
        "task_id": summary.task_id,
        "family": summary.family,
        "attempts": summary.attempts,
        "latest": attempt_json(summary.latest),
    }


# A run's tasks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of a run: its attempts there, and where it stands now."""

    task_id: str
    family: str
    params: Mapping[str, str]
    attempts: tuple[AttemptRecord, ...]

    @property
    def latest(self) -> AttemptRecord:
        return self.attempts[-1]

    @property
    def status(self) -> AttemptStatus:
        return self.latest.status

    @property
    def started(self) -> float | None:
        return next((a.started for a in self.attempts if a.started is not None), None)

    @property
    def duration(self) -> float | None:
        """The time its attempts took, added up (None while none has ended)."""
        spans = [a.duration for a in self.attempts if a.duration is not None]
        return sum(spans) if spans else None

    @property
    def error(self) -> AttemptRecord | None:
        """The latest attempt that ended with an error."""
        return next((a for a in reversed(self.attempts) if a.error_type is not None), None)

    @property
    def ran(self) -> int:
        """Attempts that started (an attempt-0 record notes a task that never ran)."""
        return sum(1 for a in self.attempts if a.attempt > 0)


def task_rows(attempts: Iterable[AttemptRecord]) -> list[TaskRow]:
    """The tasks of a run in the order their first attempts were journaled."""
    grouped: dict[str, list[AttemptRecord]] = {}
    for attempt in attempts:
        grouped.setdefault(attempt.task_id, []).append(attempt)
    return [
        TaskRow(task_id, found[0].family, found[-1].params, tuple(found))
        for task_id, found in grouped.items()
    ]


# The run's graph ----------------------------------------------------------------
#
# The journal keeps tasks and attempts, not the edges between tasks, so the
# picture is the tasks coloured by status, one column per family in the order
# the families first ran (requirements run before their users, so upstream
# families come first). Big runs become a grid of small squares, a row per family.

_BOX_W: Final = 210
_BOX_H: Final = 26
_COLUMN: Final = 230
_ROW: Final = 32
_HEAD: Final = 28
_BOXES_UP_TO: Final = 30
"""Labelled boxes while no family has more tasks than this; squares beyond."""
_SQUARE: Final = 11
_STEP: Final = 13
_PER_LINE: Final = 64
_LABEL_W: Final = 170
MAX_SHAPES: Final = 5000
"""Tasks a drawing holds at most, shared between the families (see :func:`shares`)."""

_HASH_TAIL: Final = re.compile(r"_[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class Shape:
    """One task drawn: a rectangle, its text (may be empty), where it links."""

    x: int
    y: int
    w: int
    h: int
    status: str
    label: str
    title: str
    task_id: str


@dataclass(frozen=True, slots=True)
class Heading:
    x: int
    y: int
    text: str


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    shapes: tuple[Shape, ...]
    headings: tuple[Heading, ...]
    left_out: int
    """Tasks not drawn (beyond the shapes a page can hold)."""
    boxes: bool
    """Labelled boxes (small runs), or squares (big ones)."""


def short_label(row: TaskRow | TaskState) -> str:
    """The readable middle of a task id: without the family and the hash."""
    text = _HASH_TAIL.sub("", row.task_id)
    prefix = f"{row.family}_"
    text = text[len(prefix) :] if text.startswith(prefix) else text
    text = text.replace("_", " ").strip() or row.family
    return text if len(text) <= 28 else text[:27] + "…"


NO_ATTEMPT: Final = "none"
"""The status drawn for a requested task with no attempt in the run."""
UNRUN: Final = "no attempt"
"""The family under which requested tasks with no attempt in the run are drawn."""


def shares(counts: Mapping[str, int], cap: int = MAX_SHAPES) -> dict[str, int]:
    """How many tasks of each family to draw: all of each while they fit in ``cap``,
    else the cap shared out evenly, a small family's unused part going to the
    others; so every family shows, whatever order the families ran in."""
    given: dict[str, int] = {}
    left = cap
    by_size = sorted(counts.items(), key=lambda item: item[1])
    for place, (family, count) in enumerate(by_size):
        given[family] = min(count, left // (len(by_size) - place))
        left -= given[family]
    return {family: given[family] for family in counts}


def graph(
    states: Sequence[TaskState],
    families: Mapping[str, int],
    unrun: Sequence[str] = (),
    unrun_count: int = 0,
) -> Graph:
    """Lay out a run's tasks (see the comment above): ``states`` are the tasks drawn
    (the first of each family, see :func:`shares`), ``families`` how many tasks each
    family has; ``unrun`` (of ``unrun_count``) come last, dashed."""
    drawn: dict[str, list[_Drawn]] = {family: [] for family in families}
    for state in states:
        drawn.setdefault(state.family, []).append(
            _Drawn(state.task_id, state.status.value, short_label(state), _title(state))
        )
    counts = dict(families)
    if unrun_count:
        counts[UNRUN] = unrun_count
        drawn[UNRUN] = [
            _Drawn(task_id, NO_ATTEMPT, task_id, f"{task_id}: no attempt in this run")
            for task_id in unrun
        ]
    shown = {family: members for family, members in drawn.items() if members}
    left_out = sum(counts.values()) - sum(len(members) for members in shown.values())
    if not shown:
        return Graph(0, 0, (), (), left_out, True)
    if max(counts.values()) <= _BOXES_UP_TO:
        return _boxes(shown, left_out)
    return _squares(shown, counts, left_out)


class _Drawn(NamedTuple):
    task_id: str
    status: str
    label: str
    title: str


def _title(task: TaskState) -> str:
    tries = f", {task.ran} attempts" if task.ran > 1 else ""
    return f"{task.task_id}: {task.status.value}{tries}"


def _boxes(families: Mapping[str, list[_Drawn]], left_out: int) -> Graph:
    shapes: list[Shape] = []
    headings: list[Heading] = []
    for column, (family, members) in enumerate(families.items()):
        x = 8 + column * _COLUMN
        headings.append(Heading(x, 18, family))
        for i, drawn in enumerate(members):
            label = drawn.label if len(drawn.label) <= 28 else drawn.label[:27] + "…"
            shapes.append(
                Shape(
                    x,
                    _HEAD + i * _ROW,
                    _BOX_W,
                    _BOX_H,
                    drawn.status,
                    label,
                    drawn.title,
                    drawn.task_id,
                )
            )
    tallest = max(len(members) for members in families.values())
    width = 16 + len(families) * _COLUMN - (_COLUMN - _BOX_W)
    return Graph(width, _HEAD + tallest * _ROW + 4, tuple(shapes), tuple(headings), left_out, True)


def _squares(
    families: Mapping[str, list[_Drawn]], counts: Mapping[str, int], left_out: int
) -> Graph:
    shapes: list[Shape] = []
    headings: list[Heading] = []
    y = 6
    for family, members in families.items():
        name = family if len(family) <= 16 else family[:15] + "…"
        headings.append(Heading(4, y + 10, f"{name} ({counts[family]:,})"))
        for i, drawn in enumerate(members):
            line, place = divmod(i, _PER_LINE)
            shapes.append(
                Shape(
                    _LABEL_W + place * _STEP,
                    y + line * _STEP,
                    _SQUARE,
                    _SQUARE,
                    drawn.status,
                    "",
                    drawn.title,
                    drawn.task_id,
                )
            )
        lines = -(-len(members) // _PER_LINE)
        y += lines * _STEP + 8
    width = _LABEL_W + _PER_LINE * _STEP + 4
    return Graph(width, y, tuple(shapes), tuple(headings), left_out, False)
