"""Honest resume after kill -9: no finished task runs again, no output is partial."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from tests.fixtures import cli_env
from tests.fixtures.resume_pipeline import LAYERS, PAYLOAD, WIDTH

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(folder: Path) -> subprocess.Popen[bytes]:
    env = cli_env()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "run",
            "tests.fixtures.resume_pipeline:All",
            "--folder",
            str(folder),
            "--journal",
            str(folder / "journal.db"),
            "--workers",
            "4",
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def ledger(folder: Path) -> dict[str, list[tuple[str, str]]]:
    lines: dict[str, list[tuple[str, str]]] = defaultdict(list)
    path = folder / "ledger.txt"
    if path.exists():
        text = path.read_text()
        # The child may be appending right now: ignore a line not yet terminated.
        for line in text[: text.rfind("\n") + 1].splitlines():
            kind, task, token = line.split()
            lines[task].append((kind, token))
    return lines


def started_tasks(folder: Path) -> int:
    return sum(1 for events in ledger(folder).values() for kind, _ in events if kind == "start")


@pytest.mark.parametrize("seed", range(20))
def test_kill_and_resume(tmp_path: Path, seed: int) -> None:
    """Killed at random points and resumed, every task ends with exactly one success."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(12):
        proc = start(tmp_path)
        # Kill once the run is under way, after a seeded number of task starts.
        target = started_tasks(tmp_path) + rng.randint(1, 12)
        deadline = time.monotonic() + 30
        while proc.poll() is None and started_tasks(tmp_path) < target:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.01))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc.stderr.close()  # type: ignore[union-attr]
            continue
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        break
    else:
        proc = start(tmp_path)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert kills >= 1  # the test must have interrupted something

    events = ledger(tmp_path)
    assert len(events) == LAYERS * WIDTH
    # Writes cut short left temporary files; the resumed runs removed them.
    assert [p.name for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name] == []
    for layer in range(LAYERS):
        for index in range(WIDTH):
            name = f"{layer}-{index}"
            path = tmp_path / "out" / f"{name}.json"
            document = json.loads(path.read_text())  # complete, parseable: never partial
            assert document["payload"] == PAYLOAD
            starts = [token for kind, token in events[name] if kind == "start"]
            dones = [token for kind, token in events[name] if kind == "done"]
            # Every start but the last was interrupted inside the body; the last
            # one succeeded and its output is what is there. Nothing ran again
            # after a success.
            assert document["token"] == starts[-1], (name, events[name])
            assert dones in ([], [starts[-1]]), (name, events[name])
