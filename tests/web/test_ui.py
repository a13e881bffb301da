"""``asyncflow ui`` as a real server on 127.0.0.1, and runs of other processes going live."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from tests.fixtures import Child, cli
from tests.web.conftest import asgi_client

from asyncflow.web import create_app


def get(url: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def test_ui_refuses_an_address_off_loopback_without_a_token(tmp_path: Path) -> None:
    """``--host 0.0.0.0`` without a token is a usage error, before anything listens."""
    done = cli("ui", "--journal", "j.db", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "--host 0.0.0.0 is reachable from other machines: pass --token" in done.stderr
    assert "ASYNCFLOW_UI_TOKEN" in done.stderr


def test_ui_serves_the_journal_and_checks_the_token(journal: Path, tmp_path: Path) -> None:
    """``asyncflow ui --port 0`` with a token from the environment: 401 without it."""
    child = Child(
        "ui", "--journal", str(journal), "--port", "0", cwd=tmp_path, ASYNCFLOW_UI_TOKEN="tok"
    )
    try:
        serving = child.wait_for("ui.serving")
        url = serving["url"]
        assert url.startswith("http://127.0.0.1:")
        assert serving["token"] is True
        assert get(url)[0] == 401
        status, body = get(url + "api/runs", Authorization="Bearer tok")
        assert status == 200
        assert json.loads(body)["total"] == 1
        status, page = get(url, Authorization="Bearer tok")
        assert status == 200
        assert 'class="run-row"' in page
    finally:
        child.kill()


@pytest.mark.anyio
async def test_a_live_run_of_another_process_shows_up(tmp_path: Path) -> None:
    """A CLI run going on: running on every page, which refreshes; then its end shows."""
    path, gate = tmp_path / "journal.db", tmp_path / "go"
    child = Child("run", "tests.web.pipeline:Gated", "--path", str(gate), "--journal", str(path),
                  cwd=tmp_path)  # fmt: skip
    try:
        await anyio.to_thread.run_sync(child.wait_for, "task.start")
        async with asgi_client(create_app(journal=path)) as client:
            # The child writes the attempt within its journal's flush interval (50 ms).
            with anyio.fail_after(10):
                while (  # noqa: ASYNC110 (polls another process's journal)
                    not (runs := (await client.get("/api/runs")).json()["runs"])
                    or not runs[0]["counts"]
                ):
                    await anyio.sleep(0.02)
            [run] = runs
            assert run["status"] == "running"
            assert run["counts"] == {"running": 1}
            home = (await client.get("/")).text
            assert 's-running">running<' in home
            assert "data-live" in home
            page = (await client.get(f"/runs/{run['run_id']}")).text
            assert "data-live" in page
            assert 's-running">running<' in page and ">Gated_" in page
            gate.touch()
            assert await anyio.to_thread.run_sync(child.finish) == 0
            after = (await client.get(f"/runs/{run['run_id']}")).text
            assert "data-live" not in after
            assert 's-success">success<' in after
            assert (await client.get("/api/runs")).json()["runs"][0]["status"] == "success"
    finally:
        child.kill()
