"""The review of a new clean batch against the clean history (GIVEN / WHEN / THEN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rentlake.model.shift import MAX_SHIFT, check_batch

from tests.support import SAMPLES


def course() -> pd.DataFrame:
    """The course file's rows as the clean zone holds them (no duplicates)."""
    raw = pd.read_csv(SAMPLES / "house_intact.csv").drop_duplicates()
    return raw.rename(columns={"loyer": "rent_eur", "surface": "surface_m2"})


def market(n: int, seed: int, per_m2: float = 30.0, sigma: float = 0.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.uniform(15, 120, n)
    return pd.DataFrame({"surface_m2": s, "rent_eur": s * per_m2 * np.exp(rng.normal(0, sigma, n))})


def test_a_poisoned_batch_at_five_times_the_market_is_held() -> None:
    # GIVEN the course listings as history and 3 000 listings at 150-195 €/m²
    rng = np.random.default_rng(0)
    s = rng.uniform(15, 90, 3_000)
    poison = pd.DataFrame({"surface_m2": s, "rent_eur": s * rng.uniform(150, 195, 3_000)})
    # WHEN the batch is checked
    verdict = check_batch(course(), poison)
    # THEN it is held, and the reason gives both medians and the shift in robust SDs
    assert verdict.held and verdict.reason.startswith("all districts: median 172")
    [group] = verdict.groups
    assert group["shift_sd"] > 6 and group["share_beyond"] > 0.99
    assert group["history_median_eur_m2"] == pytest.approx(35.6, abs=0.5)
    assert verdict.to_json()["thresholds"] == {"max_shift_sd": 1.0, "max_share_beyond": 0.1}


def test_a_batch_of_the_same_market_is_admitted_and_drift_is_not_poison() -> None:
    # GIVEN a history and two later batches of the same market, one 8 % dearer (a few years of drift)
    history = market(2_000, 1)
    same, dearer = market(500, 2), market(500, 3, per_m2=30.0 * 1.08)
    # THEN both are admitted, and the reason names the largest shift
    for batch in (same, dearer):
        verdict = check_batch(history, batch)
        assert not verdict.held and verdict.reason.startswith("€/m² in line with the history")
        assert abs(verdict.groups[0]["shift_sd"]) < MAX_SHIFT


def test_a_poisoned_third_of_a_batch_is_held_by_its_share_beyond_the_history() -> None:
    # GIVEN a batch whose median barely moves: 70 % market rows, 30 % at five times the price
    history = market(2_000, 4)
    batch = pd.concat([market(700, 5), market(300, 6, per_m2=150.0)], ignore_index=True)
    # WHEN checked
    verdict = check_batch(history, batch)
    # THEN the median shift stays under the limit, but the share beyond the 1st-99th percentiles holds it
    [group] = verdict.groups
    assert abs(group["shift_sd"]) < MAX_SHIFT and group["share_beyond"] > 0.25
    assert verdict.held and "beyond the history's 1st-99th percentiles" in verdict.reason


def test_small_batches_of_the_same_market_are_not_held_by_chance() -> None:
    # GIVEN a history and 40 batches of 6 to 40 rows drawn from the same market
    history = market(2_000, 7)
    batches = [market(6 + (seed % 5) * 8, 100 + seed) for seed in range(40)]
    # THEN none is held: a median shift must exceed 3 standard errors of a batch median, and the share
    # beyond the 1st-99th percentiles must be improbable under the expected 2 %
    assert [b for b in batches if check_batch(history, b).held] == []


def test_no_history_admits_the_first_batches() -> None:
    # GIVEN an empty history, or one of 10 rows
    for history in (market(0, 9), market(10, 9)):
        verdict = check_batch(history, market(100, 10, per_m2=150.0))
        # THEN even a batch at 150 €/m² is admitted: there is no market to compare with
        assert not verdict.held and "fewer than 30" in verdict.reason


def test_districts_with_history_are_compared_alone() -> None:
    # GIVEN a history of two districts at 25 and 45 €/m², and a batch where only 75020 is at 45 €/m²
    h1, h2 = market(600, 11, per_m2=45.0), market(600, 12, per_m2=25.0)
    h1["district"], h2["district"] = "75007", "75020"
    b1, b2 = market(200, 13, per_m2=45.0), market(200, 14, per_m2=45.0)
    b1["district"], b2["district"] = "75007", "75020"
    verdict = check_batch(pd.concat([h1, h2]), pd.concat([b1, b2]))
    # THEN 75020 is held for its shift while 75007 is in line (pooled, the batch would look plausible)
    by = {g["group"]: g for g in verdict.groups}
    assert set(by) == {"district 75007", "district 75020"}
    assert not by["district 75007"]["held"] and by["district 75020"]["held"]
    assert verdict.held and "district 75020" in verdict.reason and "district 75007" not in verdict.reason
