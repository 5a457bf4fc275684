"""Exploration rules and the report's files (GIVEN / WHEN / THEN)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from rentlake.explore import analyse
from rentlake.model import InsufficientDataError
from rentlake.reporting import exploration_files

from tests.support import SAMPLES

SAMPLE = SAMPLES / "house_intact.csv"


@dataclass
class Report:
    """What the explore stage stores: the exploration's summary and hypotheses, and the drawn files."""

    summary: dict
    hypotheses: list
    files: dict


def build_report(df: pd.DataFrame, run_id: str) -> Report:
    exploration = analyse(df, run_id=run_id)
    return Report(exploration.summary, exploration.hypotheses, exploration_files(exploration))


@pytest.fixture(scope="module")
def sample_report() -> Report:
    raw = pd.read_csv(SAMPLE)
    raw = raw[raw["loyer"] < 10_000].rename(columns={"loyer": "rent_eur", "surface": "surface_m2"})
    return build_report(raw, run_id="run-1")


def test_summary_counts_and_course_line(sample_report: Report) -> None:
    s = sample_report.summary
    # GIVEN the 536 listings with rent < 10 000 THEN counts and the course line are reported
    assert s["run_id"] == "run-1" and s["rows"] == 536 and s["rows_usable"] == 536
    assert s["duplicate_rows"] == 61 and s["missing"] == {"rent_eur": 0, "surface_m2": 0}
    assert s["ols"]["intercept"] == pytest.approx(266.5, abs=0.1) and s["ols"]["slope"] == pytest.approx(
        30.66, abs=0.01
    )
    assert s["ols"]["at_30m2"]["obs_ci"] == pytest.approx([348, 2025], abs=1)
    assert s["ols"]["at_30m2"]["mean_ci"] == pytest.approx([1140, 1233], abs=1)
    assert s["statistics"]["surface_m2"]["count"] == 536
    assert s["correlations"]["pearson"]["rent_eur"]["surface_m2"] == pytest.approx(0.908, abs=0.01)
    assert s["rent_per_m2_by_district"] == {}
    json.dumps(s)


def test_hypotheses_in_plain_words_with_numbers(sample_report: Report) -> None:
    h = {x["id"]: x for x in sample_report.hypotheses}
    # THEN the linear relation and the growing spread are stated with their numbers and supported
    assert h["linear"]["supported"] and re.search(r"r = 0\.91, slope about 31 €/m²", h["linear"]["statement"])
    assert h["spread_grows"]["supported"] and h["spread_grows"]["evidence"]["ratio"] > 2
    assert (
        h["negative_bounds"]["supported"]
        and h["negative_bounds"]["evidence"]["listings_with_negative_low"] > 0
    )
    assert h["per_m2_falls"]["supported"] and h["per_m2_falls"]["evidence"]["spearman_rho"] < 0
    assert h["duplicates"]["evidence"]["count"] == 61
    json.dumps(sample_report.hypotheses)


def test_files_are_pngs_and_one_self_contained_page(sample_report: Report) -> None:
    f = sample_report.files
    # THEN the course figures exist as PNGs (no district figure without districts)
    for name in ("rent_vs_surface.png", "dist_rent_eur.png", "dist_surface_m2.png", "dist_rent_per_m2.png"):
        assert f[name].startswith(b"\x89PNG")
    assert "rent_per_m2_by_district.png" not in f
    # AND report.html embeds each PNG as a data URI and references no external file
    page = f["report.html"].decode("utf-8")
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == 4 and all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)
    assert not re.search(r"(src|href)=['\"](?!data:)", page)
    assert "slope about 31" in page


