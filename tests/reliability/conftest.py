"""Reliability fixtures: a real loopback HTTP server (``rentlake serve``'s :func:`make_server`) in front of
the predict handler, whose champion lives on a moto server (``ThreadedMotoServer`` on 127.0.0.1, port 0);
and botocore event hooks that inject S3/Glue throttling and failures *inside* botocore's retry loop.

Nothing here reaches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import SAMPLES, load_function

REGION = "eu-west-3"
BUCKET = "rentlake-reliability"
LEGAL_SAMPLE = SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"
# Strings that must never reach a client: a stack trace or a path of the machine.
LEAKS = ("Traceback", 'File "', "/work", "site-packages", '.py"', "s3://")


def leaks_in(text: str) -> list[str]:
    return [s for s in LEAKS if s in text]


# ------------------------------------------------------------------------------------------ moto server
@dataclass
class MotoLake:
    endpoint: str
    lake: Any  # rentlake.lake.Lake
    env: dict[str, str]


@contextmanager
def moto_lake(extra_env: dict[str, str] | None = None) -> Iterator[MotoLake]:
    """A moto server on 127.0.0.1 (free port) holding an empty lake bucket; ``os.environ`` points boto3 at
    it while the context is open (restored afterwards), as ``rentlake serve`` does with its embedded lake."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "RENTLAKE_BUCKET": BUCKET,
        "RENTLAKE_GLUE_DATABASE": "rentlake",
        "POWERTOOLS_METRICS_NAMESPACE": "rentlake-test",
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(env)
    try:
        session = boto3.Session(region_name=REGION)
        session.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        from rentlake.lake import Lake

        yield MotoLake(endpoint, Lake(BUCKET, "rentlake", boto3_session=session), env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:  # the server shares moto's global backends with mock_aws(): leave them empty
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
            conn.close()
        finally:
            server.stop()


# ------------------------------------------------------------------------------------------ champions
def legal_artifact() -> bytes:
    """The sample reference table compiled as at promotion (ingest parsing, contract typing, compile)."""
    from rentlake.legal.compile import compile_file

    return compile_file(LEGAL_SAMPLE.read_bytes(), LEGAL_SAMPLE.name)


def publish(lake: Any, version: str, *, a: float = 118.0, legal: bytes | None = None) -> dict[str, Any]:
    """Publish a synthetic champion (district-aware, with training points for /plot-data)."""
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    return publish_champion(
        lake,
        version,
        make_onnx_model(a=a, district_factors={"75006": 1.3, "75019": 0.9}),
        make_card(version, districts=["75006", "75019"], plot_sample=[[30.0, 1100.0], [60.0, 1800.0]]),
        legal=legal,
    )


# ------------------------------------------------------------------------------------------ HTTP server
@dataclass
class ServedApi:
    host: str
    port: int
    moto: MotoLake
    predict: ModuleType
    stderr: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def lake(self) -> Any:
        return self.moto.lake

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on loopback (a fresh connection unless one is given)."""
        own = conn is None
        c = conn or http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            resp = c.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            if own:
                c.close()

    def estimate(self, listing: dict[str, Any], conn: http.client.HTTPConnection | None = None) -> Any:
        status, _, data = self.request(
            "POST", "/estimates", json.dumps(listing), {"Content-Type": "application/json"}, conn
        )
        return status, json.loads(data)


@contextmanager
def serve(
    handler: Callable[[Any, Any], dict[str, Any]], *, nodelay: bool = False
) -> Iterator[tuple[str, int]]:
    """``rentlake serve``'s server on 127.0.0.1 (free port), serving in a thread; closed on exit.

    ``nodelay`` sets TCP_NODELAY on accepted connections (the fix proposed for the Nagle delay; benchmarks
    only, tests serve the server as shipped)."""
    from rentlake.cli.cmd_serve import make_server

    server = make_server(handler, "127.0.0.1", 0)
    if nodelay:
        server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    server.RequestHandlerClass.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def served_api(
    *, refresh_seconds: float = 60.0, champion: str | None = "v1", legal: bool = True, nodelay: bool = False
) -> Iterator[ServedApi]:
    """Moto lake + (optionally) a published champion + the predict function behind the loopback server."""
    with moto_lake({"RENTLAKE_MODEL_REFRESH_SECONDS": str(refresh_seconds)}) as moto:
        if champion is not None:
            publish(moto.lake, champion, legal=legal_artifact() if legal else None)
        predict = load_function("predict")
        with serve(predict.handler, nodelay=nodelay) as (host, port):
            yield ServedApi(host, port, moto, predict)


@pytest.fixture(scope="module")
def api() -> Iterator[ServedApi]:
    """One served API per module, champion ``v1`` with the legal table."""
    with served_api() as served:
        yield served


# ------------------------------------------------------------------------------------------ fault hooks
class _Raw:
    """The ``raw`` of a botocore AWSResponse: only ``stream()`` is read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def s3_error(
    url: str, status: int = 503, code: str = "SlowDown", message: str = "Please reduce your request rate."
) -> Any:
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml"}, _Raw(body))


def glue_throttle(url: str) -> Any:
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return AWSResponse(url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))


@dataclass
class FaultInjector:
    """Answers matching requests with an error *before they are sent*, inside botocore's retry loop
    (``before-send`` is emitted per attempt, so retries see each injected error).

    ``budget`` maps an operation name (``PutObject``) or ``"*"`` to how many of its attempts fail;
    ``None`` means every attempt fails (a persistent fault). ``when`` filters on the request URL.
    """

    budget: dict[str, int | None]
    response: Callable[[str], Any] = s3_error
    when: Callable[[str], bool] = lambda url: True
    injected: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, event_name: str, **_: Any) -> Any:
        op = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.seen[op] += 1
            key = op if op in self.budget else "*" if "*" in self.budget else None
            if key is None or not self.when(request.url):
                return None
            limit = self.budget[key]
            if limit is not None and self.injected[key] >= limit:
                return None
            self.injected[key] += 1
        return self.response(request.url)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry sleeps, recorded instead of slept (the delays prove retries happened)."""
    import types

    import botocore.endpoint

    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=delays.append))
    return delays
