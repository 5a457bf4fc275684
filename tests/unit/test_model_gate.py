"""Promotion gate (GIVEN / WHEN / THEN)."""

from __future__ import annotations

from typing import Any

import pytest
from rentlake.model import MIN_HELDOUT_ROWS
from rentlake.model.gate import BLOCKING_FLAGS, SHIFT_BOUND, Comparison, decide

GOOD = {"n": 500, "mae": 300.0, "coverage": 0.9}
OK_DIAG: dict[str, Any] = {
    "reference": {"flags": ["heteroscedasticity", "outlier"], "details": {}},
    "served_scale": {"flags": ["nonlinearity"], "details": {}},
}


def test_no_champion_and_acceptable_diagnostics_promotes() -> None:
    # GIVEN a calibrated challenger whose only flags are the expected, non-blocking ones
    d = decide(GOOD, None, OK_DIAG)
    # THEN it is promoted, and the non-blocking flags are reported
    assert d.passed and d.to_dict()["decision"] == "promote"
    assert any("non-blocking" in r for r in d.reasons) and any("no champion" in r for r in d.reasons)


@pytest.mark.parametrize("coverage", [0.80, 0.849, 0.951, 0.99, float("nan")])
def test_miscalibrated_interval_blocks(coverage: float) -> None:
    d = decide({"n": 500, "mae": 300.0, "coverage": coverage}, None, OK_DIAG)
    assert not d.passed and d.to_dict()["decision"] == "keep"
    assert any("coverage" in r for r in d.reasons)


def test_influential_point_blocks_with_its_reason() -> None:
    # GIVEN a fit decided by one point (Anscombe IV-like)
    diag = {"flags": ["influential_point"], "details": {"influential_point": {"reason": "leverage 1.000"}}}
    d = decide(GOOD, None, diag)
    # THEN the gate keeps the champion and says why
    assert not d.passed and any("leverage 1.000" in r for r in d.reasons)
    assert {"influential_point"} == BLOCKING_FLAGS


@pytest.mark.parametrize(
    ("champion_mae", "passed"), [(300.0, True), (290.0, True), (285.8, True), (280.0, False)]
)
def test_challenger_vs_champion_within_tolerance(champion_mae: float, passed: bool) -> None:
    # GIVEN a challenger MAE of 300 € and a champion scored on the same rows
    d = decide(GOOD, {"mae": champion_mae, "coverage": 0.9}, OK_DIAG, tolerance=0.05)
    # THEN it passes only when 300 ≤ champion·1.05
    assert d.passed is passed
    assert d.to_dict() == {
        "decision": "promote" if passed else "keep",
        "passed": passed,
        "reasons": d.reasons,
        "small_sample": False,
    }


def test_better_challenger_with_blocking_flag_still_kept() -> None:
    d = decide(
        {"n": 500, "mae": 100.0, "coverage": 0.9},
        {"mae": 300.0},
        {"flags": ["influential_point"], "details": {}},
    )
    assert not d.passed


def test_missing_mae_blocks() -> None:
    assert not decide({"n": 500, "coverage": 0.9}, None, None).passed


# ----------------------------------------------------------------------------------------- small data
def test_few_heldout_rows_and_no_champion_promote_a_small_sample() -> None:
    # GIVEN a first model judged on 6 held-out rows (28 listings), whose coverage on them is 5/6
    d = decide({"n": 6, "mae": 250.0, "coverage": 5 / 6}, None, OK_DIAG)
    # THEN the gate does not judge the coverage of 6 rows: the model is promoted, marked small sample
    assert d.passed and d.small_sample and d.to_dict()["small_sample"] is True
    assert any(r.startswith("small sample: only 6 held-out rows") and "promoted" in r for r in d.reasons)


def test_few_heldout_rows_with_a_champion_keep_it_and_say_why() -> None:
    # GIVEN the same challenger, a champion, and a challenger better than it on those 6 rows
    d = decide(
        {"n": 6, "mae": 100.0, "coverage": 1.0},
        {"mae": 300.0},
        OK_DIAG,
        compare=Comparison(version="v2"),
    )
    # THEN the champion stays, and the reasons say why and how to accept it anyway
    assert not d.passed and d.small_sample
    why = next(r for r in d.reasons if r.startswith("small sample"))
    assert f"fewer than the {MIN_HELDOUT_ROWS}" in why and "champion, which stays" in why
    assert "rentlake models promote v2" in why


