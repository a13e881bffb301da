"""Shared by the example pipelines: records events, runs builds, writes report.json.

Runs unchanged under Luigi and, with its imports rewritten, under asyncflow.luigi.
"""

import json

import luigi

EVENTS = {"start": [], "success": [], "failure": [], "missing": [], "present": [], "broken": []}


def name(task):
    params = ",".join(f"{k}={v}" for k, v in sorted(task.to_str_params().items()))
    return f"{task.task_family}({params})"


@luigi.Task.event_handler(luigi.Event.START)
def _started(task):
    EVENTS["start"].append(name(task))


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def _succeeded(task):
    EVENTS["success"].append(name(task))


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _failed(task, exception):
    EVENTS["failure"].append(f"{name(task)}: {type(exception).__name__}")


@luigi.Task.event_handler(luigi.Event.DEPENDENCY_MISSING)
def _missing(task):
    EVENTS["missing"].append(name(task))


@luigi.Task.event_handler(luigi.Event.DEPENDENCY_PRESENT)
def _present(task):
    EVENTS["present"].append(name(task))


@luigi.Task.event_handler(luigi.Event.BROKEN_TASK)
def _broken(task, exception):
    EVENTS["broken"].append(f"{name(task)}: {type(exception).__name__}")


def build(tasks, **options):
    """One build; what it returned, and the events it fired (sorted: order may differ)."""
    for recorded in EVENTS.values():
        recorded.clear()
    options.setdefault("workers", 1)
    result = luigi.build(tasks, local_scheduler=True, detailed_summary=True, **options)
    events = {kind: sorted(set(found)) for kind, found in EVENTS.items()}
    if options["workers"] > 1:
        # Luigi runs task bodies in child processes then: their events stay there.
        for kind in ("start", "success", "failure"):
            events.pop(kind)
    plain = luigi.build(
        tasks, local_scheduler=True
    )  # everything is complete by now, or fails again
    return {
        "status": result.status.name,
        "scheduling_succeeded": result.scheduling_succeeded,
        "again": plain,
        "events": events,
    }


def finish(steps):
    with open("report.json", "w") as out:
        json.dump(steps, out, indent=1, sort_keys=True, default=str)
