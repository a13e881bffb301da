"""asyncflow.web.create_app: the pages and the JSON API, standalone and mounted in FastAPI."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from fastapi import FastAPI
from tests.web.conftest import asgi_client, links
from tests.web.pipeline import SCRIPT

import asyncflow
from asyncflow.journal import Journal
from asyncflow.web import create_app

pytestmark = pytest.mark.anyio

ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


def only(found: list[str], pattern: str) -> str:
    """The one link target matching ``pattern`` (it may appear more than once)."""
    matching = {link for link in found if re.search(pattern, link)}
    assert len(matching) == 1, (pattern, found)
    return matching.pop()


async def test_runs_page_lists_the_run(client: httpx.AsyncClient, journal: Path) -> None:
    """The runs page shows the run: status, host:pid, requested task, counts per status."""
    async with Journal.open(journal) as reader:
        [run] = await reader.runs()
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.count('class="run-row"') == 1
    assert run.run_id in page
    assert f"{run.host}:{run.pid}" in page
    assert 'class="badge s-failed">failed<' in page
    assert "Report_2026-11-23_" in page
    assert "2 success" in page and "2 failed" in page  # Flaky's first try and Broken


async def test_mounted_in_fastapi_every_link_stays_under_the_mount(journal: Path) -> None:
    """Mounted at /pipelines: runs page -> run -> task, stylesheet, search, all relative."""
    app = FastAPI()
    app.mount("/pipelines", create_app(journal=journal))
    async with asgi_client(app) as client:
        home = await client.get("/pipelines", follow_redirects=True)
        assert home.status_code == 200
        here = str(home.url)
        assert here.endswith("/pipelines/")
        for href in links(home.text):
            assert urljoin(here, href).startswith("http://testserver/pipelines/"), href
        run_url = urljoin(here, only(links(home.text), r"^runs/"))
        run = await client.get(run_url)
        assert run.status_code == 200
        assert "Flaky_2026-11-23_" in run.text
        css = await client.get(urljoin(run_url, only(links(run.text), r"app\.css$")))
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        task_url = urljoin(run_url, only(links(run.text), r"tasks/Flaky_2026-11-23_[^/]*$"))
        task = await client.get(task_url)
        assert task.status_code == 200
        assert "ConnectionError" in task.text
        search = await client.get(urljoin(task_url, "../search"), params={"q": "Flaky"})
        assert search.status_code == 200
        assert urljoin(str(search.url), only(links(search.text), r"tasks/Flaky")) == task_url
        api = await client.get("/pipelines/api/runs")
        assert api.json()["total"] == 1


async def test_run_page_shows_every_task_and_draws_them(client: httpx.AsyncClient) -> None:
    """One run: each task with status, attempts, duration, error and traceback; the graph."""
    [run] = (await client.get("/api/runs")).json()["runs"]
    page = (await client.get(f"/runs/{run['run_id']}")).text
    rows = page.split('class="task-row"')[1:]
    assert len(rows) == 3
    by_family = {re.search(r">(\w+)_2026-11-23_", row)[1]: row for row in rows}  # type: ignore[index]
    assert set(by_family) == {"Extract", "Flaky", "Broken"}
    assert 's-success">success<' in by_family["Extract"]
    assert 's-success">success<' in by_family["Flaky"]
    assert '<td class="num">2</td>' in by_family["Flaky"]  # two attempts
    assert "ConnectionError" in by_family["Flaky"]  # the failed first attempt
    assert 's-failed">failed<' in by_family["Broken"]
    assert "Traceback (most recent call last)" in by_family["Broken"]
    assert re.search(r'<td class="num">\d+\.\d{3}s</td>', by_family["Broken"])
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('<rect class="s-success"') == 2
    assert svg.count('<rect class="s-failed"') == 1
    # Report was requested, but never started (Broken failed under it): shown, dashed.
    assert svg.count('<rect class="s-none"') == 1
    [unrun] = page.split('class="unrun-row"')[1:]
    assert ">Report_2026-11-23_" in unrun and "no attempt" in unrun
    assert "data-live" not in page  # the run has ended


async def test_run_page_filters_tasks_by_status(client: httpx.AsyncClient) -> None:
    """``?status=failed`` lists the failed tasks only."""
    [run] = (await client.get("/api/runs")).json()["runs"]
    page = (await client.get(f"/runs/{run['run_id']}", params={"status": "failed"})).text
    assert page.count('class="task-row"') == 1
    assert ">Broken_2026-11-23_" in page


async def test_task_page_shows_its_attempts_with_errors(client: httpx.AsyncClient) -> None:
    """One task id: every attempt, newest first, with times, durations and the traceback."""
    found = (await client.get("/api/search", params={"q": "Flaky"})).json()["tasks"]
    task_id = found[0]["task_id"]
    page = (await client.get(f"/tasks/{task_id}")).text
    rows = page.split('class="attempt-row"')[1:]
    assert len(rows) == 2
    assert 's-success">success<' in rows[0]
    assert 's-failed">failed<' in rows[1]
    assert "the warehouse hung up on the first try" in rows[1]
    assert "Traceback (most recent call last)" in rows[1]
    assert rows[1].count("<time") == 2  # started and ended


async def test_search_finds_task_ids_by_family_prefix_and_substring(
    client: httpx.AsyncClient,
) -> None:
    """A family's name finds its tasks; a piece of an id finds it too, in any case."""
    by_family = (await client.get("/search", params={"q": "Broken"})).text
    assert by_family.count('class="found-row"') == 1
    inner = (await client.get("/search", params={"q": "2026-11-23_"})).text
    assert inner.count('class="found-row"') == 3
    lower = (await client.get("/api/search", params={"q": "flaky"})).json()["tasks"]
    assert [t["family"] for t in lower] == ["Flaky"]
    assert lower[0]["attempts"] == 2
    nothing = (await client.get("/search", params={"q": "NoSuchTask"})).text
    assert "No task id starts with or contains" in nothing


