"""The PostgreSQL journal: its schema, its leases by the database's clock, its history,
and how its URL is chosen, shown and refused.

The contract both backends share runs over both in ``test_journal.py``,
``test_leases_run.py`` and ``test_resume.py`` (the ``journal_where`` fixture);
what is here is PostgreSQL's own: a real server, one per session, a fresh
database per test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import structlog.testing
from tests.fixtures import ROOT, cli, cli_env
from tests.fixtures.postgres import PostgresServer, query

import asyncflow
from asyncflow.errors import JournalError
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import (
    AttemptStatus,
    Holder,
    LeaseOutcome,
    PostgresJournal,
    RunStatus,
    open_journal,
    postgres_sql,
)
from asyncflow.journal.postgres import _JOINED
from asyncflow.journal.postgres_sql import SCHEMA_VERSION
from asyncflow.journal.postgres_store import joined
from asyncflow.web import create_app

pytestmark = pytest.mark.anyio

TTL = 1.0  # the shortest lease the configuration allows: expiry tests wait this long


class T(asyncflow.Task):
    n = asyncflow.IntParameter()


def event(kind: Event, n: int, run_id: str = "run-1", **fields: Any) -> TaskEvent:
    return TaskEvent(kind, T(n=n), run_id, fields.pop("attempt", 1), time=time.time(), **fields)


async def until_let_go(journal: PostgresJournal, task_id: str) -> LeaseOutcome:
    """Poll watch() until the lease is let go, as a waiting run does (expiry has no event)."""
    with anyio.fail_after(10):
        while True:
            state = (await journal.watch([task_id]))[task_id]
            if isinstance(state, LeaseOutcome):
                return state
            await anyio.sleep(0.05)


# --------------------------------------------------------------------- opening


async def test_open_creates_the_schema_with_its_version(postgres_dsn: str) -> None:
    """A new database gets our tables and the schema version in asyncflow_schema."""
    async with PostgresJournal.open(postgres_dsn):
        pass
    tables = {
        row[0]
        for row in await query(
            postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    assert tables == {"asyncflow_schema", "runs", "run_requests", "run_keys", "attempts", "leases"}
    assert await query(postgres_dsn, "SELECT version FROM asyncflow_schema") == [(SCHEMA_VERSION,)]
    # The requested lists are compressed with lz4 (Debian's server has it).
    assert await query(
        postgres_dsn,
        "SELECT attcompression::text FROM pg_attribute "
        "WHERE attrelid = 'run_requests'::regclass AND attname = 'requested'",
    ) == [("l",)]


async def test_journals_opened_at_once_on_a_new_database_share_one_schema(
    postgres_dsn: str,
) -> None:
    """Three journals opening an empty database together: one creates the schema, all open."""
    opened: list[PostgresJournal] = []

    async def open_one() -> None:
        opened.append(await PostgresJournal.open(postgres_dsn))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(open_one)
    for journal in opened:
        await journal.close()
    assert len(opened) == 3
    assert await query(postgres_dsn, "SELECT version FROM asyncflow_schema") == [(SCHEMA_VERSION,)]


async def test_a_database_of_another_application_is_refused_and_left_alone(
    postgres_dsn: str,
) -> None:
    """Tables without asyncflow_schema: a JournalError naming the database; nothing is made."""
    db = await asyncpg.connect(postgres_dsn)
    await db.execute("CREATE TABLE users (id integer PRIMARY KEY)")
    await db.close()
    with pytest.raises(JournalError, match="not an asyncflow journal") as caught:
        await PostgresJournal.open(postgres_dsn)
    assert postgres_dsn in str(caught.value)
    tables = await query(
        postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    assert tables == [("users",)]


async def test_an_older_schema_is_migrated_in_place(postgres_dsn: str) -> None:
    """A database of schema version 1 gets the later steps and the current version,
    its rows kept."""
    db = await asyncpg.connect(postgres_dsn)
    try:
        for statement in postgres_sql.MIGRATIONS[0]:
            await db.execute(statement)
        await db.execute("UPDATE asyncflow_schema SET version = 1")
        await db.execute("INSERT INTO run_keys (run_id) VALUES ('run-old')")
    finally:
        await db.close()
    async with PostgresJournal.open(postgres_dsn):
        pass
    assert await query(postgres_dsn, "SELECT version FROM asyncflow_schema") == [(SCHEMA_VERSION,)]
    assert await query(postgres_dsn, "SELECT run_id FROM run_keys") == [("run-old",)]
    columns = await query(
        postgres_dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'attempts' "
        "AND column_name = 'tracking_url'",
    )
    assert columns == [("tracking_url",)]


async def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    """A database migrated by a newer asyncflow names both versions."""
    async with PostgresJournal.open(postgres_dsn):
        pass
    db = await asyncpg.connect(postgres_dsn)
    await db.execute("UPDATE asyncflow_schema SET version = $1", SCHEMA_VERSION + 5)
    await db.close()
    with pytest.raises(JournalError) as caught:
        await PostgresJournal.open(postgres_dsn)
    assert f"version {SCHEMA_VERSION + 5}" in str(caught.value)
    assert f"version {SCHEMA_VERSION})" in str(caught.value)


async def test_a_password_never_shows(postgres_server: PostgresServer) -> None:
    """A URL's password is in no error, repr, or page; the user and database are."""
    dsn = postgres_server.create_database()
    secret = "s3cret-word"
    with_password = dsn.replace("asyncflow@", f"asyncflow:{secret}@")
    async with PostgresJournal.open(with_password) as journal:  # trust: any password works
        assert secret not in repr(journal) and secret not in journal.url
        assert journal.url == dsn.replace("asyncflow@", "asyncflow:***@")
        await journal.begin_run("run-1")
        await journal.end_run("run-1", RunStatus.SUCCESS)
    unreachable = f"postgresql://asyncflow:{secret}@127.0.0.1:1/nothing"
    with pytest.raises(JournalError) as caught:
        await PostgresJournal.open(unreachable)
    assert secret not in str(caught.value) and "127.0.0.1:1/nothing" in str(caught.value)
    app = create_app(journal=with_password)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/")
        api = await client.get("/api/runs")
    assert page.status_code == 200 and "run-1" in page.text
    assert "asyncflow:***@" in page.text and secret not in page.text
    assert api.json()["runs"][0]["run_id"] == "run-1"


