"""Where asyncflow's log records go.

asyncflow never sets logging up. Its records go

* through structlog's configuration when the application has configured
  structlog (so structlog users keep their processors, renderers and levels);
* otherwise to the stdlib logger ``asyncflow``: like any library's records,
  nothing below WARNING shows unless the application sets logging up
  (``logging.basicConfig(level=logging.INFO)``), and warnings and errors reach
  stderr through stdlib's last-resort handler.

Structlog's own default (no configuration) would print every record in colour
on stdout, which is what a library must not do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from typing import Any, Final

__all__ = ["LOGGER_NAME", "enabled", "log", "logger"]

LOGGER_NAME: Final = "asyncflow"

# Attributes a LogRecord has already: extra fields of these names are left out
# of ``extra`` (stdlib refuses to overwrite them) but stay in the message.
_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def logger() -> Any:
    """asyncflow's logger as things stand now (see the module docstring).

    A run takes it once, at its start, and asks it once whether INFO is
    enabled, so a disabled level costs the hot paths nothing.

    structlog is imported here, at the first record or run, not with the
    package: it imports rich, which would add tens of milliseconds to
    ``import asyncflow``.
    """
    import structlog

    if structlog.is_configured():
        return structlog.get_logger(LOGGER_NAME)
    return _stdlib()


def enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` would emit at ``level`` (so hot paths can skip building records)."""
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return True
    try:
        return bool(check(level))
    except Exception:
        return True


class _Deferred:
    """A module-level logger that chooses where a record goes when it is logged."""

    def __getattr__(self, name: str) -> Any:
        return getattr(logger(), name)


log: Final = _Deferred()
"""For records logged outside a run's own logger (rare paths: failures, warnings)."""


def _to_stdlib(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> tuple[Any, ...]:
    """Render a record for a stdlib handler: ``event key=value ...`` as the
    message, the fields also as ``extra`` attributes for structured handlers."""
    event = event_dict.pop("event", "")
    kwargs: dict[str, Any] = {}
    for key in ("exc_info", "stack_info"):
        if key in event_dict:
            kwargs[key] = event_dict.pop(key)
    fields = " ".join(f"{key}={_logfmt(value)}" for key, value in event_dict.items())
    kwargs["extra"] = {k: v for k, v in event_dict.items() if k not in _RECORD_FIELDS}
    return (f"{event} {fields}" if fields else str(event),), kwargs


def _logfmt(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return repr(text)
    return text


@functools.cache
def _stdlib() -> Any:
    """The logger for applications that have not configured structlog (made once)."""
    import structlog

    return structlog.stdlib.BoundLogger(
        logging.getLogger(LOGGER_NAME),
        # The level check first: a disabled record costs one cached stdlib lookup.
        [structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars, _to_stdlib],
        {},
    )
