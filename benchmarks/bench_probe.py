"""Probing 1,000 S3 and 1,000 GCS targets across a slow network, three ways.

A loopback TCP proxy of this script's own adds a fixed latency (50 ms by
default) to every request between asyncflow's targets and a local server
(moto for S3, fake-gcs-server for GCS, both started here on 127.0.0.1). For
each backend it prints:

- sequential: one ``await target.exists()`` after the other (measured on a
  sample, ``--sequential-sample``, and scaled to N unless ``--full``);
- head mode: ``probe_many`` with listing turned off, one request per target,
  64 in flight;
- listing mode: ``probe_many`` as the engine would call it, listing the shared
  prefix instead;
- the request counts of each (asyncflow's own count, and the proxy's);
- the bound ``max(N * latency / concurrency, N / throughput)``, where the
  throughput is measured by head-mode probing through the proxy with no added
  latency (so it includes the client's and the proxy's CPU cost per request:
  on a 2-core machine shared by client, proxy and server, that is the real
  ceiling).

Each probing time is the median of ``--repeat`` runs (3).

    python benchmarks/bench_probe.py
    python benchmarks/bench_probe.py --latency 0.1 --n 2000 --backends gcs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the test servers in tests/targets/servers.py

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "NO_GCE_CHECK": "true",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "STORAGE_EMULATOR_HOST"):
    os.environ.pop(_name, None)

from tests.targets.servers import (  # noqa: E402
    FakeGCSServer,
    MotoServer,
    create_gcs_bucket,
    create_s3_bucket,
)

from asyncflow.targets import (  # noqa: E402  # after the environment is set
    GCSConfig,
    GCSTarget,
    RequestCounter,
    S3Config,
    S3Target,
    probe_many,
)
from asyncflow.targets._clients import client_scope  # noqa: E402

BUCKET = "bench-probe"
NO_LISTING = 10**9  # a list_threshold no group reaches: head mode


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that holds each request ``latency`` seconds, and counts them.

    A request starts with the first bytes a client sends after the server's
    last answer on that connection (HTTP/1.1, no pipelining). Each connection
    waits on its own, so concurrent requests overlap as they would on a real
    network. It runs in a child process (this script with ``--serve-proxy``),
    so that its work does not compete with the client for the GIL; the parent
    asks it for its request count over the child's stdin and stdout.
    """

    def __init__(self, upstream: str, latency: float) -> None:
        self._args = ["--serve-proxy", upstream, str(latency)]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LatencyProxy:
        self._process = subprocess.Popen(
            [sys.executable, __file__, *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.__exit__()
            raise RuntimeError("the latency proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()  # the child exits when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)
        process.stdout.close()

    @property
    def requests(self) -> int:
        """Requests forwarded so far."""
        assert self._process is not None
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("count\n")
        self._process.stdin.flush()
        return int(self._process.stdout.readline())


def serve_proxy(upstream: str, latency: float) -> None:
    """The proxy child: serve until stdin closes; answer "count" lines with the request count."""
    host, _, port = upstream.removeprefix("http://").partition(":")
    requests = 0
    live: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def handle(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        nonlocal requests
        me = asyncio.current_task()
        assert me is not None
        live[me] = client_out
        me.add_done_callback(lambda task: live.pop(task, None))
        try:
            server_in, server_out = await asyncio.open_connection(host, int(port))
        except OSError:
            client_out.close()
            return
        between_requests = True

        async def upstream() -> None:
            nonlocal between_requests, requests
            while data := await client_in.read(65536):
                if between_requests:
                    between_requests = False
                    requests += 1
                    await asyncio.sleep(latency)
                server_out.write(data)
                await server_out.drain()

        async def downstream() -> None:
            nonlocal between_requests
            while data := await server_in.read(65536):
                between_requests = True
                client_out.write(data)
                await client_out.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_out.close()
            server_out.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                if line.strip() == "count":
                    print(requests, flush=True)
            # Close what is still connected and let the handlers finish on their
            # own, rather than have asyncio.run() cancel them at exit.
            for writer in list(live.values()):
                writer.close()
            if live:
                await asyncio.wait(list(live), timeout=5)

    asyncio.run(main())


@dataclass
class Result:
    backend: str
    n: int
    sequential: float
    sequential_measured: int
    head: float
    head_requests: int
    listing: float
    listing_requests: int
    throughput: float
    bound: float
    proxy_head_requests: int
    proxy_listing_requests: int


def make_targets(backend: str, n: int, config: Any) -> list[Any]:
    if backend == "s3":
        return [S3Target(f"s3://{BUCKET}/data/part-{i:05d}", config=config) for i in range(n)]
    return [GCSTarget(f"gs://{BUCKET}/data/part-{i:05d}", config=config) for i in range(n)]


def config_for(backend: str, endpoint: str) -> Any:
    if backend == "s3":
        return S3Config.from_env(endpoint_url=endpoint)
    return GCSConfig.from_env(endpoint_url=endpoint, project="bench", token="anon")


async def populate(targets: Sequence[Any]) -> None:
    """Write every tenth target, so that probes see both answers."""
    limiter = anyio.CapacityLimiter(16)

    async def write(target: Any) -> None:
        async with limiter:
            await target.write_bytes(b"x")

    async with client_scope(), anyio.create_task_group() as tg:
        for target in targets[::10]:
            tg.start_soon(write, target)


async def timed_probe(targets: Sequence[Any], **options: Any) -> tuple[float, RequestCounter]:
    """Seconds and requests for one probe_many call, with a warm client."""
    counter = RequestCounter()
    async with client_scope():
        await targets[0].exists()  # create the client and its first connection outside the clock
        started = time.perf_counter()
        answers = await probe_many(targets, counter=counter, **options)
        elapsed = time.perf_counter() - started
    assert sum(answers.values()) == len(targets[::10]), "wrong answers"
    return elapsed, counter


async def timed_sequential(targets: Sequence[Any]) -> float:
    async with client_scope():
        await targets[0].exists()
        started = time.perf_counter()
        for target in targets:
            await target.exists()
        return time.perf_counter() - started


def median_of(repeat: int, measure: Any) -> tuple[float, RequestCounter]:
    """The run with the median time out of ``repeat`` (the machine is shared and noisy)."""
    runs: list[tuple[float, RequestCounter]] = sorted(
        (anyio.run(measure, backend="asyncio") for _ in range(repeat)), key=lambda r: r[0]
    )
    return runs[len(runs) // 2]


def bench_backend(backend: str, server_url: str, args: argparse.Namespace) -> Result:
    n, latency, concurrency, repeat = args.n, args.latency, args.concurrency, args.repeat
    anyio.run(
        populate, make_targets(backend, n, config_for(backend, server_url)), backend="asyncio"
    )

    def head_mode(targets: Sequence[Any]) -> Any:
        return lambda: timed_probe(targets, concurrency=concurrency, list_threshold=NO_LISTING)

    # Throughput: head mode through the proxy with no latency, so that the
    # proxy's own CPU cost (it shares the machine) is counted as the network's.
    with LatencyProxy(server_url, 0.0) as proxy:
        fast = make_targets(backend, n, config_for(backend, proxy.url))
        direct_time, _ = median_of(repeat, head_mode(fast))
    throughput = n / direct_time
    with LatencyProxy(server_url, latency) as proxy:
        slow = make_targets(backend, n, config_for(backend, proxy.url))
        sample = n if args.full else min(n, args.sequential_sample)
        sequential = anyio.run(timed_sequential, slow[:sample], backend="asyncio") * n / sample
        before = proxy.requests
        head, head_counter = median_of(repeat, head_mode(slow))
        proxy_head = (proxy.requests - before) // repeat - 1  # minus the warm-up probe
        before = proxy.requests
        listing, listing_counter = median_of(
            repeat, lambda: timed_probe(slow, concurrency=concurrency)
        )
        proxy_listing = (proxy.requests - before) // repeat - 1
    return Result(
        backend=backend,
        n=n,
        sequential=sequential,
        sequential_measured=sample,
        head=head,
        head_requests=head_counter.total,
        listing=listing,
        listing_requests=listing_counter.total,
        throughput=throughput,
        bound=max(n * latency / concurrency, n / throughput),
        proxy_head_requests=proxy_head,
        proxy_listing_requests=proxy_listing,
    )


def report(results: list[Result], args: argparse.Namespace) -> bool:
    print(
        f"\nProbing N={args.n} targets under one prefix, {args.latency * 1000:.0f} ms per request, "
        f"concurrency {args.concurrency}\n"
    )
    header = (
        "| backend | sequential | head mode (requests) | speed-up | bound | head/bound "
        "| listing mode (requests) | server throughput |"
    )
    print(header)
    print("|---" * 8 + "|")
    ok = True
    for r in results:
        seq_note = "" if r.sequential_measured == r.n else f" ({r.sequential_measured} measured)"
        speedup = r.sequential / r.head
        ratio = r.head / r.bound
        print(
            f"| {r.backend} | {r.sequential:.2f} s{seq_note} "
            f"| {r.head:.2f} s ({r.head_requests}; proxy {r.proxy_head_requests}) "
            f"| {speedup:.1f}x | {r.bound:.2f} s | {ratio:.2f} "
            f"| {r.listing:.3f} s ({r.listing_requests}; proxy {r.proxy_listing_requests}) "
            f"| {r.throughput:.0f} req/s |"
        )
        checks = [
            (ratio <= 1.5, f"{r.backend}: head mode within 1.5x of the bound ({ratio:.2f})"),
            (r.listing_requests <= 5, f"{r.backend}: listing <= 5 requests ({r.listing_requests})"),
        ]
        if r.backend == "gcs":
            checks.append((speedup >= 10, f"gcs: head mode >= 10x sequential ({speedup:.1f}x)"))
        for passed, text in checks:
            ok &= passed
            print(f"    {'PASS' if passed else 'FAIL'}  {text}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="targets per backend")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--sequential-sample", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median kept)")
    parser.add_argument("--full", action="store_true", help="time sequential probing of all N")
    parser.add_argument("--backends", nargs="+", default=["s3", "gcs"], choices=["s3", "gcs"])
    parser.add_argument("--serve-proxy", nargs=2, metavar=("UPSTREAM", "LATENCY"), help="internal")
    args = parser.parse_args(argv)
    if args.serve_proxy:
        serve_proxy(args.serve_proxy[0], float(args.serve_proxy[1]))
        return 0

    results = []
    with contextlib.ExitStack() as stack:
        for backend in args.backends:
            if backend == "s3":
                url = stack.enter_context(MotoServer()).url
                create_s3_bucket(url, BUCKET)
            else:
                url = stack.enter_context(FakeGCSServer()).url
                create_gcs_bucket(url, BUCKET)
            results.append(bench_backend(backend, url, args))
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
