"""Retry policy: how many attempts, how long between them, which errors qualify."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

from .errors import PermanentError, TaskDefinitionError, UpstreamFailed
from .task import Task

__all__ = ["RetryPolicy"]

_ATTRIBUTES = {
    "count": "retry_count",
    "delay": "retry_delay",
    "backoff": "retry_backoff",
    "max_delay": "retry_max_delay",
    "jitter": "retry_jitter",
    "retry_on": "retry_on",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failed attempt.

    Attempt ``n`` (1-based) that fails is followed, if allowed, by a wait of
    ``min(delay * backoff ** (n - 1), max_delay)``, spread by ``± jitter`` (a
    fraction: 0.1 means ±10 %).
    """

    count: int = 0
    delay: float = 0.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.count < 0 or self.delay < 0 or self.max_delay < 0:
            raise ValueError(f"retry count and delays must be >= 0: {self}")
        if self.backoff < 1:
            raise ValueError(f"retry backoff must be >= 1, got {self.backoff}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def for_task(cls, task_cls: type, default: RetryPolicy | None) -> RetryPolicy:
        """The policy of a task class: its own retry attributes, else the run's default.

        An attribute counts as the class's own when a class below ``Task`` in
        its MRO sets it.
        """
        base = default or cls()
        values: dict[str, Any] = {}
        for field in fields(cls):
            attr = _ATTRIBUTES[field.name]
            owner = next(k for k in task_cls.__mro__ if attr in k.__dict__)
            own = owner is not Task
            values[field.name] = getattr(task_cls, attr) if own else getattr(base, field.name)
        if not isinstance(values["retry_on"], tuple):
            values["retry_on"] = tuple(values["retry_on"])
        return cls(**values)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether a failed attempt ``attempt`` (1-based) is followed by another."""
        if attempt > self.count:
            return False
        if isinstance(error, PermanentError | TaskDefinitionError | UpstreamFailed):
            return False
        return isinstance(error, self.retry_on)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        delay = min(self.delay * self.backoff ** (attempt - 1), self.max_delay)
        if self.jitter and delay:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            delay = max(0.0, delay * (1 + spread))
        return delay
