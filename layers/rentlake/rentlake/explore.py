"""Exploratory report on clean listings: statistics, the course's figures and plain-words hypotheses.

``build_report`` returns a JSON-serialisable summary, PNG figures and one self-contained ``report.html``
(PNGs embedded as base64 data URIs). Nothing is written anywhere: the caller stores the files.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rentlake.model import InsufficientDataError
from rentlake.model._render import html_page, jsonable, png
from rentlake.model.diagnostics import diagnose
from rentlake.model.intervals import fit_ols, ols_intervals

__all__ = ["Report", "build_report"]

LEVEL = 0.9
#: Scatter plots and histograms use a seeded subsample beyond this many rows (plotting 1 M points is slow
#: and unreadable); statistics always use every row.
MAX_PLOT_POINTS = 20_000
#: Districts shown in the per-district figure (the most frequent ones).
MAX_DISTRICTS_PLOTTED = 25


@dataclass
class Report:
    """Exploration output.

    Attributes
    ----------
    summary : dict
        JSON-serialisable statistics: counts, missing values, per-column statistics, correlations, the
        course OLS line, rent per m² by district.
    files : dict
        ``name -> bytes``: PNG figures and ``report.html``.
    hypotheses : list of dict
        ``{"id", "statement", "supported", "evidence"}``: claims in plain words with their numbers.
    """

    summary: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    hypotheses: list[dict[str, Any]] = field(default_factory=list)


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


def build_report(df: pd.DataFrame, *, run_id: str, reference: pd.DataFrame | None = None) -> Report:
    """Explore clean listings and state what the data suggests.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``rent_eur`` and ``surface_m2``; optional ``district`` and ``listed_at``; other columns are
        counted but otherwise ignored.
    run_id : str
        Identifier of the pipeline run, recorded in the summary and the page title.
    reference : pandas.DataFrame, optional
        Clean legal reference rents (dataset ``reference_rents``): when given, the report adds their median
        €/m² per Paris arrondissement (furnished and not) and sets the listings beside them.

    Returns
    -------
    Report

    Raises
    ------
    InsufficientDataError
        Missing columns, fewer than 3 rows with positive rent and surface, or a single distinct surface.
    """
    missing_cols = [c for c in ("rent_eur", "surface_m2") if c not in df.columns]
    if missing_cols:
        raise InsufficientDataError(
            f"the data has no column {', '.join(missing_cols)}; exploration needs rent_eur and surface_m2"
        )
    rent = pd.to_numeric(df["rent_eur"], errors="coerce").astype(float)
    surface = pd.to_numeric(df["surface_m2"], errors="coerce").astype(float)
    ok = (rent > 0) & (surface > 0) & np.isfinite(rent) & np.isfinite(surface)
    d = pd.DataFrame({"rent_eur": rent[ok], "surface_m2": surface[ok]})
    if len(d) < 3:
        raise InsufficientDataError(
            f"only {len(d)} rows have a positive rent and surface; at least 3 are needed to explore"
        )
    if d["surface_m2"].nunique() < 2:
        raise InsufficientDataError("every listing has the same surface: rent cannot be related to surface")
    d["rent_per_m2"] = d["rent_eur"] / d["surface_m2"]
    has_district = "district" in df.columns and df["district"].notna().any()
    if has_district:
        d["district"] = (
            df.loc[d.index, "district"].astype("object").where(df.loc[d.index, "district"].notna(), None)
        )

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
            "pearson": jsonable(
                d[["rent_eur", "surface_m2", "rent_per_m2"]].corr(method="pearson").to_dict()
            ),
            "spearman": jsonable(
                d[["rent_eur", "surface_m2", "rent_per_m2"]].corr(method="spearman").to_dict()
            ),
        },
    }
    if "listed_at" in df.columns:
        t = pd.to_datetime(df["listed_at"], errors="coerce", utc=True)
        summary["listed_at"] = {
            "count": int(t.notna().sum()),
            "min": t.min().isoformat() if t.notna().any() else None,
            "max": t.max().isoformat() if t.notna().any() else None,
        }
    fit = fit_ols(d["surface_m2"], d["rent_eur"])
    at30 = ols_intervals(fit, [30.0], LEVEL)
    summary["ols"] = {
        "formula": "rent_eur ~ surface_m2",
        "intercept": fit.intercept,
        "slope": fit.slope,
        "r2": fit.r2,
        "n": fit.n,
        "sigma": float(np.sqrt(fit.sigma2)),
        "at_30m2": {
            "estimate": float(at30["mean"][0]),
            "mean_ci": [float(at30["mean_ci_lower"][0]), float(at30["mean_ci_upper"][0])],
            "obs_ci": [float(at30["obs_ci_lower"][0]), float(at30["obs_ci_upper"][0])],
        },
    }
    by_district: dict[str, Any] = {}
    if has_district:
        g = d.dropna(subset=["district"]).groupby("district")["rent_per_m2"]
        by_district = {
            str(k): {"n": int(v.size), "median": float(v.median()), "mean": float(v.mean())} for k, v in g
        }
    summary["rent_per_m2_by_district"] = by_district

    diag = diagnose(d["surface_m2"], d["rent_eur"]) if len(d) >= 4 else None
    if diag is not None:
        summary["diagnostics"] = diag.to_dict()
    hypotheses = _hypotheses(d, fit, diag, by_district, summary)
    files = _figures(d, fit, by_district)
    sections = [
        (
            "Data",
            f"<p>{summary['rows']} rows, {summary['rows_usable']} usable, {summary['duplicate_rows']} exact "
            f"duplicates.</p>",
        ),
        (
            "Course line",
            f"<p>rent ≈ {fit.intercept:.1f} + {fit.slope:.2f} × surface (R² {fit.r2:.3f}); 30 m² → "
            f"{at30['mean'][0]:.0f} €, 90 % confidence of the mean [{at30['mean_ci_lower'][0]:.0f}, "
            f"{at30['mean_ci_upper'][0]:.0f}], 90 % prediction [{at30['obs_ci_lower'][0]:.0f}, "
            f"{at30['obs_ci_upper'][0]:.0f}] €.</p>",
        ),
        (
            "Hypotheses",
            "<ul>"
            + "".join(
                f"<li>{'✔' if h['supported'] else '✘'} {html.escape(h['statement'])}</li>" for h in hypotheses
            )
            + "</ul>",
        ),
    ]
    if reference is not None and len(reference):
        ref_summary, ref_png, ref_html = reference_section(reference, d)
        summary["reference_rents"] = ref_summary
        files["reference_rents_by_arrondissement.png"] = ref_png
        sections.append(("Legal reference rents", ref_html))
    files["report.html"] = html_page(
        f"rentlake exploration — {run_id}",
        sections,
        dict(files),
        {"summary": summary, "hypotheses": hypotheses},
    )
    return Report(summary=jsonable(summary), files=files, hypotheses=jsonable(hypotheses))


def _hypotheses(
    d: pd.DataFrame, fit: Any, diag: Any, by_district: dict[str, Any], summary: dict[str, Any]
) -> list[dict[str, Any]]:
    from scipy import stats

    out: list[dict[str, Any]] = []
    r = float(np.corrcoef(d["surface_m2"], d["rent_eur"])[0, 1])
    out.append(
        {
            "id": "linear",
            "supported": bool(r >= 0.7 and fit.slope > 0),
            "statement": f"rent grows linearly with surface: r = {r:.2f}, slope about {fit.slope:.0f} €/m² "
            f"(R² {fit.r2:.2f})",
            "evidence": {"pearson_r": r, "slope": fit.slope, "intercept": fit.intercept, "r2": fit.r2},
        }
    )

    resid = d["rent_eur"] - (fit.intercept + fit.slope * d["surface_m2"])
    terc = pd.qcut(d["surface_m2"].rank(method="first"), 3, labels=False)
    sd = [float(resid[terc == k].std()) for k in range(3)]
    bp = diag.details.get("heteroscedasticity", {}) if diag is not None else {}
    ratio = sd[2] / sd[0] if sd[0] > 0 else float("inf")
    out.append(
        {
            "id": "spread_grows",
            "supported": bool(ratio > 1.5 or bp.get("flagged", False)),
            "statement": f"spread grows with surface: residual SD {sd[0]:.0f} € for the smallest third "
            "of flats vs "
            f"{sd[2]:.0f} € for the largest third (×{ratio:.1f}; Breusch–Pagan p = "
            f"{bp.get('p_value', float('nan')):.2g}); a constant-width interval is too wide for small "
            "flats and too narrow for large ones",
            "evidence": {"residual_sd_by_tercile": sd, "ratio": ratio, "breusch_pagan_p": bp.get("p_value")},
        }
    )

    at = ols_intervals(fit, d["surface_m2"].to_numpy(), LEVEL)
    neg = d["surface_m2"].to_numpy()[at["obs_ci_lower"] < 0]
    out.append(
        {
            "id": "negative_bounds",
            "supported": bool(neg.size > 0),
            "statement": (
                f"the course's constant-width 90 % interval goes below 0 € for surfaces up to "
                f"{neg.max():.0f} m² ({neg.size} listings): a model of the log rent is needed"
                if neg.size
                else "the course's 90 % interval stays positive on these surfaces"
            ),
            "evidence": {
                "listings_with_negative_low": int(neg.size),
                "max_surface_negative_low": float(neg.max()) if neg.size else None,
            },
        }
    )

    rho, p_rho = stats.spearmanr(d["surface_m2"], d["rent_per_m2"])
    q1, q3 = d["surface_m2"].quantile([0.25, 0.75])
    small = float(d.loc[d["surface_m2"] <= q1, "rent_per_m2"].median())
    large = float(d.loc[d["surface_m2"] >= q3, "rent_per_m2"].median())
    out.append(
        {
            "id": "per_m2_falls",
            "supported": bool(rho < -0.1 and p_rho < 0.01),
            "statement": f"rent per m² falls with surface: Spearman ρ = {rho:.2f}; median {small:.1f} "
            "€/m² for "
            f"flats ≤ {q1:.0f} m² vs {large:.1f} €/m² for flats ≥ {q3:.0f} m²",
            "evidence": {
                "spearman_rho": float(rho),
                "p_value": float(p_rho),
                "median_small": small,
                "median_large": large,
            },
        }
    )

    rpm = d["rent_per_m2"]
    iqr = float(rpm.quantile(0.75) - rpm.quantile(0.25))
    hi, lo = float(rpm.quantile(0.75) + 3 * iqr), float(rpm.quantile(0.25) - 3 * iqr)
    n_out = int(((rpm > hi) | (rpm < lo)).sum())
    out.append(
        {
            "id": "unusual_listings",
            "supported": bool(n_out > 0),
            "statement": f"{n_out} listings have an unusual rent per m² (outside [{lo:.1f}, {hi:.1f}] "
            "€/m², 3 IQR)",
            "evidence": {"count": n_out, "low": lo, "high": hi},
        }
    )

    if summary["duplicate_rows"]:
        out.append(
            {
                "id": "duplicates",
                "supported": True,
                "statement": f"{summary['duplicate_rows']} rows are exact duplicates and would weigh "
                "twice in a fit",
                "evidence": {"count": summary["duplicate_rows"]},
            }
        )

    if len(by_district) >= 2:
        groups = [
            g["rent_per_m2"].to_numpy()
            for _, g in d.dropna(subset=["district"]).groupby("district")
            if len(g) >= 2
        ]
        p = float(stats.kruskal(*groups).pvalue) if len(groups) >= 2 else float("nan")
        med = {k: v["median"] for k, v in by_district.items()}
        lo_d, hi_d = min(med, key=med.__getitem__), max(med, key=med.__getitem__)
        out.append(
            {
                "id": "district_matters",
                "supported": bool(p < 0.01),
                "statement": f"rent per m² depends on the district: median from {med[lo_d]:.1f} €/m² "
                f"({lo_d}) to "
                f"{med[hi_d]:.1f} €/m² ({hi_d}); Kruskal–Wallis p = {p:.2g}",
                "evidence": {"kruskal_p": p, "lowest": lo_d, "highest": hi_d},
            }
        )
    return out


def _figures(d: pd.DataFrame, fit: Any, by_district: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = d if len(d) <= MAX_PLOT_POINTS else d.sample(MAX_PLOT_POINTS, random_state=0)
    files: dict[str, bytes] = {}
    grid = np.linspace(d["surface_m2"].min(), d["surface_m2"].max(), 200)
    band = ols_intervals(fit, grid, LEVEL)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(p["surface_m2"], p["rent_eur"], s=6, alpha=0.4, color="grey", label="listings")
    ax.plot(grid, band["mean"], color="C0", label=f"OLS: {fit.intercept:.0f} + {fit.slope:.2f}·surface")
    ax.fill_between(
        grid,
        band["mean_ci_lower"],
        band["mean_ci_upper"],
        color="C0",
        alpha=0.35,
        label="90 % confidence band (mean)",
    )
    ax.fill_between(
        grid,
        band["obs_ci_lower"],
        band["obs_ci_upper"],
        color="C1",
        alpha=0.15,
        label="90 % prediction band (a listing)",
    )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("surface (m²)")
    ax.set_ylabel("monthly rent (€)")
    ax.legend(fontsize=8)
    ax.set_title("Rent vs surface")
    files["rent_vs_surface.png"] = png(fig)
    for col, label in (
        ("rent_eur", "monthly rent (€)"),
        ("surface_m2", "surface (m²)"),
        ("rent_per_m2", "rent per m² (€)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(p[col], bins=min(60, max(5, int(np.sqrt(len(p))))), color="C0", alpha=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("listings")
        ax.set_title(f"Distribution of {label}")
        files[f"dist_{col}.png"] = png(fig)
    if by_district:
        top = sorted(by_district, key=lambda k: -by_district[k]["n"])[:MAX_DISTRICTS_PLOTTED]
        top = sorted(top, key=lambda k: by_district[k]["median"])
        data = [d.loc[d["district"] == k, "rent_per_m2"].to_numpy() for k in top]
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(top) + 2), 4))
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(top) + 1), top, rotation=60, fontsize=8)
        ax.set_ylabel("rent per m² (€)")
        ax.set_title("Rent per m² by district")
        files["rent_per_m2_by_district.png"] = png(fig)
    return files


def reference_section(reference: pd.DataFrame, listings: pd.DataFrame) -> tuple[dict[str, Any], bytes, str]:
    """Median legal reference rent per m² by Paris arrondissement, furnished and not, for the latest year.

    The course's "crossing data sources": the listings' median rent per m² is drawn beside the official
    references (regulatory values, not observed rents), so the report shows how far the market sits above
    what the law considers normal.

    Parameters
    ----------
    reference : pandas.DataFrame
        Clean ``reference_rents`` rows (``city``, ``quartier_code``, ``furnished``, ``year``, ``ref_eur_m2``).
    listings : pandas.DataFrame
        Usable listings with ``rent_per_m2`` (and ``district`` when known).

    Returns
    -------
    summary, png, html_fragment
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paris = reference[reference["city"].astype(str).str.upper() == "PARIS"].copy()
    if paris.empty:
        return {"paris": None}, b"", "<p>No Paris reference rents in the clean zone.</p>"
    year = int(paris["year"].max())
    paris = paris[paris["year"].astype("int64") == year]
    # 751AAQQ → arrondissement postcode 750AA, the listings' district form.
    paris["arrondissement"] = "750" + paris["quartier_code"].astype(str).str[3:5]
    med = paris.pivot_table(index="arrondissement", columns="furnished", values="ref_eur_m2",
                            aggfunc="median").sort_index()
    med.columns = ["furnished" if bool(c) else "unfurnished" for c in med.columns]
    market = float(listings["rent_per_m2"].median())
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(med))
    width = 0.4
    for i, col in enumerate([c for c in ("unfurnished", "furnished") if c in med.columns]):
        ax.bar(x + (i - 0.5) * width, med[col].to_numpy(), width, label=f"reference, {col}")
    ax.axhline(market, color="C3", lw=1.5, label=f"listings' median ({market:.1f} €/m²)")
    ax.set_xticks(x, [a[-2:] for a in med.index], fontsize=8)
    ax.set_xlabel("Paris arrondissement")
    ax.set_ylabel("€/m² per month")
    ax.set_title(f"Legal reference rents {year}: median per arrondissement")
    ax.legend(fontsize=8)
    image = png(fig)
    by_arr = {str(k): {c: float(v) for c, v in row.items() if pd.notna(v)} for k, row in med.iterrows()}
    all_max = float(paris["max_eur_m2"].max())
    share_above = float((listings["rent_per_m2"] > all_max).mean())
    summary = {
        "year": year,
        "median_by_arrondissement": by_arr,
        "listings_median_eur_m2": market,
        "highest_paris_max_eur_m2": all_max,
        "share_of_listings_above_highest_max": share_above,
    }
    text = (
        f"<p>Paris reference rents {year} (information from the official table, not legal advice): "
        f"median {float(paris['ref_eur_m2'].median()):.1f} €/m²; the highest legal maximum is "
        f"{all_max:.1f} €/m². The listings' median is {market:.1f} €/m², and "
        f"{100 * share_above:.0f} % of them are above the highest maximum of any quartier.</p>"
    )
    return summary, image, text
