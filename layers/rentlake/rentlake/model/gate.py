"""Promotion gate: may a freshly trained challenger replace the serving champion?

A challenger passes when

1. its held-out metrics are usable: finite MAE, and the served interval's held-out coverage lies in
   ``COVERAGE_RANGE`` = [0.85, 0.95] around the nominal 0.90 (too low misleads tenants, too high means
   uselessly wide intervals);
2. its diagnostics carry no *blocking* flag. Only ``influential_point`` blocks: a fit decided by a single
   point (leverage ≈ 1 or huge Cook's distance) is a data problem no model family fixes. The other flags are
   expected on rents and handled by design, so they are reported but do not block: ``heteroscedasticity``
   and ``nonlinearity`` of the plain OLS line (the served family works on the log scale with conformal
   intervals) and ``outlier`` (the intervals are calibrated on held-out residuals; the robust candidate
   competes in the selection);
3. with a champion, its held-out MAE on the same rows is not worse than the champion's by more than
   ``tolerance`` (relative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GateDecision", "decide", "BLOCKING_FLAGS", "COVERAGE_RANGE"]

BLOCKING_FLAGS = frozenset({"influential_point"})
COVERAGE_RANGE = (0.85, 0.95)


@dataclass
class GateDecision:
    """Outcome of :func:`decide`."""

    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"decision": "promote" | "keep", "passed": bool, "reasons": [...]}``."""
        return {
            "decision": "promote" if self.passed else "keep",
            "passed": self.passed,
            "reasons": list(self.reasons),
        }


def _diagnoses(diagnostics: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Accept a single diagnosis dict (with ``flags``) or ``TrainResult.diagnostics`` (several of them)."""
    if not diagnostics:
        return {}
    if "flags" in diagnostics:
        return {"diagnostics": diagnostics}
    return {k: v for k, v in diagnostics.items() if isinstance(v, Mapping) and "flags" in v}


def _num(m: Mapping[str, Any], key: str) -> float:
    v = m.get(key)
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


def decide(
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    diagnostics: Mapping[str, Any] | None,
    *,
    tolerance: float = 0.05,
) -> GateDecision:
    """Decide whether to promote the challenger.

    Parameters
    ----------
    challenger_metrics : mapping
        Held-out metrics of the challenger (needs ``mae`` and ``coverage``), e.g. ``TrainResult.metrics``.
    champion_metrics : mapping or None
        The champion's metrics on the *same* held-out rows (``score_onnx`` + ``metrics``), or None.
    diagnostics : mapping or None
        ``TrainResult.diagnostics`` or a single ``Diagnosis.to_dict()``.
    tolerance : float
        Allowed relative MAE degradation versus the champion.

    Returns
    -------
    GateDecision
        ``passed`` and human-readable reasons (every check adds one, passing or not).
    """
    reasons: list[str] = []
    ok = True
    mae = _num(challenger_metrics, "mae")
    cov = _num(challenger_metrics, "coverage")
    if not math.isfinite(mae):
        ok = False
        reasons.append("challenger has no finite held-out MAE")
    lo, hi = COVERAGE_RANGE
    if not (math.isfinite(cov) and lo <= cov <= hi):
        ok = False
        reasons.append(f"held-out coverage of the 90 % interval is {cov:.3f}, outside [{lo}, {hi}]")
    else:
        reasons.append(f"held-out coverage {cov:.3f} within [{lo}, {hi}]")
    for name, d in _diagnoses(diagnostics).items():
        flags = list(d.get("flags", []))
        blocking = [f for f in flags if f in BLOCKING_FLAGS]
        if blocking:
            ok = False
            why = "; ".join(str(d.get("details", {}).get(f, {}).get("reason", f)) for f in blocking)
            reasons.append(f"{name}: blocking flag(s) {blocking}: {why}")
        elif flags:
            reasons.append(
                f"{name}: non-blocking flag(s) {flags} (handled by the log-scale model and conformal "
                f"intervals)"
            )
    if champion_metrics is None:
        reasons.append("no champion: the challenger is judged on its own diagnostics")
    else:
        c_mae = _num(champion_metrics, "mae")
        if not math.isfinite(c_mae):
            reasons.append("champion has no finite MAE: the challenger is judged on its own diagnostics")
        elif math.isfinite(mae) and mae > c_mae * (1.0 + tolerance):
            ok = False
            reasons.append(
                f"challenger MAE {mae:.1f} € is worse than the champion's {c_mae:.1f} € by more than "
                f"{tolerance:.0%} ({mae / c_mae - 1:+.1%})"
            )
        elif math.isfinite(mae):
            reasons.append(
                f"challenger MAE {mae:.1f} € vs champion {c_mae:.1f} € ({mae / c_mae - 1:+.1%}, "
                f"tolerance {tolerance:.0%})"
            )
    return GateDecision(passed=ok, reasons=reasons)
