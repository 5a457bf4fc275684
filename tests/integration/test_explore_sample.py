"""Exploring a lake bigger than the cap: the explore stage reads a hash sample of the clean rows and of the
duplicates, counts every row exactly, and the summary and the page say how many of how many rows the
statistics are computed on (GIVEN / WHEN / THEN; a moto lake through the functions, and a local lake)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import SAMPLES

#: The course file: 545 rows, 481 clean, 63 quarantined as duplicates, 9 rents of 10 000 € or more.
COURSE_CLEAN, COURSE_DUPLICATES, COURSE_RENTS_OVER_10K = 481, 63, 9


@pytest.fixture
def course_lake(function: Callable[[str], Any], put_landing: Any, lake: Any, lambda_context: Any) -> Any:
    """A lake whose clean zone holds house_intact.csv (481 clean rows, 63 duplicates quarantined)."""
    data = (SAMPLES / "house_intact.csv").read_bytes()
    function("ingest").handler(put_landing("house_intact.csv", data), lambda_context)
    assert function("clean").handler({}, lambda_context)["rows"]["clean"] == COURSE_CLEAN
    return lake


def test_a_capped_exploration_states_its_sample_and_the_lakes_exact_counts(
    course_lake: Any, function: Callable[[str], Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.events import ExploreRequest
    from rentlake.lake import keys
    from rentlake.stages import explore

    lake = course_lake
    # GIVEN a cap of 200 rows, below the lake's 481 clean rows
    monkeypatch.setenv("RENTLAKE_EXPLORE_MAX_ROWS", "200")
    # WHEN the explore function runs
    explored = function("explore").handler({}, lambda_context)
    # THEN it explored a hash sample of at most 200 of the 481 rows, and says so in its answer
    summary = lake.get_json(keys.report_file(explored["run_id"], "summary.json"))
    sampling = summary["sampling"]
    n, m = sampling["clean"]["sampled"], sampling["clean"]["rows"]
    assert m == COURSE_CLEAN and 130 <= n <= 200 and sampling["clean"]["max_rows"] == 200
    assert sampling["all_rows"] is False and summary["rows"] == summary["rows_usable"] == n
    assert explored["rows"] == COURSE_CLEAN and explored["rows_sampled"] == n
    assert sampling["statement"] == f"statistics on a hash sample of {n} of {m} clean rows"
    # AND the duplicates the course line counts were sampled at the same rate, all of them counted
    dup = sampling["duplicates"]
    assert dup["rows"] == COURSE_DUPLICATES and 8 <= dup["sampled"] <= 40
    fitted = summary["ols"]["n"]
    assert n + dup["sampled"] - COURSE_RENTS_OVER_10K <= fitted <= n + dup["sampled"]
    assert summary["ols"]["fitted_on"].startswith("a hash sample of the listings as received")
    # AND the lake's counts are exact: every clean row, usable, missing values, duplicates quarantined
    assert summary["lake"] == {
        "rows": COURSE_CLEAN,
        "rows_usable": COURSE_CLEAN,
        "rows_unusable": 0,
        "missing": {"rent_eur": 0, "surface_m2": 0, "district": COURSE_CLEAN, "listed_at": COURSE_CLEAN},
        "districts": 0,
        "duplicates_quarantined": COURSE_DUPLICATES,
        "listed_at": {"count": 0, "min": None, "max": None},
    }
    # AND the report is complete: every file written, the figures are PNGs, the page states the sample
    files = summary["files"]
    assert {"report.html", "summary.json", "rent_vs_surface.png", "dist_rent_eur.png"} <= set(files)
    assert all(lake.exists(key) for key in files.values())
    assert all(lake.get_bytes(k).startswith(b"\x89PNG") for k in files.values() if k.endswith(".png"))
    page = lake.get_bytes(explored["report_key"]).decode()
    data = re.search(r"<h2>Data</h2>(.*?)<h2>", page, re.S)
    assert data is not None
    text = data.group(1)
    assert f"Statistics on a hash sample of {n} of {m} clean rows" in text
    assert f"{COURSE_CLEAN} clean rows, {COURSE_CLEAN} usable, {COURSE_DUPLICATES} quarantined" in text
    assert {h["id"] for h in summary["hypotheses"]} >= {"linear", "spread_grows", "per_m2_falls"}

    # WHEN the same lake is explored again with the same cap
    again = explore.run(lake, ExploreRequest(run_id="again"), max_rows=200)
    second = lake.get_json(keys.report_file(again["run_id"], "summary.json"))
    # THEN the same rows give the same statistics and the same course line
    assert second["sampling"] == sampling and second["statistics"] == summary["statistics"]
    assert second["ols"] == summary["ols"]


def write_batch(lake: Any, seq: int, clean: pd.DataFrame, duplicates: pd.DataFrame | None = None) -> None:
    """Commit ``clean`` (with ``row_hash``) and, quarantined as duplicates, ``duplicates`` (as received)."""
    from rentlake.lake import keys

    iid, day = f"b{seq}", "2031-01-01"
    clean = clean.assign(row_hash=pd.util.hash_pandas_object(clean, index=False).to_numpy().view("int64"))
    key = keys.batch_prefix("clean", "listings", day, iid) + "part-00000.parquet"
    buf = io.BytesIO()
    clean.to_parquet(buf, index=False)
    lake.put_bytes(key, buf.getvalue())
    quarantined: list[str] = []
    if duplicates is not None:
        qkey = keys.batch_prefix("quarantine", "listings", day, iid) + "part-00000.parquet"
        buf = io.BytesIO()
        duplicates.astype("string").assign(reasons="duplicate").to_parquet(buf, index=False)
        lake.put_bytes(qkey, buf.getvalue())
        quarantined.append(qkey)
    n_dup = 0 if duplicates is None else len(duplicates)
    lake.create_json(
        keys.clean_commit("listings", seq),
        {
            "dataset": "listings",
            "ingestion_id": iid,
            "ingest_date": day,
            "seq": seq,
            "cleaned_at": datetime(2031, 1, 1, tzinfo=UTC).isoformat(),
            "rows": {"in": len(clean) + n_dup, "clean": len(clean), "quarantined": n_dup},
            "clean_files": [key],
            "quarantine_files": quarantined,
        },
    )


def listings(n: int, districts: list[str], rng: np.random.Generator) -> pd.DataFrame:
    surface = np.round(rng.uniform(15, 120, n), 1)
    return pd.DataFrame(
        {
            "rent_eur": np.round(surface * 30 * np.exp(rng.normal(0, 0.2, n))),
            "surface_m2": surface,
            "district": pd.Series(rng.choice(districts, n), dtype="string"),
            "listed_at": pd.Timestamp("2030-06-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        }
    )


def test_the_sample_is_stratified_bounded_and_the_same_whatever_the_order(tmp_path: Any) -> None:
    from rentlake.contracts import get
    from rentlake.lake import open_lake
    from rentlake.model.sample import SampleRule
    from rentlake.stages.explore import explore_sample

    # GIVEN a local lake of two batches: 8 000 rows in two large districts, then 3 000 more and a small
    # district of 150 rows; the second batch's duplicates (1 000, their district as received: "11")
    lake = open_lake(tmp_path / "lake")
    rng = np.random.default_rng(0)
    first = listings(8_000, ["75011", "75020"], rng)
    second = pd.concat([listings(3_000, ["75011", "75020"], rng), listings(150, ["75001"], rng)])
    copies = second[second["district"] == "75011"].head(1_000).assign(district="11")
    write_batch(lake, 1, first)
    write_batch(lake, 2, second.reset_index(drop=True), copies.reset_index(drop=True))
    commits = lake.committed_batches("listings")
    columns = get("listings").column_names
    rule = SampleRule(2_000, floor=300)
    # WHEN the exploration sample is drawn, reading the batches in commit order and in reverse
    sample = explore_sample(lake, commits, columns, rule)
    reverse = explore_sample(lake, commits[::-1], columns, rule)
    # THEN it holds at most 2 000 rows, every one of the small district's, the contract's columns
    clean = sample.clean
    c = sample.sampling["clean"]
    assert c["rows"] == 11_150 and c["sampled"] == len(clean) and 1_600 <= len(clean) <= 2_000
    assert list(clean.columns) == columns and (clean["district"] == "75001").sum() == 150
    # AND the same rows are drawn in either order
    key = ["rent_eur", "surface_m2", "district", "listed_at"]
    pd.testing.assert_frame_equal(
        clean.sort_values(key).reset_index(drop=True), reverse.clean.sort_values(key).reset_index(drop=True)
    )
    # AND the duplicates were counted, all of them, and sampled at their district's rate ("11" is 75011)
    d = sample.sampling["duplicates"]
    in_lake = (first["district"] == "75011").sum() + (second["district"] == "75011").sum()
    rate = (clean["district"] == "75011").sum() / in_lake
    assert d["rows"] == 1_000 and sample.totals.duplicates_quarantined == 1_000
    assert d["sampled"] == pytest.approx(1_000 * rate, abs=60)
    assert len(sample.as_received) == len(clean) + d["sampled"]
    # AND the lake's counts are exact
    totals = sample.totals.to_json()
    assert totals["rows"] == totals["rows_usable"] == 11_150 and totals["districts"] == 3
    assert totals["missing"] == dict.fromkeys(columns, 0)
    assert totals["listed_at"]["count"] == 11_150


def test_below_the_cap_the_sample_is_the_clean_zone_row_for_row(course_lake: Any) -> None:
    from rentlake.contracts import get
    from rentlake.model.sample import SampleRule
    from rentlake.stages.explore import explore_sample

    lake = course_lake
    columns = get("listings").column_names
    # GIVEN the course lake (481 clean rows) and a cap of 481
    # WHEN the exploration sample is drawn
    sample = explore_sample(lake, lake.committed_batches("listings"), columns, SampleRule(COURSE_CLEAN))
    # THEN it is the clean zone as read whole, in the same order, and every duplicate is kept
    pd.testing.assert_frame_equal(sample.clean, lake.read_clean("listings", columns=columns))
    assert sample.sampling["all_rows"] is True
    assert sample.sampling["duplicates"] == {"rows": COURSE_DUPLICATES, "sampled": COURSE_DUPLICATES}
    assert len(sample.as_received) == COURSE_CLEAN + COURSE_DUPLICATES
