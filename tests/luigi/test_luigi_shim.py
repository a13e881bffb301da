"""asyncflow.luigi in-process: what the differential tests cannot show."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import asyncflow
import asyncflow.luigi as luigi
from asyncflow.luigi import configuration
from asyncflow.luigi.contrib.gcs import GCSClient, GCSTarget
from asyncflow.luigi.contrib.s3 import S3Client, S3Target
from targets.servers import (
    FakeGCSServer,
    MotoServer,
    create_gcs_bucket,
    create_s3_bucket,
    unique_bucket,
)


@pytest.fixture(autouse=True)
def _fresh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own folder, with the configuration read afresh."""
    monkeypatch.chdir(tmp_path)
    for name in ("LUIGI_CONFIG_PATH", "LUIGI_CONFIG_PARSER"):
        monkeypatch.delenv(name, raising=False)
    for parser in (configuration.LuigiConfigParser, configuration.LuigiTomlParser):
        monkeypatch.setattr(parser, "_instance", None)
        monkeypatch.setattr(parser, "_added_paths", [])
    monkeypatch.setattr(configuration, "_env_path_added", set())


def test_import_asyncflow_does_not_import_the_shim() -> None:
    """``import asyncflow`` stays light: the Luigi layer loads only when asked for."""
    code = "import sys, asyncflow; print('asyncflow.luigi' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_luigi_toml_gives_parameter_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """With LUIGI_CONFIG_PARSER=toml, ``[Family]`` tables of luigi.toml give defaults."""
    Path("luigi.toml").write_text('[TomlTask]\ncount = 7\nlabel = "from-toml"\n')
    monkeypatch.setenv("LUIGI_CONFIG_PARSER", "toml")

    class TomlTask(luigi.Task):
        count = luigi.IntParameter(default=1)
        label = luigi.Parameter()

    task = TomlTask()
    assert (task.count, task.label) == (7, "from-toml")
    assert configuration.get_config().get("TomlTask", "count") == 7


def test_config_path_file_and_environment_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """LUIGI_CONFIG_PATH names the file; ``${VAR}`` in a value reads the environment."""
    Path("elsewhere.cfg").write_text("[EnvTask]\nwhere = ${PLACE}/data\n")
    monkeypatch.setenv("LUIGI_CONFIG_PATH", "elsewhere.cfg")
    monkeypatch.setenv("PLACE", "/srv")

    class EnvTask(luigi.Task):
        where = luigi.Parameter()

    assert EnvTask().where == "/srv/data"


def test_open_without_with_publishes_on_close_only() -> None:
    """A file opened for writing appears at close(); dropped or failed, never."""
    target = luigi.LocalTarget("out/a.txt")
    out = target.open("w")
    out.write("one\n")
    assert not target.exists()
    out.close()
    with target.open("r") as lines:
        assert list(lines) == ["one\n"]
    failing = target.open("w")
    failing.write("two\n")
    failing.__exit__(ValueError, ValueError("stop"), None)
    dropped = luigi.LocalTarget("out/b.txt").open("w")
    dropped.write("never\n")
    del dropped
    with target.open("r") as reread:
        assert reread.read() == "one\n"
    assert sorted(os.listdir("out")) == ["a.txt"]


@pytest.mark.anyio
async def test_exists_and_complete_are_awaitable_in_coroutines() -> None:
    """In a coroutine the sync methods answer with awaitables; in a thread, with bools."""
    Path("there.txt").write_text("x")

    class There(luigi.Task):
        def output(self):
            return luigi.LocalTarget("there.txt")

    class Custom(luigi.Task):
        def complete(self):
            return There().complete() and luigi.LocalTarget("there.txt").exists()

    assert await luigi.LocalTarget("there.txt").exists() is True
    assert await There().complete() is True
    assert await Custom().complete() is True
    import anyio.to_thread

    assert await anyio.to_thread.run_sync(lambda: Custom().complete()) is True


@pytest.mark.anyio
async def test_requires_may_ask_complete_while_the_engine_expands() -> None:
    """Luigi code that calls ``complete()`` inside ``requires()`` gets a bool there."""
    Path("flag.txt").write_text("on")

    class Flag(luigi.ExternalTask):
        def output(self):
            return luigi.LocalTarget("flag.txt")

    class Branch(luigi.Task):
        which = luigi.Parameter()

        def output(self):
            return luigi.LocalTarget(f"branch-{self.which}.txt")

        def run(self):
            with self.output().open("w") as out:
                out.write(self.which)

    class Chooser(luigi.WrapperTask):
        def requires(self):
            return Branch("on" if Flag().complete() else "off")

    result = await asyncflow.run(Chooser(), journal=None)
    assert result.ok
    assert sorted(p.name for p in Path().glob("branch-*")) == ["branch-on.txt"]


def test_build_inside_a_running_event_loop() -> None:
    """As in a notebook: ``luigi.build()`` works while this thread runs an event loop."""
    import anyio

    class Note(luigi.Task):
        def output(self):
            return luigi.LocalTarget("note.txt")

        def run(self):
            with self.output().open("w") as out:
                out.write("noted")

    async def cell() -> bool:
        return bool(luigi.build([Note()], local_scheduler=True))

    assert anyio.run(cell)
    assert Path("note.txt").read_text() == "noted"


def test_worker_timeout_is_the_engine_timeout() -> None:
    """``worker_timeout`` stops an attempt that runs too long."""
    release = threading.Event()

    class Slow(luigi.Task):
        worker_timeout = 0.2

        def run(self):
            release.wait(10)

    try:
        outcome = luigi.build([Slow()], local_scheduler=True, detailed_summary=True)
    finally:
        release.set()
    assert Slow.timeout == 0.2
    assert outcome.status is luigi.LuigiStatusCode.FAILED
    assert isinstance(outcome.result.error(Slow()), asyncflow.TaskTimeout)


def test_status_message_progress_and_tracking_url_are_recorded() -> None:
    """The three progress calls are kept on the task and logged as events."""

    class Reporting(luigi.Task):
        def run(self):
            self.set_tracking_url("http://127.0.0.1/job/1")
            self.set_status_message("halfway")
            self.set_progress_percentage(50)

    task = Reporting()
    with structlog.testing.capture_logs() as logs:
        task.run()
    assert (task.status_message, task.progress_percentage) == ("halfway", 50)
    kinds = [entry["event"] for entry in logs]
    assert kinds == ["task.tracking_url", "task.status_message", "task.progress"]


def test_status_calls_in_a_build_reach_the_journal(tmp_path: Path) -> None:
    """In a build, the three calls are the engine's: journaled with the attempt
    (last values), from a sync run() in its worker thread; a bad percentage names the task."""
    import sqlite3

    class Reporting(luigi.Task):
        def run(self):
            self.set_tracking_url("http://127.0.0.1/job/1")
            for done in range(0, 101, 25):
                self.set_status_message(f"{done} of 100")
                self.set_progress_percentage(done)

    class Overdone(luigi.Task):
        def run(self):
            self.set_progress_percentage(101)

    journal = tmp_path / "journal.db"
    assert luigi.build([Reporting()], local_scheduler=True, journal=str(journal))
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = db.execute(
            "SELECT family, status_message, progress_percentage, tracking_url FROM attempts"
        ).fetchall()
    assert rows == [("Reporting", "100 of 100", 100.0, "http://127.0.0.1/job/1")]
    outcome = luigi.build([Overdone()], local_scheduler=True, detailed_summary=True)
    error = outcome.result.error(Overdone())
    assert isinstance(error, ValueError)
    assert f"{Overdone().task_id}: progress percentage must be from 0 to 100" in str(error)


def test_build_rejects_unknown_settings() -> None:
    """A misspelt build() option is an error naming it, not silently ignored."""
    with pytest.raises(luigi.parameter.UnknownParameterException, match="worker"):
        luigi.build([], local_scheduler=True, worker=2)


def test_ids_are_asyncflow_ids_and_stable() -> None:
    """Task ids keep asyncflow's form (documented): family, summary, hash."""

    class Dated(luigi.Task):
        day = luigi.DateParameter()

    task = Dated("2026-11-23")
    assert task.task_id.startswith("Dated_2026-11-23_")
    assert Dated.from_str_params(task.to_str_params()).task_id == task.task_id


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with MotoServer() as server:
        yield server.url


