"""Clean function: pending raw batches → clean zone + quarantine, with a quality report per batch."""

from __future__ import annotations

from typing import Any

from rentlake import jobs
from rentlake.clean import CleanParams
from rentlake.config import load
from rentlake.events import parse_clean
from rentlake.lake import Lake
from rentlake.observability import logger, metrics

SETTINGS = load()
log = logger("clean")
metric = metrics("clean")


@metric.log_metrics
@log.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Clean what is pending (or the batches the event names); returns per-batch reports and totals."""
    # A malformed event raises BadEvent: the invocation fails with a message naming the problem.
    request = parse_clean(event)
    params = CleanParams(
        mad_k=request.mad_k or SETTINGS.outlier_mad_k,
        min_group=request.min_group or SETTINGS.outlier_min_group,
    )
    lake = Lake(SETTINGS.bucket, SETTINGS.glue_database)
    reports = jobs.clean_pending(lake, params, dataset=request.dataset, ingestion_ids=request.ingestion_ids)
    clean = sum(r["rows"]["clean"] for r in reports)
    quarantined = sum(r["rows"]["quarantined"] for r in reports)
    metric.add_metric(name="RowsClean", unit="Count", value=clean)
    metric.add_metric(name="RowsQuarantined", unit="Count", value=quarantined)
    return {
        "batches": len(reports),
        "rows": {"in": sum(r["rows"]["in"] for r in reports), "clean": clean, "quarantined": quarantined},
        "reports": reports,
    }
