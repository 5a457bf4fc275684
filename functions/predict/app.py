"""Predict function: API Gateway HTTP API (payload v2) -> rent estimates.

The API lives in :mod:`rentlake.runtime.routes` (routes, then :mod:`rentlake.runtime.estimator` for the
numbers). Here: the container's configuration, read once at cold start, and the Powertools decorators that
put API Gateway's request id on every log line as the correlation id and flush the metrics once per
invocation.

``CHAMPION`` is the container's champion cache (fetched on the first request that needs it, then
refreshed every ``RENTLAKE_MODEL_REFRESH_SECONDS``); ``rentlake estimate`` and ``rentlake serve`` bind it
to their own lake.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from rentlake.config import load, open_lake
from rentlake.runtime.resolver import logger, metrics
from rentlake.runtime.routes import CHAMPION, app

SETTINGS = load()
# Opened on first use: no bucket configured is a 503 answer, not a crashed cold start.
CHAMPION.use_lake(lambda: open_lake(SETTINGS), refresh_seconds=SETTINGS.model_refresh_seconds)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: the API's answer to one HTTP API event."""
    return app.resolve(event, context)
