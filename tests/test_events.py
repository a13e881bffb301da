from __future__ import annotations

import asyncflow
from asyncflow.events import Event, EventBus, TaskEvent, handles


class Job(asyncflow.Task):
    pass


def test_marked_handler_gets_only_the_kinds_it_names() -> None:
    """A handler marked with handles() is called for its kinds only; others get every kind."""
    marked: list[Event] = []
    unmarked: list[Event] = []

    @handles(Event.START, Event.FAILURE)
    def on_some(event: TaskEvent) -> None:
        marked.append(event.kind)

    bus = EventBus([on_some, lambda event: unmarked.append(event.kind)])
    for kind in Event:
        bus.emit(kind, Job(), "run-1")
    assert marked == [Event.START, Event.FAILURE]
    assert unmarked == list(Event)


def test_a_marked_method_keeps_its_mark_when_bound() -> None:
    """handles() on a method applies to the bound method of every instance."""

    class Listener:
        def __init__(self) -> None:
            self.seen: list[Event] = []

        @handles(Event.SUCCESS)
        def on_event(self, event: TaskEvent) -> None:
            self.seen.append(event.kind)

    listener = Listener()
    bus = EventBus([listener.on_event])
    for kind in Event:
        bus.emit(kind, Job(), "run-1")
    assert listener.seen == [Event.SUCCESS]
