"""A run of thousands of tasks: its page, its JSON and its drawing cost about what they show."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.web.conftest import asgi_client

import asyncflow
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import Journal, RunStatus, history
from asyncflow.web import create_app
from asyncflow.web._views import shares

pytestmark = pytest.mark.anyio

LEAVES = 3000
UNRUN = 450
AT = 1_700_000_000.0
APP_JS = Path(__file__).parents[2] / "src" / "asyncflow" / "web" / "static" / "app.js"


class Leaf(asyncflow.Task):
    i = asyncflow.IntParameter()


class Root(asyncflow.Task):
    n = asyncflow.IntParameter()


def leaf_events(run_id: str, i: int) -> list[TaskEvent]:
    """Leaf ``i``: a success at once, or (every tenth) two failed attempts."""
    task = Leaf(i=i)
    if i % 10:
        return [
            TaskEvent(Event.START, task, run_id, 1, None, None, AT + i),
            TaskEvent(Event.SUCCESS, task, run_id, 1, None, None, AT + i + 0.5),
        ]
    error = ValueError(f"row {i} is malformed")
    return [
        TaskEvent(Event.START, task, run_id, 1, None, None, AT + i),
        TaskEvent(Event.FAILURE, task, run_id, 1, error, 0.5, AT + i + 0.5),
        TaskEvent(Event.START, task, run_id, 2, None, None, AT + i + 1),
        TaskEvent(Event.FAILURE, task, run_id, 2, error, 0.5, AT + i + 1.5),
    ]


def unrun_rows(page: str) -> list[str]:
    """The task ids of a run page's rows of requested tasks without an attempt."""
    return re.findall(r'<tr class="unrun-row">\s*<td><a class="mono" href="[^"]*">([^<]*)<', page)


def unrun_ids() -> list[str]:
    return [Leaf(i=LEAVES + i).task_id for i in range(UNRUN)]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run "big": LEAVES Leaf tasks then Root; it requested Root and UNRUN tasks it never
    attempted. run "done": UNRUN requested tasks, none attempted (complete before)."""
    path = tmp_path_factory.mktemp("big") / "journal.db"

    async def fill() -> None:
        async with Journal.open(path) as journal:
            await journal.begin_run("big", [Root(n=LEAVES).task_id, *unrun_ids()], started=AT)
            for i in range(LEAVES):
                for event in leaf_events("big", i):
                    journal.record(event)
            root = Root(n=LEAVES)
            journal.record(TaskEvent(Event.START, root, "big", 1, None, None, AT + LEAVES))
            journal.record(TaskEvent(Event.SUCCESS, root, "big", 1, None, None, AT + LEAVES))
            await journal.end_run("big", RunStatus.FAILED)
            await journal.begin_run("done", unrun_ids(), started=AT + LEAVES + 10)
            await journal.end_run("done", RunStatus.SUCCESS)

    anyio.run(fill, backend="asyncio")
    return path


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many attempt rows the journal decodes (one element per row)."""
    counted: list[int] = []
    real = history.attempt_record

    def counting(row: Any) -> Any:
        counted.append(1)
        return real(row)

    monkeypatch.setattr(history, "attempt_record", counting)
    return counted


async def test_a_page_of_a_big_run_decodes_a_page_of_attempts(
    big: Path, decoded: list[int]
) -> None:
    """200 tasks on a page of a run of 3,001: the page decodes their attempts alone, and
    counts the rest in the journal (chips and totals as before)."""
    async with asgi_client(create_app(journal=big)) as client:
        page = (await client.get("/runs/big")).text
        failed = (await client.get("/runs/big", params={"status": "failed", "page": 2})).text
    assert page.count('class="task-row"') == 200
    assert "page 1 of 18" in page  # 3,001 tasks and 450 requested without an attempt
    assert ">all <b>3,001</b>" in page
    assert "failed <b>300</b>" in page and "success <b>2,701</b>" in page
    assert failed.count('class="task-row"') == 100  # 300 failed tasks, 200 a page
    assert f"Leaf_{10 * 200}_" in failed and "unrun-row" not in failed
    # a page's tasks (a tenth with two attempts), twice: not the run's 3,301 attempts
    assert len(decoded) <= 2 * 220 + 200


async def test_requested_tasks_without_an_attempt_are_paged_too(big: Path) -> None:
    """They follow the attempted tasks, 200 rows a page in all; a run of them alone pages."""
    async with asgi_client(create_app(journal=big)) as client:
        turn = (await client.get("/runs/big", params={"page": 16})).text
        last = (await client.get("/runs/big", params={"page": 18})).text
        done = [(await client.get("/runs/done", params={"page": p})).text for p in (1, 3)]
    assert (turn.count('class="task-row"'), turn.count('class="unrun-row"')) == (1, 199)
    assert "Root_3000_" in turn and unrun_ids()[0] in turn
    assert last.count('class="unrun-row"') == 3451 - 17 * 200
    assert unrun_rows(last) == unrun_ids()[-(3451 - 17 * 200) :]
    assert [p.count('class="unrun-row"') for p in done] == [200, 50]
    assert "page 1 of 3" in done[0]


