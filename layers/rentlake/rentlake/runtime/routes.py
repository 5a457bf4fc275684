"""The estimates HTTP API in Powertools' shape: one resolver, its routes and its error handlers.

Routes: ``POST /estimates``, ``GET /model``, ``GET /quartiers``, ``GET /plot-data``, ``GET /health``,
``GET /openapi.json``, ``GET /docs`` and ``GET /`` (the tenant page, :mod:`rentlake.runtime.page`).
Requests and answers are described by :mod:`rentlake.runtime.schemas`; every refusal is a 4xx (or a 503
while no model can be served) shaped by :mod:`rentlake.runtime.errors`.

The champion comes from :data:`CHAMPION`, this process's champion cache: ``functions/predict/app.py``
points it at the deployment's lake at cold start, and ``rentlake estimate``/``rentlake serve`` bind it to
their own lake (``CHAMPION.bind(lake)``), as one Lambda container serves one lake.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from rentlake.runtime import page
from rentlake.runtime.champion import ChampionCache
from rentlake.runtime.describe import model_info, plot_data, quartier_list
from rentlake.runtime.errors import (
    JSON,
    ApiError,
    ModelUnavailable,
    malformed,
    validation_error,
)
from rentlake.runtime.estimator import batch_hint, estimates_for
from rentlake.runtime.resolver import EstimatesResolver, metrics
from rentlake.runtime.schemas import (
    FIELD_DOMAINS,
    Estimate,
    EstimateBatch,
    EstimateRequest,
    Health,
    ListingBatch,
    ModelInfo,
    PlotData,
    QuartierList,
    error_responses,
)

_log = logging.getLogger(__name__)

API_TITLE = "rentlake estimates API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    'Paris monthly rent estimates with a 90 % interval: "am I paying too much?". Give `quartier`, `rooms` '
    "and `built` (optionally `city`, `furnished`, `year`) to get, beside the market estimate, the legal "
    "reference rent (`legal`: reference, minimum and maximum per m² and for the surface, and with "
    "`current_rent_eur` a legal verdict); without them the answer carries `legal_hint`. The legal block is "
    "information read from the official reference table (encadrement des loyers), not legal advice."
)
ROUTES = frozenset(
    {"/estimates", "/model", "/quartiers", "/plot-data", "/health", "/openapi.json", "/docs", "/"}
)

app = EstimatesResolver()
# No lake until functions/predict/app.py (or the CLI) gives it one: until then every estimate is a 503.
CHAMPION = ChampionCache()


def json_response(status: int, payload: Any) -> Response:
    """A JSON answer, serialised here: Powertools then skips its (slow) generic encoder on the hot path."""
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    )


# No return annotation on the routes: Powertools would take it for a response model and re-validate every
# answer; the answers' schemas are declared in ``responses=`` for the OpenAPI document.
@app.post(
    "/estimates",
    summary="Estimate the rent of one listing or of up to 1 000",
    description='One listing in, one estimate out; `{"listings": [...]}` in, `{"estimates": [...]}` out.',
    responses={
        200: {"description": "The estimates.", "content": {JSON: {"model": Estimate | EstimateBatch}}},
        **error_responses(400, 413, 415, 422, 503),
    },
    tags=["estimates"],
)
def post_estimates(request: Annotated[EstimateRequest, Body(embed=False)]):
    model = CHAMPION.get()
    if isinstance(request, ListingBatch):
        answers = estimates_for(model, request.listings)
        metrics.add_metric(name="EstimatesServed", unit="Count", value=len(answers))
        return json_response(
            200, {"estimates": answers, "model_version": model.version, **batch_hint(answers)}
        )
    (answer,) = estimates_for(model, [request], batch=False)
    metrics.add_metric(name="EstimatesServed", unit="Count", value=1)
    return json_response(200, answer)


@app.get(
    "/model",
    summary="The champion model: version, training date, metrics, trained feature ranges",
    responses={
        200: {"description": "The champion.", "content": {JSON: {"model": ModelInfo}}},
        **error_responses(503),
    },
    tags=["model"],
)
def get_model():
    return json_response(200, model_info(CHAMPION.get()))


@app.get(
    "/quartiers",
    summary="Quartiers of the legal reference table (names and codes), for autocompletion",
    description="`?city=paris` (default) lists Paris quartiers (7-digit codes); `?city=lille` lists "
    "Lille's IRIS codes with their quartier names.",
    responses={
        200: {"description": "The quartiers.", "content": {JSON: {"model": QuartierList}}},
        **error_responses(422, 503),
    },
    tags=["legal"],
)
def get_quartiers(
    city: Annotated[
        str | None, Query(max_length=32, description="`paris` (default) or `lille`.", examples=["lille"])
    ] = None,
):
    return json_response(200, quartier_list(CHAMPION.get(), city))


@app.get(
    "/plot-data",
    summary="The market plot: the model's estimate and 90 % band over the surface range (+ points)",
    description="`?district=75011` when the model uses the district.",
    responses={
        200: {"description": "The curve.", "content": {JSON: {"model": PlotData}}},
        **error_responses(503),
    },
    tags=["model"],
)
def get_plot_data(
    district: Annotated[
        str | None, Query(max_length=64, description="District, when the model uses it.", examples=["75011"])
    ] = None,
):
    return json_response(200, plot_data(CHAMPION.get(), district or None))


@app.get("/", include_in_schema=False)
def get_page():
    # The page needs no model: it asks /model, /quartiers and /estimates itself.
    event = app.current_event
    lang = page.pick_language(event.get_query_string_value("lang"), event.headers.get("accept-language"))
    headers = {
        "Content-Language": lang,
        "Vary": "Accept-Language",
        "Cache-Control": "no-cache",
        "Content-Security-Policy": page.content_security_policy(),
    }
    return Response(
        status_code=200, content_type="text/html; charset=utf-8", body=page.render(lang), headers=headers
    )


@app.get(
    "/health",
    summary="Liveness; names the loaded model without loading one",
    responses={200: {"description": "Alive.", "content": {JSON: {"model": Health}}}},
    tags=["service"],
)
def get_health():
    loaded = CHAMPION.peek()
    return json_response(200, {"status": "ok", "model_version": loaded.version if loaded else None})


@app.get("/openapi.json", include_in_schema=False)
def get_openapi():
    body = app.openapi_json(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION)
    return Response(status_code=200, content_type=JSON, body=body)


def docs_csp(app: EstimatesResolver, next_middleware: Callable[[EstimatesResolver], Response]) -> Response:
    """The Swagger UI page's Content-Security-Policy: its own inline scripts, by hash."""
    response = next_middleware(app)
    if isinstance(response.body, str):
        response.headers["Content-Security-Policy"] = page.csp_for(response.body)
    return response