def test_import_asyncflow_does_not_import_asyncpg() -> None:
    """asyncpg is loaded when a PostgreSQL journal opens, not by ``import asyncflow``."""
    code = "import sys, asyncflow, asyncflow.journal; print('asyncpg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_asyncpg_the_error_names_the_extra(tmp_path: Path) -> None:
    """With asyncpg missing, opening a PostgreSQL journal says what to install."""
    (tmp_path / "asyncpg.py").write_text("raise ImportError('No module named asyncpg')\n")
    code = (
        "import anyio\nfrom asyncflow.journal import PostgresJournal\n"
        "async def main():\n    await PostgresJournal.open('postgresql://u@127.0.0.1:1/db')\n"
        "anyio.run(main)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**cli_env(), "PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}:{ROOT}"},
        check=False,
    )
    assert out.returncode == 1
    assert "pip install 'asyncflow[postgres]'" in out.stderr


# ---------------------------------------------------------------------- leases


async def test_a_claim_gives_the_lease_or_names_its_holder(postgres_dsn: str) -> None:
    """The first run takes the lease with the database's time; another learns the holder."""
    async with PostgresJournal.open(postgres_dsn, host="box", pid=7) as journal:
        [(before,)] = await query(postgres_dsn, "SELECT extract(epoch FROM now())::float8")
        await journal.begin_run("run-a")
        first = await journal.claim("run-a", ["task"], since=time.time())
        await journal.begin_run("run-b")
        second = await journal.claim("run-b", ["task"], since=time.time())
    assert (first.taken, first.held, first.abandoned) == (["task"], {}, set())
    holder = second.held["task"]
    assert second.taken == []
    assert (holder.run_id, holder.host, holder.pid) == ("run-a", "box", 7)
    assert holder.since >= before and holder.expires == pytest.approx(holder.since + 30, abs=1)


async def test_lease_expiry_is_judged_by_the_database_clock(postgres_dsn: str) -> None:
    """A lease lasts ttl seconds of the database's clock, whatever the client's clock says."""
    far_future = lambda: time.time() + 10_000  # noqa: E731  # a client clock gone wrong
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL, clock=far_future) as mine,
        PostgresJournal.open(postgres_dsn, clock=far_future) as other,
    ):
        await mine.begin_run("run-a")
        assert (await mine.claim("run-a", ["task"], since=time.time())).taken == ["task"]
        await other.begin_run("run-b")
        assert isinstance((await other.watch(["task"]))["task"], Holder)
        assert (await other.claim("run-b", ["task"], since=time.time())).taken == []


async def test_an_expired_lease_is_taken_over_with_a_greater_token(postgres_dsn: str) -> None:
    """No renewal for a ttl: another run takes the lease (abandoned), the token goes up,
    and the old holder learns it lost the lease, may not commit, and cannot release it.
    (Tokens come from a sequence: one a failed statement drew is skipped.)"""
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["task"], since=time.time())
        assert mine.commit_check("run-a").may_commit("task")
        [(first,)] = await query(postgres_dsn, "SELECT token FROM leases")
        mine._leases.live_runs.clear()  # the heartbeat stops, as in a stalled process
        assert await until_let_go(other, "task") is LeaseOutcome.ABANDONED
        assert not mine.commit_check("run-a").may_commit("task")  # a ttl without renewal
        await other.begin_run("run-b")
        taken = await other.claim("run-b", ["task"], since=time.time())
        assert (taken.taken, taken.abandoned) == (["task"], {"task"})
        mine._leases.live_runs.add("run-a")
        assert await mine.renew() == [("task", "run-a")]
        assert not await mine.release("task", "run-a", LeaseOutcome.FAILED)
        assert other.commit_check("run-b").may_commit("task")
        [(second, holder)] = await query(postgres_dsn, "SELECT token, run_id FROM leases")
    assert holder == "run-b"
    assert second > first  # (statements of the take that failed or took none drew some)


