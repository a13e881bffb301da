"""Opt-in logging set-up for applications and the CLI.

asyncflow never configures logging by itself: importing or running it
installs no handler and writes nothing. Its records (``run.start``,
``task.start``, ``task.done``, ``task.failed``, ...) carry ``run_id`` and
``task_id`` and go to the stdlib logger ``asyncflow`` (or through structlog's
configuration when the application has configured structlog), so
``logging.basicConfig(level=logging.INFO)`` shows them and
``logging.getLogger("asyncflow").setLevel(...)`` filters them.

An application that wants asyncflow's own JSON or console output calls
:func:`configure_logging`; the command line does.

Hidden and private parameter values never reach a record asyncflow writes, and
the set-up :func:`configure_logging` installs masks them in what user code
logs by accident as well (:func:`redact_secrets`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from ._redact import known_secrets, redact

__all__ = ["configure_logging", "redact_secrets"]

_NOISY = ("botocore", "aiobotocore", "urllib3", "google", "gcsfs", "fsspec", "aiosqlite")


def configure_logging(
    fmt: str = "auto",
    level: int | str | None = None,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (default: stderr).

    It replaces the root logger's handlers and configures structlog: call it
    once, from an application's entry point, not from library code.

    Args:
        fmt: ``"json"`` (one object per line), ``"console"`` (for people), or
            ``"auto"``: ``ASYNCFLOW_LOG_FORMAT`` if set, else console on a
            terminal and JSON otherwise.
        level: the lowest level shown, as a number or a name (``"WARNING"``);
            default: ``ASYNCFLOW_LOG_LEVEL`` if set, else INFO.
        stream: where records go; default: whatever ``sys.stderr`` is when a
            record is written (so a live progress display can print them
            above itself).
        environ: the environment to read (default: ``os.environ``).

    Raises:
        ValueError: an unknown format or level.
    """
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = env.get("ASYNCFLOW_LOG_FORMAT") or ("console" if out.isatty() else "json")
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be 'json', 'console' or 'auto', got {fmt!r}")
    numeric = _level(level if level is not None else env.get("ASYNCFLOW_LOG_LEVEL") or "INFO")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = []
    renderer: Any
    if fmt == "json":
        tail = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False, max_frames=20)
            )
        ]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=_exception_formatter()
        )
    structlog.configure(
        # The stdlib level decides, first thing: logging.getLogger("asyncflow")
        # .setLevel() filters asyncflow's records, and a disabled one costs a
        # cached level check.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                renderer,
                redact_secrets,  # last: it sees the whole line, exceptions included
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def redact_secrets(logger: Any, method_name: str, event: Any) -> Any:
    """A structlog processor masking known secrets as ``***``.

    Known are the hidden and private parameter values of the tasks of the run
    in progress (in the context the record is made in) and the cloud
    credentials in ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``. It takes
    a rendered line (put it after the renderer: it then also sees formatted
    exceptions) or an event dict, whose strings it masks.
    """
    secrets = known_secrets()
    if not secrets:
        return event
    return _masked(event, secrets)


def _masked(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _masked(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secrets) for item in value]
    return value


def _exception_formatter() -> Any:
    """The console's traceback format, without local variables: their values
    could be secrets (structlog's rich tracebacks show them by default)."""
    if getattr(structlog.dev, "rich", None) is not None:
        return structlog.dev.RichTracebackFormatter(show_locals=False)
    return structlog.dev.plain_traceback


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr``, as stdlib's last-resort handler does."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; the current sys.stderr always wins


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value
