"""Fewer full garbage collections while runs go on.

A run keeps its whole graph alive (about seven objects the collector tracks per
task) until it returns. CPython's collector runs a full collection, which
walks every tracked object of the process, each time ten younger collections
have run and the objects that survived them have grown by a quarter: a
100,000-task run spent 0.7-1.1 s of its 2.2-5.2 s in eight of them, a
1,000,000-task one 7.5 s of 41 s. Almost all of a run's objects live as long
as the run and are freed by reference counting when it ends, so walking them
again and again finds nothing.

While any run goes on in the process, the third threshold (how many younger
collections before a full one is considered) is raised to at least
:data:`DEFERRED`, and to one per :data:`NODES_PER_STEP` nodes of the largest
graph, so that a full collection comes about once per several million objects
allocated, and not at all in most runs. The young generations are collected
as before (cycles that die young go at once); what survives them and becomes
garbage waits longer for a full collection. The application's setting is given
back when the last run ends, unless it changed the thresholds itself meanwhile.
A collector the application disabled stays disabled; a higher third threshold
of its own is kept.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["DEFERRED", "NODES_PER_STEP", "defer_for", "fewer_full_collections"]

DEFERRED: Final = 1000
"""The third threshold while runs go on (CPython's default is 10): a full
collection at most once per ~7 million objects allocated (700 x 10 x 1000)."""

NODES_PER_STEP: Final = 100
"""A run of more nodes than ``DEFERRED`` times this defers full collections further."""

_lock = threading.Lock()  # runs may go on in several threads, each with its own loop
_runs = 0  # runs going on in this process
_saved: tuple[int, ...] | None = None  # the application's thresholds, to give back
_ours: tuple[int, ...] | None = None  # what was set here, to tell a later change


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Defer full collections for the duration of the block (see the module's docstring)."""
    global _runs, _saved, _ours
    with _lock:
        if _runs == 0:
            thresholds = gc.get_threshold()
            if len(thresholds) == 3 and 0 < thresholds[2] < DEFERRED:
                _saved, _ours = thresholds, (thresholds[0], thresholds[1], DEFERRED)
                gc.set_threshold(*_ours)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _saved is not None:
                if gc.get_threshold() == _ours:  # else the application set its own: keep it
                    gc.set_threshold(*_saved)
                _saved = _ours = None


def defer_for(nodes: int) -> None:
    """A run's graph has ``nodes`` nodes: defer full collections in proportion, while
    the thresholds are still the ones set here (see the module's docstring)."""
    global _ours
    wanted = nodes // NODES_PER_STEP
    with _lock:
        if _ours is None or wanted <= _ours[2] or gc.get_threshold() != _ours:
            return
        _ours = (_ours[0], _ours[1], wanted)
        gc.set_threshold(*_ours)