async def test_values_from_the_journal_are_escaped(client: httpx.AsyncClient) -> None:
    """A parameter and an error holding <script> render as text on every page."""
    [run] = (await client.get("/api/runs")).json()["runs"]
    broken = (await client.get("/api/search", params={"q": "Broken"})).json()["tasks"][0]
    assert broken["latest"]["params"]["note"] == SCRIPT  # it is in the journal as is
    pages = [
        f"/runs/{run['run_id']}",
        f"/tasks/{broken['task_id']}",
        "/search?q=Broken",
    ]
    for url in pages:
        page = (await client.get(url)).text
        assert "<script>alert" not in page, url
        assert page.count("<script") == 1, url  # our own script tag only
    run_page = (await client.get(pages[0])).text
    task_page = (await client.get(pages[1])).text
    assert f"bad row {ESCAPED}" in run_page
    assert ESCAPED in task_page  # the parameter
    assert f"ValueError: bad row {ESCAPED}" in task_page  # the traceback's last line


async def test_json_api(client: httpx.AsyncClient) -> None:
    """/api/runs, /api/runs/{id} and /api/tasks/{id} hand back the journal's records."""
    listing = (await client.get("/api/runs")).json()
    assert listing["total"] == 1
    assert listing["counts"] == {"failed": 1}
    [run] = listing["runs"]
    assert run["status"] == "failed"
    assert run["counts"] == {"success": 2, "failed": 2}
    assert run["requested"][0].startswith("Report_2026-11-23_")
    assert run["ended"] >= run["started"]
    one = (await client.get(f"/api/runs/{run['run_id']}")).json()
    assert len(one["attempts"]) == 4
    flaky = [a for a in one["attempts"] if a["family"] == "Flaky"]
    assert [(a["attempt"], a["status"]) for a in flaky] == [(1, "failed"), (2, "success")]
    assert flaky[0]["error_type"] == "ConnectionError"
    assert "Traceback" in flaky[0]["traceback"]
    task = (await client.get(f"/api/tasks/{flaky[0]['task_id']}")).json()
    assert task["family"] == "Flaky"
    assert task["params"] == {"day": "2026-11-23"}
    assert [a["attempt"] for a in task["attempts"]] == [1, 2]


