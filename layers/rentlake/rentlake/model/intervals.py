"""Interval machinery: the analytic OLS intervals of the course, conformal quantiles and local intervals.

The analytic formulas are the textbook ones (the same as statsmodels' ``get_prediction``) and are
implemented with numpy/scipy only, so the pipeline does not need statsmodels at run time.

Local intervals are Mondrian (category-conditional) conformal: the calibration scores are split by
surface band (and district), and each cell gets its own finite-sample conformal quantile
(:func:`fit_bands`, a :class:`BandTable`), as Mondrian conformal regressors do (crepes' ``bins``). Their
quality is measured by the interval (Winkler) score and the coverage per cell (:func:`coverage_cells`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rentlake.model import InsufficientDataError

__all__ = [
    "OLSFit",
    "fit_ols",
    "ols_intervals",
    "conformal_quantile",
    "normal_quantile",
    "BandTable",
    "fit_bands",
    "winkler",
    "coverage_cells",
    "cells_outside",
    "surface_terciles",
]


@dataclass(frozen=True)
class OLSFit:
    """A simple regression ``y = intercept + slope * x`` fitted by ordinary least squares."""

    intercept: float
    slope: float
    r2: float
    n: int
    sigma2: float  # residual variance SSE / (n - 2)
    x_mean: float
    sxx: float  # sum of squared deviations of x

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom."""
        return self.n - 2


