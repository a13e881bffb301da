"""How fast the web pages answer over a big journal.

::

    .venv/bin/python benchmarks/bench_web.py                   # 1,000 runs x 1,000 attempts
    .venv/bin/python benchmarks/bench_web.py --runs 100 --tasks 100 --rounds 5

The journal is made once (through the journal's own recording API, with
synthetic times) and kept at ``--journal`` (default: a file in the system's
temporary folder named after its size), so later calls only measure. Each page
is then asked for ``--rounds`` times through the ASGI app in process (httpx's
ASGI transport: no sockets, so the figure is the app's own time: journal
reads, rendering), and the median and slowest answers are printed. The first
request of each page is not counted (imports, SQLite's page cache).

Every page must answer 200; the runs page must list its 50 newest runs.
``--runs 2 --tasks 10000`` times the page of a 10,000-task run.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

import asyncflow
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import Journal, RunStatus
from asyncflow.web import create_app

FAMILIES = ("Extract", "Clean", "Transform", "Load", "Report")
DAY = 86_400.0


class Extract(asyncflow.Task):
    day = asyncflow.DateParameter()
    part = asyncflow.IntParameter()


class Clean(Extract):
    pass


class Transform(Extract):
    pass


class Load(Extract):
    pass


class Report(Extract):
    pass


CLASSES = (Extract, Clean, Transform, Load, Report)


def _error() -> Exception:
    try:
        raise ConnectionError("upstream closed the connection <after 30 s>")
    except ConnectionError as exc:
        return exc


async def make_journal(path: Path, runs: int, tasks: int) -> None:
    """``runs`` daily runs of ``tasks`` tasks each: about ``runs * tasks`` attempts.

    Each run has a retry (a failed attempt, then a success) per 200 tasks; one
    run in ten has a task that fails for good (a traceback) and ends failed.
    """
    now = [datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC).timestamp()]
    error = _error()
    async with Journal.open(path, clock=lambda: now[0], host="bench", pid=1) as journal:
        for r in range(runs):
            day = datetime.date(2024, 1, 1) + datetime.timedelta(days=r)
            start = now[0] = now[0] + DAY
            run_id = f"{day:%Y%m%d}T020000-{r:08x}"
            todo = [CLASSES[i % len(CLASSES)](day=day, part=i) for i in range(tasks)]
            await journal.begin_run(run_id, [todo[-1].task_id], started=start)
            at = start
            failed = False
            for i, task in enumerate(todo):
                at += 0.05
                journal.record(TaskEvent(Event.START, task, run_id, 1, None, None, at))
                if i % 200 == 7:  # a retry
                    at += 0.5
                    journal.record(TaskEvent(Event.RETRY, task, run_id, 1, error, 0.5, at))
                    journal.record(TaskEvent(Event.START, task, run_id, 2, None, None, at))
                    at += 0.2
                    journal.record(TaskEvent(Event.SUCCESS, task, run_id, 2, None, None, at))
                elif r % 10 == 3 and i == tasks // 2:  # a failure for good
                    at += 0.3
                    journal.record(TaskEvent(Event.FAILURE, task, run_id, 1, error, 0.3, at))
                    failed = True
                else:
                    at += 0.1
                    journal.record(TaskEvent(Event.SUCCESS, task, run_id, 1, None, None, at))
            now[0] = at
            await journal.end_run(run_id, RunStatus.FAILED if failed else RunStatus.SUCCESS)
            if (r + 1) % max(runs // 10, 1) == 0:
                print(f"  {r + 1:,} runs", file=sys.stderr)


async def measure(path: Path, runs: int, tasks: int, rounds: int) -> list[tuple[str, float, float]]:
    app = create_app(journal=path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        first = (await client.get("/api/runs", params={"limit": 1})).json()["runs"][0]
        some_task = (await client.get(f"/api/runs/{first['run_id']}")).json()["attempts"][7]
        pages = {
            "runs page /": "/",
            "runs page, page 10": "/?page=10",
            "runs page, the last": f"/?page={-(-runs // 50)}",
            "runs page, status=failed": "/?status=failed",
            "runs page, family=Report": "/?family=Report",
            f"one run ({tasks:,} tasks)": f"/runs/{first['run_id']}",
            "one task id": f"/tasks/{some_task['task_id']}",
            "search 'Transform_2024-06'": "/search?q=Transform_2024-06",
            "search '2024-06-01' (substring)": "/search?q=2024-06-01",
            "GET /api/runs": "/api/runs",
            "GET /metrics": "/metrics",
        }
        results = []
        for name, url in pages.items():
            response = await client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.text[:500])
            if url == "/":
                shown = response.text.count('class="run-row"')
                assert shown == min(runs, 50), f"the runs page lists {shown} runs"
            times = []
            for _ in range(rounds):
                began = time.perf_counter()
                response = await client.get(url)
                times.append(time.perf_counter() - began)
                assert response.status_code == 200
            results.append((name, statistics.median(times) * 1000, max(times) * 1000))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--journal", type=Path, default=None)
    args = parser.parse_args()
    path = args.journal or Path(tempfile.gettempdir()) / f"bench_web_{args.runs}x{args.tasks}.db"
    if not path.exists():
        print(f"making {path} ({args.runs} runs x {args.tasks} tasks)...", file=sys.stderr)
        began = time.perf_counter()
        anyio.run(make_journal, path, args.runs, args.tasks, backend="asyncio")
        print(f"  made in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    size = path.stat().st_size / 2**20
    print(f"journal {path}: {size:.0f} MiB, {args.runs} runs x {args.tasks} tasks")
    print(f"{'page':34} {'median ms':>10} {'max ms':>8}")
    results = anyio.run(measure, path, args.runs, args.tasks, args.rounds, backend="asyncio")
    for name, median, slowest in results:
        print(f"{name:34} {median:10.1f} {slowest:8.1f}")


if __name__ == "__main__":
    main()
