"""The training sample and the review's history sample: bounded, stratified, reproducible, stable when a
batch is added, and every row below the cap (GIVEN / WHEN / THEN; pure, no S3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rentlake.model.sample import (
    SampleRule,
    describe,
    group_rates,
    keep_mask,
    row_identity,
    row_rates,
    trim_mask,
    uniform_of,
)
from rentlake.model.shift import HistorySample, check_batch
from rentlake.model.train import holdout_mask

# District sizes of a skewed lake: two large, several medium, a small one, a tiny one.
SIZES = {"75001": 120_000, "75002": 60_000, "75003": 12_000, "75004": 6_000, "75005": 3_000, "75006": 800}
SIZES |= {"75007": 40}


def lake(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Listings with distinct row hashes, ``sizes[d]`` rows in district d."""
    rng = np.random.default_rng(seed)
    district = np.repeat(np.array(list(sizes), dtype=object), list(sizes.values()))
    n = len(district)
    surface = rng.uniform(15, 120, n)
    return pd.DataFrame(
        {
            "rent_eur": surface * 30 * np.exp(rng.normal(0, 0.2, n)),
            "surface_m2": surface,
            "district": district,
            "row_hash": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        }
    )


def sampled(df: pd.DataFrame, rule: SampleRule) -> pd.DataFrame:
    """The rows the rule keeps (rates from the whole frame's district counts)."""
    rates = group_rates(df["district"].value_counts().to_dict(), rule)
    u = uniform_of(row_identity(df))
    return df[keep_mask(u, df["district"].to_numpy(dtype=object), rates)]


# ------------------------------------------------------------------------------------------- the rates
def test_below_the_cap_every_row_is_kept() -> None:
    # GIVEN a lake of 202 840 rows and caps at or above that
    df = lake(SIZES)
    for cap in (len(df), 10 * len(df)):
        # THEN every rate is 1 and the sample is the lake, row for row
        rates = group_rates(df["district"].value_counts().to_dict(), SampleRule(cap))
        assert set(rates.values()) == {1.0}
        pd.testing.assert_frame_equal(sampled(df, SampleRule(cap)), df)
        assert describe(dict(df["district"].value_counts()), rates, len(df), SampleRule(cap))["all_rows"]


def test_the_sample_is_bounded_and_stratified() -> None:
    # GIVEN the skewed lake and a cap of 20 000 rows, floor 1 000
    df, rule = lake(SIZES), SampleRule(20_000, floor=1_000)
    counts = df["district"].value_counts().to_dict()
    rates = group_rates(counts, rule)
    # THEN the expected sample is within the cap and fills most of it (rates fall by steps of 2^-1/4)
    expected = sum(rates[d] * n for d, n in counts.items())
    assert 0.8 * rule.max_rows <= expected <= rule.max_rows
    # AND every district expects at least min(its rows, floor): the tiny one keeps all its 40 rows
    assert all(rates[d] * n >= min(n, rule.floor) for d, n in counts.items())
    assert rates["75007"] == 1.0
    # AND the large districts share one base rate: proportional there
    assert rates["75001"] == rates["75002"] == rates["75003"] < 1.0
    # AND the rows actually kept follow (binomial noise only)
    kept = sampled(df, rule)
    assert len(kept) <= 1.02 * rule.max_rows
    per = kept["district"].value_counts()
    assert per["75007"] == 40 and per["75006"] == 800
    assert per["75005"] >= 0.9 * rule.floor and per["75004"] >= 0.9 * rule.floor
    assert per["75001"] / per["75002"] == pytest.approx(2.0, rel=0.05)
    facts = describe(counts, rates, len(kept), rule)
    assert facts["rows"] == len(df) and facts["sampled"] == len(kept) and not facts["all_rows"]
    assert facts["base_rate"] == rates["75001"] and facts["groups_at_floor"] >= 2


def test_the_draw_is_cut_to_the_cap_row_for_row_and_stays_stratified() -> None:
    # GIVEN a draw whose expected size is the cap, and its binomial noise above it
    df = lake(SIZES)
    groups = df["district"].to_numpy(dtype=object)
    rates = group_rates(df["district"].value_counts().to_dict(), SampleRule(20_000, floor=1_000))
    u, rate = uniform_of(row_identity(df)), row_rates(groups, rates)
    drawn = u < rate
    cap = int(drawn.sum()) - 300
    # WHEN it is cut to the cap
    keep = trim_mask(u[drawn] / rate[drawn], cap)
    # THEN exactly the cap remains, the rows of largest u / rate went, and each district lost about 1.5 %
    assert keep.sum() == cap
    scaled = u[drawn] / rate[drawn]
    assert scaled[keep].max() < scaled[~keep].min()
    before = pd.Series(groups[drawn]).value_counts()
    after = pd.Series(groups[drawn][keep]).value_counts()
    assert ((before - after) / before).max() < 0.05
    # AND a draw within the cap is kept whole
    assert trim_mask(scaled, len(scaled)).all()


def test_too_many_districts_for_their_floors_still_fit_the_cap() -> None:
    # GIVEN 400 districts of 100 rows and a cap of 10 000 rows: floors of 1 000 would need 40 000
    counts = {f"d{i}": 100 for i in range(400)}
    rates = group_rates(counts, SampleRule(10_000, floor=1_000))
    # THEN the floor is lowered to fit, and the expected sample stays within the cap
    assert sum(r * 100 for r in rates.values()) <= 10_000
    assert len(set(rates.values())) == 1


