"""Local (Mondrian) conformal intervals: the band table, the interval score, coverage per cell, and the
served interval on synthetic markets whose spread is constant in euros or proportional to the rent
(GIVEN / WHEN / THEN)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from rentlake.model.evaluate import score_onnx
from rentlake.model.intervals import (
    band_edges,
    cells_outside,
    conformal_quantile,
    coverage_cells,
    fit_bands,
    surface_terciles,
    winkler,
)
from rentlake.model.train import TrainResult, train
from scipy import stats

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CHECK_SURFACES = np.array([20.0, 30.0, 50.0, 80.0, 120.0])


# ------------------------------------------------------------------------------------------ band table
def test_each_band_gets_the_conformal_quantile_of_its_own_scores() -> None:
    # GIVEN 600 scores whose spread triples from small to large surfaces
    rng = np.random.default_rng(0)
    surface = rng.uniform(10, 150, 600)
    scores = np.abs(rng.normal(0, np.where(surface < 60, 1.0, 3.0)))
    # WHEN the band table is fitted (6 bands of 100 rows at most)
    table = fit_bands(scores, surface, 0.9)
    # THEN every band's half-width is the conformal quantile of exactly its scores
    band = table.band(surface)
    assert table.bands == 6 and sum(table.counts) == 600
    for b in range(table.bands):
        assert table.halfwidths[b][0] == pytest.approx(conformal_quantile(scores[band == b], 0.9), rel=1e-6)
    # AND each band covers at least 90 % of its own scores, where one pooled width covers every small
    # flat and too few large ones
    inside = scores <= table.lookup(surface)
    assert all(inside[band == b].mean() >= 0.9 for b in range(table.bands))
    pooled = conformal_quantile(scores, 0.9)
    assert (scores[surface < 60] <= pooled).mean() > 0.99 and (scores[surface >= 60] <= pooled).mean() < 0.87


def test_band_edges_never_leave_a_band_short_of_rows_even_with_ties() -> None:
    # GIVEN 400 surfaces, half of them exactly 30 m²
    s = np.r_[np.full(200, 30.0), np.linspace(31, 200, 200)]
    # WHEN 4 equal-count bands of at least 50 rows are asked
    edges = band_edges(s, 4, 50)
    # THEN no edge splits the tie, and every band holds at least 50 rows
    counts = np.bincount(np.searchsorted(np.float32(edges), np.float32(s), "right"))
    assert 30.0 not in edges[1:] and counts.min() >= 50 and counts.sum() == 400
    # AND too few rows for two bands give one band
    assert band_edges(s[:90], 4, 50) == ()


def test_a_district_with_a_wider_spread_gets_its_own_factor() -> None:
    # GIVEN scores of two districts, one twice as spread, and a few of a rare one
    rng = np.random.default_rng(1)
    n = 1200
    district = rng.choice(["75001", "75020"], n)
    district[:20] = "75099"
    scores = np.abs(rng.normal(0, np.where(district == "75020", 2.0, 1.0)))
    surface = rng.uniform(10, 150, n)
    # WHEN fitted with groups
    table = fit_bands(scores, surface, 0.9, groups=district)
    # THEN the two common districts are calibrated alone, the rare one uses the pooled column
    assert table.groups == ("75001", "75020")
    assert np.array_equal(table.group(np.array(["75020", "75099", None, ""]), 4), [2, 0, 0, 0])
    # AND each common district is covered at 90 % or more
    inside = scores <= table.lookup(surface, district)
    for d in ("75001", "75020"):
        assert 0.88 <= inside[district == d].mean() <= 0.93


def test_winkler_score_is_width_plus_twenty_times_a_miss_at_90_percent() -> None:
    # GIVEN an interval [100, 200] and rents inside, 10 below and 5 above
    y = np.array([150.0, 90.0, 205.0])
    # THEN the scores are 100, 100 + 20·10 and 100 + 20·5
    np.testing.assert_allclose(winkler(y, [100.0] * 3, [200.0] * 3, 0.9), [100.0, 300.0, 200.0])


def test_coverage_cells_name_terciles_and_districts_and_the_ones_outside() -> None:
    # GIVEN 9 listings in three surface thirds and two districts, the largest third all missed
    y = np.ones(9)
    low = np.r_[np.zeros(6), np.full(3, 2.0)]
    high = np.full(9, 3.0)
    surface = np.array([10, 12, 14, 40, 42, 44, 90, 95, 99], dtype=float)
    district = np.array(["a", "a", "b", "b", "a", "b", "a", "b", None], dtype=object)
    # WHEN the cells are computed
    cells = coverage_cells(y, low, high, surface, district)
    # THEN three terciles with their surface range, and the districts without the missing one
    assert [(c["n"], c["coverage"]) for c in cells["terciles"]] == [(3, 1.0), (3, 1.0), (3, 0.0)]
    assert cells["terciles"][2]["cell"] == "largest third of surfaces (90–99 m²)"
    assert [(c["cell"], c["n"]) for c in cells["groups"]] == [("district a", 4), ("district b", 4)]
    # AND every cell is outside [0.85, 0.95] (too wide at 1.0, too narrow at 0.0 and 0.75), none of 5 rows
    outside = cells_outside(cells, (0.85, 0.95))
    assert [c["coverage"] for c in outside] == [1.0, 1.0, 0.0, 0.75, 0.75]
    assert cells_outside(cells, (0.85, 0.95), min_rows=5) == []
    assert np.array_equal(surface_terciles(surface), [0, 0, 0, 1, 1, 1, 2, 2, 2])


# -------------------------------------------------------------------------------- synthetic markets
def additive_market(n: int, seed: int) -> pd.DataFrame:
    """rent = 250 + 30·surface + N(0, 150 €): the spread is constant in euros."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(12, 150, n)
    return pd.DataFrame({"surface_m2": s, "rent_eur": 250 + 30 * s + rng.normal(0, 150, n)})


