"""The model card a training run writes: what the model is, how it was chosen, and its limits.

Its ``limits`` name every cell (surface tercile, district) whose held-out coverage is outside
[0.85, 0.95], with its row count, instead of "calibrated on average".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rentlake.model.candidates import COVERAGE_RANGE
from rentlake.model.export import onnx_signature
from rentlake.model.intervals import cells_outside
from rentlake.reporting import jsonable

if TYPE_CHECKING:  # pragma: no cover
    from rentlake.model.train import TrainResult

__all__ = ["model_card", "limits", "sampling_limit"]


def limits(r: TrainResult) -> list[str]:
    """The card's limits, in plain words; every miscalibrated cell is named with its row count."""
    smin, smax = r.feature_ranges["surface_m2"]["min"], r.feature_ranges["surface_m2"]["max"]
    pct = int(r.interval["level"] * 100)
    lo, hi = COVERAGE_RANGE
    out = [
        f"trained on surfaces from {smin:g} to {smax:g} m²; estimates outside this range are extrapolations",
    ]
    if r.small_sample is not None:
        out.append(r.small_sample["message"])
    if r.sampling is not None and not r.sampling["all_rows"]:
        out.append(sampling_limit(r.sampling))
    cells = r.diagnostics["conditional_coverage"]
    bad = cells_outside(cells, COVERAGE_RANGE)
    n_cells = len(cells["terciles"]) + len(cells["groups"])
    coverage = f"held-out coverage {r.metrics['coverage']:.2f} over {r.metrics['n']} listings"
    if bad:
        named = "; ".join(f"{c['cell']}: {c['coverage']:.2f} on {c['n']} listings" for c in bad)
        out.append(
            f"{pct} % intervals: {coverage}, but outside [{lo}, {hi}] in {len(bad)} of {n_cells} cells: "
            f"{named}"
            + (
                " (a cell of fewer than 200 listings can miss by chance)"
                if any(c["n"] < 200 for c in bad)
                else ""
            )
        )
    else:
        out.append(
            f"{pct} % intervals: {coverage}, and within [{lo}, {hi}] in every surface tercile"
            + (" and district" if cells["groups"] else "")
            + "; about one rent in ten falls outside"
        )
    out.append(
        "the estimate is the "
        + ("predictive median" if r.interval["scale"] == "log" else "predicted mean")
        + "; features other than surface"
        + (" and district" if "district" in r.features else "")
        + " (floor, condition, furnishing) are not used"
    )
    if "district" in r.features:
        out.append("unknown districts get the baseline district's estimate and the pooled interval width")
    return out


def sampling_limit(sampling: dict[str, Any]) -> str:
    """The card's sentence on a model trained on a hash sample of the lake (the stage's ``sampling``)."""
    t, h = sampling["train"], sampling["heldout"]
    return (
        f"trained on a hash sample of {t['sampled']:,} of the lake's {t['rows']:,} training rows "
        f"(stratified by district: each keeps all its rows or at least {t['floor']:,}; at most "
        f"{t['max_rows']:,} in all) and judged on {h['sampled']:,} of its {h['rows']:,} held-out rows "
        f"(at most {h['max_rows']:,}); the same rows for the same lake, whatever the order they are read in"
    )


def model_card(
    r: TrainResult, split: str, params: dict[str, Any], lineage: dict[str, Any] | None
) -> dict[str, Any]:
    """The JSON-ready card of a training result (the registry adds the serving fields)."""
    return jsonable(
        {
            "model": {
                "name": r.model_name,
                "version": r.version,
                "trained_at": r.trained_at,
                "sha256": r.sha256,
                "format": "onnx",
                "signature": onnx_signature(r.onnx),
            },
            "intended_use": "estimate the monthly rent (€) of a Paris flat from its surface, with a 90 "
            "% interval",
            "data": {
                **r.sizes,
                "split": split,
                "lineage": lineage,
                **({"sampling": r.sampling} if r.sampling is not None else {}),
            },
            "features": r.features,
            "feature_ranges": r.feature_ranges,
            "interval": r.interval,
            "metrics": r.metrics,
            "selection": r.selection,
            "ols_reference": r.ols_reference,
            "at_30m2": r.at_30m2,
            "diagnostics": r.diagnostics,
            "small_sample": r.small_sample,
            "params": params,
            "limits": limits(r),
        }
    )
