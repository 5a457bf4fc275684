"""The estimates HTTP API: Powertools resolver for API Gateway HTTP API (payload v2), pydantic models.

Routes: ``POST /estimates``, ``GET /model``, ``GET /quartiers``, ``GET /plot-data``, ``GET /health``,
``GET /openapi.json``, ``GET /docs`` and ``GET /`` (the tenant page, :mod:`rentlake.runtime.page`).
Every refusal is a 4xx (or a 503 while no model can be served) with the body
``{"error": {"code", "message", "fields": [{"field", "problem"}]}}``; nothing else leaks (no stack
trace, no internal path).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from rentlake.observability import bind_library_logs, request_log_keys
from rentlake.runtime import legal, page
from rentlake.runtime.errors import ApiError, FieldProblem, ModelUnavailable
from rentlake.runtime.estimate import TABLE_UNAVAILABLE, batch_hint, estimate
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


City = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=32,
        description="City of the legal reference table: `paris` (default) or `lille`.",
        examples=["paris"],
    ),
]
Quartier = Annotated[
    str | int,
    Field(
        description="Paris: the quartier's name (accents, case, 'St'/'Saint' do not matter) or its 7-digit "
        "code (751AAQQ); Lille: the 9-digit IRIS code. See `GET /quartiers`.",
        examples=["Belleville"],
    ),
]
Rooms = Annotated[
    int,
    Field(strict=True, description="Main rooms, 1-4; more than 4 counts as 4.", examples=[2]),
]
Built = Annotated[
    int | str,
    Field(
        description="Construction year, or one of the periods 'Avant 1946', '1946-1970', '1971-1990', "
        "'Apres 1990'.",
        examples=[1965],
    ),
]
Furnished = Annotated[bool, Field(description="Furnished letting (default false).", examples=[False])]
LegalYear = Annotated[
    int,
    Field(strict=True, description="Year of the reference table (default: the latest).", examples=[2017]),
]


class Listing(BaseModel):
    """One listing to estimate; ``quartier``, ``rooms`` and ``built`` together add the legal answer."""

    model_config = ConfigDict(extra="forbid")

    surface_m2: Surface
    district: District | None = None
    current_rent_eur: Rent | None = None
    city: City | None = None
    quartier: Quartier | None = None
    rooms: Rooms | None = None
    built: Built | None = None
    furnished: Furnished | None = None
    year: LegalYear | None = None


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


class QuartierRef(BaseModel):
    name: str = Field(examples=["Belleville"])
    code: str = Field(examples=["7512077"])


class LegalAnswer(BaseModel):
    """The legal reference rent (encadrement des loyers) of the listing, read from the reference table.

    Information from the official table, not legal advice (``notice``). Amounts exclude charges.
    """

    ref_eur_m2: float = Field(description="Reference rent, €/m²/month.", examples=[28.4])
    min_eur_m2: float = Field(description="Minimum ('loyer de référence minoré'), €/m²/month.")
    max_eur_m2: float = Field(description="Maximum ('loyer de référence majoré'), €/m²/month.")
    ref_rent_eur: float | None = Field(None, description="Reference rent × surface, €/month (to the cent).")
    min_rent_eur: float | None = Field(None, description="Minimum × surface, €/month.")
    max_rent_eur: float | None = Field(None, description="Maximum × surface, €/month.")
    year: int = Field(description="Year of the table used.", examples=[2017])
    source: str = Field(description="The table's source.")
    city: Literal["PARIS", "LILLE"]
    quartier: QuartierRef
    rooms: int = Field(description="Room class used (1-4).")
    period: str = Field(description="Construction period used.", examples=["1946-1970"])
    furnished: bool
    current_rent_eur: float | None = Field(None, description="The rent given, when given.")
    verdict: Literal["above_max", "within", "below_min"] | None = Field(
        None, description="Where the current rent stands against the legal band (bounds included)."
    )
    notice: str = Field(description="Information from the reference table, not legal advice.")


class Estimate(BaseModel):
    """The answer for one listing (money rounded to the euro; legal amounts to the cent)."""

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
    legal: LegalAnswer | None = Field(
        None,
        description="The legal reference rent, when the listing gives quartier, rooms and built (and the "
        "model carries a reference table). With current_rent_eur it adds a legal verdict.",
    )
    legal_hint: str | None = Field(
        None,
        description="Instead of `legal`: the fields that would add the legal answer, or why the reference "
        "table is unavailable.",
    )


class EstimateBatch(BaseModel):
    estimates: list[Estimate]
    model_version: str
    legal_hint: str | None = Field(
        None,
        description="Present when some listings gave no legal field: the fields that would add the legal "
        "answer (said once for the batch; listings with some legal fields carry their own hint).",
    )


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
    legal: dict[str, Any] = Field(
        description="The legal reference table served with the model: `available`, `years` per city, "
        "`source`, or `problem` when it could not be loaded."
    )


class QuartierList(BaseModel):
    city: Literal["PARIS", "LILLE"]
    years: list[int]
    quartiers: list[QuartierRef]
    hint: str | None = None


class BandPoint(BaseModel):
    surface_m2: float
    rent_eur: float
    low: float
    high: float


class PlotData(BaseModel):
    model_version: str
    level: float
    surface_range: list[float]
    district: str | None
    band: list[BandPoint] = Field(description="The model's estimate and interval over the surface range.")
    points: list[list[float]] = Field(
        description="Up to 500 training listings as [surface_m2, rent_eur], when the model card has them."
    )


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
    "float_type": "must be a number (not a string, boolean or null)",
    "int_type": "must be a whole number (not a string, boolean or null)",
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
    if parts and parts[0] in ("body", "query"):
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
        # Estimates answered by the last request (for the function's EstimatesServed metric); a Lambda
        # environment serves one request at a time.
        self.served = 0

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway HTTP API v2 event; never raises, never answers a 500."""
        self.served = 0
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
        if not method:  # not API Gateway's (e.g. another function's event): the caller's fault, not a 503
            return ApiError(400, "malformed_request", "not an API Gateway HTTP API event")
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
                description='Paris monthly rent estimates with a 90 % interval: "am I paying too much?". '
                "Give `quartier`, `rooms` and `built` (optionally `city`, `furnished`, `year`) to get, "
                "beside the market estimate, the legal reference rent (`legal`: reference, minimum and "
                "maximum per m² and for the surface, and with `current_rent_eur` a legal verdict); "
                "without them the answer carries `legal_hint`. The legal block is information read from "
                "the official reference table (encadrement des loyers), not legal advice.",
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
        "legal": legal_info(model),
    }


