"""Task bodies on a real Dask cluster: a LocalCluster of two worker processes on 127.0.0.1."""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from distributed import Client, LocalCluster
from tests.fixtures import Child, cli, wait_until
from tests.fixtures.dask_cluster import local_cluster
from tests.fixtures.dask_tasks import (
    AsyncPid,
    Broken,
    Dies,
    Flaky,
    Identified,
    Lingers,
    LingersBriefly,
    Local,
    Locked,
    Logs,
    NeedsGpu,
    NeedsTpu,
    Pid,
    Plain,
    Waits,
    YieldsPid,
    set_resource,
)
from tests.fixtures.race_pipeline import ledger

import asyncflow
from asyncflow import Event, Status, TaskEvent
from asyncflow.config import Config
from asyncflow.dask import DaskExecutor, WorkerLost
from asyncflow.errors import AsyncflowError, ConfigError, TaskError, TaskTimeout
from asyncflow.journal import Journal, format_run
from asyncflow.progress import Progress

pytestmark = [
    pytest.mark.anyio,
    # distributed warns when a worker process it runs is killed and its nanny
    # restarts it (the kill test does that on purpose); a test's own failure
    # still fails it.
    pytest.mark.filterwarnings("ignore:Restarting worker:UserWarning"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes (one thread each), for the whole module."""
    with local_cluster(2) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client of the test's own, to look at the cluster."""
    with Client(cluster, set_as_default=False) as own:
        yield own


def worker_pids(client: Client) -> dict[str, int]:
    """The pid of every worker process, by address."""
    return dict(client.run(os.getpid))


class Listener:
    """Messages from task bodies (``dask_tasks.say``): one line per connection,
    answered when the test says."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(25)
        self.port: int = self._server.getsockname()[1]

    async def next(self, answer: str | None = "go") -> tuple[str, socket.socket]:
        """The next message, and its connection (answered and closed when ``answer``)."""
        conn, _ = await anyio.to_thread.run_sync(self._server.accept, abandon_on_cancel=True)
        line = await anyio.to_thread.run_sync(conn.makefile().readline)
        if answer is not None:
            reply(conn, answer)
        return line.strip(), conn

    def close(self) -> None:
        self._server.close()


def reply(conn: socket.socket, answer: str) -> None:
    with conn:
        conn.sendall(answer.encode() + b"\n")


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    listening = Listener()
    try:
        yield listening
    finally:
        listening.close()


def pid_of(task: Pid) -> int:
    return int(Path(task.path).read_text())


async def test_bodies_run_in_worker_processes(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """Opted-in plain def bodies run in the workers' processes and commit their outputs
    (the executor made from a client of the cluster)."""
    tasks = [Pid(str(tmp_path / f"{i}.txt")) for i in range(4)]
    events: list[TaskEvent] = []
    result = await asyncflow.run(
        tasks, executor=DaskExecutor(client), journal=None, handlers=[events.append]
    )
    assert result.ok, result.summary()
    workers = worker_pids(client)
    assert {pid_of(task) for task in tasks} <= set(workers.values())
    assert os.getpid() not in workers.values()
    placed = {event.task_id: event.where for event in events if event.kind is Event.SUCCESS}
    assert set(placed) == {task.task_id for task in tasks}
    for task in tasks:
        assert workers[placed[task.task_id]] == pid_of(task)  # the event names its worker


async def test_a_body_on_a_worker_writes_as_its_attempt(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The writer identity remote targets tag objects with is the attempt's on a worker too."""
    task = Identified(str(tmp_path / "out"))
    result = await asyncflow.run(task, executor=DaskExecutor(cluster), journal=None)
    assert result.ok, result.summary()
    run_id, task_id, attempt, _token = json.loads(Path(task.path).read_text())
    assert (run_id, task_id, attempt) == (result.run_id, task.task_id, 1)


class Group(asyncflow.WrapperTask):
    def __init__(self, tasks: list[asyncflow.Task]) -> None:
        super().__init__()
        self.tasks = tasks

    def requires(self) -> list[asyncflow.Task]:
        return self.tasks


async def test_which_bodies_go_to_the_cluster(cluster: LocalCluster, tmp_path: Path) -> None:
    """Opted-in plain def bodies go; async bodies, yielding bodies and the rest stay here
    (all_sync sends every plain def body but those saying executor = "local")."""
    here = os.getpid()
    for all_sync in (False, True):
        folder = tmp_path / str(all_sync)
        folder.mkdir()
        pid, plain, local = (
            Pid(str(folder / "p")),
            Plain(str(folder / "n")),
            Local(str(folder / "l")),
        )
        on_loop, yields = AsyncPid(str(folder / "a")), YieldsPid(str(folder / "y"))
        group = Group([pid, plain, local, on_loop, yields])
        events: list[TaskEvent] = []
        result = await asyncflow.run(
            group,
            executor=DaskExecutor(cluster.scheduler_address, all_sync=all_sync),
            journal=None,
            handlers=[events.append],
        )
        assert result.ok, result.summary()
        # A body that does nothing (a wrapper's) is not worth a trip.
        assert [e.where for e in events if e.kind is Event.SUCCESS and e.task == group] == [None]
        assert pid_of(pid) != here
        assert (pid_of(plain) != here) is all_sync
        assert pid_of(local) == here
        assert pid_of(on_loop) == here
        assert pid_of(yields) == here
        assert pid_of(Pid(yields.path + ".child")) != here  # what it yielded went


async def test_a_raising_body_is_retried_and_reported(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A body raising on a worker is a failed attempt: retried, then reported with
    its own exception and the worker's traceback."""
    flaky, broken = Flaky(str(tmp_path / "flaky")), Broken(str(tmp_path / "broken"))
    events: list[TaskEvent] = []
    result = await asyncflow.run(
        flaky, broken, executor=DaskExecutor(cluster), journal=None, handlers=[events.append]
    )
    assert result.status(flaky) is Status.DONE
    assert result[flaky].attempts == 2
    retry = next(e for e in events if e.kind is Event.RETRY)
    assert isinstance(retry.error, ValueError) and "first attempt" in str(retry.error)
    assert retry.where is not None and retry.where.startswith("tcp://127.0.0.1:")
    assert result.status(broken) is Status.FAILED
    error = result.error(broken)
    assert isinstance(error, ValueError)
    assert f"in process {os.getpid()}" not in str(error)  # it came from a worker
    text = "".join(traceback.format_exception(error))
    assert "dask_tasks.py" in text and 'raise ValueError(f"broken in process' in text


async def test_the_journal_records_the_worker_of_each_attempt(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Each attempt's journal record names the worker its body ran on (none for a body
    run in the run's process); `asyncflow show` lists them."""
    flaky, local = Flaky(str(tmp_path / "flaky")), Local(str(tmp_path / "local"))
    events: list[TaskEvent] = []
    path = tmp_path / "journal.db"
    result = await asyncflow.run(
        flaky, local, executor=DaskExecutor(cluster), journal=path, handlers=[events.append]
    )
    assert result.ok, result.summary()
    async with Journal.open(path) as journal:
        run = await journal.run(result.run_id)
    assert run is not None
    ended = {
        (e.task_id, e.attempt): e.where for e in events if e.kind in (Event.SUCCESS, Event.RETRY)
    }
    recorded = {(a.task_id, a.attempt): a.worker for a in run.attempts}
    assert recorded == ended
    assert recorded[(local.task_id, 1)] is None
    workers = {recorded[(flaky.task_id, 1)], recorded[(flaky.task_id, 2)]}
    assert all(w is not None and w.startswith("tcp://127.0.0.1:") for w in workers)
    shown = format_run(run)
    assert "WORKER" in shown and all(str(w) in shown for w in workers)
    # The status pages and their JSON API name them too.
    from asyncflow.web import create_app

    transport = httpx.ASGITransport(app=create_app(journal=path))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
        task_page = (await web.get(f"/tasks/{flaky.task_id}")).text
        run_page = (await web.get(f"/runs/{result.run_id}")).text
        api = (await web.get(f"/api/tasks/{flaky.task_id}")).json()
    assert "<th>Worker</th>" in task_page and all(str(w) in task_page for w in workers)
    assert "<th>Worker</th>" in run_page and recorded[(flaky.task_id, 2)] in run_page
    assert {a["attempt"]: a["worker"] for a in api["attempts"]} == {
        1: recorded[(flaky.task_id, 1)],
        2: recorded[(flaky.task_id, 2)],
    }


def test_an_attempt_ending_after_its_run_lost_the_lease_is_not_taken(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """A run stalled longer than its lease while its body ran on a worker: once it wakes
    up it does not take the attempt's outcome as its own, but the run that took the task
    over's success."""

    def started_by(pids: set[int]) -> bool:
        starts = [line for line in ledger(tmp_path) if line[:2] == ["start", "gated"]]
        return any(int(line[2]) in pids for line in starts)

    def gated(*more: str) -> Child:
        journal = str(tmp_path / "journal.db")
        return Child(
            "run",
            "tests.fixtures.race_pipeline:Gated",
            "--folder",
            str(tmp_path),
            "--journal",
            journal,
            *more,
            cwd=tmp_path,
            ASYNCFLOW_LEASE_TTL="1.5",
        )

    first = gated("--dask-scheduler", cluster.scheduler_address, "--dask-all-sync")
    second = None
    try:
        wait_until(lambda: started_by(set(worker_pids(client).values())), "Gated on a worker")
        os.kill(first.pid, signal.SIGSTOP)
        second = gated()
        wait_until(lambda: started_by({second.pid}), "the takeover")
        (tmp_path / "go").touch()
        assert second.finish() == 0, second.output
        os.kill(first.pid, signal.SIGCONT)
        assert first.finish() == 0, first.output
        lost = first.wait_for("task.lease_lost")
        done_elsewhere = first.wait_for("task.done_elsewhere")
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert lost["task_id"] == done_elsewhere["task_id"]
    assert not first.logs("task.done")


async def test_timeout_cancels_the_dask_task_and_its_late_writes(
    cluster: LocalCluster, tmp_path: Path, listener: Listener
) -> None:
    """A timeout fails the attempt at once; the body, which goes on on its worker,
    has its later writes refused."""
    task = LingersBriefly(str(tmp_path / "out"), listener.port)
    started = time.monotonic()
    result = await asyncflow.run(task, executor=DaskExecutor(cluster), journal=None)
    assert time.monotonic() - started < 10
    assert result.status(task) is Status.FAILED
    assert isinstance(result.error(task), TaskTimeout)
    assert (await listener.next())[0] == "started"
    assert (await listener.next())[0] == "refused"


class FailsOnceLingersStarted(asyncflow.Task):
    """Fails (here, on the loop) once the lingering body said it started."""

    def __init__(self, listener: Listener) -> None:
        super().__init__()
        self.listener = listener

    async def run(self) -> None:
        message, _ = await self.listener.next()
        assert message == "started"
        raise ValueError("failing fast")


async def test_fail_fast_cancels_running_bodies(
    cluster: LocalCluster, tmp_path: Path, listener: Listener
) -> None:
    """keep_going=False: a failure cancels the Dask task of a running body."""
    lingers = Lingers(str(tmp_path / "out"), listener.port)
    fails = FailsOnceLingersStarted(listener)
    result = await asyncflow.run(
        lingers, fails, executor=DaskExecutor(cluster), journal=None, keep_going=False
    )
    assert result.status(fails) is Status.FAILED
    assert result.status(lingers) is Status.CANCELLED
    assert (await listener.next())[0] == "refused"
    assert not Path(lingers.path).exists()


async def test_cancelling_the_run_cancels_running_bodies(
    cluster: LocalCluster, tmp_path: Path, listener: Listener
) -> None:
    """A run cancelled from outside cancels the Dask task of a running body."""
    lingers = Lingers(str(tmp_path / "out"), listener.port)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_started() -> None:
                message, _ = await listener.next()
                assert message == "started"
                scope.cancel()

            tg.start_soon(cancel_once_started)
            await asyncflow.run(lingers, executor=DaskExecutor(cluster), journal=None)
    assert scope.cancelled_caught
    assert (await listener.next())[0] == "refused"


class _DaskFuture:
    """What an attempt asks of a Dask future before it ends."""

    def add_done_callback(self, callback: Any) -> None:
        pass


async def test_a_lost_attempt_stays_where_its_worker_died() -> None:
    """Once the scheduler says the worker running an attempt is gone, Dask may start
    the same key on another worker before the attempt has failed here: the attempt
    (its RETRY event, its WorkerLost) still names the worker that died."""
    import asyncio

    from asyncflow.dask import _Attempt, _DaskBodies
    from asyncflow.graph import Node

    bodies = _DaskBodies(None, None, "run", {})  # type: ignore[arg-type]
    node = Node(Dies("out"), 0)
    attempt = _Attempt(node, _DaskFuture(), asyncio.get_running_loop())
    bodies._running["key"] = attempt
    bodies._on_started((0.0, {"key": "key", "worker": "tcp://127.0.0.1:1"}))
    assert node.where == "tcp://127.0.0.1:1"
    gone = {"action": "remove-worker", "worker": "tcp://127.0.0.1:1", "processing-tasks": ["key"]}
    bodies._on_cluster_event((0.0, gone))
    bodies._on_started((0.0, {"key": "key", "worker": "tcp://127.0.0.1:2"}))  # rescheduled
    assert attempt.lost is not None and attempt.lost.worker == "tcp://127.0.0.1:1"
    assert node.where == "tcp://127.0.0.1:1"  # tcp://127.0.0.1:2 on the old code


async def test_a_worker_killed_mid_task_is_a_failed_attempt_retried_elsewhere(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """A worker process dying in a body fails the attempt (WorkerLost); asyncflow's
    retry runs on a live worker and succeeds."""
    task = Dies(str(tmp_path / "out"))
    events: list[TaskEvent] = []
    result = await asyncflow.run(
        task, executor=DaskExecutor(cluster), journal=None, handlers=[events.append]
    )
    assert result.ok, result.summary()
    assert result[task].attempts == 2
    retry = next(e for e in events if e.kind is Event.RETRY)
    assert isinstance(retry.error, WorkerLost)
    assert retry.where == retry.error.worker
    done = next(e for e in events if e.kind is Event.SUCCESS)
    assert done.where != retry.where
    assert pid_of(task) != os.getpid()


async def test_worker_resources_place_tasks(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """A task's resources are Dask worker resources: tasks needing GPU=1 land only on
    the worker that has a GPU."""
    # Both workers up (the kill test's nanny may still be restarting one): with one,
    # every task would land on it anyway.
    await anyio.to_thread.run_sync(functools.partial(client.wait_for_workers, 2, timeout=20))
    workers = sorted(worker_pids(client))
    assert len(workers) == 2
    gpu = workers[0]
    client.run(set_resource, "GPU", 1, workers=[gpu])
    try:
        tasks = [NeedsGpu(str(tmp_path / f"{i}")) for i in range(6)]
        events: list[TaskEvent] = []
        result = await asyncflow.run(
            tasks,
            workers=4,
            resources={"GPU": 4},
            executor=DaskExecutor(cluster),
            journal=None,
            handlers=[events.append],
        )
    finally:
        client.run(set_resource, "GPU", 0, workers=[gpu])
    assert result.ok, result.summary()
    assert {e.where for e in events if e.kind is Event.SUCCESS} == {gpu}


async def test_a_resource_no_worker_has_is_refused_before_anything_runs(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A task asking for a worker resource no worker has is an error naming it, before
    anything runs; left out of worker_resources, it is the run's own pool only."""
    needs, other = NeedsTpu(str(tmp_path / "tpu")), Pid(str(tmp_path / "other"))
    with pytest.raises(TaskError, match=r"NeedsTpu_.*TPU.*no worker") as caught:
        await asyncflow.run(needs, other, executor=DaskExecutor(cluster), journal=None)
    assert caught.value.task_id == needs.task_id
    assert not Path(other.path).exists()
    result = await asyncflow.run(
        needs, other, executor=DaskExecutor(cluster, worker_resources=["GPU"]), journal=None
    )
    assert result.ok, result.summary()


async def test_an_unpicklable_task_is_refused_before_anything_runs(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A task bound for the cluster that does not pickle stops the run before anything
    runs, with an error naming it."""
    locked, other = Locked(str(tmp_path / "locked")), Pid(str(tmp_path / "other"))
    with pytest.raises(TaskError, match=r"Locked_.*does not pickle.*lock") as caught:
        await asyncflow.run(other, locked, executor=DaskExecutor(cluster), journal=None)
    assert caught.value.task_id == locked.task_id
    assert not Path(other.path).exists()


async def test_body_logs_carry_the_run_and_task_ids(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """A stdlib record logged by a body on a worker carries run_id and task_id
    (seen here through Dask's log forwarding)."""
    received: list[logging.LogRecord] = []
    arrived = threading.Event()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            received.append(record)
            arrived.set()

    handler = Keep()
    body_logger = logging.getLogger("tests.dask.body")
    body_logger.addHandler(handler)
    client.forward_logging("tests.dask.body")
    try:
        task = Logs(str(tmp_path / "out"))
        result = await asyncflow.run(task, executor=DaskExecutor(cluster), journal=None)
        assert result.ok, result.summary()
        assert await anyio.to_thread.run_sync(arrived.wait, 20)
    finally:
        client.unforward_logging("tests.dask.body")
        body_logger.removeHandler(handler)
    record: Any = received[0]
    assert record.getMessage() == "hello from the body"
    assert (record.run_id, record.task_id) == (result.run_id, task.task_id)
    assert record.worker in worker_pids(client)  # Dask's own: it came from a worker


class Sink(io.StringIO):
    """A terminal-like stream that tells when ``wanted`` was drawn."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted = wanted
        self.seen = anyio.Event()

    def write(self, text: str) -> int:
        if self.wanted in text:
            self.seen.set()
        return super().write(text)


async def test_the_progress_display_shows_where_tasks_run(
    cluster: LocalCluster, tmp_path: Path, listener: Listener
) -> None:
    """The live display names the worker a running body runs on."""
    task = Waits(str(tmp_path / "out"), listener.port)
    sink = Sink(" on tcp://127.0.0.1:")
    events: list[TaskEvent] = []

    async def release_once_drawn() -> None:
        message, conn = await listener.next(answer=None)
        assert message == "waiting"
        with anyio.fail_after(20):
            await sink.seen.wait()
        reply(conn, "go")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_once_drawn)
        result = await asyncflow.run(
            task,
            executor=DaskExecutor(cluster),
            journal=None,
            progress=Progress(sink, mode="live", interval=0.02),
            handlers=[events.append],
        )
    assert result.ok, result.summary()
    where = next(e.where for e in events if e.kind is Event.SUCCESS)
    assert f"running: {task!r} on {where}" in sink.getvalue()


def test_the_command_line_sends_bodies_to_the_scheduler(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """`asyncflow run ... --dask-scheduler ADDRESS` runs opted-in bodies on the cluster."""
    task = Pid(str(tmp_path / "out"))
    proc = cli(
        "run",
        "tests.fixtures.dask_tasks:Pid",
        "--path",
        task.path,
        "--dask-scheduler",
        cluster.scheduler_address,
        "--no-journal",
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert pid_of(task) in worker_pids(client).values()


async def test_the_configuration_sends_bodies_to_the_scheduler(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """ASYNCFLOW_DASK_SCHEDULER (with ASYNCFLOW_DASK_ALL_SYNC: every sync body) sends
    bodies to the cluster without an executor argument."""
    environ = {
        "ASYNCFLOW_DASK_SCHEDULER": cluster.scheduler_address,
        "ASYNCFLOW_DASK_ALL_SYNC": "true",
    }
    config = Config.load(tmp_path, environ=environ)
    task = Plain(str(tmp_path / "out"))
    result = await asyncflow.run(task, config=config, journal=None)
    assert result.ok, result.summary()
    assert pid_of(task) in worker_pids(client).values()


def test_importing_asyncflow_does_not_import_distributed() -> None:
    """Without a Dask executor nothing changes: asyncflow, its runner and CLI import no Dask."""
    code = (
        "import sys, asyncflow, asyncflow.cli, asyncflow.runner;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


class SaysGpu(Pid):
    executor = "gpu"


async def test_bad_executor_settings_are_refused_naming_them(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """What is not an executor backend, a cluster or an executor choice is an error
    naming it; so is a scheduler that cannot be reached."""
    task = Pid(str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="executor must be an executor backend"):
        await asyncflow.run(task, executor=cluster.scheduler_address, journal=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"DaskExecutor takes a distributed\.Client"):
        DaskExecutor(42)
    with pytest.raises(ConfigError, match=r"SaysGpu: executor = 'gpu': expected 'dask'"):
        await asyncflow.run(
            SaysGpu(str(tmp_path / "gpu")), executor=DaskExecutor(cluster), journal=None
        )
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(
        AsyncflowError, match=f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        await asyncflow.run(
            task, executor=DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=1), journal=None
        )
    assert time.monotonic() - started < 10
    assert not Path(task.path).exists()
