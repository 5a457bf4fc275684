"""Every figure and HTML page rentlake draws: the exploration report, the model card, residual plots.

Rendering only: numbers in, bytes out (PNG, UTF-8 HTML). Nothing here reads or writes the lake, and
nothing decides anything: the statistics come from :mod:`rentlake.explore` and :mod:`rentlake.model`,
the stages store the bytes. Pages are self-contained (PNGs embedded as base64 data URIs), so a report
opens from anywhere. matplotlib is imported inside the functions that draw (Agg backend): importing
this module costs numpy only. :func:`jsonable` is what every JSON summary and card goes through.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from rentlake.explore import Exploration, ReferenceRents
    from rentlake.model.intervals import OLSFit
    from rentlake.model.train import TrainResult

__all__ = [
    "png",
    "jsonable",
    "html_page",
    "html_table",
    "residual_plots",
    "exploration_files",
    "reference_figure",
    "model_files",
]

#: Scatter plots and histograms use a seeded subsample beyond this many rows (plotting 1 M points is slow
#: and unreadable); statistics use every row explored (all the clean rows, or the explore stage's sample).
MAX_PLOT_POINTS = 20_000
#: Districts shown in the per-district figure (the most frequent ones).
MAX_DISTRICTS_PLOTTED = 25
#: Training rows drawn on the model card's figures.
CARD_PLOT_POINTS = 5_000
Sections = list[tuple[str, str]]


# ------------------------------------------------------------------------------------------- basics
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display in a Lambda or a CI runner
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, dpi: int = 90) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, timestamps and non-finite floats (→ None) into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def html_page(title: str, sections: Sections, images: dict[str, bytes], data: dict[str, Any]) -> bytes:
    """One self-contained HTML page: text sections, PNGs embedded as base64 data URIs, the JSON data.

    Parameters
    ----------
    title : str
        Page title.
    sections : list of (heading, html_fragment)
        Already-escaped HTML fragments (build them with :func:`html.escape`).
    images : dict
        ``file name -> PNG bytes``; each is embedded inline (no external file is referenced).
    data : dict
        JSON-serialisable data shown at the end of the page.

    Returns
    -------
    bytes
        UTF-8 encoded HTML.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}pre{background:#f6f6f6;padding:.5em;"
        "overflow:auto;font-size:12px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, fragment in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{fragment}")
    if images:
        parts.append("<h2>Figures</h2>")
        for name, blob in images.items():
            b64 = base64.b64encode(blob).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    parts.append(
        "<h2>Data</h2><pre>"
        + html.escape(json.dumps(jsonable(data), indent=2, ensure_ascii=False))
        + "</pre></body></html>"
    )
    return "".join(parts).encode("utf-8")


