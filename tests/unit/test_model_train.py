"""Training, intervals and evaluation of the rent model (GIVEN / WHEN / THEN)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from rentlake.model import InsufficientDataError
from rentlake.model.evaluate import metrics, score_onnx
from rentlake.model.intervals import conformal_quantile, fit_ols, ols_intervals
from rentlake.model.train import CANDIDATES, TrainResult, train

from tests.support import SAMPLES

SAMPLE = SAMPLES / "house_intact.csv"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def load_sample() -> pd.DataFrame:
    """house_intact.csv as the clean step delivers it: no duplicates, no rent ≥ 10 000."""
    raw = pd.read_csv(SAMPLE).drop_duplicates()
    raw = raw[raw["loyer"] < 10_000]
    return raw.rename(columns={"loyer": "rent_eur", "surface": "surface_m2"}).reset_index(drop=True)


def lognormal_rents(n: int, seed: int, sigma: float = 0.25, districts: int = 0) -> pd.DataFrame:
    """Synthetic listings with multiplicative log-normal noise: the spread in € grows with surface."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(12, 150, n)
    log_rent = np.log(40.0) + 0.9 * np.log(s) + rng.normal(0, sigma, n)
    df = pd.DataFrame({"surface_m2": s})
    if districts:
        codes = np.array([f"750{i:02d}" for i in range(1, districts + 1)])
        d = rng.integers(0, districts, n)
        log_rent += np.linspace(-0.2, 0.2, districts)[d]
        df["district"] = codes[d]
    df["rent_eur"] = np.exp(log_rent)
    return df


@pytest.fixture(scope="module")
def sample_result() -> TrainResult:
    return train(load_sample(), seed=42, trained_at=T0)


# ------------------------------------------------------------------------------------------ intervals