def test_the_gate_decides_from_min_rows_exactly() -> None:
    # GIVEN MIN_HELDOUT_ROWS and one row fewer, with a champion as good as the challenger
    at = decide({**GOOD, "n": MIN_HELDOUT_ROWS}, {"mae": 300.0}, OK_DIAG)
    below = decide({**GOOD, "n": MIN_HELDOUT_ROWS - 1}, {"mae": 300.0}, OK_DIAG)
    # THEN it decides on MIN_HELDOUT_ROWS rows and not below
    assert at.passed and not at.small_sample
    assert not below.passed and below.small_sample


# ------------------------------------------------------------------------------------ poisoning
def test_reference_holdout_refuses_a_challenger_worse_on_earlier_data() -> None:
    # GIVEN a challenger as good as the champion overall, but 40 % worse on the champion's batches' rows
    ref = {"n": 96, "challenger": {"mae": 420.0}, "champion": {"mae": 300.0}}
    d = decide(GOOD, {"mae": 300.0}, OK_DIAG, compare=Comparison(reference=ref))
    # THEN it is kept, and the reason names the reference holdout
    assert not d.passed
    assert any("reference holdout (96 rows" in r and "+40.0%" in r for r in d.reasons)
    # AND a reference holdout of fewer rows than the gate decides on is reported, not judged
    small = decide(GOOD, {"mae": 300.0}, OK_DIAG, compare=Comparison(reference={**ref, "n": 10}))
    assert small.passed and any("10 rows of the champion's batches" in r for r in small.reasons)


def shifts(change: float) -> list[dict[str, float]]:
    return [
        {
            "surface_m2": s,
            "champion": 1000.0,
            "challenger": 1000.0 * (1 + change * (s == 30)),
            "change": change * (s == 30),
        }
        for s in (20.0, 30.0, 50.0, 80.0)
    ]


@pytest.mark.parametrize(
    ("change", "passed"), [(0.10, True), (SHIFT_BOUND, True), (0.16, False), (-0.2, False)]
)
def test_estimates_moving_beyond_the_bound_are_refused_unless_accepted(change: float, passed: bool) -> None:
    # GIVEN a challenger whose 30 m² estimate differs from the champion's by `change`
    d = decide(GOOD, {"mae": 300.0}, OK_DIAG, compare=Comparison(shifts=shifts(change), version="v9"))
    # THEN it passes only within the bound, and a refusal says how to accept it
    assert d.passed is passed
    if not passed:
        assert any("30 m²" in r and "rentlake models promote v9" in r for r in d.reasons)


def test_a_small_sample_champion_is_no_reference_for_the_shift() -> None:
    # GIVEN a champion trained on 28 listings and a challenger that moves the 30 m² estimate by 30 %
    compare = Comparison(shifts=shifts(0.3), champion_small_sample=True)
    d = decide(GOOD, {"mae": 300.0}, OK_DIAG, compare=compare)
    # THEN the move is reported but does not block
    assert d.passed and any("no reference: not gated" in r for r in d.reasons)


def test_a_large_cell_outside_the_range_blocks_a_small_one_does_not() -> None:
    # GIVEN held-out cells: a tercile of 400 rows at 0.80, then instead a district of 40 rows at 0.70
    big = [{"cell": "largest third of surfaces (70–415 m²)", "n": 400, "coverage": 0.80}]
    small = [{"cell": "district 75016", "n": 40, "coverage": 0.70}]
    # THEN the large cell blocks, naming it; the small one (binomial noise) does not
    d = decide(GOOD, None, OK_DIAG, compare=Comparison(cells=big))
    assert not d.passed and any("largest third" in r and "400 rows" in r for r in d.reasons)
    assert decide(GOOD, None, OK_DIAG, compare=Comparison(cells=small)).passed
