"""Canaries: secrets in HIDDEN and PRIVATE parameters and in the AWS credentials never leak.

A pipeline (tests/fixtures/secret_tasks.py) reads random canary strings from
the environment into a HIDDEN and a PRIVATE parameter; one task logs them by
accident and fails with an exception quoting its own repr, another writes to S3
(moto on 127.0.0.1) with canary credentials. Then every place asyncflow writes
to is searched for the canaries, byte for byte.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import structlog
import structlog.testing
from tests.fixtures import cli_env
from tests.fixtures.secret_tasks import Pipeline, proof_of
from tests.targets.servers import MotoServer, create_s3_bucket, unique_bucket

import asyncflow
from asyncflow.journal import Journal, format_run, format_runs
from asyncflow.logging import configure_logging, redact_secrets
from asyncflow.targets import S3Config, S3Target

PIPELINE = "tests.fixtures.secret_tasks:Pipeline"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    with MotoServer() as server:
        yield server.url


@pytest.fixture
def canaries() -> dict[str, str]:
    """A fresh random string per secret (hex: no escaping can hide one from a search)."""
    return {
        name: f"canary{secrets.token_hex(12)}"
        for name in (
            "CANARY_HIDDEN",
            "CANARY_PRIVATE",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        )
    }


@pytest.fixture
def secret_env(s3_server: str, canaries: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment of the pipeline: canaries, moto, an output folder and a bucket."""
    bucket = unique_bucket()
    create_s3_bucket(s3_server, bucket)
    (tmp_path / "out").mkdir()
    return {
        **canaries,
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "SECRETS_OUT": str(tmp_path / "out"),
        "SECRETS_BUCKET": bucket,
    }


def leaked(where: dict[str, str | bytes], canaries: dict[str, str]) -> list[str]:
    """``place: CANARY`` for every canary found in one of the places."""
    found = []
    for place, content in where.items():
        data = content.encode() if isinstance(content, str) else content
        found.extend(f"{place}: {n}" for n, c in canaries.items() if c.encode() in data)
    return found


def journal_bytes(path: Path) -> bytes:
    """The journal's file bytes after a checkpoint (and those of a WAL left, if any)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def journal_params(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT params FROM attempts ORDER BY id")]


def s3_object(endpoint: str, bucket: str) -> str:
    """The object Upload wrote (read with other credentials: moto checks none)."""
    config = S3Config(
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    target = S3Target(f"s3://{bucket}/upload.txt", config=config)
    return anyio.run(target.read_text, backend="asyncio")


def asyncflow_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncflow", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_line_never_shows_a_secret(
    tmp_path: Path, secret_env: dict[str, str], canaries: dict[str, str]
) -> None:
    """`asyncflow run` with a journal and JSON logs, then history, show and graph: no canary."""
    journal = tmp_path / "journal.db"
    log = tmp_path / "log.jsonl"
    with log.open("w") as stderr:
        run = subprocess.run(
            [sys.executable, "-m", "asyncflow", "run", PIPELINE, "--journal", str(journal)],
            cwd=tmp_path,
            env=cli_env(**secret_env, ASYNCFLOW_LOG_FORMAT="json"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
        )
    logs = log.read_text()
    assert run.returncode == 1, logs
    # The bodies did read the secrets: one wrote a digest of both, one used the credentials.
    proof = (tmp_path / "out" / "proof").read_text()
    assert proof == proof_of(canaries["CANARY_HIDDEN"], canaries["CANARY_PRIVATE"])
    assert s3_object(secret_env["AWS_ENDPOINT_URL"], secret_env["SECRETS_BUCKET"]) == "uploaded"
    # What was written says what it would have said, masked.
    assert "cannot connect as Connect(user=reader, password=***)" in run.stdout
    assert '"password": "***", "token": "***"' in logs  # the body's accidental log
    assert "dsn user:***@db?token=***" in logs
    params = [json.loads(text) for text in journal_params(journal)]
    assert {"password": "***", "user": "reader"} in params  # Connect's: the PRIVATE one left out
    assert all(p["password"] == "***" and "token" not in p for p in params)
    run_id = run.stdout.split("asyncflow run ", 1)[1].split(" ", 1)[0]
    journal_arg = ("--journal", str(journal))
    views = {
        "history": asyncflow_cli("history", *journal_arg, env=secret_env, cwd=tmp_path),
        "show": asyncflow_cli(
            "show", run_id, "--tracebacks", *journal_arg, env=secret_env, cwd=tmp_path
        ),
        **{
            f"graph {fmt}": asyncflow_cli(
                "graph", PIPELINE, "--format", fmt, env=secret_env, cwd=tmp_path
            )
            for fmt in ("text", "mermaid", "dot")
        },
        "help": asyncflow_cli("run", PIPELINE, "--help", env=secret_env, cwd=tmp_path),
    }
    for name, proc in views.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    assert "RuntimeError: cannot connect as Connect(user=reader, password=***)" in (
        views["show"].stdout
    )
    assert "Traceback of Connect_reader_" in views["show"].stdout
    assert 'label="Connect(user=reader, password=***)"' in views["graph dot"].stdout
    assert "default $CANARY_HIDDEN" in views["help"].stdout
    places: dict[str, str | bytes] = {
        "log file (stderr)": logs,
        "stdout (summary)": run.stdout,
        "journal bytes": journal_bytes(journal),
    }
    for name, proc in views.items():
        places[name] = proc.stdout + proc.stderr
    assert leaked(places, canaries) == []


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """asyncflow's logging set-up writing JSON into a buffer; the process's own set-up
    is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.anyio
