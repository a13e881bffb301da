"""Names a package exports but imports only when first used (PEP 562).

``import asyncflow`` should cost little: the S3, GCS and table targets and the
journal's SQLite parts load when a program first touches them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    ``where`` maps each lazy name to the module (relative to ``package``) that
    defines it. The first access imports that module and keeps the value in the
    package's namespace; ``dir()`` lists the lazy names from the start.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *where})

    return __getattr__, __dir__