async def test_the_drawing_counts_every_family_and_draws_each(big: Path) -> None:
    """Each family's label gives its number of tasks, and the shapes are shared out:
    Root (one task, last to run) is drawn beside 3,000 Leafs; the rest are counted."""
    async with asgi_client(create_app(journal=big)) as client:
        page = (await client.get("/runs/big")).text
    assert re.findall(r'class="g-head"[^>]*>([^<]*)<', page) == [
        "Leaf (3,000)",
        "Root (1)",
        "no attempt (450)",
    ]
    assert page.count("<rect") == 3451  # under the cap: all drawn
    assert re.search(r'<rect class="s-success"[^>]*><title>Root_3000_', page)


def test_shares_give_every_family_its_part_of_the_cap() -> None:
    """All of each family under the cap; over it, small families whole and the rest even."""
    assert shares({"a": 3, "b": 4}, 10) == {"a": 3, "b": 4}
    assert shares({"big": 6000, "root": 1}, 5000) == {"big": 4999, "root": 1}
    assert shares({"a": 9000, "b": 9000, "c": 10}, 5000) == {"a": 2495, "b": 2495, "c": 10}
    assert shares({"a": 0, "b": 9}, 5) == {"a": 0, "b": 5}


async def test_the_run_api_pages_attempts_and_requested_ids(big: Path) -> None:
    """GET /api/runs/{id} pages the run's attempts (limit, offset, total, counts) and its
    requested ids; lists of runs hold the first few requested ids and their count."""
    async with asgi_client(create_app(journal=big)) as client:
        first = (await client.get("/api/runs/big")).json()
        page = (await client.get("/api/runs/big", params={"limit": 5, "offset": 3300})).json()
        ids = await client.get(
            "/api/runs/big", params={"requested_limit": 2, "requested_offset": 1}
        )
        runs = (await client.get("/api/runs")).json()["runs"]
        bad = [
            await client.get("/api/runs/big", params={name: value})
            for name, value in [("limit", "x"), ("offset", "-1"), ("requested_limit", "10**9")]
        ]
    assert len(first["attempts"]) == 1000 and first["attempts_total"] == 3301
    assert first["counts"] == {"success": 2701, "failed": 600}
    assert len(first["requested"]) == 451 and first["requested_count"] == 451
    assert [a["task_id"][:9] for a in page["attempts"]] == ["Root_3000"]
    assert (page["limit"], page["offset"]) == (5, 3300)
    assert ids.json()["requested"] == unrun_ids()[:2]
    assert [(r["run_id"], r["requested"], r["requested_count"]) for r in runs] == [
        ("done", unrun_ids()[:3], 450),
        ("big", [Root(n=LEAVES).task_id, *unrun_ids()[:2]], 451),
    ]
    assert [(r.status_code, r.json()["error"].split(":")[0]) for r in bad] == [
        (400, "limit"),
        (400, "offset"),
        (400, "requested_limit"),
    ]


async def test_the_runs_page_shows_two_requested_ids_and_counts_the_rest(big: Path) -> None:
    """The runs page names two requested tasks of each run and says how many more."""
    async with asgi_client(create_app(journal=big)) as client:
        page = (await client.get("/")).text
    assert "and 448 more" in page and "and 449 more" in page


_HARNESS = r"""
// app.js in a fake page whose fetches answer only when told: how many are in flight.
const src = require("fs").readFileSync(process.argv[2], "utf8");
let timers = [], inFlight = 0, most = 0, answers = [], fetches = 0, live = true;
const main = { hasAttribute: () => true, querySelectorAll: () => [], replaceWith() {} };
const window = {
  setTimeout(fn) { timers.push(fn); },
  setInterval(fn) { const tick = () => { timers.push(tick); fn(); }; timers.push(tick); },
  clearInterval() {}, clearTimeout() {},
  fetch() {
    inFlight++; fetches++; most = Math.max(most, inFlight);
    return new Promise((resolve) => answers.push(() => {
      inFlight--;
      resolve({ ok: true, text: () => Promise.resolve("") });
    }));
  },
  DOMParser: function () {}, location: { href: "http://127.0.0.1/runs/r" },
};
global.DOMParser = function () {
  const next = { hasAttribute: () => live, querySelectorAll: () => [], replaceWith() {} };
  this.parseFromString = () => ({ querySelector: () => next });
};
const document = { querySelector: () => main, getElementById: () => null };
new Function("window", "document", src)(window, document);
const tick = () => { const due = timers; timers = []; due.forEach((fn) => fn()); };
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
(async () => {
  for (let i = 0; i < 10; i++) tick();  // 20 s of a server that does not answer
  const slow = most;
  answers.shift()(); await settle();
  tick(); await settle();                // answered: the next refresh, 2 s later
  const after = fetches;
  live = false; answers.forEach((a) => a()); answers = []; await settle();
  const left = timers.length;
  console.log(JSON.stringify({ slow, after, left }));
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run app.js")
def test_the_live_refresh_waits_for_the_previous_fetch(tmp_path: Path) -> None:
    """app.js asks again only once the last answer came: one fetch in flight however
    slow the server, the next 2 s after an answer, none once the page is not live."""
    harness = tmp_path / "harness.js"
    harness.write_text(_HARNESS)
    done = subprocess.run(
        ["node", str(harness), str(APP_JS)], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(done.stdout) == {"slow": 1, "after": 2, "left": 0}