def test_ols_intervals_equal_statsmodels() -> None:
    import statsmodels.api as sm

    # GIVEN heteroscedastic data and a grid of surfaces
    rng = np.random.default_rng(3)
    x = rng.uniform(10, 120, 200)
    y = 250 + 31 * x + rng.normal(0, 5 * x)
    x0 = np.array([5.0, 30.0, 60.0, 200.0])
    # WHEN the numpy/scipy OLS intervals are computed
    ours = ols_intervals(fit_ols(x, y), x0, level=0.9)
    ref = sm.OLS(y, sm.add_constant(x)).fit().get_prediction(sm.add_constant(x0)).summary_frame(alpha=0.1)
    # THEN they match statsmodels to 1e-6 relative
    for k in ("mean", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper"):
        np.testing.assert_allclose(ours[k], ref[k].to_numpy(), rtol=1e-6)


def test_normal_quantile_is_the_half_width_of_a_central_interval() -> None:
    from rentlake.model.intervals import normal_quantile

    # GIVEN the served level WHEN its normal half-width is asked THEN it is Φ⁻¹(0.95), as the card records
    assert normal_quantile(0.9) == pytest.approx(1.6448536269514722, rel=1e-12)
    assert normal_quantile(0.5) == pytest.approx(0.6744897501960817, rel=1e-12)
    # AND a level outside (0, 1) is refused by name
    with pytest.raises(ValueError, match="level must be in"):
        normal_quantile(1.0)


def test_ols_reference_reproduces_the_course_numbers() -> None:
    # GIVEN the sample data with rent < 10 000 (n = 536, duplicates kept, as in the course)
    raw = pd.read_csv(SAMPLE)
    raw = raw[raw["loyer"] < 10_000]
    # WHEN the course line is fitted
    fit = fit_ols(raw["surface"], raw["loyer"])
    at = ols_intervals(fit, [30.0], 0.9)
    # THEN 266.5 + 30.66·surface, R² 0.825, 30 m² → 1186 € [1140, 1233] and [348, 2025]
    assert fit.n == 536
    assert fit.intercept == pytest.approx(266.5, abs=0.1) and fit.slope == pytest.approx(30.66, abs=0.01)
    assert fit.r2 == pytest.approx(0.825, abs=0.001)
    assert at["mean"][0] == pytest.approx(1186, abs=1)
    assert (at["mean_ci_lower"][0], at["mean_ci_upper"][0]) == pytest.approx((1140, 1233), abs=1)
    assert (at["obs_ci_lower"][0], at["obs_ci_upper"][0]) == pytest.approx((348, 2025), abs=1)


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    # GIVEN scores 1..19 WHEN the 90 % conformal quantile is taken THEN it is the ceil(20·0.9) = 18th score
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18.0
    # and with fewer scores than the rank allows, the largest one
    assert conformal_quantile([3.0, 1.0], 0.9) == 3.0


# ---------------------------------------------------------------------------------------- evaluate


def test_metrics_values() -> None:
    # GIVEN three rents, estimates off by 0/100/-200 and intervals containing the first two
    y = np.array([1000.0, 2000.0, 3000.0])
    est = np.array([1000.0, 2100.0, 2800.0])
    m = metrics(y, est, est - 150, est + 150)
    # THEN MAE 100, RMSE sqrt(50000/3), coverage 2/3, width 300, MAPE (0 + .05 + .0667)/3
    assert m["mae"] == pytest.approx(100.0)
    assert m["rmse"] == pytest.approx(np.sqrt(50_000 / 3))
    assert m["coverage"] == pytest.approx(2 / 3)
    assert m["mean_width"] == pytest.approx(300.0)
    assert m["mape"] == pytest.approx((0 + 0.05 + 200 / 3000) / 3)
    assert m["r2"] == pytest.approx(1 - 50_000 / 2_000_000)


# ------------------------------------------------------------------------------------- sample data


def test_sample_served_interval_is_narrower_positive_and_calibrated(sample_result: TrainResult) -> None:
    r = sample_result
    served, ols = r.at_30m2["served"], r.at_30m2["ols"]
    # THEN the homoscedastic OLS interval at 30 m² is recorded (≈ [348, 2025] on the deduplicated data)
    assert ols["interval"][0] == pytest.approx(345, abs=10) and ols["interval"][1] == pytest.approx(
        2023, abs=10
    )
    # AND the served one is positive, contains its estimate and is clearly narrower (< 60 % of the width)
    assert 0 < served["interval"][0] < served["estimate"] < served["interval"][1]
    assert served["width"] < 0.6 * ols["width"]
    # AND its held-out coverage is within [0.85, 0.95]
    assert 0.85 <= r.metrics["coverage"] <= 0.95
    assert r.interval["heldout_coverage"] == r.metrics["coverage"]
    # AND every candidate's intervals are positive on the test set
    for c in r.candidates.values():
        assert (c.predict(r.test_set)["low"] > 0).all()
    # while the plain OLS line predicts negative lower bounds for some held-out small flats' neighbourhoods
    assert r.ols_reference["heldout"]["negative_low_share"] > 0


def test_sample_interval_is_symmetric_on_the_log_scale(sample_result: TrainResult) -> None:
    # GIVEN the served ONNX graph (a log-scale model on the course data) WHEN it scores the test set
    assert sample_result.interval["scale"] == "log" and sample_result.interval["level"] == 0.9
    test = sample_result.test_set
    out = score_onnx(sample_result.onnx, test)
    # THEN centre = (ln low + ln high)/2 is ln(estimate), and σ = (ln high - ln low)/(2·1.6449) is the
    # recorded half-width of the listing's surface band over z
    centre = (np.log(out["low"]) + np.log(out["high"])) / 2
    np.testing.assert_allclose(centre, np.log(out["rent_eur"]), atol=1e-5)
    sigma = (np.log(out["high"]) - np.log(out["low"])) / (2 * 1.6449)
    bands = sample_result.interval["bands"]
    band = np.searchsorted(np.float32(bands["edges_m2"]), test["surface_m2"].to_numpy(np.float32), "right")
    recorded = np.array([row[0] for row in bands["halfwidths"]])[band] / sample_result.interval["z"]
    np.testing.assert_allclose(sigma, recorded, rtol=1e-3)


def test_sample_result_fields(sample_result: TrainResult) -> None:
    r = sample_result
    import hashlib

    # THEN the result is complete and consistent
    assert r.model_name in CANDIDATES and r.selection["chosen"] == r.model_name
    assert r.selection["reason"] and set(r.selection["cv"]) == {
        "ols",
        "linear",
        "huber",
        "gbr",
    }  # no districts in the sample
    for cv in r.selection["cv"].values():
        assert cv["mae_mean"] > 0 and cv["mae_se"] > 0
        assert cv["winkler_mean"] > 0 and cv["winkler_se"] > 0 and len(cv["cells"]["terciles"]) == 3
    assert r.sha256 == hashlib.sha256(r.onnx).hexdigest()
    assert r.features == ["surface_m2"]
    assert 9 <= r.feature_ranges["surface_m2"]["min"] <= 20 and r.feature_ranges["surface_m2"]["max"] >= 150
    assert set(r.metrics) >= {"mae", "rmse", "r2", "mape", "coverage", "mean_width", "candidates"}
    assert set(r.metrics["candidates"]) == set(r.selection["cv"])
    assert r.ols_reference["slope"] == pytest.approx(30.6, abs=1.0)
    assert len(r.test_set) == 95 and r.sizes["train"] == 380
    assert r.version.startswith("20260102T030405Z-")
    json.dumps(r.card)  # JSON-serialisable
    assert r.card["data"]["rows"] == 475 and "lineage" in r.card["data"]
    assert r.card["interval"]["method"].startswith("cross-conformal")
    for name in ("served_residuals_vs_fitted.png", "served_qq.png", "fit_bands.png"):
        assert r.files[name].startswith(b"\x89PNG")
    assert b"data:image/png;base64," in r.files["card.html"]
    # the reference diagnostics flag what the course warns about: the spread grows with surface
    assert "heteroscedasticity" in r.diagnostics["reference"]["flags"]


def test_version_is_deterministic_given_data_seed_and_time() -> None:
    # GIVEN the same data and seed twice, and a different seed
    df = lognormal_rents(300, seed=1)
    a = train(df, seed=7, trained_at=T0, gbr_estimators=20, make_files=False)
    b = train(df, seed=7, trained_at=T0, gbr_estimators=20, make_files=False)
    c = train(df, seed=8, trained_at=T0, gbr_estimators=20, make_files=False)
    # THEN the version and the model bytes are identical, and another seed gives another version
    assert a.version == b.version and a.sha256 == b.sha256
    assert a.version != c.version


# --------------------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_lognormal_coverage(seed: int) -> None:
    # GIVEN n = 5 000 listings with multiplicative log-normal noise (σ = 0.25)
    df = lognormal_rents(5_000, seed=seed)
    # WHEN a model is trained
    r = train(df, seed=seed, trained_at=T0, gbr_estimators=30, make_files=False)
    # THEN the served held-out coverage is within [0.85, 0.95], and so is every candidate's
    assert 0.85 <= r.metrics["coverage"] <= 0.95
    for m in r.metrics["candidates"].values():
        assert 0.85 <= m["coverage"] <= 0.95
    # AND a log-scale model serves it, whose half-width recovers the noise in every surface band:
    # q ≈ 1.645 σ (the median band within 10 %, each band within 20 %)
    assert r.interval["scale"] == "log"
    q = np.array([row[0] for row in r.interval["bands"]["halfwidths"]])
    assert np.median(q) == pytest.approx(1.645 * 0.25, rel=0.1)
    assert np.all(np.abs(q / (1.645 * 0.25) - 1) < 0.2)
    # AND the served interval is calibrated in small and large flats alike, unlike the constant OLS band
    by = r.diagnostics["coverage_by_surface_tercile"]
    assert all(0.83 <= c <= 0.97 for c in by["served"])
    assert by["ols"][0] > 0.97 and by["ols"][2] < 0.85


def test_time_split_holds_out_the_latest_listings() -> None:
    # GIVEN dated listings in random order, some without a date
    df = lognormal_rents(400, seed=4)
    rng = np.random.default_rng(0)
    df["listed_at"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.permutation(400), unit="D")
    df.loc[:9, "listed_at"] = pd.NaT
    # WHEN a model is trained
    r = train(df, seed=1, trained_at=T0, gbr_estimators=20, make_files=False)
    # THEN the test set is the latest 20 % and no undated row is in it
    assert r.card["data"]["split"] == "time"
    assert len(r.test_set) == 80 and r.test_set["listed_at"].notna().all()
    cutoff = df["listed_at"].dropna().sort_values().iloc[-80].tz_localize("UTC")
    assert (r.test_set["listed_at"] >= cutoff).all()


def test_districts_add_a_candidate_and_an_input() -> None:
    # GIVEN listings in 4 districts with a strong district effect
    df = lognormal_rents(1_500, seed=5, sigma=0.1, districts=4)
    df["district"] = df["district"].astype("string")
    df.loc[:20, "district"] = pd.NA
    # WHEN a model is trained
    r = train(df, seed=3, trained_at=T0, gbr_estimators=30, make_files=False)
    # THEN the district model competes, wins, and the graph declares the district input
    assert "ols_district" in r.selection["cv"]
    assert r.model_name in ("ols_district", "gbr") and r.features == ["surface_m2", "district"]
    assert r.feature_ranges["districts"] == ["75001", "75002", "75003", "75004"]
    assert 0.85 <= r.metrics["coverage"] <= 0.95
    # AND an unknown district does not crash the served graph
    out = score_onnx(r.onnx, pd.DataFrame({"surface_m2": [30.0], "district": ["99999"]}))
    assert np.isfinite(out["rent_eur"]).all() and out["low"][0] > 0


def test_all_missing_district_and_dates_are_ignored() -> None:
    # GIVEN a district column that is entirely missing and an all-NaT date column
    df = lognormal_rents(200, seed=6)
    df["district"] = None
    df["listed_at"] = pd.NaT
    df["other"] = "x"
    # WHEN trained THEN surface alone is used and the split is random
    r = train(df, seed=1, trained_at=T0, gbr_estimators=20, make_files=False)
    assert r.features == ["surface_m2"] and r.card["data"]["split"] == "random"


# --------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"rent_eur": [], "surface_m2": []}), "no usable rows"),
        (
            pd.DataFrame({"rent_eur": np.linspace(500, 900, 10), "surface_m2": np.linspace(10, 30, 10)}),
            "only 10 usable rows",
        ),
        (pd.DataFrame({"rent_eur": np.linspace(500, 900, 50), "surface_m2": [25.0] * 50}), "same surface"),
        (pd.DataFrame({"rent_eur": [np.nan] * 50, "surface_m2": np.linspace(10, 30, 50)}), "no usable rows"),
        (pd.DataFrame({"rent_eur": [800.0] * 50, "surface_m2": np.linspace(10, 30, 50)}), "same rent"),
        (pd.DataFrame({"price": [1.0] * 50, "surface_m2": np.linspace(10, 30, 50)}), "no column rent_eur"),
    ],
    ids=["empty", "tiny", "single-surface", "all-nan-rent", "constant-rent", "missing-column"],
)
def test_bad_input_raises_a_clear_error(frame: pd.DataFrame, message: str) -> None:
    # GIVEN unusable data WHEN training THEN an InsufficientDataError (a ValueError) explains why
    with pytest.raises(InsufficientDataError, match=message) as exc:
        train(frame, trained_at=T0, make_files=False)
    assert isinstance(exc.value, ValueError)


