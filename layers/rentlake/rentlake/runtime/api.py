"""The estimates HTTP API: Powertools resolver for API Gateway HTTP API (payload v2), pydantic models.

Routes: ``POST /estimates``, ``GET /model``, ``GET /health``, ``GET /openapi.json``, ``GET /docs``.
Every refusal is a 4xx (or a 503 while no model can be served) with the body
``{"error": {"code", "message", "fields": [{"field", "problem"}]}}``; nothing else leaks (no stack
trace, no internal path).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from rentlake.runtime.errors import ApiError, FieldProblem, ModelUnavailable
from rentlake.runtime.estimate import estimate
from rentlake.runtime.model import ChampionCache, LoadedModel

logger = logging.getLogger(__name__)

MAX_LISTINGS = 1000
MAX_BODY_BYTES = 256 * 1024
MAX_SURFACE_M2 = 10_000.0
MAX_RENT_EUR = 1_000_000.0
JSON = "application/json"
API_TITLE = "rentlake estimates API"
API_VERSION = "1.0.0"

# ----------------------------------------------------------------------------------- request models
Surface = Annotated[
    float,
    Field(
        strict=True,  # "30" or "NaN" as strings are type errors, not silently converted
        gt=0,
        le=MAX_SURFACE_M2,
        allow_inf_nan=False,
        description="Living area in m² (0 < surface ≤ 10 000).",
        examples=[30],
    ),
]
Rent = Annotated[
    float,
    Field(
        strict=True,
        ge=0,
        le=MAX_RENT_EUR,
        allow_inf_nan=False,
        description="Rent paid now, €/month excluding charges; adds a verdict and a percentile.",
        examples=[1250],
    ),
]
District = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=64,
        description="District, as in the training data.",
        examples=["75011"],
    ),
]


class Listing(BaseModel):
    """One listing to estimate."""

    model_config = ConfigDict(extra="forbid")

    surface_m2: Surface
    district: District | None = None
    current_rent_eur: Rent | None = None


class ListingBatch(BaseModel):
    """Up to 1 000 listings estimated in one call."""

    model_config = ConfigDict(extra="forbid")

    listings: Annotated[list[Listing], Field(min_length=1, max_length=MAX_LISTINGS)]

    def __repr__(self) -> str:
        # Powertools formats the route arguments into a debug f-string on every request (even with debug
        # logging off): pydantic's full repr of 1 000 listings would cost more than the inference.
        return f"ListingBatch(<{len(self.listings)} listings>)"


def _request_kind(value: Any) -> str | None:
    """Tell a batch from a single listing (``None``: not a JSON object)."""
    if isinstance(value, Mapping):
        return "batch" if "listings" in value else "listing"
    if isinstance(value, BaseModel):
        return "batch" if isinstance(value, ListingBatch) else "listing"
    return None


EstimateRequest = Annotated[
    Annotated[Listing, Tag("listing")] | Annotated[ListingBatch, Tag("batch")],
    Discriminator(_request_kind),
]


# ---------------------------------------------------------------------------------- response models
class Interval(BaseModel):
    low: int = Field(description="Lower bound, €/month.")
    high: int = Field(description="Upper bound, €/month.")
    level: float = Field(description="Probability of the interval.", examples=[0.9])


class Estimate(BaseModel):
    """The answer for one listing (money rounded to the euro)."""

    rent_eur: int = Field(description="Estimated rent, €/month.", examples=[1190])
    interval: Interval
    model_version: str
    warnings: list[str]
    verdict: Literal["above", "within", "below"] | None = Field(
        None, description="Where the current rent stands against the interval (when given)."
    )
    percentile: float | None = Field(
        None, description="Percentile of the current rent in the predictive distribution (0-100)."
    )


class EstimateBatch(BaseModel):
    estimates: list[Estimate]
    model_version: str


class FieldError(BaseModel):
    field: str = Field(examples=["listings[3].surface_m2"])
    problem: str = Field(examples=["must be greater than 0"])


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError]


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelInfo(BaseModel):
    version: str
    model_name: str | None
    trained_at: str | None
    promoted_at: str | None
    metrics: dict[str, Any]
    features: list[str]
    feature_ranges: dict[str, Any]
    interval: dict[str, Any]


class Health(BaseModel):
    status: str
    model_version: str | None


def _error_responses(*codes: int) -> dict[int, dict[str, Any]]:
    return {
        c: {
            "description": "Refused; the body names the fields at fault.",
            "content": {JSON: {"model": ErrorBody}},
        }
        for c in codes
    }


# ------------------------------------------------------------------------------ validation -> errors
_PROBLEMS: dict[str, str] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "finite_number": "must be a finite number (NaN and Infinity are refused)",
    "float_type": "must be a number (not a string)",
    "int_type": "must be a number (not a string)",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "union_tag_not_found": 'the body must be a JSON object: a listing or {"listings": [...]}',
    "union_tag_invalid": 'the body must be a JSON object: a listing or {"listings": [...]}',
}


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "batch", "listings", 3, "surface_m2")`` -> ``"listings[3].surface_m2"``."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    if parts and parts[0] in ("listing", "batch"):  # discriminated-union tags, not fields
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _problem(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind == "missing" and tuple(err.get("loc", ())) == ("body",):
        return 'the body is empty; send a listing such as {"surface_m2": 30}'
    ctx = err.get("ctx") or {}
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must not be negative (at least {ctx.get('ge')})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}; this value is not plausible"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items per request"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s) required"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be empty"
    return _PROBLEMS.get(kind) or str(err.get("msg") or kind)


def validation_error(exc: RequestValidationError) -> ApiError:
    """Turn a Powertools/pydantic validation error into the API's error (400 or 422)."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e.get("ctx") or {} for e in errors if e.get("type") == "json_invalid")
        where = next((e["loc"][1] for e in errors if len(e.get("loc", ())) > 1), None)
        detail = f"{ctx.get('error', 'invalid JSON')}" + (
            f" at character {where}" if where is not None else ""
        )
        return ApiError(
            400,
            "malformed_json",
            f"the body is not valid JSON: {detail}",
            [FieldProblem("body", "malformed JSON")],
        )
    fields = []
    seen: set[tuple[str, str]] = set()
    for e in errors:
        fp = FieldProblem(field_path(e.get("loc", ())), _problem(e))
        if (fp.field, fp.problem) not in seen:  # unions may report one problem twice
            seen.add((fp.field, fp.problem))
            fields.append(fp)
    names = ", ".join(f.field for f in fields[:5]) + (" …" if len(fields) > 5 else "")
    return ApiError(422, "invalid_request", f"invalid request: {names}", fields)


