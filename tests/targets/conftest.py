"""Fixtures shared by the target tests: one ``target_factory`` per backend.

A new backend joins the contract suite by adding a param to ``target_factory``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncflow.targets import LocalTarget, MemoryStore, MemoryTarget
from asyncflow.targets.memory import default_store

from ._support import AsyncOnlyTarget, TargetFactory


@pytest.fixture(params=["local", "memory", "async-only"])
def target_factory(request: pytest.FixtureRequest, tmp_path: Path) -> TargetFactory:
    """Return a callable making a fresh target of one backend from a name."""
    if request.param == "local":
        return lambda name: LocalTarget(tmp_path / name)
    if request.param == "memory":
        store = MemoryStore()
        return lambda name: MemoryTarget(name, store)
    data: dict[str, bytes] = {}
    return lambda name: AsyncOnlyTarget(name, data)


@pytest.fixture
def clean_default_store() -> Iterator[MemoryStore]:
    """Yield the process-wide memory store, empty, and empty it again afterwards."""
    store = default_store()
    store.clear()
    yield store
    store.clear()
