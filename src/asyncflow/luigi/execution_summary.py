"""Luigi's view of a run: its status codes and execution summary, from a RunResult."""

from __future__ import annotations

import enum
from collections import defaultdict
from typing import Any

from ..errors import TaskDefinitionError
from ..result import RunResult, Status, TaskResult

__all__ = ["LuigiRunResult", "LuigiStatusCode", "categories"]


class LuigiStatusCode(enum.Enum):
    """The overall outcome of a run, as Luigi names it."""

    SUCCESS = (":)", "there were no failed tasks or missing dependencies")
    SUCCESS_WITH_RETRY = (":)", "there were failed tasks but they all succeeded in a retry")
    FAILED = (":(", "there were failed tasks")
    FAILED_AND_SCHEDULING_FAILED = (
        ":(",
        "there were failed tasks and tasks whose scheduling failed",
    )
    SCHEDULING_FAILED = (":(", "there were tasks whose scheduling failed")
    NOT_RUN = (":|", "there were tasks that were not granted run permission by the scheduler")
    MISSING_EXT = (":|", "there were missing external dependencies")


_HEADINGS = {
    "already_done": "complete ones were encountered",
    "completed": "ran successfully",
    "failed": "failed",
    "scheduling_error": "failed scheduling",
    "still_pending_ext": "were missing external dependencies",
    "upstream_failure": "had failed dependencies",
    "upstream_missing_dependency": "had missing dependencies",
    "not_run": "were not granted run permission by the scheduler",
}


def _is_scheduling_error(result: TaskResult) -> bool:
    """``requires()``, ``complete()`` or ``output()`` raised before the task could run."""
    return (
        result.status is Status.FAILED
        and result.attempts == 0
        and isinstance(result.error, TaskDefinitionError)
    )


def categories(result: RunResult) -> dict[str, list[TaskResult]]:
    """The run's tasks in Luigi's summary categories."""
    found: dict[str, list[TaskResult]] = defaultdict(list)
    for item in result:
        status = item.status
        if any(attempt.error is not None for attempt in item.history) or (
            status is Status.FAILED and item.attempts > 0
        ):
            found["ever_failed"].append(item)
        if status is Status.ALREADY_COMPLETE:
            found["already_done"].append(item)
        elif status is Status.DONE:
            found["completed"].append(item)
        elif _is_scheduling_error(item):
            found["scheduling_error"].append(item)
        elif status is Status.FAILED:
            found["failed"].append(item)
        elif status is Status.MISSING:
            found["still_pending_ext"].append(item)
        elif status is Status.UPSTREAM_FAILED:
            why = str(item.error or "")
            kind = "upstream_missing_dependency" if "is missing" in why else "upstream_failure"
            found[kind].append(item)
        else:
            found["not_run"].append(item)
    return found


def status_of(found: dict[str, list[TaskResult]]) -> LuigiStatusCode:
    """Luigi's status code for the categories of a run."""
    if found.get("ever_failed"):
        if not found.get("failed"):
            return LuigiStatusCode.SUCCESS_WITH_RETRY
        if found.get("scheduling_error"):
            return LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED
        return LuigiStatusCode.FAILED
    if found.get("scheduling_error"):
        return LuigiStatusCode.SCHEDULING_FAILED
    if found.get("not_run"):
        return LuigiStatusCode.NOT_RUN
    if found.get("still_pending_ext"):
        return LuigiStatusCode.MISSING_EXT
    return LuigiStatusCode.SUCCESS


class LuigiRunResult:
    """What ``build(..., detailed_summary=True)`` and ``run(...)`` return.

    ``status`` is a :class:`LuigiStatusCode`, ``summary_text`` Luigi's
    execution summary, ``scheduling_succeeded`` the bool that
    ``build()`` returns otherwise (False when an attempt failed or a task could
    not be scheduled), and ``result`` asyncflow's own :class:`~asyncflow.RunResult`.
    """

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self.worker: Any = None  # there is no Luigi worker: see ``result``
        self.categories = categories(result)
        self.status = status_of(self.categories)
        # As Luigi's: False once any attempt failed, even one that a retry made good.
        self.scheduling_succeeded = not (
            self.categories.get("ever_failed")
            or self.categories.get("failed")
            or self.categories.get("scheduling_error")
        )
        self.summary_text = _summary_text(self)
        smiley, why = self.status.value
        self.one_line_summary = f"This progress looks {smiley} because {why}"

    def __str__(self) -> str:
        return f"LuigiRunResult with status {self.status}"

    def __repr__(self) -> str:
        return (
            f"LuigiRunResult(status={self.status!r},"
            f"scheduling_succeeded={self.scheduling_succeeded!r})"
        )

    def __bool__(self) -> bool:
        return self.scheduling_succeeded


def _summary_text(run: LuigiRunResult) -> str:
    total = len(run.result)
    lines = ["", "===== Luigi Execution Summary =====", ""]
    lines.append(f"Scheduled {total} task{'s' if total != 1 else ''} of which:")
    for key, heading in _HEADINGS.items():
        group = run.categories.get(key)
        if not group:
            continue
        lines.append(f"* {len(group)} {heading}:")
        for item in group[:5]:
            lines.append(f"    - {item.task!r}")
        if len(group) > 5:
            lines.append(f"    ... and {len(group) - 5} more")
    smiley, why = run.status.value
    lines += ["", f"This progress looks {smiley} because {why}", ""]
    lines += ["===== Luigi Execution Summary =====", ""]
    return "\n".join(lines)