async def test_renewal_keeps_a_lease_past_its_ttl(postgres_dsn: str) -> None:
    """The heartbeat (every third of the ttl) keeps the lease held past its ttl."""
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["task"], since=time.time())
        [(expires,)] = await query(postgres_dsn, "SELECT expires FROM runs")
        # Until the database's clock is past the first expiry: only polling can tell.
        await query(postgres_dsn, "SELECT pg_sleep($1)", TTL * 1.5)
        assert (await query(postgres_dsn, "SELECT now() > $1::timestamptz", expires))[0][0]
        await other.begin_run("run-b")
        claim = await other.claim("run-b", ["task"], since=time.time())
        assert mine.commit_check("run-a").may_commit("task")
    assert claim.taken == [] and claim.held["task"].run_id == "run-a"


async def test_a_renewal_keeps_the_leases_a_claim_took_while_it_waited(
    postgres_dsn: str,
) -> None:
    """A heartbeat whose statement began before a claim committed does not call the
    claim's new leases lost (it did: a run's next claim then failed with a KeyError,
    and its tasks were given up)."""
    async with PostgresJournal.open(postgres_dsn, lease_ttl=30) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["first"], since=time.time())
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            holding = blocker.transaction()
            await holding.start()
            # As a take judging the run would: the renewal waits on the run's row.
            await blocker.execute("SELECT 1 FROM runs WHERE run_id = 'run-a' FOR SHARE")
            lost: list[Any] = []
            claims: list[Any] = []

            async def renew() -> None:
                lost.extend(await journal.renew())

            async def claim() -> None:
                claims.append(await journal.claim("run-a", ["second"], since=time.time()))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(renew)
                    while True:  # until the renewal waits: only the server can tell
                        if await query(
                            postgres_dsn,
                            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE '%clock_timestamp%'",
                        ):
                            break
                        await anyio.sleep(0.01)
                    tg.start_soon(claim)
                    await anyio.sleep(0.2)  # (the claim sent meanwhile, waiting or not)
                    await holding.rollback()
        finally:
            await blocker.close()
        assert lost == []
        [taken] = claims
        assert taken.taken == ["second"] and set(taken.tokens) == {"second"}
        assert journal.commit_check("run-a").may_commit("second")
        assert journal.commit_check("run-a").may_commit("first")
        assert (await journal.renew()) == []  # the next heartbeat renews both


async def test_a_heartbeat_pushes_runs_on_and_rewrites_no_lease(postgres_dsn: str) -> None:
    """A lease lives as long as its run: the heartbeat writes one row per run, whatever
    the number of leases it holds (it rewrote every lease: 0.9 s for 100,000, every
    third of the ttl)."""
    ids = [T(n=n).task_id for n in range(2_000)]
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ids, since=time.time())
        versions = "SELECT task_id, ctid::text, xmin::text FROM leases ORDER BY task_id"
        before = await query(postgres_dsn, versions)
        [(expires,)] = await query(postgres_dsn, "SELECT expires FROM runs")
        assert await journal.renew() == []
        assert await query(postgres_dsn, versions) == before  # no lease row rewritten
        [(renewed,)] = await query(postgres_dsn, "SELECT expires FROM runs")
        assert renewed > expires
        assert journal.commit_check("run-a").may_commit(ids[0])


async def test_a_claim_pushes_its_run_on(postgres_dsn: str) -> None:
    """A claim taken a while after its run began lasts a ttl from the claim, as its
    holder believes, not from the run's beginning."""
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        mine._leases.live_runs.discard("run-a")  # no heartbeat: the claim alone counts
        await query(postgres_dsn, "SELECT pg_sleep($1)", TTL * 0.7)
        assert (await mine.claim("run-a", ["task"], since=time.time())).taken == ["task"]
        # Past the expiry the run's beginning set, within the one the claim set.
        await query(postgres_dsn, "SELECT pg_sleep($1)", TTL * 0.5)
        await other.begin_run("run-b")
        taken = await other.claim("run-b", ["task"], since=time.time())
        assert taken.taken == [] and taken.held["task"].run_id == "run-a"


