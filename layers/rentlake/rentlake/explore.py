"""Exploration rules for clean listings: statistics, the course line and plain-words hypotheses.

:func:`analyse` computes everything the exploration report states and returns it as an
:class:`Exploration`; it reads nothing, writes nothing and draws nothing.

The course line is computed as the course computes it: ``rent ~ surface`` by OLS on the listings as
received (duplicates kept) whose rent is below 10 000 € (:func:`rentlake.model.reference.course_rows`);
its diagnostics run on the same rows. Every hypothesis takes its verdict from its own test (named in
``test``), so no tick on the page contradicts a test printed beside it: "rent grows linearly" is
supported only when the correlation is strong *and* Ramsey's RESET finds no curvature; "the spread
grows" only when Breusch–Pagan says so.

A lake too big for one function is explored on a hash sample of its clean rows (the explore stage draws
it, :mod:`rentlake.stages.explore`): :func:`analyse` then records the sample (``sampling``, with
:func:`sample_statement`'s words) and the exact counts of every clean row (``lake``, :class:`LakeTotals`),
and labels the course line as fitted on the sample. The figures and the page are
drawn by :func:`rentlake.reporting.exploration_files`, and the explore stage
(:mod:`rentlake.stages.explore`) stores them in the lake.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rentlake.model import InsufficientDataError
from rentlake.model.diagnostics import Diagnosis, diagnose
from rentlake.model.intervals import OLSFit, fit_ols, ols_intervals
from rentlake.model.reference import COURSE_MAX_RENT, course_rows
from rentlake.reporting import jsonable

__all__ = [
    "Exploration",
    "LakeTotals",
    "ReferenceRents",
    "analyse",
    "reference_rents",
    "sample_statement",
    "usable_mask",
    "LEVEL",
]

LEVEL = 0.9
#: The surface of the course's worked example.
EXAMPLE_SURFACE = 30.0
Hypothesis = dict[str, Any]


@dataclass
class ReferenceRents:
    """The legal reference rents of Paris set beside the listings (latest year of the table).

    Attributes
    ----------
    summary : dict
        ``year``, ``median_by_arrondissement`` (postcode -> ``furnished``/``unfurnished`` €/m²),
        ``listings_median_eur_m2``, ``highest_paris_max_eur_m2``,
        ``share_of_listings_above_highest_max``; ``{"paris": None}`` when the table has no Paris row.
    medians : pandas.DataFrame or None
        Median reference €/m² per arrondissement (index, postcode) and furnishing (columns).
    paris_median : float or None
        Median reference €/m² over every Paris quartier of that year.
    """

    summary: dict[str, Any]
    medians: pd.DataFrame | None = None
    paris_median: float | None = None


@dataclass
class Exploration:
    """What the exploration found.

    Attributes
    ----------
    summary : dict
        JSON-ready statistics: counts, missing values, per-column statistics, correlations, the course
        OLS line, rent per m² by district, diagnostics and, when given, the legal reference rents.
    hypotheses : list of dict
        ``{"id", "statement", "supported", "evidence"}``: claims in plain words with their numbers.
    usable : pandas.DataFrame
        The rows with a positive rent and surface: ``rent_eur``, ``surface_m2``, ``rent_per_m2`` and,
        when known, ``district`` (what the figures draw).
    fit : OLSFit
        The course line ``rent_eur ~ surface_m2`` on the usable rows.
    reference : ReferenceRents or None
        The legal reference rents beside the listings.
    """

    summary: dict[str, Any]
    hypotheses: list[Hypothesis]
    usable: pd.DataFrame = field(repr=False)
    fit: OLSFit
    reference: ReferenceRents | None = None


@dataclass
class LakeTotals:
    """Exact counts over every clean row of a lake, added up file by file while a sample is drawn.

    Counts are cheap to stream, so what the report states as the lake's totals is exact even when its
    statistics are computed on a sample.

    Attributes
    ----------
    columns : list of str
        The contract's columns (a file without one counts its rows as missing there).
    rows, rows_usable : int
        Clean rows, and those with a positive finite rent and surface (:func:`usable_mask`).
    missing : dict
        ``column -> rows without a value``.
    listed_at : dict
        ``count``, ``min`` and ``max`` of the listing dates (None without any).
    groups : collections.Counter
        Rows per district (``""`` for none).
    duplicates_quarantined : int
        Rows quarantined as duplicates of a clean row (the course's view counts them).
    """

    columns: list[str]
    rows: int = 0
    rows_usable: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    listed_at: dict[str, Any] = field(default_factory=lambda: {"count": 0, "min": None, "max": None})
    groups: Counter[str] = field(default_factory=Counter)
    duplicates_quarantined: int = 0

    def add(self, frame: pd.DataFrame, groups: np.ndarray) -> None:
        """Count one clean file's rows.

        Parameters
        ----------
        frame : pandas.DataFrame
            Its rows (the contract's columns it has).
        groups : numpy.ndarray
            Each row's district label (:func:`rentlake.stages.clean_rows.group_labels`).
        """
        n = len(frame)
        self.rows += n
        for col in self.columns:
            absent = int(frame[col].isna().sum()) if col in frame.columns else n
            self.missing[col] = self.missing.get(col, 0) + absent
        if n and {"rent_eur", "surface_m2"} <= set(frame.columns):
            self.rows_usable += int(usable_mask(frame).sum())
        self.groups.update(pd.Series(groups).value_counts().to_dict())
        if n and "listed_at" in frame.columns:
            t = pd.to_datetime(frame["listed_at"], errors="coerce", utc=True).dropna()
            if len(t):
                d = self.listed_at
                d["count"] += int(len(t))
                d["min"] = t.min() if d["min"] is None else min(d["min"], t.min())
                d["max"] = t.max() if d["max"] is None else max(d["max"], t.max())

    def to_json(self) -> dict[str, Any]:
        """``rows``, ``rows_usable``, ``rows_unusable``, ``missing``, ``listed_at`` (ISO dates),
        ``districts`` and ``duplicates_quarantined``."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "rows_usable": self.rows_usable,
            "rows_unusable": self.rows - self.rows_usable,
            "missing": {c: self.missing.get(c, 0) for c in self.columns},
            "districts": sum(1 for g in self.groups if g != ""),
            "duplicates_quarantined": self.duplicates_quarantined,
        }
        if "listed_at" in self.columns:
            out["listed_at"] = jsonable(self.listed_at)
        return out


def sample_statement(sampling: dict[str, Any]) -> str:
    """The words the summary and the page use for the rows the statistics are computed on.

    Parameters
    ----------
    sampling : dict
        The explore stage's sampling record: ``all_rows`` and ``clean``
        (:func:`rentlake.model.sample.describe`: ``rows`` in the lake, ``sampled``).

    Returns
    -------
    str
        "statistics on a hash sample of N of M clean rows", or "statistics on all M clean rows".
    """
    clean = sampling["clean"]
    if sampling.get("all_rows"):
        return f"statistics on all {int(clean['rows']):,} clean rows"
    return f"statistics on a hash sample of {int(clean['sampled']):,} of {int(clean['rows']):,} clean rows"


def analyse(
    df: pd.DataFrame,
    *,
    run_id: str,
    reference: pd.DataFrame | None = None,
    as_received: pd.DataFrame | None = None,
    sampling: dict[str, Any] | None = None,
    lake: dict[str, Any] | None = None,
) -> Exploration:
    """Explore clean listings and state what the data suggests.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``rent_eur`` and ``surface_m2``; optional ``district`` and ``listed_at``; other columns are
        counted but otherwise ignored.
    run_id : str
        Identifier of the report run, recorded in the summary.
    reference : pandas.DataFrame, optional
        Clean legal reference rents (dataset ``reference_rents``): when given, the summary adds their
        median €/m² per Paris arrondissement (furnished and not) beside the listings'.
    as_received : pandas.DataFrame, optional
        The listings as the course takes them (duplicates kept): ``rent_eur`` and ``surface_m2``. The
        course line is fitted on its rows with a rent below 10 000 €; default: ``df``'s rows.
    sampling : dict, optional
        When ``df`` (and ``as_received``) are a hash sample of the lake, the explore stage's record of it
        (``all_rows``, ``clean``, ``duplicates``, ``rule``): stored as ``sampling`` with its
        :func:`sample_statement`, and the course line is said to be fitted on the sample.
    lake : dict, optional
        :meth:`LakeTotals.to_json`: exact counts over every clean row, stored as ``lake``.

    Returns
    -------
    Exploration

    Raises
    ------
    InsufficientDataError
        Missing columns, fewer than 3 rows with positive rent and surface, or a single distinct surface.
    """
    d = usable_rows(df)
    summary = describe(df, d, run_id)
    course = course_rows(as_received if as_received is not None else d)
    if len(course) < 3 or course["surface_m2"].nunique() < 2:
        raise InsufficientDataError(
            f"only {len(course)} listings with a rent below {COURSE_MAX_RENT:,.0f} €: the course line needs "
            "at least 3 with two distinct surfaces"
        )
    fit = fit_ols(course["surface_m2"], course["rent_eur"])
    summary["ols"] = course_line(fit, duplicates=int(course.duplicated().sum()))
    sampled = sampling is not None and not sampling.get("all_rows", True)
    if sampling is not None:
        summary["sampling"] = {**sampling, "statement": sample_statement(sampling)}
    if lake is not None:
        summary["lake"] = lake
    if sampled:
        summary["ols"]["fitted_on"] = "a hash sample of " + summary["ols"]["fitted_on"]
    by_district = rent_per_m2_by_district(d)
    summary["rent_per_m2_by_district"] = by_district
    diag = diagnose(course["surface_m2"], course["rent_eur"]) if len(course) >= 4 else None
    if diag is not None:
        summary["diagnostics"] = diag.to_dict()
    found = hypotheses(d, course, fit, diag, by_district, duplicates=summary["duplicate_rows"])
    ref = None
    if reference is not None and len(reference):
        ref = reference_rents(reference, d)
        summary["reference_rents"] = ref.summary
    return Exploration(
        summary=jsonable(summary), hypotheses=jsonable(found), usable=d, fit=fit, reference=ref
    )


# ------------------------------------------------------------------------------------------ statistics
def usable_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a finite positive rent and surface, with ``rent_per_m2`` and (when known) ``district``.

    Raises
    ------
    InsufficientDataError
        Missing columns, fewer than 3 usable rows or a single distinct surface.
    """
    missing_cols = [c for c in ("rent_eur", "surface_m2") if c not in df.columns]
    if missing_cols:
        raise InsufficientDataError(
            f"the data has no column {', '.join(missing_cols)}; exploration needs rent_eur and surface_m2"
        )
    rent = pd.to_numeric(df["rent_eur"], errors="coerce").astype(float)
    surface = pd.to_numeric(df["surface_m2"], errors="coerce").astype(float)
    ok = _usable(rent, surface)
    d = pd.DataFrame({"rent_eur": rent[ok], "surface_m2": surface[ok]})
    if len(d) < 3:
        raise InsufficientDataError(
            f"only {len(d)} rows have a positive rent and surface; at least 3 are needed to explore"
        )
    if d["surface_m2"].nunique() < 2:
        raise InsufficientDataError("every listing has the same surface: rent cannot be related to surface")
    d["rent_per_m2"] = d["rent_eur"] / d["surface_m2"]
    if "district" in df.columns and df["district"].notna().any():
        district = df.loc[d.index, "district"]
        d["district"] = district.astype("object").where(district.notna(), None)
    return d


def _usable(rent: pd.Series, surface: pd.Series) -> pd.Series:
    return (rent > 0) & (surface > 0) & np.isfinite(rent) & np.isfinite(surface)


def usable_mask(df: pd.DataFrame) -> np.ndarray:
    """Rows with a finite positive rent and surface (those :func:`usable_rows` keeps), as a bool array."""
    rent = pd.to_numeric(df["rent_eur"], errors="coerce").astype(float)
    surface = pd.to_numeric(df["surface_m2"], errors="coerce").astype(float)
    return _usable(rent, surface).to_numpy(dtype=bool)


def _stats(s: pd.Series) -> dict[str, Any]:
    s = s.dropna()
    if s.empty:
        return {"count": 0}
    q = s.quantile([0.25, 0.5, 0.75])
    return {
        "count": int(s.size),
        "mean": float(s.mean()),
        "std": float(s.std()) if s.size > 1 else None,
        "min": float(s.min()),
        "q25": float(q.iloc[0]),
        "median": float(q.iloc[1]),
        "q75": float(q.iloc[2]),
        "max": float(s.max()),
        "distinct": int(s.nunique()),
    }


def describe(df: pd.DataFrame, d: pd.DataFrame, run_id: str) -> dict[str, Any]:
    """Counts, missing values, duplicates, constant columns, statistics and correlations of the input.

    Parameters
    ----------
    df : pandas.DataFrame
        The input rows as given (every column is counted).
    d : pandas.DataFrame
        Its usable rows (:func:`usable_rows`).
    run_id : str
        Recorded as ``run_id``.

    Returns
    -------
    dict
        The first part of the summary (``listed_at`` range included when the column exists).
    """
    numeric = d[["rent_eur", "surface_m2", "rent_per_m2"]]
    summary: dict[str, Any] = {
        "run_id": run_id,
        "rows": int(len(df)),
        "rows_usable": int(len(d)),
        "rows_unusable": int(len(df) - len(d)),
        "columns": [str(c) for c in df.columns],
        "missing": {str(c): int(df[c].isna().sum()) for c in df.columns},
        "duplicate_rows": int(df.duplicated().sum()),
        "constant_columns": [str(c) for c in df.columns if df[c].nunique(dropna=True) <= 1],
        "statistics": {c: _stats(d[c]) for c in ("rent_eur", "surface_m2", "rent_per_m2")},
        "correlations": {
            "pearson": jsonable(numeric.corr(method="pearson").to_dict()),
            "spearman": jsonable(numeric.corr(method="spearman").to_dict()),
        },
    }
    if "listed_at" in df.columns:
        t = pd.to_datetime(df["listed_at"], errors="coerce", utc=True)
        summary["listed_at"] = {
            "count": int(t.notna().sum()),
            "min": t.min().isoformat() if t.notna().any() else None,
            "max": t.max().isoformat() if t.notna().any() else None,
        }
    return summary


def course_line(fit: OLSFit, *, duplicates: int = 0) -> dict[str, Any]:
    """The course's line ``rent_eur ~ surface_m2`` and its 30 m² estimate with both 90 % intervals."""
    at = ols_intervals(fit, [EXAMPLE_SURFACE], LEVEL)
    return {
        "formula": "rent_eur ~ surface_m2",
        "fitted_on": f"the listings as received ({duplicates} duplicate rows kept), rents below "
        f"{COURSE_MAX_RENT:,.0f} € (as the course does)",
        "intercept": fit.intercept,
        "slope": fit.slope,
        "r2": fit.r2,
        "n": fit.n,
        "sigma": float(np.sqrt(fit.sigma2)),
        "at_30m2": {
            "estimate": float(at["mean"][0]),
            "mean_ci": [float(at["mean_ci_lower"][0]), float(at["mean_ci_upper"][0])],
            "obs_ci": [float(at["obs_ci_lower"][0]), float(at["obs_ci_upper"][0])],
        },
    }


def rent_per_m2_by_district(d: pd.DataFrame) -> dict[str, Any]:
    """``district -> {"n", "median", "mean"}`` of the rent per m² (empty without districts)."""
    if "district" not in d.columns:
        return {}
    g = d.dropna(subset=["district"]).groupby("district")["rent_per_m2"]
    return {str(k): {"n": int(v.size), "median": float(v.median()), "mean": float(v.mean())} for k, v in g}


# ------------------------------------------------------------------------------------------ hypotheses
def hypotheses(
    d: pd.DataFrame,
    course: pd.DataFrame,
    fit: OLSFit,
    diag: Diagnosis | None,
    by_district: dict[str, Any],
    *,
    duplicates: int,
) -> list[Hypothesis]:
    """Claims about the listings in plain words, each with the test that decides it and its numbers.

    Parameters
    ----------
    d : pandas.DataFrame
        Usable clean rows (:func:`usable_rows`).
    course : pandas.DataFrame
        The course line's rows (:func:`rentlake.model.reference.course_rows`).
    fit : OLSFit
        The course line on them.
    diag : Diagnosis or None
        Its diagnostics, on the same rows (None with fewer than 4 rows).
    by_district : dict
        :func:`rent_per_m2_by_district`.
    duplicates : int
        Exact duplicate rows of the input.

    Returns
    -------
    list of dict
        ``{"id", "statement", "supported", "test", "evidence"}``: ``linear``, ``spread_grows``,
        ``negative_bounds``, ``per_m2_falls``, ``unusual_listings``, then ``duplicates`` when there are
        some and ``district_matters`` with at least two districts.
    """
    out = [
        _linear(course, fit, diag),
        _spread_grows(course, fit, diag),
        _negative_bounds(course, fit),
        _per_m2_falls(d),
        _unusual_listings(d),
    ]
    if duplicates:
        out.append(
            {
                "id": "duplicates",
                "supported": True,
                "test": "count of exact duplicate rows",
                "statement": f"{duplicates} rows are exact duplicates and would weigh twice in a fit",
                "evidence": {"count": duplicates},
            }
        )
    if len(by_district) >= 2:
        out.append(_district_matters(d, by_district))
    return out


def _linear(course: pd.DataFrame, fit: OLSFit, diag: Diagnosis | None) -> Hypothesis:
    """Supported when the correlation is strong and positive AND Ramsey's RESET finds no curvature."""
    r = float(np.corrcoef(course["surface_m2"], course["rent_eur"])[0, 1])
    reset = diag.details.get("nonlinearity", {}) if diag is not None else {}
    curved = bool(reset.get("flagged", False))
    grows = r >= 0.7 and fit.slope > 0
    p, threshold = reset.get("p_value"), reset.get("threshold")
    test = "Ramsey RESET not run"
    if isinstance(p, (int, float)) and isinstance(threshold, (int, float)):
        test = f"Ramsey RESET p = {p:.2g} (threshold {threshold:.2g})"
    head = f"r = {r:.2f}, slope about {fit.slope:.0f} €/m² (R² {fit.r2:.2f})"
    if grows and not curved:
        statement = f"rent grows linearly with surface: {head}; {test}: no curvature detected"
    elif grows:
        statement = f"rent grows with surface ({head}) but not linearly: {test}, the relation is curved"
    else:
        statement = f"rent does not grow linearly with surface: {head}; {test}"
    return {
        "id": "linear",
        "supported": bool(grows and not curved and diag is not None),
        "test": "Pearson r ≥ 0.7 with a positive slope, and Ramsey RESET (no curvature)",
        "statement": statement,
        "evidence": {
            "pearson_r": r,
            "slope": fit.slope,
            "intercept": fit.intercept,
            "r2": fit.r2,
            "reset_p": p,
            "reset_flagged": curved,
        },
    }


def _spread_grows(course: pd.DataFrame, fit: OLSFit, diag: Diagnosis | None) -> Hypothesis:
    """Supported when Breusch–Pagan finds the residual spread changing with surface."""
    resid = course["rent_eur"] - (fit.intercept + fit.slope * course["surface_m2"])
    terc = pd.qcut(course["surface_m2"].rank(method="first"), 3, labels=False)
    sd = [float(resid[terc == k].std()) for k in range(3)]
    bp = diag.details.get("heteroscedasticity", {}) if diag is not None else {}
    ratio = sd[2] / sd[0] if sd[0] > 0 else float("inf")
    flagged = bool(bp.get("flagged", False))
    return {
        "id": "spread_grows",
        "supported": flagged,
        "test": "Breusch-Pagan (Koenker) on the course line's residuals",
        "statement": f"spread {'grows' if flagged else 'does not clearly grow'} with surface: residual SD "
        f"{sd[0]:.0f} € for the smallest third of flats vs {sd[2]:.0f} € for the largest third "
        f"(×{ratio:.1f}; "
        f"Breusch–Pagan p = {bp.get('p_value', float('nan')):.2g})"
        + (
            "; a constant-width interval is too wide for small flats and too narrow for large ones"
            if flagged
            else ""
        ),
        "evidence": {"residual_sd_by_tercile": sd, "ratio": ratio, "breusch_pagan_p": bp.get("p_value")},
    }


def _negative_bounds(course: pd.DataFrame, fit: OLSFit) -> Hypothesis:
    at = ols_intervals(fit, course["surface_m2"].to_numpy(), LEVEL)
    neg = course["surface_m2"].to_numpy()[at["obs_ci_lower"] < 0]
    return {
        "id": "negative_bounds",
        "supported": bool(neg.size > 0),
        "test": "count of listings whose course 90 % prediction interval starts below 0 €",
        "statement": (
            f"the course's constant-width 90 % interval goes below 0 € for surfaces up to "
            f"{neg.max():.0f} m² ({neg.size} listings): intervals must follow the spread"
            if neg.size
            else "the course's 90 % interval stays positive on these surfaces"
        ),
        "evidence": {
            "listings_with_negative_low": int(neg.size),
            "max_surface_negative_low": float(neg.max()) if neg.size else None,
        },
    }


def _per_m2_falls(d: pd.DataFrame) -> Hypothesis:
    from scipy import stats

    rho, p_rho = stats.spearmanr(d["surface_m2"], d["rent_per_m2"])
    q1, q3 = d["surface_m2"].quantile([0.25, 0.75])
    small = float(d.loc[d["surface_m2"] <= q1, "rent_per_m2"].median())
    large = float(d.loc[d["surface_m2"] >= q3, "rent_per_m2"].median())
    return {
        "id": "per_m2_falls",
        "supported": bool(rho < -0.1 and p_rho < 0.01),
        "test": "Spearman rank correlation of rent per m² with surface (ρ < -0.1, p < 0.01)",
        "statement": f"rent per m² falls with surface: Spearman ρ = {rho:.2f}; median {small:.1f} €/m² for "
        f"flats ≤ {q1:.0f} m² vs {large:.1f} €/m² for flats ≥ {q3:.0f} m²",
        "evidence": {
            "spearman_rho": float(rho),
            "p_value": float(p_rho),
            "median_small": small,
            "median_large": large,
        },
    }


def _unusual_listings(d: pd.DataFrame) -> Hypothesis:
    rpm = d["rent_per_m2"]
    iqr = float(rpm.quantile(0.75) - rpm.quantile(0.25))
    hi, lo = float(rpm.quantile(0.75) + 3 * iqr), float(rpm.quantile(0.25) - 3 * iqr)
    n_out = int(((rpm > hi) | (rpm < lo)).sum())
    return {
        "id": "unusual_listings",
        "supported": bool(n_out > 0),
        "test": "count of rents per m² beyond 3 IQR of the quartiles",
        "statement": f"{n_out} listings have an unusual rent per m² (outside [{lo:.1f}, {hi:.1f}] €/m², "
        "3 IQR)",
        "evidence": {"count": n_out, "low": lo, "high": hi},
    }


def _district_matters(d: pd.DataFrame, by_district: dict[str, Any]) -> Hypothesis:
    from scipy import stats

    groups = [
        g["rent_per_m2"].to_numpy()
        for _, g in d.dropna(subset=["district"]).groupby("district")
        if len(g) >= 2
    ]
    p = float(stats.kruskal(*groups).pvalue) if len(groups) >= 2 else float("nan")
    med = {k: v["median"] for k, v in by_district.items()}
    lo_d, hi_d = min(med, key=med.__getitem__), max(med, key=med.__getitem__)
    return {
        "id": "district_matters",
        "supported": bool(p < 0.01),
        "test": "Kruskal-Wallis on rent per m² across districts (p < 0.01)",
        "statement": f"rent per m² depends on the district: median from {med[lo_d]:.1f} €/m² ({lo_d}) to "
        f"{med[hi_d]:.1f} €/m² ({hi_d}); Kruskal–Wallis p = {p:.2g}",
        "evidence": {"kruskal_p": p, "lowest": lo_d, "highest": hi_d},
    }


# ------------------------------------------------------------------------------ legal reference rents
def reference_rents(reference: pd.DataFrame, listings: pd.DataFrame) -> ReferenceRents:
    """Median legal reference rent per m² by Paris arrondissement, furnished and not, for the latest year.

    The course's "crossing data sources": the listings' median rent per m² is set beside the official
    references (regulatory values, not observed rents), so the report shows how far the market sits above
    what the law considers normal.

    Parameters
    ----------
    reference : pandas.DataFrame
        Clean ``reference_rents`` rows (``city``, ``quartier_code``, ``furnished``, ``year``,
        ``ref_eur_m2``, ``max_eur_m2``).
    listings : pandas.DataFrame
        Usable listings with ``rent_per_m2``.

    Returns
    -------
    ReferenceRents
    """
    paris = reference[reference["city"].astype(str).str.upper() == "PARIS"].copy()
    if paris.empty:
        return ReferenceRents(summary={"paris": None})
    year = int(paris["year"].max())
    paris = paris[paris["year"].astype("int64") == year]
    # 751AAQQ → arrondissement postcode 750AA, the listings' district form.
    paris["arrondissement"] = "750" + paris["quartier_code"].astype(str).str[3:5]
    med = paris.pivot_table(
        index="arrondissement", columns="furnished", values="ref_eur_m2", aggfunc="median"
    ).sort_index()
    med.columns = ["furnished" if bool(c) else "unfurnished" for c in med.columns]
    all_max = float(paris["max_eur_m2"].max())
    summary = {
        "year": year,
        "median_by_arrondissement": {
            str(k): {c: float(v) for c, v in row.items() if pd.notna(v)} for k, row in med.iterrows()
        },
        "listings_median_eur_m2": float(listings["rent_per_m2"].median()),
        "highest_paris_max_eur_m2": all_max,
        "share_of_listings_above_highest_max": float((listings["rent_per_m2"] > all_max).mean()),
    }
    return ReferenceRents(summary=summary, medians=med, paris_median=float(paris["ref_eur_m2"].median()))
