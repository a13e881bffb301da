"""What a running task says of itself (set_status_message, set_progress_percentage,
set_tracking_url): STATUS events, the journal, the status pages and API, the display."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
from tests.test_progress import in_pty

import asyncflow
from asyncflow.events import Event, TaskEvent, TaskStatus
from asyncflow.journal import AttemptRecord, Journal, open_journal
from asyncflow.progress import Progress
from asyncflow.testing import FakeClock

pytestmark = pytest.mark.anyio

ROWS = 10_000


class Counting(asyncflow.Task):
    """A plain def run() in a worker thread, reporting on every row."""

    rows = asyncflow.IntParameter(default=ROWS)

    def run(self) -> None:
        self.set_tracking_url("https://jobs.example.test/counting/7")
        for i in range(self.rows):
            self.set_progress_percentage(100 * i / self.rows)
            self.set_status_message(f"row {i} of {self.rows}")
        self.set_status_message(f"counted {self.rows} rows")


class Loading(asyncflow.Task):
    """An async def run() on the loop, giving the loop a turn now and then."""

    async def run(self) -> None:
        self.set_tracking_url("javascript:alert(1)")
        for i in range(1000):
            self.set_progress_percentage(i / 10)
            if i % 100 == 0:
                await anyio.lowlevel.checkpoint()
        self.set_status_message("loaded <everything>")


class Wordy(asyncflow.Task):
    async def run(self) -> None:
        self.set_status_message("x" * 5000)


class Flaky(asyncflow.Task):
    """Says something on its first attempt, which fails, and less on its second."""

    retry_count = 1
    calls = 0

    async def run(self) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            self.set_status_message("first try")
            self.set_progress_percentage(10)
            raise ConnectionError("dropped")
        self.set_progress_percentage(100)


class Quiet(asyncflow.Task):
    async def run(self) -> None:
        pass


def by_family(attempts: tuple[AttemptRecord, ...]) -> dict[str, list[AttemptRecord]]:
    found: dict[str, list[AttemptRecord]] = {}
    for attempt in attempts:
        found.setdefault(attempt.family, []).append(attempt)
    return found


async def test_a_run_journals_the_last_status_of_each_attempt(journal_where: str) -> None:
    """Sync and async bodies report many times: STATUS events come coalesced, and the
    journal (either backend) keeps each attempt's last message, percentage and URL;
    the pages and the JSON API show them (the URL as a link only when it is http(s))."""
    path = journal_where
    Flaky.calls = 0  # its first attempt fails, once per backend
    events: list[TaskEvent] = []
    result = await asyncflow.run(
        Counting(),
        Loading(),
        Wordy(),
        Flaky(),
        Quiet(),
        journal=path,
        handlers=[events.append],
        clock=FakeClock(),
    )
    assert result.ok
    said = [e for e in events if e.kind is Event.STATUS]
    counting = [e for e in said if isinstance(e.task, Counting)]
    # 20,000 calls in the thread; the loop delivers the latest, ten times a second.
    assert 1 <= len(counting) < 50, len(counting)
    assert counting[-1].status == TaskStatus(
        f"counted {ROWS} rows", 100 * (ROWS - 1) / ROWS, "https://jobs.example.test/counting/7"
    )
    loading = [e for e in said if isinstance(e.task, Loading)]
    assert 1 <= len(loading) <= 12, len(loading)  # a turn of the loop every 100 calls
    assert not [e for e in said if isinstance(e.task, Quiet)]
    # Each attempt's status comes before the event that ends it.
    kinds = [(e.kind, e.attempt) for e in events if isinstance(e.task, Flaky)]
    assert kinds.index((Event.STATUS, 1)) < kinds.index((Event.RETRY, 1))
    assert kinds.index((Event.STATUS, 2)) < kinds.index((Event.SUCCESS, 2))

    async with open_journal(path) as journal:
        run = await journal.run(result.run_id)
    assert run is not None
    found = by_family(run.attempts)
    [counted] = found["Counting"]
    assert (counted.status_message, counted.progress_percentage, counted.tracking_url) == (
        f"counted {ROWS} rows",
        100 * (ROWS - 1) / ROWS,
        "https://jobs.example.test/counting/7",
    )
    [loaded] = found["Loading"]
    assert (loaded.status_message, loaded.progress_percentage, loaded.tracking_url) == (
        "loaded <everything>",
        99.9,
        "javascript:alert(1)",
    )
    [wordy] = found["Wordy"]
    assert wordy.status_message == "x" * 1999 + "…"  # cut at 2,000 characters
    first, second = found["Flaky"]
    assert (first.attempt, first.status_message, first.progress_percentage) == (1, "first try", 10)
    assert (second.attempt, second.status_message, second.progress_percentage) == (2, None, 100)
    [quiet] = found["Quiet"]
    assert (quiet.status_message, quiet.progress_percentage, quiet.tracking_url) == (None,) * 3

    from asyncflow.web import create_app

    transport = httpx.ASGITransport(app=create_app(journal=path))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        task = (await client.get(f"/api/tasks/{Counting().task_id}")).json()
        [attempt] = task["attempts"]
        assert attempt["status_message"] == f"counted {ROWS} rows"
        assert attempt["progress_percentage"] == 100 * (ROWS - 1) / ROWS
        assert attempt["tracking_url"] == "https://jobs.example.test/counting/7"
        one = (await client.get(f"/api/runs/{result.run_id}")).json()
        flaky = [a for a in one["attempts"] if a["family"] == "Flaky"]
        assert [(a["status_message"], a["progress_percentage"]) for a in flaky] == [
            ("first try", 10),
            (None, 100),
        ]
        page = (await client.get(f"/tasks/{Counting().task_id}")).text
        assert "<th>Progress</th>" in page
        assert '<span class="pct">99%</span>' in page  # 99.99: not rounded up to done
        assert f"counted {ROWS} rows" in page
        assert 'href="https://jobs.example.test/counting/7"' in page
        page = (await client.get(f"/tasks/{Loading().task_id}")).text
        assert "loaded &lt;everything&gt;" in page
        assert "javascript:alert(1)" in page  # shown as text, never as a link
        assert 'href="javascript' not in page
        page = (await client.get(f"/runs/{result.run_id}")).text
        assert "<th>Progress</th>" in page
        assert 'href="https://jobs.example.test/counting/7"' in page
        assert 'href="javascript' not in page
        page = (await client.get(f"/tasks/{Quiet().task_id}")).text
        assert "<th>Progress</th>" not in page  # nothing said: no column


class Seen(io.StringIO):
    """A stream that tells, across threads, when each wanted text has been drawn."""

    def __init__(self, *wanted: str) -> None:
        super().__init__()
        self.seen = {text: threading.Event() for text in wanted}

    def write(self, text: str) -> int:
        for wanted, event in self.seen.items():
            if wanted in text:
                event.set()
        return super().write(text)


async def test_the_live_display_shows_what_running_tasks_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beside each running task's name: its percentage and message (one line, cut short),
    from a sync body in its thread and an async one; gone once it has finished."""
    monkeypatch.setenv("COLUMNS", "200")  # the whole running line fits
    screen = Seen("45% reading rows", "12% writing the parts")

    class Reading(asyncflow.Task):
        def run(self) -> None:
            self.set_progress_percentage(45.9)
            self.set_status_message("reading rows")
            if not screen.seen["45% reading rows"].wait(30):
                raise AssertionError("never shown")

    class Writing(asyncflow.Task):
        async def run(self) -> None:
            self.set_status_message("writing\nthe parts")
            self.set_progress_percentage(12.5)
            shown = screen.seen["12% writing the parts"]
            await anyio.to_thread.run_sync(shown.wait, 30)
            self.set_status_message("y" * 500)
            await anyio.to_thread.run_sync(screen.seen["y" * 50].wait, 30)

    screen.seen["y" * 50] = threading.Event()
    result = await asyncflow.run(
        Reading(), Writing(), journal=None, progress=Progress(screen, mode="live", interval=0.01)
    )
    assert result.ok
    frames = screen.getvalue()
    assert "Reading() 45% reading rows" in frames
    assert "Writing() 12% writing the parts" in frames
    assert "y" * 59 + "…" in frames and "y" * 60 not in frames
    last = frames[frames.rindex("asyncflow") :]
    assert "running:" not in last


