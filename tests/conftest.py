from __future__ import annotations

import inspect

import pytest
import sniffio


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncflow runs on asyncio; without this the anyio plugin also tries trio."""
    return "asyncio"


@pytest.fixture
async def _backend_guard(anyio_backend: str) -> None:
    """Fail loudly if a test silently ran on another backend than it asked for."""
    name = anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0]
    assert sniffio.current_async_library() == name


@pytest.fixture(autouse=True)
def _guard_async_tests(request: pytest.FixtureRequest) -> None:
    """Apply the backend guard to async tests only (sync tests must run loop-free)."""
    is_async = inspect.iscoroutinefunction(getattr(request.node, "function", None))
    if is_async and request.node.get_closest_marker("anyio") is not None:
        request.getfixturevalue("_backend_guard")
