"""Predict function: API Gateway HTTP API (payload v2) -> rent estimates.

Thin on purpose: the API lives in :mod:`rentlake.runtime.api`. Configuration is read once per container;
the champion model is fetched on the first request that needs it and cached (see
:class:`rentlake.runtime.model.ChampionCache`).
"""

from __future__ import annotations

from typing import Any

from rentlake.config import load
from rentlake.lake import Lake
from rentlake.observability import logger, metrics
from rentlake.runtime.api import build_app, observed_resolve
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
    """Lambda entry point: the API's answer, with the request's log ids and metrics."""
    return observed_resolve(app, event, context, log=log, metric=metric)
