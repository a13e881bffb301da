"""asyncflow.asgi: runs cancelled when the HTTP client disconnects.

The helper on its own (a Starlette request fed by a memory stream), then
examples/fastapi_app.py under a real uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.requests import Request
from starlette.types import Message
from tests.fixtures import ROOT, cli_env, wait_until

import asyncflow
from asyncflow.asgi import cancel_on_disconnect, run_until_disconnected
from asyncflow.journal import Journal, RunRecord, RunStatus


class Client:
    """The client side of one request: messages the endpoint's ``receive()`` gets."""

    def __init__(self, *body: bytes) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Message](10)
        for i, chunk in enumerate(body):
            more = i < len(body) - 1
            self._send.send_nowait({"type": "http.request", "body": chunk, "more_body": more})
        self.request = Request(
            {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""},
            self._receive.receive,
        )

    def disconnect(self) -> None:
        self._send.send_nowait({"type": "http.disconnect"})

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    @property
    def listeners(self) -> int:
        """Calls to ``receive()`` waiting now."""
        return self._receive.statistics().tasks_waiting_receive


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Makes a :class:`Client` per call; closes them all after the test."""
    made: list[Client] = []

    def make(*body: bytes) -> Client:
        made.append(Client(*body))
        return made[-1]

    yield make
    for client in made:
        client.close()


class Finish(asyncflow.Task):
    async def run(self) -> None:
        pass


# The helper -----------------------------------------------------------------


@pytest.mark.anyio
async def test_disconnect_cancels_the_block(clients: Callable[..., Client]) -> None:
    """The client's disconnect cancels the block; code after it runs."""
    client = clients(b"")
    async with cancel_on_disconnect(client.request) as scope:
        client.disconnect()
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_block_that_ends_stops_the_watcher(clients: Callable[..., Client]) -> None:
    """A block that ends normally is not cancelled, and nothing waits on receive() after it."""
    client = clients(b"")
    async with cancel_on_disconnect(client.request) as scope:
        await anyio.wait_all_tasks_blocked()
        assert client.listeners == 1
    assert not scope.cancel_called
    assert client.listeners == 0


@pytest.mark.anyio
async def test_unread_body_stays_readable(clients: Callable[..., Client]) -> None:
    """A body nobody has read yet is kept for the endpoint, and the disconnect still counts."""
    client = clients(b'{"day": ', b'"2026-11-23"}')
    async with cancel_on_disconnect(client.request) as scope:
        assert await client.request.json() == {"day": "2026-11-23"}
        client.disconnect()
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.parametrize("read", ["body", "stream"])
@pytest.mark.anyio
async def test_body_read_already(read: str, clients: Callable[..., Client]) -> None:
    """A body read before (whole, or streamed by the endpoint) does not stop the watching."""
    client = clients(b"ab", b"cd")
    if read == "body":
        assert await client.request.body() == b"abcd"
    else:
        assert [chunk async for chunk in client.request.stream()] == [b"ab", b"cd", b""]
    async with cancel_on_disconnect(client.request) as scope:
        client.disconnect()
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_client_gone_before_the_run(tmp_path: Path, clients: Callable[..., Client]) -> None:
    """A client that left while its body was read: the run never starts."""
    client = clients()
    client.disconnect()
    journal = tmp_path / "journal.db"
    assert await run_until_disconnected(client.request, Finish(), journal=journal) is None
    assert not journal.exists()


@pytest.mark.anyio
async def test_connected_client_gets_the_result(
    tmp_path: Path, clients: Callable[..., Client]
) -> None:
    """run_until_disconnected() returns the run's result while the client stays."""
    client = clients(b"")
    result = await run_until_disconnected(client.request, Finish(), journal=tmp_path / "j.db")
    assert result is not None
    assert result.ok
    assert result.status(Finish()) is asyncflow.Status.DONE
    assert client.listeners == 0


@pytest.mark.anyio
async def test_errors_come_out_unwrapped(clients: Callable[..., Client]) -> None:
    """An exception in the block leaves it as itself, not in an ExceptionGroup."""
    client = clients(b"")

    async def fail() -> None:
        async with cancel_on_disconnect(client.request):
            await anyio.lowlevel.checkpoint()
            raise ValueError("bad day")

    with pytest.raises(ValueError, match="bad day") as caught:
        await fail()
    assert type(caught.value) is ValueError
    assert client.listeners == 0


