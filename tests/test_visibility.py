"""Parameter visibility (PUBLIC, HIDDEN, PRIVATE) and secrets read from the environment."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated

import pytest
from tests.fixtures import cli
from tests.fixtures.secret_tasks import DEPLOY_KEY

import asyncflow
from asyncflow import Config, ConfigError, ParameterError
from asyncflow.dag import check_dag, render

V = asyncflow.ParameterVisibility
SECRET = "s3cr3t-value"


class Login(asyncflow.Task):
    user = asyncflow.Parameter()
    password = asyncflow.Parameter(visibility=V.HIDDEN)
    token = asyncflow.Parameter(default="tok-default", visibility=V.PRIVATE)
    port = asyncflow.IntParameter(default=5432, visibility=V.HIDDEN)


def test_hidden_value_is_masked_in_repr() -> None:
    """repr() shows a HIDDEN value as *** and leaves out the PRIVATE one."""
    task = Login(user="bob", password=SECRET, token="tok-secret")
    assert repr(task) == "Login(user=bob, password=***, port=***)"


def test_hidden_value_is_identity_but_not_in_the_readable_id() -> None:
    """Tasks differing only in a HIDDEN value differ; the id's summary leaves it out."""
    one = Login(user="bob", password=SECRET)
    other = Login(user="bob", password=SECRET + "2")
    assert one != other
    assert one.task_id.startswith("Login_bob_")
    assert other.task_id.startswith("Login_bob_")
    assert one.task_id != other.task_id  # the hash covers it
    assert SECRET not in one.task_id
    assert "5432" not in one.task_id


def test_private_value_is_not_identity_and_the_task_reads_it() -> None:
    """Tasks differing only in a PRIVATE value are the same task; the task still reads it."""
    one = Login(user="bob", password=SECRET, token="a-token")
    other = Login(user="bob", password=SECRET, token="b-token")
    assert one == other and one.task_id == other.task_id
    assert (one.token, other.token) == ("a-token", "b-token")
    assert Login.get_params()["token"].significant is False


def test_public_params_masks_hidden_and_leaves_out_private() -> None:
    """public_params() and the journal's JSON: hidden as ***, private absent."""
    task = Login(user="bob", password=SECRET, token="tok-secret")
    assert task.public_params() == {"user": "bob", "password": "***", "port": "***"}
    assert json.loads(task._params_json()) == task.public_params()
    assert task.to_str_params()["token"] == "tok-secret"  # the task's own copy is whole


def test_hidden_none_is_masked_too() -> None:
    """Even None is not shown for a hidden parameter: its absence would say something."""

    class Optional(asyncflow.Task):
        key = asyncflow.Parameter(default=None, visibility=V.HIDDEN)

    task = Optional()
    assert repr(task) == "Optional(key=***)"
    assert task.public_params() == {"key": "***"}
    assert json.loads(task._params_json()) == {"key": "***"}


def test_private_significant_is_refused_when_the_class_is_defined() -> None:
    """A PRIVATE parameter with significant=True: ParameterError naming class and parameter."""
    with pytest.raises(ParameterError, match=r"Bad\.token: a PRIVATE parameter .* significant"):

        class Bad(asyncflow.Task):
            token = asyncflow.Parameter(visibility=V.PRIVATE, significant=True)


def test_hidden_insignificant_parameter_is_allowed() -> None:
    """HIDDEN with significant=False: not identity, masked in the journal."""

    class Job(asyncflow.Task):
        note = asyncflow.Parameter(visibility=V.HIDDEN, significant=False)

    one, other = Job(note=SECRET), Job(note="other")
    assert one == other
    assert one.public_params() == {"note": "***"}


def test_visibility_must_be_a_parameter_visibility() -> None:
    """A bad visibility is refused where the parameter is declared."""
    with pytest.raises(TypeError, match=r"visibility must be an asyncflow\.ParameterVisibility"):
        asyncflow.Parameter(visibility="hidden")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Login(user="bob", password=SECRET, port="p-" + SECRET),
        lambda: Login.from_str_params({"user": "bob", "password": "x", "port": "p-" + SECRET}),
    ],
)
def test_parameter_error_does_not_quote_a_hidden_value(make: object) -> None:
    """A bad hidden value names task and parameter, never the value."""
    with pytest.raises(ParameterError) as caught:
        make()  # type: ignore[operator]
    message = str(caught.value)
    assert message.startswith("Login: parameter 'port': not a valid int")
    assert "hidden" in message
    assert SECRET not in message