async def test_a_heartbeat_after_a_lapse_learns_which_leases_were_taken(
    postgres_dsn: str,
) -> None:
    """A run whose liveness lapsed, one of its leases taken meanwhile: its next heartbeat
    reports that one lost and keeps the other, which it may still commit."""
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["kept", "taken"], since=time.time())
        mine._leases.live_runs.discard("run-a")  # stalled
        assert await until_let_go(other, "taken") is LeaseOutcome.ABANDONED
        await other.begin_run("run-b")
        db = await asyncpg.connect(postgres_dsn)
        try:  # a take of the one lease (the run is not marked interrupted)
            [ids], separator = joined([["taken"]])
            rows = await db.fetch(postgres_sql.CLAIM, ids, "run-b", "h", 1, 30.0, separator)
        finally:
            await db.close()
        assert [row[0] for row in rows] == ["taken"]
        mine._leases.live_runs.add("run-a")  # it wakes up
        assert await mine.renew() == [("taken", "run-a")]
        check = mine.commit_check("run-a")
        assert check.may_commit("kept") and not check.may_commit("taken")
        assert await mine.renew() == []


async def test_opening_marks_runs_whose_liveness_lapsed_interrupted(postgres_dsn: str) -> None:
    """A run whose heartbeat stopped is found interrupted by the next journal opened,
    with its running attempts; a run going on is left alone."""
    async with PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as stalled:
        await stalled.begin_run("run-a")
        stalled.record(event(Event.START, 1, "run-a"))
        await stalled.flush()
        stalled._leases.live_runs.discard("run-a")  # no heartbeat from here on
        async with PostgresJournal.open(postgres_dsn) as alive:
            await alive.begin_run("run-b")
            alive.record(event(Event.START, 2, "run-b"))
            await alive.flush()
            await query(postgres_dsn, "SELECT pg_sleep($1)", TTL * 1.5)
            async with PostgresJournal.open(postgres_dsn):
                pass
            rows = await query(
                postgres_dsn,
                "SELECT r.run_id, r.status, a.status FROM runs AS r "
                "JOIN attempts AS a USING (run_id) ORDER BY r.run_id",
            )
            assert rows == [
                ("run-a", "interrupted", "interrupted"),
                ("run-b", "running", "running"),
            ]
            await alive.end_run("run-b", RunStatus.SUCCESS)


async def test_a_claim_of_new_tasks_and_ones_leased_before_takes_them_all(
    postgres_dsn: str,
) -> None:
    """The insert of new leases fails on one leased before; the new ones are inserted
    apart, the old one taken over: all taken, each under a token of this run's."""
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["old"], since=time.time())
        await journal.release("old", "run-a", LeaseOutcome.FAILED)
        await journal.end_run("run-a", RunStatus.FAILED)
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ["new-1", "old", "new-2"], since=time.time())
        assert sorted(claim.taken) == ["new-1", "new-2", "old"]
        assert claim.tokens["new-1"] == claim.tokens["new-2"]
        rows = await query(postgres_dsn, "SELECT task_id, run_id, token FROM leases ORDER BY 1")
        assert [(task_id, run) for task_id, run, _ in rows] == [
            ("new-1", "run-b"),
            ("new-2", "run-b"),
            ("old", "run-b"),
        ]
        assert {task_id: token for task_id, _, token in rows} == claim.tokens
        check = journal.commit_check("run-b")
        assert all(check.may_commit(task_id) for task_id in claim.taken)


async def test_outcomes_reach_the_waiters(postgres_dsn: str) -> None:
    """Released as failed, journaled a success, ended: each lease tells waiters how."""
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-a")
        ids = [T(n=n).task_id for n in range(3)]
        await journal.claim("run-a", ids, since=time.time())
        await journal.release(ids[0], "run-a", LeaseOutcome.FAILED)
        journal.record(event(Event.START, 1, "run-a"))
        journal.record(event(Event.SUCCESS, 1, "run-a"))
        await journal.flush()
        before_end = await journal.watch(ids)
        await journal.end_run("run-a", RunStatus.FAILED)
        after_end = await journal.watch(ids)
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ids, since=time.time())
    assert before_end[ids[0]] is LeaseOutcome.FAILED
    assert before_end[ids[1]] is LeaseOutcome.SUCCESS
    assert isinstance(before_end[ids[2]], Holder)
    assert after_end[ids[2]] is LeaseOutcome.ABANDONED
    assert sorted(claim.taken) == sorted(ids) and claim.abandoned == {ids[2]}


