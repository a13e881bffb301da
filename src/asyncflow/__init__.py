"""asyncflow: an asyncio, single-process, embeddable workflow engine.

::

    import asyncflow

    class Report(asyncflow.Task):
        date = asyncflow.DateParameter()
        ...

    result = await asyncflow.run(Report(date=datetime.date(2026, 11, 23)))
    print(result.summary())
"""

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
from .targets import (
    BigQueryTarget,
    DuckDBTarget,
    GCSTarget,
    LocalTarget,
    MemoryTarget,
    PostgresTarget,
    S3Target,
    TableTarget,
    Target,
)
from .task import ExternalTask, Task, WrapperTask

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
