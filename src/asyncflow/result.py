"""The outcome of a run: a status per task, errors with tracebacks, a summary."""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, final

from ._redact import known_secrets, redact
from ._render import COLOURS, badge, duration_text, esc, table, time_text
from ._tracebacks import format_error
from .task import secret_texts

if TYPE_CHECKING:
    from .resources import ResourceStatistics
    from .task import Task

__all__ = ["Attempt", "RunResult", "Status", "TaskResult", "TaskResults"]


class Status(enum.StrEnum):
    """Where a task stands at the end of a run."""

    DONE = "done"
    """It ran in this run and succeeded."""
    ALREADY_COMPLETE = "already_complete"
    """It was complete before the run; it did not run."""
    FAILED = "failed"
    """It ran (or its definition raised) and did not succeed."""
    UPSTREAM_FAILED = "upstream_failed"
    """It did not run because a requirement failed, was cancelled or is missing."""
    MISSING = "missing"
    """An external input that is absent."""
    CANCELLED = "cancelled"
    """The run was cancelled or stopped (fail-fast) before it finished."""

    @property
    def is_complete(self) -> bool:
        return self is Status.DONE or self is Status.ALREADY_COMPLETE


_COMPLETE: Final = frozenset({Status.DONE, Status.ALREADY_COMPLETE})
"""The statuses :attr:`Status.is_complete` holds for (a set: read for every task)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a task: when, how long, and the error if it failed."""

    number: int
    started: float
    finished: float
    error: BaseException | None = None

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def timed_out(self) -> bool:
        return isinstance(self.error, TimeoutError)


@dataclass(slots=True)
class TaskResult:
    """What happened to one task."""

    task: Task
    status: Status
    error: BaseException | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    recorded: list[Attempt] | None = field(default=None, repr=False)

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def history(self) -> list[Attempt]:
        """Every attempt, in order (empty for tasks that did not run).

        A task that succeeded at its first attempt has no stored record: its
        one attempt is the task's own start and finish.
        """
        if self.recorded is not None:
            return list(self.recorded)
        if self.status is Status.DONE and self.started is not None and self.finished is not None:
            return [Attempt(1, self.started, self.finished, None)]
        return []

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of :attr:`error`, if any."""
        if self.error is None:
            return None
        return format_error(self.error)

    def _repr_html_(self) -> str:
        """The task's status, attempts, times and error, for notebooks."""
        return _task_html(self)


class _Outcome(Protocol):
    """What a run keeps of each of its tasks (the graph's nodes)."""

    @property
    def task(self) -> Task: ...
    @property
    def status(self) -> Status | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started(self) -> float | None: ...
    @property
    def finished(self) -> float | None: ...
    @property
    def history(self) -> list[Attempt] | None: ...


@final
class TaskResults(Mapping[str, TaskResult]):
    """A run's task results by task id, over what the run kept of its tasks.

    Each :class:`TaskResult` is made when first read (then kept): built all at
    once, a run's results cost 0.6 µs a task on its way out, with the event loop
    held meanwhile (a 400,000-task run held it for 370 ms), while most callers
    read only ``ok``. Tasks without a status (none, after a run) are left out.
    """

    __slots__ = ("_count", "_made", "_outcomes")

    def __init__(self, outcomes: Mapping[str, _Outcome]) -> None:
        self._outcomes = outcomes
        self._made: dict[str, TaskResult] = {}
        self._count: int | None = None

    def __getitem__(self, task_id: str) -> TaskResult:
        made = self._made.get(task_id)
        if made is None:
            outcome = self._outcomes[task_id]
            if outcome.status is None:
                raise KeyError(task_id)
            made = self._made[task_id] = TaskResult(
                outcome.task,
                outcome.status,
                outcome.error,
                outcome.attempts,
                outcome.started,
                outcome.finished,
                outcome.history,
            )
        return made

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._settled())

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._settled())
        return self._count

    def __repr__(self) -> str:
        return f"<TaskResults of {len(self)} tasks>"

    def __reduce__(self) -> tuple[type[dict[str, TaskResult]], tuple[dict[str, TaskResult]]]:
        # Pickled (a result sent to another process) as the plain dict of its
        # results: without the graph the outcomes belong to.
        return dict, (dict(self.items()),)

    def status(self, task_id: str) -> Status:
        """The status of ``task_id``, without making its result.

        Raises:
            KeyError: no task of the run has this id.
        """
        made = self._made.get(task_id)
        if made is not None:
            return made.status
        status = self._outcomes[task_id].status
        if status is None:
            raise KeyError(task_id)
        return status

    def all_complete(self, tasks: Iterable[Task]) -> bool:
        """Whether every one of ``tasks`` is complete (a run's ``ok``), without
        making their results: a run's requested tasks can be tens of thousands.

        Raises:
            KeyError: one of ``tasks`` is not a task of the run.
        """
        status = self.status
        return all(status(task.task_id) in _COMPLETE for task in tasks)

    def statuses(self) -> Iterator[Status]:
        """The status of every task, without making their results."""
        return (status for _, status in self._settled())

    def _settled(self) -> Iterator[tuple[str, Status]]:
        """Each task id with its status, leaving out tasks without one."""
        for key, outcome in self._outcomes.items():
            if outcome.status is not None:
                yield key, outcome.status


