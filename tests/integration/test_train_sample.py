"""Training on a hash sample of the lake, through the train and evaluate functions on a moto lake: a cap
below the lake's rows samples both the training and the held-out rows, and the card says how many
(GIVEN / WHEN / THEN)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import SAMPLES


@pytest.fixture
def course_lake(function: Callable[[str], Any], put_landing: Any, lake: Any, lambda_context: Any) -> Any:
    """A lake whose clean zone holds house_intact.csv (481 clean rows)."""
    data = (SAMPLES / "house_intact.csv").read_bytes()
    function("ingest").handler(put_landing("house_intact.csv", data), lambda_context)
    assert function("clean").handler({}, lambda_context)["rows"]["clean"] == 481
    return lake


def test_a_capped_training_samples_the_lake_and_the_card_says_so(
    course_lake: Any, function: Callable[[str], Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry
    from rentlake.events import TrainRequest
    from rentlake.model.train import holdout_mask
    from rentlake.stages import train as train_stage

    lake = course_lake
    # GIVEN caps of 200 training rows and 60 held-out rows, below the lake's 481 rows
    monkeypatch.setenv("RENTLAKE_TRAIN_MAX_ROWS", "200")
    monkeypatch.setenv("RENTLAKE_HELDOUT_MAX_ROWS", "60")
    # WHEN the train and evaluate functions run
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN the model was trained on a sample of the training rows and judged on a sample of the held-out
    sampling, sizes = trained["sampling"], trained["sizes"]
    t, h = sampling["train"], sampling["heldout"]
    assert t["rows"] + h["rows"] == 481 and not sampling["all_rows"]
    assert (t["max_rows"], h["max_rows"]) == (200, 60)
    assert t["sampled"] == sizes["train"] and 150 <= sizes["train"] <= 200 < t["rows"]
    assert h["sampled"] == sizes["test"] and 40 <= sizes["test"] <= 60 < h["rows"]
    # AND the card records it, in figures and in its limits
    card = registry.read_card(lake, trained["version"])
    assert card.data["sampling"] == sampling and card.data["train"] == sizes["train"]
    sentence = f"trained on a hash sample of {t['sampled']:,} of the lake's {t['rows']:,} training rows"
    assert any(limit.startswith(sentence) for limit in card.documentation["limits"])
    # AND the held-out set stored with the version, that evaluate scores, is that bounded sample
    test_set = registry.read_test_set(lake, trained["version"])
    assert len(test_set) == sizes["test"] == evaluated["metrics"]["n"]
    assert holdout_mask(test_set, 0.2).all()

    # WHEN the same lake is trained again with the same caps
    again = train_stage.run(
        lake,
        TrainRequest(force=True),
        now=lambda: datetime(2031, 1, 1, tzinfo=UTC),
        max_rows=200,
        max_heldout_rows=60,
    )
    # THEN it samples the same rows
    assert again["sampling"] == sampling
    rows = registry.read_test_set(lake, again["version"])["row_hash"]
    assert sorted(rows) == sorted(test_set["row_hash"])


def test_below_the_caps_every_row_trains(
    course_lake: Any, function: Callable[[str], Any], lambda_context: Any
) -> None:
    # GIVEN the default caps (millions of rows) and 481 clean rows
    # WHEN the train function runs
    trained = function("train").handler({}, lambda_context)
    # THEN every row is used, and the card says so
    sampling = trained["sampling"]
    assert sampling["all_rows"] is True
    assert sampling["train"]["sampled"] + sampling["heldout"]["sampled"] == 481
    assert trained["sizes"]["train"] + trained["sizes"]["test"] == 481


def test_the_sample_reads_older_files_without_row_hash_or_district_the_same_whatever_the_order(
    tmp_path: Any,
) -> None:
    import io

    import numpy as np
    import pandas as pd
    from rentlake.lake import keys, open_lake
    from rentlake.model.sample import SampleRule
    from rentlake.model.train import holdout_mask
    from rentlake.stages.train import training_sample

    # GIVEN a local lake of two committed batches: one as the clean stage writes it (row_hash, district),
    # one from before (no row_hash, no district)
    lake = open_lake(tmp_path / "lake")
    rng = np.random.default_rng(0)
    for seq, with_hash in ((1, True), (2, False)):
        s = rng.uniform(15, 120, 3_000)
        df = pd.DataFrame({"rent_eur": np.round(s * 30 * np.exp(rng.normal(0, 0.2, 3_000))), "surface_m2": s})
        if with_hash:
            df["district"] = rng.choice(["75011", "75020"], 3_000)
            df["row_hash"] = pd.util.hash_pandas_object(df, index=False).to_numpy().view("int64")
        key = keys.batch_prefix("clean", "listings", "2031-01-01", f"b{seq}") + "part-00000.parquet"
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        lake.put_bytes(key, buf.getvalue())
        lake.create_json(
            keys.clean_commit("listings", seq),
            {
                "dataset": "listings",
                "ingestion_id": f"b{seq}",
                "ingest_date": "2031-01-01",
                "seq": seq,
                "cleaned_at": datetime(2031, 1, 1, tzinfo=UTC).isoformat(),
                "rows": {"in": 3_000, "clean": 3_000, "quarantined": 0},
                "clean_files": [key],
                "quarantine_files": [],
            },
        )
    commits = lake.committed_batches("listings")
    rules = (SampleRule(2_000, floor=300), SampleRule(600, floor=100))
    # WHEN the training sample is drawn, reading the batches in commit order and in reverse
    df, sampling = training_sample(lake, commits, rules, 0.2)
    again, _ = training_sample(lake, commits[::-1], rules, 0.2)
    # THEN both batches contribute, within the caps, and the same rows are drawn either way
    assert set(df["ingestion_id"]) == {"b1", "b2"}
    held = holdout_mask(df, 0.2)
    assert (~held).sum() == sampling["train"]["sampled"] <= 2_000
    assert held.sum() == sampling["heldout"]["sampled"] <= 600
    assert sampling["train"]["rows"] + sampling["heldout"]["rows"] == 6_000
    assert sorted(df["row_hash"]) == sorted(again["row_hash"])
    # AND the rows without a district form their own group, kept at least at its floor
    assert df["district"].isna().sum() >= 300
