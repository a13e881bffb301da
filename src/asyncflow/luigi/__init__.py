"""Luigi's public API on asyncflow's engine: ``import asyncflow.luigi as luigi``.

A Luigi pipeline runs with only its import changed::

    import asyncflow.luigi as luigi

    class Hello(luigi.Task):
        name = luigi.Parameter(default="world")

        def output(self):
            return luigi.LocalTarget(f"hello-{self.name}.txt")

        def run(self):
            with self.output().open("w") as f:
                f.write(f"hello {self.name}\\n")

    luigi.build([Hello()], local_scheduler=True)

The tasks are asyncflow tasks: the same graph, executor, targets and journal
run them. What differs from Luigi is listed in ``docs/migrating-from-luigi.md``.
Nothing here is imported by ``import asyncflow``.
"""

from __future__ import annotations

from .. import __version__
from . import (
    configuration,
    date_interval,
    event,
    execution_summary,
    format,
    interface,
    local_target,
    mock,
    parameter,
    target,
    task,
    tools,
    util,
)
from .event import Event
from .execution_summary import LuigiRunResult, LuigiStatusCode
from .interface import build, run
from .local_target import LocalTarget
from .parameter import (
    BoolParameter,
    ChoiceListParameter,
    ChoiceParameter,
    DateHourParameter,
    DateIntervalParameter,
    DateMinuteParameter,
    DateParameter,
    DateSecondParameter,
    DictParameter,
    EnumListParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    MonthParameter,
    NumericalParameter,
    OptionalBoolParameter,
    OptionalChoiceParameter,
    OptionalDictParameter,
    OptionalFloatParameter,
    OptionalIntParameter,
    OptionalListParameter,
    OptionalNumericalParameter,
    OptionalParameter,
    OptionalPathParameter,
    OptionalStrParameter,
    OptionalTupleParameter,
    Parameter,
    PathParameter,
    StrParameter,
    TaskParameter,
    TimeDeltaParameter,
    TupleParameter,
    YearParameter,
)
from .target import Target
from .task import (
    Config,
    DynamicRequirements,
    ExternalTask,
    Task,
    WrapperTask,
    auto_namespace,
    namespace,
)
from .tools import deps_tree as _deps_tree  # noqa: F401  # luigi.tools.deps_tree after import
from .tools import range  # Luigi exposes luigi.range (autoloaded range tools)

__all__ = [
    "BoolParameter",
    "ChoiceListParameter",
    "ChoiceParameter",
    "Config",
    "DateHourParameter",
    "DateIntervalParameter",
    "DateMinuteParameter",
    "DateParameter",
    "DateSecondParameter",
    "DictParameter",
    "DynamicRequirements",
    "EnumListParameter",
    "EnumParameter",
    "Event",
    "ExternalTask",
    "FloatParameter",
    "IntParameter",
    "ListParameter",
    "LocalTarget",
    "LuigiRunResult",
    "LuigiStatusCode",
    "MonthParameter",
    "NumericalParameter",
    "OptionalBoolParameter",
    "OptionalChoiceParameter",
    "OptionalDictParameter",
    "OptionalFloatParameter",
    "OptionalIntParameter",
    "OptionalListParameter",
    "OptionalNumericalParameter",
    "OptionalParameter",
    "OptionalPathParameter",
    "OptionalStrParameter",
    "OptionalTupleParameter",
    "Parameter",
    "PathParameter",
    "StrParameter",
    "Target",
    "Task",
    "TaskParameter",
    "TimeDeltaParameter",
    "TupleParameter",
    "WrapperTask",
    "YearParameter",
    "__version__",
    "auto_namespace",
    "build",
    "configuration",
    "date_interval",
    "event",
    "execution_summary",
    "format",
    "interface",
    "local_target",
    "mock",
    "namespace",
    "parameter",
    "range",
    "run",
    "target",
    "task",
    "tools",
    "util",
]
