from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest

import asyncflow
from asyncflow.targets._clients import borrow_client, client_scope, current_clients

pytestmark = pytest.mark.anyio


class FakeClient:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.closed = False


def factory_for(log: list[str]):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def make() -> AsyncIterator[FakeClient]:
        client = FakeClient(log)
        log.append("open")
        await anyio.lowlevel.checkpoint()  # concurrent first uses must still share one client
        try:
            yield client
        finally:
            client.closed = True
            log.append("close")

    return make


async def test_scope_shares_one_client_and_closes_it() -> None:
    """Inside a scope every borrower gets the same client, closed at the end."""
    log: list[str] = []
    seen: list[FakeClient] = []

    async def borrow() -> None:
        async with borrow_client("k", factory_for(log)) as client:
            seen.append(client)

    async with client_scope():
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(borrow)
        assert log == ["open"]
    assert log == ["open", "close"]
    assert len({id(c) for c in seen}) == 1 and seen[0].closed


async def test_outside_a_scope_each_borrow_is_its_own_client() -> None:
    """Without a run, a client lives for one block only."""
    log: list[str] = []
    async with borrow_client("k", factory_for(log)) as client:
        assert not client.closed
    assert client.closed and log == ["open", "close"]


async def test_a_run_opens_a_scope() -> None:
    """Task bodies run inside the run's client scope; it is gone afterwards."""
    scopes: list[object] = []

    class Peek(asyncflow.Task):
        async def run(self) -> None:
            scopes.append(current_clients())

    await asyncflow.run(Peek(), journal=None)
    assert scopes and scopes[0] is not None
    assert current_clients() is None
