"""Cleaning rules: number parsing as people write numbers, types, ranges, robust outliers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rentlake import contracts
from rentlake.clean import (
    CleanParams,
    coerce_number,
    reasons_to_series,
    robust_bounds,
    robust_outliers,
    type_chunk,
)


@pytest.mark.parametrize(
    ("text", "decimal_comma", "expected"),
    [
        ("1200", False, 1200.0),
        (" 1 200 ", False, 1200.0),
        ("1\u00a0200,50", True, 1200.5),
        ("1,200", False, 1200.0),  # thousands separator in an English file
        ("1,200", True, 1.2),  # decimal comma in a French file
        ("1.200", True, 1200.0),
        ("1,200.50", False, 1200.5),
        ("1.200,50", True, 1200.5),
        ("30,5", False, 30.5),
        ("1 200 €", False, 1200.0),
        ("45 m²", False, 45.0),
        ("1'200", False, 1200.0),
    ],
)
def test_numbers_written_by_people(text: str, decimal_comma: bool, expected: float) -> None:
    values, nan_mask, inf_mask = coerce_number(pd.Series([text], dtype="string"), decimal_comma=decimal_comma)
    assert values[0] == pytest.approx(expected)
    assert not nan_mask[0] and not inf_mask[0]


def test_not_numbers_and_not_finite_are_told_apart() -> None:
    s = pd.Series(["abc", "NaN", "inf", "-Infinity", "", None, "12"], dtype="string")
    values, nan_mask, inf_mask = coerce_number(s, decimal_comma=False)
    assert nan_mask.tolist() == [True, False, False, False, False, False, False]
    assert inf_mask.tolist() == [False, True, True, True, False, False, False]
    assert np.isnan(values[:6]).all() and values[6] == 12


def test_type_chunk_gives_each_bad_row_its_reasons() -> None:
    # GIVEN raw rows with the usual problems
    raw = pd.DataFrame(
        {
            "rent_eur": ["1200", "abc", "NaN", "900", "800", "2000", None],
            "surface_m2": ["30", "30", "30", "0", "-5", "4", "30"],
            "district": ["11", None, None, None, None, None, None],
            "listed_at": ["2024-05-01", None, None, None, "31/12/2023", "not a date", None],
            "raw_problem": [None] * 7,
        },
        dtype="string",
    )
    contract = contracts.get("listings")
    # WHEN typed and checked
    typed, reasons = type_chunk(raw, contract)
    per_row = reasons_to_series(len(raw), reasons).tolist()
    # THEN the good row has no reason and every bad one names its problems
    assert pd.isna(per_row[0])
    assert typed.loc[0, "district"] == "75011" and typed.loc[0, "rent_eur"] == 1200.0
    assert "rent_eur_not_a_number" in per_row[1]
    assert "rent_eur_not_finite" in per_row[2]
    assert "surface_m2_below_min" in per_row[3]  # zero
    assert "surface_m2_below_min" in per_row[4]  # negative
    assert typed.loc[4, "listed_at"] == pd.Timestamp("2023-12-31")
    assert "surface_m2_below_min" in per_row[5] and "listed_at_invalid_date" in per_row[5]
    assert per_row[6] == "missing_rent_eur"


def test_yearly_rent_column_is_converted_to_monthly() -> None:
    contract = contracts.get("listings")
    mapping = contract.map_header(["loyer_annuel", "surface"])
    raw = pd.DataFrame(
        {"rent_eur": ["14400"], "surface_m2": ["40"], "district": [None], "listed_at": [None]}, dtype="string"
    )
    typed, reasons = type_chunk(raw, contract, factors=mapping.factors)
    assert typed.loc[0, "rent_eur"] == pytest.approx(1200.0) and not reasons


def test_robust_outliers_use_the_group_or_the_pool() -> None:
    # GIVEN log rent per m² around 3.5 in two districts, one of them too small for its own statistics
    rng = np.random.default_rng(0)
    big = rng.normal(3.5, 0.2, 200)
    values = np.concatenate([big, [3.5, 3.6, 6.0], [6.2]])
    groups = np.array(["A"] * 200 + ["B"] * 3 + ["A"])
    # WHEN bounds are computed with k = 4
    bounds = robust_bounds(values, groups, CleanParams(mad_k=4.0, min_group=30))
    flagged = robust_outliers(values, groups, bounds)
    # THEN only the two far values are flagged, B falling back to the pool
    assert "B" not in bounds and "A" in bounds
    assert np.flatnonzero(flagged).tolist() == [202, 203]
    assert bounds["A"]["median"] == pytest.approx(3.5, abs=0.05)


def test_integer_beyond_64_bits_is_a_reason_not_a_crash() -> None:
    # GIVEN reference rows whose room count is written 1e30 (and 20 digits), beside a good one
    contract = contracts.get("reference_rents")
    raw = pd.DataFrame({c: ["x"] * 3 for c in contract.column_names}, dtype="string")
    raw["rooms"] = pd.array(["1e30", "12345678901234567890", "2"], dtype="string")
    # WHEN typed THEN the batch is not failed: the two rows carry a reason, the good one keeps its value
    typed, reasons = type_chunk(raw, contract)
    per_row = reasons_to_series(len(raw), reasons).tolist()
    assert "rooms_not_an_integer" in per_row[0] and "rooms_not_an_integer" in per_row[1]
    assert "rooms_not_an_integer" not in (per_row[2] or "")
    assert typed["rooms"].isna().tolist() == [True, True, False] and typed["rooms"].iloc[2] == 2
