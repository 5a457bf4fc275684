"""Evaluate function: held-out metrics, diagnostics and the quality gate of a version; promotes it (switches
``models/champion.json``) only when the gate passes.

Accepts ``{"version": V, "tolerance": 0.05, "promote": true}`` or the train function's output as is. The
state machine branches on ``promoted``; ``gate`` holds the decision and its reasons. When training was
skipped or refused, the answer is ``{"promoted": false, "skipped": true, "reason": ...}`` and nothing is
written.
"""

from __future__ import annotations

from typing import Any

from rentlake import modeling_jobs, registry
from rentlake.config import load, open_lake
from rentlake.events import parse_evaluate
from rentlake.observability import logger, metrics

SETTINGS = load()
log = logger("evaluate")
metric = metrics("evaluate")


@metric.log_metrics
@log.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Evaluate a version against the champion and promote it when the gate passes."""
    # A malformed event raises BadEvent; an unknown version or a corrupted model file raises RegistryError:
    # the invocation fails with a message naming the problem, and the champion is untouched.
    request = parse_evaluate(event)
    lake = open_lake(SETTINGS)
    if request.version is None:
        result = modeling_jobs.skipped_evaluation(str(request.skip_reason))
    else:
        result = modeling_jobs.evaluate(lake, request.version, tolerance=request.tolerance,
                                        promote=request.promote)
    # Whatever the gate said, the champion answers with the newest reference table (a later year may
    # have been ingested while the listings, and so the model, stayed the same).
    result["legal_refreshed"] = registry.refresh_legal(lake)
    gate = result.get("gate") or {}
    # The gate's decision, one data point per evaluation (0 or 1): alarms and dashboards count them.
    metric.add_metric(name="GatePassed", unit="Count", value=int(bool(gate.get("passed"))))
    metric.add_metric(name="GateFailed", unit="Count", value=int(not gate.get("passed")))
    metric.add_metric(name="Promoted", unit="Count", value=int(bool(result.get("promoted"))))
    return result
