"""Leases: which run may run a task now, across the processes sharing a journal.

A lease is one row per task id: the holder (run id, host, pid), since when,
until when, and once let go, how (success, failed, abandoned). A lease is
free when it was released, when it expired, or at once when its holder ran
on this host and its process is gone. The same liveness rules decide when a
run (and the attempts it left ``running``) is stale: ``runs.expires`` is
renewed together with the leases, by one heartbeat per journal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
import structlog

from ._journal_records import Holder, Lease, LeaseOutcome
from ._journal_store import Store, marks

__all__ = ["Identity", "Leases", "recover_interrupted"]

_log = structlog.get_logger("asyncflow")

# One statement, so one write transaction: SQLite takes the write lock before it
# reads the old row (as BEGIN IMMEDIATE would), and it costs one thread hop.
# "Mine" is a re-acquire by the live holder: it renews and keeps the history.
_MINE: Final = "(leases.run_id = excluded.run_id AND leases.outcome IS NULL)"
_TAKE: Final = f"""
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl)
    VALUES (:task_id, :run_id, :host, :pid, :now, :expires, :ttl)
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id,
        host = excluded.host,
        pid = excluded.pid,
        since = CASE WHEN {_MINE} THEN leases.since ELSE excluded.since END,
        prev_outcome = CASE WHEN {_MINE} THEN leases.prev_outcome
                            ELSE coalesce(leases.outcome, 'abandoned') END,
        prev_at = CASE WHEN {_MINE} THEN leases.prev_at
                       ELSE coalesce(leases.released, min(leases.expires, excluded.since)) END,
        expires = excluded.expires,
        ttl = excluded.ttl,
        outcome = NULL,
        released = NULL
    WHERE {{condition}}
    RETURNING since, expires, prev_outcome, prev_at
