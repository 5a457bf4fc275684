"""The course's line and the reference surfaces every model is compared at.

The course fits ``rent ~ surface`` by OLS on its file after leaving out the rents of 10 000 € or more
(n = 536 on ``house_intact.csv``: 266.5 + 30.66·surface, 30 m² → 1 186 € [348, 2 025]). The report and
the model card draw that same line, computed the same way, beside the served model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rentlake.model.intervals import OLSFit, ols_intervals

__all__ = [
    "COURSE_MAX_RENT",
    "REFERENCE_SURFACE",
    "REFERENCE_SURFACES",
    "course_rows",
    "course_reference",
    "at_reference_surface",
]

#: The course leaves out rents at or above this (the few 10 000 €+ listings of its file).
COURSE_MAX_RENT = 10_000.0
#: Surface at which the served and the course OLS intervals are compared (the course's example).
REFERENCE_SURFACE = 30.0
#: Surfaces at which a challenger's estimates are compared with the champion's before a promotion.
REFERENCE_SURFACES = (20.0, 30.0, 50.0, 80.0)


def course_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the course fits its line on: positive rent and surface, rent below 10 000 €."""
    rent = pd.to_numeric(df["rent_eur"], errors="coerce")
    surface = pd.to_numeric(df["surface_m2"], errors="coerce")
    ok = (rent > 0) & (surface > 0) & np.isfinite(rent) & np.isfinite(surface) & (rent < COURSE_MAX_RENT)
    return pd.DataFrame({"rent_eur": rent[ok].astype(float), "surface_m2": surface[ok].astype(float)})


def course_reference(fit: OLSFit, level: float, heldout: dict[str, Any]) -> dict[str, Any]:
    """The course line ``rent ~ surface`` and its 30 m² estimate with both intervals."""
    at = ols_intervals(fit, [REFERENCE_SURFACE], level)
    return {
        "formula": "rent_eur ~ surface_m2",
        "fitted_on": f"all rows with a rent below {COURSE_MAX_RENT:,.0f} € (as the course does)",
        "n": fit.n,
        "intercept": fit.intercept,
        "slope": fit.slope,
        "r2": fit.r2,
        "sigma": math.sqrt(fit.sigma2),
        "at_30m2": {
            "surface_m2": REFERENCE_SURFACE,
            "estimate": float(at["mean"][0]),
            "mean_ci": [float(at["mean_ci_lower"][0]), float(at["mean_ci_upper"][0])],
            "obs_ci": [float(at["obs_ci_lower"][0]), float(at["obs_ci_upper"][0])],
        },
        "heldout": heldout,
    }


def at_reference_surface(
    onnx_bytes: bytes, model: Any, districts: np.ndarray, ols_reference: dict[str, Any]
) -> dict[str, Any]:
    """The served 30 m² estimate and interval (most frequent district) beside the course OLS one."""
    from rentlake.model.evaluate import score_onnx

    ref_district = None
    if model.uses_district:
        ref_district = str(pd.Series(districts).mode().iloc[0])
    s30 = score_onnx(
        onnx_bytes, pd.DataFrame({"surface_m2": [REFERENCE_SURFACE], "district": [ref_district]})
    )
    obs = ols_reference["at_30m2"]["obs_ci"]
    return {
        "surface_m2": REFERENCE_SURFACE,
        "district": ref_district,
        "served": {
            "model": model.name,
            "estimate": float(s30["rent_eur"][0]),
            "interval": [float(s30["low"][0]), float(s30["high"][0])],
            "width": float(s30["high"][0] - s30["low"][0]),
        },
        "ols": {"estimate": ols_reference["at_30m2"]["estimate"], "interval": obs, "width": obs[1] - obs[0]},
    }
