"""Regression diagnostics for a simple line ``y ~ x``: Anscombe's warning made executable.

Four questions, each answered by a named test with its statistic and p-value:

* ``nonlinearity``: Ramsey RESET (does adding powers of the fitted values explain the residuals?);
* ``outlier``: externally studentized residuals with a Bonferroni correction over the n points;
* ``influential_point``: leverage (hat value) near 1 — the slope is decided by a single point — or
  Cook's distance beyond the F(p, n − p) quantile at the per-test level (and at least 1);
* ``heteroscedasticity``: Breusch–Pagan (Koenker's studentized form, robust to non-normal errors).

The three p-value tests and the Cook's distance cut-off share a family-wise false-alarm rate ``alpha``
(Bonferroni over the tests), so
clean linear data passes with probability about ``1 - alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from rentlake.model import InsufficientDataError
from rentlake.reporting import jsonable

__all__ = ["Diagnosis", "diagnose", "FLAGS", "DEFAULT_ALPHA"]

FLAGS = ("nonlinearity", "outlier", "influential_point", "heteroscedasticity")
#: Family-wise false-alarm rate over the three p-value tests (RESET, outlier, Breusch–Pagan).
DEFAULT_ALPHA = 0.001
#: Leverage at or above this means one point alone decides the slope.
LEVERAGE_ONE = 0.99
#: Floor of the Cook's distance cut-off (the conventional "D > 1" rule of thumb).
COOKS_D_LIMIT = 1.0


@dataclass
class Diagnosis:
    """Result of :func:`diagnose`."""

    intercept: float
    slope: float
    r2: float
    n: int
    flags: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitted: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    residuals: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def verdict(self) -> str:
        """``"ok"`` when no flag was raised, ``"flagged"`` otherwise."""
        return "flagged" if self.flags else "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: exactly the keys intercept, slope, r2, n, verdict, flags, details."""
        return {
            "intercept": self.intercept,
            "slope": self.slope,
            "r2": self.r2,
            "n": self.n,
            "verdict": self.verdict,
            "flags": list(self.flags),
            "details": jsonable(self.details),
        }


def _ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients and residuals."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return beta, y - X @ beta


def _reset(x: np.ndarray, y: np.ndarray, sse: float, sst: float, alpha_test: float) -> dict[str, Any]:
    from scipy import stats

    n = x.size
    distinct = np.unique(x).size
    powers = min(3, distinct - 1)  # x², x³ need at least 3 / 4 distinct values to be identifiable
    if powers < 2 or n - 2 - (powers - 1) <= 0:
        return {
            "flagged": False,
            "test": "Ramsey RESET",
            "reason": "not testable: fewer than 3 distinct x values",
        }
    z = (x - x.mean()) / x.std()  # standardise so that the powers are well conditioned
    X = np.column_stack([np.ones(n), z] + [z**k for k in range(2, powers + 1)])
    _, e_u = _ols(X, y)
    sse_u = float(e_u @ e_u)
    q = powers - 1
    df_u = n - X.shape[1]
    if sse_u <= 1e-12 * sst:
        f_stat, p = float("inf"), 0.0
    else:
        f_stat = ((sse - sse_u) / q) / (sse_u / df_u)
        p = float(stats.f.sf(f_stat, q, df_u))
    flagged = p < alpha_test
    reason = (
        f"Ramsey RESET: powers of x up to {powers} explain the residuals (F = {f_stat:.3g}, p = {p:.2g} "
        f"< {alpha_test:.2g}); "
        "the relation is curved, not a straight line"
        if flagged
        else f"Ramsey RESET: no evidence of curvature (F = {f_stat:.3g}, p = {p:.2g})"
    )
    return {
        "flagged": flagged,
        "test": "Ramsey RESET",
        "statistic": f_stat,
        "p_value": p,
        "df": [q, df_u],
        "threshold": alpha_test,
        "reason": reason,
    }