# ------------------------------------------------------------------------------------------ the app
class EstimatesResolver(APIGatewayHttpResolver):
    """HTTP API resolver that checks size, encoding and content type before routing.

    Powertools runs its validation middleware before any user middleware, so the checks that must come
    first (a 2 MB body must not be parsed; a form post must get a 415, not a 422) live in :meth:`resolve`.
    """

    def __init__(self, champion: ChampionCache, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__(enable_validation=True)
        self.champion = champion
        self.max_body_bytes = max_body_bytes
        self._openapi_json: str | None = None

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway HTTP API v2 event; never raises, never answers a 500."""
        try:
            refusal = self._precheck(event)
            if refusal is not None:
                return error_response(refusal)
            return super().resolve(event, context)
        except Exception:  # last line of defence: log the trace, answer without it
            logger.exception("unexpected error while answering a request")
            return error_response(ApiError(503, "internal_error", "the service could not answer; try again"))

    def _precheck(self, event: Mapping[str, Any]) -> ApiError | None:
        if not isinstance(event, Mapping):
            return ApiError(400, "malformed_request", "not an API Gateway HTTP API event")
        method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
        body = event.get("body")
        if method not in ("POST", "PUT", "PATCH") or not body:
            return None
        raw_len = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
        if raw_len > self.max_body_bytes:
            return ApiError(
                413,
                "payload_too_large",
                f"the body is larger than {self.max_body_bytes // 1024} KiB; "
                f"send at most {MAX_LISTINGS} listings per request",
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
                base64.b64decode(body, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return ApiError(
                    400,
                    "malformed_json",
                    "the body is not valid base64-encoded UTF-8 JSON",
                    [FieldProblem("body", "bad encoding")],
                )
        return None

    def openapi_json(self) -> str:
        """The OpenAPI document (built once: it costs milliseconds)."""
        if self._openapi_json is None:
            self._openapi_json = self.get_openapi_json_schema(
                title=API_TITLE,
                version=API_VERSION,
                description='Paris monthly rent estimates with a 90 % interval: "am I paying too much?"',
            )
        return self._openapi_json


def error_response(err: ApiError) -> dict[str, Any]:
    """The API Gateway v2 response of a refusal (used before and outside routing)."""
    return {
        "statusCode": err.status,
        "headers": {"Content-Type": JSON},
        "body": json.dumps(err.body(), ensure_ascii=False),
        "isBase64Encoded": False,
    }


def _json(status: int, payload: Any) -> Response:
    # Pre-serialised body: Powertools then skips its (slow) generic encoder on the hot path.
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    )


def _err(err: ApiError) -> Response:
    return _json(err.status, err.body())


def model_info(model: LoadedModel) -> dict[str, Any]:
    """What ``GET /model`` answers about the champion."""
    card = model.card.raw
    return {
        "version": model.version,
        "model_name": model.card.model_name,
        "trained_at": model.card.trained_at,
        "promoted_at": model.pointer.get("promoted_at"),
        "metrics": model.card.metrics,
        "features": model.card.features,
        "feature_ranges": card.get("feature_ranges") or {},
        "interval": card.get("interval") or {"level": model.card.interval_level},
    }


def build_app(champion: ChampionCache, *, max_body_bytes: int = MAX_BODY_BYTES) -> EstimatesResolver:
    """Build the estimates API around a champion cache.

    Parameters
    ----------
    champion
        Where the model comes from (one per container).
    max_body_bytes
        Larger bodies are refused with a 413 before being parsed.

    Returns
    -------
    EstimatesResolver
        The resolver; ``resolve(event, context)`` answers an API Gateway HTTP API v2 event.
    """
    app = EstimatesResolver(champion, max_body_bytes=max_body_bytes)

    @app.post(
        "/estimates",
        summary="Estimate the rent of one listing or of up to 1 000",
        description='One listing in, one estimate out; `{"listings": [...]}` in, `{"estimates": [...]}` out.',
        responses={
            200: {"description": "The estimates.", "content": {JSON: {"model": Estimate | EstimateBatch}}},
            **_error_responses(400, 413, 415, 422, 503),
        },
        tags=["estimates"],
    )
    def post_estimates(request: Annotated[EstimateRequest, Body(embed=False)]):  # noqa: ANN202 - see below
        # No return annotation on routes: Powertools would treat it as a response model and re-validate
        # every answer; the answer schemas are declared in ``responses=`` for the OpenAPI document.
        model = app.champion.get()
        if isinstance(request, ListingBatch):
            answers = estimate(model, request.listings)
            return _json(200, {"estimates": answers, "model_version": model.version})
        return _json(200, estimate(model, [request])[0])

    @app.get(
        "/model",
        summary="The champion model: version, training date, metrics, trained feature ranges",
        responses={
            200: {"description": "The champion.", "content": {JSON: {"model": ModelInfo}}},
            **_error_responses(503),
        },
        tags=["model"],
    )
    def get_model():  # noqa: ANN202
        return _json(200, model_info(app.champion.get()))

    @app.get(
        "/health",
        summary="Liveness; names the loaded model without loading one",
        responses={200: {"description": "Alive.", "content": {JSON: {"model": Health}}}},
        tags=["service"],
    )
    def get_health():  # noqa: ANN202
        loaded = app.champion.peek()
        return _json(200, {"status": "ok", "model_version": loaded.version if loaded else None})

    @app.get("/openapi.json", include_in_schema=False)
    def get_openapi():  # noqa: ANN202
        return Response(status_code=200, content_type=JSON, body=app.openapi_json())

    # The Swagger UI's JS and CSS ship inside Powertools and are inlined in the page: no CDN, no network.
    app.enable_swagger(path="/docs", title=API_TITLE, version=API_VERSION)

    routes = {"/estimates", "/model", "/health", "/openapi.json", "/docs"}

    @app.exception_handler(ApiError)
    def on_api_error(exc: ApiError) -> Response:
        return _err(exc)

    @app.exception_handler(RequestValidationError)
    def on_validation_error(exc: RequestValidationError) -> Response:
        return _err(validation_error(exc))

    @app.exception_handler(RequestUnsupportedContentType)
    def on_content_type(exc: RequestUnsupportedContentType) -> Response:
        return _err(ApiError(415, "unsupported_media_type", f"the body must be {JSON}"))

    @app.exception_handler(ModelUnavailable)
    def on_no_model(exc: ModelUnavailable) -> Response:
        return _err(ApiError(503, "model_unavailable", str(exc)))

    @app.not_found
    def on_not_found(exc: NotFoundError) -> Response:
        path = app.current_event.path
        if path in routes:
            return _err(
                ApiError(
                    405, "method_not_allowed", f"{app.current_event.http_method} is not allowed on {path}"
                )
            )
        return _err(ApiError(404, "not_found", f"no route {path}; see /docs"))

    @app.exception_handler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error in a route")
        return _err(ApiError(503, "internal_error", "the service could not answer; try again"))

    return app


Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]
