"""Configuration: ``asyncflow.toml``, ``[tool.asyncflow]`` in ``pyproject.toml``, ``ASYNCFLOW_*``.

Nothing is read at import. :meth:`Config.load` reads, in increasing order of
precedence:

1. ``asyncflow.toml`` in the working folder, or else the ``[tool.asyncflow]``
   table of its ``pyproject.toml``;
2. environment variables ``ASYNCFLOW_WORKERS``, ``ASYNCFLOW_JOURNAL``,
   ``ASYNCFLOW_RESOURCES`` (``memory_gb=64,db=2``), ``ASYNCFLOW_MAX_RUNNING``
   (``Export=2``), ``ASYNCFLOW_KEEP_GOING``, ``ASYNCFLOW_LOG_LEVEL``,
   ``ASYNCFLOW_LOG_FORMAT``, ``ASYNCFLOW_DASK_SCHEDULER``,
   ``ASYNCFLOW_DASK_ALL_SYNC``.

Arguments given to ``run()`` or on the command line override both. The file::

    workers = 8
    journal = ".asyncflow/journal.db"   # "" turns the journal off; or postgresql://...
    keep_going = true
    lease_ttl = 30                      # seconds a journal lease lasts without a heartbeat
    dask_scheduler = "tcp://scheduler:8786"  # plain def run() bodies that opt in go there
    dask_all_sync = false               # true: every plain def run() body goes there

    [resources]
    memory_gb = 64

    [max_running]
    HeavyTransform = 2

    [Report]             # any other table: parameter defaults of a task family
    date = "2026-11-23"  # (applied by the command line)
    password = "${DB_PASSWORD}"  # an environment variable, read when the task is built

In a ``[Family]`` value, ``${NAME}`` stands for environment variable ``NAME``
(``$${`` for a literal ``${``), so that secrets stay out of the file.

Numbers are checked against sane bounds, wherever they come from (file,
variable, ``Config(...)``, ``run()`` arguments); a value out of range is a
:class:`~asyncflow.ConfigError` naming the setting and where it was set:

* ``workers`` (and ``run(probe_concurrency=...)``): an integer from 1 to
  :data:`MAX_WORKERS` (10,000: more would be more threads than a machine runs);
* ``lease_ttl``: from :data:`LEASE_TTL_MIN` to :data:`LEASE_TTL_MAX` seconds
  (1 s to one day): a shorter lease expires between two heartbeats, so another
  process would take over a task that is still running; a longer one keeps a
  crashed run's tasks locked for that long;
* ``resources`` amounts: from 0 to 10**15 (NaN and infinity are refused);
* ``max_running`` limits: an integer >= 1.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError, short_repr
from .resources import AMOUNT, is_amount

__all__ = [
    "LEASE_TTL_MAX",
    "LEASE_TTL_MIN",
    "LOG_FORMATS",
    "MAX_WORKERS",
    "Config",
    "check_amounts",
    "check_journal_path",
    "check_limits",
    "check_positive_int",
    "is_log_level",
    "parse_amounts",
]

MAX_WORKERS: Final = 10_000
"""The most ``workers`` (or ``probe_concurrency``) a run takes."""
LEASE_TTL_MIN: Final = 1.0
"""The shortest ``lease_ttl``, in seconds: a lease must outlive a heartbeat's trip."""
LEASE_TTL_MAX: Final = 86_400.0
"""The longest ``lease_ttl``, in seconds (a day): how long a crashed run may keep its
tasks from others."""

