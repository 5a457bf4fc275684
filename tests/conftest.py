"""Shared fixtures: fake credentials → mock_aws() → bucket, sample data and events, handler loading.

Unit tests never touch the network: the AWS fixtures run moto in process, and code that reads its
configuration at import is imported after the mock has started (see :func:`load_function`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
EVENTS = ROOT / "infra" / "events"
FUNCTIONS = ROOT / "functions"
BUCKET = "rentlake-test"
REGION = "eu-west-3"


def load_event(name: str, **substitutions: str) -> dict[str, Any]:
    """A sample event from ``infra/events/<name>.json``, with ``${KEY}`` placeholders substituted."""
    text = (EVENTS / f"{name}.json").read_text()
    for key, value in {"BUCKET": BUCKET, **substitutions}.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` afresh (its module-level configuration is read now)."""
    path = FUNCTIONS / name / "app.py"
    mod_name = f"rentlake_test_function_{name}"
    sys.modules.pop(mod_name, None)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name = "rentlake-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-3:000000000000:function:rentlake-test"
    memory_limit_in_mb = 1024
    aws_request_id = "test-request"
    log_group_name = "/aws/lambda/rentlake-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


REFERENCE_SAMPLE = SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"


def compile_legal_sample() -> bytes:
    """The legal lookup artifact of the sample reference table (no S3)."""
    from rentlake.legal.compile import compile_file

    return compile_file(REFERENCE_SAMPLE.read_bytes(), REFERENCE_SAMPLE.name)


def reference_rows() -> list[dict[str, str]]:
    """The sample reference table as text rows, as the file has them (expected values in tests)."""
    import csv
    import io

    return list(csv.DictReader(io.StringIO(REFERENCE_SAMPLE.read_text(encoding="utf-8"))))


def row_of(rows: list[dict[str, str]], **where: str) -> dict[str, str]:
    """The one row whose columns have the given values."""
    hits = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(hits) == 1, where
    return hits[0]


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
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "rentlake-test")


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """Every AWS call in the test goes to moto, in process."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def bucket(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The lake bucket, created in moto, and the environment the functions read."""
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    monkeypatch.setenv("RENTLAKE_BUCKET", BUCKET)
    monkeypatch.setenv("RENTLAKE_GLUE_DATABASE", "rentlake")
    monkeypatch.delenv("RENTLAKE_LAKE", raising=False)  # it would win over the bucket (a local lake)
    return BUCKET


@pytest.fixture
def lake(bucket: str) -> Any:
    """A :class:`rentlake.lake.Lake` on the test bucket (imported after the mock started)."""
    from rentlake.lake import Lake

    return Lake(bucket, "rentlake")


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
