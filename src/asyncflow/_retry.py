"""Retry policy: how many attempts, how long between them, which errors qualify."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError, PermanentError, TaskDefinitionError, UpstreamFailed
from .resources import AMOUNT, is_amount
from .task import MAX_RETRY_BACKOFF, Task

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
        """Raises ConfigError (a ValueError) for a setting out of range, NaN included."""
        count = self.count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"RetryPolicy.count must be an int >= 0, got {count!r}")
        for name in ("delay", "max_delay"):
            if not is_amount(getattr(self, name)):
                raise ConfigError(
                    f"RetryPolicy.{name} must be {AMOUNT}, in seconds, got {getattr(self, name)!r}"
                )
        if not 1 <= self.backoff <= MAX_RETRY_BACKOFF:
            raise ConfigError(
                f"RetryPolicy.backoff must be >= 1 (and at most {MAX_RETRY_BACKOFF}), "
                f"got {self.backoff!r}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter must be between 0 and 1, got {self.jitter!r}")

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
        try:
            delay = min(self.delay * self.backoff ** (attempt - 1), self.max_delay)
        except OverflowError:  # after a thousand attempts or so, backoff ** n passes 1e308
            delay = min(self.delay, self.max_delay) and self.max_delay
        if self.jitter and delay:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            delay = max(0.0, delay * (1 + spread))
        return delay