def html_table(values: dict[str, Any]) -> str:
    """A two-column HTML table ``name | value`` (floats with 4 significant digits)."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>"
        if isinstance(v, float)
        else f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def _bullets(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def residual_plots(
    fitted: ArrayLike, residuals: ArrayLike, *, title: str = "", max_points: int = 20_000, seed: int = 0
) -> dict[str, bytes]:
    """Residuals-vs-fitted and normal QQ plots as PNG bytes.

    Parameters
    ----------
    fitted, residuals : array-like of float
        Fitted values and residuals of the same model.
    title : str
        Prefix for the plot titles (e.g. the scale: "log rent").
    max_points : int
        Large inputs are subsampled (seeded) so that plotting stays fast.
    seed : int
        Seed of the subsample.

    Returns
    -------
    dict
        ``{"residuals_vs_fitted.png": bytes, "qq.png": bytes}``.
    """
    from scipy import stats

    plt = _pyplot()
    f = np.asarray(fitted, dtype=float).ravel()
    r = np.asarray(residuals, dtype=float).ravel()
    if f.size > max_points:
        idx = np.random.default_rng(seed).choice(f.size, max_points, replace=False)
        f, r = f[idx], r[idx]
    out: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(f, r, s=8, alpha=0.5)
    ax.axhline(0.0, color="k", lw=1)
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual")
    ax.set_title(f"{title} residuals vs fitted".strip())
    out["residuals_vs_fitted.png"] = png(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    (osm, osr), (slope, intercept, _) = stats.probplot(r, dist="norm")
    ax.scatter(osm, osr, s=8, alpha=0.5)
    ax.plot(osm, intercept + slope * osm, color="r", lw=1)
    ax.set_xlabel("normal quantiles")
    ax.set_ylabel("ordered residuals")
    ax.set_title(f"{title} normal QQ plot".strip())
    out["qq.png"] = png(fig)
    return out


# ------------------------------------------------------------------------------------ exploration
def exploration_files(ex: Exploration) -> dict[str, bytes]:
    """The exploration report's files: the course's figures and ``report.html`` (embedding them).

    Parameters
    ----------
    ex : Exploration
        The output of :func:`rentlake.explore.analyse`.

    Returns
    -------
    dict
        ``name -> bytes``: ``rent_vs_surface.png``, ``dist_<column>.png``, ``rent_per_m2_by_district.png``
        (with districts), ``reference_rents_by_arrondissement.png`` (with Paris reference rents) and
        ``report.html``.
    """
    d = ex.usable
    sample = d if len(d) <= MAX_PLOT_POINTS else d.sample(MAX_PLOT_POINTS, random_state=0)
    files = {"rent_vs_surface.png": _rent_vs_surface(d, sample, ex.fit)}
    files.update(_histograms(sample))
    by_district = ex.summary.get("rent_per_m2_by_district") or {}
    if by_district:
        files["rent_per_m2_by_district.png"] = _district_boxes(d, by_district)
    sections = _exploration_sections(ex)
    if ex.reference is not None:
        if ex.reference.medians is not None:
            files["reference_rents_by_arrondissement.png"] = reference_figure(ex.reference)
        sections.append(("Legal reference rents", _reference_text(ex.reference)))
    files["report.html"] = html_page(
        f"rentlake exploration — {ex.summary['run_id']}",
        sections,
        dict(files),
        {"summary": ex.summary, "hypotheses": ex.hypotheses},
    )
    return files


def _rent_vs_surface(d: pd.DataFrame, sample: pd.DataFrame, fit: OLSFit) -> bytes:
    from rentlake.explore import LEVEL
    from rentlake.model.intervals import ols_intervals

    plt = _pyplot()
    grid = np.linspace(d["surface_m2"].min(), d["surface_m2"].max(), 200)
    band = ols_intervals(fit, grid, LEVEL)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(sample["surface_m2"], sample["rent_eur"], s=6, alpha=0.4, color="grey", label="listings")
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
    return png(fig)


def _histograms(sample: pd.DataFrame) -> dict[str, bytes]:
    plt = _pyplot()
    out: dict[str, bytes] = {}
    for col, label in (
        ("rent_eur", "monthly rent (€)"),
        ("surface_m2", "surface (m²)"),
        ("rent_per_m2", "rent per m² (€)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(sample[col], bins=min(60, max(5, int(np.sqrt(len(sample))))), color="C0", alpha=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("listings")
        ax.set_title(f"Distribution of {label}")
        out[f"dist_{col}.png"] = png(fig)
    return out


def _district_boxes(d: pd.DataFrame, by_district: dict[str, Any]) -> bytes:
    plt = _pyplot()
    top = sorted(by_district, key=lambda k: -by_district[k]["n"])[:MAX_DISTRICTS_PLOTTED]
    top = sorted(top, key=lambda k: by_district[k]["median"])
    data = [d.loc[d["district"] == k, "rent_per_m2"].to_numpy() for k in top]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(top) + 2), 4))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(top) + 1), top, rotation=60, fontsize=8)
    ax.set_ylabel("rent per m² (€)")
    ax.set_title("Rent per m² by district")
    return png(fig)


def _exploration_sections(ex: Exploration) -> Sections:
    s, fit = ex.summary, ex.fit
    at = s["ols"]["at_30m2"]
    verdicts = (
        f"{'✔' if h['supported'] else '✘'} {html.escape(h['statement'])} "
        f"<small>(test: {html.escape(str(h.get('test', '')))})</small>"
        for h in ex.hypotheses
    )
    return [
        ("Data", _data_text(s)),
        (
            "Course line",
            f"<p>Fitted as the course does, on {fit.n} listings: "
            f"{html.escape(str(s['ols'].get('fitted_on', '')))}.</p>"
            f"<p>rent ≈ {fit.intercept:.1f} + {fit.slope:.2f} × surface (R² {fit.r2:.3f}); 30 m² → "
            f"{at['estimate']:.0f} €, 90 % confidence of the mean [{at['mean_ci'][0]:.0f}, "
            f"{at['mean_ci'][1]:.0f}], 90 % prediction [{at['obs_ci'][0]:.0f}, {at['obs_ci'][1]:.0f}] €.</p>",
        ),
        ("Hypotheses", _bullets(verdicts)),
    ]


def _data_text(s: dict[str, Any]) -> str:
    """The rows explored; for a sample, what it is drawn from and the lake's exact counts beside it."""
    rows = f"{s['rows']} rows, {s['rows_usable']} usable, {s['duplicate_rows']} exact duplicates"
    sampling = s.get("sampling") or {}
    if not sampling or sampling.get("all_rows"):
        return f"<p>{rows}.</p>"
    lake, dup = s.get("lake") or {}, sampling.get("duplicates") or {}
    missing = ", ".join(f"{html.escape(c)} {n:,}" for c, n in (lake.get("missing") or {}).items() if n)
    return (
        f"<p><b>{html.escape(sampling['statement'].capitalize())}</b> (stratified by district, the same "
        "rows every run): the statistics, the figures, the course line and the hypotheses below are "
        f"computed on them, and on {dup.get('sampled', 0):,} of the {dup.get('rows', 0):,} rows "
        f"quarantined as duplicates. In the sample: {rows}.</p>"
        f"<p>The whole lake (exact counts): {lake.get('rows', 0):,} clean rows, "
        f"{lake.get('rows_usable', 0):,} usable, {lake.get('duplicates_quarantined', 0):,} quarantined as "
        f"duplicates; missing values: {missing or 'none'}.</p>"
    )


