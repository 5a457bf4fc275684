"""Train, select and export the served rent model.

Design
------
Rents are positive and their spread changes with the surface, but not always in proportion: so two
families compete (:mod:`rentlake.model.candidates`): models of ``ln(rent)`` (spread proportional to the
rent) and models of the rent in euros with a modelled spread (spread constant in euros, or growing more
slowly). Both serve local intervals: a Mondrian conformal half-width per surface band (and district),
calibrated on the cross-validation's out-of-fold residuals, so that the 90 % interval covers 90 % of the
listings of every band, not only on average.

Selection: the lowest interval (Winkler) score in euros on out-of-fold data, among the candidates whose
nested out-of-fold coverage is within [0.85, 0.95] in every surface tercile and every district of at
least 200 rows; then the simplest candidate within one standard error of it.
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

from rentlake.model import LEVEL, MIN_HELDOUT_ROWS, MIN_ROWS, InsufficientDataError
from rentlake.model.candidates import (
    CANDIDATES,
    COVERAGE_RANGE,
    Calibration,
    FittedCandidate,
    Spec,
    cross_validate,
    district_of,
    fit,
    specs,
)
from rentlake.model.card import model_card
from rentlake.model.diagnostics import Diagnosis, diagnose
from rentlake.model.evaluate import metrics, score_onnx
from rentlake.model.intervals import coverage_cells, fit_ols, normal_quantile, ols_intervals
from rentlake.model.reference import REFERENCE_SURFACE, at_reference_surface, course_reference
from rentlake.model.sample import row_identity

__all__ = [
    "train",
    "prepare",
    "holdout_mask",
    "TrainResult",
    "FittedCandidate",
    "CANDIDATES",
    "REFERENCE_SURFACE",
]

#: Columns ``prepare`` keeps beside rent and surface, when present: lineage the stages read back.
PASSTHROUGH = ("ingestion_id",)
#: Fixed 16-byte key of the held-out hash: the same rows are held out by every version.
HOLDOUT_KEY = "rentlake/holdout"
#: From this many cross-validation rows, 3 folds are enough (see :func:`_folds`).
LARGE_CV_ROWS = 20_000


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
        ``level``, ``method``, ``scale`` ("log" or "linear"), ``bands`` (the half-width table),
        ``spread`` (linear scale), ``z`` and the held-out coverage.
    metrics : dict
        Held-out metrics of the served (ONNX) model, plus ``candidates``: name -> metrics, plus
        ``ols_linear``: the homoscedastic course OLS scored on the same rows.
    ols_reference : dict
        Course OLS ``rent ~ surface`` (rents ≥ 10 000 € left out, as the course does) and its 30 m²
        estimate with ``mean_ci`` and ``obs_ci``.
    at_30m2 : dict
        The 30 m² estimate and interval of the served model next to the course OLS one.
    selection : dict
        ``chosen``, ``reason``, ``cv``: name -> out-of-fold MAE, Winkler score, conditional coverage.
    diagnostics : dict
        ``reference`` (rent ~ surface) and ``served_scale`` diagnosis dicts, the held-out coverage by
        surface tercile (``coverage_by_surface_tercile``) and per cell (``conditional_coverage``).
    test_set : pandas.DataFrame
        Held-out rows, for scoring the champion on the same data.
    sizes : dict
        Row counts (train, test, CV subsample, heavy-fit subsample, dropped rows).
    small_sample : dict or None
        Set when the held-out rows are fewer than :data:`~rentlake.model.MIN_HELDOUT_ROWS`.
    sampling : dict or None
        How the rows were sampled from the lake (the caller's description; see :func:`train`).
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
    small_sample: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    candidates: dict[str, FittedCandidate] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------------------------- input
def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate a clean DataFrame and keep the usable rows.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``rent_eur`` and ``surface_m2`` (required), ``district``, ``listed_at``, ``row_hash`` and
        ``ingestion_id`` (optional).

    Returns
    -------
    (DataFrame, dict)
        Rows with finite positive rent and surface (columns ``rent_eur``, ``surface_m2`` and, when
        usable, ``district``/``listed_at``/``row_hash``/``ingestion_id``) and facts about the input.

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
    ok = np.isfinite(out["rent_eur"]) & np.isfinite(out["surface_m2"])
    ok &= (out["rent_eur"] > 0) & (out["surface_m2"] > 0)
    dropped, n = int((~ok).sum()), int(ok.sum())
    _check_size(df, out[ok.to_numpy()], n)
    out = out[ok.to_numpy()]
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
    if "row_hash" in df.columns:
        out["row_hash"] = pd.to_numeric(df.loc[out.index, "row_hash"], errors="coerce")
    for name in PASSTHROUGH:
        if name in df.columns:
            out[name] = df.loc[out.index, name].astype("object").astype(str)
    return out, info


def _check_size(df: pd.DataFrame, usable: pd.DataFrame, n: int) -> None:
    if n == 0:
        raise InsufficientDataError(
            f"no usable rows: all {len(df)} rows lack a positive rent and surface (missing, zero or "
            f"negative values)"
        )
    if n < MIN_ROWS:
        raise InsufficientDataError(
            f"only {n} usable rows (rent and surface both present and positive); at least {MIN_ROWS} "
            "are needed to fit a model and check it on held-out rows"
        )
    if usable["surface_m2"].nunique() < 2:
        raise InsufficientDataError(
            f"every listing has the same surface ({usable['surface_m2'].iloc[0]:g} m²): rent cannot be "
            f"related to surface"
        )
    if usable["rent_eur"].nunique() < 2:
        raise InsufficientDataError(
            f"every listing has the same rent ({usable['rent_eur'].iloc[0]:g} €): there is nothing to model"
        )


def holdout_mask(df: pd.DataFrame, share: float) -> np.ndarray:
    """Rows held out by their hash: the same rows for every version trained on them.

    The hash is the clean zone's ``row_hash`` where present (else one of rent, surface, district and
    date: :func:`rentlake.model.sample.row_identity`), re-hashed into 1 000 buckets; buckets below
    ``share × 1000`` are held out.
    A row held out once is held out by every later version, so a champion was never trained on the
    rows of earlier batches its challenger is judged on.
    """
    bucket = pd.util.hash_array(row_identity(df), hash_key=HOLDOUT_KEY) % np.uint64(1000)
    return bucket < np.uint64(round(share * 1000))


def _split(df: pd.DataFrame, test_size: float, seed: int, how: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Held-out split: by row hash, by date (latest ``test_size``) when dated, seeded random otherwise."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n = len(df)
    n_test = min(n - MIN_ROWS // 2, max(2, math.ceil(test_size * n)))
    if how == "hash":
        held = holdout_mask(df, test_size)
        if held.sum() < 2 or n - held.sum() < MIN_ROWS // 2:
            # A handful of rows can hash anywhere: hold out the n_test lowest buckets instead, still by hash.
            order = np.argsort(pd.util.hash_array(np.arange(n, dtype=np.uint64), hash_key=HOLDOUT_KEY))
            held = np.zeros(n, dtype=bool)
            held[order[:n_test]] = True
        return df[~held], df[held], "hash"
    if how != "auto":
        raise ValueError(f"split must be 'auto' or 'hash', not {how!r}")
    if "listed_at" in df.columns:
        # Rows without a date are treated as old (training) rows; mergesort keeps ties in input order.
        order_t = df["listed_at"].sort_values(kind="mergesort", na_position="first").index
        d = df.loc[order_t]
        return d.iloc[: n - n_test], d.iloc[n - n_test :], "time"
    perm = np.random.default_rng(seed).permutation(n)
    return df.iloc[np.sort(perm[n_test:])], df.iloc[np.sort(perm[:n_test])], "random"


def _subsample(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(df) <= max_rows:
        return df
    idx = np.random.default_rng(seed).choice(len(df), max_rows, replace=False)
    return df.iloc[np.sort(idx)]


# ----------------------------------------------------------------------------------------- selection
def _select(cv: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """Lowest out-of-fold Winkler score among conditionally calibrated candidates, one-SE rule."""
    eligible = [k for k in cv if cv[k].get("conditional_ok", True)]
    note = ""
    if not eligible:
        eligible = list(cv)
        note = (
            "; no candidate was within [0.85, 0.95] in every surface tercile and large district out of "
            "fold, so all competed (the card's limits name the cells)"
        )
    best = min(eligible, key=lambda k: cv[k]["winkler_mean"])
    limit = cv[best]["winkler_mean"] + cv[best]["winkler_se"]
    order = [k for k in CANDIDATES if k in eligible]
    chosen = next(k for k in order if cv[k]["winkler_mean"] <= limit)
    left_out = sorted(set(cv) - set(eligible))
    why_out = f"; not calibrated in every cell out of fold: {', '.join(left_out)}" if left_out else ""
    c, b = cv[chosen], cv[best]
    if chosen == best:
        reason = (
            f"{chosen}: lowest out-of-fold interval (Winkler) score ({c['winkler_mean']:.0f} €, SE "
            f"{c['winkler_se']:.0f} €) and no simpler candidate within one standard error of it"
        )
    else:
        reason = (
            f"{chosen}: simplest candidate whose out-of-fold interval (Winkler) score "
            f"({c['winkler_mean']:.0f} €) is within one standard error of the best ({best}: "
            f"{b['winkler_mean']:.0f} ± {b['winkler_se']:.0f} €); the extra complexity does not pay "
            "beyond noise"
        )
    return chosen, reason + why_out + note


@dataclass
class _Choice:
    """The candidates' cross-validation, the one chosen and every candidate fitted and calibrated."""

    specs: list[Spec]
    cv: dict[str, dict[str, Any]]
    chosen: str
    reason: str
    fitted: dict[str, FittedCandidate]

    def selection(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "cv": self.cv,
            "criterion": "out-of-fold interval (Winkler) score in €, among candidates covering "
            f"[{COVERAGE_RANGE[0]}, {COVERAGE_RANGE[1]}] in every surface tercile and district of at least "
            "200 rows (nested out-of-fold), one-SE rule",
            "order": [s.name for s in self.specs],
        }


