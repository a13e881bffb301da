"""Leases: which run may run a task now, across the processes sharing a journal.

A lease is one row per task id: the holder (run id, host, pid), since when,
until when, and once let go, how (success, failed, abandoned). A lease is
free when it was released, when it expired, or at once when its holder's
process is known to be gone: only a process of this host, booted kernel and
PID namespace (its run's ``node``, see :class:`Identity`) can be checked, as
a pid names another process (or none) in another namespace. The same liveness rules decide when a
run (and the attempts it left ``running``) is stale: ``runs.expires`` is
renewed together with the leases, by one heartbeat per journal.

While no other run is going on, a run leases a batch of tasks with one row
(a *claim*, in ``run_claims``: the run id and a JSON array of task ids)
instead of one row per task: that is the common case, and it costs one write
per batch. A claim is as good as a lease per task for as long as its run
lives. Any other run that takes leases first turns every claim but its own
into per-task lease rows (:data:`_SPLIT_CLAIMS`), in the same transaction, so
from then on the two runs contend row by row as described above. A run that
ends, or is found interrupted, turns its claims into rows for the tasks it
did not finish (released as ``abandoned``), then deletes them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any, Final

from .._log import log as _log
from ..coordination import Claim, CommitCheck, Holder, LeaseOutcome
from .decode import integer, member, optional_text, real, text
from .fencing import RunCheck, tokens_to_fence
from .store import Store

if TYPE_CHECKING:
    from .rows import EndedRun

__all__ = ["Identity", "Leases", "local_node", "recover_interrupted"]

# Every statement is written out whole, even where that repeats a clause: each can
# be read (and run in the sqlite3 shell) as it is. Clauses that recur:
# - the holder's own lease: (leases.run_id = excluded.run_id AND leases.outcome IS NULL),
#   a re-take by the live holder: it renews and keeps the history;
# - the holder's run journaled a success for the task, (SELECT max(ended) FROM attempts
#   ... AND attempts.run_id = leases.run_id): the lease is as good as released with
#   that outcome (the holder keeps the row until its run ends, so a success costs no
#   lease write);
# - the holder's run ended (or was found interrupted), EXISTS (SELECT 1 FROM runs ...
#   runs.status != 'running'): its leases are let go with it, so ending a run writes
#   one row, not one per task.

# Take the free leases of many task ids in one statement, so one write transaction:
# SQLite takes the write lock before it reads the old row (as BEGIN IMMEDIATE
# would), and it costs one thread hop. The ids come as a JSON array (no limit on SQL
# variables). An upsert from a SELECT needs a WHERE clause to parse: WHERE true.
_TAKE_MANY: Final = """
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl, token)
    SELECT value, :run_id, :host, :pid, :now, :expires, :ttl, :token
    FROM json_each(:ids) WHERE true
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id,
        token = CASE WHEN (leases.run_id = excluded.run_id AND leases.outcome IS NULL)
                     THEN leases.token ELSE excluded.token END,
        host = excluded.host,
        pid = excluded.pid,
        since = CASE WHEN (leases.run_id = excluded.run_id AND leases.outcome IS NULL)
                     THEN leases.since ELSE excluded.since END,
        prev_outcome = CASE WHEN (leases.run_id = excluded.run_id AND leases.outcome IS NULL)
                            THEN leases.prev_outcome
                            WHEN leases.outcome IS NOT NULL THEN leases.outcome
                            WHEN (SELECT max(ended) FROM attempts
                                  WHERE attempts.task_id = leases.task_id
                                  AND attempts.status = 'success'
                                  AND attempts.run_id = leases.run_id) IS NOT NULL
                            THEN 'success'
                            ELSE 'abandoned' END,
        prev_at = CASE WHEN (leases.run_id = excluded.run_id AND leases.outcome IS NULL)
                       THEN leases.prev_at
                       ELSE coalesce(leases.released,
                                     (SELECT max(ended) FROM attempts
                                      WHERE attempts.task_id = leases.task_id
                                      AND attempts.status = 'success'
                                      AND attempts.run_id = leases.run_id),
                                     min(leases.expires, excluded.since)) END,
        expires = excluded.expires,
        ttl = excluded.ttl,
        outcome = NULL,
        released = NULL
    WHERE leases.outcome IS NOT NULL
       OR leases.expires <= :now
       OR leases.run_id = excluded.run_id
       OR (SELECT max(ended) FROM attempts
           WHERE attempts.task_id = leases.task_id
           AND attempts.status = 'success'
           AND attempts.run_id = leases.run_id) IS NOT NULL
       OR EXISTS (SELECT 1 FROM runs
                  WHERE runs.run_id = leases.run_id AND runs.status != 'running')
    RETURNING task_id, prev_outcome, token
