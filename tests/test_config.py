from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio.lowlevel
import pytest
from tests.fixtures import cli_env

import asyncflow
from asyncflow import Config, ConfigError

ROOT = Path(__file__).parent.parent

TOML = """
workers = 3
journal = "state/j.db"
keep_going = false

[resources]
memory_gb = 16

[max_running]
Export = 2

[Write]
text = "from-config"
count = 3
"""


def test_reads_asyncflow_toml(tmp_path: Path) -> None:
    """asyncflow.toml settings and [Family] sections are read."""
    (tmp_path / "asyncflow.toml").write_text(TOML)
    config = Config.load(tmp_path, environ={})
    assert (config.workers, config.journal, config.keep_going) == (3, "state/j.db", False)
    assert config.resources == {"memory_gb": 16} and config.max_running == {"Export": 2}
    assert config.task_defaults("Write") == {"text": "from-config", "count": "3"}
    assert config.source == str(tmp_path / "asyncflow.toml")


def test_reads_tool_table_of_pyproject(tmp_path: Path) -> None:
    """Without asyncflow.toml, [tool.asyncflow] in pyproject.toml is used."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.asyncflow]\nworkers = 5\n\n'
        "[tool.asyncflow.resources]\ndb = 2\n"
    )
    config = Config.load(tmp_path, environ={})
    assert config.workers == 5 and config.resources == {"db": 2}


def test_environment_overrides_file(tmp_path: Path) -> None:
    """ASYNCFLOW_* variables win over the file."""
    (tmp_path / "asyncflow.toml").write_text(TOML)
    config = Config.load(
        tmp_path, environ={"ASYNCFLOW_WORKERS": "9", "ASYNCFLOW_RESOURCES": "gpu=1,cpu=0.5"}
    )
    assert config.workers == 9
    assert config.resources == {"gpu": 1, "cpu": 0.5}


def test_lease_ttl_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "asyncflow.toml").write_text("lease_ttl = 12")
    assert Config.load(tmp_path, environ={}).lease_ttl == 12.0
    assert Config.load(tmp_path, environ={"ASYNCFLOW_LEASE_TTL": "2.5"}).lease_ttl == 2.5


def test_nothing_configured(tmp_path: Path) -> None:
    """An empty folder and environment configure nothing."""
    assert Config.load(tmp_path, environ={}) == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = 0", "workers must be a positive integer"),
        ("colour = 'red'", "unknown setting 'colour'"),
        ("[resources]\nmem = -1", "resources.mem must be a non-negative number"),
        ("workers = ", "not valid TOML"),
        ("lease_ttl = 0", "lease_ttl must be a number of seconds > 0"),
        ("lease_ttl = 'soon'", "lease_ttl must be a number of seconds > 0"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """A bad setting is a ConfigError naming the file and what is wrong."""
    (tmp_path / "asyncflow.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(tmp_path, environ={})
    assert "asyncflow.toml" in str(info.value)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    """A malformed ASYNCFLOW_RESOURCES names the variable."""
    with pytest.raises(ConfigError, match="ASYNCFLOW_RESOURCES"):
        Config.load(tmp_path, environ={"ASYNCFLOW_RESOURCES": "gpu"})


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("ASYNCFLOW_WORKERS", "x", "ASYNCFLOW_WORKERS must be a positive integer, got 'x'"),
        ("ASYNCFLOW_WORKERS", "0", "ASYNCFLOW_WORKERS must be a positive integer, got '0'"),
        ("ASYNCFLOW_KEEP_GOING", "maybe", "ASYNCFLOW_KEEP_GOING must be true or false"),
        ("ASYNCFLOW_LEASE_TTL", "soon", "ASYNCFLOW_LEASE_TTL must be a number of seconds"),
        ("ASYNCFLOW_RESOURCES", "gpu=-1", "ASYNCFLOW_RESOURCES: gpu must be a non-negative"),
        ("ASYNCFLOW_MAX_RUNNING", "Export=0", "ASYNCFLOW_MAX_RUNNING: Export must be a positive"),
        ("ASYNCFLOW_LOG_LEVEL", "LOUD", "ASYNCFLOW_LOG_LEVEL must be DEBUG, INFO, WARNING"),
        ("ASYNCFLOW_LOG_FORMAT", "xml", "ASYNCFLOW_LOG_FORMAT must be auto, console or json"),
    ],
)
def test_bad_variable_is_named_not_the_file(
    tmp_path: Path, variable: str, text: str, message: str
) -> None:
    """A bad ASYNCFLOW_* value is reported as that variable's, even with a file beside it."""
    (tmp_path / "asyncflow.toml").write_text(TOML)
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path, environ={variable: text})
    assert str(info.value).startswith(message)
    assert "asyncflow.toml" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("ASYNCFLOW_LEASE_TTL", "1e-9", "ASYNCFLOW_LEASE_TTL must be from 1 to 86400 seconds"),
        ("ASYNCFLOW_LEASE_TTL", "0.5", "ASYNCFLOW_LEASE_TTL must be from 1 to 86400 seconds"),
        ("ASYNCFLOW_LEASE_TTL", "1e12", "ASYNCFLOW_LEASE_TTL must be from 1 to 86400 seconds"),
        ("ASYNCFLOW_LEASE_TTL", "inf", "ASYNCFLOW_LEASE_TTL must be from 1 to 86400 seconds"),
        ("ASYNCFLOW_WORKERS", "1000000", "ASYNCFLOW_WORKERS must be a positive integer of at most"),
        ("ASYNCFLOW_RESOURCES", "gpu=inf", "ASYNCFLOW_RESOURCES: gpu must be a non-negative"),
        ("ASYNCFLOW_RESOURCES", "gpu=1e300", r"ASYNCFLOW_RESOURCES: gpu .*\(at most 10\*\*15\)"),
        ("ASYNCFLOW_JOURNAL", "j\x00.db", "ASYNCFLOW_JOURNAL must be a path"),
    ],
)
def test_absurd_numbers_in_variables_are_refused(
    tmp_path: Path, variable: str, text: str, message: str
) -> None:
    """Numbers beyond sane bounds (a lease of a nanosecond, infinite capacity) are a
    ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=f"^{message}"):
        Config.load(tmp_path, environ={variable: text})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lease_ttl = 1e-9", "lease_ttl must be from 1 to 86400 seconds"),
        ("lease_ttl = inf", "lease_ttl must be from 1 to 86400 seconds"),
        ("lease_ttl = 1" + "0" * 400, "lease_ttl must be from 1 to 86400 seconds"),
        ("workers = 100000", "workers must be a positive integer of at most 10,000"),
        ("[resources]\nmem = inf", r"resources.mem must be a non-negative number \(at most"),
        ('journal = "j\\u0000.db"', "journal must be a path"),
    ],
)
def test_absurd_numbers_in_the_file_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """The file's numbers have the same bounds; the error names the file and the key."""
    (tmp_path / "asyncflow.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(tmp_path, environ={})
    assert str(info.value).startswith(str(tmp_path / "asyncflow.toml"))


def test_lease_ttl_bounds_are_a_second_and_a_day(tmp_path: Path) -> None:
    """lease_ttl takes 1 to 86400 seconds, both included, and nothing outside."""
    for seconds in ("1", "86400"):
        assert Config.load(tmp_path, environ={"ASYNCFLOW_LEASE_TTL": seconds}).lease_ttl == float(
            seconds
        )
    for seconds in ("0.999", "86400.5"):
        with pytest.raises(ConfigError, match="from 1 to 86400 seconds"):
            Config.load(tmp_path, environ={"ASYNCFLOW_LEASE_TTL": seconds})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("log_level = 'LOUD'", "log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ("log_format = 'xml'", "log_format must be auto, console or json, got 'xml'"),
    ],
)
def test_bad_log_settings_in_the_file_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """An unknown log level or format in the file names the file and the key."""
    (tmp_path / "asyncflow.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(tmp_path, environ={})
    assert str(info.value).startswith(f"{tmp_path / 'asyncflow.toml'}: log_")


def test_log_level_names_are_read_in_any_case(tmp_path: Path) -> None:
    """log_level = "warning" is WARNING, as the command line takes it."""
    assert Config.load(tmp_path, environ={"ASYNCFLOW_LOG_LEVEL": "warning"}).log_level == "warning"


@pytest.mark.anyio
async def test_run_uses_configured_capacities_and_arguments_override() -> None:
    """run() takes capacities from its config; an explicit argument overrides them."""
    running = peak = 0

    class Heavy(asyncflow.Task):
        n = asyncflow.IntParameter()
        resources = {"mem": 4}

        async def run(self) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            running -= 1

    config = Config(resources={"mem": 8}, workers=6)
    await asyncflow.run([Heavy(i) for i in range(6)], config=config, journal=None)
    assert peak == 2
    peak = 0
    await asyncflow.run(
        [Heavy(i) for i in range(6, 12)], config=config, resources={"mem": 12}, journal=None
    )
    assert peak == 3


def test_cli_applies_family_defaults_and_environment(tmp_path: Path) -> None:
    """The command line fills parameters from [Family] and flags override them."""
    (tmp_path / "asyncflow.toml").write_text(TOML)
    env = cli_env()
    out = tmp_path / "o.txt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "run",
            "tests.fixtures.cli_tasks:Write",
            "--out",
            str(out),
            "--count",
            "2",
            "--no-journal",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "from-configfrom-config"
