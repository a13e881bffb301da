from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sniffio


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncflow runs on asyncio; without this the anyio plugin also tries trio."""
    return "asyncio"


@pytest.fixture(autouse=True)
async def _assert_real_backend(anyio_backend: str) -> AsyncIterator[None]:
    """Fail loudly if a test silently ran on another backend than it asked for."""
    name = anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0]
    assert sniffio.current_async_library() == name
    yield