def test_districts_give_a_table_a_figure_and_a_hypothesis() -> None:
    # GIVEN listings in three districts with different prices per m², some without district
    rng = np.random.default_rng(0)
    n = 600
    s = rng.uniform(15, 120, n)
    dist = rng.choice(["75007", "75011", "75020"], n)
    per_m2 = pd.Series(dist).map({"75007": 40.0, "75011": 32.0, "75020": 27.0}).to_numpy()
    df = pd.DataFrame(
        {
            "rent_eur": s * per_m2 * np.exp(rng.normal(0, 0.1, n)),
            "surface_m2": s,
            "district": dist,
            "listed_at": pd.NaT,
            "note": "x",
        }
    )
    df.loc[:9, "district"] = None
    # WHEN explored
    r = build_report(df, run_id="d")
    # THEN rent per m² by district is summarised, plotted and stated
    by = r.summary["rent_per_m2_by_district"]
    assert set(by) == {"75007", "75011", "75020"} and by["75007"]["median"] == pytest.approx(40, rel=0.05)
    assert r.files["rent_per_m2_by_district.png"].startswith(b"\x89PNG")
    h = {x["id"]: x for x in r.hypotheses}
    assert h["district_matters"]["supported"] and "75020" in h["district_matters"]["statement"]
    assert r.summary["missing"]["district"] == 10 and r.summary["listed_at"]["count"] == 0
    assert "note" in r.summary["constant_columns"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"rent_eur": [], "surface_m2": []}), "only 0 rows"),
        (pd.DataFrame({"rent_eur": [np.nan] * 30, "surface_m2": np.arange(30.0)}), "only 0 rows"),
        (pd.DataFrame({"rent_eur": np.arange(1.0, 31), "surface_m2": [20.0] * 30}), "same surface"),
        (pd.DataFrame({"surface_m2": [20.0, 30.0]}), "no column rent_eur"),
    ],
    ids=["empty", "all-nan", "single-surface", "missing-column"],
)
def test_bad_input(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(InsufficientDataError, match=message):
        analyse(frame, run_id="bad")


def test_reference_rents_without_paris_say_so_and_draw_nothing() -> None:
    # GIVEN listings and a reference table with Lille rows only
    rng = np.random.default_rng(1)
    s = rng.uniform(15, 120, 50)
    listings = pd.DataFrame({"rent_eur": 30 * s * np.exp(rng.normal(0, 0.1, 50)), "surface_m2": s})
    lille = pd.DataFrame(
        {
            "city": ["LILLE"],
            "quartier_code": ["5935001"],
            "furnished": [False],
            "year": [2017],
            "ref_eur_m2": [12.5],
            "max_eur_m2": [15.0],
        }
    )
    # WHEN explored with it
    exploration = analyse(listings, run_id="lille", reference=lille)
    files = exploration_files(exploration)
    # THEN the summary says there is no Paris table, no (empty) figure is drawn, and the page says why
    assert exploration.summary["reference_rents"] == {"paris": None}
    assert "reference_rents_by_arrondissement.png" not in files
    assert "No Paris reference rents in the clean zone." in files["report.html"].decode()


def test_course_line_leaves_out_rents_of_10000_or_more_as_the_course_does() -> None:
    # GIVEN the clean zone's rows (no duplicates, six rents ≥ 10 000 € kept by cleaning) and the listings
    # as received (the course file, duplicates included)
    raw = pd.read_csv(SAMPLE).rename(columns={"loyer": "rent_eur", "surface": "surface_m2"})
    clean = raw.drop_duplicates()
    # WHEN explored with the listings as received
    ex = analyse(clean, run_id="c", as_received=raw)
    # THEN the course line is the course's: n = 536, 30 m² → 1 186 € [348, 2 025]
    ols = ex.summary["ols"]
    assert ols["n"] == 536 and ols["at_30m2"]["estimate"] == pytest.approx(1186, abs=1)
    assert ols["at_30m2"]["obs_ci"] == pytest.approx([348, 2025], abs=1)
    assert "rents below 10,000 €" in ols["fitted_on"] and "61 duplicate rows kept" in ols["fitted_on"]
    # AND the statistics still describe the clean rows
    assert ex.summary["rows_usable"] == len(clean)
    # AND without the rows as received, the clean rows are filtered the same way
    alone = analyse(clean, run_id="c").summary["ols"]
    assert alone["n"] == int((clean["rent_eur"] < 10_000).sum())


def test_every_verdict_agrees_with_the_test_printed_beside_it() -> None:
    # GIVEN listings whose rent is clearly curved in the surface (a square root), spread constant
    rng = np.random.default_rng(5)
    s = rng.uniform(10, 200, 800)
    df = pd.DataFrame({"surface_m2": s, "rent_eur": 300 * np.sqrt(s) + rng.normal(0, 60, 800)})
    # WHEN explored
    ex = analyse(df, run_id="curved")
    h = {x["id"]: x for x in ex.hypotheses}
    reset = ex.summary["diagnostics"]["details"]["nonlinearity"]
    bp = ex.summary["diagnostics"]["details"]["heteroscedasticity"]
    # THEN RESET finds the curvature, and "rent grows linearly" is not ticked although r is high
    assert reset["flagged"] and h["linear"]["evidence"]["pearson_r"] > 0.9
    assert h["linear"]["supported"] is False and "not linearly" in h["linear"]["statement"]
    # AND each verdict is its own test's: linear ⇔ no RESET flag, spread ⇔ Breusch-Pagan flag
    assert h["spread_grows"]["supported"] is bp["flagged"]
    for sample in (
        ex,
        analyse(
            pd.read_csv(SAMPLE).rename(columns={"loyer": "rent_eur", "surface": "surface_m2"}),
            run_id="course",
        ),
    ):
        d = sample.summary["diagnostics"]["details"]
        hyp = {x["id"]: x for x in sample.hypotheses}
        assert hyp["linear"]["supported"] == (
            not d["nonlinearity"]["flagged"] and hyp["linear"]["evidence"]["pearson_r"] >= 0.7
        )
        assert hyp["spread_grows"]["supported"] == d["heteroscedasticity"]["flagged"]
        assert all(x["test"] for x in sample.hypotheses)
    # AND the page names the test beside each verdict
    page = exploration_files(ex)["report.html"].decode()
    assert "✘ rent grows with surface" in page and "(test: Pearson r ≥ 0.7" in page
