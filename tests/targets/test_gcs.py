"""GCSTarget against fake-gcs-server on loopback: what goes beyond the shared contract."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from asyncflow.errors import TargetError
from asyncflow.targets import GCSConfig, GCSPrefixTarget, GCSTarget, RequestRetry

from ._support import Boom, write_bytes_then_raise
from .faults import FaultProxy

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
FAST = RequestRetry(attempts=3, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def proxy(gcs_env: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the emulator."""
    with FaultProxy(gcs_env, seed=2) as proxy:
        yield proxy


@pytest.fixture
def via_proxy(proxy: FaultProxy) -> GCSConfig:
    """Configuration reaching the emulator through the proxy, with quick retries."""
    return GCSConfig.from_env(endpoint_url=proxy.url, retry=FAST)


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/key", "gs:/bucket/key", "gs://", "gs:///key", "gs://bucket", "gs://b/dir/"],
)
def test_bad_url_raises_value_error_naming_it(url: str) -> None:
    """A URL that is not gs://bucket/key is refused at construction, naming the URL."""
    with pytest.raises(ValueError, match="invalid URL") as info:
        GCSTarget(url)
    assert repr(url) in str(info.value)


def test_config_reads_emulator_host() -> None:
    """STORAGE_EMULATOR_HOST gives the endpoint (scheme added) and anonymous access."""
    config = GCSConfig.from_env(
        {"STORAGE_EMULATOR_HOST": "127.0.0.1:4443", "GOOGLE_CLOUD_PROJECT": "p"}
    )
    assert (config.endpoint_url, config.token, config.project) == (
        "http://127.0.0.1:4443",
        "anon",
        "p",
    )
    assert GCSConfig.from_env({}).endpoint_url is None


def test_part_size_must_be_a_multiple_of_256_kib() -> None:
    """Resumable chunks must be multiples of 256 KiB; anything else is refused early."""
    with pytest.raises(ValueError, match="256 KiB"):
        GCSConfig(part_size=1000)


async def test_large_object_uses_a_resumable_upload(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """A 20 MB object goes up in 8 MiB chunks of one resumable upload and reads back identical."""
    data = os.urandom(20 * MiB)
    target = GCSTarget(f"gs://{gcs_bucket}/big.bin", config=via_proxy)
    await target.write_bytes(data)
    starts = [line for line in proxy.request_lines if line.startswith(b"POST ")]
    chunks = [line for line in proxy.request_lines if line.startswith(b"PUT ")]
    assert len(starts) == 1 and b"uploadType=resumable" in starts[0]
    assert len(chunks) == 3
    assert await target.read_bytes() == data


async def test_failed_chunk_cancels_upload_and_leaves_nothing(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """When a chunk keeps failing, the upload session is cancelled and no object appears."""
    proxy.fault_rate = 1.0
    proxy.fault_filter = lambda line: line.startswith(b"PUT ")
    target = GCSTarget(f"gs://{gcs_bucket}/broken.bin", config=via_proxy)
    with pytest.raises(TargetError, match=f"gs://{gcs_bucket}/broken.bin"):
        await target.write_bytes(os.urandom(20 * MiB))
    assert any(line.startswith(b"DELETE ") for line in proxy.request_lines)
    assert not await target.exists()


async def test_exception_in_write_block_sends_nothing(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """An exception in the write block drops the spool without a single request."""
    target = GCSTarget(f"gs://{gcs_bucket}/never.bin", config=via_proxy)
    with pytest.raises(Boom):
        await write_bytes_then_raise(target, os.urandom(9 * MiB))
    assert proxy.requests == 0


async def test_create_only_refuses_to_overwrite(gcs_bucket: str) -> None:
    """A create-only write to an existing object raises TargetError naming it, changing nothing.

    (fake-gcs-server honours ifGenerationMatch on single-request uploads only,
    so the resumable path's precondition is exercised against real GCS alone.)
    """
    url = f"gs://{gcs_bucket}/once.txt"
    target = GCSTarget(url, create_only=True)
    await target.write_text("first")
    with pytest.raises(TargetError, match=f"{url} already exists"):
        await target.write_text("second")
    assert await target.read_text() == "first"


async def test_exists_on_missing_object_is_false_in_one_request(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """A 404 answers False, without retrying."""
    assert not await GCSTarget(f"gs://{gcs_bucket}/nope", config=via_proxy).exists()
    assert proxy.requests == 1


async def test_exists_on_forbidden_raises_target_error_without_retry(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """A 403 is an error naming the URL, not "missing", and is not retried."""
    proxy.fault_rate, proxy.fault_statuses = 1.0, (403,)
    url = f"gs://{gcs_bucket}/secret"
    with pytest.raises(TargetError, match=url):
        await GCSTarget(url, config=via_proxy).exists()
    assert proxy.requests == 1


async def test_exists_on_persistent_server_error_raises_after_retries(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """A 503 that outlasts the retries is an error naming the URL, after every attempt."""
    proxy.fault_rate, proxy.fault_statuses = 1.0, (503,)
    url = f"gs://{gcs_bucket}/flaky"
    with pytest.raises(TargetError, match=url):
        await GCSTarget(url, config=via_proxy).exists()
    assert proxy.requests == FAST.attempts


async def test_transient_errors_are_retried(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """With half the requests failing, a multi-chunk write, a probe and a read still succeed."""
    config = via_proxy.with_options(retry=RequestRetry(attempts=12, base_delay=0.001))
    proxy.fault_rate = 0.5
    data = os.urandom(17 * MiB)
    target = GCSTarget(f"gs://{gcs_bucket}/retried.bin", config=config)
    await target.write_bytes(data)
    assert await target.exists()
    assert await target.read_bytes() == data
    assert proxy.faults > 0


async def test_discard_partial_writes_returns_zero_without_a_request(
    gcs_bucket: str, proxy: FaultProxy, via_proxy: GCSConfig
) -> None:
    """Resumable upload sessions cannot be listed: discarding returns 0 and sends nothing."""
    url = f"gs://{gcs_bucket}/out.bin"
    assert await GCSTarget(url, config=via_proxy).discard_partial_writes() == 0
    prefix = GCSPrefixTarget(f"gs://{gcs_bucket}/dir/", config=via_proxy)
    assert await prefix.discard_partial_writes() == 0
    assert proxy.requests == 0