async def test_many_claimers_take_each_lease_once(postgres_dsn: str) -> None:
    """Eight journals claim 200 overlapping tasks at once: every task is taken exactly
    once, and each claimer learns the holder of the rest (or claims it again later)."""
    ids = [f"task-{n:03d}" for n in range(200)]
    taken: dict[str, list[str]] = {}
    async with contextlib_journals(postgres_dsn, 8) as journals:

        async def claim(index: int, journal: PostgresJournal) -> None:
            run_id = f"run-{index}"
            await journal.begin_run(run_id)
            mine = ids[index * 10 :] + ids[: index * 10]  # each from its own starting point
            found = await journal.claim(run_id, mine, since=time.time())
            for task_id in found.taken:
                taken.setdefault(task_id, []).append(run_id)
            assert set(found.held) | set(found.taken) | set(found.unsettled) == set(ids)

        async with anyio.create_task_group() as tg:
            for index, journal in enumerate(journals):
                tg.start_soon(claim, index, journal)
    assert sorted(taken) == ids
    assert all(len(runs) == 1 for runs in taken.values()), taken


# --------------------------------------------------------------------- history


async def test_history_reads_back_what_was_recorded(postgres_dsn: str) -> None:
    """runs, run, attempts, find_runs, count_runs and find_tasks, as the CLI and web use them."""
    async with PostgresJournal.open(postgres_dsn, host="box", pid=42) as journal:
        for i, ok in enumerate([True, False, True]):
            run_id = f"run-{i}"
            await journal.begin_run(run_id, [T(n=i).task_id], started=1_800_000_000.0 + i)
            journal.record(event(Event.START, i, run_id))
            if ok:
                journal.record(event(Event.SUCCESS, i, run_id))
            else:
                journal.record(event(Event.FAILURE, i, run_id, error=ValueError("bad input")))
            await journal.end_run(run_id, RunStatus.SUCCESS if ok else RunStatus.FAILED)
    async with PostgresJournal.open(postgres_dsn) as journal:
        latest = await journal.runs(limit=2)
        failed = await journal.run("run-1")
        attempts = await journal.attempts(T(n=2).task_id)
        page = await journal.find_runs(status=RunStatus.SUCCESS, family="T", limit=1, offset=1)
        counts = await journal.count_runs()
        found = await journal.find_tasks("t_", limit=5)
        succeeded = await journal.succeeded([T(n=n).task_id for n in range(3)])
        assert await journal.run("nope") is None
    assert [(r.run_id, r.status) for r in latest] == [
        ("run-2", RunStatus.SUCCESS),
        ("run-1", RunStatus.FAILED),
    ]
    assert failed is not None and failed.requested == (T(n=1).task_id,)
    [attempt] = failed.attempts
    assert (attempt.status, attempt.error_type, attempt.error_message) == (
        AttemptStatus.FAILED,
        "ValueError",
        "bad input",
    )
    assert (attempt.host, attempt.pid, dict(attempt.params)) == ("box", 42, {"n": "1"})
    assert [a.status for a in attempts] == [AttemptStatus.SUCCESS]
    assert [r.run_id for r in page] == ["run-0"]
    assert counts == {RunStatus.SUCCESS: 2, RunStatus.FAILED: 1}
    assert [s.task_id for s in found] == sorted(T(n=n).task_id for n in range(3))
    assert succeeded == {T(n=0).task_id, T(n=2).task_id}


def test_texts_joined_for_the_server_split_back_exactly() -> None:
    """The texts sent as one string (string_to_array(text, separator), first element
    dropped) come back as they were: empty ones, and ones holding the separator
    (another is picked)."""
    columns = [["a", "", "b\x1ec"], [], ["x\x1fy", "\x1f", ""], [""]]
    texts, separator = joined(columns)
    assert separator != "\x1f" and "\x1f" in separator
    assert [text.split(separator)[1:] if text else [] for text in texts] == columns
    texts, separator = joined([["plain", "ids"]])
    assert (texts, separator) == (["\x1fplain\x1fids"], "\x1f")


async def test_a_family_holding_the_separator_is_journaled_as_it_is(postgres_dsn: str) -> None:
    """Task ids and families with control characters (the separator among them) go
    through claims and batches unchanged."""
    odd = type("Odd\x1fFamily\x1e", (asyncflow.Task,), {"n": asyncflow.IntParameter()})
    tasks = [odd(n=n) for n in range(3)]
    result = await asyncflow.run(tasks, journal=postgres_dsn)
    assert result.ok
    async with open_journal(postgres_dsn) as journal:
        assert await journal.succeeded(t.task_id for t in tasks) == {t.task_id for t in tasks}
        [attempt] = await journal.attempts(tasks[1].task_id)
    assert (attempt.task_id, attempt.family) == (tasks[1].task_id, "Odd\x1fFamily\x1e")
    again = await asyncflow.run(tasks, journal=postgres_dsn)
    assert {again.status(t) for t in tasks} == {asyncflow.Status.ALREADY_COMPLETE}


