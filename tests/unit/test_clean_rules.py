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


# ------------------------------------------------------------------------ history summaries (no S3)
def _exact_and_sketched(values: np.ndarray) -> tuple[float, float, float, float]:
    from rentlake.summaries import Sketch

    sketch = Sketch.of(values)
    med = float(np.median(values))
    return med, float(np.median(np.abs(values - med))), sketch.median(), sketch.mad(sketch.median())


@pytest.mark.parametrize("n", [1, 2, 31, 1000, 20_001])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_and_mad_from_a_sketch_are_within_its_stated_error(n: int, seed: int) -> None:
    from rentlake.summaries import BIN_WIDTH

    # GIVEN log rents per m² from a skewed mixture (and rounded values, which pile up on bin edges)
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(3.4, 0.2, n), rng.exponential(0.5, n // 10) + 3.6])
    values[: n // 3] = np.round(values[: n // 3], 2)
    # WHEN median and MAD are read from the sketch
    med, mad, med_sketch, mad_sketch = _exact_and_sketched(values)
    # THEN they differ from the exact ones by at most half a bin and one bin
    assert abs(med_sketch - med) <= BIN_WIDTH / 2 + 1e-12
    assert abs(mad_sketch - mad) <= BIN_WIDTH + 1e-12


def test_sketches_merge_to_the_sketch_of_all_the_values_and_survive_json() -> None:
    from rentlake.summaries import Sketch

    rng = np.random.default_rng(3)
    a, b = rng.normal(3.4, 0.3, 5000), rng.normal(3.0, 0.1, 700)
    merged = Sketch.of(a).merge(Sketch.of(b))
    whole = Sketch.of(np.concatenate([a, b, [np.nan, np.inf]]))  # non-finite values are left out
    assert np.array_equal(merged.bins, whole.bins) and np.array_equal(merged.counts, whole.counts)
    assert merged.n == 5700
    back = Sketch.from_json(merged.to_json(), merged.width)
    assert np.array_equal(back.bins, merged.bins) and np.array_equal(back.counts, merged.counts)
    assert Sketch().merge(merged) is merged and Sketch.from_json(Sketch().to_json(), 0.001).n == 0
    with pytest.raises(ValueError, match="bin widths"):
        merged.merge(Sketch(width=0.01))


def test_bounds_from_sketches_are_within_the_stated_error_of_the_exact_bounds() -> None:
    from rentlake.summaries import merge_groups, sketch_bounds, sketch_error, sketch_groups

    # GIVEN 20 districts of different sizes (one too small for its own bounds), in two commits
    rng = np.random.default_rng(4)
    groups = rng.choice([f"750{d:02d}" for d in range(1, 21)], 30_000, p=np.r_[[0.0005], [0.9995 / 19] * 19])
    values = rng.normal(3.3, 0.25, groups.size) + (groups == "75008") * 0.4
    params = CleanParams(mad_k=4.0, min_group=30)
    exact = robust_bounds(values, groups, params)
    # WHEN the bounds come from the sketches of the two commits, merged
    half = groups.size // 2
    sketches = merge_groups(
        sketch_groups(values[:half], groups[:half]), sketch_groups(values[half:], groups[half:])
    )
    sketched = sketch_bounds(sketches, params, grouped=True)
    # THEN the same groups have bounds, each statistic within the stated error, counts exact
    error = sketch_error(params)
    assert set(sketched) == set(exact) and "75001" not in exact
    for label, b in exact.items():
        assert sketched[label]["n"] == b["n"]
        assert abs(sketched[label]["median"] - b["median"]) <= error["median"] + 1e-12
        assert abs(sketched[label]["scaled_mad"] - b["scaled_mad"]) <= error["scaled_mad"] + 1e-12
        for side in ("low", "high"):
            assert abs(sketched[label][side] - b[side]) <= error["bound"] + 1e-12
    assert error["bound"] == pytest.approx(0.0005 + 4 * 1.4826 * 0.001)


def test_the_course_file_has_the_same_outliers_with_sketched_bounds() -> None:
    from rentlake.summaries import sketch_bounds, sketch_error, sketch_groups

    from tests.support import SAMPLES

    # GIVEN the course's listings, typed as the clean stage types them, without their exact duplicates
    source = pd.read_csv(SAMPLES / "house_intact.csv", dtype="string").drop_duplicates()
    raw = pd.DataFrame(
        {"rent_eur": source["loyer"], "surface_m2": source["surface"], "district": None, "listed_at": None},
        dtype="string",
    )
    contract = contracts.get("listings")
    typed, _ = type_chunk(raw, contract)
    values = np.asarray(contract.robust.value(typed), dtype="float64")
    params = CleanParams()
    # WHEN bounds are computed exactly and from the sketch
    exact = robust_bounds(values, None, params)
    sketched = sketch_bounds(sketch_groups(values, None), params, grouped=False)
    # THEN they agree within the stated error, and flag the same rows: the 111 €/m² listing alone
    assert abs(sketched["*"]["high"] - exact["*"]["high"]) <= sketch_error(params)["bound"]
    flagged = robust_outliers(values, None, sketched)
    assert np.array_equal(flagged, robust_outliers(values, None, exact))
    assert typed.loc[flagged, ["rent_eur", "surface_m2"]].values.tolist() == [[20000.0, 180.0]]


def test_seen_is_the_row_date_when_there_is_one_else_the_ingestion_day() -> None:
    from rentlake.summaries import day_number, month_of, seen_days

    dates = pd.Series(pd.to_datetime(["2024-05-31 00:00", None, "2023-12-01 18:30"]))
    days, dated = seen_days(dates, "2025-01-15", 3)
    assert dated.tolist() == [True, False, True]
    assert days.tolist() == [day_number("2024-05-31"), day_number("2025-01-15"), day_number("2023-12-01")]
    assert month_of(days).tolist() == ["2024-05", "2025-01", "2023-12"]
    days, dated = seen_days(None, "2025-01-15", 2)  # a contract without a date column
    assert not dated.any() and set(days.tolist()) == {day_number("2025-01-15")}


def test_a_batch_reads_the_month_of_its_dates_and_the_window_of_its_ingestion() -> None:
    from rentlake.summaries import BatchLookup, day_number

    # GIVEN two dated rows (May and June 2024) and one undated row ingested on 2025-01-15
    seen = np.array([day_number("2024-05-31"), day_number("2024-06-02"), day_number("2025-01-15")])
    lookup = BatchLookup.of(np.array([1, 2, 3]), seen, np.array([True, True, False]), None, window_days=180)
    # THEN it reads the row-date parts of May and June, and the ingestion-day parts within 180 days
    parts = lookup.partitions()
    assert [m for on, m in parts if on == "row_date"] == ["2024-05", "2024-06"]
    undated = [m for on, m in parts if on == "ingest_date"]
    assert undated[0] == "2024-07" and undated[-1] == "2025-07" and len(undated) == 13


def test_a_clean_row_counts_within_the_window_and_keys_whatever_their_age() -> None:
    from rentlake.summaries import BatchLookup, day_number

    today = day_number("2025-01-15")
    # GIVEN batch rows 10 (undated), 20 (dated), 30 (undated), with keys 1, 2, 3
    lookup = BatchLookup.of(
        np.array([10, 20, 30]),
        np.array([today, day_number("2023-01-01"), today], dtype=np.int32),
        np.array([False, True, False]),
        np.array([1, 2, 3]),
        window_days=180,
    )
    # WHEN an index part holds 10 seen 100 days ago, 20 on its date, 30 seen 200 days ago, 99 (key 3)
    part_rows = np.array([10, 20, 30, 99])
    part_seen = np.array([today - 100, day_number("2023-01-01"), today - 200, today - 900], dtype=np.int32)
    rows, pair_keys, pair_rows = lookup.match(part_rows, part_seen, np.array([1, 2, 3, 3]))
    # THEN 10 and 20 were seen within the window, 30 was not; every clean row of keys 1-3 is returned
    assert rows.tolist() == [10, 20]
    assert pair_keys.tolist() == [1, 2, 3, 3] and pair_rows.tolist() == [10, 20, 30, 99]


def test_index_parts_split_by_what_rows_were_seen_on_and_month() -> None:
    from rentlake.summaries import day_number, index_parts

    seen = np.array([day_number(d) for d in ("2024-05-01", "2024-05-20", "2024-06-01", "2024-05-03")])
    parts = {
        (on, month): frame["row_hash"].tolist()
        for on, month, frame in index_parts(
            np.array([1, 2, 3, 4]), seen, np.array([True, True, True, False]), None
        )
    }
    assert parts == {
        ("row_date", "2024-05"): [1, 2],
        ("row_date", "2024-06"): [3],
        ("ingest_date", "2024-05"): [4],
    }


def test_a_history_of_whole_rows_counts_them_and_sketches_their_values() -> None:
    from rentlake.cleaning import History

    first = History.of_rows(
        np.array([1, 2]), robust_value=np.array([3.0, 3.1]), robust_group=np.array([0, 1])
    )
    both = first.extend(
        History.of_rows(np.array([3]), robust_value=np.array([3.2]), robust_group=np.array([0]))
    )
    assert both.n == 3 and both.row_hash.tolist() == [1, 2, 3]
    assert {code: s.n for code, s in both.sketches.items()} == {0: 2, 1: 1}