def test_bad_default_of_a_hidden_parameter_is_not_quoted() -> None:
    """The error for a bad declared default of a hidden parameter does not quote it."""
    with pytest.raises(ParameterError) as caught:
        asyncflow.IntParameter(default="p-" + SECRET, visibility=V.PRIVATE)
    assert SECRET not in str(caught.value)
    assert "private" in str(caught.value)


def test_parameter_repr_masks_a_hidden_default() -> None:
    """repr(parameter) shows no hidden default, but an env() default's variable name."""
    param = asyncflow.Parameter(default=SECRET, visibility=V.HIDDEN)
    assert SECRET not in repr(param)
    assert "default=***" in repr(param)
    from_env = asyncflow.Parameter(default=asyncflow.env("DB_PASSWORD"), visibility=V.HIDDEN)
    assert "default=env('DB_PASSWORD')" in repr(from_env)


def test_graph_renders_mask_hidden_values() -> None:
    """Text, Mermaid and DOT renders go through the masked repr."""
    graph = check_dag([Login(user="bob", password=SECRET)])
    for fmt in ("text", "mermaid", "dot"):
        text = render(graph, fmt)
        assert "password=***" in text
        assert SECRET not in text


# env() defaults ---------------------------------------------------------------


class FromEnv(asyncflow.Task):
    password = asyncflow.Parameter(default=asyncflow.env("AF_TEST_PASSWORD"), visibility=V.HIDDEN)
    retries = asyncflow.IntParameter(default=asyncflow.env("AF_TEST_RETRIES"))


def test_env_default_is_read_when_the_task_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each build reads the variable then, and parses its text."""
    monkeypatch.setenv("AF_TEST_PASSWORD", "first")
    monkeypatch.setenv("AF_TEST_RETRIES", "3")
    first = FromEnv()
    monkeypatch.setenv("AF_TEST_PASSWORD", "second")
    second = FromEnv()
    assert (first.password, first.retries, second.password) == ("first", 3, "second")
    assert first != second
    assert FromEnv(password="given", retries=1).password == "given"


def test_unset_env_default_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unset variable: ConfigError naming task, parameter and variable."""
    monkeypatch.delenv("AF_TEST_PASSWORD", raising=False)
    monkeypatch.setenv("AF_TEST_RETRIES", "3")
    with pytest.raises(
        ConfigError,
        match=r"FromEnv: parameter 'password': environment variable AF_TEST_PASSWORD is not set",
    ):
        FromEnv()


def test_unparseable_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable whose text does not parse: ParameterError naming it (public: quoting it)."""
    monkeypatch.setenv("AF_TEST_PASSWORD", "x")
    monkeypatch.setenv("AF_TEST_RETRIES", "many")
    with pytest.raises(
        ParameterError,
        match=r"FromEnv: parameter 'retries': environment variable AF_TEST_RETRIES: .*'many'",
    ):
        FromEnv()


def test_env_takes_a_variable_name() -> None:
    """env() refuses what cannot be a variable's name."""
    with pytest.raises(ValueError, match="env\\(\\) takes an environment variable's name"):
        asyncflow.env("DB PASSWORD")


# ${VAR} in the configuration ---------------------------------------------------


def test_config_value_names_an_environment_variable(tmp_path: Path) -> None:
    """${NAME} in a [Family] value is the variable's value, read when asked; $${ is literal."""
    (tmp_path / "asyncflow.toml").write_text(
        '[Login]\npassword = "${DB_PASSWORD}"\nuser = "u-${DB_USER}-$${KEEP}"\n'
    )
    config = Config.load(tmp_path, environ={})
    env = {"DB_PASSWORD": SECRET, "DB_USER": "bob"}
    assert config.task_defaults("Login", env) == {"password": SECRET, "user": "u-bob-${KEEP}"}
    assert SECRET not in repr(config)


