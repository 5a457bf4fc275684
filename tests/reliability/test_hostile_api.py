"""Hostile inputs on the estimates API and on ``rentlake serve``'s server, one case per test, each outcome
asserted on values. Everything goes over real sockets on 127.0.0.1: the served API (predict handler,
champion on a moto server) for the API's cases, a server with small limits around a stub handler for the
server's own limits."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import ROOT, ServedApi

JSON_CT = {"Content-Type": "application/json"}
NOT_AN_OBJECT = 'the body must be a JSON object: a listing or {"listings": [...]}'
SURFACE_RANGE = "must be between 9 and 1000 m²"
POST = b"POST /estimates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


# ------------------------------------------------------------------------------------------ helpers
def raw_exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> http.client.HTTPResponse:
    """Send raw bytes on a fresh connection and parse the answer (the body is read, then available as
    ``resp.data``)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        resp.data = resp.read()  # type: ignore[attr-defined]
        return resp
    finally:
        sock.close()


def error_of(resp: http.client.HTTPResponse) -> dict[str, Any]:
    assert resp.getheader("Content-Type", "").startswith("application/json")
    body = json.loads(resp.data)  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def post_json(api: ServedApi, body: bytes) -> tuple[int, Any]:
    status, _, data = api.request("POST", "/estimates", body, JSON_CT)
    return status, json.loads(data)


def stub_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Echoes what the server handed over: method, body, and the Lambda context's function name."""
    body = {"method": event["requestContext"]["http"]["method"], "body": event.get("body")}
    body["function"] = context.function_name
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


