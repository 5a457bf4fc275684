"""Train function: clean zone → a registry version ``models/<version>/`` (ONNX, card, metrics, test set).

Answers, for the state machine to branch on ``trained``:

* ``{"trained": true, "version": V, "metrics": {...}, ...}``: a new version to evaluate;
* ``{"trained": false, "skipped": true, "version": V, "reason": "no new clean data since version V ..."}``:
  the committed clean batches are those V was trained on, so nothing is written;
* ``{"trained": false, "skipped": false, "reason": "..."}``: the clean data cannot support a model (empty,
  too few rows, one surface, constant rents); nothing is written and the champion is untouched.
"""

from __future__ import annotations

from typing import Any

from rentlake import modeling_jobs
from rentlake.config import load, open_lake
from rentlake.events import parse_train
from rentlake.model import InsufficientDataError
from rentlake.observability import logger, metrics

SETTINGS = load()
log = logger("train")
metric = metrics("train")


@metric.log_metrics
@log.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Train on the clean zone unless it has not changed; returns the version and its held-out metrics."""
    # A malformed event raises BadEvent: the invocation fails with a message naming the problem.
    request = parse_train(event)
    lake = open_lake(SETTINGS)
    try:
        result = modeling_jobs.train(lake, dataset=request.dataset, seed=request.seed, force=request.force)
    except InsufficientDataError as exc:
        log.warning("cannot train: %s", exc)
        return {"trained": False, "skipped": False, "reason": str(exc)}
    metric.add_metric(name="ModelsTrained", unit="Count", value=int(result["trained"]))
    if result["trained"]:
        metric.add_metric(name="HeldoutMAE", unit="None", value=float(result["metrics"]["mae"]))
    return result