async def test_a_run_and_the_cli_on_a_url(postgres_dsn: str, tmp_path: Path) -> None:
    """run(journal=URL) journals there (a task without output is complete once journaled
    there); `asyncflow history/show --journal URL` read it."""
    first = await asyncflow.run(T(n=5), journal=postgres_dsn)
    again = await asyncflow.run(T(n=5), journal=postgres_dsn)
    assert first.status(T(n=5)) is asyncflow.Status.DONE
    assert again.status(T(n=5)) is asyncflow.Status.ALREADY_COMPLETE
    async with open_journal(postgres_dsn) as journal:
        [_, run] = await journal.runs()
    history = await anyio.to_thread.run_sync(
        lambda: cli("history", "--journal", postgres_dsn, cwd=tmp_path)
    )
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines()[2].split()[:2] == [run.run_id, "success"]
    show = await anyio.to_thread.run_sync(
        lambda: cli("show", run.run_id, "--journal", postgres_dsn, cwd=tmp_path)
    )
    assert show.returncode == 0, show.stderr
    assert f"Run {run.run_id}: success" in show.stdout and T(n=5).task_id in show.stdout


import contextlib  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402


@contextlib.asynccontextmanager
async def contextlib_journals(dsn: str, count: int) -> AsyncIterator[list[PostgresJournal]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PostgresJournal.open(dsn)) for _ in range(count)]


# --------------------------------------------------------------------- fencing


async def stall(journal: PostgresJournal, run_id: str, other: PostgresJournal) -> None:
    """``journal`` stops renewing ``run_id`` (as a stopped process) until ``other``
    finds its leases expired by the database's clock."""
    journal._leases.live_runs.discard(run_id)
    for task_id in list(journal._leases.tokens[run_id]):
        await until_let_go(other, task_id)  # expired, or let go with its success


async def test_every_take_draws_a_greater_token(postgres_dsn: str) -> None:
    """A claim's tasks share one token; a later claim, and a takeover after expiry,
    draw greater ones; the live holder claiming again keeps its token."""
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        first = await mine.claim("run-a", ["a", "b"], since=time.time())
        again = await mine.claim("run-a", ["a"], since=time.time())
        await other.begin_run("run-b")
        later = await other.claim("run-b", ["c"], since=time.time())
        await stall(mine, "run-a", other)
        taken = await other.claim("run-b", ["a"], since=time.time())
        rows = dict(await query(postgres_dsn, "SELECT task_id, token FROM leases"))
    assert first.tokens["a"] == first.tokens["b"] >= 1
    assert again.tokens == {"a": first.tokens["a"]}
    assert later.tokens["c"] > first.tokens["a"]
    assert taken.taken == ["a"] and taken.tokens["a"] > later.tokens["c"]
    assert rows == {"a": taken.tokens["a"], "b": first.tokens["b"], "c": later.tokens["c"]}


async def test_a_success_whose_lease_was_taken_over_is_not_journaled(postgres_dsn: str) -> None:
    """The old holder's success reaches the database after a takeover: refused in the
    transaction that would write it, journaled as failed naming the new holder."""
    task_id = T(n=1).task_id
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        claim = await mine.claim("run-a", [task_id], since=time.time())
        mine.record(event(Event.START, 1, "run-a"))
        await mine.flush()
        assert mine.commit_check("run-a").accept(task_id, claim.tokens[task_id])
        await stall(mine, "run-a", other)
        await other.begin_run("run-b")
        assert (await other.claim("run-b", [task_id], since=time.time())).taken == [task_id]
        other.record(event(Event.START, 1, "run-b"))
        other.record(event(Event.SUCCESS, 1, "run-b"))
        await other.flush()
        mine.record(event(Event.SUCCESS, 1, "run-a"))  # woken up
        with structlog.testing.capture_logs() as logs:
            await mine.flush()
    rows = await query(
        postgres_dsn, "SELECT run_id, status, error_message FROM attempts ORDER BY run_id"
    )
    assert [row[:2] for row in rows] == [("run-a", "failed"), ("run-b", "success")]
    assert "taken over by run run-b" in rows[0][2] and task_id in rows[0][2]
    fenced = [log for log in logs if log["event"] == "journal.success_fenced"]
    assert [(log["task_id"], log["run_id"]) for log in fenced] == [(task_id, "run-a")]
    assert fenced[0]["by"].startswith("run run-b (")  # the holder, as on either backend


