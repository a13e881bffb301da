"""The PostgreSQL journal rides out a short outage (a restart, a failover) and ends
the run, with one clear error, when the database stays away longer than its
patience; a statement sent again after its connection was lost never journals
twice, takes a lease twice, or leaves one its run does not know of.

The outages are real: the run's backends terminated by ``pg_terminate_backend``
while one of its statements waits on a table another connection locked (so
the statement is surely in flight, and surely not committed), or a server
stopped for good. An answer lost after its statement committed cannot be
made by the server: there a pool hands the journal connections whose answer
to one chosen statement is lost after the statement ran (the connection is
closed, and the driver's own error raised), as a network failure would.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest
import structlog.testing
from anyio.abc import TaskStatus
from tests.fixtures.postgres import PostgresServer, query

import asyncflow
from asyncflow.config import Config
from asyncflow.errors import JournalError
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import LeaseOutcome, PostgresJournal, RunStatus

pytestmark = pytest.mark.anyio

TASKS = 300
OUTAGE_AT = 150

ran: collections.Counter[tuple[str, int]] = collections.Counter()
"""Bodies run, by database and task number."""
outages: dict[str, Callable[[], Awaitable[None]]] = {}
"""What task OUTAGE_AT of a database's run does to that database."""


class Leaf(asyncflow.Task):
    """A task without output: complete only through its journaled success."""

    db = asyncflow.Parameter()
    i = asyncflow.IntParameter()

    async def run(self) -> None:
        ran[self.db, self.i] += 1
        if self.i == OUTAGE_AT:
            await outages[self.db]()


def leaves(dsn: str) -> list[Leaf]:
    return [Leaf(db=dsn, i=i) for i in range(TASKS)]


async def terminate_mid_statement(
    dsn: str, table: str, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> int:
    """Lock ``table`` (then tell the caller), wait until a statement of another session
    waits for it, then terminate every other session of the database (a fast
    restart, as its clients see it). Returns how many sessions were terminated."""
    db = await asyncpg.connect(dsn)
    try:
        async with db.transaction():
            await db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            task_status.started()
            with anyio.fail_after(20):
                while True:  # (no event to wait for: the server's state is polled)
                    waiting = await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND pid <> pg_backend_pid() "
                        "AND wait_event_type = 'Lock'"
                    )
                    if waiting:
                        break
                    await anyio.sleep(0.01)
            killed: int = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        return killed
    finally:
        await db.close()


async def successes(dsn: str) -> collections.Counter[str]:
    rows = await query(dsn, "SELECT task_id FROM attempts WHERE status = 'success'")
    return collections.Counter(str(task_id) for (task_id,) in rows)


# ------------------------------------------------------------------- a whole run


async def test_a_run_rides_out_its_sessions_terminated_mid_statement(postgres_dsn: str) -> None:
    """The run's sessions are terminated while its batch waits on a lock: the run goes
    on, each task's body ran once and each has one success journaled, and the outage
    is one warning (the run failed: cannot write the journal)."""
    killed: list[int] = []

    async def outage() -> None:
        killed.append(await terminate_mid_statement(postgres_dsn, "attempts"))

    outages[postgres_dsn] = outage
    with structlog.testing.capture_logs() as logs:
        result = await asyncflow.run(leaves(postgres_dsn), journal=postgres_dsn)
    assert result.ok, result.summary()
    assert killed and killed[0] >= 1
    assert [ran[postgres_dsn, i] for i in range(TASKS)] == [1] * TASKS
    done = await successes(postgres_dsn)
    assert sorted(done) == sorted(task.task_id for task in leaves(postgres_dsn))
    assert set(done.values()) == {1}
    events = [entry["event"] for entry in logs]
    assert events.count("journal.unreachable") == 1
    assert events.count("journal.reachable_again") == 1


