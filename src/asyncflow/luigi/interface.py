"""``luigi.build()`` and ``luigi.run()``, running on asyncflow's engine.

There is no central scheduler: ``local_scheduler`` is accepted either way and
every run is local. The settings Luigi reads from ``[core]``, ``[worker]``
and ``[scheduler]`` that have a meaning here are honoured (see the
migration guide): ``workers``, ``log_level``, ``[worker] keep_alive`` with
``[scheduler] retry_count`` / ``retry_delay`` (retries of tasks that set no
``retry_count``), and ``[resources]`` (resource capacities).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from .._retry import RetryPolicy
from ..logging import configure_logging
from ..result import Status
from ..runner import build as engine_build
from ._sync import on_event_loop
from .configuration import get_config
from .event import Event
from .execution_summary import LuigiRunResult
from .parameter import (
    BoolParameter,
    ChoiceParameter,
    FloatParameter,
    IntParameter,
    Parameter,
    UnknownParameterException,
    cmdline_values,
)
from .task import Config, Task

__all__ = ["build", "core", "retcode", "run", "worker"]

_LEVELS = ["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_log = logging.getLogger("luigi-interface")


class core(Config):
    """Luigi's ``[core]`` settings (on the command line without a section prefix)."""

    use_cmdline_section = False
    local_scheduler = BoolParameter(
        default=False,
        description="Accepted for compatibility; runs are always local.",
        always_in_help=True,
    )
    scheduler_host = Parameter(default="localhost", description="Unused: no central scheduler.")
    scheduler_port = IntParameter(default=8082, description="Unused: no central scheduler.")
    scheduler_url = Parameter(default="", description="Unused: no central scheduler.")
    lock_size = IntParameter(default=1, description="Unused.")
    no_lock = BoolParameter(default=False, description="Unused: runs take no process lock.")
    lock_pid_dir = Parameter(
        default=os.path.join(tempfile.gettempdir(), "luigi"), description="Unused."
    )
    take_lock = BoolParameter(default=False, description="Unused.")
    workers = IntParameter(default=1, description="Task bodies running at once.")
    logging_conf_file = Parameter(default="", description="A logging.config file to load.")
    log_level = ChoiceParameter(
        default="INFO", choices=_LEVELS, description="Log level (default INFO)."
    )
    module = Parameter(default="", description="Module to import first.", always_in_help=True)
    parallel_scheduling = BoolParameter(default=False, description="Unused.")
    parallel_scheduling_processes = IntParameter(default=0, description="Unused.")
    assistant = BoolParameter(default=False, description="Unused.")
    journal = Parameter(
        default="",
        description="asyncflow's run journal: a path, or 'none' to keep none "
        "(default: asyncflow's configuration, else .asyncflow/journal.db).",
    )
    help = BoolParameter(
        default=False, description="Show the common flags and the task's.", always_in_help=True
    )
    help_all = BoolParameter(default=False, description="Show every flag.", always_in_help=True)


class worker(Config):
    """Luigi's ``[worker]`` settings that have a meaning here."""

    keep_alive = BoolParameter(
        default=False, description="Retry failed tasks within the run (with [scheduler] retries)."
    )
    retry_external_tasks = BoolParameter(default=False, description="Unused.")
    wait_interval = FloatParameter(default=1.0, description="Unused.")
    wait_jitter = FloatParameter(default=5.0, description="Unused.")
    max_reschedules = IntParameter(default=1, description="Unused.")
    task_limit = IntParameter(default=None, description="Unused.")
    no_install_shutdown_handler = BoolParameter(default=False, description="Unused.")


class retcode(Config):
    """Exit codes of the command line (Luigi's defaults: 0, except 4 for a crash)."""

    unhandled_exception = IntParameter(default=4, description="An unexpected error.")
    missing_data = IntParameter(default=0, description="An external input is missing.")
    task_failed = IntParameter(default=0, description="A task failed.")
    already_running = IntParameter(default=0, description="Unused.")
    scheduling_error = IntParameter(default=0, description="complete() or requires() raised.")
    not_run = IntParameter(default=0, description="The requested task did not run.")


