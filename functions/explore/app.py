"""Explore function: clean zone → exploration report under ``reports/<run>/`` (figures, summary, page).

Too little data is not a failure of the function: it answers ``{"explored": false, "reason": "..."}``.
"""

from __future__ import annotations

from typing import Any

from rentlake import modeling_jobs
from rentlake.config import load, open_lake
from rentlake.events import parse_explore
from rentlake.model import InsufficientDataError
from rentlake.observability import logger, metrics

SETTINGS = load()
log = logger("explore")
metric = metrics("explore")


@metric.log_metrics
@log.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write (or reuse) the report of the clean data; returns the run id and the report's keys."""
    # A malformed event raises BadEvent: the invocation fails with a message naming the problem.
    request = parse_explore(event)
    lake = open_lake(SETTINGS)
    try:
        result = modeling_jobs.explore(lake, dataset=request.dataset, run_id=request.run_id)
    except InsufficientDataError as exc:
        log.warning("nothing to explore: %s", exc)
        return {"explored": False, "reason": str(exc)}
    metric.add_metric(name="RowsExplored", unit="Count", value=int(result.get("rows") or 0))
    return result