def legal_info(model: LoadedModel) -> dict[str, Any]:
    """What ``GET /model`` says about the reference table served with the champion."""
    table = model.legal
    if table is None:
        return {
            "available": False,
            "problem": TABLE_UNAVAILABLE if model.legal_problem else legal.hint(available=False),
        }
    return {
        "available": True,
        "years": {city.lower(): table.years(city) for city in table.cities},
        "source": table.source.get("dataset") if isinstance(table.source, dict) else None,
        "fields": ["city", "quartier", "rooms", "built", "furnished", "year"],
    }


def quartier_list(model: LoadedModel, city: str | None) -> dict[str, Any]:
    """``GET /quartiers``: names and codes of a city's quartiers (Lille: IRIS codes) in the legal table.

    Raises
    ------
    ApiError
        422 naming ``city`` for a city the table does not cover.
    """
    try:
        key = legal.normalise_city(city)
    except legal.LegalLookupError as exc:
        raise ApiError(422, "invalid_request", exc.args[0], [FieldProblem(exc.field, exc.message)]) from exc
    table = model.legal
    if table is None or key not in table.cities:
        hint = TABLE_UNAVAILABLE if model.legal_problem else legal.hint(available=False)
        return {"city": key, "years": [], "quartiers": [], "hint": hint}
    names = table.cities[key].names
    rows = sorted(({"name": n, "code": c} for c, n in names.items()), key=lambda q: (q["name"], q["code"]))
    return {"city": key, "years": table.years(key), "quartiers": rows, "hint": None}


PLOT_GRID = 48
MAX_PLOT_POINTS = 500


def plot_data(model: LoadedModel, district: str | None) -> dict[str, Any]:
    """``GET /plot-data``: the model's band over the trained surface range, and training points if any.

    The band is evaluated by the ONNX model itself over a grid of :data:`PLOT_GRID` surfaces (one
    inference call); the points come from the card's ``plot_sample`` (``[[surface_m2, rent_eur], ...]``
    or ``[{"surface_m2", "rent_eur"}, ...]``), at most :data:`MAX_PLOT_POINTS`, and are empty otherwise.
    """
    lo = model.card.surface_min if model.card.surface_min is not None else 9.0
    hi = model.card.surface_max if model.card.surface_max is not None else 250.0
    lo, hi = max(lo, 1.0), max(hi, lo + 1.0)
    step = (hi - lo) / (PLOT_GRID - 1)
    grid = [lo + i * step for i in range(PLOT_GRID)]
    districts = None
    if model.uses_district:
        districts = [district or ""] * PLOT_GRID
    rent, low, high = model.predict(grid, districts)  # type: ignore[arg-type]
    band = [
        {"surface_m2": round(s, 2), "rent_eur": round(r, 1), "low": round(a, 1), "high": round(b, 1)}
        for s, r, a, b in zip(grid, rent.tolist(), low.tolist(), high.tolist(), strict=True)
    ]
    return {
        "model_version": model.version,
        "level": model.card.interval_level,
        "surface_range": [lo, hi],
        "district": district if model.uses_district else None,
        "band": band,
        "points": _card_points(model.card.raw.get("plot_sample")),
    }