# The Swagger UI's JS and CSS ship inside Powertools and are inlined in the page: no CDN, no network.
app.enable_swagger(path="/docs", title=API_TITLE, version=API_VERSION, middlewares=[docs_csp])


# ----------------------------------------------------------------------------------- refusals
def refusal(err: ApiError) -> Response:
    """The answer of a refusal made while routing."""
    return json_response(err.status, err.body())


@app.exception_handler(ApiError)
def on_api_error(exc: ApiError) -> Response:
    return refusal(exc)


@app.exception_handler(RequestValidationError)
def on_validation_error(exc: RequestValidationError) -> Response:
    return refusal(validation_error(list(exc.errors()), FIELD_DOMAINS))


@app.exception_handler(RequestUnsupportedContentType)
def on_content_type(exc: RequestUnsupportedContentType) -> Response:
    return refusal(ApiError(415, "unsupported_media_type", f"the body must be {JSON}"))


@app.exception_handler(ModelUnavailable)
def on_no_model(exc: ModelUnavailable) -> Response:
    return refusal(ApiError(503, "model_unavailable", str(exc)))


@app.not_found
def on_not_found(exc: NotFoundError) -> Response:
    path, method = app.current_event.path, app.current_event.http_method
    if path in ROUTES:
        return refusal(ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}"))
    return refusal(ApiError(404, "not_found", f"no route {path}; see /docs"))


@app.exception_handler(RecursionError)
def on_too_deep(exc: RecursionError) -> Response:
    # JSON nested deeper than the parser's stack (a small body can do it): the client's fault.
    return refusal(malformed("the body is nested too deeply to be a listing", "nested too deeply"))


@app.exception_handler(ValueError)
def on_value_error(exc: ValueError) -> Response:
    # json.loads refuses integers of more than sys.get_int_max_str_digits() digits (4 300) with a
    # ValueError while Powertools parses the body: a malformed request, not a server fault.
    if "integer string conversion" in str(exc):
        return refusal(malformed("the body holds a number with too many digits", "number too long"))
    return on_unexpected(exc)


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response:
    _log.exception("unexpected error in a route")
    return refusal(ApiError(503, "internal_error", "the service could not answer; try again"))