"""
_LEASE_ROWS: Final = """
    SELECT leases.task_id, leases.run_id, leases.host, leases.pid, leases.since,
           leases.expires, leases.outcome,
           (SELECT node FROM runs WHERE runs.run_id = leases.run_id),
           (SELECT max(ended) FROM attempts
            WHERE attempts.task_id = leases.task_id
            AND attempts.status = 'success'
            AND attempts.run_id = leases.run_id) IS NOT NULL,
           EXISTS (SELECT 1 FROM runs
                   WHERE runs.run_id = leases.run_id AND runs.status != 'running')
    FROM json_each(?) AS j CROSS JOIN leases ON leases.task_id = j.value
"""
# The same, for tasks held through a claim.
_CLAIMED_ROWS: Final = (
    "SELECT j.value, c.run_id, r.host, r.pid, c.since, r.expires, NULL, r.node, EXISTS "
    "(SELECT 1 FROM attempts AS a WHERE a.task_id = j.value AND a.status = 'success' "
    "AND a.run_id = c.run_id), r.status != 'running' "
    "FROM run_claims AS c JOIN runs AS r ON r.run_id = c.run_id, json_each(c.task_ids) AS j "
    "WHERE j.value IN (SELECT value FROM json_each(?))"
)
# Successes another run may have committed after the caller probed (see _Rivals): an
# attempt's end time alone does not say, as its row is written up to a batch later.
# A rival run is another run begun after the last run row noted (rowid > :last) or
# going on then (in :going_on).
_ANY_RIVAL: Final = """
    SELECT 1 FROM runs WHERE runs.run_id != :run_id
    AND (runs.status = 'running'
         OR runs.ended >= :since
         OR (runs.run_id != :run_id
             AND (runs.rowid > :last
                  OR runs.run_id IN (SELECT value FROM json_each(:going_on)))))
    LIMIT 1
"""
_DONE_SINCE: Final = """
    SELECT DISTINCT a.task_id FROM json_each(:ids) AS j CROSS JOIN attempts AS a
    ON a.task_id = j.value AND a.status = 'success'
    WHERE a.run_id != :run_id
    AND (a.ended >= :since
         OR a.run_id IN (SELECT run_id FROM runs
                         WHERE runs.run_id != :run_id
                         AND (runs.rowid > :last
                              OR runs.run_id IN (SELECT value FROM json_each(:going_on)))))
"""
# When a run begins: the other runs going on, and the last run row (later rows are
# runs begun after it).
_RIVALS: Final = (
    "SELECT (SELECT json_group_array(run_id) FROM runs WHERE status = 'running' "
    "AND run_id != ?), (SELECT max(rowid) FROM runs)"
)

# Claims (see the module's docstring). A run may claim while it is the only one going
# on (it is alone); first, other runs' claims (if any) must become lease rows.
_ALONE: Final = """
    SELECT (SELECT status FROM runs WHERE run_id = :run_id) = 'running'
           AND NOT EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND run_id != :run_id)
"""
# Other runs' claims, whether the run is alone (as _ALONE), and any lease rows.
_STANDING: Final = """
    SELECT EXISTS (SELECT 1 FROM run_claims WHERE run_id != :run_id),
           (SELECT status FROM runs WHERE run_id = :run_id) = 'running'
           AND NOT EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND run_id != :run_id),
           EXISTS (SELECT 1 FROM leases)
"""
# Lease rows of other runs on the tasks to claim, let go without an outcome: their
# holder may have left partial writes (what taking them row by row reports as
# prev_outcome 'abandoned'). ``live`` marks a row whose holder may still hold it
# although no other run is going on (a per-task lease, as earlier versions took
# them, of a run with no run row): then the claim is not taken, and the tasks
# are leased one by one. Handed back as one row (their ids as a JSON array, and
# whether any is live): after a run was stopped, a claim finds tens of thousands,
# and each row handed back waited for the GIL beside a busy loop (32,768 rows:
# 0.9 s; the query itself 50 ms).
_LEFT_UNFINISHED: Final = """
    SELECT json_group_array(task_id), coalesce(max(live), 0) FROM (
        SELECT leases.task_id AS task_id,
               leases.outcome IS NULL AND leases.expires > :now
               AND NOT EXISTS (SELECT 1 FROM runs
                               WHERE runs.run_id = leases.run_id
                               AND runs.status != 'running') AS live
        FROM json_each(:ids) AS j CROSS JOIN leases ON leases.task_id = j.value
        WHERE leases.run_id != :run_id
        AND (leases.outcome = 'abandoned'
             OR (leases.outcome IS NULL
                 AND (SELECT max(ended) FROM attempts
                      WHERE attempts.task_id = leases.task_id
                      AND attempts.status = 'success'
                      AND attempts.run_id = leases.run_id) IS NULL)))
