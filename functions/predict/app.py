"""Predict function: API Gateway HTTP API (payload v2) -> rent estimates.

Thin on purpose: the API lives in :mod:`rentlake.runtime.api`. Configuration is read once per container;
the champion model is fetched on the first request that needs it and cached (see
:class:`rentlake.runtime.model.ChampionCache`).
"""

from __future__ import annotations

from typing import Any

from rentlake.config import load
from rentlake.lake import Lake
from rentlake.runtime.api import build_app
from rentlake.runtime.model import ChampionCache

SETTINGS = load()
CHAMPION = ChampionCache(
    lambda: Lake(SETTINGS.bucket, SETTINGS.glue_database),  # lazy: no bucket -> 503, not a crashed init
    refresh_seconds=SETTINGS.model_refresh_seconds,
)
app = build_app(CHAMPION)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return app.resolve(event, context)