_SCALARS = {
    "workers",
    "journal",
    "keep_going",
    "lease_ttl",
    "log_level",
    "log_format",
    "dask_scheduler",
    "dask_all_sync",
}
_TABLES = {"resources", "max_running"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Config:
    """Settings for runs; every field is optional (None: not configured)."""

    workers: int | None = None
    journal: str | None = None
    """A path, or a ``postgresql://`` URL; ``""`` means no journal; None means not configured."""
    keep_going: bool | None = None
    lease_ttl: float | None = None
    """Seconds a journal lease lasts without a heartbeat (default 30)."""
    log_level: str | None = None
    log_format: str | None = None
    dask_scheduler: str | None = None
    """The address of a Dask scheduler (``tcp://host:8786``): runs send task
    bodies there (see :class:`asyncflow.dask.DaskExecutor`)."""
    dask_all_sync: bool | None = None
    """Send every plain ``def run()`` body to the Dask scheduler, not only
    those of tasks with ``executor = "dask"``."""
    resources: dict[str, float] = field(default_factory=dict)
    max_running: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)
    """Parameter defaults by task family, as text."""
    source: str | None = None
    """The file the settings came from, if any."""

    def __post_init__(self) -> None:
        """Check the settings of a ``Config(...)`` built in code (``load`` has
        checked its own already, naming the file or variable)."""
        if self.workers is not None:
            check_positive_int("Config.workers", self.workers, MAX_WORKERS)
        if self.lease_ttl is not None:
            _lease_ttl("Config.lease_ttl", self.lease_ttl)
        if self.journal is not None:
            check_journal_path("Config.journal", self.journal)
        check_amounts("Config.resources", self.resources)
        check_limits("Config.max_running", self.max_running)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Read the configuration file of ``directory`` (default: cwd) and ``environ``.

        Raises:
            ConfigError: a file does not parse or holds a bad value; the message
                names the file and the key.
        """
        folder = Path(directory) if directory is not None else Path.cwd()
        values, source = _read_file(folder)
        known, tasks = _check_file(values, source) if source is not None else ({}, {})
        # A variable overrides the file's setting, and its errors name the variable.
        known.update(_read_environ(os.environ if environ is None else environ))
        return cls(**known, tasks=tasks, source=source)

    def task_defaults(
        self, family: str, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The parameter defaults a ``[Family]`` section gives, as text.

        ``${NAME}`` in a value is replaced by environment variable ``NAME`` of
        ``environ`` (default: ``os.environ``), read now.

        Raises:
            ConfigError: a variable is not set, or ``${...}`` names none; the
                message names the file, the section, the key and the variable.
        """
        env = os.environ if environ is None else environ
        where = self.source or "configuration"
        return {
            name: _expand(text, env, f"{where}: [{family}] {name}")
            for name, text in self.tasks.get(family, {}).items()
        }