"""
# A random id, not the next rowid: that would be the id of a claim another run
# split just before, and its run (stalled meanwhile) would take its lost tasks
# for held again.
_NEW_CLAIM: Final = (
    "INSERT INTO run_claims (id, run_id, since, ttl, task_ids, token) "
    "VALUES ((random() & 9223372036854775807) | 1, ?, ?, ?, ?, ?) RETURNING id"
)
# Fencing tokens: each take draws the next one (see the module's docstring).
_NEXT_TOKEN: Final = "UPDATE fencing SET last = last + 1 RETURNING last"
_LAST_TOKEN: Final = "SELECT last FROM fencing"
_OTHER_CLAIMS: Final = "SELECT 1 FROM run_claims WHERE run_id != ? LIMIT 1"
# The next three turn claims into lease rows held by their run, whose liveness they
# take on. Rows they supersede (of runs that ended before the claim) are
# overwritten; rows of the claiming run itself (a failure it released) are kept.
# Another run is about to take leases: every other run's claims become rows it holds.
_SPLIT_CLAIMS: Final = """
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl, outcome, released,
                        token)
    SELECT j.value, c.run_id, r.host, r.pid, c.since, r.expires, c.ttl, NULL, NULL, c.token
    FROM run_claims AS c JOIN runs AS r ON r.run_id = c.run_id, json_each(c.task_ids) AS j
    WHERE c.run_id != :run_id
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,
        token = excluded.token,
        since = excluded.since, expires = excluded.expires, ttl = excluded.ttl,
        outcome = excluded.outcome, released = excluded.released,
        prev_outcome = NULL, prev_at = NULL
    WHERE leases.run_id != excluded.run_id
"""
# A run ends: its claimed tasks it did not finish (:ids) are let go as abandoned.
_ABANDON_CLAIMED: Final = """
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl, outcome, released,
                        token)
    SELECT j.value, c.run_id, r.host, r.pid, c.since, :now, c.ttl, 'abandoned', :now, c.token
    FROM run_claims AS c JOIN runs AS r ON r.run_id = c.run_id, json_each(c.task_ids) AS j
    WHERE c.run_id = :run_id AND j.value IN (SELECT value FROM json_each(:ids))
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,
        since = excluded.since, expires = excluded.expires, ttl = excluded.ttl,
        outcome = excluded.outcome, released = excluded.released, token = excluded.token,
        prev_outcome = NULL, prev_at = NULL
    WHERE leases.run_id != excluded.run_id
"""
# A run was found interrupted: what it did not journal a success for is abandoned.
_ABANDON_CLAIMED_UNSUCCESSFUL: Final = """
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl, outcome, released,
                        token)
    SELECT j.value, c.run_id, r.host, r.pid, c.since, :now, c.ttl, 'abandoned', :now, c.token
    FROM run_claims AS c JOIN runs AS r ON r.run_id = c.run_id, json_each(c.task_ids) AS j
    WHERE c.run_id = :run_id
    AND NOT EXISTS (SELECT 1 FROM attempts AS a
                    WHERE a.task_id = j.value AND a.status = 'success' AND a.run_id = c.run_id)
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,
        since = excluded.since, expires = excluded.expires, ttl = excluded.ttl,
        outcome = excluded.outcome, released = excluded.released, token = excluded.token,
        prev_outcome = NULL, prev_at = NULL
    WHERE leases.run_id != excluded.run_id
"""
_DROP_CLAIMS: Final = "DELETE FROM run_claims WHERE run_id = ?"
# The heartbeat: the leases and runs of this journal's runs (a JSON array) pushed on.
_RENEW_LEASES: Final = """
    UPDATE leases SET expires = max(expires, ? + ttl)
    WHERE outcome IS NULL AND run_id IN (SELECT value FROM json_each(?))
    RETURNING task_id, run_id
"""
_RENEW_RUNS: Final = """
    UPDATE runs SET expires = max(expires, ?)
    WHERE status = 'running' AND run_id IN (SELECT value FROM json_each(?))
