"""The progress display: live on a terminal, status lines elsewhere, never on stdout."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import anyio
import pytest
import structlog
from tests.fixtures import cli

import asyncflow
from asyncflow.progress import Progress

pytestmark = pytest.mark.anyio

PIPELINE = """
import anyio
import asyncflow


class Step(asyncflow.Task):
    i = asyncflow.IntParameter()

    async def run(self):
        # Work: 200 of these on 8 workers take at least 0.5 s, so a display
        # redrawn every 0.25 s draws at least twice.
        await anyio.sleep(0.02)


class Sum(asyncflow.Task):
    count = asyncflow.IntParameter(default=200)

    def requires(self):
        return [Step(i) for i in range(self.count)]

    async def run(self):
        pass
"""


def in_pty(
    args: list[str],
    cwd: Path,
    timeout: float = 60,
    *,
    env_extra: Mapping[str, str] | None = None,
    on_output: Callable[[bytes], None] | None = None,
) -> tuple[int, bytes]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; its exit code and
    everything it wrote. ``on_output`` is called with all of it so far after each read."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(cwd), **(env_extra or {}))
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child has exited and the terminal is closed
                break
            if not chunk:
                break
            output += chunk
            if on_output is not None:
                on_output(output)
        else:
            raise AssertionError(f"no end of output after {timeout} s:\n{output[-2000:]!r}")
        return proc.wait(timeout=30), output
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cli_on_a_terminal_draws_one_live_display(tmp_path: Path) -> None:
    """`asyncflow run` on a terminal redraws one display in place, not a line per task."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    code, raw = in_pty(
        [sys.executable, "-m", "asyncflow", "run", "pipeline:Sum", "--no-journal"], tmp_path
    )
    text = raw.decode()
    assert code == 0, text
    assert "\x1b[1A" in text  # the cursor goes up: the display is redrawn in place
    assert "201/201" in text and "Step" in text  # overall and per-family rows
    assert "task.start" not in text and "task.done" not in text
    assert "* 201 ran successfully" in text  # then the summary
    assert text.count("\n") < 100, text  # 201 tasks; a log line each would be 400


FAILING = """
import asyncio
import asyncflow


class Row(asyncflow.Task):
    i = asyncflow.IntParameter()

    async def run(self):
        await asyncio.sleep(0.02)  # 400 of these on 8 workers: about a second
        if self.i % 2:
            raise ValueError(f"bad row {self.i}")


class Rows(asyncflow.Task):
    def requires(self):
        return [Row(i) for i in range(400)]


asyncio.run(asyncflow.run(Rows(), journal=None, progress=True))
"""


def test_warnings_go_above_the_display_a_frame_at_a_time(tmp_path: Path) -> None:
    """A library's warnings written to stderr while the live display is drawn (200
    failed tasks) all show, above it, printed as each frame is drawn: the display
    is not drawn again for every line (the old way, 20,000 failures took five
    times as long as the run)."""
    (tmp_path / "failing.py").write_text(FAILING)
    code, raw = in_pty([sys.executable, "failing.py"], tmp_path)
    text = raw.decode()
    assert code == 0, text
    assert text.count("task.failed") == 200
    assert all(f"bad row {i}'" in text for i in range(1, 400, 2))
    frames = re.findall(r"\d+/401", text)
    assert 1 < len(frames) < 40, len(frames)  # 200 on the old code
    assert text.rstrip().endswith("\x1b[?25h")  # ends with the display, cursor shown
    assert "401/401" in text.rsplit("task.failed", 1)[1]  # the last frame after the lines


def test_the_demo_on_a_terminal_shows_the_display(tmp_path: Path) -> None:
    """`make demo` (the CLI on examples/etl.py) in a terminal shows the live display."""
    etl = Path(__file__).parent.parent / "examples" / "etl.py"
    code, raw = in_pty(
        [sys.executable, "-m", "asyncflow", "run", f"{etl}:Report", "--date", "2026-11-23"],
        tmp_path,
    )
    text = raw.decode()
    assert code == 0, text
    assert "3/3" in text and "ExtractRaw" in text and "Transform" in text
    assert "* 3 ran successfully" in text


