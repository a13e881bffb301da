from __future__ import annotations

import types

import asyncflow

CONTRACT = {
    "Task",
    "WrapperTask",
    "ExternalTask",
    "task",
    "run",
    "build",
    "RunResult",
    "Status",
    "Event",
    "Target",
    "LocalTarget",
    "MemoryTarget",
    "ParameterError",
    "CycleError",
    "Parameter",
    "IntParameter",
    "FloatParameter",
    "BoolParameter",
    "DateParameter",
    "DateHourParameter",
    "TimeDeltaParameter",
    "EnumParameter",
    "ListParameter",
    "DictParameter",
}


def test_all_is_complete() -> None:
    """Every public name of the package is in __all__ and importable (the names
    imported on first use too: dir() lists them)."""
    public = {
        name
        for name in dir(asyncflow)
        if not name.startswith("_") and not isinstance(getattr(asyncflow, name), types.ModuleType)
    }
    assert public == set(asyncflow.__all__) - {"__version__"}


def test_all_has_no_duplicates() -> None:
    """__all__ lists each name once."""
    assert len(asyncflow.__all__) == len(set(asyncflow.__all__))


def test_contract_names_are_exported() -> None:
    """The names the design's contract promises are importable from asyncflow."""
    assert set(asyncflow.__all__) >= CONTRACT
