"""What the tests share besides fixtures: paths and names, sample data, handler loading, the fake AWS
environment, and the estimates API served on loopback in front of a moto server.

Course data comes from ``data/samples`` in the repository only. Nothing here reaches the network beyond
127.0.0.1, and code that reads its configuration at import is imported after the fake environment and the
mock are in place (see :func:`load_function`).
"""

from __future__ import annotations

import csv
import http.client
import importlib.util
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
EVENTS = ROOT / "infra" / "events"
FUNCTIONS = ROOT / "functions"
BUCKET = "rentlake-test"
REGION = "eu-west-3"
GLUE_DATABASE = "rentlake"
REFERENCE_SAMPLE = SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"
# A moto server shares moto's in-process backends with mock_aws(): the served lake's bucket has its own
# name, so a module-scoped served API and a test's `bucket` fixture never create the same bucket.
SERVED_BUCKET = "rentlake-served"
# Variables that could send a call to a real account or another endpoint than the one a test chose.
UNSAFE_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN")
# Strings that must never reach a client: a stack trace or a path of the machine.
LEAKS = ("Traceback", 'File "', "/work", "site-packages", '.py"', "s3://")


# ------------------------------------------------------------------------------------------ data, handlers
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


def compile_legal_sample() -> bytes:
    """The sample reference table compiled as at promotion (ingest parsing, contract typing, compile)."""
    from rentlake.legal.compile import compile_file

    return compile_file(REFERENCE_SAMPLE.read_bytes(), REFERENCE_SAMPLE.name)


def reference_rows() -> list[dict[str, str]]:
    """The sample reference table as text rows, as the file has them (expected values in tests)."""
    return list(csv.DictReader(io.StringIO(REFERENCE_SAMPLE.read_text(encoding="utf-8"))))


def row_of(rows: list[dict[str, str]], **where: str) -> dict[str, str]:
    """The one row whose columns have the given values."""
    hits = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(hits) == 1, where
    return hits[0]


def leaks_in(text: str) -> list[str]:
    """The :data:`LEAKS` found in a text a client received."""
    return [s for s in LEAKS if s in text]


# ------------------------------------------------------------------------------------------ environment
def fake_aws_env(*, endpoint: str | None = None, bucket: str | None = None) -> dict[str, str]:
    """The environment of a test's AWS calls: fake credentials and the test region; with ``endpoint``,
    every client goes there (a moto server); with ``bucket``, the lake the functions read.

    The :data:`UNSAFE_ENV` variables it does not set must be removed alongside (see :func:`applied_env`).
    """
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_METRICS_NAMESPACE": "rentlake-test",
    }
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    if bucket is not None:
        env["RENTLAKE_BUCKET"] = bucket
        env["RENTLAKE_GLUE_DATABASE"] = GLUE_DATABASE
    return env


@contextmanager
def applied_env(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set and the other :data:`UNSAFE_ENV` variables removed while the
    context is open; restored as it was afterwards (for fixtures wider than a test's monkeypatch)."""
    names = {*env, *UNSAFE_ENV}
    saved = {k: os.environ.get(k) for k in names}
    for k in UNSAFE_ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------------ moto server
@dataclass
class MotoLake:
    endpoint: str
    lake: Any  # rentlake.lake.Lake
    env: dict[str, str]


# moto's S3 is not safe for threads on one key: it checks a write's condition (If-None-Match, If-Match) and
# then writes, in two steps, and a read can meet a key being replaced (fifteen threads' compare-and-swap
# increments of one counter kept 40-139 of 150, and still lost some with only the writes made one at a
# time). S3 checks and writes at once and reads what was last written, and the lake's commits, ledgers and
# registry rely on that: in tests, moto answers the requests on objects one at a time.
@contextmanager
def atomic_s3_objects() -> Iterator[None]:
    """While open, moto answers S3 requests on objects (GET, HEAD, PUT, DELETE, POST) one at a time, so a
    conditional write is checked and made at once and a read sees a whole object, as on S3 (moto in process
    and its threaded server)."""
    from moto.s3.responses import S3Response

    lock = threading.RLock()
    original = S3Response.__dict__["key_response"]

    def key_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    S3Response.key_response = key_response  # type: ignore[method-assign]
    try:
        yield
    finally:
        S3Response.key_response = original  # type: ignore[method-assign]


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
    env = {**fake_aws_env(endpoint=endpoint, bucket=SERVED_BUCKET), **(extra_env or {})}
    try:
        with applied_env(env), atomic_s3_objects():
            session = boto3.Session(region_name=REGION)
            session.client("s3").create_bucket(
                Bucket=SERVED_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            from rentlake.lake import Lake

            yield MotoLake(endpoint, Lake(SERVED_BUCKET, GLUE_DATABASE, boto3_session=session), env)
    finally:
        try:  # the server shares moto's global backends with mock_aws(): leave them empty
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
            conn.close()
        finally:
            server.stop()


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
        """POST one listing to ``/estimates``: (status, decoded JSON body)."""
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
            publish(moto.lake, champion, legal=compile_legal_sample() if legal else None)
        predict = load_function("predict")
        with serve(predict.handler, nodelay=nodelay) as (host, port):
            yield ServedApi(host, port, moto, predict)
