"""The clean stage's fast paths give what the rules they stand for give (no S3).

Numbers: plain values are parsed by Arrow, the others by the rules of ``_coerce_number_text``; columns of
other kinds are checked once per distinct value; duplicates, outliers, sketches and the index parts have
a vectorised form. Each is compared here with the straightforward form on awkward inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from rentlake import contracts
from rentlake.cleaning import (
    CleanParams,
    _coerce_number_text,
    coerce_number,
    duplicates,
    robust_bounds,
    robust_outliers,
    type_chunk,
)
from rentlake.summaries import Sketch, day_number, index_parts, sketch_groups

from tests.support import SAMPLES

AWKWARD_NUMBERS = [
    "1200", "1200.50", "0", "007", "5.", ".5", "-0", "+5", "-1200", "1e3", "1E3", "1e999", "inf", "-inf",
    "Infinity", "NaN", "nan", "n/a", "", " ", "  1200  ", "1 200,50 €", "1,200.5", "1.200", "1,200", "12,5",
    "1.234,56", "1,234.56", "30 m²", "1200 eur", "1'200", "1200\u00a0€", "0x10", "1_000", "١٢٣", "1.2.3",
    "--5", "5-", "€", "3.14159265358979323846", "000123.4500", "12345678901234567890", "999999999999999.9",
    "1234567890123456", "0.000000000000001", None,
]  # fmt: skip


@pytest.mark.parametrize("decimal_comma", [False, True])
def test_plain_numbers_read_by_arrow_are_what_the_rules_read(decimal_comma: bool) -> None:
    # GIVEN numbers as people and programs write them, with and without a decimal comma
    text = pd.Series(AWKWARD_NUMBERS * 3, dtype="string")
    # WHEN parsed by the fast path and by the rules alone
    fast = coerce_number(text, decimal_comma=decimal_comma)
    rules = _coerce_number_text(text, decimal_comma)
    # THEN the values (to the bit, NaN included) and both masks are the same
    assert np.array_equal(fast[0].view("int64"), rules[0].view("int64"))
    assert np.array_equal(fast[1], rules[1]) and np.array_equal(fast[2], rules[2])


def test_a_chunk_typed_from_arrow_is_typed_as_from_pandas() -> None:
    # GIVEN the course's listings with awkward values mixed in, as a frame and as an Arrow table
    course = pd.read_csv(SAMPLES / "house_intact.csv", dtype=str)
    n = len(course)
    rng = np.random.default_rng(3)
    raw = pd.DataFrame(
        {
            "rent_eur": np.where(rng.random(n) < 0.2, rng.choice(AWKWARD_NUMBERS[:-1], n), course["loyer"]),
            "surface_m2": np.where(
                rng.random(n) < 0.2, rng.choice(AWKWARD_NUMBERS[:-1], n), course["surface"]
            ),
            "district": rng.choice(["11", "11e", "Paris 3ème", " 75020 ", "", "Lyon", None], n),
            "listed_at": rng.choice(["2024-01-05", "05/01/2024", "2999-01-01", "not a date", "", None], n),
            "raw_problem": rng.choice([None, "malformed_row: 3 fields", "field_too_long: rent_eur"], n),
        },
        dtype="string",
    )
    contract = contracts.get("listings")
    # WHEN typed from each
    typed_pd, reasons_pd = type_chunk(raw, contract)
    typed_pa, reasons_pa = type_chunk(pa.Table.from_pandas(raw, preserve_index=False), contract)
    # THEN the typed values, their dtypes and every reason's rows are the same
    pd.testing.assert_frame_equal(typed_pa, typed_pd)
    assert [code for code, _ in reasons_pa] == [code for code, _ in reasons_pd]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(reasons_pa, reasons_pd, strict=True))
    assert len(reasons_pd) > 5  # the awkward values did produce reasons


def test_outliers_by_group_code_are_those_by_group_label() -> None:
    # GIVEN values in 25 groups, some too small for their own statistics, and a few far values
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 25, 20_000).astype(np.int32)
    values = rng.normal(3.4 + codes / 100, 0.2)
    values[rng.random(values.size) < 0.01] = 6.0
    values[codes == 24] = 3.0  # a group of its own
    codes[:10] = 30  # a group with too few rows: it falls back to the pool
    values[:3] = np.nan
    params = CleanParams(min_group=100)
    bounds = robust_bounds(values, codes, params)
    # WHEN the outliers are flagged from the codes and from the same groups as text labels
    by_code = robust_outliers(values, codes, bounds)
    labels = codes.astype(str).astype(object)
    by_label = robust_outliers(values, labels, robust_bounds(values, labels, params))
    # THEN they are the same rows
    assert by_code.sum() > 100 and np.array_equal(by_code, by_label)


@pytest.mark.parametrize("spread", [1.0, 1e4])
def test_group_sketches_are_the_sketches_of_each_group(spread: float) -> None:
    # GIVEN values in groups (NaN and infinities among them), narrow or spread too far for one table
    rng = np.random.default_rng(2)
    values = rng.normal(3.4, 0.3 * spread, 50_000)
    values[rng.random(values.size) < 0.01] = np.nan
    values[rng.random(values.size) < 0.001] = -np.inf
    groups = rng.choice(np.array(["75011", "75003", "Lyon", "(none)"], dtype=object), values.size)
    # WHEN sketched per group at once
    sketches = sketch_groups(values, groups)
    # THEN each is the sketch of its group's values alone, in the order the groups appear
    assert list(sketches) == list(pd.unique(groups))
    for label, sketch in sketches.items():
        alone = Sketch.of(values[groups == label])
        assert np.array_equal(sketch.bins, alone.bins) and np.array_equal(sketch.counts, alone.counts)


@pytest.mark.parametrize("copies", [0, 50, 5_000])
def test_duplicates_are_the_later_copies_among_valid_rows(copies: int) -> None:
    # GIVEN row hashes with some copies, some rows invalid, and a clean row already in the lake
    rng = np.random.default_rng(copies)
    hashes = rng.integers(-(2**63), 2**63 - 1, 20_000)
    hashes[rng.integers(0, hashes.size, copies)] = hashes[rng.integers(0, hashes.size, copies)]
    valid = rng.random(hashes.size) > 0.1
    clean = hashes[[5, 7]]
    # WHEN duplicates are found
    found = duplicates(hashes, valid, clean)
    # THEN they are the valid rows after the first valid copy, and the valid copies of clean rows
    expected = np.zeros(hashes.size, dtype=bool)
    expected[valid] = pd.Series(hashes[valid]).duplicated(keep="first").to_numpy()
    expected |= valid & np.isin(hashes, clean)
    assert np.array_equal(found, expected)


def test_index_parts_keep_each_months_rows_in_their_order() -> None:
    # GIVEN rows seen over three years, on their own date or on their ingestion day
    rng = np.random.default_rng(4)
    seen = rng.integers(day_number("2023-01-01"), day_number("2025-12-31"), 5_000).astype(np.int32)
    dated = rng.random(seen.size) < 0.8
    row_hash = np.arange(seen.size, dtype=np.int64)
    # WHEN split into index parts
    parts = list(index_parts(row_hash, seen, dated, row_hash * 2))
    # THEN each (seen on, month) is one part holding its rows in row order, parts ordered as before
    month = np.datetime_as_string((np.datetime64("1970-01-01") + seen).astype("datetime64[M]"), unit="M")
    expected = [
        (on, m, np.flatnonzero(rows & (month == m)))
        for on, rows in (("row_date", dated), ("ingest_date", ~dated))
        for m in sorted(set(month[rows].tolist()))
    ]
    assert [(on, m) for on, m, _ in parts] == [(on, m) for on, m, _ in expected]
    for (_, _, frame), (_, _, rows) in zip(parts, expected, strict=True):
        assert frame["row_hash"].tolist() == rows.tolist()
        assert frame["key_hash"].tolist() == (rows * 2).tolist()
        assert frame["seen"].dtype == np.int32
