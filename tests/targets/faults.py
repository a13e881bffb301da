"""A fault-injecting HTTP proxy on loopback, for the S3 and GCS tests and the soak benchmark.

It goes in front of a server (moto, fake-gcs-server) and, for a seeded random
share of the requests passing through, does one of three things:

- ``"status"``: answers itself with one of ``fault_statuses`` (500, 503...)
  and closes the connection. The server never sees the request.
- ``"reset"``: resets the client's connection (TCP RST) without forwarding
  anything. The server never sees the request.
- ``"reset_after"``: forwards the request, waits until the server starts to
  answer (so the server has acted on it: an object is committed), then resets
  the client's connection instead of passing the answer on. The client cannot
  tell whether its request took effect: the "ambiguous commit".

Like a load balancer, it keeps the client's connections alive even when the
server closes its own after each answer (moto does): the next request on the
connection goes to the server over a new one. So the client pools its
connections, and :meth:`FaultProxy.stall_open_connections` can make those open
at that moment swallow everything from then on, as connections a peer or
middlebox dropped without a word look to a client: open, and dead.

It can also hold requests (``hold_filter``) until :meth:`FaultProxy.open_gate`:
a write that is in flight, neither refused nor done, for as long as a test wants.

Nothing here imports pytest, so the benchmarks can use it too.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import random
import re
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self

__all__ = ["FAULT_KINDS", "FaultKind", "FaultProxy", "nth_matching"]

FaultKind = Literal["status", "reset", "reset_after"]
FAULT_KINDS: tuple[FaultKind, ...] = ("status", "reset", "reset_after")

_CHUNK = 65536


def nth_matching(predicate: Callable[[bytes], bool], *which: int) -> Callable[[bytes], bool]:
    """A ``fault_filter`` letting only the ``which``-th requests (1-based) that
    ``predicate`` accepts fail; by default the first one."""
    chosen = set(which or (1,))
    seen = 0

    def fault_filter(request_line: bytes) -> bool:
        nonlocal seen
        if not predicate(request_line):
            return False
        seen += 1
        return seen in chosen

    return fault_filter


class FaultProxy:
    """An HTTP/1.1 proxy on loopback that delays requests and fails some of them.

    It runs its own event loop in a thread. A "request" starts with the first
    bytes the client sends after the server's last final answer (no
    pipelining; a ``100 Continue`` is not an answer: botocore asks for one
    before sending a part). For each request, after ``latency`` seconds, with
    probability ``fault_rate``, it injects one of ``fault_kinds`` (picked at
    random; see the module docstring); otherwise it forwards the request. Only
    requests whose first line passes ``fault_filter`` can fail. The first line
    of every request is kept in ``request_lines``, and the faults injected are
    counted by kind in ``counts``. Settings can be changed while it runs.
    """

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        if host != "127.0.0.1":
            raise ValueError(f"the proxy forwards to 127.0.0.1 only, not {upstream!r}")
        self._upstream = (host, int(port))
        self.fault_rate = 0.0
        self.fault_kinds: tuple[FaultKind, ...] = ("status",)
        self.fault_statuses: tuple[int, ...] = (500, 503)
        self.latency = 0.0
        self.fault_filter: Callable[[bytes], bool] = lambda request_line: True
        self.hold_filter: Callable[[bytes], bool] = lambda request_line: False
        self.held = 0
        self._held_changed = threading.Condition()
        self._gate: asyncio.Event | None = None
        self.requests = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.request_lines: list[bytes] = []
        self._random = random.Random(seed)
        self._open: dict[_Connection, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.url = ""

    @property
    def faults(self) -> int:
        """Faults injected, of every kind."""
        return self.counts.total()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def stall_open_connections(self) -> int:
        """Let every client connection open now swallow all traffic from now on;
        return how many there are. Connections opened later work as usual."""
        assert self._loop is not None
        done: concurrent.futures.Future[int] = concurrent.futures.Future()

        def stall() -> None:
            for connection in self._open:
                connection.stalled = True
            done.set_result(len(self._open))

        self._loop.call_soon_threadsafe(stall)
        return done.result(10)

    def wait_held(self, count: int = 1, timeout: float = 30) -> None:
        """Wait until ``count`` requests are held at the gate (see ``hold_filter``)."""
        with self._held_changed:
            if not self._held_changed.wait_for(lambda: self.held >= count, timeout):
                raise TimeoutError(f"{self.held} of {count} requests held after {timeout} s")

    def open_gate(self) -> None:
        """Forward the requests held, and let later ones through."""
        assert self._loop is not None and self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)

    def reset_counts(self) -> None:
        self.requests = 0
        self.counts.clear()
        self.request_lines.clear()

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            self._gate = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ready.set()
            async with server:
                await self._stopped.wait()
                # Let every handler end by itself (a cancelled one makes asyncio
                # log an error): closing its client connection ends its loop.
                for connection in self._open:
                    connection.client.transport.abort()
                if self._open:
                    await asyncio.wait(list(self._open.values()), timeout=5)

        asyncio.run(main())

    def _pick_fault(self, request_line: bytes) -> FaultKind | None:
        if not self.fault_filter(request_line) or self._random.random() >= self.fault_rate:
            return None
        kind = self._random.choice(self.fault_kinds)
        self.counts[kind] += 1
        return kind

    async def _handle(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(client)
        self._open[connection] = task
        try:
            while data := await client_in.read(_CHUNK):
                if connection.stalled:
                    continue  # swallowed: the client waits for an answer in vain
                if connection.answered:  # the first bytes of a new request
                    connection.answered = False
                    if not await self._start_request(connection, data):
                        return
                assert connection.server is not None
                connection.server.write(data)
                await connection.server.drain()
        except OSError:
            pass  # the client or the server went away
        finally:
            del self._open[connection]
            client.close()
            await connection.close_server()

    async def _start_request(self, connection: _Connection, data: bytes) -> bool:
        """Count the request and inject its fault; False when the connection is done."""
        self.requests += 1
        request_line = data.split(b"\r\n", 1)[0]
        self.request_lines.append(request_line)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._gate is not None and not self._gate.is_set() and self.hold_filter(request_line):
            with self._held_changed:
                self.held += 1
                self._held_changed.notify_all()
            await self._gate.wait()
        fault = self._pick_fault(request_line)
        if fault == "status":
            status = self._random.choice(self.fault_statuses)
            head_only = request_line.startswith(b"HEAD ")
            connection.client.write(_fault_response(status, with_body=not head_only))
            with contextlib.suppress(OSError):
                await connection.client.drain()
            return False
        if fault == "reset":
            _reset(connection.client)
            return False
        connection.drop_answer = fault == "reset_after"
        if connection.server is None:
            try:
                server_in, server = await asyncio.open_connection(*self._upstream)
            except OSError:
                return False
            connection.server = server
            connection.pumps.append(asyncio.ensure_future(self._answers(connection, server_in)))
        return True

    async def _answers(self, connection: _Connection, server_in: asyncio.StreamReader) -> None:
        """Pass the server's answers on, over one connection to the server."""
        client = connection.client
        server = connection.server
        try:
            while data := await server_in.read(_CHUNK):
                if connection.stalled:
                    continue
                # "100 Continue" invites the body of the same request: pass it on.
                interim, data = _split_interim(data)
                client.write(interim)
                if data and not connection.answered:  # the head of the final answer
                    if connection.drop_answer:
                        # The server has acted on the request; the client never hears of it.
                        _reset(client)
                        return
                    data, closing = _keep_alive(data)
                    if closing:  # the next request goes over a new server connection
                        connection.server = None
                    connection.answered = True
                client.write(data)
                await client.drain()
        except OSError:
            pass
        finally:
            assert server is not None
            server.close()
        if connection.server is server:  # the server hung up
            connection.server = None
            if not connection.answered:
                client.close()  # without answering: so do we


