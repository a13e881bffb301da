"""Hostile input is bounded: a clear error naming the task, parameter, setting or path.

Parameter parsing in general is fuzzed in test_parameters_fuzz.py; this file
covers what surrounds it: tasks built from hostile values, task classes whose
``__init__`` skips ``Task.__init__``, absurd numbers given to ``run()`` and the
retry policy, and disks that fill up under a write.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asyncflow
from asyncflow import ConfigError, LocalTarget, ParameterError, RetryPolicy, Status
from asyncflow.errors import TargetError, TaskDefinitionError

# --- tasks whose __init__ skips Task.__init__ ------------------------------------


class SkipsInit(asyncflow.Task):
    size = asyncflow.IntParameter(default=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.extra = "set up without super().__init__()"


class GoodInit(asyncflow.Task):
    size = asyncflow.IntParameter(default=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra = "fine"


class SubclassSkipsInit(GoodInit):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.extra = "forgot"


class NeedsSkipsInit(asyncflow.Task):
    def requires(self) -> asyncflow.Task:
        return SkipsInit()


SKIPPED = r"\.__init__ did not call super\(\)\.__init__\(\)"


def test_init_that_skips_task_init_is_named_where_the_task_is_built() -> None:
    """Building the task raises TaskDefinitionError naming the class, not an
    AttributeError later from inside the engine."""
    with pytest.raises(TaskDefinitionError, match=f"SkipsInit{SKIPPED}"):
        SkipsInit()


def test_subclass_whose_init_skips_its_parents_is_the_one_named() -> None:
    """The class whose own __init__ skipped the chain is named, not its parent."""
    assert GoodInit(size=3).extra == "fine"
    with pytest.raises(TaskDefinitionError, match=f"SubclassSkipsInit{SKIPPED}"):
        SubclassSkipsInit()


def test_requirement_with_a_skipping_init_fails_the_task_that_requires_it() -> None:
    """In requires(), the mistake fails the requiring task, with the class named."""
    result = asyncflow.build(NeedsSkipsInit(), journal=None)
    assert result.status(NeedsSkipsInit()) is Status.FAILED
    error = result.error(NeedsSkipsInit())
    assert error is not None
    assert f"SkipsInit{SKIPPED}".replace("\\", "") in str(error)


def test_task_never_set_up_names_its_class_when_used() -> None:
    """A task made without __init__ (Task.__new__) raises naming its class when its
    id or parameters are needed, or when it is run; its repr says what is wrong."""
    bare = SkipsInit.__new__(SkipsInit)
    with pytest.raises(TaskDefinitionError, match=f"SkipsInit{SKIPPED}"):
        _ = bare.task_id
    with pytest.raises(TaskDefinitionError, match=f"SkipsInit{SKIPPED}"):
        _ = bare.param_kwargs
    with pytest.raises(TaskDefinitionError, match=f"SkipsInit{SKIPPED}"):
        asyncflow.build(bare, journal=None)
    assert "SkipsInit.__init__ did not call super().__init__()" in repr(bare)


# --- tasks built from hostile values ----------------------------------------------


class Named(asyncflow.Task):
    name = asyncflow.Parameter()
    count = asyncflow.IntParameter(default=0)
    items = asyncflow.ListParameter(default=())
    secret = asyncflow.ListParameter(default=(), visibility=asyncflow.ParameterVisibility.HIDDEN)


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _self_containing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"name": "\ud800"}, r"parameter 'name': .*lone surrogate '\\ud800' at index 0"),
        ({"name": "ok", "count": 10**5000}, "parameter 'count': expected an int of at most 4,300"),
        ({"name": "ok", "items": ["a\udfff"]}, r"parameter 'items': element \[0\]: .*surrogate"),
        (
            {"name": "ok", "items": _nested_list(5_000)},
            r"parameter 'items': element (\[0\]){5}\.\.\.\(94 more\)\.\.\.\[0\]: "
            "nested more than 100 levels deep",
        ),
        (
            {"name": "ok", "items": _self_containing()},
            r"parameter 'items': element \[1\]\[1\].*: .*does a list or dict contain itself",
        ),
    ],
)
def test_hostile_values_are_refused_naming_task_and_parameter(
    values: dict[str, Any], message: str
) -> None:
    """A value that has no JSON or UTF-8 form is a ParameterError naming the task
    and the parameter when the task is built, not an error when its id is made."""
    with pytest.raises(ParameterError, match=f"^Named: {message}"):
        _ = Named(**values).task_id


def test_hidden_value_is_not_quoted_when_refused() -> None:
    """A refused hidden value stays out of the message."""
    with pytest.raises(ParameterError) as info:
        Named(name="ok", secret=["hunter2\ud800"])
    assert "hunter2" not in str(info.value)
    assert "Named: parameter 'secret'" in str(info.value)


def test_parse_of_a_declared_parameter_names_it() -> None:
    """A declared parameter's own parse() names Class.parameter in its error."""
    with pytest.raises(ParameterError, match=r"^Named\.count: expected an integer like 42"):
        Named.count.parse("lots")


def test_long_values_are_quoted_short() -> None:
    """An error quotes the start of a long text and says how long it was."""
    with pytest.raises(ParameterError) as info:
        Named.from_str_params({"name": "n", "count": "x" * 100_000})
    assert len(str(info.value)) < 300
    assert "100,000 characters" in str(info.value)


# --- absurd numbers given to run() and to the retry policy ------------------------


