"""The estimates API's resolver: Powertools' HTTP API resolver, and what must happen around routing.

Powertools validates a request before any user middleware runs, so the checks that must come first live
in :meth:`EstimatesResolver.resolve` (see :func:`precheck`): a body over the size limit is refused before
it is parsed, a form post gets a 415 rather than a 422, and a JSON array is refused naming the expected
shape (Powertools would validate its first element only and quietly answer for it alone). Around every
answer the same method writes the request's log line and metrics (:func:`observe`) and adds the security
headers (:data:`rentlake.runtime.page.SECURITY_HEADERS`); it never raises and never answers a 500.

The function's logger and metrics live here too: ``functions/predict/app.py`` decorates its handler with
them (correlation id, flush once per invocation), the routes add their own metrics to them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from rentlake.observability import bind_library_logs
from rentlake.observability import logger as function_logger
from rentlake.observability import metrics as function_metrics
from rentlake.runtime.errors import JSON, ApiError, FieldProblem, error_response
from rentlake.runtime.page import SECURITY_HEADERS
from rentlake.runtime.schemas import MAX_LISTINGS

SERVICE = "predict"
logger = function_logger(SERVICE)
metrics = function_metrics(SERVICE)
_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
NOT_AN_OBJECT = 'the body must be a JSON object: a listing or {"listings": [...]}'


class EstimatesResolver(APIGatewayHttpResolver):
    """The API Gateway HTTP API (payload v2) resolver of the estimates API (validation on).

    Parameters
    ----------
    max_body_bytes
        Larger bodies are refused with a 413 before being parsed.
    """

    def __init__(self, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__(enable_validation=True)
        self.max_body_bytes = max_body_bytes
        self._openapi_json: str | None = None

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway HTTP API v2 event: prechecks, routing, log line, metrics, headers."""
        started = time.perf_counter()
        bind_library_logs(logger)  # the library's lines (the champion's) carry this request's ids
        response = self._answer(event, context)
        observe(event, response, (time.perf_counter() - started) * 1000)
        headers = response.setdefault("headers", {})
        for name, value in SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        return response

    def _answer(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        try:
            refusal = precheck(event, self.max_body_bytes)
            if refusal is not None:
                return error_response(refusal)
            return super().resolve(event, context)
        except Exception:  # last line of defence: log the trace, answer without it
            _log.exception("unexpected error while answering a request")
            return error_response(ApiError(503, "internal_error", "the service could not answer; try again"))

    def openapi_json(self, **document: Any) -> str:
        """The OpenAPI document (``title``, ``version``, ``description``...), built on first call: it costs
        milliseconds."""
        if self._openapi_json is None:
            self._openapi_json = self.get_openapi_json_schema(**document)
        return self._openapi_json


def precheck(event: Any, max_body_bytes: int) -> ApiError | None:
    """The refusal of a request that must not reach validation, or None.

    Parameters
    ----------
    event
        What Lambda was given (anything: another function's event gets a 400, not a 503).
    max_body_bytes
        The size limit of a body.

    Returns
    -------
    ApiError or None
        400 for what is not an HTTP API event or a body that is not valid base64 UTF-8, 413 for a body too
        large, 415 for a body that is not JSON, 422 for a JSON array; None to route the request.
    """
    if not isinstance(event, Mapping):
        return ApiError(400, "malformed_request", "not an API Gateway HTTP API event")
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
    if not method:
        return ApiError(400, "malformed_request", "not an API Gateway HTTP API event")
    body = event.get("body")
    if method not in ("POST", "PUT", "PATCH") or not body:
        return None
    raw_len = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    if raw_len > max_body_bytes:
        return ApiError(
            413,
            "payload_too_large",
            f"the body is larger than {max_body_bytes // 1024} KiB; send at most {MAX_LISTINGS} listings "
            "per request",
        )
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != JSON:
        return ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON with 'Content-Type: {JSON}' (got {ctype or 'none'!r})",
        )
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ApiError(
                400,
                "malformed_json",
                "the body is not valid base64-encoded UTF-8 JSON",
                [FieldProblem("body", "bad encoding")],
            )
    return _array_refusal(body)


def _array_refusal(body: str) -> ApiError | None:
    """The 422 of a body that is a JSON array (parsed only when it starts like one: a malformed or too
    deeply nested one is left to the validation, which answers 400)."""
    if not body.lstrip().startswith("["):
        return None
    try:
        is_array = isinstance(json.loads(body), list)
    except (ValueError, RecursionError):
        return None
    if not is_array:
        return None
    return ApiError(
        422,
        "invalid_request",
        'the body is a JSON array: send one listing as an object, or a batch as {"listings": [...]}',
        [FieldProblem("body", NOT_AN_OBJECT)],
    )


def observe(event: Any, response: Mapping[str, Any], elapsed_ms: float) -> None:
    """The request's log line and metrics (``RequestLatency``; ``RequestsRefused`` for a 4xx,
    ``ModelUnavailable`` for a 503); the estimates route counts ``EstimatesServed`` itself.

    A served request is logged at DEBUG (API Gateway's access log already records every request), a
    refusal at INFO and an unavailable model at WARNING: the hot path pays a level check and one EMF line.
    """
    status = int(response.get("statusCode", 0))
    emit = logger.debug if status < 400 else (logger.info if status < 500 else logger.warning)
    path = event.get("rawPath") if isinstance(event, Mapping) else None
    emit("request answered", extra={"status": status, "path": path, "latency_ms": round(elapsed_ms, 3)})
    metrics.add_metric(name="RequestLatency", unit="Milliseconds", value=elapsed_ms)
    if 400 <= status < 500:
        metrics.add_metric(name="RequestsRefused", unit="Count", value=1)
    elif status >= 500:
        metrics.add_metric(name="ModelUnavailable", unit="Count", value=1)