"""
_CLAIMS_OF_RUNS: Final = (
    "SELECT id FROM run_claims WHERE run_id IN (SELECT value FROM json_each(?))"
)
# Letting go of a task held through a claim: a lease row with the outcome. It goes
# over a row of a run that ended before the claim, and over the run's own row if
# another run turned the claim into rows meanwhile, unless that was taken over.
_RELEASE_CLAIMED: Final = """
    INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl, outcome, released,
                        token)
    VALUES (:task_id, :run_id, :host, :pid, :now, :now, :ttl, :outcome, :now, :token)
    ON CONFLICT (task_id) DO UPDATE SET
        run_id = excluded.run_id, host = excluded.host, pid = excluded.pid,
        since = excluded.since, expires = excluded.expires, ttl = excluded.ttl,
        outcome = excluded.outcome, released = excluded.released, token = excluded.token,
        prev_outcome = NULL, prev_at = NULL
    WHERE (leases.run_id = excluded.run_id AND leases.outcome IS NULL)
       OR EXISTS (SELECT 1 FROM run_claims WHERE id = :claim AND run_id = excluded.run_id)
    RETURNING 1
"""


# Fencing a batch of successes of one run (:mine, a JSON object: task id -> the token
# its attempt held): those whose task has since been taken with a greater token, by
# a lease row or by another run's claim, with who took it then.
_STALE: Final = """
    SELECT m.key, l.run_id, l.token,
           (SELECT c.run_id FROM run_claims AS c, json_each(c.task_ids) AS j
            WHERE c.run_id != :run_id AND c.token > m.value AND j.value = m.key
            LIMIT 1) AS claimed_by
    FROM json_each(:mine) AS m
    LEFT JOIN leases AS l ON l.task_id = m.key AND l.token > m.value
    WHERE l.task_id IS NOT NULL OR claimed_by IS NOT NULL
"""


_OUTCOMES: Final = frozenset(outcome.value for outcome in LeaseOutcome)

_LetGo = tuple[str, LeaseOutcome, Holder | None]  # task id, how, and a dead holder


@dataclass(frozen=True, slots=True)
class _Rivals:
    """The runs that may commit a success a run did not see when it probed.

    A success row is written in a batch, after the attempt ended, so its end time
    cannot tell whether it was there when a run probed its tasks: a task done just
    before the run began may turn up in the journal just after the probe. Any row
    committed after the run began is a row of a run going on then, or of one
    begun since; those are what :meth:`Leases.begin` notes.
    """

    going_on: str
    """JSON array of the other runs going on when the run began."""
    last: int
    """The last run row then (``rowid``): rows after it are runs begun since."""


_NO_RIVALS: Final = _Rivals("[]", 1 << 62)
"""For a run not begun with this journal: only its ``since`` tells."""


@dataclass(frozen=True, slots=True)
class Identity:
    """This process as runs and leases name it."""

    host: str
    pid: int
    node: str | None = None
    """Where ``pid`` names this process: the kernel's boot id and the PID
    namespace (see :func:`local_node`); None where that cannot be told."""

    def outlived(self, host: str, pid: int, node: str | None) -> bool:
        """Whether process ``pid`` of ``host``, in PID namespace ``node``, is known to be gone.

        Only a process of this host, boot and PID namespace can be checked:
        a host name is shared by containers (host networking) and by a
        process in a namespace of its own (``unshare --pid``), where the same
        pid names another process or none. Any other holder, and one whose
        ``node`` is unknown (written by an earlier version), is judged by its
        expiry alone. Our own pid is alive by definition.
        """
        return (
            node is not None
            and node == self.node
            and host == self.host
            and pid != self.pid
            and not _pid_alive(pid)
        )


def local_node() -> str | None:
    """This process's kernel boot id and PID namespace, e.g. ``'4f2c...:pid:[4026531836]'``.

    Two processes with the same node can check each other's pids. None where
    ``/proc`` does not tell (not Linux, or no ``/proc``): then no pid is
    checked, and holders are judged by expiry alone.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
        # The namespace of this process, whichever namespace /proc was mounted in.
        namespace = os.readlink("/proc/self/ns/pid")
    except (OSError, UnicodeDecodeError):
        return None
    return f"{boot}:{namespace}" if boot else None