def _choose(
    candidate_specs: list[Spec],
    train_df: pd.DataFrame,
    cv_df: pd.DataFrame,
    seed: int,
    folds: int,
    gbr_estimators: int,
    level: float,
) -> _Choice:
    """Cross-validate every candidate, select one, fit all of them with their calibrated intervals."""
    cv: dict[str, dict[str, Any]] = {}
    calibrations: dict[str, Calibration] = {}
    for s in candidate_specs:
        cv[s.name], calibrations[s.name] = cross_validate(s, cv_df, seed, folds, gbr_estimators, level)
    chosen, reason = _select(cv)
    fitted = {}
    for s in candidate_specs:
        cand = fit(s, cv_df if s.heavy else train_df, seed, gbr_estimators)
        cand.bands, cand.spread, cand.level = calibrations[s.name].bands, calibrations[s.name].spread, level
        fitted[s.name] = cand
    return _Choice(candidate_specs, cv, chosen, reason, fitted)


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
    split: str = "auto",
    sampling: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the candidates, select one, export it to ONNX and document it.

    Parameters
    ----------
    df : pandas.DataFrame
        Clean listings: ``rent_eur``, ``surface_m2``; optional ``district``, ``listed_at``, ``row_hash``,
        ``ingestion_id``.
    seed : int
        Seed of the split, the folds, the subsamples and gradient boosting.
    test_size : float
        Held-out share.
    level : float
        Interval level (0.9).
    trained_at : datetime, optional
        Timestamp of the version (defaults to now, UTC); pass it for reproducible versions.
    lineage : dict, optional
        Where the data came from (filled in by the caller; copied into the card).
    cv_folds : int
        Number of K-fold splits for the selection and the conformal calibration (3 from
        :data:`LARGE_CV_ROWS` cross-validation rows).
    max_rows_heavy : int
        Cross-validation and the Huber / gradient boosting fits use a seeded subsample of at most this
        many training rows (keeps 1 M rows feasible); the sizes are recorded in ``sizes``.
    gbr_estimators : int
        Number of boosting stages.
    diagnostics_max_rows : int
        Regression diagnostics run on a seeded subsample of at most this many training rows.
    make_files : bool
        Render the PNG plots and ``card.html`` (:func:`rentlake.reporting.model_files`).
    split : {"auto", "hash"}
        ``"hash"``: the rows whose hash falls in the held-out share (:func:`holdout_mask`), the same for
        every version (what the train stage uses); ``"auto"``: the latest listings when dated, a seeded
        random share otherwise.
    sampling : dict, optional
        How ``df`` was drawn from a larger lake (the train stage's hash sample: rows in the lake, rows
        kept, the rule and the caps, for the training and the held-out rows); copied into the card's
        ``data.sampling`` and named in its limits.

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
        "split": split,
    }
    data, info = prepare(df)
    train_df, test_df, how = _split(data, test_size, seed, split)
    if train_df["surface_m2"].nunique() < 2:
        raise InsufficientDataError(
            "the training rows all have the same surface: rent cannot be related to surface"
        )
    cv_df = _subsample(train_df, max_rows_heavy, seed)
    folds = _folds(cv_folds, len(cv_df))
    use_district = len(info["districts"]) >= 2
    diag_df = _subsample(train_df, diagnostics_max_rows, seed)
    d_ref = diagnose(diag_df["surface_m2"], diag_df["rent_eur"])
    # A linear fit in euros decided by one point is what the gate refuses: such a candidate never competes.
    linear_ok = "influential_point" not in d_ref.flags
    choice = _choose(
        specs(use_district, linear=linear_ok), train_df, cv_df, seed, folds, gbr_estimators, level
    )
    if not linear_ok:
        choice.reason += "; linear-scale candidates left out: the line in euros is decided by one point"
    model = choice.fitted[choice.chosen]
    method = _method(model, folds)
    onnx_bytes = model.to_onnx(doc=f"rentlake {choice.chosen}; {method}")
    held = _heldout(onnx_bytes, choice.fitted, train_df, test_df, level)
    ols_all = fit_ols(*_course_xy(data))
    ols_reference = course_reference(ols_all, level, held.ols_linear_metrics)
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
        at_30m2=at_reference_surface(onnx_bytes, model, district_of(train_df), ols_reference),
        selection=choice.selection(),
        diagnostics=_diagnostics(diag_df, d_ref, test_df, held, model.scale),
        test_set=test_df.copy(),
        sizes=_sizes(info, data, train_df, test_df, cv_df, diag_df),
        card={},
        small_sample=_small_sample(len(test_df)),
        sampling=sampling,
        candidates=choice.fitted,
    )
    result.card = model_card(result, how, params, lineage)
    if make_files:
        from rentlake.reporting import model_files

        result.files = model_files(result, train_df, ols_all)
    return result


