"""The candidate models, their local intervals and their cross-validation.

Two families compete:

* **log scale** (``ols``, ``huber``, ``ols_district``, ``gbr``): the model predicts ``f = ln(rent)``; the
  interval is ``[exp(f − h), exp(f + h)]``, positive and wider in euros for larger flats. Right when the
  spread is proportional to the rent (multiplicative noise).
* **linear scale** (``linear``, ``linear_district``): the model predicts the rent ``f`` in euros and
  models its spread ``s(x) = max(a + b·surface, floor)``, fitted to the out-of-fold absolute residuals;
  the interval is ``[max(f − h·s(x), 0), f + h·s(x)]``. Right when the spread is constant in euros or
  grows more slowly than the rent (additive noise), where every log model would widen it anyway.

In both families ``h`` is local: a Mondrian conformal half-width per surface band (and, for district
models, a factor per district), the finite-sample conformal quantile of the out-of-fold scores
``|residual| / s(x)`` of that band (:func:`rentlake.model.intervals.fit_bands`). So the interval covers
90 % of the listings of every band, not 90 % on average with 50 % at 20 m².

Cross-validation (:func:`cross_validate`) gives every candidate's out-of-fold predictions. Its interval
score is judged *nested*: the rows of fold k get the spread and the band table calibrated on the other
folds' residuals only, so the coverage it reports per surface tercile and per district is out-of-sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rentlake.model import LEVEL
from rentlake.model.export import SURFACE_FEATURE, to_onnx
from rentlake.model.intervals import (
    BandTable,
    cells_outside,
    coverage_cells,
    fit_bands,
    pd_strings,
    winkler,
)

__all__ = [
    "CANDIDATES",
    "COVERAGE_RANGE",
    "FittedCandidate",
    "Spec",
    "Spread",
    "specs",
    "fit",
    "cross_validate",
    "district_of",
    "MISSING_DISTRICT",
    "OOF_GROUP_MIN_ROWS",
]

#: Candidate names, simplest first (the order breaks ties in the selection).
CANDIDATES = ("ols", "linear", "huber", "ols_district", "linear_district", "gbr")
#: The coverage every surface tercile and every large enough district must reach on out-of-fold data.
COVERAGE_RANGE = (0.85, 0.95)
#: A district is held to :data:`COVERAGE_RANGE` on out-of-fold data from this many rows (as on held-out).
OOF_GROUP_MIN_ROWS = 200
MISSING_DISTRICT = ""  # what the runtime feeds for a missing district; unknown to every encoder


@dataclass(frozen=True)
class Spec:
    """What defines a candidate: its scale, its surface feature, whether it reads the district."""

    name: str
    scale: str  # "log": predicts ln(rent); "linear": predicts rent in euros, with a modelled spread
    surface_transform: str  # "log" or "identity"
    uses_district: bool
    heavy: bool  # fitted on the subsample when n is large


def specs(use_district: bool, *, linear: bool = True) -> list[Spec]:
    """The candidates for a dataset, in :data:`CANDIDATES` order (``linear``: with the linear-scale ones)."""
    out = [Spec("ols", "log", "log", False, False)]
    if linear:
        out.append(Spec("linear", "linear", "identity", False, False))
    out.append(Spec("huber", "log", "log", False, True))
    if use_district:
        out.append(Spec("ols_district", "log", "log", True, False))
    if use_district and linear:
        # Its spread model needs no more rows than the cross-validation's: fitted on that subsample.
        out.append(Spec("linear_district", "linear", "identity", True, True))
    # Trees are invariant to monotone transforms: keep the raw surface so float32 thresholds match exactly.
    out.append(Spec("gbr", "log", "identity", use_district, True))
    return out


@dataclass(frozen=True)
class Spread:
    """The modelled spread of a linear-scale candidate: ``s(x) = max(intercept + slope·x, floor)`` (€)."""

    intercept: float
    slope: float
    floor: float

    def __call__(self, surface: np.ndarray) -> np.ndarray:
        s = np.asarray(surface, dtype=float)
        return np.maximum(self.intercept + self.slope * s, self.floor)

    def to_json(self) -> dict[str, float]:
        return {"intercept": self.intercept, "slope": self.slope, "floor": self.floor}


UNIT_SPREAD = None  # log-scale candidates: the spread is 1 (the band table holds log half-widths)


def fit_spread(abs_residuals: np.ndarray, surface: np.ndarray) -> Spread:
    """Least-squares line of the absolute residuals on the surface, floored at 5 % of their mean.

    The floor keeps the spread positive where a steep line would cross zero (small flats); the band
    table corrects whatever shape the line misses.
    """
    r = np.asarray(abs_residuals, dtype=float)
    s = np.asarray(surface, dtype=float)
    mean = float(r.mean()) if r.size else 1.0
    floor = max(0.05 * mean, 1e-6)
    if r.size < 3 or np.ptp(s) == 0:
        return Spread(_f32(max(mean, floor)), 0.0, _f32(floor))
    slope, intercept = np.polyfit(s, r, 1)
    return Spread(_f32(intercept), _f32(slope), _f32(floor))


def _f32(x: float) -> float:
    return float(np.float32(x))


def district_of(df: pd.DataFrame) -> np.ndarray:
    """District as strings, missing values as the empty string (what the runtime feeds)."""
    if "district" not in df.columns:
        return np.full(len(df), MISSING_DISTRICT, dtype=object)
    return pd_strings(df["district"])


@dataclass
class FittedCandidate:
    """A fitted candidate: its scikit-learn model, its modelled spread and its band table."""

    name: str
    estimator: Any
    scale: str
    surface_transform: str
    uses_district: bool
    bands: BandTable | None = None
    spread: Spread | None = None
    level: float = LEVEL
    meta: dict[str, Any] = field(default_factory=dict)

    def design(self, df: pd.DataFrame) -> pd.DataFrame:
        """Model inputs (``feat_surface`` and maybe ``district``) built from a clean DataFrame."""
        s = df["surface_m2"].to_numpy(dtype=float)
        X = pd.DataFrame(
            {SURFACE_FEATURE: np.log(s) if self.surface_transform == "log" else s}, index=df.index
        )
        if self.uses_district:
            X["district"] = district_of(df)
        return X

    def center(self, df: pd.DataFrame) -> np.ndarray:
        """The prediction on the candidate's scale: ``ln(rent)`` or the rent in euros."""
        return np.asarray(self.estimator.predict(self.design(df)), dtype=float).ravel()

    def target(self, rent: np.ndarray) -> np.ndarray:
        """The rent on the candidate's scale."""
        return np.log(rent) if self.scale == "log" else np.asarray(rent, dtype=float)

    def unit(self, surface: np.ndarray) -> np.ndarray:
        """The modelled spread at each surface (1 on the log scale)."""
        if self.spread is None:
            return np.ones(np.asarray(surface).size)
        return self.spread(surface)

    def scores(self, rent: np.ndarray, center: np.ndarray, surface: np.ndarray) -> np.ndarray:
        """Non-conformity scores: absolute residual on the candidate's scale over the modelled spread."""
        return np.abs(self.target(rent) - center) / self.unit(surface)

    def interval(self, center: np.ndarray, halfwidth: np.ndarray) -> dict[str, np.ndarray]:
        """Estimate and interval in euros from a centre and a half-width on the candidate's scale."""
        if self.scale == "log":
            return {
                "rent_eur": np.exp(center),
                "low": np.exp(center - halfwidth),
                "high": np.exp(center + halfwidth),
            }
        return {
            "rent_eur": np.maximum(center, 0.0),
            "low": np.maximum(center - halfwidth, 0.0),
            "high": np.maximum(center + halfwidth, 0.0),
        }

    def halfwidth(self, df: pd.DataFrame) -> np.ndarray:
        """The half-width of each listing on the candidate's scale (band table × modelled spread)."""
        if self.bands is None:
            raise ValueError(f"candidate {self.name} has no calibrated interval yet")
        surface = df["surface_m2"].to_numpy(dtype=float)
        district = district_of(df) if self.uses_district else None
        return self.bands.lookup(surface, district) * self.unit(surface)

    def predict(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Estimate and interval in euros: ``rent_eur``, ``low``, ``high`` (the ONNX graph's outputs)."""
        return self.interval(self.center(df), self.halfwidth(df))

    def to_onnx(self, doc: str = "") -> bytes:
        """Self-contained ONNX graph with outputs ``rent_eur``, ``low``, ``high``."""
        if self.bands is None:
            raise ValueError(f"candidate {self.name} has no calibrated interval yet")
        return to_onnx(
            self.estimator,
            surface_transform=self.surface_transform,
            uses_district=self.uses_district,
            scale=self.scale,
            bands=self.bands,
            spread=None if self.spread is None else self.spread.to_json(),
            name=f"rentlake_{self.name}",
            doc=doc,
        )


def _estimator(spec: Spec, seed: int, gbr_estimators: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import HuberRegressor, LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if spec.name == "huber":
        reg: Any = HuberRegressor(epsilon=1.35, max_iter=500)
    elif spec.name == "gbr":
        reg = GradientBoostingRegressor(
            n_estimators=gbr_estimators,
            max_depth=3,
            learning_rate=0.05,
            subsample=0.8,
            min_samples_leaf=5,
            random_state=seed,
        )
    else:
        reg = LinearRegression()
    steps: list[tuple[str, Any]] = []
    if spec.uses_district:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        steps.append(
            (
                "prep",
                ColumnTransformer(
                    [("surface", "passthrough", [SURFACE_FEATURE]), ("district", encoder, ["district"])]
                ),
            )
        )
    steps.append(("reg", reg))
    return Pipeline(steps)


def fit(spec: Spec, df: pd.DataFrame, seed: int, gbr_estimators: int) -> FittedCandidate:
    """Fit a candidate's point model on ``df`` (its interval is calibrated separately)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    cand = FittedCandidate(
        spec.name,
        _estimator(spec, seed, gbr_estimators),
        spec.scale,
        spec.surface_transform,
        spec.uses_district,
    )
    with warnings.catch_warnings():
        # Huber may stop at max_iter on awkward folds; the fit is still usable and CV judges it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        cand.estimator.fit(cand.design(df), cand.target(df["rent_eur"].to_numpy(dtype=float)))
    return cand


@dataclass
class Calibration:
    """A candidate's interval calibrated on out-of-fold residuals: its spread and its band table."""

    spread: Spread | None
    bands: BandTable


def calibrate(
    cand: FittedCandidate,
    rent: np.ndarray,
    center: np.ndarray,
    surface: np.ndarray,
    district: np.ndarray | None,
    level: float,
) -> Calibration:
    """Fit the spread (linear scale) and the Mondrian band table on out-of-fold predictions."""
    spread = None
    if cand.scale == "linear":
        spread = fit_spread(np.abs(rent - center), surface)
    probe = FittedCandidate(
        cand.name, None, cand.scale, cand.surface_transform, cand.uses_district, spread=spread
    )
    scores = probe.scores(rent, center, surface)
    bands = fit_bands(scores, surface, level, groups=district if cand.uses_district else None)
    return Calibration(spread, bands)


def cross_validate(
    spec: Spec, df: pd.DataFrame, seed: int, folds: int, gbr_estimators: int, level: float
) -> tuple[dict[str, Any], Calibration]:
    """Seeded K-fold: out-of-fold MAE and nested interval score, and the interval calibrated on all folds.

    Returns
    -------
    (dict, Calibration)
        ``mae_mean``, ``mae_se``, ``winkler_mean``, ``winkler_se`` (€ per listing, per fold), ``coverage``
        and ``cells`` (nested out-of-fold coverage per surface tercile and district), ``cells_outside``
        (terciles, and districts of at least :data:`OOF_GROUP_MIN_ROWS` rows, outside
        :data:`COVERAGE_RANGE`), ``conditional_ok`` and ``folds``; and the calibration on every
        out-of-fold residual, which the served interval uses.
    """
    from sklearn.model_selection import KFold

    y = df["rent_eur"].to_numpy(dtype=float)
    surface = df["surface_m2"].to_numpy(dtype=float)
    district = district_of(df) if spec.uses_district else None
    oof = np.empty(len(df))
    fold_of = np.empty(len(df), dtype=np.int64)
    cand: FittedCandidate | None = None
    for k, (tr, va) in enumerate(KFold(n_splits=folds, shuffle=True, random_state=seed).split(df)):
        cand = fit(spec, df.iloc[tr], seed, gbr_estimators)
        oof[va] = cand.center(df.iloc[va])
        fold_of[va] = k
    assert cand is not None  # folds >= 2
    low, high, est = _nested_intervals(cand, y, oof, surface, district, fold_of, folds, level)
    fold_ids = range(folds)
    maes = np.array([np.mean(np.abs(est[fold_of == k] - y[fold_of == k])) for k in fold_ids])
    score = winkler(y, low, high, level)
    wink = np.array([score[fold_of == k].mean() for k in fold_ids])
    cells = coverage_cells(y, low, high, surface, district)
    outside = cells_outside({"terciles": cells["terciles"]}, COVERAGE_RANGE) + cells_outside(
        {"groups": cells["groups"]}, COVERAGE_RANGE, OOF_GROUP_MIN_ROWS
    )
    summary = {
        "mae_mean": float(maes.mean()),
        "mae_se": float(maes.std(ddof=1) / math.sqrt(folds)),
        "winkler_mean": float(wink.mean()),
        "winkler_se": float(wink.std(ddof=1) / math.sqrt(folds)),
        "coverage": float(np.mean((y >= low) & (y <= high))),
        "cells": cells,
        "cells_outside": [c["cell"] for c in outside],
        "conditional_ok": not outside,
        "folds": folds,
    }
    return summary, calibrate(cand, y, oof, surface, district, level)


def _nested_intervals(
    cand: FittedCandidate,
    y: np.ndarray,
    oof: np.ndarray,
    surface: np.ndarray,
    district: np.ndarray | None,
    fold_of: np.ndarray,
    folds: int,
    level: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals of each fold's rows calibrated on the other folds' out-of-fold residuals only."""
    low, high, est = np.empty_like(y), np.empty_like(y), np.empty_like(y)
    for k in range(folds):
        mine, rest = fold_of == k, fold_of != k
        cal = calibrate(
            cand, y[rest], oof[rest], surface[rest], None if district is None else district[rest], level
        )
        probe = FittedCandidate(
            cand.name,
            None,
            cand.scale,
            cand.surface_transform,
            cand.uses_district,
            bands=cal.bands,
            spread=cal.spread,
        )
        h = cal.bands.lookup(surface[mine], None if district is None else district[mine])
        out = probe.interval(oof[mine], h * probe.unit(surface[mine]))
        low[mine], high[mine], est[mine] = out["low"], out["high"], out["rent_eur"]
    return low, high, est
