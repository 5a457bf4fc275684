"""Hostile requests against the served API: size limits, nasty bodies, paths and content types. Nothing may
answer a 5xx, and no answer may carry a stack trace or an internal path."""

from __future__ import annotations

import json

import pytest

from tests.support import ServedApi, leaks_in

JSON_CT = {"Content-Type": "application/json"}

NASTY: list[tuple[str, str, str, bytes | None, dict[str, str]]] = [
    # (id, method, path, body, headers)
    ("huge-float", "POST", "/estimates", b'{"surface_m2": 1e308}', JSON_CT),
    ("overflow-float", "POST", "/estimates", b'{"surface_m2": 1e400}', JSON_CT),
    ("huge-int", "POST", "/estimates", b'{"surface_m2": ' + b"9" * 5000 + b"}", JSON_CT),
    ("big-int", "POST", "/estimates", b'{"surface_m2": ' + b"9" * 4000 + b"}", JSON_CT),
    ("negative-zero", "POST", "/estimates", b'{"surface_m2": -0.0}', JSON_CT),
    ("nan-literal", "POST", "/estimates", b'{"surface_m2": NaN}', JSON_CT),
    (
        "infinity-literal",
        "POST",
        "/estimates",
        b'{"surface_m2": Infinity, "current_rent_eur": -Infinity}',
        JSON_CT,
    ),
    (
        "huge-rooms",
        "POST",
        "/estimates",
        b'{"surface_m2": 30, "quartier": "Belleville", "rooms": ' + b"9" * 400 + b', "built": 1965}',
        JSON_CT,
    ),
    (
        "huge-built",
        "POST",
        "/estimates",
        b'{"surface_m2": 30, "quartier": "Belleville", "rooms": 2, "built": 1e300}',
        JSON_CT,
    ),
    ("nested-arrays", "POST", "/estimates", b"[" * 50_000 + b"]" * 50_000, JSON_CT),  # 400 since 3aa5928
    (
        "nested-objects",
        "POST",
        "/estimates",
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        JSON_CT,
    ),
    (
        "nested-in-field",
        "POST",
        "/estimates",
        b'{"surface_m2": 30, "district": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        JSON_CT,
    ),
    (
        "nested-500",
        "POST",
        "/estimates",
        b'{"surface_m2": 30, "district": ' + b"[" * 500 + b"]" * 500 + b"}",
        JSON_CT,
    ),
    (
        "many-listings",
        "POST",
        "/estimates",
        json.dumps({"listings": [{"surface_m2": 30}] * 1001}).encode(),
        JSON_CT,
    ),
    ("text-plain", "POST", "/estimates", b'{"surface_m2": 30}', {"Content-Type": "text/plain"}),
    ("form", "POST", "/estimates", b"surface_m2=30", {"Content-Type": "application/x-www-form-urlencoded"}),
    (
        "multipart",
        "POST",
        "/estimates",
        b"--x\r\n\r\n30\r\n--x--",
        {"Content-Type": "multipart/form-data; boundary=x"},
    ),
    ("no-content-type", "POST", "/estimates", b'{"surface_m2": 30}', {}),
    ("xml", "POST", "/estimates", b"<surface_m2>30</surface_m2>", {"Content-Type": "application/xml"}),
    ("invalid-utf8", "POST", "/estimates", b'{"surface_m2": 30, "district": "\xff\xfe\xc0"}', JSON_CT),
    (
        "invalid-utf8-binary-ct",
        "POST",
        "/estimates",
        b"\xff\xfe\x00\x01",
        {"Content-Type": "application/octet-stream"},
    ),
    ("utf16-bom", "POST", "/estimates", '{"surface_m2": 30}'.encode("utf-16"), JSON_CT),
    ("nul-bytes", "POST", "/estimates", b'{"surface_m2": 30, "district": "75\\u0000006"}', JSON_CT),
    ("lone-surrogate", "POST", "/estimates", b'{"surface_m2": 30, "district": "\\ud800"}', JSON_CT),
    ("empty-body", "POST", "/estimates", b"", JSON_CT),
    ("json-null", "POST", "/estimates", b"null", JSON_CT),
    ("json-string", "POST", "/estimates", b'"30"', JSON_CT),
    ("traversal", "GET", "/../../etc/passwd", None, {}),
    ("traversal-encoded", "GET", "/%2e%2e/%2e%2e/etc/passwd", None, {}),
    ("traversal-route", "GET", "/estimates/../../../etc/shadow", None, {}),
    ("traversal-docs", "GET", "/docs/../../../../etc/passwd", None, {}),
    ("double-slash", "GET", "//etc/passwd", None, {}),
    ("nul-in-path", "GET", "/model%00.json", None, {}),
    ("query-junk", "GET", "/quartiers?city=%00%ff%fe&city=lille", None, {}),
    ("query-long", "GET", "/plot-data?district=" + "9" * 10_000, None, {}),
    ("delete", "DELETE", "/estimates", None, {}),
    ("put-model", "PUT", "/model", b"{}", JSON_CT),
    ("options", "OPTIONS", "/estimates", None, {}),
    ("head", "HEAD", "/model", None, {}),
]


def _id(case: object) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])  # type: ignore[index]


@pytest.mark.parametrize("name,method,path,body,headers", NASTY, ids=[_id(n) for n in NASTY])
def test_nasty_request_is_refused_or_answered_without_5xx_or_leak(
    api: ServedApi, name: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    # WHEN the request is sent to the served API
    status, resp_headers, data = api.request(method, path, body, headers)
    text = data.decode("utf-8", "replace")
    # THEN it is answered (2xx or 4xx, never a 5xx), and the body names no internal detail
    assert status < 500, (status, text[:300])
    assert leaks_in(text) == [], text[:300]
    if name.startswith("nested-") and name != "nested-500":
        assert status == 400 and json.loads(data)["error"]["code"] == "malformed_json", text[:300]
    if 400 <= status < 500 and method != "HEAD":
        assert resp_headers["content-type"].startswith("application/json"), resp_headers
        assert set(json.loads(data)["error"]) == {"code", "message", "fields"}


def test_oversized_bodies_are_refused_with_413(api: ServedApi) -> None:
    # GIVEN a body over the API's 256 KiB limit (about 4 000 listings)
    over_api = json.dumps({"listings": [{"surface_m2": 30.0, "district": "x" * 60}] * 4000}).encode()
    assert len(over_api) > 256 * 1024
    # WHEN posted THEN 413 payload_too_large, with the error body
    status, headers, data = api.request("POST", "/estimates", over_api, JSON_CT)
    assert status == 413, data[:200]
    assert json.loads(data)["error"]["code"] == "payload_too_large"
    assert "256 KiB" in json.loads(data)["error"]["message"]
    # AND a Content-Length over the server's 8 MiB read limit is refused before any body byte is read
    import http.client

    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    conn.putrequest("POST", "/estimates")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**12))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "payload_too_large"
    conn.close()