def _outliers(
    x: np.ndarray, e: np.ndarray, h: np.ndarray, sse: float, sst: float, alpha_test: float
) -> dict[str, Any]:
    from scipy import stats

    n, p = x.size, 2
    dfd = n - p - 1
    if dfd <= 0:
        return {"flagged": False, "test": "externally studentized residuals", "reason": "not testable: n < 4"}
    ok = h < LEVERAGE_ONE  # a residual at leverage 1 is 0 by construction and has no studentized value
    s2_del = (sse - e**2 / np.where(ok, 1.0 - h, 1.0)) / dfd
    tiny = 1e-14 * max(sst, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s2_del > tiny, e / np.sqrt(np.maximum(s2_del, tiny) * (1.0 - h)), np.inf * np.sign(e))
    # Perfectly collinear remaining points: a residual that is pure rounding noise is not an outlier.
    t = np.where(ok & (np.abs(e) > 1e-9 * np.sqrt(sst / n)), t, 0.0)
    i = int(np.argmax(np.abs(t)))
    t_max = float(abs(t[i]))
    p_bonf = float(min(1.0, n * 2.0 * stats.t.sf(t_max, dfd)))
    flagged = p_bonf < alpha_test
    reason = (
        f"point {i} (x = {x[i]:.4g}) lies far off the line: externally studentized residual {t_max:.3g}, "
        f"Bonferroni p = {p_bonf:.2g} < {alpha_test:.2g}"
        if flagged
        else f"no outlier: largest externally studentized residual {t_max:.3g} (Bonferroni p = {p_bonf:.2g})"
    )
    return {
        "flagged": flagged,
        "test": "externally studentized residuals (Bonferroni)",
        "statistic": t_max,
        "p_value": p_bonf,
        "index": i,
        "threshold": alpha_test,
        "reason": reason,
    }


def _influence(x: np.ndarray, e: np.ndarray, h: np.ndarray, sse: float, alpha_test: float) -> dict[str, Any]:
    from scipy import stats

    n, p = x.size, 2
    # "D > 1" alone raises false alarms on ~4 % of clean samples of 20 points; comparing D with the
    # F(p, n - p) quantile at the same per-test level as the other tests (Cook's original scale) keeps
    # the family-wise false-alarm rate, and never goes below the rule of thumb.
    limit = max(COOKS_D_LIMIT, float(stats.f.ppf(1.0 - alpha_test, p, n - p)))
    s2 = sse / (n - p)
    i_lev = int(np.argmax(h))
    h_max = float(h[i_lev])
    # With x values all equal but one, the slope is that single point's: its leverage is exactly 1.
    others_distinct = np.unique(np.delete(x, i_lev)).size
    if h_max >= LEVERAGE_ONE or others_distinct < 2:
        return {
            "flagged": True,
            "test": "leverage",
            "statistic": h_max,
            "index": i_lev,
            "cooks_d_max": None,
            "reason": f"point {i_lev} (x = {x[i_lev]:.4g}) has leverage {h_max:.3f} ≈ 1: the slope is "
            "decided "
            f"by this single point (without it the other x values have {others_distinct} distinct value(s))",
        }
    with np.errstate(divide="ignore", invalid="ignore"):
        d = e**2 / (p * s2) * h / (1.0 - h) ** 2 if s2 > 0 else np.zeros_like(e)
    i = int(np.nanargmax(d))
    d_max = float(d[i])
    flagged = d_max > limit
    reason = (
        f"point {i} (x = {x[i]:.4g}) moves the whole fit: Cook's distance {d_max:.3g} > {limit:.3g} "
        f"(leverage {h[i]:.3f})"
        if flagged
        else f"no influential point: max Cook's distance {d_max:.3g}, max leverage {h_max:.3f}"
    )
    return {
        "flagged": flagged,
        "test": "Cook's distance / leverage",
        "statistic": d_max,
        "index": i,
        "leverage_max": h_max,
        "threshold": limit,
        "reason": reason,
    }