def test_config_value_with_unset_variable_names_file_key_and_variable(tmp_path: Path) -> None:
    """An unset variable: ConfigError naming the file, section, key and variable."""
    (tmp_path / "asyncflow.toml").write_text('[Login]\npassword = "${DB_PASSWORD}"\n')
    config = Config.load(tmp_path, environ={})
    with pytest.raises(
        ConfigError,
        match=r"asyncflow.toml: \[Login\] password: environment variable DB_PASSWORD is not set",
    ):
        config.task_defaults("Login", {})
    assert config.task_defaults("Other", {}) == {}  # other families are not affected


def test_config_reference_must_name_a_variable(tmp_path: Path) -> None:
    """${...} with no variable name in it is refused."""
    (tmp_path / "asyncflow.toml").write_text('[Login]\npassword = "${DB-PASSWORD}"\n')
    config = Config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"\$\{DB-PASSWORD\} does not name an environment"):
        config.task_defaults("Login", {})


# the command line and the decorator -------------------------------------------


def test_help_masks_hidden_defaults(tmp_path: Path) -> None:
    """--help shows public defaults, *** for hidden ones and $NAME for env() ones."""
    proc = cli("run", "tests.fixtures.secret_tasks:Deploy", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "default eu" in proc.stdout
    assert "default ***" in proc.stdout
    assert "default $DB_PASSWORD" in proc.stdout
    assert DEPLOY_KEY not in proc.stdout


def test_decorated_task_takes_visibility_from_annotated() -> None:
    """@task: Annotated[str, ParameterVisibility.HIDDEN] declares a hidden parameter."""

    @asyncflow.task
    async def upload(
        bucket: str,
        key: Annotated[str, V.HIDDEN],
        token: Annotated[str | None, V.PRIVATE] = None,
    ) -> None:
        pass

    task = upload(bucket="b", key=SECRET, token="t")
    assert repr(task) == "upload(bucket=b, key=***)"
    assert task.public_params() == {"bucket": "b", "key": "***"}
    assert task.token == "t"


class Daily(asyncflow.Task):
    date = asyncflow.DateParameter()
    region = asyncflow.Parameter(default="eu")
    password = asyncflow.Parameter(visibility=V.HIDDEN)
    token = asyncflow.Parameter(default="t", visibility=V.PRIVATE)


def test_a_range_keeps_the_visibility_of_the_values_it_passes_on() -> None:
    """range_daily(..., password=SECRET): the range shows no secret; its tasks get it."""
    start = datetime.date(2026, 11, 1)
    backfill = asyncflow.range_daily(
        Daily, start, datetime.date(2026, 11, 3), region="us", password=SECRET, token=SECRET + "t"
    )
    assert SECRET not in repr(backfill)
    assert SECRET not in backfill.task_id
    assert SECRET not in backfill._params_json()
    assert "region" in backfill._params_json()
    tasks = backfill.candidates()  # type: ignore[attr-defined]
    assert tasks[0] == Daily(date=start, region="us", password=SECRET)
    assert (tasks[1].password, tasks[1].token) == (SECRET, SECRET + "t")
    stop = datetime.date(2026, 11, 3)
    other = asyncflow.range_daily(Daily, start, stop, region="us", password="other")
    assert other != backfill  # a hidden value is still part of the range's identity
    same = asyncflow.range_daily(Daily, start, stop, region="us", password=SECRET, token="x")
    assert same == backfill  # a private one is not


class Broken(asyncflow.Task):
    password = asyncflow.Parameter(visibility=V.HIDDEN)

    def requires(self) -> None:
        raise ValueError(f"no route for {self.password}")


def test_check_dag_masks_a_hidden_value_quoted_by_a_broken_definition() -> None:
    """check_dag()'s error lists the broken tasks' errors without the hidden value."""
    with pytest.raises(asyncflow.GraphError) as caught:
        check_dag(Broken(password=SECRET))
    assert "ValueError: no route for ***" in str(caught.value)
    assert SECRET not in str(caught.value)