def _folds(asked: int, rows: int) -> int:
    """K of the K-fold: as asked, but 3 from :data:`LARGE_CV_ROWS` rows.

    With that many rows each fold still trains on two thirds of them and every row still gets an
    out-of-fold residual; two more folds would refine standard errors already far below the differences
    the selection acts on, at the price of two more fits of every candidate.
    """
    return min(asked, rows, 3 if rows >= LARGE_CV_ROWS else asked)


def _course_xy(data: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    from rentlake.model.reference import course_rows

    rows = course_rows(data)
    return rows["surface_m2"], rows["rent_eur"]


def _method(model: FittedCandidate, folds: int) -> str:
    assert model.bands is not None
    bands = f"{model.bands.bands} surface band(s)"
    if model.bands.groups:
        bands += f" × {len(model.bands.groups)} district factor(s)"
    if model.scale == "log":
        return (
            f"cross-conformal, Mondrian by surface band ({bands}): half-width h on the log scale = "
            f"conformal quantile of the out-of-fold absolute log residuals of the listing's band "
            f"({folds}-fold); interval = [exp(f - h), exp(f + h)], estimate = exp(f)"
        )
    return (
        f"cross-conformal, normalised and Mondrian by surface band ({bands}): spread s(x) = max(a + b·x, "
        "floor) fitted to the out-of-fold absolute residuals in €; h = conformal quantile of |residual| / "
        f"s(x) in the listing's band ({folds}-fold); interval = [max(f - h·s(x), 0), f + h·s(x)]"
    )


def _small_sample(heldout_rows: int) -> dict[str, Any] | None:
    """The card's ``small_sample`` field: set when the gate cannot judge the model on its held-out rows."""
    if heldout_rows >= MIN_HELDOUT_ROWS:
        return None
    return {
        "heldout_rows": heldout_rows,
        "min_heldout_rows": MIN_HELDOUT_ROWS,
        "message": f"small sample: judged on {heldout_rows} held-out listings (fewer than "
        f"{MIN_HELDOUT_ROWS}); the estimate and its interval are rough",
    }


@dataclass
class _Heldout:
    """Scores on the held-out rows: the served graph, every candidate and the course's linear OLS."""

    served: dict[str, np.ndarray]
    served_metrics: dict[str, Any]
    candidate_metrics: dict[str, Any]
    ols_test: dict[str, np.ndarray]
    ols_linear_metrics: dict[str, Any]
    cells: dict[str, list[dict[str, Any]]]


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
    groups = district_of(test_df) if "district" in test_df.columns else None
    return _Heldout(
        served=served,
        served_metrics=metrics(y_test, served["rent_eur"], served["low"], served["high"]),
        candidate_metrics={k: _metrics_of(y_test, c.predict(test_df)) for k, c in fitted.items()},
        ols_test=ols_test,
        ols_linear_metrics=ols_linear,
        cells=coverage_cells(y_test, served["low"], served["high"], test_df["surface_m2"], groups),
    )


def _diagnostics(
    diag_df: pd.DataFrame, d_ref: Diagnosis, test_df: pd.DataFrame, held: _Heldout, scale: str
) -> dict[str, Any]:
    """The course line's and the served scale's diagnoses, and the held-out coverage per cell."""
    x, y = diag_df["surface_m2"], diag_df["rent_eur"]
    d_served = diagnose(np.log(x), np.log(y)) if scale == "log" else d_ref
    return {
        "rows": len(diag_df),
        "reference": d_ref.to_dict(),
        "served_scale": d_served.to_dict(),
        "served_scale_formula": "ln rent ~ ln surface" if scale == "log" else "rent ~ surface",
        "coverage_by_surface_tercile": _coverage_by_tercile(test_df, held.served, held.ols_test),
        "conditional_coverage": held.cells,
    }


def _coverage_by_tercile(
    test_df: pd.DataFrame, served: dict[str, np.ndarray], ols: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Held-out coverage in small / medium / large surfaces, served interval beside the course band."""
    from rentlake.model.intervals import surface_terciles

    s = test_df["surface_m2"].to_numpy(dtype=float)
    y = test_df["rent_eur"].to_numpy(dtype=float)
    terc = surface_terciles(s)
    out: dict[str, Any] = {"edges_m2": [], "served": [], "ols": [], "n": []}
    for g in range(3):
        m = terc == g
        out["n"].append(int(m.sum()))
        inside_s = (y[m] >= served["low"][m]) & (y[m] <= served["high"][m])
        inside_o = (y[m] >= ols["obs_ci_lower"][m]) & (y[m] <= ols["obs_ci_upper"][m])
        out["served"].append(float(inside_s.mean()) if m.any() else None)
        out["ols"].append(float(inside_o.mean()) if m.any() else None)
        if g < 2 and m.any():
            out["edges_m2"].append(float(s[m].max()))
    return out


def _feature_ranges(train_df: pd.DataFrame, districts: list[str]) -> dict[str, Any]:
    return {
        "surface_m2": {
            "min": float(train_df["surface_m2"].min()),
            "max": float(train_df["surface_m2"].max()),
        },
        "districts": districts if len(districts) >= 2 else [],
    }


def _interval(model: FittedCandidate, level: float, method: str, coverage: float) -> dict[str, Any]:
    assert model.bands is not None
    return {
        "level": level,
        "method": method,
        "scale": model.scale,
        "bands": model.bands.to_json(),
        "spread": None if model.spread is None else model.spread.to_json(),
        "z": normal_quantile(level),
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


def _metrics_of(y: np.ndarray, pred: dict[str, np.ndarray]) -> dict[str, float]:
    return metrics(y, pred["rent_eur"], pred["low"], pred["high"])