class Leases:
    """The lease operations of one journal, and the leases it holds."""

    def __init__(
        self, store: Store, identity: Identity, clock: Callable[[], float], ttl: float
    ) -> None:
        self._store = store
        self._me = identity
        self._clock = clock
        self.ttl = ttl
        self._shortest = ttl  # the shortest ttl of any lease taken
        # Run id -> the task ids it holds -> the claim holding it (0: a lease row).
        self._held: dict[str, dict[str, int]] = {}
        # Run id -> task id -> the fencing token of its latest take (kept when
        # the lease is lost: the journal's check of a success needs it).
        self.tokens: dict[str, dict[str, int]] = {}
        # Run id -> task id -> the token of a success accepted and not yet
        # journaled (see RunCheck.accept and fence()).
        self.accepted: dict[str, dict[str, int]] = {}
        # Run id -> the tokens its takes drew (see _none_drawn_by_others).
        self._drawn: dict[str, set[int]] = {}
        self.live_runs: set[str] = set()  # run ids whose leases and run rows we renew
        self._rivals: dict[str, _Rivals] = {}  # run id -> noted when it began
        # Every lease in ``held`` is known to last at least until then: set by
        # the first lease taken and by each renewal (never by a later take).
        self.valid_until = 0.0

    def _tokens_of(self, run_id: str) -> dict[str, int]:
        tokens = self.tokens.get(run_id)
        if tokens is None:
            tokens = self.tokens[run_id] = {}
        return tokens

    def heartbeat_interval(self) -> float:
        return self._shortest / 3

    async def claim(self, task_ids: Sequence[str], run_id: str, since: float) -> Claim:
        """Take the leases of many tasks at once (see :meth:`Journal.claim`)."""
        ids = list(dict.fromkeys(task_ids))
        taken: list[str] = []
        tokens: dict[str, int] = {}
        abandoned: set[str] = set()
        held: dict[str, Holder] = {}
        wanted = ids
        for _ in range(3):  # again for leases whose holder died or let go meanwhile
            if not wanted:
                break
            now = self._clock()
            params = {
                "ids": json.dumps(wanted),
                "run_id": run_id,
                "host": self._me.host,
                "pid": self._me.pid,
                "now": now,
                "expires": now + self.ttl,
                "ttl": self.ttl,
            }
            db = self._store.db
            async with self._store.transaction("take leases"):
                [(others, alone, leased)] = await db.execute_fetchall(_STANDING, params)
                if others:
                    await self._split_claims(run_id)
                    [(alone,)] = await db.execute_fetchall(_ALONE, params)
                    leased = True
                left: list[str] = []
                if alone and leased:  # no lease rows at all is the common case
                    [(left_ids, live)] = await db.execute_fetchall(_LEFT_UNFINISHED, params)
                    with self._store.decoding("leases left unfinished"):
                        left = [str(task_id) for task_id in json.loads(left_ids)]
                    alone = not live
                [(token,)] = await db.execute_fetchall(_NEXT_TOKEN)
                self._drawn.setdefault(run_id, set()).add(int(token))
                if alone:  # the common case: one row for the lot
                    [(claim_id,)] = await db.execute_fetchall(
                        _NEW_CLAIM, [run_id, now, self.ttl, params["ids"], token]
                    )
                    # The claim's tasks expire with their run: it must last as
                    # long as this holder takes them to (see _hold()).
                    await db.execute(_RENEW_RUNS, [params["expires"], json.dumps([run_id])])
                else:
                    rows = await db.execute_fetchall(_TAKE_MANY, {**params, "token": token})
            if alone:
                abandoned.update(left)
                self._hold(wanted, run_id, self.ttl, now, int(claim_id))
                fenced = dict.fromkeys(wanted, int(token))
                self._tokens_of(run_id).update(fenced)
                tokens.update(fenced)
                taken.extend(wanted)
                wanted = []
                break
            got = [str(row[0]) for row in rows]
            fenced = {str(row[0]): int(row[2]) for row in rows}
            self._tokens_of(run_id).update(fenced)
            tokens.update(fenced)
            for task_id, previous, _ in rows:
                if previous == LeaseOutcome.ABANDONED:
                    abandoned.add(str(task_id))
                elif previous is not None and previous not in _OUTCOMES:
                    with self._store.decoding(f"leases row {task_id!r}"):
                        member(LeaseOutcome, previous, "prev_outcome")  # raises: damaged
            self._hold(got, run_id, self.ttl, now)
            taken.extend(got)
            rest = set(wanted).difference(got)
            wanted = []
            if not rest:
                break
            dead: list[Holder] = []
            for state in await self._states(list(rest)):
                if isinstance(state, Holder):
                    held[state.task_id] = state
                    continue
                task_id, _, gone = state
                wanted.append(task_id)  # let go meanwhile, or its holder died: again
                if gone is not None:
                    dead.append(gone)
            if dead:
                await self._let_go_of_dead(dead)
        done = await self._succeeded_since(ids, since, run_id) if ids else set()
        return Claim(taken, held, done, wanted, abandoned, tokens=tokens)

    async def _split_claims(self, run_id: str) -> None:
        """Turn other runs' claims into lease rows (inside the caller's transaction)."""
        db = self._store.db
        if await db.execute_fetchall(_OTHER_CLAIMS, [run_id]):
            await db.execute(_SPLIT_CLAIMS, {"run_id": run_id})
            await db.execute("DELETE FROM run_claims WHERE run_id != ?", [run_id])

    def claiming(self, run_id: str) -> bool:
        """Whether ``run_id`` holds tasks through claims (as far as this journal knows)."""
        return any(self._held.get(run_id, {}).values())

    async def end_claims(self, run_id: str, ended: EndedRun | None) -> None:
        """Let go of the claims of a run that ends (inside the caller's transaction).

        Its claimed tasks without a success in ``ended`` become lease rows
        released as abandoned; without ``ended``, those the run journaled no
        success for.
        """
        if not self.claiming(run_id):
            return
        held = self._held[run_id]
        db = self._store.db
        now = self._clock()
        if ended is None:
            await db.execute(_ABANDON_CLAIMED_UNSUCCESSFUL, {"run_id": run_id, "now": now})
        else:
            claimed = compress(held.keys(), held.values())  # claim ids; 0: not a claim's
            unfinished = list(ended.never_journaled(claimed))
            unfinished += [task_id for task_id in ended.failing if held.get(task_id)]
            if unfinished:
                await db.execute(
                    _ABANDON_CLAIMED,
                    {"run_id": run_id, "now": now, "ids": json.dumps(unfinished)},
                )
        await db.execute(_DROP_CLAIMS, [run_id])

    async def watch(self, task_ids: Sequence[str]) -> dict[str, Holder | LeaseOutcome]:
        """How each lease stands: its live holder, or how it was let go."""
        found: dict[str, Holder | LeaseOutcome] = dict.fromkeys(task_ids, LeaseOutcome.ABANDONED)
        for state in await self._states(list(task_ids)):
            if isinstance(state, Holder):
                found[state.task_id] = state
            else:
                found[state[0]] = state[1]
        return found

    async def _let_go_of_dead(self, holders: list[Holder]) -> None:
        """Release as abandoned the leases of holders whose process is gone."""
        now = self._clock()
        async with self._store.transaction("take over leases of dead processes"):
            await self._store.db.executemany(
                "UPDATE leases SET outcome = 'abandoned', released = ? WHERE task_id = ? "
                "AND run_id = ? AND host = ? AND pid = ? AND outcome IS NULL",
                [(now, h.task_id, h.run_id, h.host, h.pid) for h in holders],
            )
        await recover_interrupted(self._store, self._me, now)  # and mark their runs

    def commit_check(self, run_id: str) -> CommitCheck:
        """The commit guard of one run (see :meth:`Journal.commit_check`)."""
        return RunCheck(
            self,
            self._held.setdefault(run_id, {}),
            self.accepted.setdefault(run_id, {}),
            self._clock,
        )

    def _hold(
        self, task_ids: Sequence[str], run_id: str, ttl: float, now: float, claim: int = 0
    ) -> None:
        if not any(self._held.values()):
            self.valid_until = now + ttl
        else:
            self.valid_until = min(self.valid_until, now + ttl)
        self._shortest = min(self._shortest, ttl)
        held = self._held.get(run_id)
        if held is None:
            held = self._held[run_id] = {}
        held.update(dict.fromkeys(task_ids, claim))
        self.live_runs.add(run_id)

    async def _states(self, task_ids: list[str]) -> list[Holder | _LetGo]:
        """The live holder of each lease, or how it was let go (absent: never held).

        A lease whose holder's process is gone counts as abandoned; that
        holder comes third, as the lease row still names it.
        """
        now = self._clock()
        states: list[Holder | _LetGo] = []
        ids = json.dumps(task_ids)
        rows = {str(row[0]): row for row in await self._store.fetch(_LEASE_ROWS, [ids])}
        for claimed in await self._store.fetch(_CLAIMED_ROWS, [ids]):
            row = rows.get(str(claimed[0]))
            if row is None or row[1] != claimed[1]:
                rows[str(claimed[0])] = claimed  # the claim took over from that row's run
        for row in rows.values():
            task_id, run_id, host, pid, since, expires, outcome, node, succeeded, ended = row
            task_id = str(task_id)
            with self._store.decoding(f"lease of {task_id!r}"):
                holder = Holder(
                    task_id,
                    text(run_id, "run_id"),
                    text(host, "host"),
                    integer(pid, "pid"),
                    real(since, "since"),
                    real(expires, "expires"),
                )
                let_go = None if outcome is None else member(LeaseOutcome, outcome, "outcome")
                node = optional_text(node, "node")
            if succeeded:
                states.append((task_id, LeaseOutcome.SUCCESS, None))
            elif let_go is not None:
                states.append((task_id, let_go, None))
            elif ended or holder.expires <= now:
                states.append((task_id, LeaseOutcome.ABANDONED, None))
            elif self._me.outlived(holder.host, holder.pid, node):
                states.append((task_id, LeaseOutcome.ABANDONED, holder))
            else:
                states.append(holder)
        return states

    def to_fence(self, successes: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
        """The tokens of the accepted ``successes`` (run id -> task ids) about to be journaled.

        The token is the one the attempt held, as the commit check accepted
        it (then forgotten here), else the one the run took the lease with.
        The caller fences them (:meth:`stale`) in the transaction that writes
        them. The successes of tasks the run took no lease on through this
        journal (events recorded directly) are not fenced.
        """
        return tokens_to_fence(successes, self.accepted, self.tokens)

    async def stale(self, run_id: str, mine: Mapping[str, int]) -> dict[str, str]:
        """Those of ``run_id``'s successes (task id -> token) taken over since, with why.

        Call it inside the transaction that journals them, so that no take
        comes in between.
        """
        if await self._none_drawn_by_others(run_id, min(mine.values())):
            return {}
        rows = await self._store.db.execute_fetchall(
            _STALE, {"mine": json.dumps(mine), "run_id": run_id}
        )
        why: dict[str, str] = {}
        for task_id, holder, token, claimed_by in rows:
            if holder is not None:
                by = f"run {holder} (token {token})"
            else:
                by = f"run {claimed_by} (a claim of its)"
            why[str(task_id)] = (
                f"{task_id}: success not journaled: while this attempt ran (lease token "
                f"{mine[str(task_id)]}), its lease lapsed and was taken over by {by}; "
                "that holder's outcome stands"
            )
            _log.warning("journal.success_fenced", task_id=str(task_id), run_id=run_id, by=by)
        return why

    async def _none_drawn_by_others(self, run_id: str, since: int) -> bool:
        """Whether ``run_id`` drew every token from ``since`` on (inside the caller's
        transaction): then no other run took any of its leases of tokens ``since``
        or later, as a take draws a token greater than the lease's.

        The common case (one run on the journal): its batches of successes
        need no look-up task by task (3-5 ms and the JSON of their tokens for
        each few thousand).
        """
        drawn = self._drawn.get(run_id)
        if not drawn:
            return False
        [(last,)] = await self._store.db.execute_fetchall(_LAST_TOKEN)
        return sum(1 for token in drawn if token >= since) == int(last) - since + 1

    async def begin(self, run_id: str) -> None:
        """Note the runs that may commit successes ``run_id`` will not have probed.

        Called once the run's row is written, before it probes anything.
        """
        [(going_on, last)] = await self._store.fetch(_RIVALS, [run_id])
        self._rivals[run_id] = _Rivals(str(going_on), int(last or 0))

    async def _succeeded_since(self, task_ids: list[str], since: float, run_id: str) -> set[str]:
        """Those of ``task_ids`` another run succeeded at since ``since``, or that a
        run going on when ``run_id`` began (or begun after it) succeeded at."""
        rivals = self._rivals.get(run_id, _NO_RIVALS)
        params = {
            "run_id": run_id,
            "since": since,
            "going_on": rivals.going_on,
            "last": rivals.last,
        }
        if not await self._store.fetch(_ANY_RIVAL, params):
            return set()  # no other run was going on since then: nothing to look up
        rows = await self._store.fetch(_DONE_SINCE, {**params, "ids": json.dumps(task_ids)})
        return {str(row[0]) for row in rows}

    async def renew(self) -> list[tuple[str, str]]:
        if not self.live_runs:
            return []
        now = self._clock()
        db = self._store.db
        async with self._store.transaction("renew leases"):
            # Under the lock: leases taken while this renewal waited for it are
            # judged below, so they must be renewed and their claims read too.
            run_ids = sorted(self.live_runs)
            claiming = any(self.claiming(run_id) for run_id in run_ids)
            ids = json.dumps(run_ids)
            renewed = await db.execute_fetchall(_RENEW_LEASES, [now, ids])
            await db.execute(_RENEW_RUNS, [now + self.ttl, ids])
            standing = set()
            if claiming:
                rows = await db.execute_fetchall(_CLAIMS_OF_RUNS, [ids])
                standing = {int(row[0]) for row in rows}
        if any(self._held.values()):
            self.valid_until = now + self._shortest
        kept = {(str(row[0]), str(row[1])) for row in renewed}
        lost: list[tuple[str, str]] = []
        for run_id, held in self._held.items():
            claims = set(held.values())
            if 0 not in claims and claims <= standing:
                # Every task held through a claim that stands: none lost. (The loop
                # below, over each of a 1,000,000-task run's leases, held the event
                # loop 0.18 s per heartbeat; the set is made in C.)
                continue
            for task_id, claim in list(held.items()):
                if claim in standing:
                    continue
                if (task_id, run_id) in kept:
                    if claim:
                        held[task_id] = 0  # its claim became lease rows: it is one now
                    continue
                del held[task_id]
                lost.append((task_id, run_id))
                _log.warning("journal.lease_lost", task_id=task_id, run_id=run_id)
        return lost

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        held = self._held.get(run_id)
        claim = held.pop(task_id, 0) if held is not None else 0
        now = self._clock()
        outcome = LeaseOutcome(outcome)
        if claim:
            # Held through a claim, unless another run turned it into a lease row.
            rows = await self._store.write(
                _RELEASE_CLAIMED,
                {
                    "task_id": task_id,
                    "run_id": run_id,
                    "host": self._me.host,
                    "pid": self._me.pid,
                    "now": now,
                    "ttl": self.ttl,
                    "outcome": outcome.value,
                    "claim": claim,
                    "token": self.tokens.get(run_id, {}).get(task_id, 0),
                },
                "release a lease",
            )
        else:
            rows = await self._store.write(
                "UPDATE leases SET outcome = ?, released = ? "
                "WHERE task_id = ? AND run_id = ? AND outcome IS NULL RETURNING 1",
                [outcome.value, now, task_id, run_id],
                "release a lease",
            )
        return bool(rows)

    def forget_run(self, run_id: str) -> None:
        """The run ended: stop renewing its leases (the caller released them)."""
        self.live_runs.discard(run_id)
        self._rivals.pop(run_id, None)
        self.tokens.pop(run_id, None)
        self._drawn.pop(run_id, None)
        held = self._held.pop(run_id, None)
        if held is not None:
            held.clear()  # for its checker()s too


async def recover_interrupted(store: Store, me: Identity, now: float) -> int:
    """Mark runs whose process is gone interrupted, with their running attempts.

    Their leases still held are released as abandoned. Returns how many runs.
    """
    running = "SELECT run_id, host, pid, expires, node FROM runs WHERE status = 'running'"
    orphans = await store.fetch(
        "SELECT 1 FROM attempts WHERE status = 'running' AND run_id NOT IN "
        "(SELECT run_id FROM runs WHERE status = 'running') LIMIT 1"
    )
    if not orphans and not any(_stale(store, row, me, now) for row in await store.fetch(running)):
        return 0  # the common case: no write transaction at all
    db = store.db
    async with store.transaction("recover interrupted runs"):
        # Judge again inside the transaction: a heartbeat may have come meanwhile.
        stale = [
            (str(row[0]),) for row in await store.fetch(running) if _stale(store, row, me, now)
        ]
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
        for (run_id,) in stale:  # what their claims held, they did not all finish
            await db.execute(_ABANDON_CLAIMED_UNSUCCESSFUL, {"run_id": run_id, "now": now})
            await db.execute(_DROP_CLAIMS, [run_id])
    if stale:
        _log.info("journal.interrupted_runs", path=str(store.path), runs=len(stale))
    return len(stale)


def _stale(store: Store, row: Sequence[Any], me: Identity, now: float) -> bool:
    run_id, host, pid, expires, node = row
    with store.decoding(f"runs row {run_id!r}"):
        if real(expires, "expires") <= now:
            return True
        return me.outlived(text(host, "host"), integer(pid, "pid"), optional_text(node, "node"))


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