def _check_file(
    values: dict[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The settings and ``[Family]`` sections of a file, checked; errors name ``source``."""
    known: dict[str, Any] = {}
    tasks: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        if key in _SCALARS:
            known[key] = _scalar(key, value, f"{source}: {key}")
        elif key in _TABLES:
            known[key] = _table(key, value, f"{source}: {key}.", source)
        elif isinstance(value, dict):
            tasks[key] = {name: _text(v) for name, v in value.items()}
        else:
            raise ConfigError(
                f"{source}: unknown setting {key!r} (settings: "
                f"{', '.join(sorted(_SCALARS | _TABLES))}; tables name task families)"
            )
    return known, tasks


def _read_file(folder: Path) -> tuple[dict[str, Any], str | None]:
    own = folder / "asyncflow.toml"
    if own.is_file():
        return _parse_toml(own), str(own)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        table = _parse_toml(pyproject).get("tool", {}).get("asyncflow")
        if table is not None:
            if not isinstance(table, dict):
                raise ConfigError(f"{pyproject}: [tool.asyncflow] must be a table")
            return dict(table), f"{pyproject} [tool.asyncflow]"
    return {}, None


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _read_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings ``ASYNCFLOW_*`` variables give, checked; errors name the variable."""
    values: dict[str, Any] = {}
    for key in sorted(_SCALARS | _TABLES):
        variable = f"ASYNCFLOW_{key.upper()}"
        text = environ.get(variable)
        if text is None:
            continue
        if key in _TABLES:
            amounts = parse_amounts(text, variable)
            values[key] = _table(key, amounts, f"{variable}: ", variable)
        else:
            values[key] = _scalar(key, text, variable)
    return values


def parse_amounts(text: str, where: str | None = None) -> dict[str, float]:
    """``"memory_gb=64,db=2"`` as ``{"memory_gb": 64, "db": 2}``.

    Raises:
        ConfigError: a pair is not NAME=NUMBER; the message begins with
            ``where`` when given.
    """
    prefix = f"{where}: " if where else ""
    amounts: dict[str, float] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        name, sep, amount = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{prefix}expected NAME=AMOUNT, got {pair.strip()!r}")
        try:
            value = float(amount)
        except ValueError:
            raise ConfigError(f"{prefix}{name.strip()}: {amount!r} is not a number") from None
        amounts[name.strip()] = int(value) if value.is_integer() else value
    return amounts


def _scalar(key: str, value: Any, label: str) -> Any:
    """``value`` of setting ``key``, checked; ``label`` names it in errors (file and key,
    or the variable)."""
    if key == "workers":
        return check_positive_int(label, _int(value), MAX_WORKERS, shown=value)
    if key in ("keep_going", "dask_all_sync"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{label} must be true or false, got {value!r}")
    if key == "lease_ttl":
        return _lease_ttl(label, value)
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {short_repr(value)}")
    if key == "journal":
        return check_journal_path(label, value)
    if key == "log_level" and not is_log_level(value):
        raise ConfigError(f"{label} must be {_LEVELS}, got {value!r}")
    if key == "log_format" and value not in LOG_FORMATS:
        raise ConfigError(f"{label} must be auto, console or json, got {value!r}")
    return value


def check_positive_int(
    label: str, value: object, maximum: int | None = None, *, shown: object = None
) -> int:
    """``value``, if it is an int from 1 to ``maximum``.

    Raises:
        ConfigError: it is not; the message begins with ``label`` and quotes
            ``shown`` (default: the value).
    """
    quoted = short_repr(value if shown is None else shown)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{label} must be a positive integer, got {quoted}")
    if maximum is not None and value > maximum:
        raise ConfigError(
            f"{label} must be a positive integer of at most {maximum:,}, got {quoted}"
        )
    return value


def check_amounts(label: str, amounts: Mapping[Any, object]) -> None:
    """Check resource amounts: each from 0 to 10**15.

    Raises:
        ConfigError: one is not; the message names ``label[name]``.
    """
    for name, amount in amounts.items():
        if not isinstance(name, str) or not is_amount(amount):
            raise ConfigError(f"{label}[{name!r}] must be {AMOUNT}, got {short_repr(amount)}")


def check_limits(label: str, limits: Mapping[Any, object]) -> None:
    """Check per-family limits: each a positive int.

    Raises:
        ConfigError: one is not; the message names ``label[family]``.
    """
    for family, limit in limits.items():
        check_positive_int(f"{label}[{family!r}]", limit)


def check_journal_path(label: str, path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``path``, if the operating system can take it as a path.

    Raises:
        ConfigError: it holds a NUL character; the message names ``label``.
    """
    if "\x00" in os.fspath(path):
        raise ConfigError(f"{label} must be a path, got {short_repr(path)} (a NUL character)")
    return path


def _lease_ttl(label: str, value: object) -> float:
    seconds = _float(value)
    if seconds is None or not seconds > 0:
        raise ConfigError(f"{label} must be a number of seconds > 0, got {short_repr(value)}")
    if not LEASE_TTL_MIN <= seconds <= LEASE_TTL_MAX:
        raise ConfigError(
            f"{label} must be from {LEASE_TTL_MIN:g} to {LEASE_TTL_MAX:g} seconds (a day), got "
            f"{short_repr(value)}: a shorter lease runs out between two heartbeats (another "
            "process would take over a running task), a longer one keeps a crashed run's "
            "tasks locked that long"
        )
    return seconds


def is_log_level(name: str) -> bool:
    """Whether ``name`` is a logging level's name (any case): DEBUG, INFO, WARNING..."""
    return name.upper() in logging.getLevelNamesMapping()


LOG_FORMATS: Final = ("auto", "console", "json")
_LEVELS: Final = "DEBUG, INFO, WARNING, ERROR or CRITICAL"


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        return math.inf
    except (TypeError, ValueError):
        return None


def _table(key: str, value: Any, prefix: str, where: str) -> dict[str, Any]:
    """Table ``key``, checked; an entry's errors name it as ``prefix`` + its name."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table of NAME = NUMBER")
    table: dict[str, Any] = {}
    for name, amount in value.items():
        if key == "max_running":
            table[name] = check_positive_int(f"{prefix}{name}", _int(amount), shown=amount)
        else:
            if not is_amount(amount):
                raise ConfigError(f"{prefix}{name} must be {AMOUNT}, got {short_repr(amount)}")
            table[name] = amount
    return table


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


_REFERENCE: Final = re.compile(r"\$(\$?)\{([^}]*)\}")
_VARIABLE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand(text: str, environ: Mapping[str, str], where: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the variable's value, ``$${`` by ``${``."""
    if "${" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if _VARIABLE.fullmatch(name) is None:
            raise ConfigError(
                f"{where}: ${{{name}}} does not name an environment variable "
                "(write $${ for a literal ${)"
            )
        found = environ.get(name)
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found

    return _REFERENCE.sub(value, text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