"""
_TAKE_FREE: Final = _TAKE.format(
    condition="leases.outcome IS NOT NULL OR leases.expires <= :now "
    "OR leases.run_id = excluded.run_id"
)
_TAKE_FROM_DEAD: Final = _TAKE.format(
    condition="leases.outcome IS NULL AND leases.run_id = :stale_run "
    "AND leases.host = excluded.host AND leases.pid = :stale_pid"
)


@dataclass(frozen=True, slots=True)
class Identity:
    """This process as runs and leases name it."""

    host: str
    pid: int

    def outlived(self, host: str, pid: int) -> bool:
        """Whether process ``pid`` of ``host`` is known to be gone.

        Only a process of this host can be checked; another host's process is
        judged by expiry alone. Our own pid is alive by definition.
        """
        return host == self.host and pid != self.pid and not _pid_alive(pid)


class Leases:
    """The lease operations of one journal, and the leases it holds."""

    def __init__(
        self, store: Store, identity: Identity, clock: Callable[[], float], ttl: float
    ) -> None:
        self._store = store
        self._me = identity
        self._clock = clock
        self.ttl = ttl
        self.held: dict[tuple[str, str], float] = {}  # (task_id, run_id) -> ttl
        self.live_runs: set[str] = set()  # run ids whose leases and run rows we renew

    def heartbeat_interval(self) -> float:
        return min([self.ttl, *self.held.values()]) / 3

    async def acquire(self, task_id: str, run_id: str, ttl: float | None) -> Lease | Holder:
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl!r}")
        while True:
            now = self._clock()
            params: dict[str, object] = {
                "task_id": task_id,
                "run_id": run_id,
                "host": self._me.host,
                "pid": self._me.pid,
                "now": now,
                "expires": now + ttl,
                "ttl": ttl,
            }
            taken = await self._store.write(_TAKE_FREE, params, "acquire a lease")
            if not taken:
                row = await self._row(task_id)
                if row is None or row[5] is not None or float(row[4]) <= now:
                    continue  # let go between our two statements: try again
                holder = Holder(task_id, str(row[0]), str(row[1]), int(row[2]), row[3], row[4])
                if not self._me.outlived(holder.host, holder.pid):
                    return holder
                params.update(stale_run=holder.run_id, stale_pid=holder.pid)
                taken = await self._store.write(_TAKE_FROM_DEAD, params, "take over a lease")
                if not taken:
                    continue
            since, expires, previous, previous_at = taken[0]
            self.held[(task_id, run_id)] = ttl
            self.live_runs.add(run_id)
            return Lease(
                task_id,
                run_id,
                float(since),
                float(expires),
                None if previous is None else LeaseOutcome(previous),
                None if previous_at is None else float(previous_at),
            )

    async def renew(self) -> list[tuple[str, str]]:
        run_ids = sorted(self.live_runs)
        if not run_ids:
            return []
        now = self._clock()
        db = self._store.db
        async with self._store.transaction("renew leases"):
            renewed = await db.execute_fetchall(
                "UPDATE leases SET expires = max(expires, ? + ttl) WHERE outcome IS NULL "
                f"AND run_id IN ({marks(len(run_ids))}) RETURNING task_id, run_id",
                [now, *run_ids],
            )
            await db.execute(
                "UPDATE runs SET expires = max(expires, ?) "
                f"WHERE status = 'running' AND run_id IN ({marks(len(run_ids))})",
                [now + self.ttl, *run_ids],
            )
        kept = {(str(row[0]), str(row[1])) for row in renewed}
        lost = [key for key in self.held if key not in kept]
        for key in lost:
            del self.held[key]
            _log.warning("journal.lease_lost", task_id=key[0], run_id=key[1])
        return lost

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        self.held.pop((task_id, run_id), None)
        rows = await self._store.write(
            "UPDATE leases SET outcome = ?, released = ? "
            "WHERE task_id = ? AND run_id = ? AND outcome IS NULL RETURNING 1",
            [LeaseOutcome(outcome).value, self._clock(), task_id, run_id],
            "release a lease",
        )
        return bool(rows)

    async def still_holds(self, task_id: str, run_id: str) -> bool:
        rows = await self._store.write(
            "UPDATE leases SET expires = max(expires, ? + ttl) "
            "WHERE task_id = ? AND run_id = ? AND outcome IS NULL RETURNING 1",
            [self._clock(), task_id, run_id],
            "check a lease",
        )
        if not rows:
            self.held.pop((task_id, run_id), None)
        return bool(rows)

    async def wait_for(self, task_id: str, poll: float) -> LeaseOutcome:
        while True:
            row = await self._row(task_id)
            if row is None:
                return LeaseOutcome.ABANDONED
            if row[5] is not None:
                return LeaseOutcome(row[5])
            if float(row[4]) <= self._clock() or self._me.outlived(str(row[1]), int(row[2])):
                return LeaseOutcome.ABANDONED
            await anyio.sleep(poll)

    def forget_run(self, run_id: str) -> None:
        """The run ended: stop renewing its leases (the caller released them)."""
        self.live_runs.discard(run_id)
        for key in [key for key in self.held if key[1] == run_id]:
            del self.held[key]

    async def _row(self, task_id: str) -> Any:
        rows = await self._store.fetch(
            "SELECT run_id, host, pid, since, expires, outcome FROM leases WHERE task_id = ?",
            [task_id],
        )
        return rows[0] if rows else None


async def recover_interrupted(store: Store, me: Identity, now: float) -> int:
    """Mark runs whose process is gone interrupted, with their running attempts.

    Their leases still held are released as abandoned. Returns how many runs.
    """
    running = "SELECT run_id, host, pid, expires FROM runs WHERE status = 'running'"
    orphans = await store.fetch(
        "SELECT 1 FROM attempts WHERE status = 'running' AND run_id NOT IN "
        "(SELECT run_id FROM runs WHERE status = 'running') LIMIT 1"
    )
    if not orphans and not any(_stale(row, me, now) for row in await store.fetch(running)):
        return 0  # the common case: no write transaction at all
    db = store.db
    async with store.transaction("recover interrupted runs"):
        # Judge again inside the transaction: a heartbeat may have come meanwhile.
        stale = [(str(row[0]),) for row in await store.fetch(running) if _stale(row, me, now)]
        await db.executemany(
            "UPDATE runs SET status = 'interrupted' WHERE run_id = ? AND status = 'running'",
            stale,
        )
        await db.execute(
            "UPDATE attempts SET status = 'interrupted' WHERE status = 'running' "
            "AND run_id NOT IN (SELECT run_id FROM runs WHERE status = 'running')"
        )
        await db.executemany(
            "UPDATE leases SET outcome = 'abandoned', released = ? "
            "WHERE run_id = ? AND outcome IS NULL",
            [(now, run_id) for (run_id,) in stale],
        )
    if stale:
        _log.info("journal.interrupted_runs", path=str(store.path), runs=len(stale))
    return len(stale)


def _stale(row: Sequence[Any], me: Identity, now: float) -> bool:
    _, host, pid, expires = row
    return float(expires) <= now or me.outlived(str(host), int(pid))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it: rely on expiry
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, but is not ours to signal
    return True