def fit_ols(x: ArrayLike, y: ArrayLike) -> OLSFit:
    """Fit ``y ~ x`` by ordinary least squares.

    Parameters
    ----------
    x, y : array-like of float
        Predictor and response, same length, finite.

    Returns
    -------
    OLSFit
        Coefficients, R², residual variance and the quantities needed for intervals.

    Raises
    ------
    InsufficientDataError
        Fewer than 3 points, a single distinct ``x`` or non-finite values.
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if xa.size < 3:
        raise InsufficientDataError(f"a line needs at least 3 points to estimate its error, got {xa.size}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise InsufficientDataError("x and y must be finite (no NaN or infinite values)")
    x_mean = float(xa.mean())
    dx = xa - x_mean
    sxx = float(dx @ dx)
    if sxx <= 0.0 or np.unique(xa).size < 2:
        raise InsufficientDataError("all surfaces are identical: a slope cannot be estimated from one value")
    slope = float(dx @ (ya - ya.mean())) / sxx
    intercept = float(ya.mean()) - slope * x_mean
    resid = ya - (intercept + slope * xa)
    sse = float(resid @ resid)
    sst = float(((ya - ya.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return OLSFit(intercept, slope, r2, int(xa.size), sse / (xa.size - 2), x_mean, sxx)


def ols_intervals(fit: OLSFit, x0: ArrayLike, level: float = 0.9) -> dict[str, np.ndarray]:
    """Analytic confidence band of the mean and prediction interval of an OLS line.

    Parameters
    ----------
    fit : OLSFit
        Result of :func:`fit_ols`.
    x0 : array-like of float
        Where to evaluate.
    level : float
        Two-sided level (0.9 gives statsmodels' ``alpha=0.1``).

    Returns
    -------
    dict
        ``mean``, ``mean_ci_lower``, ``mean_ci_upper``, ``obs_ci_lower``, ``obs_ci_upper`` (arrays);
        the same names as statsmodels' ``summary_frame``.
    """
    from scipy import stats

    xq = np.asarray(x0, dtype=float).ravel()
    t = float(stats.t.ppf(0.5 + level / 2.0, fit.df_resid))
    mean = fit.intercept + fit.slope * xq
    # Var(mean) = s² (1/n + (x0 - x̄)² / Sxx); a new observation adds s².
    h0 = 1.0 / fit.n + (xq - fit.x_mean) ** 2 / fit.sxx
    se_mean = np.sqrt(fit.sigma2 * h0)
    se_obs = np.sqrt(fit.sigma2 * (1.0 + h0))
    return {
        "mean": mean,
        "mean_ci_lower": mean - t * se_mean,
        "mean_ci_upper": mean + t * se_mean,
        "obs_ci_lower": mean - t * se_obs,
        "obs_ci_upper": mean + t * se_obs,
    }


def conformal_quantile(abs_scores: ArrayLike, level: float = 0.9) -> float:
    """Finite-sample conformal quantile of non-conformity scores.

    Returns the ``ceil((m + 1) * level) / m`` empirical quantile of the ``m`` scores, which guarantees
    marginal coverage of at least ``level`` for exchangeable data.

    Parameters
    ----------
    abs_scores : array-like of float
        Non-negative scores (here absolute residuals on the log scale, computed out of fold).
    level : float
        Target coverage.

    Returns
    -------
    float
        The half-width to add around a point prediction.
    """
    s = np.sort(np.asarray(abs_scores, dtype=float).ravel())
    s = s[np.isfinite(s)]
    m = s.size
    if m == 0:
        raise InsufficientDataError("no residuals to calibrate the interval")
    k = math.ceil((m + 1) * level)
    return float(s[min(k, m) - 1])


def normal_quantile(level: float) -> float:
    """Half-width of a central ``level`` interval of the standard normal, in standard deviations.

    ``normal_quantile(0.9)`` is Φ⁻¹(0.95) ≈ 1.645: the card records it with ``sigma_log = q / z``, the
    log-scale spread a normal error would need to give the served half-width ``q``.

    Raises
    ------
    ValueError
        When ``level`` is not in (0, 1).
    """
    from scipy import stats

    if not 0.0 < level < 1.0:
        raise ValueError(f"an interval level must be in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2.0))


# ------------------------------------------------------------------------- local (Mondrian) intervals
#: A surface band gets its own conformal half-width once it holds this many calibration residuals:
#: the 90 % quantile of 100 scores is their 91st, whose own sampling error (± 0.03 in coverage) is
#: smaller than the gate's tolerance band.
ROWS_PER_BAND = 100
#: More bands than this buys nothing a modelled spread does not already give, and each costs a lookup.
MAX_BANDS = 8
#: A group (district) gets its own factor once it holds this many calibration residuals.
ROWS_PER_GROUP = 100


@dataclass(frozen=True)
class BandTable:
    """Mondrian conformal half-widths, on the candidate's own scale, one per surface band and group.

    A listing's band is the number of ``edges`` at or below its surface (float32 comparisons, as the
    ONNX graph makes them); its group is the 1-based position of its district in ``groups``, 0 for any
    other (unknown, missing, or too rare to calibrate alone). ``halfwidths[band][group]`` multiplies the
    candidate's modelled spread (1 on the log scale).

    Attributes
    ----------
    edges : tuple of float
        Inner band edges in m², ascending, float32-representable; ``K - 1`` of them for ``K`` bands.
    groups : tuple of str
        Districts calibrated on their own.
    halfwidths : tuple of tuple of float
        ``K`` rows of ``1 + len(groups)`` half-widths (float32-representable).
    level : float
        Nominal coverage.
    counts : tuple of int
        Calibration residuals per band.
    """

    edges: tuple[float, ...]
    groups: tuple[str, ...]
    halfwidths: tuple[tuple[float, ...], ...]
    level: float
    counts: tuple[int, ...] = ()

    @property
    def bands(self) -> int:
        """Number of surface bands."""
        return len(self.halfwidths)

    def band(self, surface: ArrayLike) -> np.ndarray:
        """Band index of each surface (0 … K-1)."""
        s = np.asarray(surface, dtype=np.float32).ravel()
        return np.searchsorted(np.asarray(self.edges, dtype=np.float32), s, side="right")

    def group(self, district: ArrayLike | None, n: int) -> np.ndarray:
        """Group index of each district (0: pooled)."""
        if district is None or not self.groups:
            return np.zeros(n, dtype=np.int64)
        index = {g: i + 1 for i, g in enumerate(self.groups)}
        found = pd.Series(pd_strings(district)).map(index)
        return found.fillna(0).to_numpy(dtype=np.int64)

    def lookup(self, surface: ArrayLike, district: ArrayLike | None = None) -> np.ndarray:
        """The half-width of each listing."""
        b = self.band(surface)
        table = np.asarray(self.halfwidths, dtype=np.float64)
        return table[b, self.group(district, b.size)]

    def flat(self) -> list[float]:
        """The table row-major (band, then group): what the ONNX graph gathers from."""
        return [h for row in self.halfwidths for h in row]

    def to_json(self) -> dict[str, Any]:
        """``edges_m2``, ``groups``, ``halfwidths``, ``rows``, ``level``."""
        return {
            "edges_m2": list(self.edges),
            "groups": list(self.groups),
            "halfwidths": [list(r) for r in self.halfwidths],
            "rows": list(self.counts),
            "level": self.level,
        }


def _f32(x: float) -> float:
    return float(np.float32(x))


def band_edges(surface: ArrayLike, k: int, min_rows: int) -> tuple[float, ...]:
    """Inner edges of up to ``k`` equal-count surface bands, each holding at least ``min_rows`` rows.

    Tied surfaces (many listings at 30 m²) make equal counts impossible: an edge that would leave a
    band short of ``min_rows`` is dropped, merging it with its neighbour.
    """
    s = np.sort(np.asarray(surface, dtype=np.float32).ravel())
    if k <= 1 or s.size < 2 * min_rows:
        return ()
    cands = sorted({_f32(v) for v in np.quantile(s, np.arange(1, k) / k) if v > s[0]})
    edges: list[float] = []
    start = 0
    for e in cands:
        pos = int(np.searchsorted(s, np.float32(e), side="left"))
        if pos - start >= min_rows and s.size - pos >= min_rows:
            edges.append(e)
            start = pos
    return tuple(edges)


def fit_bands(
    scores: ArrayLike,
    surface: ArrayLike,
    level: float = 0.9,
    *,
    groups: ArrayLike | None = None,
    rows_per_band: int = ROWS_PER_BAND,
    max_bands: int = MAX_BANDS,
    rows_per_group: int = ROWS_PER_GROUP,
) -> BandTable:
    """Mondrian conformal half-widths from out-of-fold non-conformity scores.

    Each surface band's half-width is the finite-sample conformal quantile of the scores in that band,
    so the interval covers ``level`` of the listings of every band, not only on average. With
    ``groups``, each group with enough scores gets a factor: the conformal quantile of its scores divided
    by their band's half-width, so a district whose spread differs is covered too.

    Parameters
    ----------
    scores : array-like of float
        Non-negative scores (|residual| on the candidate's scale over its modelled spread).
    surface : array-like of float
        The surfaces of the scored listings.
    level : float
        Target coverage.
    groups : array-like of str, optional
        The listings' districts (None or "" for unknown).
    rows_per_band, max_bands, rows_per_group : int
        Calibration sizes (see :data:`ROWS_PER_BAND`, :data:`MAX_BANDS`, :data:`ROWS_PER_GROUP`).

    Returns
    -------
    BandTable
    """
    sc = np.asarray(scores, dtype=float).ravel()
    s = np.asarray(surface, dtype=float).ravel()
    if sc.size == 0:
        raise InsufficientDataError("no residuals to calibrate the interval")
    k = int(np.clip(sc.size // rows_per_band, 1, max_bands))
    edges = band_edges(s, k, rows_per_band // 2 if k > 1 else rows_per_band)
    probe = BandTable(edges, (), ((1.0,),) * (len(edges) + 1), level)
    b = probe.band(s)
    q = np.array([conformal_quantile(sc[b == i], level) for i in range(len(edges) + 1)])
    factors, names = [1.0], []
    if groups is not None:
        g = pd_strings(groups)
        normalised = sc / np.maximum(q[b], 1e-12)
        for name in sorted(x for x in pd.unique(g) if x):
            mine = normalised[g == name]
            if mine.size >= rows_per_group:
                names.append(name)
                factors.append(conformal_quantile(mine, level))
    table = tuple(tuple(_f32(qi * f) for f in factors) for qi in q)
    counts = tuple(int((b == i).sum()) for i in range(len(edges) + 1))
    return BandTable(edges, tuple(names), table, level, counts)


def pd_strings(values: ArrayLike) -> np.ndarray:
    """Districts as strings (object array), missing values (None, NaN, NA) as the empty string."""
    col = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object).ravel())
    return col.astype("object").where(col.notna(), "").astype(str).to_numpy(dtype=object)


def winkler(y: ArrayLike, low: ArrayLike, high: ArrayLike, level: float = 0.9) -> np.ndarray:
    """Interval (Winkler) score of each listing: width, plus 2/α times the distance of a miss.

    Lower is better; it rewards narrow intervals and punishes misses in proportion to how far the rent
    falls outside (Gneiting & Raftery 2007, the proper score of a central interval).
    """
    ya, lo, hi = (np.asarray(v, dtype=float).ravel() for v in (y, low, high))
    alpha = 1.0 - level
    return (hi - lo) + (2.0 / alpha) * (np.maximum(lo - ya, 0.0) + np.maximum(ya - hi, 0.0))


def surface_terciles(surface: ArrayLike) -> np.ndarray:
    """Tercile (0, 1, 2) of each surface by rank: three equal-count thirds whatever the ties."""
    s = np.asarray(surface, dtype=float).ravel()
    order = np.argsort(s, kind="mergesort")
    out = np.empty(s.size, dtype=np.int64)
    out[order] = (np.arange(s.size) * 3) // max(s.size, 1)
    return out


def coverage_cells(
    y: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    surface: ArrayLike,
    groups: ArrayLike | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Coverage of the interval in each surface tercile and each group (district).

    Returns
    -------
    dict
        ``terciles``: three ``{"cell", "kind", "n", "coverage", "min_m2", "max_m2"}``; ``groups``: one
        ``{"cell", "kind", "n", "coverage"}`` per district present (missing districts are not a group).
    """
    ya, lo, hi, s = (np.asarray(v, dtype=float).ravel() for v in (y, low, high, surface))
    inside = (ya >= lo) & (ya <= hi)
    terc = surface_terciles(s)
    out: dict[str, list[dict[str, Any]]] = {"terciles": [], "groups": []}
    for t, label in enumerate(("smallest", "middle", "largest")):
        m = terc == t
        if not m.any():
            continue
        lo_s, hi_s = float(s[m].min()), float(s[m].max())
        out["terciles"].append(
            {
                "cell": f"{label} third of surfaces ({lo_s:g}–{hi_s:g} m²)",
                "kind": "surface tercile",
                "n": int(m.sum()),
                "coverage": float(inside[m].mean()),
                "min_m2": lo_s,
                "max_m2": hi_s,
            }
        )
    if groups is not None:
        g = pd_strings(groups)
        for name in sorted(x for x in pd.unique(g) if x):
            m = g == name
            out["groups"].append(
                {
                    "cell": f"district {name}",
                    "kind": "district",
                    "n": int(m.sum()),
                    "coverage": float(inside[m].mean()),
                }
            )
    return out


def cells_outside(
    cells: dict[str, list[dict[str, Any]]], bounds: tuple[float, float], min_rows: int = 1
) -> list[dict[str, Any]]:
    """The cells (of :func:`coverage_cells`) with at least ``min_rows`` rows whose coverage is outside."""
    lo, hi = bounds
    return [
        c
        for kind in ("terciles", "groups")
        for c in cells.get(kind, [])
        if c["n"] >= min_rows and not lo <= c["coverage"] <= hi
    ]