@contextmanager
def small_server(**limits: Any) -> Iterator[tuple[str, int]]:
    """``rentlake serve``'s server around :func:`stub_handler`, with the given limits."""
    from rentlake.cli.cmd_serve import make_server

    server = make_server(stub_handler, "127.0.0.1", 0, **limits)
    server.RequestHandlerClass.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` (recv gives b"") within ``within_s`` seconds."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


# ------------------------------------------------------------------------------ the API: body shapes
def test_json_array_of_listings_is_422_naming_the_expected_shape(api: ServedApi) -> None:
    # GIVEN two listings sent as a bare JSON array (the API's batch shape is {"listings": [...]})
    status, body = post_json(api, b'[{"surface_m2": 30}, {"surface_m2": 40}]')
    # THEN a 422 naming the body and the shapes it accepts: no answer for the first listing alone
    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["fields"] == [{"field": "body", "problem": NOT_AN_OBJECT}]
    assert '{"listings": [...]}' in body["error"]["message"]


def test_json_array_of_one_listing_is_refused_too(api: ServedApi) -> None:
    status, body = post_json(api, b'[{"surface_m2": 30}]')
    assert (status, body["error"]["fields"]) == (422, [{"field": "body", "problem": NOT_AN_OBJECT}])


def test_the_batch_shape_answers_every_listing(api: ServedApi) -> None:
    # GIVEN the same two listings in the batch shape THEN two estimates, in order
    from rentlake.runtime.testing import expected_rent

    status, body = post_json(api, b'{"listings": [{"surface_m2": 30}, {"surface_m2": 40}]}')
    assert status == 200
    assert [e["rent_eur"] for e in body["estimates"]] == [round(expected_rent(30)), round(expected_rent(40))]


# ---------------------------------------------------------------------------- the API: surface domain
@pytest.mark.parametrize("surface", ["0.001", "8.99", "1000.5", "5e3"])
def test_surface_outside_the_contract_range_is_422_naming_the_range(api: ServedApi, surface: str) -> None:
    # GIVEN a surface cleaning would quarantine (below 9 m² or above 1 000 m²)
    status, body = post_json(api, b'{"surface_m2": %s}' % surface.encode())
    # THEN no estimate (0.001 m² used to answer 0 € within [0, 0]): a 422 naming the field and the range
    assert status == 422
    assert body["error"]["fields"] == [{"field": "surface_m2", "problem": SURFACE_RANGE}]


@pytest.mark.parametrize("surface", [9, 1000])
def test_surface_bounds_of_the_contract_are_estimated(api: ServedApi, surface: int) -> None:
    status, body = post_json(api, b'{"surface_m2": %d}' % surface)
    assert status == 200 and body["rent_eur"] > 0


def test_surface_in_a_batch_is_refused_with_its_index(api: ServedApi) -> None:
    status, body = post_json(api, b'{"listings": [{"surface_m2": 30}, {"surface_m2": 0.5}]}')
    assert (status, body["error"]["fields"]) == (
        422,
        [{"field": "listings[1].surface_m2", "problem": SURFACE_RANGE}],
    )


def _probe(env: dict[str, str], body: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter imports the predict function and answers one POST /estimates (no lake needed
    for a refusal)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))}
    clean.update(env, PYTHONPATH=str(ROOT / "layers" / "rentlake"), RENTLAKE_BUCKET="rentlake-none")
    return subprocess.run(
        [sys.executable, "-m", "rentlake.runtime.lightcheck", str(ROOT / "functions/predict/app.py"), body],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_minimum_surface_raised_by_the_environment_is_the_api_domain() -> None:
    # GIVEN RENTLAKE_MIN_SURFACE_M2=12 WHEN 10 m² is asked
    out = _probe({"RENTLAKE_MIN_SURFACE_M2": "12"}, '{"surface_m2": 10}')
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN a 422 naming the configured range
    assert result["status"] == 422, out.stderr[-2000:]
    assert result["body"]["error"]["fields"] == [
        {"field": "surface_m2", "problem": "must be between 12 and 1000 m²"}
    ]


def test_minimum_surface_below_the_contract_fails_the_cold_start() -> None:
    # GIVEN RENTLAKE_MIN_SURFACE_M2=5, below the contract's 9 m² THEN the function does not start
    out = _probe({"RENTLAKE_MIN_SURFACE_M2": "5"}, '{"surface_m2": 30}')
    assert out.returncode != 0 and out.stdout == ""
    assert "RENTLAKE_MIN_SURFACE_M2='5' must be at least 9" in out.stderr


@pytest.mark.parametrize(("raw", "expected"), [("", (9.0, 1000.0)), ("12.5", (12.5, 1000.0))])
def test_surface_domain_reads_the_contract_and_the_environment(
    raw: str, expected: tuple[float, float]
) -> None:
    from rentlake.runtime.schemas import surface_domain

    assert surface_domain({"RENTLAKE_MIN_SURFACE_M2": raw}) == expected


@pytest.mark.parametrize("raw", ["abc", "nan", "8.9", "1000", "-1"])
def test_surface_domain_refuses_a_minimum_the_contract_does_not_allow(raw: str) -> None:
    from rentlake.runtime.schemas import surface_domain

    with pytest.raises(ValueError, match="RENTLAKE_MIN_SURFACE_M2"):
        surface_domain({"RENTLAKE_MIN_SURFACE_M2": raw})


# ------------------------------------------------------------------------ rentlake serve: the request
@pytest.mark.parametrize("length", ["-1", "abc", "+30", "1e3", "30, 31", "٣٠"])
def test_bad_content_length_is_400_and_closes(api: ServedApi, length: str) -> None:
    # GIVEN a Content-Length that is not one non-negative integer (-1 used to skip the 8 MiB cap, abc to
    # drop the connection with a traceback)
    head = POST + f"Content-Length: {length}\r\n\r\n".encode()
    resp = raw_exchange(api.host, api.port, head + b'{"surface_m2": 30}')
    # THEN 400 with the API's error shape, and the connection is closed (the body cannot be framed)
    assert resp.status == 400
    assert error_of(resp)["code"] == "bad_content_length"
    assert resp.getheader("Connection") == "close"


def test_chunked_body_is_read_and_estimated(api: ServedApi) -> None:
    from rentlake.runtime.testing import expected_rent

    body = b'{"surface_m2": 30}'
    chunks = b"5\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n"
    resp = raw_exchange(api.host, api.port, CHUNKED + chunks)
    assert resp.status == 200
    assert json.loads(resp.data)["rent_eur"] == round(expected_rent(30, factor=1.0))  # type: ignore[attr-defined]


def test_chunked_body_over_the_cap_is_413_before_it_is_read(api: ServedApi) -> None:
    # GIVEN a chunk announced at 9 MiB, none of it sent
    resp = raw_exchange(api.host, api.port, CHUNKED + b"%x\r\n" % (9 * 1024 * 1024))
    assert resp.status == 413 and error_of(resp)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_chunk"),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "bad_request"),
        (b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "not_implemented"),
    ],
    ids=["bad-chunk-size", "chunked-and-length", "other-coding"],
)
def test_malformed_transfer_encoding_is_refused(api: ServedApi, extra: bytes, status: int, code: str) -> None:
    resp = raw_exchange(api.host, api.port, POST + extra)
    assert (resp.status, error_of(resp)["code"]) == (status, code)


# ------------------------------------------------------------------ rentlake serve: connections
def test_a_silent_connection_is_closed_after_the_socket_timeout() -> None:
    with small_server(socket_timeout_s=0.5) as (host, port):
        # GIVEN one client that sends half a request line, one that sends nothing
        slow = socket.create_connection((host, port), timeout=5)
        idle = socket.create_connection((host, port), timeout=5)
        slow.sendall(b"POST /estimates HT")
        started = time.monotonic()
        # THEN both are closed by the server after the timeout (well before 5 s)
        assert closed_by_peer(slow, 5.0) and closed_by_peer(idle, 5.0)
        assert 0.4 < time.monotonic() - started < 4.0
        slow.close()
        idle.close()
        # AND the server still answers
        resp = raw_exchange(host, port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 200


def test_connections_over_the_limit_get_503_then_the_freed_slot_serves() -> None:
    with small_server(max_connections=2, socket_timeout_s=10.0) as (host, port):
        # GIVEN the limit of 2 connections held by two silent clients
        held = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
        time.sleep(0.2)  # both accepted and their threads started
        # WHEN a third client connects THEN it is answered 503 at once, with Retry-After, and closed
        third = socket.create_connection((host, port), timeout=5)
        resp = http.client.HTTPResponse(third)
        resp.begin()
        assert resp.status == 503 and resp.getheader("Retry-After") == "1"
        assert json.loads(resp.read())["error"]["code"] == "server_busy"
        assert resp.getheader("X-Content-Type-Options") == "nosniff"
        third.close()
        # WHEN a held connection is closed THEN a new client is served
        held[0].close()
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline and status != 200:
            status = raw_exchange(host, port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").status
            time.sleep(0.05)
        assert status == 200
        held[1].close()


def test_the_handler_is_called_with_a_lambda_context() -> None:
    with small_server() as (host, port):
        resp = raw_exchange(host, port, POST + b"Content-Length: 2\r\n\r\n{}")
        assert json.loads(resp.data) == {"method": "POST", "body": "{}", "function": "rentlake-predict"}  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- every response: headers
def _assert_security_headers(headers: dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/", None, 200),
        ("GET", "/docs", None, 200),
        ("GET", "/model", None, 200),
        ("GET", "/openapi.json", None, 200),
        ("POST", "/estimates", b'{"surface_m2": 30}', 200),
        ("POST", "/estimates", b'{"surface_m2": 3}', 422),
        ("GET", "/nowhere", None, 404),
    ],
)
def test_every_api_answer_carries_the_security_headers(
    api: ServedApi, method: str, path: str, body: bytes | None, status: int
) -> None:
    got, headers, _ = api.request(method, path, body, JSON_CT if body else {})
    assert got == status
    _assert_security_headers(headers)


def test_the_servers_own_refusals_carry_the_security_headers(api: ServedApi) -> None:
    resp = raw_exchange(api.host, api.port, POST + b"Content-Length: -1\r\n\r\n")
    assert resp.status == 400
    _assert_security_headers({k.lower(): v for k, v in resp.getheaders()})


def test_page_policy_allows_its_own_script_only(api: ServedApi) -> None:
    # GIVEN the tenant page as served
    import base64
    import hashlib
    import re

    status, headers, html = api.request("GET", "/?lang=en")
    assert status == 200
    policy = dict(p.strip().split(" ", 1) for p in headers["content-security-policy"].split(";"))
    # THEN its inline script is allowed by its sha256, nothing else may run or connect elsewhere
    (script,) = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
