"""Tasks the web tests journal: a success, a retry, a failure with a traceback.

``Report(day=d)`` requires ``Extract`` (succeeds), ``Flaky`` (fails once, then
succeeds on its retry) and ``Broken`` (fails for good; its parameter and its
error hold ``<script>``, which the pages must show as text). ``Gated`` waits
until its file exists, so a test can look at a run while it is live.
"""

from __future__ import annotations

import anyio

import asyncflow

SCRIPT = "<script>alert('x')</script>"

_tries: dict[str, int] = {}


class Extract(asyncflow.Task):
    day = asyncflow.DateParameter()

    async def run(self) -> None:
        pass


class Flaky(asyncflow.Task):
    day = asyncflow.DateParameter()
    retry_count = 1
    retry_delay = 0.0

    async def run(self) -> None:
        _tries[self.task_id] = tries = _tries.get(self.task_id, 0) + 1
        if tries == 1:
            raise ConnectionError("the warehouse hung up on the first try")


class Broken(asyncflow.Task):
    day = asyncflow.DateParameter()
    note = asyncflow.Parameter(default=SCRIPT)

    def requires(self) -> asyncflow.Task:
        return Extract(self.day)

    async def run(self) -> None:
        raise ValueError(f"bad row {SCRIPT}")


class Report(asyncflow.Task):
    day = asyncflow.DateParameter()

    def requires(self) -> list[asyncflow.Task]:
        return [Extract(self.day), Flaky(self.day), Broken(self.day)]

    async def run(self) -> None:
        pass


class Gated(asyncflow.Task):
    """Runs until the file ``path`` exists."""

    path = asyncflow.Parameter()

    async def run(self) -> None:
        while not await anyio.Path(self.path).exists():  # noqa: ASYNC110 (polls a file)
            await anyio.sleep(0.02)