def reference_figure(ref: ReferenceRents) -> bytes:
    """Bars of the median reference €/m² per arrondissement (furnished and not), the listings' median line.

    Raises
    ------
    ValueError
        When ``ref`` holds no Paris medians (``ref.medians`` is None).
    """
    if ref.medians is None:
        raise ValueError("no Paris reference rents to draw")
    plt = _pyplot()
    med, market, year = ref.medians, ref.summary["listings_median_eur_m2"], ref.summary["year"]
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
    return png(fig)


def _reference_text(ref: ReferenceRents) -> str:
    s = ref.summary
    if ref.medians is None:
        return "<p>No Paris reference rents in the clean zone.</p>"
    above = 100 * s["share_of_listings_above_highest_max"]
    return (
        f"<p>Paris reference rents {s['year']} (information from the official table, not legal advice): "
        f"median {ref.paris_median:.1f} €/m²; the highest legal maximum is "
        f"{s['highest_paris_max_eur_m2']:.1f} €/m². The listings' median is "
        f"{s['listings_median_eur_m2']:.1f} €/m², and {above:.0f} % of them are above the highest "
        "maximum of any quartier.</p>"
    )


# ------------------------------------------------------------------------------------------ model card
def model_files(result: TrainResult, train_df: pd.DataFrame, ols_all: OLSFit) -> dict[str, bytes]:
    """The model card's files: residual plots of the served model, its band vs the course's, ``card.html``.

    Parameters
    ----------
    result : TrainResult
        A training result (its card, metrics, diagnostics and fitted candidates).
    train_df : pandas.DataFrame
        The training rows (a seeded subsample of at most ``CARD_PLOT_POINTS`` is drawn).
    ols_all : OLSFit
        The course line on all rows, drawn with its constant-width band.

    Returns
    -------
    dict
        ``served_residuals_vs_fitted.png``, ``served_qq.png``, ``fit_bands.png`` and ``card.html``.
    """
    model = result.candidates[result.model_name]
    plot_df = train_df
    if len(train_df) > CARD_PLOT_POINTS:
        idx = np.random.default_rng(0).choice(len(train_df), CARD_PLOT_POINTS, replace=False)
        plot_df = train_df.iloc[np.sort(idx)]
    fitted = model.center(plot_df)
    residuals = model.target(plot_df["rent_eur"].to_numpy(dtype=float)) - fitted
    scale = "log rent" if model.scale == "log" else "rent, €"
    plots = residual_plots(fitted, residuals, title=f"{result.model_name} ({scale})")
    files = {f"served_{name}": data for name, data in plots.items()}
    files["fit_bands.png"] = _fit_bands(result, plot_df, ols_all)
    files["card.html"] = html_page(
        f"rentlake model card — {result.version}", _card_sections(result), dict(files), result.card
    )
    return files


