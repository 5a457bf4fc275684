"""Cleaning rules: number parsing as people write numbers, types, ranges, robust outliers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rentlake import contracts
from rentlake.cleaning import (
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


# ------------------------------------------------------------------------ batch-wide decisions (no S3)
def test_duplicates_keep_the_first_valid_copy_and_drop_what_is_already_clean() -> None:
    from rentlake.cleaning import duplicates

    # GIVEN row hashes of a batch: 7 twice, 8 once but already clean, 9 invalid then valid
    row_hash = np.array([7, 7, 8, 9, 9, 5], dtype="int64")
    valid = np.array([True, True, True, False, True, True])
    # WHEN duplicates are decided against a clean zone holding 8
    dup = duplicates(row_hash, valid, np.array([8], dtype="int64"))
    # THEN the second 7 and the 8 are duplicates; the valid 9 is not a copy of the quarantined one
    assert dup.tolist() == [False, True, True, False, False, False]


def test_a_key_with_two_values_flags_every_candidate_row_of_it() -> None:
    from rentlake.cleaning import conflicting_keys

    # GIVEN keys 1 (two values in the batch), 2 (one value, another one already clean), 3 (agrees with clean)
    key_hash = np.array([1, 1, 2, 3, 4], dtype="int64")
    row_hash = np.array([10, 11, 20, 30, 40], dtype="int64")
    candidates = np.array([True, True, True, True, False])
    history_keys, history_rows = np.array([2, 3, 4], dtype="int64"), np.array([21, 30, 99], dtype="int64")
    # WHEN conflicts are decided
    conflict = conflicting_keys(key_hash, row_hash, candidates, history_keys, history_rows)
    # THEN keys 1 and 2 are conflicts; 3 agrees; 4 differs but its row is no candidate (already rejected)
    assert conflict.tolist() == [True, True, True, False, False]


def test_outliers_are_judged_against_the_clean_pool_and_the_batch() -> None:
    from rentlake.cleaning import BatchChecks, History, decide

    # GIVEN 100 clean values around 3.5 (one group), and a batch of three: typical, far, and a duplicate
    rng = np.random.default_rng(1)
    history = History.of_rows(
        row_hash=np.arange(100, dtype="int64"),
        robust_value=rng.normal(3.5, 0.1, 100),
        robust_group=np.zeros(100, dtype=np.int32),
    )
    batch = BatchChecks(
        invalid=np.array([False, False, False]),
        row_hash=np.array([1000, 1001, 5], dtype="int64"),
        robust_value=np.array([3.55, 6.0, 3.5]),
        robust_group=np.zeros(3, dtype=np.int32),
    )
    # WHEN decided with k = 4
    decided = decide(batch, history, CleanParams(mad_k=4.0, min_group=30))
    # THEN the far value is an outlier, the copy of clean row 5 a duplicate (not also an outlier)
    assert decided.duplicate.tolist() == [False, False, True]
    assert decided.outlier.tolist() == [False, True, False]
    assert decided.conflicting_key.tolist() == [False, False, False]
    # AND the bounds come from the pool of 100 clean rows and the 2 rows left standing
    assert decided.bounds["*"]["n"] == 102 and decided.labelled_bounds({"A": 0})["A"]["n"] == 102


def test_a_commit_that_lands_first_changes_the_decisions_as_in_sequence() -> None:
    from rentlake.cleaning import BatchChecks, History, decide

    # GIVEN a batch decided against an empty clean zone
    batch = BatchChecks(invalid=np.zeros(3, dtype=bool), row_hash=np.array([1, 2, 3], dtype="int64"))
    alone = decide(batch, History(), CleanParams())
    # WHEN another batch holding rows 2 and 3 is committed first, and joins the history
    later = History().extend(
        History.of_rows(row_hash=np.array([2, 3], dtype="int64"), key_hash=np.zeros(2, "int64"))
    )
    again = decide(batch, later, CleanParams())
    # THEN the decisions differ (2 and 3 are now duplicates), as if the batches had run one after the other
    assert alone.duplicate.tolist() == [False, False, False]
    assert again.duplicate.tolist() == [False, True, True]
    assert not again.same_rows(alone) and again.same_rows(decide(batch, later, CleanParams()))
    assert later.n == 2