def _card_points(sample: Any) -> list[list[float]]:
    """Training points from the card, tolerant of its two shapes; anything else gives none."""
    out: list[list[float]] = []
    if not isinstance(sample, list):
        return out
    for p in sample[:MAX_PLOT_POINTS]:
        if isinstance(p, Mapping):
            s, r = p.get("surface_m2"), p.get("rent_eur")
        elif isinstance(p, (list, tuple)) and len(p) >= 2:
            s, r = p[0], p[1]
        else:
            continue
        if isinstance(s, (int, float)) and isinstance(r, (int, float)) and s > 0 and r > 0:
            out.append([float(s), float(r)])
    return out


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
            app.served = len(answers)
            return _json(200, {"estimates": answers, "model_version": model.version, **batch_hint(answers)})
        answer = estimate(model, [request], batch=False)[0]
        app.served = 1
        return _json(200, answer)

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
        "/quartiers",
        summary="Quartiers of the legal reference table (names and codes), for autocompletion",
        description="`?city=paris` (default) lists Paris quartiers (7-digit codes); `?city=lille` lists "
        "Lille's IRIS codes with their quartier names.",
        responses={
            200: {"description": "The quartiers.", "content": {JSON: {"model": QuartierList}}},
            **_error_responses(422, 503),
        },
        tags=["legal"],
    )
    def get_quartiers(
        city: Annotated[
            str | None, Query(max_length=32, description="`paris` (default) or `lille`.", examples=["lille"])
        ] = None,
    ):  # noqa: ANN202
        return _json(200, quartier_list(app.champion.get(), city))

    @app.get(
        "/plot-data",
        summary="The market plot: the model's estimate and 90 % band over the surface range (+ points)",
        description="`?district=75011` when the model uses the district.",
        responses={
            200: {"description": "The curve.", "content": {JSON: {"model": PlotData}}},
            **_error_responses(503),
        },
        tags=["model"],
    )
    def get_plot_data(
        district: Annotated[
            str | None,
            Query(max_length=64, description="District, when the model uses it.", examples=["75011"]),
        ] = None,
    ):  # noqa: ANN202
        return _json(200, plot_data(app.champion.get(), district or None))

    @app.get("/", include_in_schema=False)
    def get_page():  # noqa: ANN202
        # The page needs no model: it asks /model, /quartiers and /estimates itself.
        event = app.current_event
        lang = page.pick_language(event.get_query_string_value("lang"), event.headers.get("accept-language"))
        return Response(
            status_code=200,
            content_type="text/html; charset=utf-8",
            body=page.render(lang),
            headers={"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": "no-cache"},
        )

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

    routes = {"/estimates", "/model", "/quartiers", "/plot-data", "/health", "/openapi.json", "/docs", "/"}

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

    @app.exception_handler(RecursionError)
    def on_too_deep(exc: RecursionError) -> Response:
        # JSON nested deeper than the parser's stack (a small body can do it): the client's fault.
        return _err(ApiError(400, "malformed_json", "the body is nested too deeply to be a listing",
                             [FieldProblem("body", "nested too deeply")]))

    @app.exception_handler(ValueError)
    def on_value_error(exc: ValueError) -> Response:
        # json.loads refuses integers of more than sys.get_int_max_str_digits() digits (4 300) with a
        # ValueError while Powertools parses the body: a malformed request, not a server fault.
        if "integer string conversion" in str(exc):
            return _err(ApiError(400, "malformed_json", "the body holds a number with too many digits",
                                 [FieldProblem("body", "number too long")]))
        logger.exception("unexpected error in a route")
        return _err(ApiError(503, "internal_error", "the service could not answer; try again"))

    @app.exception_handler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error in a route")
        return _err(ApiError(503, "internal_error", "the service could not answer; try again"))

    return app


Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


def observed_resolve(app: EstimatesResolver, event: Mapping[str, Any], context: Any, *, log: Any,
                     metric: Any) -> dict[str, Any]:
    """Answer a request with its observability: request ids on every log line, one log line for the
    request, and its EMF metrics (``EstimatesServed``, ``RequestLatency``, refusals).

    A served estimate is logged at DEBUG (API Gateway's access log already records every request);
    a refusal at INFO and an unavailable model at WARNING, so the cost on the hot path is a level check
    and one EMF line.

    Parameters
    ----------
    app
        The API.
    event, context
        Lambda's arguments.
    log, metric
        The function's Powertools Logger and Metrics.
    """
    bind_library_logs(log)
    log.append_keys(**request_log_keys(event, context))  # before resolving: the model's lines too
    started = time.perf_counter()
    response = app.resolve(event, context)
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = int(response.get("statusCode", 0))
    emit = log.debug if status < 400 else (log.info if status < 500 else log.warning)
    extra = {"status": status, "path": event.get("rawPath"), "estimates": app.served}
    emit("request answered", extra={**extra, "latency_ms": round(elapsed_ms, 3)})
    metric.add_metric(name="EstimatesServed", unit="Count", value=app.served)
    metric.add_metric(name="RequestLatency", unit="Milliseconds", value=elapsed_ms)
    if 400 <= status < 500:
        metric.add_metric(name="RequestsRefused", unit="Count", value=1)
    elif status >= 500:
        metric.add_metric(name="ModelUnavailable", unit="Count", value=1)
    metric.flush_metrics()
    return response
