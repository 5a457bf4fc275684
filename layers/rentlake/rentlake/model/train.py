"""Train, select and export the served rent model.

Design
------
Rents are positive and their spread grows with the surface, so every candidate predicts ``ln(rent)``:
on that scale the spread is roughly constant and a single conformal half-width ``q`` gives intervals
``[exp(f - q), exp(f + q)]`` that are positive and widen in euros with the estimate. ``q`` is the
finite-sample conformal quantile of the *out-of-fold* absolute log residuals of the cross-validation
(cross-conformal), so the same machinery serves every family. The point estimate ``exp(f)`` is the
predictive median.

Candidates, simplest first: ``ols`` (ln rent ~ ln surface, the course's line on the log scale),
``huber`` (same, robust loss), ``ols_district`` (plus one-hot district, only with ≥ 2 districts) and
``gbr`` (gradient boosting on surface and district). Selection: lowest cross-validated MAE in euros,
then the simplest candidate within one standard error of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from rentlake.model import LEVEL, MIN_ROWS, InsufficientDataError
from rentlake.model.diagnostics import diagnose
from rentlake.model.evaluate import metrics, score_onnx
from rentlake.model.export import SURFACE_FEATURE, onnx_signature, to_onnx
from rentlake.model.intervals import OLSFit, conformal_quantile, fit_ols, normal_quantile, ols_intervals
from rentlake.reporting import jsonable

__all__ = ["train", "prepare", "TrainResult", "FittedCandidate", "CANDIDATES", "REFERENCE_SURFACE"]

#: Candidate names, simplest first (the order breaks ties in the selection).
CANDIDATES = ("ols", "huber", "ols_district", "gbr")
#: Surface at which the served and the course OLS intervals are compared (the course's example).
REFERENCE_SURFACE = 30.0
MISSING_DISTRICT = ""  # what the runtime feeds for a missing district; unknown to every encoder


@dataclass
class FittedCandidate:
    """A fitted candidate: a scikit-learn model of ``ln(rent)`` plus its log-scale half-width."""

    name: str
    estimator: Any
    surface_transform: str  # "log" or "identity"
    uses_district: bool
    log_halfwidth: float
    level: float = LEVEL

    def design(self, df: pd.DataFrame) -> pd.DataFrame:
        """Model inputs (``feat_surface`` and maybe ``district``) built from a clean DataFrame."""
        s = df["surface_m2"].to_numpy(dtype=float)
        X = pd.DataFrame(
            {SURFACE_FEATURE: np.log(s) if self.surface_transform == "log" else s}, index=df.index
        )
        if self.uses_district:
            X["district"] = _district(df)
        return X

    def predict_log(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted ``ln(rent)``."""
        return np.asarray(self.estimator.predict(self.design(df)), dtype=float).ravel()

    def predict(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Estimate and interval in euros: ``rent_eur``, ``low``, ``high`` (the ONNX graph's outputs)."""
        f = self.predict_log(df)
        return {
            "rent_eur": np.exp(f),
            "low": np.exp(f - self.log_halfwidth),
            "high": np.exp(f + self.log_halfwidth),
        }

    def to_onnx(self, doc: str = "") -> bytes:
        """Self-contained ONNX graph with outputs ``rent_eur``, ``low``, ``high``."""
        return to_onnx(
            self.estimator,
            surface_transform=self.surface_transform,
            uses_district=self.uses_district,
            log_halfwidth=self.log_halfwidth,
            name=f"rentlake_{self.name}",
            doc=doc,
        )


@dataclass
class TrainResult:
    """Everything the caller persists after a training run.

    Attributes
    ----------
    version : str
        ``<UTC timestamp>-<12 hex>``: the hash covers the data and the parameters, so it is deterministic
        given ``trained_at``.
    model_name : str
        Chosen candidate.
    onnx : bytes
        Served ONNX graph; ``sha256`` is its hex digest.
    features : list of str
        Graph inputs (``surface_m2`` and maybe ``district``).
    feature_ranges : dict
        ``surface_m2`` min/max seen in training and the districts seen.
    interval : dict
        ``level``, ``method``, ``scale`` ("log"), ``log_halfwidth``, ``z`` and the held-out coverage.
    metrics : dict
        Held-out metrics of the served (ONNX) model, plus ``candidates``: name -> metrics, plus
        ``ols_linear``: the homoscedastic course OLS scored on the same rows.
    ols_reference : dict
        Course OLS ``rent ~ surface`` on all rows: intercept, slope, r2, n and the 30 m² estimate with
        ``mean_ci`` and ``obs_ci``.
    at_30m2 : dict
        The 30 m² estimate and interval of the served model next to the course OLS one.
    selection : dict
        ``chosen``, ``reason``, ``cv``: name -> ``mae_mean``/``mae_se``/``log_halfwidth``.
    diagnostics : dict
        ``reference`` (rent ~ surface) and ``served_scale`` (ln rent ~ ln surface) diagnosis dicts and the
        held-out coverage by surface tercile.
    test_set : pandas.DataFrame
        Held-out rows, for scoring the champion on the same data.
    sizes : dict
        Row counts (train, test, CV subsample, heavy-fit subsample, dropped rows).
    card : dict
        JSON-serialisable model card.
    files : dict
        PNG plots and ``card.html``.
    candidates : dict
        Fitted candidates (not serialised), e.g. for parity tests.
    """

    version: str
    trained_at: datetime
    model_name: str
    onnx: bytes
    sha256: str
    features: list[str]
    feature_ranges: dict[str, Any]
    interval: dict[str, Any]
    metrics: dict[str, Any]
    ols_reference: dict[str, Any]
    at_30m2: dict[str, Any]
    selection: dict[str, Any]
    diagnostics: dict[str, Any]
    test_set: pd.DataFrame
    sizes: dict[str, int]
    card: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    candidates: dict[str, FittedCandidate] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------------------------- input


def _district(df: pd.DataFrame) -> np.ndarray:
    """District as strings, missing values as the empty string (what the runtime feeds)."""
    if "district" not in df.columns:
        return np.full(len(df), MISSING_DISTRICT, dtype=object)
    col = df["district"]
    return col.astype("object").where(col.notna(), MISSING_DISTRICT).astype(str).to_numpy(dtype=object)


def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate a clean DataFrame and keep the usable rows.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``rent_eur`` and ``surface_m2`` (required), ``district`` and ``listed_at`` (optional).

    Returns
    -------
    (DataFrame, dict)
        Rows with finite positive rent and surface (columns ``rent_eur``, ``surface_m2`` and, when
        usable, ``district``/``listed_at``) and facts about the input (dropped rows, districts, dates).

    Raises
    ------
    InsufficientDataError
        Missing columns, fewer than ``MIN_ROWS`` usable rows, a single distinct surface, constant rents.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("rent_eur", "surface_m2") if c not in df.columns]
    if missing:
        raise InsufficientDataError(
            f"the data has no column {', '.join(missing)}; a rent model needs rent_eur and surface_m2"
        )
    out = pd.DataFrame(
        {
            "rent_eur": pd.to_numeric(df["rent_eur"], errors="coerce").astype(float),
            "surface_m2": pd.to_numeric(df["surface_m2"], errors="coerce").astype(float),
        },
        index=df.index,
    )
    ok = (
        np.isfinite(out["rent_eur"])
        & np.isfinite(out["surface_m2"])
        & (out["rent_eur"] > 0)
        & (out["surface_m2"] > 0)
    )
    dropped = int((~ok).sum())
    n = int(ok.sum())
    if n == 0:
        raise InsufficientDataError(
            f"no usable rows: all {len(df)} rows lack a positive rent and surface (missing, zero or "
            f"negative values)"
        )
    if n < MIN_ROWS:
        raise InsufficientDataError(
            f"only {n} usable rows (rent and surface both present and positive); at least {MIN_ROWS} "
            f"are needed "
            "to fit a model and check it on held-out rows"
        )
    out = out[ok.to_numpy()]
    if out["surface_m2"].nunique() < 2:
        raise InsufficientDataError(
            f"every listing has the same surface ({out['surface_m2'].iloc[0]:g} m²): rent cannot be "
            f"related to surface"
        )
    if out["rent_eur"].nunique() < 2:
        raise InsufficientDataError(
            f"every listing has the same rent ({out['rent_eur'].iloc[0]:g} €): there is nothing to model"
        )
    info: dict[str, Any] = {"rows_in": int(len(df)), "rows_dropped_invalid": dropped, "rows": n}
    districts: list[str] = []
    if "district" in df.columns:
        d = df.loc[out.index, "district"]
        districts = sorted(d.dropna().astype(str).unique().tolist())
        if districts:
            out["district"] = d
    info["districts"] = districts
    if "listed_at" in df.columns:
        t = pd.to_datetime(df.loc[out.index, "listed_at"], errors="coerce", utc=True)
        if t.notna().any():
            out["listed_at"] = t
    info["has_dates"] = "listed_at" in out.columns
    return out, info


def _split(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Held-out split: the latest ``test_size`` by ``listed_at`` when dates exist, seeded random otherwise."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n = len(df)
    n_test = min(n - MIN_ROWS // 2, max(2, math.ceil(test_size * n)))
    if "listed_at" in df.columns:
        # Rows without a date are treated as old (training) rows; mergesort keeps ties in input order.
        order = df["listed_at"].sort_values(kind="mergesort", na_position="first").index
        d = df.loc[order]
        return d.iloc[: n - n_test], d.iloc[n - n_test :], "time"
    perm = np.random.default_rng(seed).permutation(n)
    return df.iloc[np.sort(perm[n_test:])], df.iloc[np.sort(perm[:n_test])], "random"


def _subsample(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(df) <= max_rows:
        return df
    idx = np.random.default_rng(seed).choice(len(df), max_rows, replace=False)
    return df.iloc[np.sort(idx)]


# ----------------------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Spec:
    name: str
    surface_transform: str
    uses_district: bool
    heavy: bool  # fitted on the subsample when n is large


def _specs(use_district: bool) -> list[_Spec]:
    specs = [_Spec("ols", "log", False, False), _Spec("huber", "log", False, True)]
    if use_district:
        specs.append(_Spec("ols_district", "log", True, False))
    # Trees are invariant to monotone transforms: keep the raw surface so float32 thresholds match exactly.
    specs.append(_Spec("gbr", "identity", use_district, True))
    return specs


def _estimator(spec: _Spec, seed: int, gbr_estimators: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import HuberRegressor, LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if spec.name in ("ols", "ols_district"):
        reg: Any = LinearRegression()
    elif spec.name == "huber":
        reg = HuberRegressor(epsilon=1.35, max_iter=500)
    else:
        reg = GradientBoostingRegressor(
            n_estimators=gbr_estimators,
            max_depth=3,
            learning_rate=0.05,
            subsample=0.8,
            min_samples_leaf=5,
            random_state=seed,
        )
    steps: list[tuple[str, Any]] = []
    if spec.uses_district:
        steps.append(
            (
                "prep",
                ColumnTransformer(
                    [
                        ("surface", "passthrough", [SURFACE_FEATURE]),
                        (
                            "district",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            ["district"],
                        ),
                    ]
                ),
            )
        )
    steps.append(("reg", reg))
    return Pipeline(steps)


def _fit(spec: _Spec, df: pd.DataFrame, seed: int, gbr_estimators: int, q: float) -> FittedCandidate:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    cand = FittedCandidate(
        spec.name, _estimator(spec, seed, gbr_estimators), spec.surface_transform, spec.uses_district, q
    )
    with warnings.catch_warnings():
        # Huber may stop at max_iter on awkward folds; the fit is still usable and CV judges it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        cand.estimator.fit(cand.design(df), np.log(df["rent_eur"].to_numpy(dtype=float)))
    return cand


def _cross_validate(
    spec: _Spec, df: pd.DataFrame, seed: int, folds: int, gbr_estimators: int, level: float
) -> dict[str, float]:
    """Seeded K-fold: MAE in euros per fold and the cross-conformal log half-width."""
    from sklearn.model_selection import KFold

    y = df["rent_eur"].to_numpy(dtype=float)
    oof = np.empty(len(df))
    maes = []
    for tr, va in KFold(n_splits=folds, shuffle=True, random_state=seed).split(df):
        cand = _fit(spec, df.iloc[tr], seed, gbr_estimators, 0.0)
        oof[va] = cand.predict_log(df.iloc[va])
        maes.append(float(np.mean(np.abs(np.exp(oof[va]) - y[va]))))
    m = np.asarray(maes)
    return {
        "mae_mean": float(m.mean()),
        "mae_se": float(m.std(ddof=1) / math.sqrt(m.size)),
        "log_halfwidth": conformal_quantile(np.abs(np.log(y) - oof), level),
        "folds": folds,
    }


def _select(cv: dict[str, dict[str, float]]) -> tuple[str, str]:
    best = min(cv, key=lambda k: cv[k]["mae_mean"])
    limit = cv[best]["mae_mean"] + cv[best]["mae_se"]
    chosen = next(k for k in CANDIDATES if k in cv and cv[k]["mae_mean"] <= limit)
    if chosen == best:
        reason = (
            f"{chosen}: lowest cross-validated MAE ({cv[chosen]['mae_mean']:.1f} €, SE "
            f"{cv[chosen]['mae_se']:.1f} €)"
            " and no simpler candidate within one standard error of it"
        )
    else:
        reason = (
            f"{chosen}: simplest candidate whose cross-validated MAE ({cv[chosen]['mae_mean']:.1f} €) "
            f"is within one "
            f"standard error of the best ({best}: {cv[best]['mae_mean']:.1f} ± {cv[best]['mae_se']:.1f} €); "
            "the extra complexity does not pay beyond noise"
        )
    return chosen, reason


# ------------------------------------------------------------------------------------------- training


def _data_hash(df: pd.DataFrame, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    cols = [c for c in ("rent_eur", "surface_m2", "district", "listed_at") if c in df.columns]
    h.update(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


def train(
    df: pd.DataFrame,
    *,
    seed: int = 42,
    test_size: float = 0.2,
    level: float = LEVEL,
    trained_at: datetime | None = None,
    lineage: dict[str, Any] | None = None,
    cv_folds: int = 5,
    max_rows_heavy: int = 50_000,
    gbr_estimators: int = 150,
    diagnostics_max_rows: int = 5_000,
    make_files: bool = True,
) -> TrainResult:
    """Train the candidates, select one, export it to ONNX and document it.

    Parameters
    ----------
    df : pandas.DataFrame
        Clean listings: ``rent_eur``, ``surface_m2``; optional ``district``, ``listed_at``.
    seed : int
        Seed of the split, the folds, the subsamples and gradient boosting.
    test_size : float
        Held-out share (the latest listings when ``listed_at`` exists).
    level : float
        Interval level (0.9).
    trained_at : datetime, optional
        Timestamp of the version (defaults to now, UTC); pass it for reproducible versions.
    lineage : dict, optional
        Where the data came from (filled in by the caller; copied into the card).
    cv_folds : int
        Number of K-fold splits for the selection and the conformal calibration.
    max_rows_heavy : int
        Cross-validation and the Huber / gradient boosting fits use a seeded subsample of at most this
        many training rows (keeps 1 M rows feasible); the sizes are recorded in ``sizes``.
    gbr_estimators : int
        Number of boosting stages.
    diagnostics_max_rows : int
        Regression diagnostics run on a seeded subsample of at most this many training rows.
    make_files : bool
        Render the PNG plots and ``card.html`` (:func:`rentlake.reporting.model_files`).

    Returns
    -------
    TrainResult

    Raises
    ------
    InsufficientDataError
        The data cannot support a model (see :func:`prepare`).
    """
    trained_at = trained_at or datetime.now(UTC)
    params = {
        "seed": seed,
        "test_size": test_size,
        "level": level,
        "cv_folds": cv_folds,
        "max_rows_heavy": max_rows_heavy,
        "gbr_estimators": gbr_estimators,
    }
    data, info = prepare(df)
    train_df, test_df, split = _split(data, test_size, seed)
    if train_df["surface_m2"].nunique() < 2:
        raise InsufficientDataError(
            "the training rows all have the same surface: rent cannot be related to surface"
        )
    folds = min(cv_folds, len(train_df))
    cv_df = _subsample(train_df, max_rows_heavy, seed)
    choice = _choose(_specs(len(info["districts"]) >= 2), train_df, cv_df, seed, folds, gbr_estimators, level)
    model = choice.fitted[choice.chosen]
    method = (
        "cross-conformal: constant half-width on the log scale = conformal quantile of the out-of-fold "
        f"absolute log residuals ({folds}-fold); interval = [exp(f - q), exp(f + q)], estimate = exp(f)"
    )
    onnx_bytes = model.to_onnx(doc=f"rentlake {choice.chosen}; {method}")
    held = _heldout(onnx_bytes, choice.fitted, train_df, test_df, level)
    ols_all = fit_ols(data["surface_m2"], data["rent_eur"])
    ols_reference = _course_reference(ols_all, level, held.ols_linear_metrics)
    diag_df = _subsample(train_df, diagnostics_max_rows, seed)
    result = TrainResult(
        version=f"{trained_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{_data_hash(data, params)[:12]}",
        trained_at=trained_at,
        model_name=choice.chosen,
        onnx=onnx_bytes,
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        features=["surface_m2"] + (["district"] if model.uses_district else []),
        feature_ranges=_feature_ranges(train_df, info["districts"]),
        interval=_interval(model, level, method, held.served_metrics["coverage"]),
        metrics={
            **held.served_metrics,
            "candidates": held.candidate_metrics,
            "ols_linear": held.ols_linear_metrics,
        },
        ols_reference=ols_reference,
        at_30m2=_at_reference_surface(onnx_bytes, model, train_df, ols_reference),
        selection=choice.selection(),
        diagnostics=_diagnostics(diag_df, test_df, held),
        test_set=test_df.copy(),
        sizes=_sizes(info, data, train_df, test_df, cv_df, diag_df),
        card={},
        candidates=choice.fitted,
    )
    result.card = _card(result, split, params, lineage)
    if make_files:
        from rentlake.reporting import model_files

        result.files = model_files(result, train_df, ols_all)
    return result


@dataclass
class _Choice:
    """The candidates' cross-validation, the one chosen and every candidate fitted."""

    specs: list[_Spec]
    cv: dict[str, dict[str, float]]
    chosen: str
    reason: str
    fitted: dict[str, FittedCandidate]

    def selection(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "cv": self.cv,
            "criterion": "cross-validated MAE (€), one-SE rule",
            "order": [s.name for s in self.specs],
        }


def _choose(
    specs: list[_Spec],
    train_df: pd.DataFrame,
    cv_df: pd.DataFrame,
    seed: int,
    folds: int,
    gbr_estimators: int,
    level: float,
) -> _Choice:
    """Cross-validate every candidate, select one, fit all of them with their conformal half-widths."""
    cv = {s.name: _cross_validate(s, cv_df, seed, folds, gbr_estimators, level) for s in specs}
    chosen, reason = _select(cv)
    fitted = {
        s.name: _fit(s, cv_df if s.heavy else train_df, seed, gbr_estimators, cv[s.name]["log_halfwidth"])
        for s in specs
    }
    return _Choice(specs, cv, chosen, reason, fitted)


@dataclass
class _Heldout:
    """Scores on the held-out rows: the served graph, every candidate and the course's linear OLS."""

    served: dict[str, np.ndarray]
    served_metrics: dict[str, Any]
    candidate_metrics: dict[str, Any]
    ols_test: dict[str, np.ndarray]
    ols_linear_metrics: dict[str, Any]


def _heldout(
    onnx_bytes: bytes,
    fitted: dict[str, FittedCandidate],
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    level: float,
) -> _Heldout:
    y_test = test_df["rent_eur"].to_numpy(dtype=float)
    # The served graph itself is scored (not its scikit-learn source): the metrics are the API's.
    served = score_onnx(onnx_bytes, test_df)
    ols_test = ols_intervals(
        fit_ols(train_df["surface_m2"], train_df["rent_eur"]), test_df["surface_m2"], level
    )
    ols_linear = metrics(y_test, ols_test["mean"], ols_test["obs_ci_lower"], ols_test["obs_ci_upper"])
    ols_linear["negative_low_share"] = float(np.mean(ols_test["obs_ci_lower"] < 0))
    return _Heldout(
        served=served,
        served_metrics=metrics(y_test, served["rent_eur"], served["low"], served["high"]),
        candidate_metrics={k: _metrics_of(y_test, c.predict(test_df)) for k, c in fitted.items()},
        ols_test=ols_test,
        ols_linear_metrics=ols_linear,
    )


def _course_reference(ols_all: OLSFit, level: float, heldout: dict[str, Any]) -> dict[str, Any]:
    """The course line ``rent ~ surface`` on all rows and its 30 m² estimate with both intervals."""
    at = ols_intervals(ols_all, [REFERENCE_SURFACE], level)
    return {
        "formula": "rent_eur ~ surface_m2",
        "fitted_on": "all rows",
        "n": ols_all.n,
        "intercept": ols_all.intercept,
        "slope": ols_all.slope,
        "r2": ols_all.r2,
        "sigma": math.sqrt(ols_all.sigma2),
        "at_30m2": {
            "surface_m2": REFERENCE_SURFACE,
            "estimate": float(at["mean"][0]),
            "mean_ci": [float(at["mean_ci_lower"][0]), float(at["mean_ci_upper"][0])],
            "obs_ci": [float(at["obs_ci_lower"][0]), float(at["obs_ci_upper"][0])],
        },
        "heldout": heldout,
    }


def _at_reference_surface(
    onnx_bytes: bytes, model: FittedCandidate, train_df: pd.DataFrame, ols_reference: dict[str, Any]
) -> dict[str, Any]:
    """The served 30 m² estimate and interval (most frequent district) beside the course OLS one."""
    ref_district = None
    if model.uses_district:
        ref_district = str(pd.Series(_district(train_df)).mode().iloc[0])
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


def _diagnostics(diag_df: pd.DataFrame, test_df: pd.DataFrame, held: _Heldout) -> dict[str, Any]:
    """The course line's and the served scale's diagnoses, and the held-out coverage by surface tercile."""
    d_ref = diagnose(diag_df["surface_m2"], diag_df["rent_eur"])
    d_log = diagnose(np.log(diag_df["surface_m2"]), np.log(diag_df["rent_eur"]))
    return {
        "rows": len(diag_df),
        "reference": d_ref.to_dict(),
        "served_scale": d_log.to_dict(),
        "coverage_by_surface_tercile": _coverage_by_tercile(test_df, held.served, held.ols_test),
    }


def _feature_ranges(train_df: pd.DataFrame, districts: list[str]) -> dict[str, Any]:
    return {
        "surface_m2": {
            "min": float(train_df["surface_m2"].min()),
            "max": float(train_df["surface_m2"].max()),
        },
        "districts": districts if len(districts) >= 2 else [],
    }


def _interval(model: FittedCandidate, level: float, method: str, coverage: float) -> dict[str, Any]:
    z = normal_quantile(level)
    return {
        "level": level,
        "method": method,
        "scale": "log",
        "log_halfwidth": model.log_halfwidth,
        "z": z,
        "sigma_log": model.log_halfwidth / z,
        "heldout_coverage": coverage,
    }


def _sizes(
    info: dict[str, Any],
    data: pd.DataFrame,
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    cv_df: pd.DataFrame,
    diag_df: pd.DataFrame,
) -> dict[str, int]:
    return {
        "rows_in": info["rows_in"],
        "rows_dropped_invalid": info["rows_dropped_invalid"],
        "rows": len(data),
        "train": len(train_df),
        "test": len(test_df),
        "cv_subsample": len(cv_df),
        "heavy_fit_subsample": len(cv_df),
        "diagnostics_subsample": len(diag_df),
    }


def _coverage_by_tercile(
    test_df: pd.DataFrame, served: dict[str, np.ndarray], ols: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Held-out coverage in small / medium / large surfaces: shows whether the interval follows the spread."""
    s = test_df["surface_m2"].to_numpy(dtype=float)
    y = test_df["rent_eur"].to_numpy(dtype=float)
    edges = np.quantile(s, [1 / 3, 2 / 3])
    groups = np.digitize(s, edges)
    out: dict[str, Any] = {"edges_m2": edges.tolist(), "served": [], "ols": [], "n": []}
    for g in range(3):
        m = groups == g
        out["n"].append(int(m.sum()))
        inside_s = (y[m] >= served["low"][m]) & (y[m] <= served["high"][m])
        inside_o = (y[m] >= ols["obs_ci_lower"][m]) & (y[m] <= ols["obs_ci_upper"][m])
        out["served"].append(float(inside_s.mean()) if m.any() else None)
        out["ols"].append(float(inside_o.mean()) if m.any() else None)
    return out


def _card(
    r: TrainResult, split: str, params: dict[str, Any], lineage: dict[str, Any] | None
) -> dict[str, Any]:
    smin, smax = r.feature_ranges["surface_m2"]["min"], r.feature_ranges["surface_m2"]["max"]
    limits = [
        f"trained on surfaces from {smin:g} to {smax:g} m²; estimates outside this range are extrapolations",
        f"{int(r.interval['level'] * 100)} % intervals are calibrated on average (held-out coverage "
        f"{r.metrics['coverage']:.2f}); about one rent in ten falls outside",
        "the estimate is the predictive median; features other than surface"
        + (" and district" if "district" in r.features else "")
        + " (floor, condition, furnishing) are not used",
    ]
    if "district" in r.features:
        limits.append(
            "unknown districts are treated as an average-free baseline (their one-hot code is all zeros)"
        )
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
            "data": {**r.sizes, "split": split, "lineage": lineage},
            "features": r.features,
            "feature_ranges": r.feature_ranges,
            "interval": r.interval,
            "metrics": r.metrics,
            "selection": r.selection,
            "ols_reference": r.ols_reference,
            "at_30m2": r.at_30m2,
            "diagnostics": r.diagnostics,
            "params": params,
            "limits": limits,
        }
    )


def _metrics_of(y: np.ndarray, pred: dict[str, np.ndarray]) -> dict[str, float]:
    return metrics(y, pred["rent_eur"], pred["low"], pred["high"])