async def test_a_success_taken_over_within_its_batch_is_not_journaled(postgres_dsn: str) -> None:
    """Start and success of the stalled holder reach the database in one batch of new
    rows (one insert), after a takeover: refused all the same, named as failed, with
    or without the duration its event gave; its other tasks' rows as they were."""
    ids = [T(n=n).task_id for n in range(1, 5)]
    async with (
        PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as mine,
        PostgresJournal.open(postgres_dsn) as other,
    ):
        await mine.begin_run("run-a")
        claim = await mine.claim("run-a", ids, since=time.time())
        for task_id in ids[:3]:
            assert mine.commit_check("run-a").accept(task_id, claim.tokens[task_id])
        await stall(mine, "run-a", other)
        await other.begin_run("run-b")
        taken = await other.claim("run-b", [ids[0], ids[2]], since=time.time())
        assert taken.taken == [ids[0], ids[2]]
        for n in range(1, 5):  # woken up: all ran meanwhile
            mine.record(event(Event.START, n, "run-a"))
        mine.record(event(Event.SUCCESS, 1, "run-a"))
        mine.record(event(Event.SUCCESS, 2, "run-a"))
        mine.record(event(Event.SUCCESS, 3, "run-a", duration=0.5))
        mine.record(event(Event.CANCELLED, 4, "run-a"))
        await mine.flush()
    rows = await query(
        postgres_dsn,
        "SELECT task_id, status, error_type, duration IS NOT NULL, traceback LIKE $1 "
        "FROM attempts ORDER BY task_id",
        "%taken over by run run-b%",
    )
    assert rows == [
        (ids[0], "failed", "asyncflow.LeaseLost", True, True),
        (ids[1], "success", None, True, None),
        (ids[2], "failed", "asyncflow.LeaseLost", True, True),
        (ids[3], "cancelled", None, True, None),
    ]