def test_s3_target_from_sync_code_and_in_a_build(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3Target takes Luigi's arguments and works from a script and in a task."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    bucket = unique_bucket()
    create_s3_bucket(moto, bucket)
    client = S3Client("testing", "testing", endpoint_url=moto, region_name="us-east-1")
    source = S3Target(f"s3://{bucket}/in.txt", client=client)
    assert not source.exists()
    out = source.open("w")
    out.write("from a script\n")
    out.close()
    assert source.exists()

    class Upper(luigi.Task):
        def output(self):
            return S3Target(f"s3://{bucket}/out.txt", client=client)

        def run(self):
            with source.open("r") as src, self.output().open("w") as dst:
                dst.write(src.read().upper())

    assert luigi.build([Upper()], local_scheduler=True)
    assert client.get_as_string(f"s3://{bucket}/out.txt") == "FROM A SCRIPT\n"


@pytest.fixture(scope="module")
def fake_gcs() -> Iterator[str]:
    with FakeGCSServer() as server:
        yield server.url


def test_gcs_target_from_sync_code_and_in_a_build(
    fake_gcs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCSTarget takes Luigi's arguments and works from a script and in a pipeline."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    bucket = unique_bucket()
    create_gcs_bucket(fake_gcs, bucket)
    client = GCSClient()
    source = GCSTarget(f"gs://{bucket}/in/words.txt", format=luigi.format.UTF8, client=client)
    assert not source.exists()
    out = source.open("w")
    out.write("gamma\nalpha\nbeta\n")
    out.close()
    assert source.exists()
    assert client.exists(f"gs://{bucket}/in/words.txt")

    class Words(luigi.ExternalTask):
        def output(self):
            return GCSTarget(f"gs://{bucket}/in/words.txt", client=client)

    class Sort(luigi.Task):
        def requires(self):
            return Words()

        def output(self):
            return GCSTarget(f"gs://{bucket}/out/sorted.txt", client=client)

        def run(self):
            with self.input().open("r") as src:
                words = sorted(line.strip() for line in src)
            with self.output().open("w") as dst:
                dst.write("\n".join(words) + "\n")

    class Count(luigi.Task):
        def requires(self):
            return Sort()

        def output(self):
            return GCSTarget(f"gs://{bucket}/out/count.txt", client=client)

        def run(self):
            with self.input().open("r") as src:
                lines = list(src)
            with self.output().open("w") as dst:
                dst.write(f"{len(lines)} {lines[0].strip()}\n")

    assert luigi.build([Count()], local_scheduler=True)
    with GCSTarget(f"gs://{bucket}/out/sorted.txt", client=client).open("r") as file:
        assert file.read() == "alpha\nbeta\ngamma\n"
    with client.download(f"gs://{bucket}/out/count.txt") as file:
        assert file.read() == b"3 alpha\n"
    client.remove(f"gs://{bucket}/in/words.txt")
    assert not source.exists()
    # Complete now: a second build runs nothing, though the input is gone.
    outcome = luigi.build([Count()], local_scheduler=True, detailed_summary=True)
    assert outcome.status is luigi.LuigiStatusCode.SUCCESS
    assert outcome.result.status(Count()) is asyncflow.Status.ALREADY_COMPLETE


def test_journal_setting_turns_the_journal_off() -> None:
    """``journal="none"`` (or ``[core] journal = none``) keeps no run journal."""

    class Quiet(luigi.Task):
        def output(self):
            return luigi.LocalTarget("quiet.txt")

        def run(self):
            with self.output().open("w") as out:
                out.write("q")

    assert luigi.build([Quiet()], local_scheduler=True, journal="none")
    assert Path("quiet.txt").exists()
    assert not Path(".asyncflow").exists()