@pytest.mark.anyio
async def test_cancellation_from_outside_propagates(clients: Callable[..., Client]) -> None:
    """A cancellation from outside (a server shutting down) is not swallowed."""
    client = clients(b"")
    after_block = False
    with anyio.CancelScope() as outer:
        async with cancel_on_disconnect(client.request) as scope:
            outer.cancel()
            await anyio.sleep_forever()
        after_block = True
    assert outer.cancelled_caught
    assert not scope.cancelled_caught
    assert not after_block
    assert client.listeners == 0


def test_import_asyncflow_leaves_starlette_out() -> None:
    """``import asyncflow`` does not import Starlette; ``asyncflow.asgi`` does."""
    code = (
        "import sys, asyncflow\n"
        "assert 'starlette' not in sys.modules, 'starlette imported'\n"
        "import asyncflow.asgi\n"
        "assert 'starlette' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# examples/fastapi_app.py under uvicorn ---------------------------------------------


class Server:
    """``uvicorn fastapi_app:app`` in ``folder``, on a port of its choosing on 127.0.0.1.

    A daemon thread drains its output (uvicorn's and asyncflow's logs), so
    it never blocks on a full pipe.
    """

    ARGS = ("--app-dir", str(ROOT / "examples"), "--host", "127.0.0.1", "--port", "0")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastapi_app:app", *self.ARGS],
            cwd=folder,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._port: int | None = None
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self._port = int(found.group(1))

    @property
    def port(self) -> int:
        wait_until(lambda: self._port is not None or self.proc.poll() is not None, "uvicorn")
        assert self._port is not None, f"uvicorn did not start:\n{self.output}"
        return self._port

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def post(self, path: str) -> tuple[int, Any]:
        """POST ``path`` and wait for the answer: status and JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._drainer.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("service"))
    try:
        yield started
    finally:
        started.stop()


def runs_of(server: Server, day: str) -> list[RunRecord]:
    """The journal's runs (newest first) that asked for the day's report."""

    async def read() -> list[RunRecord]:
        async with Journal.open(server.folder / ".asyncflow" / "journal.db") as journal:
            return await journal.runs(100)

    return [
        run
        for run in anyio.run(read, backend="asyncio")
        if any(task.startswith(f"Report_{day}_") for task in run.requested)
    ]


def test_connected_client_gets_the_report(server: Server) -> None:
    """A client that waits gets the report, which is then on disk."""
    status, answer = server.post("/reports/2026-11-24?pace=0.01")
    assert status == 200, server.output
    assert answer["ok"] is True
    assert answer["status"] == "done"
    assert len(answer["report"].splitlines()) == 10
    assert (server.folder / "data/reports/2026-11-24.txt").read_text() == answer["report"]
    assert [run.status for run in runs_of(server, "2026-11-24")] == [RunStatus.SUCCESS]


def test_disconnected_client_cancels_the_run(server: Server) -> None:
    """A client leaving mid-run cancels it: no partial report, a cancelled run, a healthy server."""
    reports = server.folder / "data" / "reports"
    request = b"POST /reports/2026-11-23?pace=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(request)
        # The report's atomic write has begun: its temporary file is there.
        wait_until(
            lambda: (
                reports.is_dir()
                and any(p.name.startswith(".2026-11-23.txt.tmp-") for p in reports.iterdir())
            ),
            "the report's write to begin",
        )
    # The client has gone. (Without the cancellation, the run would take 10 minutes.)
    wait_until(
        lambda: any(run.status is not RunStatus.RUNNING for run in runs_of(server, "2026-11-23")),
        "the run to end",
    )
    # Neither the report nor its temporary file.
    assert [p.name for p in reports.iterdir() if "2026-11-23" in p.name] == []
    [run] = runs_of(server, "2026-11-23")
    assert run.status is RunStatus.CANCELLED
    assert run.counts == {"success": 1, "cancelled": 1}  # the readings, then the report

    # The server is fine, and the same report can be built by the next client.
    status, answer = server.post("/reports/2026-11-23?pace=0.01")
    assert status == 200, server.output
    assert answer["status"] == "done"
    assert (reports / "2026-11-23.txt").read_text() == answer["report"]
    assert [run.status for run in runs_of(server, "2026-11-23")] == [
        RunStatus.SUCCESS,
        RunStatus.CANCELLED,
    ]
