"""Promotion gate: may a freshly trained challenger replace the serving champion?

A challenger passes when

1. it was judged on enough held-out rows: at least :data:`~rentlake.model.MIN_HELDOUT_ROWS` (80; see
   there why). With fewer, the gate does not decide: the first model of a lake is promoted as a *small
   sample* (its card and the API's answers say so), and with a champion the champion stays;
2. its held-out metrics are usable: finite MAE, and the served interval's held-out coverage lies in
   ``COVERAGE_RANGE`` = [0.85, 0.95] around the nominal 0.90, overall and in every cell (surface tercile,
   district) of at least :data:`CELL_MIN_ROWS` held-out rows;
3. its diagnostics carry no *blocking* flag. Only ``influential_point`` blocks: a fit decided by a single
   point is a data problem no model family fixes. The others (``heteroscedasticity``, ``nonlinearity``,
   ``outlier``) are expected on rents and handled by the local conformal intervals; they are reported;
4. with a champion, scored on the *same* rows:

   * its MAE is not worse than the champion's by more than ``tolerance`` (relative), on all held-out
     rows and on the *reference holdout*: the held-out rows of the batches the champion was trained on,
     so a challenger trained on a poisoned batch cannot pass by being judged on that batch alone;
   * its estimates at the reference surfaces (20, 30, 50, 80 m²) do not move by more than
     :data:`SHIFT_BOUND` from the champion's. A bigger move is a change of data, not of the market: it
     is refused unless a person accepts it (``rentlake models promote VERSION``). A small-sample champion
     is no reference: its shifts are reported, not gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rentlake.model import MIN_HELDOUT_ROWS

__all__ = [
    "GateDecision",
    "decide",
    "BLOCKING_FLAGS",
    "COVERAGE_RANGE",
    "CELL_MIN_ROWS",
    "SHIFT_BOUND",
]

BLOCKING_FLAGS = frozenset({"influential_point"})
COVERAGE_RANGE = (0.85, 0.95)
#: A cell's held-out coverage is gated from this many rows (its binomial SE is then ≤ 0.021).
CELL_MIN_ROWS = 200
#: Largest relative move of the estimate at a reference surface a promotion may make on its own. Paris
#: rents rose about 12 % in eight years (median legal reference rent, unfurnished: 23.2 €/m² in 2017,
#: 25.95 €/m² in 2025): a retrain on the same market moves a 30 m² estimate by a few percent, so 15 % is
#: more than the whole drift since 2017, and a batch that moves it further is a change of data.
SHIFT_BOUND = 0.15
ACCEPT_HINT = "accept it by hand with: rentlake models promote {version}"


@dataclass
class GateDecision:
    """Outcome of :func:`decide`."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    small_sample: bool = False

    def to_dict(self) -> dict[str, Any]:
        """``{"decision": "promote" | "keep", "passed", "reasons": [...], "small_sample"}``."""
        return {
            "decision": "promote" if self.passed else "keep",
            "passed": self.passed,
            "reasons": list(self.reasons),
            "small_sample": self.small_sample,
        }


@dataclass(frozen=True)
class Comparison:
    """What the gate compares beyond the challenger's own metrics (all optional).

    Attributes
    ----------
    cells : list of dict
        The challenger's held-out coverage cells (``cell``, ``n``, ``coverage``).
    reference : dict or None
        ``n``, ``challenger`` and ``champion`` metrics on the reference holdout.
    shifts : list of dict
        ``surface_m2``, ``champion``, ``challenger``, ``change`` (relative) at the reference surfaces.
    champion_small_sample : bool
        The champion was itself a small sample: its estimates are no reference for the shift.
    version : str
        The challenger's version (named in the acceptance hint).
    """

    cells: Sequence[Mapping[str, Any]] = ()
    reference: Mapping[str, Any] | None = None
    shifts: Sequence[Mapping[str, Any]] = ()
    champion_small_sample: bool = False
    version: str = "VERSION"