def _breusch_pagan(x: np.ndarray, e: np.ndarray, sse: float, sst: float, alpha_test: float) -> dict[str, Any]:
    from scipy import stats

    n = x.size
    u = e**2
    if sse <= 1e-12 * sst or np.ptp(u) == 0:
        return {
            "flagged": False,
            "test": "Breusch-Pagan (Koenker)",
            "reason": "not testable: (near) exact fit",
        }
    X = np.column_stack([np.ones(n), x])
    _, r = _ols(X, u)
    r2_aux = 1.0 - float(r @ r) / float(((u - u.mean()) ** 2).sum())
    lm = n * r2_aux
    p = float(stats.chi2.sf(lm, 1))
    flagged = p < alpha_test
    reason = (
        f"Breusch-Pagan: the residual spread changes with x (LM = {lm:.3g}, p = {p:.2g} < {alpha_test:.2g})"
        if flagged
        else f"Breusch-Pagan: no evidence that the spread changes with x (LM = {lm:.3g}, p = {p:.2g})"
    )
    return {
        "flagged": flagged,
        "test": "Breusch-Pagan (Koenker)",
        "statistic": lm,
        "p_value": p,
        "threshold": alpha_test,
        "reason": reason,
    }


def diagnose(x: ArrayLike, y: ArrayLike, *, alpha: float = DEFAULT_ALPHA) -> Diagnosis:
    """Fit ``y ~ x`` by OLS and check the four ways a fitting line can be wrong (Anscombe's quartet).

    Parameters
    ----------
    x, y : array-like of float
        Predictor and response.
    alpha : float
        Family-wise false-alarm rate, split equally (Bonferroni) over RESET, the outlier test and
        Breusch–Pagan; the same per-test level sets the Cook's distance cut-off. Leverage ≥ 0.99 always
        flags (one point alone decides the slope).

    Returns
    -------
    Diagnosis
        Coefficients, R², n, flags (subset of :data:`FLAGS`) and per-test details with reasons.

    Raises
    ------
    InsufficientDataError
        Fewer than 3 points, non-finite values, a single distinct x or a constant y.
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if xa.size < 3:
        raise InsufficientDataError(f"diagnostics need at least 3 points, got {xa.size}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise InsufficientDataError("x and y must be finite (no NaN or infinite values)")
    if np.unique(xa).size < 2:
        raise InsufficientDataError("all x values are identical: no line can be fitted")
    sst = float(((ya - ya.mean()) ** 2).sum())
    if sst <= 0:
        raise InsufficientDataError("y is constant: there is nothing to explain")
    n = xa.size
    X = np.column_stack([np.ones(n), xa])
    beta, e = _ols(X, ya)
    sse = float(e @ e)
    dx = xa - xa.mean()
    h = 1.0 / n + dx**2 / float(dx @ dx)
    alpha_test = alpha / 3.0
    exact = sse <= 1e-20 * sst
    details: dict[str, dict[str, Any]] = {}
    if exact:
        msg = "not testable: the points lie exactly on a line"
        details = {f: {"flagged": False, "reason": msg} for f in FLAGS}
        details["influential_point"] = _influence(xa, e, h, max(sse, 1e-300), alpha / 3.0)
    else:
        details["nonlinearity"] = _reset(xa, ya, sse, sst, alpha_test)
        details["outlier"] = _outliers(xa, e, h, sse, sst, alpha_test)
        details["influential_point"] = _influence(xa, e, h, sse, alpha_test)
        details["heteroscedasticity"] = _breusch_pagan(xa, e, sse, sst, alpha_test)
    flags = [f for f in FLAGS if details[f]["flagged"]]
    return Diagnosis(
        intercept=float(beta[0]),
        slope=float(beta[1]),
        r2=1.0 - sse / sst,
        n=int(n),
        flags=flags,
        details=details,
        fitted=X @ beta,
        residuals=e,
    )
