"""Fixtures shared by the target tests: one ``target_factory`` per backend.

A new backend joins the contract suite by adding a param to ``target_factory``.

The S3 and GCS backends run against real servers on 127.0.0.1 (moto and
fake-gcs-server), started once per session by sync fixtures and configured
the way a user would: through the standard environment variables. Every test
gets a fresh bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncflow.targets import GCSTarget, LocalTarget, MemoryStore, MemoryTarget, S3Target
from asyncflow.targets.memory import default_store

from ._support import AsyncOnlyTarget, Backend, TargetFactory
from .servers import (
    FakeGCSServer,
    MotoServer,
    create_gcs_bucket,
    create_s3_bucket,
    install_loopback_guard,
    unique_bucket,
)

BACKENDS = ["local", "memory", "async-only", "s3", "gcs"]


@pytest.fixture(scope="session", autouse=True)
def _loopback_only() -> None:
    """Nothing in these tests may reach beyond 127.0.0.1."""
    install_loopback_guard()


@pytest.fixture(params=BACKENDS)
def target_factory(request: pytest.FixtureRequest, tmp_path: Path) -> TargetFactory:
    """Return a callable making a fresh target of one backend from a name."""
    if request.param == "local":
        return lambda name: LocalTarget(tmp_path / name)
    if request.param == "memory":
        store = MemoryStore()
        return lambda name: MemoryTarget(name, store)
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return lambda name: S3Target(f"s3://{bucket}/{name}")
    if request.param == "gcs":
        bucket = request.getfixturevalue("gcs_bucket")
        return lambda name: GCSTarget(f"gs://{bucket}/{name}")
    data: dict[str, bytes] = {}
    return lambda name: AsyncOnlyTarget(name, data)


@pytest.fixture(params=["s3", "gcs"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each remote backend, with a fresh bucket."""
    if request.param == "s3":
        return Backend(
            "s3", request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_env")
        )
    return Backend("gcs", request.getfixturevalue("gcs_bucket"), request.getfixturevalue("gcs_env"))


@pytest.fixture
def clean_default_store() -> Iterator[MemoryStore]:
    """Yield the process-wide memory store, empty, and empty it again afterwards."""
    store = default_store()
    store.clear()
    yield store
    store.clear()


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The URL of a moto S3 server for the whole session."""
    with MotoServer() as server:
        yield server.url


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the AWS environment variables at moto, with test credentials; return its URL."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty S3 bucket."""
    name = unique_bucket()
    create_s3_bucket(s3_env, name)
    return name


# --------------------------------------------------------------------------- GCS


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """The URL of a fake-gcs-server for the whole session."""
    with FakeGCSServer() as server:
        yield server.url


@pytest.fixture
def gcs_env(gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point STORAGE_EMULATOR_HOST at the emulator; return its URL."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # trap 1, before any import
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    return gcs_server


@pytest.fixture
def gcs_bucket(gcs_env: str) -> str:
    """A fresh, empty GCS bucket."""
    name = unique_bucket()
    create_gcs_bucket(gcs_env, name)
    return name