class _Connection:
    """One client connection, and the server connection it goes over now."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.pumps: list[asyncio.Future[None]] = []
        self.answered = True  # the next bytes from the client start a request
        self.drop_answer = False
        self.stalled = False

    async def close_server(self) -> None:
        if self.server is not None:
            self.server.close()
        for pump in self.pumps:
            pump.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)


_CONNECTION_CLOSE = re.compile(rb"\r\nConnection: *close\r\n", re.IGNORECASE)


def _keep_alive(head: bytes) -> tuple[bytes, bool]:
    """The head of an answer with ``Connection: close`` taken out, and whether it was there."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return head, False
    rewritten, found = _CONNECTION_CLOSE.subn(b"\r\n", head[: end + 2], count=1)
    return rewritten + head[end + 2 :], bool(found)


def _split_interim(data: bytes) -> tuple[bytes, bytes]:
    """Split the interim (1xx) answers off the front of what the server sent."""
    end = 0
    while data.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1"), end):
        stop = data.find(b"\r\n\r\n", end)
        if stop < 0:
            break
        end = stop + 4
    return data[:end], data[end:]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST (linger 0), as a crashed peer or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_REASONS = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}


def _fault_response(status: int, *, with_body: bool) -> bytes:
    body = b"fault injected by the test proxy" if with_body else b""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