@dataclass(repr=False)
class RunResult:
    """Returned by :func:`asyncflow.run` and :func:`asyncflow.build`.

    ``ok`` is True only when every requested task is complete at the end, and
    so is ``bool(result)``: ``if not asyncflow.build(...)`` reads as it does
    with ``luigi.build``.
    """

    run_id: str
    requested: Sequence[Task]
    results: Mapping[str, TaskResult] = field(repr=False)
    """Every task of the run by task id (a dict, or :class:`TaskResults`)."""
    started: float = 0.0
    finished: float = 0.0
    resources: dict[str, ResourceStatistics] = field(default_factory=dict)
    """The resource pools at the end of the run (nothing should be in use)."""

    @property
    def ok(self) -> bool:
        results = self.results
        if isinstance(results, TaskResults):  # read by run() itself, then by the caller
            return results.all_complete(self.requested)
        return all(results[t.task_id].status.is_complete for t in self.requested)

    def __bool__(self) -> bool:
        # Without it, bool() would fall back on __len__: True for any failed run.
        return self.ok

    def __repr__(self) -> str:
        counts = ", ".join(f"{s.value}={n}" for s, n in self.counts().items())
        return f"<RunResult {self.run_id} ok={self.ok} {counts}>"

    def _get(self, task: Task | str) -> TaskResult:
        key = task if isinstance(task, str) else task.task_id
        try:
            return self.results[key]
        except KeyError:
            raise KeyError(f"{key} is not part of run {self.run_id}") from None

    def __getitem__(self, task: Task | str) -> TaskResult:
        return self._get(task)

    def __contains__(self, task: object) -> bool:
        key = task if isinstance(task, str) else getattr(task, "task_id", None)
        return key in self.results

    def __iter__(self) -> Iterator[TaskResult]:
        return iter(self.results.values())

    def __len__(self) -> int:
        return len(self.results)

    def status(self, task: Task | str) -> Status:
        """The status of a task (or task id) of this run.

        Raises:
            KeyError: the task was not part of the run.
        """
        return self._get(task).status

    def error(self, task: Task | str) -> BaseException | None:
        """The exception that failed the task, with its traceback attached."""
        return self._get(task).error

    def with_status(self, *statuses: Status) -> list[TaskResult]:
        """Every task result whose status is one of ``statuses``."""
        return [r for r in self.results.values() if r.status in statuses]

    @property
    def failed(self) -> list[TaskResult]:
        return self.with_status(Status.FAILED)

    def counts(self) -> dict[Status, int]:
        """How many tasks ended with each status."""
        results = self.results
        if isinstance(results, TaskResults):
            return dict(Counter(results.statuses()))
        return dict(Counter(r.status for r in results.values()))

    def summary(self) -> str:
        """A readable execution summary: counts per status, failures and why."""
        return _summarise(self)

    def _repr_html_(self) -> str:
        """Counts per status in colour and a table of failed tasks, for notebooks."""
        return _run_html(self)


_HEADINGS = {
    Status.ALREADY_COMPLETE: "already complete",
    Status.DONE: "ran successfully",
    Status.FAILED: "failed",
    Status.MISSING: "missing external inputs",
    Status.UPSTREAM_FAILED: "not run because a requirement failed or is missing",
    Status.CANCELLED: "cancelled",
}
_MAX_LISTED = 5
_MAX_FAILURES = 20