async def test_an_outage_longer_than_the_patience_ends_the_run_naming_the_journal() -> None:
    """The server stops for good mid-run: after the patience (lease_ttl, here 1 s) the
    run ends with one JournalError naming the URL, without its password, and how
    long it waited; one warning, not one per statement."""
    server = PostgresServer()
    server.start()
    try:
        dsn = server.create_database()
        secret = dsn.replace("asyncflow@", "asyncflow:hunter2@")  # trust: any password goes

        async def outage() -> None:
            await anyio.to_thread.run_sync(server.stop)

        outages[dsn] = outage
        with (
            structlog.testing.capture_logs() as logs,
            pytest.raises(JournalError) as raised,
        ):
            await asyncflow.run(leaves(dsn), journal=secret, config=Config(lease_ttl=1.0))
    finally:
        server.stop()
    message = str(raised.value)
    assert message.startswith(f"{dsn.replace('asyncflow@', 'asyncflow:***@')}: cannot ")
    assert "hunter2" not in message
    assert "the database has been unreachable for" in message
    assert "(patience 1 s)" in message
    assert [entry["event"] for entry in logs].count("journal.unreachable") == 1


# ----------------------------------------------- statements sent again, one by one


class _LosingConnection:
    """A pooled connection whose answer to the statement ``lose`` matches is lost
    after the statement ran: the connection is closed, and the driver's error raised."""

    def __init__(self, db: Any, pool: LosingPool) -> None:
        self._db = db
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    async def fetch(self, statement: str, *args: Any) -> Any:
        rows = await self._db.fetch(statement, *args)
        if self._pool.lose in statement and self._pool.left:
            self._pool.left -= 1
            self._db.terminate()
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return rows


class LosingPool:
    """The journal's pool, whose connections lose the answer to ``lose`` ``times`` times."""

    def __init__(self, pool: Any, lose: str, times: int = 1) -> None:
        self._pool = pool
        self.lose = lose
        self.left = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def acquire(self) -> Any:
        pool = self

        class _Acquired:
            async def __aenter__(self) -> _LosingConnection:
                self._inner = pool._pool.acquire()
                return _LosingConnection(await self._inner.__aenter__(), pool)

            async def __aexit__(self, *exc: object) -> None:
                await self._inner.__aexit__(*exc)

        return _Acquired()


@contextlib.asynccontextmanager
async def losing(dsn: str, lose: str) -> AsyncIterator[tuple[PostgresJournal, LosingPool]]:
    """A journal whose connections lose the answer to the statement ``lose`` once."""
    async with PostgresJournal.open(dsn) as journal:
        losing = LosingPool(journal._store.pool, lose)
        journal._store.pool = losing
        yield journal, losing


async def test_a_claim_whose_answer_was_lost_after_it_took_the_leases_takes_them_once(
    postgres_dsn: str,
) -> None:
    """The take committed and its answer was lost: sent again, it finds the leases its
    own and returns them under the token they were taken with; the database holds
    each lease once, by this run, and releasing them leaves none held."""
    ids = [f"task-{n}" for n in range(50)]
    async with losing(postgres_dsn, "INSERT INTO leases") as (journal, pool):
        await journal.begin_run("run-1", ids)
        claim = await journal.claim("run-1", ids, since=0.0)
        assert pool.left == 0  # the answer was lost once
        rows = await query(postgres_dsn, "SELECT task_id, run_id, token, outcome FROM leases")
        assert sorted(claim.taken) == sorted(ids) == sorted(str(row[0]) for row in rows)
        assert {(row[1], row[3]) for row in rows} == {("run-1", None)}
        assert claim.tokens == {str(row[0]): int(row[2]) for row in rows}
        assert not claim.held and not claim.abandoned
        for task_id in ids:
            assert await journal.release(task_id, "run-1", LeaseOutcome.SUCCESS)
        await journal.end_run("run-1", RunStatus.SUCCESS)
    held = await query(postgres_dsn, "SELECT count(*) FROM leases WHERE outcome IS NULL")
    assert held == [(0,)]


