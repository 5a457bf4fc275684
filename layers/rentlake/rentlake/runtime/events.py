"""API Gateway HTTP API (payload format 2.0) events, built from plain HTTP requests, and back.

Used by ``rentlake estimate`` and ``rentlake serve`` to drive the predict handler exactly as API Gateway
does, and by the tests and the benchmark.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

# Content types API Gateway passes as text; anything else arrives base64-encoded.
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def http_api_event(
    method: str,
    path: str,
    body: bytes | str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """Build the event API Gateway HTTP API sends to a Lambda proxy integration (``$default`` route).

    Parameters
    ----------
    method
        HTTP method.
    path
        Raw path (``/estimates``).
    body
        Request body; binary (non-text) bodies are base64-encoded as API Gateway does.
    headers
        Request headers (names are lower-cased, repeated values already joined with commas).
    query
        Raw query string, without ``?``.
    source_ip
        Client address.

    Returns
    -------
    dict
        The event.
    """
    hdrs = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    text, is_b64 = _encode_body(body, hdrs.get("content-type", ""))
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": hdrs.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": hdrs.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_b64,
    }
    if params:
        event["queryStringParameters"] = params
    if text is not None:
        event["body"] = text
    return event


def _encode_body(body: bytes | str | None, ctype: str) -> tuple[str | None, bool]:
    """The event's ``body`` and ``isBase64Encoded``: text types as text when they are UTF-8, anything
    else base64-encoded, as API Gateway does."""
    if body is None or len(body) == 0:
        return None, False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    encoded = base64.b64encode(raw).decode("ascii"), True
    if not ctype.startswith(_TEXT_TYPES):
        return encoded
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:  # a text type that is not UTF-8: passed on base64-encoded
        return encoded


def response_body(response: Mapping[str, Any]) -> bytes:
    """The body bytes of a Lambda proxy response (base64 decoded when flagged)."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def response_headers(response: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Headers of a Lambda proxy response, cookies as ``Set-Cookie`` lines."""
    out = [(str(k), str(v)) for k, v in (response.get("headers") or {}).items()]
    for name, values in (response.get("multiValueHeaders") or {}).items():
        out.extend((str(name), str(v)) for v in values)
    out.extend(("Set-Cookie", str(c)) for c in response.get("cookies") or [])
    return out
