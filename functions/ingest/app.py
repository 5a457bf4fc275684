"""Ingest function: landed objects → raw zone (S3 ObjectCreated on ``landing/``, or ``{"keys": [...]}``)."""

from __future__ import annotations

from typing import Any

from rentlake import jobs
from rentlake.config import load
from rentlake.events import parse_ingest
from rentlake.lake import Lake
from rentlake.observability import logger, metrics

SETTINGS = load()
log = logger("ingest")
metric = metrics("ingest")


@metric.log_metrics
@log.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Ingest every object the event names; returns one outcome per object and row counts."""
    # A malformed event raises BadEvent: the invocation fails with a message naming the problem.
    request = parse_ingest(event, bucket=SETTINGS.bucket)
    lake = Lake(SETTINGS.bucket, SETTINGS.glue_database)
    lake.ensure_database()
    outcomes = jobs.ingest_keys(
        lake,
        request.keys,
        dataset=request.dataset,
        chunk_rows=SETTINGS.chunk_rows,
        max_bytes=SETTINGS.max_object_bytes,
    )
    rows = sum(o.rows for o in outcomes)
    metric.add_metric(name="RowsIngested", unit="Count", value=rows)
    metric.add_metric(
        name="ObjectsRejected", unit="Count", value=sum(o.status == "rejected" for o in outcomes)
    )
    return {"rows": {"ingested": rows}, "outcomes": [o.to_dict() for o in outcomes]}
