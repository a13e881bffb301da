"""Retries after a lost connection: they go over a new connection, not the pool's next one."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from asyncflow.targets import RequestRetry
from asyncflow.targets._clients import client_scope

from ._support import Backend
from .faults import FaultProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    """A proxy in front of the backend's server."""
    with FaultProxy(backend.endpoint, seed=6) as proxy:
        yield proxy


async def test_retry_after_a_dead_connection_goes_over_a_new_one(
    backend: Backend, proxy: FaultProxy
) -> None:
    """Every pooled connection silently dead: the first try times out, the retry gets through
    on a new connection instead of timing out on the next dead one."""
    # Each try gives up on a dead connection after a few seconds; 4 tries, 6 dead connections.
    config = backend.config(proxy.url).with_options(
        connect_timeout=1.0, read_timeout=1.5, retry=RequestRetry(attempts=4, base_delay=0.01)
    )
    probes = [backend.target(f"warm/{n}", config) for n in range(6)]
    for target in probes:
        await backend.target(target.key).write_bytes(b"x")
    async with client_scope():
        proxy.latency = 0.1  # the probes overlap: each opens a connection, then pools it
        async with anyio.create_task_group() as tg:
            for target in probes:
                tg.start_soon(target.exists)
        proxy.latency = 0.0
        stalled = proxy.stall_open_connections()
        assert stalled >= 4, stalled
        with anyio.fail_after(30):
            await backend.target("after.txt", config).write_bytes(b"through")
    assert await backend.target("after.txt").read_bytes() == b"through"