class Leaf(asyncflow.Task):
    def run(self) -> None:
        pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 10**6}, "workers must be a positive integer of at most 10,000"),
        ({"probe_concurrency": 0}, "probe_concurrency must be a positive integer"),
        ({"probe_concurrency": 10**9}, "probe_concurrency must be .* of at most 10,000, got"),
        ({"resources": {"gpu": math.inf}}, r"resources\['gpu'\] must be a non-negative number"),
        ({"resources": {"gpu": 1e300}}, r"at most 10\*\*15\), got 1e\+300"),
        ({"journal": "journal\x00.db"}, "journal must be a path, got .* NUL"),
    ],
)
def test_absurd_run_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    """run() refuses absurd numbers with a ConfigError naming the argument."""
    with pytest.raises(ConfigError, match=message):
        asyncflow.build(Leaf(), **kwargs)


def test_absurd_config_object_is_refused() -> None:
    """A Config built in code is checked like the file and the variables."""
    with pytest.raises(ConfigError, match=r"Config\.lease_ttl must be from 1 to 86400 seconds"):
        asyncflow.Config(lease_ttl=1e-9)
    with pytest.raises(ConfigError, match=r"Config\.workers must be a positive integer"):
        asyncflow.Config(workers=0)
    with pytest.raises(ConfigError, match=r"Config.resources\['gpu'\]"):
        asyncflow.Config(resources={"gpu": math.inf})
    with pytest.raises(ConfigError, match=r"Config.max_running\['Leaf'\]"):
        asyncflow.Config(max_running={"Leaf": 0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": math.nan}, "RetryPolicy.delay must be a non-negative number"),
        ({"max_delay": math.inf}, "RetryPolicy.max_delay must be a non-negative number"),
        ({"backoff": math.inf}, r"RetryPolicy.backoff must be >= 1 \(and at most 1000\)"),
        ({"backoff": math.nan}, "RetryPolicy.backoff must be >= 1"),
        ({"count": 2.5}, "RetryPolicy.count must be an int >= 0"),
    ],
)
def test_absurd_retry_policy_is_refused(kwargs: dict[str, Any], message: str) -> None:
    """RetryPolicy refuses NaN, infinity and fractional counts with a ConfigError."""
    with pytest.raises(ConfigError, match=message):
        RetryPolicy(**kwargs)


def test_retry_delay_after_thousands_of_attempts_is_the_cap() -> None:
    """Exponential backoff past float's range waits max_delay instead of overflowing."""
    policy = RetryPolicy(count=10_000, delay=1, max_delay=60)
    assert policy.delay_for(5_000) == 60
    assert RetryPolicy(count=10_000, delay=0).delay_for(5_000) == 0


def test_nan_retry_backoff_is_refused_when_the_class_is_defined() -> None:
    """A NaN (or infinite) retry_backoff fails when the class is defined."""
    for backoff in (math.nan, math.inf):
        with pytest.raises(TypeError, match=r"Bad\.retry_backoff must be >= 1"):
            type("Bad", (asyncflow.Task,), {"retry_backoff": backoff})
    with pytest.raises(TypeError, match=r"Bad\.timeout must be a non-negative number"):
        type("Bad", (asyncflow.Task,), {"timeout": math.inf})


# --- paths and full disks ----------------------------------------------------------


def test_path_with_nul_is_refused_when_the_target_is_built() -> None:
    """A NUL character in a path is a TargetError naming the path."""
    with pytest.raises(TargetError, match=r"'out\\x00.csv' is not a valid path"):
        LocalTarget("out\x00.csv")


def _can_mount() -> str | None:
    """Why a tmpfs cannot be mounted here, or None if it can be tried."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount command"
    return None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real disk that fills up (ENOSPC). Skipped where mounting
    is not permitted; the errors' paths are covered without it by a file size limit."""
    reason = _can_mount()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.anyio
async def test_full_disk_error_names_the_target(small_disk: Path) -> None:
    """A write that fills the disk is a TargetError naming the target's path, and
    leaves nothing behind."""
    target = LocalTarget(small_disk / "out" / "big.bin")
    with pytest.raises(TargetError) as info:
        await target.write_bytes(b"x" * 1_000_000)
    assert str(info.value) == f"cannot write {target.path}: No space left on device (ENOSPC)"
    assert isinstance(info.value.__cause__, OSError)
    assert os.listdir(small_disk / "out") == []
    assert not await target.exists()


class FillsTheDisk(asyncflow.Task):
    folder = asyncflow.Parameter()

    def output(self) -> LocalTarget:
        return LocalTarget(Path(self.folder) / "report.txt")

    def run(self) -> None:
        with self.output().open("w") as file:
            for _ in range(100):
                file.write("y" * 10_000)


def test_task_that_fills_the_disk_fails_naming_its_output(small_disk: Path) -> None:
    """In a run, the failure of a task whose write filled the disk names the file."""
    task = FillsTheDisk(folder=str(small_disk))
    result = asyncflow.build(task, journal=None)
    assert result.status(task) is Status.FAILED
    assert f"cannot write {small_disk / 'report.txt'}: No space left on device" in str(
        result.error(task)
    )


_FILE_SIZE_LIMIT_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import anyio
    from asyncflow import LocalTarget

    # Past RLIMIT_FSIZE a write fails with EFBIG (once SIGXFSZ no longer kills us).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    target = LocalTarget(sys.argv[1])
    try:
        anyio.run(target.write_bytes, b"x" * 1_000_000)
    except Exception as error:
        print(json.dumps([type(error).__name__, str(error)]))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_write_past_a_file_size_limit_names_the_target(tmp_path: Path) -> None:
    """A failed write (here EFBIG, from a file size limit) is a TargetError naming the
    target, not an OSError about an unnamed descriptor."""
    path = tmp_path / "out" / "big.bin"
    child = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMIT_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kind, message = json.loads(child.stdout)
    assert (kind, message) == ("TargetError", f"cannot write {path}: File too large (EFBIG)")
    assert os.listdir(path.parent) == []