def build(
    tasks: Iterable[Task],
    worker_scheduler_factory: Any = None,
    detailed_summary: bool = False,
    **env_params: Any,
) -> bool | LuigiRunResult:
    """Run ``tasks`` and what they need; Luigi's ``build()``.

    Returns True when no task failed and every task could be scheduled (an
    absent external input does not make it False, as in Luigi), or with
    ``detailed_summary=True`` a :class:`LuigiRunResult`. ``env_params`` are
    ``[core]`` settings (``workers=4``, ``log_level="INFO"``...); asking for a
    ``log_level`` configures logging to stderr, otherwise nothing is printed.

    Raises:
        UnknownParameterException: an unknown setting.
    """
    known = {name for name, _ in core.get_params()}
    unknown = sorted(set(env_params) - known)
    if unknown:
        raise UnknownParameterException(
            f"build() got unknown settings {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    outcome = schedule_and_run(list(tasks), env_params, configure=("log_level" in env_params))
    return outcome if detailed_summary else outcome.scheduling_succeeded


def run(
    cmdline_args: Sequence[str] | None = None,
    main_task_cls: type[Task] | None = None,
    worker_scheduler_factory: Any = None,
    use_dynamic_argparse: Any = None,
    local_scheduler: bool = False,
    detailed_summary: bool = False,
) -> bool | LuigiRunResult:
    """Parse a Luigi command line (default ``sys.argv[1:]``) and run its task.

    Raises:
        SystemExit: ``--help``, or a command line that does not parse.
    """
    from .cmdline import parse_and_run

    outcome = parse_and_run(cmdline_args, main_task_cls, local_scheduler)
    return outcome if detailed_summary else outcome.scheduling_succeeded


def schedule_and_run(
    tasks: list[Task], overrides: dict[str, Any], *, configure: bool
) -> LuigiRunResult:
    """Run ``tasks`` on the engine with the ``[core]`` settings and ``overrides``."""
    settings = core(**overrides)
    if configure:
        _configure_logging(settings)
    options: dict[str, Any] = {
        "workers": settings.param_kwargs["workers"],
        "keep_going": True,
        "resources": _resources(),
        "retry": _retry_policy(),
    }
    journal = settings.param_kwargs["journal"]
    if journal:
        options["journal"] = None if journal.lower() == "none" else journal
    if on_event_loop():
        # Luigi's build() is synchronous, also in a notebook whose loop runs in
        # this thread: run on a thread of our own and wait, as Luigi would block.
        # A fresh context there (this one says a loop is running), with the
        # command line's values carried over.
        values = cmdline_values.get()

        def build_there() -> Any:
            cmdline_values.set(values)
            return engine_build(tasks, **options)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            result = pool.submit(contextvars.Context().run, build_there).result()
    else:
        result = engine_build(tasks, **options)
    for item in result.with_status(Status.ALREADY_COMPLETE):
        task = item.task
        if isinstance(task, Task):
            task.trigger_event(Event.DEPENDENCY_PRESENT, task)
    outcome = LuigiRunResult(result)
    _log.info(outcome.summary_text)
    return outcome


def _configure_logging(settings: core) -> None:
    if settings.param_kwargs["logging_conf_file"]:
        import logging.config

        path = settings.param_kwargs["logging_conf_file"]
        logging.config.fileConfig(path, disable_existing_loggers=False)
        return
    configure_logging("console", settings.param_kwargs["log_level"])


def _resources() -> dict[str, float]:
    config = get_config()
    capacities: dict[str, float] = {}
    for name, value in config.section_items("resources"):
        capacities[name] = float(value) if not isinstance(value, int) else value
    return capacities


def _retry_policy() -> RetryPolicy | None:
    """Retries of tasks without their own ``retry_count``: with ``[worker] keep_alive``,
    as many attempts as ``[scheduler] retry_count``, ``retry_delay`` apart."""
    if not worker().param_kwargs["keep_alive"]:
        return None
    # Read from the file: the engine reserves these names for tasks' own settings,
    # so they cannot be parameters of a [scheduler] config class.
    config = get_config()
    count = int(config.get("scheduler", "retry_count", 999999999))
    delay = float(config.get("scheduler", "retry_delay", 900.0))
    return RetryPolicy(count=max(0, count - 1), delay=delay, backoff=1)
