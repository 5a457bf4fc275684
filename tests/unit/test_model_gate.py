"""Promotion gate (GIVEN / WHEN / THEN)."""

from __future__ import annotations

from typing import Any

import pytest
from rentlake.model.gate import BLOCKING_FLAGS, decide

GOOD = {"mae": 300.0, "coverage": 0.9}
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
    d = decide({"mae": 300.0, "coverage": coverage}, None, OK_DIAG)
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
    }


def test_better_challenger_with_blocking_flag_still_kept() -> None:
    d = decide(
        {"mae": 100.0, "coverage": 0.9}, {"mae": 300.0}, {"flags": ["influential_point"], "details": {}}
    )
    assert not d.passed


def test_missing_mae_blocks() -> None:
    assert not decide({"coverage": 0.9}, None, None).passed
