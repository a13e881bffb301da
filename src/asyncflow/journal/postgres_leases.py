"""Leases in PostgreSQL: which run may run a task now, across processes on any host.

One row per task id (``leases``): the holder, since when, how it was let go,
and a fencing token that every take by another run bumps. A lease lives as
long as its holder's run: until the run ends, or its liveness (``runs.expires``,
the database's clock) lapses. One heartbeat statement per journal pushes its
runs on, one row each, whatever the number of leases they hold. A claim takes
every free lease of a batch in one statement
(:data:`~asyncflow.journal.postgres_sql.CLAIM`), locking the rows it takes
(``FOR UPDATE ... SKIP LOCKED``), so two processes never both take one lease;
rows another transaction holds locked are read as held and claimed again.
Liveness is expiry alone: a holder on another host cannot be seen to die, so
a killed holder's tasks wait for its run to expire.

This process cannot read the database's clock, so it judges its own leases
by its monotonic clock, conservatively: a renewal (or a claim) sent at ``t``
keeps every lease it found held at least until ``t + ttl`` (the database set
the run's expiry to *its* ``now() + ttl``, later than ``t`` in real time). Past
that, without a newer renewal, :meth:`commit_check` says no. A renewal that
finds its run had lapsed asks which leases the run still holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._log import log as _log
from ..coordination import Claim, CommitCheck, Holder, LeaseOutcome
from . import postgres_sql as sql
from .decode import integer, member, real, rows_of, text
from .fencing import RunCheck, tokens_to_fence
from .postgres_store import PgStore, joined

__all__ = ["PgLeases", "recover_expired"]

_TRIES: Final = 3
"""Claims of one batch: again for leases let go, or locked by another claim, meanwhile."""


@dataclass(frozen=True, slots=True)
class _Rivals:
    """The runs that may commit a success a run did not see when it probed (see
    :class:`asyncflow.journal.leases._Rivals`)."""

    going_on: list[str]
    last: int


_NO_RIVALS: Final = _Rivals([], 1 << 62)


class PgLeases:
    """The lease operations of one PostgreSQL journal, and the leases it holds."""

    def __init__(
        self,
        store: PgStore,
        host: str,
        pid: int,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._host = host
        self._pid = pid
        self.ttl = ttl
        self._monotonic = monotonic
        self._held: dict[str, dict[str, int]] = {}  # run id -> task id -> token
        # Run id -> task id -> the token of its latest take (kept when the lease
        # is lost: fencing the success needs it), and of a success accepted and
        # not yet journaled (see RunCheck.accept and to_fence()).
        self.tokens: dict[str, dict[str, int]] = {}
        self.accepted: dict[str, dict[str, int]] = {}
        self.live_runs: set[str] = set()
        self._rivals: dict[str, _Rivals] = {}
        self.valid_until = 0.0  # monotonic: every held lease lasts at least until then

    def heartbeat_interval(self) -> float:
        return self.ttl / 3

    async def claim(self, task_ids: Sequence[str], run_id: str, since: float) -> Claim:
        """Take the free leases of ``task_ids`` (see :meth:`Journal.claim`)."""
        ids = sorted(set(task_ids))  # one order for every claimer: no deadlock on inserts
        taken: list[str] = []
        tokens: dict[str, int] = {}
        abandoned: set[str] = set()
        held: dict[str, Holder] = {}
        wanted = ids
        for _ in range(_TRIES):
            if not wanted:
                break
            sent = self._monotonic()
            [listed], separator = joined([wanted])
            args = (listed, run_id, self._host, self._pid, self.ttl, separator)
            got: dict[str, int] = {}
            rows: list[Any] | None = None
            if not taken and not held:  # the first try: most tasks were never leased
                fresh = await self._store.try_write(sql.CLAIM_NEW, *args, doing="take leases")
                if fresh is not None:
                    [(token,)] = fresh
                    got = dict.fromkeys(wanted, int(token))
                    rows = []
                else:  # some were leased before: the others are inserted, those taken by CLAIM
                    [(token, inserted)] = await self._store.write(
                        sql.CLAIM_SOME, *args, doing="take leases"
                    )
                    got = dict.fromkeys(inserted, int(token))
                    rest = [task_id for task_id in wanted if task_id not in got]
                    rows = []
                    if rest:  # (none when the row in the way was rolled back meanwhile)
                        [listed], separator = joined([rest])
                        rows = await self._store.write(
                            sql.CLAIM, listed, *args[1:5], separator, doing="take leases"
                        )
            if rows is None:
                rows = await self._store.write(sql.CLAIM, *args, doing="take leases")
            for task_id, token, previous in rows:
                got[str(task_id)] = int(token)
                if previous is not None:
                    with rows_of_store(self._store, f"lease of {task_id!r}"):
                        if member(LeaseOutcome, previous, "prev_outcome") is LeaseOutcome.ABANDONED:
                            abandoned.add(str(task_id))
            self._hold(run_id, got, sent)
            tokens.update(got)
            if len(got) == len(wanted):
                taken += wanted
                rest = []
            else:
                taken.extend(task_id for task_id in wanted if task_id in got)
                rest = [task_id for task_id in wanted if task_id not in got]
            wanted = []
            if not rest:
                break
            for task_id, state in (await self.states(rest)).items():
                if isinstance(state, Holder) and state.run_id != run_id:
                    held[task_id] = state
                else:
                    wanted.append(task_id)  # let go meanwhile, or locked by another claim
        done = await self._succeeded_since(ids, since, run_id) if ids else set()
        # From what the takes returned: a heartbeat meanwhile may have dropped some
        # from self._held (lost since), which the commit check then answers for.
        tokens = {task_id: tokens[task_id] for task_id in taken}
        return Claim(taken, held, done, wanted, abandoned, tokens=tokens)

    async def states(self, task_ids: Sequence[str]) -> dict[str, Holder | LeaseOutcome]:
        """Each lease's live holder, or how it was let go (never leased: abandoned)."""
        found: dict[str, Holder | LeaseOutcome] = dict.fromkeys(task_ids, LeaseOutcome.ABANDONED)
        for row in await self._store.fetch(sql.LEASE_STATES, list(task_ids)):
            task_id, run_id, host, pid, since, expires, outcome, succeeded, ended, expired = row
            task_id = str(task_id)
            with rows_of_store(self._store, f"lease of {task_id!r}"):
                holder = Holder(
                    task_id,
                    text(run_id, "run_id"),
                    text(host, "host"),
                    integer(pid, "pid"),
                    real(since, "since"),
                    real(expires, "expires"),
                )
                let_go = None if outcome is None else member(LeaseOutcome, outcome, "outcome")
            if succeeded:
                found[task_id] = LeaseOutcome.SUCCESS
            elif let_go is not None:
                found[task_id] = let_go
            elif ended or expired:
                found[task_id] = LeaseOutcome.ABANDONED
            else:
                found[task_id] = holder
        return found

    def _hold(self, run_id: str, tokens: dict[str, int], sent: float) -> None:
        if not tokens:
            return
        if not any(self._held.values()):
            self.valid_until = sent + self.ttl
        else:
            self.valid_until = min(self.valid_until, sent + self.ttl)
        self._held.setdefault(run_id, {}).update(tokens)
        self.tokens.setdefault(run_id, {}).update(tokens)
        self.live_runs.add(run_id)

    def note_rivals(self, run_id: str, going_on: Sequence[str], last: int) -> None:
        """Note the runs that may commit successes ``run_id`` will not have probed
        (as :data:`~asyncflow.journal.postgres_sql.BEGIN_RUN` tells them)."""
        self._rivals[run_id] = _Rivals(list(going_on), int(last))

    async def _succeeded_since(self, task_ids: list[str], since: float, run_id: str) -> set[str]:
        rivals = self._rivals.get(run_id, _NO_RIVALS)
        if not await self._store.fetch(sql.ANY_RIVAL, run_id, since, rivals.last, rivals.going_on):
            return set()
        rows = await self._store.fetch(
            sql.DONE_SINCE, task_ids, run_id, since, rivals.last, rivals.going_on
        )
        return {str(row[0]) for row in rows}

    async def renew(self) -> list[tuple[str, str]]:
        """Push on this journal's runs (their leases live as long); the ``(task_id,
        run_id)`` found lost."""
        if not self.live_runs:
            return []
        sent = self._monotonic()
        # Only the leases held before the statement is sent are judged: one a claim
        # takes meanwhile was taken under the run's liveness that claim pushed on.
        before = {run_id: dict(held) for run_id, held in self._held.items() if held}
        valid_until = self.valid_until
        rows = await self._store.write(
            sql.RENEW, sorted(self.live_runs), self.ttl, doing="renew leases"
        )
        # Answered after the leases were sure to last: the database may have been
        # out of reach meanwhile (the statement sent again), and a first sending that
        # committed unanswered pushed the run on already, so the statement cannot
        # tell whether the run had lapsed before: every run is asked what it kept.
        unsure = self._monotonic() >= valid_until
        lapsed = {str(run_id): bool(late) or unsure for run_id, late in rows}
        lost: list[tuple[str, str]] = []
        for run_id, held_then in before.items():
            if run_id not in lapsed:  # over (found interrupted by another process)
                kept: dict[str, int] = {}
            elif lapsed[run_id]:  # another run may have taken some while it had lapsed
                still = await self._store.fetch(sql.HELD, sorted(held_then), run_id)
                kept = {str(task_id): int(token) for task_id, token in still}
            else:
                continue
            held = self._held.get(run_id, {})
            for task_id, token in held_then.items():
                if kept.get(task_id) == token or held.get(task_id) != token:
                    continue  # kept, or let go (or taken again) meanwhile
                del held[task_id]
                lost.append((task_id, run_id))
                _log.warning("journal.lease_lost", task_id=task_id, run_id=run_id)
        if any(self._held.values()):
            # Every run still holding leases was renewed: they last at least a ttl
            # from the renewal's sending (the database pushed them to its now() + ttl).
            self.valid_until = sent + self.ttl
        return lost

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        held = self._held.get(run_id)
        token = held.pop(task_id, None) if held is not None else None
        rows = await self._store.write(
            sql.RELEASE,
            task_id,
            run_id,
            LeaseOutcome(outcome).value,
            token,
            doing="release a lease",
        )
        return bool(rows)

    def commit_check(self, run_id: str) -> CommitCheck:
        return RunCheck(
            self,
            self._held.setdefault(run_id, {}),
            self.accepted.setdefault(run_id, {}),
            self._monotonic,
        )

    def to_fence(self, successes: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
        """The tokens of the ``successes`` (run id -> task ids) about to be journaled:
        the one the commit check accepted (then forgotten), else the one the run
        took the lease with. Tasks the run leased no lease on are not fenced."""
        return tokens_to_fence(successes, self.accepted, self.tokens)

    def forget_run(self, run_id: str) -> None:
        """The run ended: stop renewing its leases (the caller let go of them)."""
        self.live_runs.discard(run_id)
        self._rivals.pop(run_id, None)
        self.tokens.pop(run_id, None)
        held = self._held.pop(run_id, None)
        if held is not None:
            held.clear()  # for its checks too


def rows_of_store(store: PgStore, row: str) -> Any:
    """Decode ``row`` of the database at ``store`` (a value that does not decode is damage)."""
    return rows_of(store.url, row)  # type: ignore[arg-type]  # a URL names it as well as a path


async def recover_expired(store: PgStore) -> int:
    """Mark runs whose liveness expired interrupted, with their running attempts.

    Their leases are free from then on (a run that is over holds none). Returns
    how many runs.
    """
    stale = [
        str(row[0]) for row in await store.write(sql.RECOVER, doing="recover interrupted runs")
    ]
    if stale:
        _log.info("journal.interrupted_runs", url=store.url, runs=len(stale))
    return len(stale)