def _fit_bands(result: TrainResult, plot_df: pd.DataFrame, ols_all: OLSFit) -> bytes:
    import pandas as pd

    from rentlake.model.intervals import ols_intervals

    plt = _pyplot()
    model = result.candidates[result.model_name]
    level = result.interval["level"]
    pct = int(level * 100)
    surface = result.feature_ranges["surface_m2"]
    grid = np.linspace(surface["min"], surface["max"], 200)
    band = model.predict(pd.DataFrame({"surface_m2": grid, "district": result.at_30m2["district"]}))
    ols = ols_intervals(ols_all, grid, level)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(
        plot_df["surface_m2"], plot_df["rent_eur"], s=6, alpha=0.35, color="grey", label="listings (train)"
    )
    ax.plot(grid, ols["mean"], color="C0", label="course OLS line")
    ax.fill_between(
        grid,
        ols["obs_ci_lower"],
        ols["obs_ci_upper"],
        color="C0",
        alpha=0.15,
        label=f"OLS {pct} % prediction band (constant width)",
    )
    ax.plot(grid, band["rent_eur"], color="C3", label=f"served model ({result.model_name})")
    ax.fill_between(grid, band["low"], band["high"], color="C3", alpha=0.2, label=f"served {pct} % interval")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("surface (m²)")
    ax.set_ylabel("monthly rent (€)")
    ax.legend(fontsize=8)
    ax.set_title("Served interval vs the course OLS band")
    return png(fig)


def _coverage_table(diagnostics: dict[str, Any]) -> str:
    """Rows ``cell | listings | coverage``: each surface tercile and each district, outside cells marked."""
    cells = diagnostics.get("conditional_coverage") or {}
    rows = []
    for c in [*cells.get("terciles", []), *cells.get("groups", [])]:
        flag = "" if 0.85 <= c["coverage"] <= 0.95 else " ⚠ outside [0.85, 0.95]"
        rows.append(
            f"<tr><th>{html.escape(c['cell'])}</th><td>{c['n']}</td><td>{c['coverage']:.3f}{flag}</td></tr>"
        )
    head = "<tr><th>cell</th><th>held-out listings</th><th>coverage</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _card_sections(r: TrainResult) -> Sections:
    served, ols = r.at_30m2["served"], r.at_30m2["ols"]
    headline = {k: r.metrics[k] for k in ("n", "mae", "rmse", "r2", "mape", "coverage", "mean_width")}
    course = (
        f"<b>{html.escape(f)}</b>: {html.escape(str(d.get('reason', '')))}"
        for f, d in r.diagnostics["reference"]["details"].items()
    )
    return [
        (
            "Model",
            f"<p><b>{html.escape(r.model_name)}</b> — version {html.escape(r.version)} — sha256 "
            f"<code>{r.sha256[:16]}…</code></p><p>{html.escape(r.selection['reason'])}</p>",
        ),
        ("Held-out performance", html_table(headline)),
        ("Held-out coverage of the 90 % interval, per cell", _coverage_table(r.diagnostics)),
        (
            "30 m² example",
            f"<p>Served: {served['estimate']:.0f} € in [{served['interval'][0]:.0f}, "
            f"{served['interval'][1]:.0f}] (width {served['width']:.0f} €). Course OLS: "
            f"{ols['estimate']:.0f} € in [{ols['interval'][0]:.0f}, {ols['interval'][1]:.0f}] "
            f"(width {ols['width']:.0f} €).</p>",
        ),
        ("Diagnostics of the course line", _bullets(course)),
        ("Limits", _bullets(html.escape(x) for x in r.card["limits"])),
    ]
