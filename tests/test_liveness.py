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

import pytest

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
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def hold(path: Path, holders: list[subprocess.Popen[str]], *prefix: str) -> tuple[int, int]:
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


async def test_a_live_holder_in_another_pid_namespace_keeps_its_lease(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    """A holder in a PID namespace of its own, same host name, alive: its pid is no
    process out here, yet its run is not recovered and its lease not taken."""
    refused = unshare_refused()
    if refused is not None:
        pytest.skip(f"NOT TESTED: container-safe liveness needs unshare --pid ({refused})")
    path = tmp_path / "journal.db"
    pid = dead_pid()
    # In the new namespace the holder gets that same pid (the namespace's next pid is
    # set just before the shell forks it), so out here its pid names no process.
    shell = f'echo {pid - 1} > /proc/sys/kernel/ns_last_pid && "$0" "$@"; exit $?'
    seen, _ = hold(path, holders, "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", shell)
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
    tmp_path: Path, holders: list[subprocess.Popen[str]]
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
    tmp_path: Path, holders: list[subprocess.Popen[str]]
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