def _summarise(result: RunResult) -> str:
    duration = max(result.finished - result.started, 0.0)
    total = len(result.results)
    lines = [
        f"===== asyncflow run {result.run_id} =====",
        f"Scheduled {total} task{'s' if total != 1 else ''} ({duration:.2f} s):",
    ]
    by_status: dict[Status, list[TaskResult]] = defaultdict(list)
    for r in result.results.values():
        by_status[r.status].append(r)
    for status, heading in _HEADINGS.items():
        group = by_status.get(status)
        if not group:
            continue
        lines.append(f"* {len(group)} {heading}:")
        if status is Status.DONE:
            group.sort(key=lambda r: r.started or 0.0)  # in the order they ran
        if status in (Status.FAILED, Status.MISSING):
            lines.extend(_failure_lines(group, result))
        else:
            lines.extend(_family_lines(group))
    if result.ok:
        lines.append("Run succeeded: every requested task is complete.")
    else:
        pending = [t for t in result.requested if not result.status(t).is_complete]
        lines.append(
            f"Run failed: {len(pending)} of {len(result.requested)} requested task(s) not complete."
        )
    return "\n".join(lines)


def _family_lines(group: Iterable[TaskResult]) -> list[str]:
    families: dict[str, list[TaskResult]] = defaultdict(list)
    for r in group:
        families[r.task.task_family].append(r)
    lines: list[str] = []
    for family, members in families.items():
        if len(members) <= _MAX_LISTED:
            lines.extend(f"    - {r.task!r}" for r in members)
        else:
            shown = ", ".join(repr(r.task) for r in members[:2])
            lines.append(f"    - {len(members)} {family} (e.g. {shown}, ...)")
    return lines


def _failure_lines(group: Sequence[TaskResult], result: RunResult) -> list[str]:
    secrets = _secrets(r.task for r in result.results.values())
    lines: list[str] = []
    for r in group[:_MAX_FAILURES]:
        why = "" if r.error is None else f": {_error_text(r.error, secrets)}"
        lines.append(f"    - {r.task!r}{why}")
    if len(group) > _MAX_FAILURES:
        lines.append(f"    ... and {len(group) - _MAX_FAILURES} more")
    return lines


def _run_html(result: RunResult) -> str:
    ok = result.ok
    verdict = (
        f'<b style="color:{COLOURS["done"]}">succeeded</b>'
        if ok
        else f'<b style="color:{COLOURS["failed"]}">failed</b>'
    )
    head = (
        f"<div><b>asyncflow run</b> <code>{esc(result.run_id)}</code> {verdict}: "
        f"{len(result.requested)} requested, {len(result.results)} scheduled; "
        f"started {time_text(result.started)}, took "
        f"{duration_text(result.finished - result.started)}</div>"
    )
    counts = result.counts()
    badges = "".join(
        badge(_HEADINGS[status], counts[status], status.value)
        for status in _HEADINGS
        if counts.get(status)
    )
    parts = [head, f"<div>{badges}</div>"]
    failed = result.with_status(Status.FAILED, Status.MISSING)
    if failed:
        secrets = _secrets(r.task for r in result.results.values())
        rows = [
            [
                f"<code>{esc(repr(r.task))}</code>",
                badge(r.status.value, None, r.status.value),
                esc(_error_text(r.error, secrets)),
                str(r.attempts),
                duration_text(r.duration),
            ]
            for r in failed[:_MAX_FAILURES]
        ]
        parts.append(table(["failed task", "status", "error", "attempts", "duration"], rows))
        if len(failed) > _MAX_FAILURES:
            parts.append(f"<div>... and {len(failed) - _MAX_FAILURES} more</div>")
    return f'<div class="asyncflow-result">{"".join(parts)}</div>'


def _task_html(result: TaskResult) -> str:
    secrets = _secrets([result.task])
    rows = [
        ["task", f"<code>{esc(repr(result.task))}</code>"],
        ["status", badge(result.status.value, None, result.status.value)],
        ["attempts", str(result.attempts)],
        ["started", time_text(result.started)],
        ["finished", time_text(result.finished)],
        ["duration", duration_text(result.duration)],
    ]
    if result.error is not None:
        rows.append(["error", esc(_error_text(result.error, secrets))])
    parts = [table([], rows)]
    if result.traceback is not None:
        text = esc(redact(result.traceback, secrets))
        parts.append(f"<details><summary>traceback</summary><pre>{text}</pre></details>")
    return f'<div class="asyncflow-task-result">{"".join(parts)}</div>'


def _error_text(error: BaseException | None, secrets: list[str]) -> str:
    return "" if error is None else redact(f"{type(error).__name__}: {error}", secrets)


def _secrets(tasks: Iterable[Task]) -> list[str]:
    """What to mask in the errors of ``tasks``: an error message is the task body's
    own text, which may quote one of its hidden values."""
    return known_secrets(secret_texts(tasks))
