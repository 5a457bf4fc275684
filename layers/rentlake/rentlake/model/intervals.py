"""Interval machinery: the analytic OLS intervals of the course and split/cross-conformal quantiles.

The analytic formulas are the textbook ones (the same as statsmodels' ``get_prediction``) and are
implemented with numpy/scipy only, so the pipeline does not need statsmodels at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from rentlake.model import InsufficientDataError

__all__ = ["OLSFit", "fit_ols", "ols_intervals", "conformal_quantile", "normal_quantile"]


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