def multiplicative_market(n: int, seed: int) -> pd.DataFrame:
    """ln rent = ln 40 + 0.9 ln surface + N(0, 0.25): the spread is proportional to the rent."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(12, 150, n)
    return pd.DataFrame(
        {"surface_m2": s, "rent_eur": np.exp(np.log(40) + 0.9 * np.log(s) + rng.normal(0, 0.25, n))}
    )


def true_coverage(r: TrainResult, market: str) -> np.ndarray:
    """Probability that a new rent at each CHECK_SURFACES falls in the served interval (the true law)."""
    out = score_onnx(r.onnx, pd.DataFrame({"surface_m2": CHECK_SURFACES}))
    if market == "additive":
        law = stats.norm(250 + 30 * CHECK_SURFACES, 150)
        return law.cdf(out["high"]) - law.cdf(out["low"])
    centre = np.log(40) + 0.9 * np.log(CHECK_SURFACES)
    return stats.norm.cdf((np.log(out["high"]) - centre) / 0.25) - stats.norm.cdf(
        (np.log(out["low"]) - centre) / 0.25
    )


@pytest.mark.slow
@pytest.mark.parametrize(("market", "family"), [("additive", "linear"), ("multiplicative", "log")])
@pytest.mark.parametrize("seed", [3, 4])
def test_synthetic_market_is_covered_in_every_tercile_and_at_every_surface(
    market: str, family: str, seed: int
) -> None:
    # GIVEN 9 000 listings of a market whose spread is constant in euros (additive) or proportional to the
    # rent (multiplicative): 1 800 held-out rows, 600 per surface tercile (coverage SE 0.012)
    make = additive_market if market == "additive" else multiplicative_market
    df = make(9_000, seed)
    # WHEN a model is trained
    r = train(df, seed=seed, trained_at=T0, gbr_estimators=30, make_files=False)
    # THEN the family that matches the noise serves it
    assert r.interval["scale"] == family, r.selection["reason"]
    # AND the held-out coverage of every surface tercile is within [0.85, 0.95]
    terciles = r.diagnostics["conditional_coverage"]["terciles"]
    assert [t["n"] for t in terciles] == [600, 600, 600]
    assert all(0.85 <= t["coverage"] <= 0.95 for t in terciles), terciles
    # AND the interval covers 85-95 % of the TRUE distribution at 20, 30, 50, 80 and 120 m²
    cover = true_coverage(r, market)
    assert np.all((cover >= 0.85) & (cover <= 0.95)), dict(zip(CHECK_SURFACES, cover.round(3), strict=True))
    # AND the 20 m² estimate is within 3 % of the true median rent there
    est20 = float(score_onnx(r.onnx, pd.DataFrame({"surface_m2": [20.0]}))["rent_eur"][0])
    truth20 = 250 + 30 * 20 if market == "additive" else 40 * 20**0.9
    assert est20 == pytest.approx(truth20, rel=0.03)
    # AND the card has no cell to name in its limits
    assert not any("outside [0.85, 0.95]" in x for x in r.card["limits"])


@pytest.mark.slow
def test_a_district_with_a_wider_spread_is_covered_too() -> None:
    # GIVEN 12 000 listings in 3 districts, one of them (75020) twice as spread; 2 400 held out
    rng = np.random.default_rng(7)
    n = 12_000
    s = rng.uniform(12, 150, n)
    district = rng.choice(["75007", "75011", "75020"], n)
    sigma = np.where(district == "75020", 0.36, 0.18)
    level = pd.Series(district).map({"75007": 0.2, "75011": 0.0, "75020": -0.15}).to_numpy()
    rent = np.exp(np.log(40) + 0.9 * np.log(s) + level + rng.normal(0, sigma))
    df = pd.DataFrame({"surface_m2": s, "district": district, "rent_eur": rent})
    # WHEN trained
    r = train(df, seed=2, trained_at=T0, gbr_estimators=30, make_files=False)
    # THEN a district model serves it and every district (≥ 200 held-out rows) is covered at 0.85-0.95
    assert "district" in r.features
    groups = r.diagnostics["conditional_coverage"]["groups"]
    assert {g["cell"] for g in groups} == {"district 75007", "district 75011", "district 75020"}
    assert all(g["n"] >= 200 and 0.85 <= g["coverage"] <= 0.95 for g in groups), groups
    assert all(0.85 <= t["coverage"] <= 0.95 for t in r.diagnostics["conditional_coverage"]["terciles"])
