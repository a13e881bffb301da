"""Resource pools: named capacities that tasks hold while they run.

The policy:

* Capacities come from ``run(resources={...})`` (or ``--resources`` on the
  command line). A task declares what it holds with the class attribute
  ``resources = {"memory_gb": 8, "db": 1}``; amounts may be fractional.
* A resource a task names that the run gives no capacity has capacity **1**
  (as in Luigi), and the run logs a warning once per such resource.
* A task that asks for more than a capacity is a :class:`ResourceError`
  before anything runs (Luigi would wait forever).
* A task acquires all of its resources at once or none of them, so tasks that
  need the same resources can never deadlock each other.
* Fairness: ready tasks are considered by priority, then in the order they
  became ready. A task that does not fit *reserves* what it asks for: tasks
  behind it may only use what is left beyond that reservation. So a large
  request waiting behind a stream of small ones starts as soon as enough has
  been released, and smaller tasks still use capacity it cannot.
* Whatever a task holds is released when its attempt ends, by any path.
  A task may give part back early with ``Task.decrease_running_resources()``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import ResourceError

__all__ = [
    "AMOUNT",
    "DEFAULT_CAPACITY",
    "MAX_AMOUNT",
    "ResourcePool",
    "ResourceStatistics",
    "current_pool",
    "is_amount",
]

DEFAULT_CAPACITY = 1
"""Capacity of a resource that tasks name but the run does not configure."""

_EPSILON = 1e-9  # fractional amounts: 0.1 + 0.2 must fit in 0.3


MAX_AMOUNT = 10**15
"""The largest amount or duration: more than any machine has of anything, even
counted in bytes (a petabyte); beyond it, a number is a mistake (or infinity)."""


AMOUNT = "a non-negative number (at most 10**15)"
"""What :func:`is_amount` accepts, for error messages."""


def is_amount(value: object) -> bool:
    """Whether ``value`` is a usable amount or duration: a number from 0 to
    :data:`MAX_AMOUNT` (so neither NaN nor infinity), not a bool."""
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= MAX_AMOUNT
    )


running_release: contextvars.ContextVar[Callable[[Mapping[str, float]], None] | None] = (
    contextvars.ContextVar("asyncflow_running_release", default=None)
)
"""Inside a running attempt: gives back part of the attempt's resources."""

_current_pool: contextvars.ContextVar[ResourcePool | None] = contextvars.ContextVar(
    "asyncflow_pool", default=None
)


def current_pool() -> ResourcePool | None:
    """The resource pool of the run this code runs in (task bodies, event handlers)."""
    return _current_pool.get()


@dataclass(frozen=True, slots=True)
class ResourceStatistics:
    """A snapshot of one resource, in the spirit of anyio's ``CapacityLimiter.statistics()``."""

    name: str
    capacity: float
    in_use: float
    waiting: int
    """Ready tasks that need this resource and wait for it."""

    @property
    def available(self) -> float:
        return max(self.capacity - self.in_use, 0.0)


class ResourcePool:
    """Capacities and current use of named resources."""

    def __init__(self, capacities: Mapping[str, float] | None = None) -> None:
        self._capacity: dict[str, float] = dict(capacities or {})
        self._in_use: dict[str, float] = dict.fromkeys(self._capacity, 0.0)
        self._waiting: dict[str, int] = {}
        self.defaulted: set[str] = set()
        """Resources given the default capacity because the run did not configure them."""

    def __repr__(self) -> str:
        return f"<ResourcePool {self._capacity}>"

    def declare(self, name: str) -> None:
        """Make sure ``name`` has a capacity (the default, if not configured)."""
        if name not in self._capacity:
            self._capacity[name] = DEFAULT_CAPACITY
            self._in_use[name] = 0.0
            self.defaulted.add(name)

    def capacity(self, name: str) -> float:
        return self._capacity.get(name, DEFAULT_CAPACITY)

    def check(self, task_id: str, request: Mapping[str, float]) -> None:
        """Refuse a request that could never be granted.

        Raises:
            ResourceError: an amount exceeds the resource's capacity.
        """
        for name, amount in request.items():
            capacity = self.capacity(name)
            if amount > capacity + _EPSILON:
                hint = (
                    f"it has no configured capacity, so it has {DEFAULT_CAPACITY}; "
                    if name not in self._capacity or name in self.defaulted
                    else ""
                )
                raise ResourceError(
                    f"{task_id} requests {amount:g} of resource {name!r}, but the run has "
                    f"{capacity:g} ({hint}raise it with resources={{{name!r}: ...}} "
                    f"or --resources {name}=N)"
                )

    def fits(self, request: Mapping[str, float], reserved: Mapping[str, float]) -> bool:
        """Whether ``request`` fits in what is free beyond ``reserved``."""
        for name, amount in request.items():
            free = self._capacity[name] - self._in_use[name] - reserved.get(name, 0.0)
            if amount > free + _EPSILON:
                return False
        return True

    def acquire(self, request: Mapping[str, float]) -> None:
        for name, amount in request.items():
            self._in_use[name] += amount

    def release(self, request: Mapping[str, float]) -> None:
        for name, amount in request.items():
            left = self._in_use[name] - amount
            self._in_use[name] = 0.0 if left < _EPSILON else left

    def set_waiting(self, waiting: Mapping[str, int]) -> None:
        self._waiting = dict(waiting)

    def statistics(self) -> dict[str, ResourceStatistics]:
        """A snapshot of every resource: capacity, in use, tasks waiting."""
        return {
            name: ResourceStatistics(name, capacity, self._in_use[name], self._waiting.get(name, 0))
            for name, capacity in self._capacity.items()
        }