async def test_library_run_never_shows_a_secret(
    tmp_path: Path,
    secret_env: dict[str, str],
    canaries: dict[str, str],
    json_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """asyncflow.run() in this process: logs, summary, repr, the journal and its history."""
    for name, value in secret_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    journal = tmp_path / "journal.db"
    result = await asyncflow.run(Pipeline(), journal=journal)
    assert not result.ok
    proof = (tmp_path / "out" / "proof").read_text()
    assert proof == proof_of(canaries["CANARY_HIDDEN"], canaries["CANARY_PRIVATE"])
    logs = json_log.getvalue()
    assert '"password": "***", "token": "***"' in logs
    async with Journal.open(journal) as opened:
        record = await opened.run(result.run_id)
        history = format_runs(await opened.runs())
    assert record is not None
    shown = format_run(record, tracebacks=True)
    assert "cannot connect as Connect(user=reader, password=***)" in shown
    out, err = capfd.readouterr()
    places: dict[str, str | bytes] = {
        "log": logs,
        "summary": result.summary(),
        "repr": repr(result) + "".join(repr(r) for r in result),
        "history": history,
        "show": shown,
        "journal bytes": journal_bytes(journal),
        "stdout": out,
        "stderr": err,
    }
    places["html"] = result._repr_html_() + "".join(r._repr_html_() for r in result)
    assert leaked(places, canaries) == []


class Quoting(asyncflow.Task):
    password = asyncflow.Parameter(visibility=asyncflow.ParameterVisibility.HIDDEN)

    async def run(self) -> None:
        raise ValueError(f"login refused for password {self.password}")


@pytest.mark.anyio
async def test_a_body_quoting_its_secret_in_an_error_is_masked(tmp_path: Path) -> None:
    """User code that puts a hidden value in an exception: masked in the summary, the
    journal and asyncflow's own log records (whatever the application's logging set-up)."""
    canary = f"canary{secrets.token_hex(12)}"
    journal = tmp_path / "journal.db"
    with structlog.testing.capture_logs() as records:
        result = await asyncflow.run(Quoting(password=canary), journal=journal)
    failed = [r for r in records if r["event"] == "task.failed"]
    assert failed[0]["error"] == "ValueError: login refused for password ***"
    assert canary not in repr(records)
    assert "ValueError: login refused for password ***" in result.summary()
    async with Journal.open(journal) as opened:
        record = await opened.run(result.run_id)
    assert record is not None
    assert record.attempts[0].error_message == "login refused for password ***"
    assert canary.encode() not in journal_bytes(journal)
    assert canary not in result.summary()
    html = result._repr_html_() + result[Quoting(password=canary)]._repr_html_()
    assert "login refused for password ***" in html
    assert canary not in html


def test_redaction_processor_masks_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside any run, the processor still masks AWS credentials from the environment."""
    key = f"canary{secrets.token_hex(12)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    line = redact_secrets(None, "info", f'{{"event": "boto", "key": "{key}"}}')
    assert line == '{"event": "boto", "key": "***"}'
    event = redact_secrets(None, "info", {"event": "x", "nested": [{"k": f"a{key}b"}]})
    assert event == {"event": "x", "nested": [{"k": "a***b"}]}
