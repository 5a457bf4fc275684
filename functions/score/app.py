"""Score function: a file of listings under ``score/`` -> the same rows with estimates under ``scored/``.

Triggered by S3 ``ObjectCreated`` on ``score/`` or invoked directly with ``{"keys": ["score/x.csv"]}``.
The domain logic is :func:`rentlake.scoring.score_object`; this handler parses the event and reports.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from rentlake.config import load
from rentlake.lake import Lake, ObjectNotFound, keys
from rentlake.runtime.errors import ModelUnavailable
from rentlake.runtime.model import ChampionCache
from rentlake.scoring import ScoringError, score_object

logger = logging.getLogger(__name__)
SETTINGS = load()
CHUNK_ROWS = min(SETTINGS.chunk_rows, 100_000)
CHAMPION = ChampionCache(
    lambda: Lake(SETTINGS.bucket, SETTINGS.glue_database), refresh_seconds=SETTINGS.model_refresh_seconds
)


def event_keys(event: dict[str, Any]) -> list[str]:
    """Keys to score: ``{"keys": [...]}`` or the S3 records on ``score/`` (URL-decoded)."""
    if "keys" in event:
        return [str(k) for k in event["keys"]]
    prefix = keys.score_input_prefix()
    out = []
    for record in S3Event(event).records:
        key = unquote_plus(record.s3.get_object.key)  # S3 events URL-encode keys (space -> '+')
        if key.startswith(prefix):
            out.append(key)
        else:
            logger.warning("ignoring %s: not under %s", key, prefix)
    return out


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: one result per key, ``error`` for a file that cannot be scored.

    A file that cannot be scored (format, content, missing, no champion) is an answer, not a failure.
    Any other lake error (S3 still failing after its retries) fails the invocation, so that Lambda retries
    the event instead of reporting a file as done that was never scored.
    """
    results: list[dict[str, Any]] = []
    for key in event_keys(event):
        try:
            model = CHAMPION.get()
            results.append(score_object(CHAMPION.lake, key, model, chunk_rows=CHUNK_ROWS).as_dict())
        except (ScoringError, ModelUnavailable, ObjectNotFound) as exc:
            logger.error("cannot score %s: %s", key, exc)
            results.append({"input_key": key, "error": str(exc)})
    return {"scored": results}
