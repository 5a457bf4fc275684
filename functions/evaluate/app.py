"""Evaluate function: held-out metrics, diagnostics and the quality gate of a version; promotes it (switches
``models/champion.json``) only when the gate passes.

Accepts ``{"version": V, "tolerance": 0.05, "promote": true}`` or the train function's output as is. The
state machine branches on ``promoted``; ``gate`` holds the decision and its reasons. When training was
skipped or refused, the answer is ``{"promoted": false, "skipped": true, "reason": ...}`` and nothing is
written. When another promotion switched the champion while this version was judged, nothing switches:
``promoted`` is false and ``lost_to`` names the new champion.
"""

from __future__ import annotations

from typing import Any

from rentlake.events import parse_evaluate
from rentlake.handlers import BatchFunction
from rentlake.stages import evaluate

FUNCTION = BatchFunction("evaluate")


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Evaluate a version against the champion and promote it when the gate passes."""
    # An unknown version or a corrupted model file raises RegistryError: the invocation fails with a
    # message naming the problem, and the champion is untouched.
    result = evaluate.run(FUNCTION.lake(), parse_evaluate(event))
    passed = bool((result.get("gate") or {}).get("passed"))
    # The gate's decision, one data point per evaluation (0 or 1): alarms and dashboards count them.
    FUNCTION.count("GatePassed", int(passed))
    FUNCTION.count("GateFailed", int(not passed))
    FUNCTION.count("Promoted", int(bool(result.get("promoted"))))
    return result
