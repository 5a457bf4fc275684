"""Score function: a file of listings under ``score/`` -> the same rows with estimates under ``scored/``.

Triggered by S3 ``ObjectCreated`` on ``score/`` or invoked directly with ``{"keys": ["score/x.csv"]}``.
"""

from __future__ import annotations

from typing import Any

from rentlake.events import parse_score
from rentlake.handlers import BatchFunction
from rentlake.runtime.champion import ChampionCache
from rentlake.stages import score

FUNCTION = BatchFunction("score", catalog=False)
CHAMPION = ChampionCache(FUNCTION.lake, refresh_seconds=FUNCTION.settings.model_refresh_seconds)
CHUNK_ROWS = min(FUNCTION.settings.chunk_rows, score.CHUNK_ROWS)


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Score every file the event names; one result per file, ``error`` for a file that cannot be scored."""
    request = parse_score(event)
    result = score.run(CHAMPION, request, chunk_rows=CHUNK_ROWS)
    FUNCTION.count("RowsScored", result.rows)
    FUNCTION.count("FilesNotScored", result.errors)
    return result.to_dict()
