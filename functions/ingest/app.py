"""Ingest function: landed objects → raw zone (S3 ObjectCreated on ``landing/``, or ``{"keys": [...]}``)."""

from __future__ import annotations

from typing import Any

from rentlake.events import parse_ingest
from rentlake.handlers import BatchFunction
from rentlake.stages import ingest

FUNCTION = BatchFunction("ingest")


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Ingest every object the event names; returns one outcome per object and row counts."""
    request = parse_ingest(event, bucket=FUNCTION.settings.bucket)
    result = ingest.run(FUNCTION.lake(), request, FUNCTION.settings)
    FUNCTION.count("RowsIngested", result.rows)
    FUNCTION.count("ObjectsRejected", result.rejected)
    FUNCTION.count("IngestInternalErrors", result.internal_errors)
    return result.to_dict()