# ------------------------------------------------------------------------------------ reproducibility
def test_the_same_rows_whatever_the_order_they_are_read_in() -> None:
    # GIVEN the lake, and the same rows shuffled
    df, rule = lake(SIZES), SampleRule(20_000, floor=1_000)
    shuffled = df.sample(frac=1.0, random_state=3)
    # THEN the same rows are kept
    assert set(sampled(df, rule)["row_hash"]) == set(sampled(shuffled, rule)["row_hash"])


def test_the_sample_does_not_lean_on_the_held_out_split() -> None:
    # GIVEN the sample of the lake (its u comes from the same row hash as the held-out split)
    kept = sampled(lake(SIZES), SampleRule(20_000, floor=1_000))
    # THEN about a fifth of it is held out, as of the lake: the two hashes are independent
    assert holdout_mask(kept, 0.2).mean() == pytest.approx(0.2, abs=0.015)


def test_adding_a_batch_keeps_the_rows_sampled_before() -> None:
    # GIVEN a lake of 202 840 rows in ten batches, sampled with a cap it exceeds (its expected sample
    # is 87 % of the cap: the next grid rate up would not fit)
    rule = SampleRule(22_000, floor=1_000)
    batch = {d: max(n // 10, 4) for d, n in SIZES.items()}
    before = pd.concat([lake(batch, seed=s) for s in range(10)], ignore_index=True)
    kept_before = set(sampled(before, rule)["row_hash"])
    # WHEN one more batch of 5 % of the rows arrives
    grown = pd.concat([before, lake({d: n // 2 for d, n in batch.items()}, seed=99)])
    kept_grown = sampled(grown, rule)
    # THEN no rate moves (the expected sample still fits the cap): every row sampled before still is
    rates = [group_rates(df["district"].value_counts().to_dict(), rule) for df in (before, grown)]
    assert rates[0] == rates[1]
    old = kept_grown[kept_grown["row_hash"].isin(before["row_hash"])]
    assert set(old["row_hash"]) == kept_before
    # WHEN the lake doubles, the rates fall: the earlier rows kept are a subset of those kept before
    doubled = pd.concat([before, *(lake(batch, seed=s) for s in range(10, 20))])
    kept_doubled = sampled(doubled, rule)
    old = set(kept_doubled.loc[kept_doubled["row_hash"].isin(before["row_hash"]), "row_hash"])
    assert old and old < kept_before


def test_row_identity_is_the_row_hash_else_a_hash_of_the_values() -> None:
    # GIVEN rows with and without the clean zone's row hash
    df = lake({"75001": 6})
    df.loc[[1, 4], "row_hash"] = None
    df["row_hash"] = df["row_hash"].astype("Int64")
    ident = row_identity(df)
    # THEN the identity is the row hash where there is one, and the values' hash elsewhere
    has = df["row_hash"].notna().to_numpy()
    assert (ident[has] == df.loc[has, "row_hash"].to_numpy(dtype=np.int64).view(np.uint64)).all()
    alone = row_identity(df.iloc[[1]].drop(columns="row_hash"))
    assert ident[1] == alone[0]
    # AND u is in [0, 1) and the same for the same identity
    u = uniform_of(ident)
    assert ((u >= 0) & (u < 1)).all() and (uniform_of(ident) == u).all()


# ------------------------------------------------------------------------------- the history sample
def market(n: int, seed: int, per_m2: float = 30.0, district: str = "75011") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.uniform(15, 120, n)
    return pd.DataFrame(
        {
            "surface_m2": s,
            "rent_eur": s * per_m2 * np.exp(rng.normal(0, 0.2, n)),
            "district": district,
            "row_hash": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        }
    )


def history_of(batches: list[pd.DataFrame], max_rows: int, floor: int = 50) -> HistorySample:
    h = HistorySample(max_rows=max_rows, floor=floor)
    for b in batches:
        h.add(b, uniform_of(row_identity(b)))
    return h


def test_within_its_bound_the_history_sample_is_the_history_and_decides_the_same() -> None:
    # GIVEN three batches of history and a poisoned batch, with a bound above the history's rows
    batches = [market(800, 1), market(800, 2, district="75012"), market(400, 3)]
    poison = market(300, 9, per_m2=150.0)
    h = history_of(batches, max_rows=10_000)
    # THEN the sample holds every row, and the check says exactly what it says on the whole history
    assert not h.sampled and h.to_json()["compared_with"] == h.rows == 2_000
    whole = pd.concat(batches, ignore_index=True)
    for batch in (poison, market(300, 10)):
        assert check_batch(h.frame(), batch).to_json() == check_batch(whole, batch).to_json()


def test_the_history_sample_is_bounded_order_free_and_keeps_small_districts() -> None:
    # GIVEN 40 000 rows of one district and 120 of another, added in two orders, bound 5 000 (floor 50)
    batches = [market(10_000, s) for s in range(4)] + [market(120, 7, district="75020")]
    one, other = history_of(batches, 5_000), history_of(batches[::-1], 5_000)
    # THEN it holds 5 000 rows plus the small district's floor, the same rows whatever the order
    assert one.sampled and one.rows == 40_120
    frame = one.frame()
    assert len(frame) <= 5_000 + 50
    assert (frame["district"] == "75020").sum() >= 50
    key = ["rent_eur", "surface_m2", "district"]
    pd.testing.assert_frame_equal(
        frame.sort_values(key).reset_index(drop=True), other.frame().sort_values(key).reset_index(drop=True)
    )


def test_the_history_sample_holds_a_poisoned_batch_and_admits_the_market() -> None:
    # GIVEN 60 000 rows of history sampled down to 5 000
    h = history_of([market(20_000, s) for s in range(3)], 5_000)
    # THEN a batch at five times the market is held and one of the same market admitted, as on all rows
    assert check_batch(h.frame(), market(500, 50, per_m2=150.0)).held
    assert not check_batch(h.frame(), market(500, 51)).held