async def test_not_found_and_bad_parameters(client: httpx.AsyncClient) -> None:
    """Unknown ids are 404 (named); a bad filter or page is 400 naming the parameter."""
    missing = await client.get("/api/runs/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no run 'nope' in the journal"}
    assert (await client.get("/api/tasks/Nope_1")).status_code == 404
    page = await client.get("/runs/nope")
    assert page.status_code == 404
    assert "No run &#39;nope&#39; in the journal." in page.text
    assert (await client.get("/tasks/Nope_1")).status_code == 404
    bad = await client.get("/api/runs", params={"status": "exploded"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("status: expected one of running, success")
    assert (await client.get("/", params={"page": "0"})).status_code == 400
    assert "page: expected a whole number" in (await client.get("/?page=x")).text


async def test_every_route_is_read_only(client: httpx.AsyncClient, journal: Path) -> None:
    """No method but GET/HEAD is accepted; reading leaves the journal file as it was."""
    before = hashlib.sha256(journal.read_bytes()).hexdigest()
    [run] = (await client.get("/api/runs")).json()["runs"]
    routes = ["/", f"/runs/{run['run_id']}", "/tasks/x", "/search", "/api/runs", "/metrics"]
    for url in routes:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = await client.request(method, url)
            assert response.status_code == 405, (method, url)
        assert (await client.get(url)).status_code in (200, 404)
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == before


async def test_security_headers(client: httpx.AsyncClient) -> None:
    """Pages forbid inline scripts and framing, and never sniff types."""
    for url in ("/", "/api/runs", "/nope"):
        headers = (await client.get(url)).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


async def test_missing_journal_is_not_created(tmp_path: Path) -> None:
    """A journal path with no file yet shows an empty history; the file is not made."""
    path = tmp_path / "later" / "journal.db"
    async with asgi_client(create_app(journal=path)) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert "No journal yet" in page.text
        assert (await client.get("/api/runs")).json()["runs"] == []
        assert (await client.get("/api/runs/x")).status_code == 404
    assert not path.parent.exists()


async def test_an_open_journal_can_be_given(journal: Path) -> None:
    """create_app(journal=<open Journal>) reads that one and leaves it open."""
    async with Journal.open(journal) as opened:
        async with asgi_client(create_app(journal=opened)) as client:
            assert (await client.get("/api/runs")).json()["total"] == 1
            assert (await client.get("/")).status_code == 200
        assert len(await opened.runs()) == 1  # still usable


async def test_a_file_that_is_not_a_journal_is_an_error_page(tmp_path: Path) -> None:
    """A path that is not a journal answers 500 with the journal's error, not a traceback."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database")
    async with asgi_client(create_app(journal=path)) as client:
        page = await client.get("/")
        api = await client.get("/api/runs")
    assert page.status_code == 500
    assert "is not an asyncflow journal" in page.text
    assert api.status_code == 500
    assert "is not an asyncflow journal" in api.json()["error"]


async def test_token_is_checked_on_every_request(journal: Path) -> None:
    """With a token: 401 without it; a bearer header or the cookie set by ?token= passes."""
    async with asgi_client(create_app(journal=journal, token="s3cret")) as client:
        for url in ("/", "/api/runs", "/metrics", "/static/app.css", "/nope"):
            refused = await client.get(url)
            assert refused.status_code == 401, url
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "s3cret" not in refused.text
        assert (await client.get("/", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get("/?token=wrong")).status_code == 401
        bearer = await client.get("/api/runs", headers={"authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
        assert (await client.get("/metrics", headers={"authorization": "bearer s3cret"})).is_success
        assert not client.cookies
        opened = await client.get("/search?q=Flaky&token=s3cret")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/search?q=Flaky"  # the token leaves the address
        assert "httponly" in opened.headers["set-cookie"].lower()
        assert "samesite=strict" in opened.headers["set-cookie"].lower()
        followed = await client.get(opened.headers["location"])  # the cookie carries it now
        assert followed.status_code == 200
        assert "Flaky_2026-11-23_" in followed.text


async def test_token_cookie_is_scoped_to_the_mount_point(journal: Path) -> None:
    """Mounted, ?token= redirects within the mount and the cookie's path is the mount's."""
    app = FastAPI()
    app.mount("/pipelines", create_app(journal=journal, token="t"))
    async with asgi_client(app) as client:
        opened = await client.get("/pipelines/api/runs?token=t&limit=5")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/pipelines/api/runs?limit=5"
        assert "path=/pipelines/" in opened.headers["set-cookie"].lower()
        assert (await client.get("/pipelines/api/runs?limit=5")).json()["limit"] == 5


class Login(asyncflow.Task):
    user = asyncflow.Parameter()
    password = asyncflow.Parameter(visibility=asyncflow.ParameterVisibility.HIDDEN)
    api_key = asyncflow.Parameter(
        default="k-0123456789", visibility=asyncflow.ParameterVisibility.PRIVATE
    )

    async def run(self) -> None:
        raise PermissionError(f"{self.user}/{self.password}/{self.api_key} refused")


async def test_hidden_and_private_parameters_never_show(tmp_path: Path) -> None:
    """HIDDEN values show as ***, PRIVATE ones not at all: pages, API, errors, tracebacks."""
    path = tmp_path / "journal.db"
    await asyncflow.run(Login(user="ann", password="hunter2-pw"), journal=path)
    async with asgi_client(create_app(journal=path)) as client:
        [run] = (await client.get("/api/runs")).json()["runs"]
        [attempt] = (await client.get(f"/api/runs/{run['run_id']}")).json()["attempts"]
        assert attempt["params"] == {"user": "ann", "password": "***"}
        bodies = [
            (await client.get(url)).text
            for url in (
                "/",
                f"/runs/{run['run_id']}",
                f"/tasks/{attempt['task_id']}",
                "/search?q=Login",
                f"/api/runs/{run['run_id']}",
                f"/api/tasks/{attempt['task_id']}",
                "/api/search?q=Login",
            )
        ]
    task_page = bodies[2]
    assert "ann/***/*** refused" in task_page
    for body in bodies:
        assert "hunter2" not in body
        assert "k-0123456789" not in body
