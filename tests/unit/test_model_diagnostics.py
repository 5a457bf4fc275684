"""Regression diagnostics: Anscombe's quartet and false alarms on clean data (GIVEN / WHEN / THEN)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rentlake.model import InsufficientDataError
from rentlake.model.diagnostics import diagnose
from rentlake.reporting import residual_plots

from tests.support import SAMPLES

ANSCOMBE = SAMPLES / "anscombe.csv"
PUBLISHED = {  # Anscombe (1973), "Graphs in statistical analysis", table 1
    "x": [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5],
    "I": [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68],
    "II": [9.14, 8.14, 8.74, 8.77, 9.26, 8.10, 6.13, 3.10, 9.13, 7.26, 4.74],
    "III": [7.46, 6.77, 12.74, 7.11, 7.81, 8.84, 6.08, 5.39, 8.15, 6.42, 5.73],
    "x4": [8, 8, 8, 8, 8, 8, 8, 19, 8, 8, 8],
    "IV": [6.58, 5.76, 7.71, 8.84, 8.47, 7.04, 5.25, 12.50, 5.56, 7.91, 6.89],
}


def anscombe(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = pd.read_csv(ANSCOMBE)
    d = d[d["dataset"] == name]
    return d["x"].to_numpy(float), d["y"].to_numpy(float)


@pytest.mark.parametrize("name", ["I", "II", "III", "IV"])
def test_the_sample_file_is_anscombes_published_quartet(name: str) -> None:
    # GIVEN data/samples/anscombe.csv WHEN one set is read THEN it is Anscombe's table, in order
    x, y = anscombe(name)
    np.testing.assert_array_equal(x, PUBLISHED["x4" if name == "IV" else "x"])
    np.testing.assert_array_equal(y, PUBLISHED[name])


@pytest.mark.parametrize("name", ["I", "II", "III", "IV"])
def test_anscombe_sets_share_the_same_line(name: str) -> None:
    # GIVEN one of Anscombe's sets WHEN diagnosed THEN the line is 3.00 + 0.500·x with R² 0.67
    d = diagnose(*anscombe(name))
    assert d.intercept == pytest.approx(3.00, abs=0.01)
    assert d.slope == pytest.approx(0.500, abs=0.001)
    assert d.r2 == pytest.approx(0.67, abs=0.01)
    assert d.n == 11


@pytest.mark.parametrize(
    ("name", "flag", "reason"),
    [
        ("II", "nonlinearity", "Ramsey RESET"),
        ("III", "outlier", "externally studentized residual"),
        ("IV", "influential_point", "decided by this single point"),
    ],
)
def test_anscombe_flags(name: str, flag: str, reason: str) -> None:
    # GIVEN a set where the line is misleading WHEN diagnosed THEN the right flag is raised with its reason
    d = diagnose(*anscombe(name)).to_dict()
    assert d["verdict"] == "flagged" and flag in d["flags"]
    assert reason in d["details"][flag]["reason"]
    assert d["details"][flag]["test"]


def test_anscombe_flag_sets_are_exactly_the_true_ones() -> None:
    # THEN I has no flag and II–IV carry only their defining problem
    got = {n: diagnose(*anscombe(n)).flags for n in ("I", "II", "III", "IV")}
    assert got == {"I": [], "II": ["nonlinearity"], "III": ["outlier"], "IV": ["influential_point"]}


def test_anscombe_I_is_ok_and_to_dict_has_the_contract_keys() -> None:
    d = diagnose(*anscombe("I")).to_dict()
    assert d["verdict"] == "ok" and d["flags"] == []
    assert set(d) == {"intercept", "slope", "r2", "n", "verdict", "flags", "details"}
    assert d["details"]["nonlinearity"]["p_value"] > 0.1
    json.dumps(d)


@pytest.mark.parametrize("n", [20, 100, 1000])
def test_no_false_alarm_on_clean_linear_data(n: int) -> None:
    # GIVEN 50 clean linear samples with Gaussian noise (uniform and Gaussian x)
    alarms = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 10, n) if seed % 2 else rng.normal(5, 2, n)
        y = 1.0 + 2.0 * x + rng.normal(0, 1.5, n)
        d = diagnose(x, y)
        # THEN nothing is flagged
        if d.flags:
            alarms.append((seed, d.flags))
    assert alarms == []


def test_heteroscedastic_rents_are_flagged() -> None:
    # GIVEN rents whose spread grows with surface WHEN diagnosed THEN Breusch–Pagan flags it
    rng = np.random.default_rng(0)
    s = rng.uniform(10, 150, 500)
    d = diagnose(s, 30 * s * np.exp(rng.normal(0, 0.3, 500)))
    assert "heteroscedasticity" in d.flags
    assert d.details["heteroscedasticity"]["p_value"] < 1e-4


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([3.0] * 5, [1, 2, 3, 4, 5], "identical"),
        ([1, 2, 3, 4], [2.0] * 4, "constant"),
        ([1, 2, np.nan, 4], [1, 2, 3, 4], "finite"),
    ],
    ids=["tiny", "single-x", "constant-y", "nan"],
)
def test_bad_input(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(InsufficientDataError, match=message):
        diagnose(x, y)


def test_residual_plots_are_pngs() -> None:
    d = diagnose(*anscombe("I"))
    files = residual_plots(d.fitted, d.residuals, title="Anscombe I")
    assert set(files) == {"residuals_vs_fitted.png", "qq.png"}
    assert all(v.startswith(b"\x89PNG") for v in files.values())