def _diagnoses(diagnostics: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Accept a single diagnosis dict (with ``flags``) or ``TrainResult.diagnostics`` (several of them)."""
    if not diagnostics:
        return {}
    if "flags" in diagnostics:
        return {"diagnostics": diagnostics}
    return {k: v for k, v in diagnostics.items() if isinstance(v, Mapping) and "flags" in v}


def _num(m: Mapping[str, Any] | None, key: str) -> float:
    v = (m or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


def decide(
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    diagnostics: Mapping[str, Any] | None,
    *,
    tolerance: float = 0.05,
    compare: Comparison | None = None,
    min_rows: int = MIN_HELDOUT_ROWS,
) -> GateDecision:
    """Decide whether to promote the challenger.

    Parameters
    ----------
    challenger_metrics : mapping
        Held-out metrics of the challenger (needs ``n``, ``mae`` and ``coverage``).
    champion_metrics : mapping or None
        The champion's metrics on the *same* held-out rows, or None (no champion, or one that cannot be
        scored).
    diagnostics : mapping or None
        ``TrainResult.diagnostics`` or a single ``Diagnosis.to_dict()``.
    tolerance : float
        Allowed relative MAE degradation versus the champion.
    compare : Comparison, optional
        Cells, reference holdout and estimate shifts.
    min_rows : int
        Fewest held-out rows the gate decides on.

    Returns
    -------
    GateDecision
        ``passed``, ``small_sample`` and human-readable reasons (every check adds one, passing or not).
    """
    compare = compare or Comparison()
    n = int(_num(challenger_metrics, "n")) if math.isfinite(_num(challenger_metrics, "n")) else 0
    reasons: list[str] = []
    ok = _own_checks(challenger_metrics, diagnostics, compare, reasons, judge_coverage=n >= min_rows)
    if n < min_rows:
        return _small(ok, n, min_rows, champion_metrics, compare, reasons)
    if champion_metrics is None:
        reasons.append("no champion: the challenger is judged on its own metrics and diagnostics")
        return GateDecision(ok, reasons)
    ok &= _versus_champion(challenger_metrics, champion_metrics, tolerance, compare, reasons, min_rows)
    return GateDecision(ok, reasons)


def _own_checks(
    m: Mapping[str, Any],
    diagnostics: Mapping[str, Any] | None,
    compare: Comparison,
    reasons: list[str],
    *,
    judge_coverage: bool,
) -> bool:
    ok = True
    mae, cov = _num(m, "mae"), _num(m, "coverage")
    if not math.isfinite(mae):
        ok = False
        reasons.append("challenger has no finite held-out MAE")
    lo, hi = COVERAGE_RANGE
    if not judge_coverage:
        reasons.append(f"held-out coverage {cov:.3f} not judged on so few rows")
    elif not (math.isfinite(cov) and lo <= cov <= hi):
        ok = False
        reasons.append(f"held-out coverage of the 90 % interval is {cov:.3f}, outside [{lo}, {hi}]")
    else:
        reasons.append(f"held-out coverage {cov:.3f} within [{lo}, {hi}]")
    for c in compare.cells if judge_coverage else ():
        if c["n"] >= CELL_MIN_ROWS and not lo <= c["coverage"] <= hi:
            ok = False
            reasons.append(
                f"held-out coverage in {c['cell']} is {c['coverage']:.3f} on {c['n']} rows, "
                f"outside [{lo}, {hi}]"
            )
    for name, d in _diagnoses(diagnostics).items():
        flags = list(d.get("flags", []))
        blocking = [f for f in flags if f in BLOCKING_FLAGS]
        if blocking:
            ok = False
            why = "; ".join(str(d.get("details", {}).get(f, {}).get("reason", f)) for f in blocking)
            reasons.append(f"{name}: blocking flag(s) {blocking}: {why}")
        elif flags:
            reasons.append(f"{name}: non-blocking flag(s) {flags} (handled by the local conformal intervals)")
    return ok


def _small(
    ok: bool,
    n: int,
    min_rows: int,
    champion_metrics: Mapping[str, Any] | None,
    compare: Comparison,
    reasons: list[str],
) -> GateDecision:
    """The gate's answer on fewer than ``min_rows`` held-out rows: it does not judge, it says so."""
    few = f"small sample: only {n} held-out rows, fewer than the {min_rows} the gate decides on"
    if champion_metrics is None:
        reasons.append(
            f"{few}; there is no champion, so this first model is promoted and marked 'small sample' "
            "(its card and its answers say so)"
        )
        return GateDecision(ok, reasons, small_sample=True)
    reasons.append(
        f"{few}: too few to judge it against the champion, which stays; "
        + ACCEPT_HINT.format(version=compare.version)
    )
    return GateDecision(False, reasons, small_sample=True)


def _versus_champion(
    m: Mapping[str, Any],
    champion: Mapping[str, Any],
    tolerance: float,
    compare: Comparison,
    reasons: list[str],
    min_rows: int,
) -> bool:
    ok = _mae_check(m, champion, tolerance, "", reasons)
    ref = compare.reference
    if ref is not None and ref.get("n", 0) >= min_rows:
        ok &= _mae_check(
            ref["challenger"],
            ref["champion"],
            tolerance,
            f" on the reference holdout ({ref['n']} rows of the champion's batches)",
            reasons,
        )
    elif ref is not None:
        reasons.append(
            f"reference holdout: {ref.get('n', 0)} rows of the champion's batches, fewer than "
            f"{min_rows}: not judged"
        )
    moved = [s for s in compare.shifts if abs(s["change"]) > SHIFT_BOUND]
    if moved and compare.champion_small_sample:
        reasons.append(
            "estimates move by more than "
            f"{SHIFT_BOUND:.0%} at {', '.join(_shift(s) for s in moved)}; the champion is a small "
            "sample, so its estimates are no reference: not gated"
        )
    elif moved:
        reasons.append(
            f"estimates move by more than {SHIFT_BOUND:.0%} from the champion's at "
            f"{', '.join(_shift(s) for s in moved)}: refused unless accepted; "
            + ACCEPT_HINT.format(version=compare.version)
        )
        ok = False
    elif compare.shifts:
        reasons.append(
            f"estimates within {SHIFT_BOUND:.0%} of the champion's at "
            f"{', '.join(_shift(s) for s in compare.shifts)}"
        )
    return ok


def _shift(s: Mapping[str, Any]) -> str:
    return f"{s['surface_m2']:g} m² ({s['champion']:,.0f} € → {s['challenger']:,.0f} €, {s['change']:+.0%})"


def _mae_check(
    m: Mapping[str, Any], champion: Mapping[str, Any], tolerance: float, where: str, reasons: list[str]
) -> bool:
    mae, c_mae = _num(m, "mae"), _num(champion, "mae")
    if not math.isfinite(c_mae):
        reasons.append(f"champion has no finite MAE{where}: not compared")
        return True
    if not math.isfinite(mae):
        return False
    if mae > c_mae * (1.0 + tolerance):
        reasons.append(
            f"challenger MAE {mae:.1f} € is worse than the champion's {c_mae:.1f} €{where} by more than "
            f"{tolerance:.0%} ({mae / c_mae - 1:+.1%})"
        )
        return False
    reasons.append(
        f"challenger MAE {mae:.1f} € vs champion {c_mae:.1f} €{where} ({mae / c_mae - 1:+.1%}, tolerance "
        f"{tolerance:.0%})"
    )
    return True
