"""Coordination: which process may run a task now, behind one small interface.

The executor asks a :class:`Coordinator` for the leases of the tasks it is
about to run (:meth:`~Coordinator.claim`), follows the tasks other processes
hold until they let go (:meth:`~Coordinator.watch`), renews what it holds
(:meth:`~Coordinator.renew`), lets go with an outcome
(:meth:`~Coordinator.release`), and asks a :class:`CommitCheck` before a
task's output is committed and before its success is reported.

Fencing: every lease taken carries a *token*, an integer from one counter per
backend that only grows (all the tasks of one claim share it), so a later
holder of a task always has a greater token than an earlier one. The attempt
carries it (remote targets tag their objects with it, and local and remote
commits refuse to replace an object written under a greater one), and the
backend records a success only while its token is still the task's greatest,
checked in the transaction that records it: a holder that stalled past its
lease and woke up after another took the task over can neither replace the
new holder's output nor journal a second success. The journal implements it (one SQLite file shared
by processes); :class:`NullCoordinator` serves runs without a journal, where
every lease is this run's at once and nobody else is watched.

The executor knows this module only; which backend stands behind it is the
runner's choice.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, final

__all__ = [
    "Claim",
    "CommitCheck",
    "Coordinator",
    "Holder",
    "LeaseOutcome",
    "LeaseState",
    "NullCoordinator",
]


class LeaseState(enum.Enum):
    """Where one task of a run stands with its lease (the executor's ``Node.claim``)."""

    UNCLAIMED = enum.auto()
    """Not asked for (yet), or settled; the run's to run when leases are not
    :attr:`~Coordinator.shared`."""
    MINE = enum.auto()
    """This run holds the lease."""
    MINE_LEFTOVERS = enum.auto()
    """This run holds it, taken from a holder that may have left partial writes."""
    ELSEWHERE = enum.auto()
    """Another run holds it (or it is not asked for yet): wait for its outcome."""
    PARKED = enum.auto()
    """Ready to run here, but another run holds it: queued once it is ours."""


class LeaseOutcome(enum.StrEnum):
    """How the holder of a lease let go of it."""

    SUCCESS = "success"
    """The holder ran the task and it succeeded: a waiter takes this outcome."""
    FAILED = "failed"
    """The holder ran the task and it failed: a waiter takes this outcome."""
    ABANDONED = "abandoned"
    """The holder let go without an outcome (cancelled, crashed, or its lease
    expired): a waiter should try to take the lease itself."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease that a claim could not take."""

    task_id: str
    run_id: str
    host: str
    pid: int
    since: float
    expires: float


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`Coordinator.claim` found for a batch of tasks."""

    taken: list[str]
    """Task ids whose lease the run now holds."""
    held: dict[str, Holder]
    """Task ids held by another live run, with who holds them."""
    done: set[str]
    """Task ids another run succeeded at since the given time (taken or not):
    check whether they are complete before running them."""
    unsettled: list[str]
    """Task ids whose leases kept changing hands while they were claimed: neither
    taken nor held by a known run. Claim them again a little later."""
    abandoned: set[str] = field(default_factory=set)
    """Taken task ids whose previous holder let go without an outcome (it died,
    stalled, or ended before finishing them): it may have left partial writes."""
    used: Mapping[str, int] = field(default_factory=dict)
    """Retries already used by interrupted runs, for taken task ids with any: a
    resumed run goes on with what is left of them."""
    tokens: Mapping[str, int] = field(default_factory=dict)
    """The fencing token of every taken task id (see the module's docstring);
    empty from a backend without fencing."""


class CommitCheck(abc.ABC):
    """What an attempt asks before it commits a task's output.

    One per run; asked once per task and per commit, so it answers without I/O.
    """

    __slots__ = ()

    @abc.abstractmethod
    def may_commit(self, task_id: str) -> bool:
        """Whether this run surely still holds the lease on ``task_id``.

        False once the lease was found lost, and once it may have lapsed (no
        renewal for a whole time-to-live): another process may run the task.
        """

    def accept(self, task_id: str, token: int) -> bool:
        """Whether the run may report ``task_id`` done, its attempt having held ``token``.

        Asked once per success, before it is reported; answers without I/O.
        True: the backend records the success, but only if ``token`` is still
        the task's current token when the record is written (checked in the
        same transaction); a success refused then is journaled as a failed
        attempt naming the newer holder. False (the lease surely lapsed or was
        lost, as :meth:`may_commit`): the caller asks the coordinator
        (:meth:`Coordinator.renew`) and, if the lease is gone, does not report
        the task done: it takes the other holder's outcome.

        This default notes nothing and answers :meth:`may_commit`.
        """
        return self.may_commit(task_id)


class Coordinator(abc.ABC):
    """The leases a run needs: take, learn outcomes, renew, release, guard commits."""

    __slots__ = ()

    shared: ClassVar[bool] = True
    """Whether other runs may hold leases: when not, every lease is the run's at
    once, and the run claims none up front (a claim would hand over every task)."""

    @abc.abstractmethod
    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        """Take the leases of ``task_ids`` for ``run_id``, or learn who holds them.

        Each take issues a fencing token (:attr:`Claim.tokens`) greater than
        any the backend issued before. ``done`` names tasks another run
        succeeded at since ``since`` (when the caller probed them): the caller
        checks them again.

        Raises:
            JournalError: the backend cannot be read or written.
        """

    @abc.abstractmethod
    async def watch(self, task_ids: Sequence[str]) -> Mapping[str, Holder | LeaseOutcome]:
        """For each task id, its lease's live :class:`Holder` or how it was let go.

        ``ABANDONED`` (let go without an outcome, or never leased) means: claim
        it again.

        Raises:
            JournalError: the backend cannot be read.
        """

    @abc.abstractmethod
    async def renew(self) -> Sequence[tuple[str, str]]:
        """Push on the expiry of every lease held; the ``(task_id, run_id)`` found lost.

        Raises:
            JournalError: the backend cannot be written.
        """

    @abc.abstractmethod
    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        """Let go of the lease, recording how: waiters take ``outcome``.

        Returns False when ``run_id`` no longer held it.

        Raises:
            JournalError: the backend cannot be written.
        """

    @abc.abstractmethod
    def commit_check(self, run_id: str) -> CommitCheck | None:
        """The guard of ``run_id``'s commits; None when commits need no lease."""


@final
class NullCoordinator(Coordinator):
    """No journal: every lease is the run's at once, nothing is held elsewhere."""

    __slots__ = ()

    shared = False

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        return Claim(list(task_ids), {}, set(), [])

    async def watch(self, task_ids: Sequence[str]) -> Mapping[str, Holder | LeaseOutcome]:
        return dict.fromkeys(task_ids, LeaseOutcome.ABANDONED)

    async def renew(self) -> Sequence[tuple[str, str]]:
        return []

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        return True

    def commit_check(self, run_id: str) -> CommitCheck | None:
        return None
