"""asyncflow: an asyncio, single-process, embeddable workflow engine.

::

    import asyncflow

    class Report(asyncflow.Task):
        date = asyncflow.DateParameter()
        ...

    result = await asyncflow.run(Report(date=datetime.date(2026, 11, 23)))
    print(result.summary())
"""

from ._version import __version__
from .decorator import task
from .errors import (
    AsyncflowError,
    ConfigError,
    CycleError,
    GraphError,
    JournalError,
    MissingOutputError,
    ParameterError,
    ResourceError,
    TargetError,
    TargetNotFoundError,
    TaskDefinitionError,
    TaskError,
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
    TimeDeltaParameter,
)
from .result import RunResult, Status, TaskResult
from .runner import DEFAULT_WORKERS, build, run
from .targets import LocalTarget, MemoryTarget, Target
from .task import ExternalTask, Task, WrapperTask

__all__ = [
    "DEFAULT_WORKERS",
    "AsyncflowError",
    "BoolParameter",
    "ConfigError",
    "CycleError",
    "DateHourParameter",
    "DateParameter",
    "DictParameter",
    "EnumParameter",
    "Event",
    "ExternalTask",
    "FloatParameter",
    "GraphError",
    "IntParameter",
    "JournalError",
    "ListParameter",
    "LocalTarget",
    "MemoryTarget",
    "MissingOutputError",
    "Parameter",
    "ParameterError",
    "ResourceError",
    "RunResult",
    "Status",
    "Target",
    "TargetError",
    "TargetNotFoundError",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "TaskEvent",
    "TaskResult",
    "TimeDeltaParameter",
    "UpstreamFailed",
    "WrapperTask",
    "__version__",
    "build",
    "run",
    "task",
]