async def test_a_claim_whose_session_was_terminated_mid_take_takes_each_lease_once(
    postgres_dsn: str,
) -> None:
    """The take waits on a lock and its session is terminated: sent again, it takes
    every lease, each once, under one token, and the run knows every lease it holds."""
    ids = [f"task-{n}" for n in range(50)]
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-1", ids)
        async with anyio.create_task_group() as tg:
            await tg.start(terminate_mid_statement, postgres_dsn, "leases")
            claim = await journal.claim("run-1", ids, since=0.0)
        rows = await query(postgres_dsn, "SELECT task_id, run_id, token FROM leases")
        assert sorted(claim.taken) == sorted(ids) == sorted(str(row[0]) for row in rows)
        assert claim.tokens == {str(row[0]): int(row[2]) for row in rows}
        assert len(set(claim.tokens.values())) == 1
        assert all(journal.commit_check("run-1").may_commit(task_id) for task_id in ids)


async def test_a_release_whose_answer_was_lost_says_it_let_go(postgres_dsn: str) -> None:
    """The release committed and its answer was lost: sent again, it finds the lease
    let go by its own run under its token, and says so."""
    async with losing(postgres_dsn, "UPDATE leases SET outcome") as (journal, pool):
        await journal.begin_run("run-1", ["a"])
        await journal.claim("run-1", ["a"], since=0.0)
        assert await journal.release("a", "run-1", LeaseOutcome.FAILED)
        assert pool.left == 0
    [(outcome,)] = await query(postgres_dsn, "SELECT outcome FROM leases")
    assert outcome == "failed"


async def test_a_batch_whose_answer_was_lost_after_it_committed_is_journaled_once(
    postgres_dsn: str,
) -> None:
    """The batch committed and its answer was lost: sent again, it meets its own rows,
    and stands as written; the journal goes on (each success once)."""
    ids = list(range(20))
    async with losing(postgres_dsn, "INSERT INTO attempts") as (journal, pool):
        await journal.begin_run("run-1", [Leaf(db="x", i=i).task_id for i in ids])
        for i in ids:
            task = Leaf(db="x", i=i)
            journal.record(TaskEvent(Event.START, task, "run-1", 1, time=1.0))
            journal.record(TaskEvent(Event.SUCCESS, task, "run-1", 1, time=2.0))
        await journal.flush()
        assert pool.left == 0
        journal.record(TaskEvent(Event.START, Leaf(db="x", i=99), "run-1", 1, time=3.0))
        await journal.end_run("run-1", RunStatus.SUCCESS)
    done = await successes(postgres_dsn)
    assert sorted(done) == sorted(Leaf(db="x", i=i).task_id for i in ids)
    assert set(done.values()) == {1}


async def test_a_renewal_whose_answer_was_lost_after_a_lapse_learns_the_leases_lost(
    postgres_dsn: str,
) -> None:
    """The run lapsed and another took its lease; its renewal committed (pushing the
    run on) and the answer was lost: sent again, the statement sees a run alive,
    yet the journal asks which leases it kept, finds the lease lost, and refuses
    its commit."""
    a = await PostgresJournal.open(postgres_dsn, lease_ttl=1.0)  # (no heartbeat: not served)
    b = await PostgresJournal.open(postgres_dsn, lease_ttl=1.0)
    try:
        await a.begin_run("run-a", ["x"])
        assert (await a.claim("run-a", ["x"], since=0.0)).taken == ["x"]
        with anyio.fail_after(10):
            while True:  # (expiry has no event: the lease is polled)
                if (await b.watch(["x"]))["x"] is LeaseOutcome.ABANDONED:
                    break
                await anyio.sleep(0.05)
        await b.begin_run("run-b", ["x"])
        # The take alone (a claim would also mark run-a interrupted, which a renewal
        # coming first, as here, prevents).
        assert (await b._leases.claim(["x"], "run-b", 0.0)).taken == ["x"]
        pool = LosingPool(a._store.pool, "RETURNING runs.run_id, mine.expires")
        a._store.pool = pool
        assert await a.renew() == [("x", "run-a")]
        assert pool.left == 0
        assert not a.commit_check("run-a").may_commit("x")
    finally:
        await a.close()
        await b.close()
