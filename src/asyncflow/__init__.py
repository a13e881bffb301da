"""asyncflow: an asyncio, single-process, embeddable workflow engine.

::

    import asyncflow

    class Report(asyncflow.Task):
        date = asyncflow.DateParameter()
        ...

    result = await asyncflow.run(Report(date=datetime.date(2026, 11, 23)))
    print(result.summary())
"""

import typing as _typing

from ._lazy import lazy_names as _lazy_names
from ._retry import RetryPolicy
from ._version import __version__
from .config import Config
from .dag import check_dag
from .decorator import task
from .errors import (
    AsyncflowError,
    ConfigError,
    CycleError,
    GraphError,
    JournalError,
    MissingOutputError,
    ParameterError,
    PermanentError,
    ResourceError,
    TargetError,
    TargetNotFoundError,
    TaskDefinitionError,
    TaskError,
    TaskTimeout,
    UpstreamFailed,
)
from .events import Event, TaskEvent
from .parameters import (
    BoolParameter,
    DateHourParameter,
    DateParameter,
    DictParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    Parameter,
    ParameterVisibility,
    TimeDeltaParameter,
    env,
)
from .ranges import range_daily, range_hourly
from .result import Attempt, RunResult, Status, TaskResult
from .runner import DEFAULT_WORKERS, build, run
from .targets import LocalTarget, MemoryTarget, Target
from .task import ExternalTask, Task, WrapperTask

if _typing.TYPE_CHECKING:
    from .targets import (
        BigQueryTarget,
        DuckDBTarget,
        GCSTarget,
        PostgresTarget,
        S3Target,
        TableTarget,
    )

# The remote and table targets are imported when first used: importing
# asyncflow stays cheap for programs that never touch them.
__getattr__, __dir__ = _lazy_names(
    __name__,
    dict.fromkeys(
        (
            "BigQueryTarget",
            "DuckDBTarget",
            "GCSTarget",
            "PostgresTarget",
            "S3Target",
            "TableTarget",
        ),
        ".targets",
    ),
)

__all__ = [
    "DEFAULT_WORKERS",
    "AsyncflowError",
    "Attempt",
    "BigQueryTarget",
    "BoolParameter",
    "Config",
    "ConfigError",
    "CycleError",
    "DateHourParameter",
    "DateParameter",
    "DictParameter",
    "DuckDBTarget",
    "EnumParameter",
    "Event",
    "ExternalTask",
    "FloatParameter",
    "GCSTarget",
    "GraphError",
    "IntParameter",
    "JournalError",
    "ListParameter",
    "LocalTarget",
    "MemoryTarget",
    "MissingOutputError",
    "Parameter",
    "ParameterError",
    "ParameterVisibility",
    "PermanentError",
    "PostgresTarget",
    "ResourceError",
    "RetryPolicy",
    "RunResult",
    "S3Target",
    "Status",
    "TableTarget",
    "Target",
    "TargetError",
    "TargetNotFoundError",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "TaskEvent",
    "TaskResult",
    "TaskTimeout",
    "TimeDeltaParameter",
    "UpstreamFailed",
    "WrapperTask",
    "__version__",
    "build",
    "check_dag",
    "env",
    "range_daily",
    "range_hourly",
    "run",
    "task",
]
