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
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]

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
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
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
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


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
