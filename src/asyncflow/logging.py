"""Opt-in logging set-up for applications and the CLI.

asyncflow logs through structlog (logger name ``asyncflow``) with ``run_id``
and ``task_id`` bound as context variables, and never configures logging by
itself: importing or running it installs no handler. An application that has
no logging set-up of its own may call :func:`configure_logging`; the command
line does.
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
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (default stderr).

    Args:
        fmt: ``"json"`` (one object per line), ``"console"`` (for people), or
            ``"auto"``: ``ASYNCFLOW_LOG_FORMAT`` if set, else console on a
            terminal and JSON otherwise.
        level: the lowest level shown, as a number or a name (``"WARNING"``).

    Raises:
        ValueError: an unknown format or level.
    """
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = env.get("ASYNCFLOW_LOG_FORMAT") or ("console" if stream.isatty() else "json")
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be 'json', 'console' or 'auto', got {fmt!r}")
    numeric = _level(level)
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
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
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


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value
