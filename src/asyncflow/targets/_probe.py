"""Whether many targets exist, in as few requests as reasonable: :func:`probe_many`.

Targets under one parent prefix are answered by listing it (up to 1,000 keys
a request) when there are enough of them; the rest are probed one request
each, by a fixed pool of workers whose size bounds the requests in flight. A
:class:`~asyncflow.targets.RequestCounter` passed in counts the requests.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .._turns import drain, in_turns
from ._prefix import RemotePrefixTarget
from ._remote import (
    RemoteClient,
    RemoteTarget,
    RequestCounter,
    ensure_client_scope,
    parent_prefix,
    task_group,
)
from .base import Target

__all__ = ["DEFAULT_LIST_THRESHOLD", "DEFAULT_PROBE_CONCURRENCY", "probe_many"]

DEFAULT_PROBE_CONCURRENCY: Final = 64
"""Requests in flight at once."""
DEFAULT_LIST_THRESHOLD: Final = 8
"""Targets sharing a parent prefix from which listing it beats one request each."""
_SORT_TURN: Final = 4096
"""Targets sorted into groups between two turns of the event loop (a few ms)."""

_TargetT = TypeVar("_TargetT", bound=Target)


def is_remote(target: Target) -> bool:
    """Whether ``target`` is one that :func:`probe_many` can answer by listing."""
    return _probe_object(target) is not None


def _probe_object(target: Target) -> RemoteTarget[Any] | None:
    """The object whose existence answers ``target.exists()``, for the remote targets."""
    if isinstance(target, RemoteTarget):
        return target
    if isinstance(target, RemotePrefixTarget):
        marker: RemoteTarget[Any] = target.marker
        return marker
    return None


@dataclass
class _Group:
    """Targets of one configuration and bucket sharing one parent prefix."""

    sample: RemoteTarget[Any]
    config: Hashable
    bucket: str
    parent: str
    keys: dict[str, list[Target]]


async def probe_many(
    targets: Iterable[_TargetT],
    *,
    concurrency: int = DEFAULT_PROBE_CONCURRENCY,
    list_threshold: int = DEFAULT_LIST_THRESHOLD,
    counter: RequestCounter | None = None,
) -> dict[_TargetT, bool]:
    """Whether each target exists, in as few requests as reasonable.

    S3 and GCS targets (and prefix targets, through their markers) are grouped
    by configuration, bucket and parent prefix. A group of at least
    ``list_threshold`` keys is answered by listing the prefix (one request per
    1,000 keys, starting at the smallest key wanted and stopping after the
    largest); if the listing runs long (more than one page per 16 keys
    wanted), the keys not reached yet are probed one by one. Smaller groups
    are probed one request per key, and other targets with their own
    ``exists()``. At most ``concurrency`` requests are in flight.

    Returns:
        ``{target: exists}`` for every distinct target given.

    Raises:
        TargetError: a probe failed; no answer is guessed.
    """
    if concurrency < 1 or list_threshold < 1:
        raise ValueError("concurrency and list_threshold must be at least 1")
    results: dict[_TargetT, bool] = {}
    groups: dict[tuple[Hashable, str, str], _Group] = {}
    others: list[_TargetT] = []
    async for some in in_turns(list(targets), _SORT_TURN):
        for target in some:
            if target in results:
                continue
            results[target] = False
            obj = _probe_object(target)
            if obj is None:
                others.append(target)
                continue
            config = obj._resolved_config()
            parent = parent_prefix(obj.key)
            group = groups.get((config, obj.bucket, parent))
            if group is None:
                group = groups[(config, obj.bucket, parent)] = _Group(
                    obj, config, obj.bucket, parent, {}
                )
            group.keys.setdefault(obj.key, []).append(target)

    found: set[Target] = set()
    jobs: collections.deque[Callable[[], Awaitable[None]]] = collections.deque()

    async def own_exists(target: _TargetT) -> None:
        if await target.exists():
            found.add(target)

    async with ensure_client_scope(), AsyncExitStack() as stack:
        clients: dict[Hashable, RemoteClient] = {}
        for group in groups.values():
            if group.config not in clients:
                client_cm = group.sample._client(group.config)
                clients[group.config] = await stack.enter_async_context(client_cm)
        for group in groups.values():
            prober = _GroupProber(group, clients[group.config], jobs, counter, found)
            if len(group.keys) >= list_threshold:
                jobs.append(prober.by_listing)
            else:
                for key in group.keys:
                    jobs.append(functools.partial(prober.head, key))
        for target in others:
            jobs.append(functools.partial(own_exists, target))
        # At most `concurrency` jobs in flight; jobs that do not suspend (a local
        # file's stat, an in-memory lookup) share turns of the loop with the rest of
        # the process. (drain() raises a failed job's error in a group: unwrapped here.)
        async with task_group() as tg:
            tg.start_soon(drain, jobs, _start, min(concurrency, len(jobs)))
    for target in results:
        results[target] = target in found
    return results


def _start(job: Callable[[], Awaitable[None]]) -> Awaitable[None]:
    return job()


class _GroupProber:
    def __init__(
        self,
        group: _Group,
        client: RemoteClient,
        jobs: collections.deque[Callable[[], Awaitable[None]]],
        counter: RequestCounter | None,
        found: set[Target],
    ) -> None:
        self._group = group
        self._client = client
        self._jobs = jobs
        self._counter = counter
        self._found = found

    def _mark(self, key: str) -> None:
        self._found.update(self._group.keys[key])

    async def head(self, key: str) -> None:
        if await self._client.head(self._group.bucket, key, counter=self._counter):
            self._mark(key)

    async def by_listing(self) -> None:
        group = self._group
        wanted = sorted(group.keys)
        budget = max(1, len(wanted) // 16)
        token: str | None = None
        listed_up_to = ""
        for _ in range(budget):
            keys, token = await self._client.list_page(
                group.bucket,
                group.parent,
                delimiter="/",
                start=wanted[0],
                token=token,
                counter=self._counter,
            )
            for key in keys:
                if key in group.keys:
                    self._mark(key)
            if keys:
                listed_up_to = max(listed_up_to, keys[-1])
            if token is None or listed_up_to >= wanted[-1]:
                return  # every wanted key was in the listed range
        # The listing ran long: probe the keys it did not reach one by one.
        for key in wanted:
            if key > listed_up_to:
                self._jobs.append(functools.partial(self.head, key))
