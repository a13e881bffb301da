from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.fixtures import cli_env

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = cli_env()
    return subprocess.Popen(
        [sys.executable, "-m", "asyncflow", "run", *args, "--no-journal", "--log-level", "WARNING"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"process ended before printing {text!r}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_cancels_cleanly_and_exits_130(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) cancels the running task, leaves no partial output, exits 130."""
    out = tmp_path / "out" / "result.txt"
    proc = start(tmp_path, "tests.fixtures.signal_tasks:Hang", "--out", str(out))
    try:
        wait_for_line(proc, "READY")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        proc.communicate()
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temp file left behind


def test_second_signal_forces_exit(tmp_path: Path) -> None:
    """A second Ctrl-C exits at once even if a task ignores cancellation."""
    proc = start(tmp_path, "tests.fixtures.signal_tasks:Stubborn")
    try:
        wait_for_line(proc, "READY")
        proc.send_signal(signal.SIGINT)
        wait_for_line(proc, "cancelling running tasks")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
        proc.communicate()