# --------------------------------------------------------------------------------------- selection


def test_selection_keeps_the_simplest_model_within_one_standard_error() -> None:
    from rentlake.model.train import _select

    # GIVEN gbr's interval score best by 5 € with an SE of 10 €, huber within noise too
    cv = {
        "ols": {"winkler_mean": 1305.0, "winkler_se": 12.0, "conditional_ok": True},
        "huber": {"winkler_mean": 1303.0, "winkler_se": 12.0, "conditional_ok": True},
        "gbr": {"winkler_mean": 1300.0, "winkler_se": 10.0, "conditional_ok": True},
    }
    chosen, reason = _select(cv)
    # THEN the simplest (ols) is kept and the reason names the best one
    assert chosen == "ols" and "gbr" in reason and "one standard error" in reason
    # GIVEN gbr clearly better THEN it wins
    cv["ols"]["winkler_mean"] = cv["huber"]["winkler_mean"] = 1340.0
    assert _select(cv)[0] == "gbr"
    # GIVEN gbr not calibrated in every surface tercile out of fold THEN it does not compete, and the
    # reason says so
    cv["gbr"]["conditional_ok"] = False
    chosen, reason = _select(cv)
    assert chosen == "ols" and "not calibrated in every cell out of fold: gbr" in reason


def test_gate_accepts_the_sample_model(sample_result: TrainResult) -> None:
    from rentlake.model.gate import decide

    # GIVEN the sample model and no champion WHEN gated THEN it is promoted (only non-blocking flags)
    d = decide(sample_result.metrics, None, sample_result.diagnostics)
    assert d.passed, d.reasons
    # AND scored against itself as champion on the same held-out rows it still passes
    champ = score_onnx(sample_result.onnx, sample_result.test_set)
    champ_m = metrics(sample_result.test_set["rent_eur"], champ["rent_eur"], champ["low"], champ["high"])
    assert champ_m["mae"] == pytest.approx(sample_result.metrics["mae"])
    assert decide(sample_result.metrics, champ_m, sample_result.diagnostics).passed


def test_a_line_in_euros_decided_by_one_point_leaves_the_linear_family_out() -> None:
    # GIVEN 80 flats of 20-40 m² and one of 400 m² let at 3 000 €: in euros, that one flat decides the line
    rng = np.random.default_rng(8)
    s = np.r_[rng.uniform(20, 40, 80), 400.0]
    rent = np.r_[32 * s[:80] * np.exp(rng.normal(0, 0.15, 80)), 3_000.0]
    # WHEN trained
    r = train(pd.DataFrame({"surface_m2": s, "rent_eur": rent}), seed=1, trained_at=T0, make_files=False)
    # THEN the diagnosis flags it, and no linear-scale candidate competes (the gate would refuse it)
    assert "influential_point" in r.diagnostics["reference"]["flags"]
    assert "linear" not in r.selection["cv"] and "linear" not in r.candidates
    assert (
        "linear-scale candidates left out: the line in euros is decided by one point" in r.selection["reason"]
    )
