"""Shared fixtures: fake credentials → mock_aws() → bucket → lake, sample data, handler loading.

The plain helpers and constants live in :mod:`tests.support` (import them from there, not from here).
Unit tests never touch the network: the AWS fixtures run moto in process, and code that reads its
configuration at import is imported after the mock has started (see :func:`tests.support.load_function`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.support import (
    BUCKET,
    GLUE_DATABASE,
    REGION,
    SAMPLES,
    UNSAFE_ENV,
    FakeContext,
    atomic_s3_objects,
    compile_legal_sample,
    fake_aws_env,
    load_function,
)


@pytest.fixture(scope="session")
def legal_artifact() -> bytes:
    """The sample reference table's legal lookup artifact, compiled once per test session."""
    return compile_legal_sample()


@pytest.fixture(autouse=True)
def fresh_legal_cache() -> Iterator[None]:
    """Each test is a fresh container: the legal table cache (per process, keyed by sha256) starts empty
    and is left empty, so no test depends on what an earlier one loaded."""
    from rentlake.legal import lookup

    lookup._CACHE.clear()
    yield
    lookup._CACHE.clear()


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, and no endpoint or profile that could reach a real account."""
    for var in UNSAFE_ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in fake_aws_env().items():
        monkeypatch.setenv(var, value)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """Every AWS call in the test goes to moto, in process; its objects are read and written one request at a
    time, so that conditional writes are atomic as on S3 (see :func:`tests.support.atomic_s3_objects`)."""
    from moto import mock_aws

    with mock_aws(), atomic_s3_objects():
        yield


@pytest.fixture
def bucket(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The lake bucket, created in moto, and the environment the functions read."""
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    for var, value in fake_aws_env(bucket=BUCKET).items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("RENTLAKE_LAKE", raising=False)  # it would win over the bucket (a local lake)
    return BUCKET


@pytest.fixture
def lake(bucket: str) -> Any:
    """A :class:`rentlake.lake.Lake` on the test bucket (imported after the mock started)."""
    from rentlake.lake import Lake

    return Lake(bucket, GLUE_DATABASE)


@pytest.fixture
def function(bucket: str) -> Callable[[str], ModuleType]:
    """Load a function's module after the bucket and environment exist."""
    return load_function


@pytest.fixture
def put_landing(lake: Any) -> Callable[..., dict[str, Any]]:
    """Upload bytes to ``landing/<name>`` and return the S3 event S3 would send."""
    from rentlake.cli.stages import s3_put_event
    from rentlake.lake import keys

    def put(name: str, data: bytes) -> dict[str, Any]:
        key = keys.landing(name)
        etag = lake.put_bytes(key, data)
        return s3_put_event(lake.bucket, key, etag=etag, size=len(data))

    return put


@pytest.fixture
def sample_bytes() -> Callable[[str], bytes]:
    return lambda name: (SAMPLES / name).read_bytes()