PIPELINE = """
import os
import asyncflow


class Reading(asyncflow.Task):
    def run(self):
        self.set_progress_percentage(45)
        self.set_status_message("reading rows")
        with open(os.environ["SHOWN"], "rb") as shown:  # until the display has shown it
            shown.read(1)
"""


def test_the_command_line_on_a_terminal_shows_what_a_task_says(tmp_path: Path) -> None:
    """`asyncflow run` in a pseudo-terminal: the live display names the running task
    with its percentage and message; the task goes on once that has been drawn."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    shown = tmp_path / "shown"
    os.mkfifo(shown)
    told: list[bool] = []

    def tell(output: bytes) -> None:
        if not told and b"Reading() 45% reading rows" in output:
            shown.write_bytes(b"x")  # opens the FIFO: the task reads it and ends
            told.append(True)

    code, raw = in_pty(
        [sys.executable, "-m", "asyncflow", "run", "pipeline:Reading", "--no-journal"],
        tmp_path,
        env_extra={"SHOWN": str(shown)},
        on_output=tell,
    )
    text = raw.decode()
    assert code == 0, text
    assert told, text
    assert "* 1 ran successfully" in text


async def test_class_handlers_get_the_task_and_its_status() -> None:
    """``Task.event_handler(Event.STATUS)`` is called with the task and its status."""
    got: list[tuple[asyncflow.Task, TaskStatus]] = []

    class Reports(asyncflow.Task):
        async def run(self) -> None:
            self.set_status_message("half")
            self.set_progress_percentage(50)

    @Reports.event_handler(Event.STATUS)
    def on_status(task: asyncflow.Task, status: TaskStatus) -> None:
        got.append((task, status))

    assert await asyncflow.run(Reports(), journal=None)
    assert got == [(Reports(), TaskStatus("half", 50.0, None))]


async def test_a_bad_percentage_is_an_error_naming_the_task() -> None:
    """Outside 0-100, not a number, or NaN: an error naming the task, in run() as anywhere."""

    class Overshoots(asyncflow.Task):
        def run(self) -> None:
            self.set_progress_percentage(150)

    result = await asyncflow.run(Overshoots(), journal=None)
    error = result.error(Overshoots())
    assert isinstance(error, ValueError)
    assert str(error) == (
        f"{Overshoots().task_id}: progress percentage must be from 0 to 100, got 150"
    )
    task = Overshoots()
    for bad in (-0.5, 100.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"^{task.task_id}: progress percentage"):
            task.set_progress_percentage(bad)
    for wrong in ("50", None, True):
        with pytest.raises(TypeError, match=f"^{task.task_id}: progress percentage must be"):
            task.set_progress_percentage(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"^{task.task_id}: tracking URL must be a string"):
        task.set_tracking_url(b"https://x.test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{task.task_id}: tracking URL is 2,001 characters"):
        task.set_tracking_url("https://x.test/" + "a" * 1986)
    task.set_progress_percentage(0)  # the bounds are in; outside a run, nothing is recorded
    task.set_progress_percentage(100)


async def test_a_body_left_behind_by_a_timeout_reports_nothing_more() -> None:
    """An attempt's worker thread that outlives it (timeout) cannot change the status
    of the attempt after it: its late report is dropped."""
    release = threading.Event()
    stale_done = threading.Event()

    class Lingers(asyncflow.Task):
        timeout = 0.5
        retry_count = 1
        calls = 0

        def run(self) -> None:
            type(self).calls += 1
            if type(self).calls == 1:
                self.set_status_message("first")
                release.wait(30)
                self.set_status_message("stale")  # attempt 1 timed out long ago
                stale_done.set()
            else:
                self.set_progress_percentage(80)
                release.set()
                if not stale_done.wait(30):
                    raise AssertionError("the first attempt's thread never went on")
                self.set_status_message("second")

    events: list[TaskEvent] = []
    result = await asyncflow.run(
        Lingers(), journal=None, handlers=[events.append], clock=FakeClock()
    )
    assert result.ok
    said = [(e.attempt, e.status) for e in events if e.kind is Event.STATUS]
    assert said[0] == (1, TaskStatus("first"))
    assert said[-1] == (2, TaskStatus("second", 80.0))  # the late report changed nothing
    assert all(attempt == 2 for attempt, _ in said[1:])


async def test_a_message_quoting_a_hidden_parameter_is_masked(tmp_path: Path) -> None:
    """A status message is masked like an error: a hidden value never reaches the journal."""
    path = tmp_path / "journal.db"

    class Login(asyncflow.Task):
        password = asyncflow.Parameter(visibility=asyncflow.ParameterVisibility.HIDDEN)

        def run(self) -> None:
            self.set_status_message(f"logging in with {self.password}")

    events: list[TaskEvent] = []
    result = await asyncflow.run(
        Login(password="hunter2-canary"), journal=path, handlers=[events.append]
    )
    assert result.ok
    [said] = [e.status for e in events if e.kind is Event.STATUS]
    assert said == TaskStatus("logging in with ***")
    async with Journal.open(path) as journal:
        run = await journal.run(result.run_id)
    assert run is not None
    assert [a.status_message for a in run.attempts] == ["logging in with ***"]
    assert b"hunter2-canary" not in path.read_bytes()
