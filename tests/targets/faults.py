"""A fault-injecting TCP proxy on loopback, for the S3 and GCS tests and the soak benchmark.

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

Nothing here imports pytest, so the benchmarks can use it too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self

__all__ = ["FAULT_KINDS", "FaultKind", "FaultProxy", "nth_matching"]

FaultKind = Literal["status", "reset", "reset_after"]
FAULT_KINDS: tuple[FaultKind, ...] = ("status", "reset", "reset_after")


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
    """A TCP proxy on loopback that delays requests and fails some of them.

    It runs its own event loop in a thread. A "request" starts with the first
    bytes the client sends after the server's last final answer (HTTP/1.1
    without pipelining; a ``100 Continue`` is not an answer: botocore asks for
    one before sending a part). For each request, after ``latency`` seconds,
    with probability ``fault_rate``, it injects one of ``fault_kinds`` (picked
    at random; see the module docstring); otherwise it forwards the request.
    Only requests whose first line passes ``fault_filter`` can fail. The first
    line of every request is kept in ``request_lines``, and the faults
    injected are counted by kind in ``counts``. Settings can be changed while
    it runs.
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
        self.requests = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.request_lines: list[bytes] = []
        self._random = random.Random(seed)
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

    def reset_counts(self) -> None:
        self.requests = 0
        self.counts.clear()
        self.request_lines.clear()

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ready.set()
            async with server:
                await self._stopped.wait()

        asyncio.run(main())

    def _pick_fault(self, request_line: bytes) -> FaultKind | None:
        if not self.fault_filter(request_line) or self._random.random() >= self.fault_rate:
            return None
        kind = self._random.choice(self.fault_kinds)
        self.counts[kind] += 1
        return kind

    async def _handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self._upstream)
        except BaseException as error:
            # Refused, or the proxy stopped meanwhile (cancelled): the client's
            # socket must not outlive the loop, or it warns in a later test.
            client_out.close()
            if isinstance(error, OSError):
                return
            raise
        new_request = True
        drop_answer = False  # a "reset_after" request is in flight

        async def upstream() -> None:
            nonlocal new_request, drop_answer
            while data := await client_in.read(65536):
                if new_request:
                    new_request = False
                    self.requests += 1
                    request_line = data.split(b"\r\n", 1)[0]
                    self.request_lines.append(request_line)
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    fault = self._pick_fault(request_line)
                    if fault == "status":
                        status = self._random.choice(self.fault_statuses)
                        head_only = request_line.startswith(b"HEAD ")
                        client_out.write(_fault_response(status, with_body=not head_only))
                        with contextlib.suppress(OSError):
                            await client_out.drain()
                        return
                    if fault == "reset":
                        _reset(client_out)
                        return
                    drop_answer = fault == "reset_after"
                server_out.write(data)
                await server_out.drain()

        async def downstream() -> None:
            nonlocal new_request
            while data := await server_in.read(65536):
                # "100 Continue" invites the body of the same request: pass it on.
                interim, data = _split_interim(data)
                client_out.write(interim)
                if data:
                    if drop_answer:
                        # The server has acted on the request; the client never hears of it.
                        _reset(client_out)
                        return
                    new_request = True
                    client_out.write(data)
                await client_out.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Close first, synchronously: when the proxy stops, this handler is
            # cancelled and may not get past its next await.
            client_out.close()
            server_out.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _split_interim(data: bytes) -> tuple[bytes, bytes]:
    """Split the interim (1xx) responses off the front of what the server sent."""
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
