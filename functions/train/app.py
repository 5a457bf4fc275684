"""Train function: clean zone → a registry version ``models/<version>/`` (ONNX, card, metrics, test set).

Answers, for the state machine to branch on ``trained``:

* ``{"trained": true, "version": V, "metrics": {...}, ...}``: a new version to evaluate;
* ``{"trained": false, "skipped": true, "version": V, "reason": "no new clean data since version V ..."}``:
  the committed clean batches are those V was trained on, so nothing is written;
* ``{"trained": false, "skipped": false, "reason": "..."}``: the clean data cannot support a model (empty,
  too few rows, one surface, constant rents); nothing is written and the champion is untouched.

Every answer that reviewed the batches lists the batches held for review (``held``, ``newly_held``): their
€/m² depart from the earlier batches', so they train nothing until accepted. The metric ``BatchesHeld``
counts the newly held ones, and each is published to the SNS topic ``RENTLAKE_REVIEW_TOPIC_ARN`` when
that variable is set (the function then needs ``sns:Publish`` on it).
"""

from __future__ import annotations

import os
from typing import Any

from rentlake.events import parse_train
from rentlake.handlers import BatchFunction
from rentlake.stages import review, train

FUNCTION = BatchFunction("train", insufficient={"trained": False, "skipped": False})


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Train on the clean zone unless it has not changed; returns the version and its held-out metrics."""
    request = parse_train(event)
    result = train.run(FUNCTION.lake(), request)
    newly_held = result.get("newly_held") or []
    FUNCTION.count("BatchesHeld", len(newly_held))
    review.notify_held(request.dataset, newly_held, os.environ.get(review.TOPIC_ENV))
    FUNCTION.count("ModelsTrained", int(result["trained"]))
    if result["trained"]:
        FUNCTION.count("HeldoutMAE", float(result["metrics"]["mae"]), unit="None")
    return result
