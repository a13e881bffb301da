"""The command line: ``asyncflow run module:Task --date 2026-11-23 --workers 8``.

Exit codes: 0 the run is ok, 1 a requested task is not complete, 2 the command
cannot be carried out as written (a bad option or parameter value, a task or
module that cannot be loaded, bad configuration, an unusable journal: one line
on stderr says which), 130 interrupted. ``graph`` exits 1 when its output
cannot be written (a full disk: one line on stderr), and 141 without a word
when the reader of its output goes away (``asyncflow graph ... | head``), as a
program stopped by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import dataclasses
import errno
import functools
import importlib
import importlib.util
import os
import re
import signal
import sys
import sysconfig
import traceback
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from ._log import log
from ._version import __version__
from .config import LOG_FORMATS, Config, is_log_level, parse_amounts
from .dag import render
from .errors import AsyncflowError, ConfigError
from .graph import expand
from .journal import (
    AttemptStatus,
    RunStatus,
    describe,
    format_run,
    format_runs,
    is_postgres_url,
    open_journal,
)
from .logging import configure_logging
from .parameters import BoolParameter
from .ranges import range_daily, range_hourly
from .resources import is_amount
from .result import RunResult
from .runner import DEFAULT_WORKERS, run
from .task import Task

if TYPE_CHECKING:
    from .metrics import PrometheusMetrics

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "load_task",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class UsageError(AsyncflowError):
    """The command line cannot be carried out as written."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["luigi"]:  # Luigi's own grammar: handed over whole
        from .luigi.cmdline import main as luigi_main

        return luigi_main(args_list[1:])
    try:
        task_cls = _task_from_argv(args_list)
        parser = _parser(task_cls)
        try:
            if task_cls is None and args_list and args_list[0] in _TASK_COMMANDS:
                # No MODULE:TASK among the arguments: say so before the task's own
                # options are refused as unknown.
                load_task(parser.parse_known_args(args_list)[0].task)
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "history":
            return _history(args)
        if args.command == "show":
            return _show(args)
        if args.command == "journal":
            return _journal_check(args) if args.journal_command == "check" else _prune(args)
        if args.command == "ui":
            return _ui(args)
        if task_cls is None:  # the spec had no ":"; load_task() explains the expected form
            task_cls = load_task(args.task)
        command = {"run": _run, "graph": _graph, "backfill": _backfill}[args.command]
        return command(args, task_cls)
    except AsyncflowError as exc:  # asyncflow's errors name what is wrong: no traceback
        print(f"asyncflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("asyncflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _task_from_argv(argv: list[str]) -> type[Task] | None:
    if not argv or argv[0] not in _TASK_COMMANDS:
        return None
    for arg in argv[1:]:
        if not arg.startswith("-") and ":" in arg:
            return load_task(arg)
    return None


def load_task(spec: str) -> type[Task]:
    """Import ``module:Task`` (or ``path/to/file.py:Task``) and return the class.

    Raises:
        UsageError: the module cannot be imported or has no such task.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        module_name, dot, attr = spec.rpartition(".")
        hint = (
            f"; did you mean '{module_name}:{attr}'?"
            if not sep and dot and module_name and attr and attr != "py"
            else ""
        )
        raise UsageError(f"expected MODULE:TASK (e.g. pipelines.daily:Report), got {spec!r}{hint}")
    module = _import(module_name)
    found = getattr(module, attr, None)
    if not (isinstance(found, type) and issubclass(found, Task)):
        tasks = sorted(
            name
            for name, value in vars(module).items()
            if isinstance(value, type)
            and issubclass(value, Task)
            and value.__module__ == module.__name__
        )
        what = "no attribute" if found is None else f"{type(found).__name__} (not a Task class)"
        hint = f"; tasks defined there: {', '.join(tasks)}" if tasks else ""
        raise UsageError(f"{module_name}:{attr}: {what}{hint}")
    return found


def _import(name: str) -> ModuleType:
    """Import module ``name`` (or the file at that path).

    Raises:
        UsageError: it cannot be imported; the message has the error and where
            in the user's code it was raised.
    """
    try:
        if name.endswith(".py") or os.sep in name:
            return _import_file(Path(name))
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(name)
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
            # The module itself (or a package above it), not one that it imports.
            raise UsageError(f"cannot import module {name!r}: {exc}") from None
        raise UsageError(f"cannot import {name!r}: {_describe(exc)}") from None
    except Exception as exc:
        raise UsageError(f"cannot import {name!r}: {_describe(exc)}") from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"not a file: {path}" if path.exists() else f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(path.stem, None)  # no half-imported module left behind
        raise
    return module


def _describe(error: Exception) -> str:
    """``Type: message (file:line)``, the line being the innermost one of the user's code."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, SyntaxError):  # its own message has the file and line
        return text
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not _is_library(frame.filename):
            return f"{text} ({frame.filename}:{frame.lineno})"
    return text


def _is_library(filename: str) -> bool:
    """Whether ``filename`` is importlib's, the standard library's, an installed
    package's or asyncflow's own (not the code of the module being imported)."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>
        return True
    path = os.path.abspath(filename)
    return any(path.startswith(root) for root in _library_roots())


@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.add(str(Path(__file__).parent))
    return tuple(os.path.join(os.path.abspath(root), "") for root in roots)


_TASK_COMMANDS = ("run", "graph", "backfill")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the task's options can fill a screen)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(task_cls: type[Task] | None) -> argparse.ArgumentParser:
    parser = _Parser(prog="asyncflow", description="Run asyncflow tasks from the command line.")
    parser.add_argument("--version", action="version", version=f"asyncflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a task and everything it needs",
        description="Run MODULE:TASK and every requirement that is not complete yet.",
    )
    _add_task_spec(run)
    _add_run_options(run)
    graph = commands.add_parser(
        "graph",
        help="print a task's graph without running it",
        description="Print the graph of MODULE:TASK (as if nothing were complete, unless --probe).",
    )
    _add_task_spec(graph)
    graph.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    graph.add_argument(
        "--probe", action="store_true", help="probe what is complete ([x]) and skip below it"
    )
    backfill = commands.add_parser(
        "backfill",
        help="run a task for every missing date (or hour) of a range",
        description="Run MODULE:TASK for every day (or hour) in [--start, --stop) that is "
        "not complete yet.",
    )
    _add_task_spec(backfill)
    backfill.add_argument("--start", required=True, help="first date (or hour), included")
    backfill.add_argument("--stop", required=True, help="last date (or hour), excluded")
    backfill.add_argument("--hourly", action="store_true", help="a range of hours, not days")
    backfill.add_argument(
        "--param", default=None, help="the date parameter (default: date, or date_hour)"
    )
    _add_run_options(backfill)
    history = commands.add_parser(
        "history",
        help="list recent runs from the journal",
        description="List the most recent runs recorded in the journal.",
    )
    _add_journal_option(history)
    history.add_argument(
        "--limit", type=_positive_int, default=20, help="runs to show (default 20)"
    )
    _add_status_option(history, RunStatus, "runs")
    show = commands.add_parser(
        "show",
        help="show one run's tasks and attempts",
        description="Show one run recorded in the journal: its attempts counted by "
        "status, then the first of them in order.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    _add_journal_option(show)
    show.add_argument(
        "--tracebacks", action="store_true", help="include the tracebacks of the attempts shown"
    )
    _add_status_option(show, AttemptStatus, "attempts")
    show.add_argument(
        "--limit",
        type=_count,
        default=_SHOWN,
        metavar="N",
        help=f"attempts to show (default {_SHOWN}; 0: all of them)",
    )
    _add_journal_commands(commands)
    _add_ui_command(commands)
    if task_cls is not None:
        for command in (run, graph, backfill):
            _add_task_params(command, task_cls)
    return parser


def _add_task_spec(command: argparse.ArgumentParser) -> None:
    command.add_argument("task", metavar="MODULE:TASK", help="e.g. pipelines.daily:Report")


def _add_run_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help=f"task bodies running at once (default: configured, else {DEFAULT_WORKERS})",
    )
    command.add_argument(
        "--resources",
        type=_amounts,
        action="append",
        default=[],
        metavar="NAME=AMOUNT[,...]",
        help="resource capacities, e.g. memory_gb=64,db=2",
    )
    journal = command.add_mutually_exclusive_group()
    journal.add_argument(
        "--journal",
        metavar="PATH|URL",
        help="run journal: a file or a postgresql:// URL (default: .asyncflow/journal.db)",
    )
    journal.add_argument("--no-journal", action="store_true", help="do not keep a journal")
    command.add_argument(
        "--fail-fast", action="store_true", help="stop at the first failure (default: keep going)"
    )
    command.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="FAMILY_OR_TASK_ID",
        help="run these even though complete (repeatable)",
    )
    command.add_argument(
        "--log-level",
        type=_log_level,
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default: configured, else INFO)",
    )
    command.add_argument("--log-format", default=None, choices=LOG_FORMATS)
    command.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=None,
        help="run the plain def run() bodies of tasks that say executor = 'dask' on this "
        "Dask scheduler, e.g. tcp://scheduler:8786 (needs asyncflow[dask])",
    )
    command.add_argument(
        "--dask-all-sync",
        action="store_true",
        help="with a Dask scheduler: every plain def run() body goes there, but those of "
        "tasks saying executor = 'local'",
    )
    command.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr: a live display on a terminal (then the log level "
        "defaults to WARNING), else a status line every few seconds (default: on)",
    )
    command.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT while the run lasts",
    )


_SHOWN = 200
"""Attempts `asyncflow show` lists unless asked otherwise."""


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return number


def _add_journal_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--journal",
        metavar="PATH|URL",
        help="a journal file or a postgresql:// URL (default: configured, else "
        ".asyncflow/journal.db)",
    )


def _add_status_option(
    command: argparse.ArgumentParser, kind: type[RunStatus] | type[AttemptStatus], what: str
) -> None:
    command.add_argument(
        "--status",
        type=_statuses(kind),
        action="extend",
        metavar="STATUS",
        help=f"only {what} that stand so (repeat it, or list them with commas): "
        + ", ".join(status.value for status in kind),
    )


def _statuses(kind: type[RunStatus] | type[AttemptStatus]) -> Any:
    """An argparse type: a comma list of ``kind``'s values."""

    def parse(text: str) -> list[Any]:
        found = []
        for value in filter(None, (part.strip() for part in text.split(","))):
            try:
                found.append(kind(value))
            except ValueError:
                known = ", ".join(status.value for status in kind)
                raise argparse.ArgumentTypeError(
                    f"unknown status {value!r} (expected {known})"
                ) from None
        return found

    return parse


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def _log_level(text: str) -> str:
    if not is_log_level(text):
        raise argparse.ArgumentTypeError(
            f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text!r}"
        )
    return text.upper()


