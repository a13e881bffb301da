from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sniffio
import structlog
from tests.fixtures.postgres import PostgresServer, PostgresUnavailable


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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Give every test the logging set-up it started with.

    ``configure_logging()`` (called by the command line, and by ``luigi.build()``
    as Luigi's own does) configures structlog and the root logger for the whole
    process: a test that calls it in-process must not change what later tests see.
    """
    configured = structlog.is_configured()
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    if configured:
        structlog.configure(**config)
    else:
        structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session (started on first use).

    Sync on purpose: an async session fixture would hold the anyio test
    runner for every later test (see the notes on the anyio plugin).
    """
    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database: ``postgresql://asyncflow@127.0.0.1:PORT/NAME``."""
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def postgres_module_dsn(postgres_server: PostgresServer) -> str:
    """Like ``postgres_dsn``, one database shared by the tests of a module."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a contract test's journal lives, once per backend: a file path in the
    test's folder, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.db")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn
