"""What both journals' leases share of fencing: a run's commit check, and the
tokens its successes are journaled under.

Each backend keeps, per run, the leases it holds (task id -> token), the
tokens its takes drew, and the tokens its commit check accepted for a
success not yet journaled; how it takes and renews leases is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, final

from ..coordination import CommitCheck

__all__ = ["RunCheck", "tokens_to_fence"]


class _Renewed(Protocol):
    @property
    def valid_until(self) -> float:
        """On the leases' clock: every lease held lasts at least until then."""


@final
class RunCheck(CommitCheck):
    """The commit guard of one run: its leases, as far as the last renewal knows."""

    __slots__ = ("_accepted", "_clock", "_held", "_leases")

    def __init__(
        self,
        leases: _Renewed,
        held: dict[str, int],
        accepted: dict[str, int],
        clock: Callable[[], float],
    ) -> None:
        self._leases = leases
        self._held = held  # the run's leases held (emptied when the run ends)
        self._accepted = accepted  # the run's successes accepted, not yet journaled
        self._clock = clock

    def may_commit(self, task_id: str) -> bool:
        return task_id in self._held and self._clock() < self._leases.valid_until

    def accept(self, task_id: str, token: int) -> bool:
        if self.may_commit(task_id):
            self._accepted[task_id] = token  # fenced when journaled: see tokens_to_fence()
            return True
        return False


def tokens_to_fence(
    successes: Mapping[str, Sequence[str]],
    accepted: Mapping[str, dict[str, int]],
    taken: Mapping[str, Mapping[str, int]],
) -> dict[str, dict[str, int]]:
    """The tokens of the ``successes`` (run id -> task ids) about to be journaled.

    The token is the one the attempt held, as the commit check accepted it (then
    forgotten: popped from ``accepted``), else the one the run took the lease
    with (``taken``). The successes of tasks the run took no lease on through
    this journal (events recorded directly) are not fenced.
    """
    found: dict[str, dict[str, int]] = {}
    for run_id, task_ids in successes.items():
        mine_accepted = accepted.get(run_id) or {}
        mine_taken = taken.get(run_id) or {}
        if not mine_accepted and not mine_taken:
            continue
        pop, get = mine_accepted.pop, mine_taken.get
        mine = {
            task_id: token for task_id in task_ids if (token := pop(task_id, None) or get(task_id))
        }
        if mine:
            found[run_id] = mine
    return found
