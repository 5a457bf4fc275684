"""Predict function: API Gateway HTTP API (payload v2) -> rent estimates.

Thin on purpose: the API lives in :mod:`rentlake.runtime.api`. Configuration is read once per container;
the champion model is fetched on the first request that needs it and cached (see
:class:`rentlake.runtime.model.ChampionCache`).
"""

from __future__ import annotations

import time
from typing import Any

from rentlake.config import load
from rentlake.lake import Lake
from rentlake.observability import logger, metrics, request_log_keys
from rentlake.runtime.api import build_app
from rentlake.runtime.model import ChampionCache

SETTINGS = load()
CHAMPION = ChampionCache(
    lambda: Lake(SETTINGS.bucket, SETTINGS.glue_database),  # lazy: no bucket -> 503, not a crashed init
    refresh_seconds=SETTINGS.model_refresh_seconds,
)
app = build_app(CHAMPION)
log = logger("predict")
metric = metrics("predict")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: answer the request, then one JSON log line and the EMF metrics of it."""
    started = time.perf_counter()
    response = app.resolve(event, context)
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = int(response.get("statusCode", 0))
    log.append_keys(**request_log_keys(event, context))
    log.info("request answered", extra={"status": status, "path": event.get("rawPath"),
                                         "estimates": app.served, "latency_ms": round(elapsed_ms, 3)})
    metric.add_metric(name="EstimatesServed", unit="Count", value=app.served)
    metric.add_metric(name="RequestLatency", unit="Milliseconds", value=elapsed_ms)
    if 400 <= status < 500:
        metric.add_metric(name="RequestsRefused", unit="Count", value=1)
    elif status >= 500:
        metric.add_metric(name="ModelUnavailable", unit="Count", value=1)
    metric.flush_metrics()
    return response
