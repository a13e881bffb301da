"""Luigi's event names, and how they map onto asyncflow's events.

``Task.event_handler(Event.SUCCESS)`` registers a callback as in Luigi. Events
the engine emits are delivered while the run goes on; DEPENDENCY_PRESENT is
delivered once the run is over (the engine does not announce tasks it found
complete); DEPENDENCY_DISCOVERED and PROCESS_FAILURE are never delivered;
PROGRESS only when a task calls ``self.trigger_event(Event.PROGRESS, ...)``.
"""

from __future__ import annotations

from ..events import Event as EngineEvent

__all__ = ["Event"]


class Event:
    """Luigi's event names (strings)."""

    DEPENDENCY_DISCOVERED = "event.core.dependency.discovered"
    DEPENDENCY_MISSING = "event.core.dependency.missing"
    DEPENDENCY_PRESENT = "event.core.dependency.present"
    BROKEN_TASK = "event.core.task.broken"
    START = "event.core.start"
    PROGRESS = "event.core.progress"
    FAILURE = "event.core.failure"
    SUCCESS = "event.core.success"
    PROCESSING_TIME = "event.core.processing_time"
    TIMEOUT = "event.core.timeout"
    PROCESS_FAILURE = "event.core.process_failure"


ENGINE_EVENTS: dict[str, tuple[EngineEvent, ...]] = {
    Event.START: (EngineEvent.START,),
    Event.SUCCESS: (EngineEvent.SUCCESS,),
    # Luigi reports every failed attempt; the engine calls the non-final ones retries.
    Event.FAILURE: (EngineEvent.FAILURE, EngineEvent.RETRY),
    Event.PROCESSING_TIME: (EngineEvent.PROCESSING_TIME,),
    Event.TIMEOUT: (EngineEvent.TIMEOUT,),
    # An absent external input; or, as Luigi has it, complete() or output() raised.
    Event.DEPENDENCY_MISSING: (EngineEvent.DEPENDENCY_MISSING, EngineEvent.FAILURE),
    # requires() raised while the graph was built.
    Event.BROKEN_TASK: (EngineEvent.FAILURE,),
}
"""The engine events behind each Luigi event the engine can deliver while running."""
