"""Whose lease may be taken before it expires: only a holder known to be gone.

A holder is checked by its pid only when it runs on this host, kernel boot and
PID namespace. A process in a PID namespace of its own (``unshare --pid``, a
container with host networking) has the same host name, and its pid names
another process, or none, out here: it must be judged by its lease's expiry.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import Child, cli_env, wait_until
from tests.fixtures.race_pipeline import ledger

from asyncflow.journal import Holder, Journal

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PID namespaces: Linux"),
]

TTL = 600.0  # leases that cannot expire during a test: only a pid check frees them

HOLDER = textwrap.dedent(
    """
    import os, sys
    import anyio
    from asyncflow.journal import Journal

    async def hold(path):
        async with Journal.open(path, lease_ttl=600) as journal:
            await journal.begin_run("holder", ["shared"])
            claim = await journal.claim("holder", ["shared"], since=0.0)
            assert claim.taken == ["shared"], claim
            print("held", os.getpid(), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)  # until told to go

    anyio.run(hold, sys.argv[1])
    """
)


def unshare_refused() -> str | None:
    """Why ``unshare --pid --fork --mount-proc`` cannot run here (None: it can)."""
    try:
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        return "no unshare command"
    if probe.returncode != 0:
        return f"unshare --pid is not permitted here: {probe.stderr.strip()}"
    return None


def dead_pid() -> int:
    """A pid no process of this namespace has: one just freed (pids are handed out in
    increasing order, so it is not reused before they wrap around)."""
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def hold(path: Path, holders: list[subprocess.Popen[Any]], *prefix: str) -> tuple[int, int]:
    """Start a process (under ``prefix``) that takes the lease of ``shared`` and keeps
    it; returns its pid as it sees it, and as this process sees it."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["held"], f"the holder did not take the lease (exit {proc.wait(30)})"
    return int(line[1]), proc.pid


def run_status(path: Path, run_id: str) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    finally:
        db.close()


def in_namespace(pid: int) -> tuple[str, ...]:
    """The command prefix that runs a command in a new PID namespace (same host name)
    as pid ``pid`` there: the namespace's last pid is set just before the shell forks
    it. Skips the test, loudly, where unshare --pid is not permitted."""
    refused = unshare_refused()
    if refused is not None:
        pytest.skip(f"NOT TESTED: container-safe liveness needs unshare --pid ({refused})")
    shell = f'echo {pid - 1} > /proc/sys/kernel/ns_last_pid && "$0" "$@"; exit $?'
    return ("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", shell)


async def test_a_live_holder_in_another_pid_namespace_keeps_its_lease(
    tmp_path: Path, holders: list[subprocess.Popen[Any]]
) -> None:
    """A holder in a PID namespace of its own, same host name, alive: its pid is no
    process out here, yet its run is not recovered and its lease not taken."""
    path = tmp_path / "journal.db"
    pid = dead_pid()
    seen, _ = hold(path, holders, *in_namespace(pid))
    assert seen == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    async with Journal.open(path, lease_ttl=TTL) as journal:
        assert run_status(path, "holder") == "running"  # not recovered on open
        await journal.begin_run("taker", ["shared"])
        claim = await journal.claim("taker", ["shared"], since=time.time())
        state = (await journal.watch(["shared"]))["shared"]
    assert claim.taken == []
    assert claim.held["shared"].pid == pid
    assert isinstance(state, Holder) and state.run_id == "holder"
    assert run_status(path, "holder") == "running"


async def test_a_dead_holder_in_this_namespace_is_taken_over_at_once(
    tmp_path: Path, holders: list[subprocess.Popen[Any]]
) -> None:
    """kill -9 a holder of this host and namespace: its lease (600 s to go) is taken at
    once, and its run recovered as interrupted."""
    path = tmp_path / "journal.db"
    seen, pid = hold(path, holders)
    assert seen == pid
    os.kill(pid, signal.SIGKILL)
    holders[0].wait(30)
    async with Journal.open(path, lease_ttl=TTL) as journal:
        assert run_status(path, "holder") == "interrupted"
        await journal.begin_run("taker", ["shared"])
        claim = await journal.claim("taker", ["shared"], since=time.time())
    assert claim.taken == ["shared"]
    assert claim.abandoned == {"shared"}


async def test_a_holder_whose_namespace_is_unknown_is_judged_by_expiry(
    tmp_path: Path, holders: list[subprocess.Popen[Any]]
) -> None:
    """A run row without its namespace (as earlier versions wrote them), of a process
    that is gone: nothing tells that its pid was ours to check, so its lease lasts
    until it expires, then is taken."""
    path = tmp_path / "journal.db"
    _, pid = hold(path, holders)
    os.kill(pid, signal.SIGKILL)
    holders[0].wait(30)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE runs SET node = NULL")
    db.close()
    async with Journal.open(path, lease_ttl=TTL) as journal:
        assert run_status(path, "holder") == "running"
        await journal.begin_run("taker", ["shared"])
        claim = await journal.claim("taker", ["shared"], since=time.time())
    assert claim.taken == [] and claim.held["shared"].pid == pid
    later = time.time() + TTL + 1  # past the holder's expiry
    async with Journal.open(path, lease_ttl=TTL, clock=lambda: later) as journal:
        assert run_status(path, "holder") == "interrupted"
        await journal.begin_run("taker-2", ["shared"])
        claim = await journal.claim("taker-2", ["shared"], since=later)
    assert claim.taken == ["shared"]


def test_two_runs_across_pid_namespaces_run_a_task_once(
    tmp_path: Path, holders: list[subprocess.Popen[Any]]
) -> None:
    """`asyncflow run` in a PID namespace of its own holds a task; the same run out
    here waits for it (its pid is no process here) and takes its outcome, instead of
    running the task at the same time."""
    pid = dead_pid()
    args = ("run", "tests.fixtures.race_pipeline:Gated", "--folder", str(tmp_path))
    args += ("--journal", str(tmp_path / "journal.db"))
    first = subprocess.Popen(
        [*in_namespace(pid), sys.executable, "-m", "asyncflow", *args],
        cwd=tmp_path,
        env=cli_env(ASYNCFLOW_LEASE_TTL=str(TTL)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    holders.append(first)
    second = None
    try:
        started = [["start", "gated", str(pid)]]
        wait_until(lambda: [line[:3] for line in ledger(tmp_path)] == started, "Gated to start")
        second = Child(*args, cwd=tmp_path, ASYNCFLOW_LEASE_TTL=str(TTL))
        assert second.wait_for("task.held_elsewhere")["holder_pid"] == pid
        (tmp_path / "go").touch()
        assert first.wait(60) == 0
        assert second.finish() == 0, second.output
        assert second.wait_for("task.done_elsewhere")["by_pid"] == pid
    finally:
        if second is not None:
            second.kill()
    assert [line[:3] for line in ledger(tmp_path)] == [*started, ["done", "gated", str(pid)]]