def _amounts(text: str) -> dict[str, float]:
    try:
        amounts = parse_amounts(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    for name, amount in amounts.items():
        if not is_amount(amount):
            raise argparse.ArgumentTypeError(
                f"{name} must be a non-negative number, got {amount!r}"
            )
    return amounts


def _add_task_params(command: argparse.ArgumentParser, task_cls: type[Task]) -> None:
    group = command.add_argument_group(f"parameters of {task_cls.task_family}")
    for name, param in task_cls.get_params().items():
        flags = _flags(name)
        help_text = _param_help(param)
        if isinstance(param, BoolParameter):
            group.add_argument(
                *flags,
                dest=f"param_{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                *flags, dest=f"param_{name}", metavar=name.upper(), default=None, help=help_text
            )


def _flags(name: str) -> list[str]:
    dashed = name.replace("_", "-")
    return [f"--{dashed}"] if dashed == name else [f"--{dashed}", f"--{name}"]


def _param_help(param: Any) -> str:
    parts = [param.description] if param.description else []
    parts.append(param.type_name)
    if param.has_default:
        parts.append(f"default {param.default_text()}")
    else:
        parts.append("required")
    return "; ".join(parts)


def _run(args: argparse.Namespace, task_cls: type[Task]) -> int:
    config = Config.load()
    return _execute(_task_from_args(task_cls, args, config), args, config)


def _graph(args: argparse.Namespace, task_cls: type[Task]) -> int:
    config = Config.load()
    task = _task_from_args(task_cls, args, config)
    graph = anyio.run(functools.partial(expand, [task], probe=args.probe), backend="asyncio")
    return _write_out(render(graph, args.format))


def _write_out(text: str) -> int:
    """Write ``text`` and a newline on stdout; the exit code says whether it all got there."""
    try:
        _write_all(text + "\n")
    except BrokenPipeError:
        # The reader is gone (`| head`): stop quietly, as Python's documentation advises.
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        _drop_stdout()
        print(f"asyncflow: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


_CHUNK = 1 << 16


def _write_all(text: str) -> None:
    """Every character of ``text`` on stdout, or an OSError.

    The bytes go below the text layer, a piece at a time, until each piece is
    all written: over an unbuffered stdout (``python -u``, PYTHONUNBUFFERED) the
    text layer drops what a short write leaves, without an error, so a reader
    closing the pipe, or Linux's 2 GiB cap on one write, cut the output short
    with exit code 0.
    """
    stdout = sys.stdout
    stdout.flush()
    out = getattr(stdout, "buffer", None)
    if out is None:  # a stand-in stream (a test's capture), not a file
        stdout.write(text)
        stdout.flush()
        return
    if os.linesep != "\n":  # what the text layer would have done
        text = text.replace("\n", os.linesep)
    encoder = codecs.getincrementalencoder(stdout.encoding or "utf-8")(stdout.errors or "strict")
    for start in range(0, len(text), _CHUNK):
        data = memoryview(encoder.encode(text[start : start + _CHUNK]))
        while data:
            written = out.write(data)
            if written is None:  # a non-blocking stdout that is full
                raise BlockingIOError(errno.EAGAIN, "stdout is not ready for more")
            data = data[written:]
    out.flush()


def _drop_stdout() -> None:
    """Point stdout at the null device: what is left in its buffer would fail again
    when Python flushes it at exit ("Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (captured in a test): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _backfill(args: argparse.Namespace, task_cls: type[Task]) -> int:
    config = Config.load()
    param = args.param or ("date_hour" if args.hourly else "date")
    if getattr(args, f"param_{param}", None) is not None:
        raise UsageError(f"--{param.replace('_', '-')} is set by the range (--start/--stop)")
    fixed: dict[str, Any] = config.task_defaults(task_cls.task_family)
    fixed.pop(param, None)  # a configured default for the range's own parameter does not apply
    for name in task_cls.get_params():
        given = getattr(args, f"param_{name}")
        if given is not None:
            fixed[name] = given
    make = range_hourly if args.hourly else range_daily
    return _execute(make(task_cls, args.start, args.stop, param=param, **fixed), args, config)


def _journal_file(args: argparse.Namespace) -> Path | str:
    """The journal to read: a file that exists, or a PostgreSQL URL."""
    config = Config.load()
    where = args.journal or config.journal
    if where and is_postgres_url(where):
        return str(where)
    path = Path(where or Path(".asyncflow") / "journal.db")
    if not path.is_file():
        raise UsageError(f"no journal at {path} (pass --journal PATH or URL)")
    return path


def _history(args: argparse.Namespace) -> int:
    async def read() -> str:
        async with open_journal(_journal_file(args)) as journal:
            if not args.status:
                return format_runs(await journal.runs(args.limit))
            found = [
                run
                for status in dict.fromkeys(args.status)
                for run in await journal.find_runs(status=status, limit=args.limit)
            ]
        found.sort(key=lambda run: run.started, reverse=True)  # newest first, as runs()
        return format_runs(found[: args.limit])

    print(anyio.run(read, backend="asyncio"))
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    async def read() -> str | None:
        async with open_journal(_journal_file(args)) as journal:
            found = await journal.run_summary(args.run_id, requested=3)
            if found is None:
                return None
            wanted = set(args.status) if args.status else None
            total = sum(n for s, n in found.counts.items() if wanted is None or s in wanted)
            shown = await journal.run_attempts(
                args.run_id, statuses=wanted, limit=args.limit or None
            )
        page = dataclasses.replace(found, attempts=tuple(shown))
        return format_run(page, tracebacks=args.tracebacks, left_out=total - len(shown))

    text = anyio.run(read, backend="asyncio")
    if text is None:
        raise UsageError(f"no run {args.run_id!r} in the journal (see `asyncflow history`)")
    print(text)
    return EXIT_OK


def _add_journal_commands(commands: Any) -> None:
    journal = commands.add_parser(
        "journal", help="look after a journal file", description="Look after a journal file."
    )
    actions = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="check a journal file: SQLite's integrity check, and every row decodes",
        description="Check a journal file without changing it: SQLite's integrity_check, "
        "then every row of every table read back. Exit 0 and one line when it is whole; "
        "exit 2 and what is wrong otherwise.",
    )
    check.add_argument("path", metavar="PATH")
    prune = actions.add_parser(
        "prune",
        help="delete old runs, keeping every task's latest success",
        description="Delete runs that ended before --older-than and are not among the "
        "--keep-runs latest (give one or both), with their attempts and lease rows. Every "
        "task's latest successful attempt is kept (a task without outputs stays complete); "
        "runs going on are never touched. A journal file is then vacuumed, unless a run is "
        "going on. One line says what went; exit 2 on a damaged journal.",
    )
    _add_journal_option(prune)
    prune.add_argument(
        "--older-than",
        metavar="DURATION",
        type=_duration,
        help="prune runs that ended longer ago than this: 30d, 12h, 90m, 2w, 1d12h",
    )
    prune.add_argument(
        "--keep-runs",
        metavar="N",
        type=_count,
        help="keep the N latest runs whatever their age",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    prune.add_argument(
        "--no-vacuum",
        action="store_true",
        help="leave the freed pages in the file for later runs (no VACUUM)",
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+")


def _duration(text: str) -> timedelta:
    """A duration such as ``30d``, ``12h`` or ``1d12h``."""
    if not _DURATION.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30d, 12h, 90m or 1d12h, got {text!r}"
        )
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
    return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))


def _prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.keep_runs is None:
        raise UsageError("journal prune needs --older-than DURATION or --keep-runs N (or both)")

    async def prune() -> str:
        async with open_journal(_journal_file(args)) as journal:
            done = await journal.prune(
                older_than=args.older_than,
                keep_runs=args.keep_runs,
                dry_run=args.dry_run,
                vacuum=not args.no_vacuum,
            )
        return f"{journal.path}: {done.summary()}"

    print(anyio.run(prune, backend="asyncio"))
    return EXIT_OK


def _journal_check(args: argparse.Namespace) -> int:
    from .journal.check import check_journal

    if is_postgres_url(args.path):
        raise UsageError(
            f"journal check reads journal files; {describe(args.path)} is a PostgreSQL "
            "database, which checks its own pages (its rows are read strictly by "
            "`asyncflow history` and `show`)"
        )
    found = anyio.run(check_journal, Path(args.path), backend="asyncio")
    print(found.report(), file=sys.stdout if found.ok else sys.stderr)
    return EXIT_OK if found.ok else EXIT_USAGE


def _execute(task: Task, args: argparse.Namespace, config: Config) -> int:
    progress = args.progress is not False
    # The live display replaces the per-task log lines on a terminal.
    quiet = progress and sys.stderr.isatty()
    configure_logging(
        args.log_format or config.log_format or "auto",
        args.log_level or config.log_level or ("WARNING" if quiet else "INFO"),
    )
    if args.dask_scheduler is not None or args.dask_all_sync:
        config = dataclasses.replace(
            config,
            dask_scheduler=args.dask_scheduler or config.dask_scheduler,
            dask_all_sync=args.dask_all_sync or config.dask_all_sync,
        )
        if not config.dask_scheduler:
            raise ConfigError(
                "--dask-all-sync: no Dask scheduler to send bodies to "
                "(give --dask-scheduler ADDRESS, or configure dask_scheduler)"
            )
    options: dict[str, Any] = {
        "progress": progress,
        "force": args.force,
        "workers": args.workers,
        "resources": _resources(args.resources),
        "keep_going": False if args.fail_fast else None,
        "config": config,
    }
    if args.no_journal:
        options["journal"] = None
    elif args.journal:
        options["journal"] = args.journal
    with _metrics_served(args.metrics_port) as metrics:
        if metrics is not None:
            options["metrics"] = metrics
        result = anyio.run(_run_until_signalled, task, options, backend="asyncio")
    if result is None:
        print("asyncflow: interrupted; running tasks were cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.summary())
    return EXIT_OK if result.ok else EXIT_FAILED


def _task_from_args(task_cls: type[Task], args: argparse.Namespace, config: Config) -> Task:
    """The task: command-line values over the configuration's ``[Family]`` defaults.

    Raises:
        ParameterError: a value is missing or does not parse.
        UsageError: the task class raised something else while building the task.
    """
    try:
        return _build_task(task_cls, args, config)
    except AsyncflowError:
        raise
    except Exception as exc:
        raise UsageError(
            f"{task_cls.task_family}: cannot build the task: {_describe(exc)}"
        ) from None


def _build_task(task_cls: type[Task], args: argparse.Namespace, config: Config) -> Task:
    texts = config.task_defaults(task_cls.task_family)
    flags: dict[str, bool] = {}
    for name, param in task_cls.get_params().items():
        given = getattr(args, f"param_{name}")
        if given is None:
            continue
        if isinstance(param, BoolParameter):
            flags[name] = bool(given)
            texts.pop(name, None)
        else:
            texts[name] = given
    if not flags:
        return task_cls.from_str_params(texts)
    parsed = task_cls.from_str_params(texts).param_kwargs if texts else {}
    return task_cls(**{k: v for k, v in parsed.items() if k in texts}, **flags)


async def _run_until_signalled(task: Task, options: dict[str, Any]) -> RunResult | None:
    """Run; the first SIGINT/SIGTERM cancels the run cleanly, a second exits at once.

    Returns None when the run was interrupted. What run() raises comes out as
    itself (not in an exception group), for main() to report in one line.
    """
    result: RunResult | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as run_scope:
            tg.start_soon(_watch_signals, run_scope)
            try:
                result = await run(task, **options)
            except Exception as exc:
                error = exc
        tg.cancel_scope.cancel()  # stop watching
    if error is not None:
        raise error
    return result


async def _watch_signals(run_scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if run_scope.cancel_called:
                print("asyncflow: second signal, exiting now", file=sys.stderr, flush=True)
                os._exit(EXIT_INTERRUPTED)
            name = signal.Signals(signum).name
            print(
                f"asyncflow: {name}: cancelling running tasks (again to exit at once)",
                file=sys.stderr,
                flush=True,
            )
            run_scope.cancel()


def _resources(items: list[dict[str, float]]) -> dict[str, float]:
    capacities: dict[str, float] = {}
    for item in items:
        capacities.update(item)
    return capacities


# The web pages (asyncflow ui) and the metrics of a run (--metrics-port) ---------


def _add_ui_command(commands: Any) -> None:
    ui = commands.add_parser(
        "ui",
        help="serve the journal's status pages, JSON API and /metrics",
        description="Serve the runs, tasks and attempts of the journal as web pages (and "
        "JSON under /api/, Prometheus metrics at /metrics), read-only. It listens on "
        "127.0.0.1 unless --host says otherwise; any other address needs a token.",
    )
    _add_journal_option(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ui.add_argument("--port", type=_port, default=8082, help="port (8082; 0: any free one)")
    ui.add_argument(
        "--token",
        default=None,
        help="every request must carry it (Authorization: Bearer TOKEN, or ?token=TOKEN "
        "once in a browser); required off loopback; default: $ASYNCFLOW_UI_TOKEN",
    )
    ui.add_argument("--log-format", default=None, choices=LOG_FORMATS)


def _port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}")
    return number


def _ui(args: argparse.Namespace) -> int:
    try:
        from .web._serve import serve
    except ImportError as exc:
        raise UsageError(
            f"asyncflow ui needs the web extra ({exc}): pip install 'asyncflow[web]'"
        ) from None
    config = Config.load()
    configure_logging(args.log_format or config.log_format or "auto", "INFO")
    where = args.journal or config.journal
    journal = where if where and is_postgres_url(where) else Path(where or ".asyncflow/journal.db")
    serve(journal, host=args.host, port=args.port, token=args.token)
    return EXIT_OK


@contextlib.contextmanager
def _metrics_served(port: int | None) -> Iterator[PrometheusMetrics | None]:
    """With a port: metrics of the run on 127.0.0.1:PORT/metrics until the block ends."""
    if port is None:
        yield None
        return
    try:
        from prometheus_client import REGISTRY, start_http_server

        from .metrics import PrometheusMetrics
    except ImportError as exc:
        raise UsageError(
            f"--metrics-port needs prometheus-client ({exc}): pip install 'asyncflow[web]'"
        ) from None
    try:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        raise UsageError(
            f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
        ) from None
    log.info("metrics.serving", url=f"http://127.0.0.1:{server.server_port}/metrics")
    try:
        yield PrometheusMetrics(REGISTRY)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