class Sink(io.StringIO):
    """A stream (not a terminal) that sets an event once a line containing ``wanted``
    has been written."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted = wanted
        self.seen = anyio.Event()

    def write(self, text: str) -> int:
        if self.wanted in text:
            self.seen.set()
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


async def test_status_lines_off_a_terminal() -> None:
    """Off a terminal: a first line, a status line every interval, a final line."""
    sink = Sink("10/20 done · 10 running")

    class Slow(asyncflow.Task):
        i = asyncflow.IntParameter()

        async def run(self) -> None:
            if self.i >= 10:
                await sink.seen.wait()  # running until a status line has shown them so

    result = await asyncflow.run(
        [Slow(i) for i in range(20)],
        workers=20,
        journal=None,
        progress=Progress(sink, interval=0.01),
    )
    assert result.ok
    lines = sink.lines()
    assert lines[0] == f"asyncflow: run {result.run_id}: 20 tasks to run"
    status = next(line for line in lines if sink.wanted in line)
    assert status.startswith("asyncflow: 10/20 done · 10 running · 0 failed · 0 waiting · ")
    assert " elapsed · ~" in status and status.endswith(" left")  # estimated from durations
    assert lines[-1].startswith("asyncflow: finished: 20/20 done · 0 running · 0 failed · ")


class Fails(asyncflow.Task):
    async def run(self) -> None:
        raise ValueError("broken")


class After(asyncflow.Task):
    n = asyncflow.IntParameter()

    def requires(self) -> asyncflow.Task:
        return Fails() if self.n == 1 else After(self.n - 1)

    async def run(self) -> None:
        pass


async def test_what_waits_on_a_failure_counts_as_skipped() -> None:
    """A failure moves what depends on it from waiting to skipped, while the run goes on."""
    sink = Sink("1 failed · 2 skipped")

    class Independent(asyncflow.Task):
        async def run(self) -> None:
            await sink.seen.wait()

    result = await asyncflow.run(
        After(2), Independent(), journal=None, progress=Progress(sink, interval=0.01)
    )
    assert not result.ok
    status = next(line for line in sink.lines() if sink.wanted in line)
    assert status.startswith("asyncflow: 0/4 done · 1 running · 1 failed · 2 skipped · 0 waiting")
    assert sink.lines()[-1].startswith("asyncflow: finished: 1/4 done · 0 running · 1 failed · 2 ")


async def test_dynamic_requirements_join_the_counts() -> None:
    """Tasks yielded at run time are counted once they join the graph."""

    class Child(asyncflow.Task):
        i = asyncflow.IntParameter()

        async def run(self) -> None:
            pass

    class Parent(asyncflow.Task):
        async def run(self) -> AsyncIterator[object]:
            yield [Child(i) for i in range(3)]

    out = io.StringIO()
    result = await asyncflow.run(Parent(), journal=None, progress=Progress(out, mode="lines"))
    assert result.ok
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(": 1 tasks to run")
    assert lines[-1].startswith("asyncflow: finished: 4/4 done · ")


async def test_a_display_that_cannot_draw_does_not_break_the_run() -> None:
    """A closed stream stops the display (logged once); the run itself is unaffected."""
    closed = io.StringIO()
    closed.close()
    with structlog.testing.capture_logs() as logs:
        result = await asyncflow.run(
            Fails(), After(1), journal=None, progress=Progress(closed, mode="lines")
        )
    assert result.status(Fails()) is asyncflow.Status.FAILED
    assert [e["event"] for e in logs].count("progress.failed") == 1


async def test_bad_progress_arguments_are_refused() -> None:
    """progress= takes a bool or a Progress; Progress checks its mode and interval."""
    with pytest.raises(asyncflow.ConfigError, match=r"progress must be .*'yes'"):
        await asyncflow.run(Fails(), journal=None, progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'fancy'"):
        Progress(mode="fancy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval must be > 0"):
        Progress(interval=0)


def test_python_run_with_progress_writes_to_stderr_only(tmp_path: Path) -> None:
    """run(progress=True) off a terminal writes status lines to stderr, nothing to stdout,
    and needs no rich (only the live display does)."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["rich"] = None  # as if it were not installed: importing it fails

        import asyncflow
        from pipeline import Sum

        result = asyncio.run(asyncflow.run(Sum(count=20), journal=None, progress=True))
        assert result.ok
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("asyncflow: run ") and lines[0].endswith(": 21 tasks to run")
    assert lines[-1].startswith("asyncflow: finished: 21/21 done · 0 running · 0 failed · ")


def test_cli_progress_off_a_terminal_and_no_progress(tmp_path: Path) -> None:
    """Piped, the CLI prints status lines next to its logs; --no-progress leaves them out."""
    args = ["run", "tests.fixtures.cli_tasks:Write", "--out", str(tmp_path / "o"), "--no-journal"]
    shown = cli(*args, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "asyncflow: finished: 1/1 done" in shown.stderr
    assert '"event": "task.done"' in shown.stderr  # the JSON logs stay, off a terminal
    (tmp_path / "o").unlink()
    hidden = cli(*args, "--no-progress", cwd=tmp_path)
    assert hidden.returncode == 0, hidden.stderr
    assert "asyncflow: " not in hidden.stderr
    assert "1 ran successfully" in hidden.stdout