def _plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, its init plans and CTEs included."""
    nodes = [plan]
    for child in plan.get("Plans", ()):
        nodes += _plan_nodes(child)
    return nodes


async def test_a_batch_fences_its_successes_by_key_not_by_scanning_every_lease(
    postgres_dsn: str,
) -> None:
    """The leases a batch locks to fence its successes are looked up by their key: the
    leases table holds every task ever leased, and a scan of it per batch grows with it."""
    ids = [T(n=n).task_id for n in range(20_000)]
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ids, since=time.time())
    fenced = ids[5_000:5_512]
    count = len(fenced)
    columns: list[list[object]] = [
        [(7 << 32) + i for i in range(count)],
        ["run-a"] * count,
        fenced,
        ["T"] * count,
        ["{}"] * count,
        [1] * count,
        [1.0] * count,
        ["success"] * count,
        [2.0] * count,
        [1.0] * count,
        *([] for _ in range(4)),
    ]
    tokens = [int(row[0]) for row in await query(postgres_dsn, "SELECT max(token) FROM leases")]
    fence = [["run-a"] * count, fenced, tokens * count]
    # Successes by their own columns (id, task, family, params, attempt, times), no
    # running attempt, no other ending; the text columns joined (WRITE_NEW's $27).
    new: list[Any] = [*columns[0:1], *columns[2:7], columns[8], tokens * count]
    new += [[] for _ in range(16)] + [[7], ["run-a"]]
    texts, separator = joined([new[index] for index in _JOINED])
    for index, text in zip(_JOINED, texts, strict=True):
        new[index] = text
    statements = [  # (a batch of new rows alone is written by WRITE_NEW)
        ("WRITE_ATTEMPTS", [*columns, *([] for _ in range(14)), *fence]),
        ("WRITE_NEW", [*new, separator]),
    ]
    db = await asyncpg.connect(postgres_dsn)
    try:
        await db.execute("ANALYZE leases")
        for name, args in statements:
            statement = getattr(postgres_sql, name)
            [(plan,)] = await db.fetch(f"EXPLAIN (FORMAT JSON) {statement}", *args)
            nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
            scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "leases"]
            assert scans and "Seq Scan" not in scans, (name, scans)
    finally:
        await db.close()


@pytest.mark.parametrize("history", [0, 20_000])
async def test_leases_and_successes_are_looked_up_by_key_whatever_the_statistics_say(
    postgres_dsn: str, history: int
) -> None:
    """The statements of a claim, of a probe and of a takeover look each task up by its
    key, on the journal's own connections: planned as scans of the leases or attempts
    table, they cost a scan of every task ever run per claim, or per task when the
    statistics were gathered while the tables were small (a claim of 40,000 new
    tasks took 15 s)."""
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-old")
        db = await asyncpg.connect(postgres_dsn)
        try:
            await db.execute(
                "INSERT INTO leases (task_id, run_id, host, pid, since, token) "
                "SELECT 'Old_' || g, 'run-old', 'h', 1, now(), g "
                "FROM generate_series(1, $1::integer) AS g",
                history,
            )
            await db.execute(
                "INSERT INTO attempts (id, run_id, task_id, family, params, attempt, status) "
                "SELECT g, 'run-old', 'Old_' || g, 'Old', '{}', 1, 'success' "
                "FROM generate_series(1, $1::integer) AS g",
                history,
            )
            await db.execute("ANALYZE")
        finally:
            await db.close()
        wanted = [f"Old_{n}" for n in range(1, 5_001)] + [f"New_{n}" for n in range(5_000)]
        run = ["run-new", "host", 1, 30.0]
        listed, separator = joined([wanted])
        statements = {
            "CLAIM_NEW": [*listed, *run, separator],
            "CLAIM_SOME": [*listed, *run, separator],
            "CLAIM": [*listed, *run, separator],
            "LEASE_STATES": [wanted],
            "DONE_SINCE": [wanted, "run-new", 0.0, 0, ["run-old"]],
            "SUCCEEDED": [wanted],
            "PRIOR_ATTEMPTS": [wanted],
        }
        async with journal._store.pool.acquire() as db:  # its settings, not a fresh session's
            for name, args in statements.items():
                statement = getattr(postgres_sql, name)
                [(plan,)] = await db.fetch(f"EXPLAIN (FORMAT JSON) {statement}", *args)
                nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
                scans = {
                    (n["Node Type"], n["Relation Name"])
                    for n in nodes
                    if n.get("Relation Name") in ("leases", "attempts")
                }
                assert scans, name
                assert not {scan for scan in scans if scan[0] == "Seq Scan"}, (name, scans)


async def test_a_success_under_the_current_token_is_journaled(postgres_dsn: str) -> None:
    """No takeover: the success is journaled, also late, after the lease expired
    without anyone taking it."""
    async with PostgresJournal.open(postgres_dsn, lease_ttl=TTL) as journal:
        await journal.begin_run("run-a")
        ids = [T(n=1).task_id, T(n=2).task_id]
        claim = await journal.claim("run-a", ids, since=time.time())
        for n in (1, 2):
            journal.record(event(Event.START, n, "run-a"))
        await journal.flush()
        assert journal.commit_check("run-a").accept(ids[0], claim.tokens[ids[0]])
        journal.record(event(Event.SUCCESS, 1, "run-a"))
        await stall(journal, "run-a", journal)
        journal.record(event(Event.SUCCESS, 2, "run-a"))
        await journal.flush()
    assert await query(postgres_dsn, "SELECT status FROM attempts") == [("success",)] * 2


async def test_the_configured_journal_may_be_a_url(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ASYNCFLOW_JOURNAL (as asyncflow.toml's journal) may name a PostgreSQL journal."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCFLOW_JOURNAL", postgres_dsn.replace("postgresql://", "postgres://"))
    result = await asyncflow.run(T(n=7))
    assert result.ok
    async with open_journal(postgres_dsn) as journal:
        [run] = await journal.runs()
        assert run.requested == (T(n=7).task_id,)
    assert not (tmp_path / ".asyncflow").exists()


async def test_batches_are_written_one_at_a_time(postgres_dsn: str) -> None:
    """While a batch is being written, what is recorded meanwhile waits and goes as
    the next batch, whole: one connection writing, not a batch (and a connection)
    per wake of the writer."""
    tasks = range(1, 6)
    async with PostgresJournal.open(postgres_dsn, flush_events=1, flush_interval=60) as journal:
        await journal.begin_run("run-a")
        before = journal.statistics().batches
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("LOCK TABLE attempts IN EXCLUSIVE MODE")
            for n in tasks:  # every event wakes the writer (flush_events=1)
                journal.record(event(Event.START, n, "run-a"))
                journal.record(event(Event.SUCCESS, n, "run-a"))
                await anyio.wait_all_tasks_blocked()  # the writer took them, or waits
            await blocking.rollback()
        finally:
            await blocker.close()
        await journal.flush()
        assert journal.statistics().batches - before == 2  # the first, then the rest
        assert await journal.succeeded(T(n=n).task_id for n in tasks) == {
            T(n=n).task_id for n in tasks
        }


async def test_every_waiter_sees_the_batches_in_flight_land(postgres_dsn: str) -> None:
    """A batch of new rows goes in the background; two readers that wait for it at
    once both go on once it lands (neither waits forever for a landing it missed)."""
    async with PostgresJournal.open(postgres_dsn) as journal:
        await journal.begin_run("run-a")
        blocker = await asyncpg.connect(postgres_dsn)
        try:
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("LOCK TABLE attempts IN EXCLUSIVE MODE")
            journal.record(event(Event.START, 1, "run-a"))
            journal.record(event(Event.SUCCESS, 1, "run-a"))
            # The background writer sends the batch, which waits for the table.
            # (pg_stat_activity keeps the first 1 kB of a statement: its opening.)
            with anyio.fail_after(10):
                while not await query(  # noqa: ASYNC110 (polls the database)
                    postgres_dsn,
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO attempts%'",
                ):
                    await anyio.sleep(0.02)
            found: list[set[str]] = []

            async def read() -> None:
                found.append(await journal.succeeded([T(n=1).task_id]))

            with anyio.fail_after(10):  # both readers go on: the group ends
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    tg.start_soon(read)
                    await anyio.wait_all_tasks_blocked()
                    await blocking.rollback()  # the batch lands now
        finally:
            await blocker.close()
    assert found == [{T(n=1).task_id}] * 2
