"""Luigi's command line: ``python -m asyncflow.luigi --module pkg.mod Task --param v``.

The grammar is Luigi's: the task family as the positional argument; the
task's own parameters as ``--param-name``; any task's or config class's as
``--Family-param-name``; the ``[core]`` settings without a prefix
(``--workers``, ``--local-scheduler``, ``--module``, ``--log-level``,
``--help``, ``--help-all``). Exit codes follow ``[retcode]`` in the
configuration, with Luigi's defaults: 0 even when a task failed, 4 for an
unexpected error while building or running the task (a missing parameter), 2
for a command line that does not parse, 1 when no task or an unknown one is
given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ._sync import on_event_loop
from .execution_summary import LuigiRunResult
from .parameter import BoolParameter, BoolParameterParsing, cmdline_values
from .task import Task, task_class, task_classes

__all__ = ["main", "parse_and_run"]

_log = logging.getLogger("luigi-interface")


def _parser(root_task: str | None = None, help_all: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asyncflow.luigi", add_help=False, allow_abbrev=False
    )
    parser.add_argument("root_task", nargs="?", metavar="TASK", help="the task family to run")
    for family, cls in sorted(task_classes().items()):
        is_root = family == root_task
        for name, param in cls.get_params():
            shown = is_root or help_all or getattr(param, "always_in_help", False)
            help_text = (param.description or "") if shown else argparse.SUPPRESS
            prefixed = name if not cls.use_cmdline_section else f"{family}_{name}"
            options = _argument_options(param)
            with contextlib.suppress(argparse.ArgumentError):
                parser.add_argument(
                    "--" + prefixed.replace("_", "-"),
                    dest=f"{family}_{name}",
                    help=help_text,
                    **options,
                )
            if is_root:
                with contextlib.suppress(argparse.ArgumentError):
                    parser.add_argument(
                        "--" + name.replace("_", "-"), dest=name, help=help_text, **options
                    )
    return parser


def _argument_options(param: Any) -> dict[str, Any]:
    if isinstance(param, BoolParameter):
        if param.parsing is BoolParameterParsing.IMPLICIT:
            return {"action": "store_true"}
        return {"nargs": "?", "const": "true"}
    return {"action": "store"}


class CmdlineParser:
    """A parsed Luigi command line: its task, and its values for every other task."""

    def __init__(self, args: Sequence[str]) -> None:
        args = list(args)
        known, _ = _parser().parse_known_args(args)
        module = getattr(known, "core_module", None)
        if module:
            _import(module)
        known, _ = _parser().parse_known_args(args)
        root = known.root_task
        parser = _parser(root, help_all=bool(getattr(known, "core_help_all", False)))
        if getattr(known, "core_help", False) or getattr(known, "core_help_all", False):
            parser.print_help()
            raise SystemExit(0)
        if not root:
            raise SystemExit("No task specified")
        self.task_cls = task_class(root)
        self.known_args = parser.parse_args(args)
        self.values = {
            key: value
            for key, value in vars(self.known_args).items()
            if value not in (None, False, "") and key != "root_task"
        }

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, tasks take their missing values from this command line."""
        token = cmdline_values.set(self.values)
        try:
            yield
        finally:
            cmdline_values.reset(token)

    def get_task_obj(self) -> Task:
        """The requested task, built from its parameters on the command line."""
        kwargs: dict[str, Any] = {}
        for name, param in self.task_cls.get_params():
            value = getattr(self.known_args, name, None)
            if value:
                kwargs[name] = param.parse(value)
        with self.active():
            return self.task_cls(**kwargs)


def _import(module: str) -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.import_module(module)


def parse_and_run(
    args: Sequence[str] | None, main_task_cls: type[Task] | None, local_scheduler: bool
) -> LuigiRunResult:
    """Parse ``args`` (default ``sys.argv[1:]``) and run the task they name."""
    from .interface import schedule_and_run

    if args is not None and not isinstance(args, list | tuple):
        raise TypeError(f"cmdline_args must be a list or tuple of arguments, got {args!r}")
    argv = list(sys.argv[1:] if args is None else args)
    if main_task_cls is not None:
        argv.insert(0, main_task_cls.task_family)
    if local_scheduler:
        argv.append("--local-scheduler")
    parsed = CmdlineParser(argv)
    task = parsed.get_task_obj()
    with parsed.active():
        return schedule_and_run([task], {}, configure=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (``[retcode]`` in the configuration)."""
    from .interface import retcode, schedule_and_run

    args = list(sys.argv[1:] if argv is None else argv)
    if on_event_loop():
        print("asyncflow luigi: cannot run inside a running event loop", file=sys.stderr)
        return 4
    try:
        parsed = CmdlineParser(args)
        with parsed.active():
            codes = retcode()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 1
        return int(exit_.code or 0)
    except Exception as exc:  # Luigi: a command line that names no task class crashes (1)
        print(f"asyncflow luigi: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        task = parsed.get_task_obj()
        with parsed.active():
            outcome = schedule_and_run([task], {}, configure=True)
    except Exception as exc:  # as in Luigi, any other error is an "unhandled exception"
        print(f"asyncflow luigi: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return int(codes.param_kwargs["unhandled_exception"])
    return _exit_code(outcome, codes)


def _exit_code(outcome: LuigiRunResult, codes: Any) -> int:
    found = outcome.categories
    conditions = (
        (codes.param_kwargs["missing_data"], bool(found.get("still_pending_ext"))),
        (codes.param_kwargs["task_failed"], bool(found.get("failed"))),
        (codes.param_kwargs["scheduling_error"], bool(found.get("scheduling_error"))),
        (codes.param_kwargs["not_run"], bool(found.get("not_run"))),
    )
    code = max((value for value, holds in conditions if holds), default=0)
    root = outcome.result.requested[0] if outcome.result.requested else None
    if code == 0 and root is not None and not outcome.result.status(root).is_complete:
        return int(codes.param_kwargs["not_run"])
    return int(code)
