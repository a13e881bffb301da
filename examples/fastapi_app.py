"""asyncflow in a FastAPI service: a report built on request, cancelled if the caller leaves.

    Readings(date)  ->  data/readings/<date>.csv
    Report(date)    ->  data/reports/<date>.txt    (one line per reading, slowly)

Serve it from the folder that should hold ``data/`` and the journal::

    pip install 'asyncflow[web]' fastapi
    uvicorn fastapi_app:app --app-dir examples
    curl -X POST http://127.0.0.1:8000/reports/2026-11-23

``POST /reports/{day}`` runs the pipeline for that day and answers with the
report. Each line of the report waits ``pace`` seconds (a query parameter,
default 0.5), as if for a slow remote service. Press Ctrl-C in curl before
it answers: the client is gone, so the run is cancelled. The half-written
report is discarded (nothing appears under ``data/reports``) and
``asyncflow history`` shows the run as cancelled. Ask again and the report
is built from the readings the first run left.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import asyncflow
from asyncflow.asgi import run_until_disconnected

SENSORS = 10


class Readings(asyncflow.Task):
    """One day of sensor readings (made up here)."""

    date = asyncflow.DateParameter(description="the day to read")

    def output(self) -> asyncflow.Target:
        return asyncflow.LocalTarget(f"data/readings/{self.date}.csv")

    async def run(self) -> None:
        rng = random.Random(self.date.toordinal())
        lines = [f"s{i},{rng.uniform(-10, 10):.3f}\n" for i in range(SENSORS)]
        await self.output().write_text("".join(lines))


class Report(asyncflow.Task):
    """A line per reading, each after ``pace`` seconds (a slow service, say)."""

    date = asyncflow.DateParameter(description="the day to report on")
    pace = asyncflow.FloatParameter(
        default=0.5, significant=False, description="seconds to wait per line"
    )

    def requires(self) -> Readings:
        return Readings(self.date)

    def output(self) -> asyncflow.Target:
        return asyncflow.LocalTarget(f"data/reports/{self.date}.txt")

    async def run(self) -> None:
        readings = (await self.input().read_text()).splitlines()
        # Atomic: the report appears at its path only when the block ends
        # normally; a cancelled run leaves nothing behind.
        async with self.output().open("w") as out:
            for reading in readings:
                await anyio.sleep(self.pace)
                sensor, value = reading.split(",")
                out.write(f"{sensor}: {float(value):+.1f}\n")


app = FastAPI(title="asyncflow reports")


@app.post("/reports/{day}")
async def build_report(day: datetime.date, request: Request, pace: float = 0.5) -> Any:
    """Build the day's report (unless it exists) and answer with it."""
    report = Report(date=day, pace=pace)
    result = await run_until_disconnected(request, report)
    if result is None:
        # The client went away and the run was cancelled: nobody reads this.
        return Response(status_code=499)
    if not result.ok:
        return JSONResponse({"ok": False, "summary": result.summary()}, status_code=500)
    return {
        "ok": True,
        "status": result.status(report).value,
        "report": await report.output().read_text(),
    }
