"""Poisoned batches, small samples and the course line, through the functions' handlers on a moto lake:
a batch far from the clean history is held out of training (metric, SNS message), a challenger that would
move the served estimate is refused, a lake of 28 listings gets a first champion marked "small sample"
(GIVEN / WHEN / THEN)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import SAMPLES

COURSE = SAMPLES / "house_intact.csv"


def ingest_and_clean(
    function: Callable[[str], Any], put_landing: Any, ctx: Any, name: str, data: bytes
) -> dict[str, Any]:
    function("ingest").handler(put_landing(name, data), ctx)
    return function("clean").handler({}, ctx)


def train_and_evaluate(function: Callable[[str], Any], ctx: Any, **request: Any) -> tuple[dict, dict]:
    trained = function("train").handler(request, ctx)
    return trained, function("evaluate").handler(trained, ctx)


def served_30m2(lake: Any) -> float:
    """The champion's estimate at 30 m², as the served graph computes it."""
    from rentlake import registry
    from rentlake.model.evaluate import score_onnx

    pointer = registry.read_pointer(lake)
    blob = registry.read_model(lake, pointer.version, pointer.sha256)
    return float(score_onnx(blob, pd.DataFrame({"surface_m2": [30.0]}))["rent_eur"][0])


def commit_clean_batch(lake: Any, df: pd.DataFrame, ingestion_id: str) -> None:
    """Commit ``df`` as the next clean batch, as if it had passed cleaning (Parquet, then the commit)."""
    from rentlake.lake import keys

    seq = len(lake.committed_batches("listings")) + 1
    day = "2031-01-01"
    key = keys.batch_prefix("clean", "listings", day, ingestion_id) + "part-00000.parquet"
    rows = df.assign(row_hash=pd.util.hash_pandas_object(df, index=False).to_numpy().view("int64"))
    buf = io.BytesIO()
    rows.to_parquet(buf, index=False)
    lake.put_bytes(key, buf.getvalue())
    lake.create_json(
        keys.clean_commit("listings", seq),
        {
            "dataset": "listings",
            "ingestion_id": ingestion_id,
            "ingest_date": day,
            "seq": seq,
            "cleaned_at": datetime(2031, 1, 1, tzinfo=UTC).isoformat(),
            "source_key": "landing/poison.csv",
            "rows": {"in": len(df), "clean": len(df), "quarantined": 0},
            "clean_files": [key],
            "quarantine_files": [],
        },
    )


def poison(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    """Listings at 150-195 €/m², five times the course market."""
    rng = np.random.default_rng(seed)
    s = np.round(rng.uniform(15, 90, n))
    return pd.DataFrame({"rent_eur": np.round(s * rng.uniform(150, 195, n)), "surface_m2": s})


@pytest.fixture
def course_champion(
    function: Callable[[str], Any], put_landing: Any, lake: Any, lambda_context: Any
) -> dict[str, Any]:
    """A lake whose champion was trained on the course file."""
    ingest_and_clean(function, put_landing, lambda_context, "house_intact.csv", COURSE.read_bytes())
    trained, evaluated = train_and_evaluate(function, lambda_context)
    assert evaluated["promoted"] is True
    return trained


@pytest.fixture
def topic(aws: None, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """An SNS topic named by RENTLAKE_REVIEW_TOPIC_ARN, read back through an SQS subscription."""
    import boto3

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name="rentlake-review")["TopicArn"]
    url = sqs.create_queue(QueueName="review")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("RENTLAKE_REVIEW_TOPIC_ARN", arn)

    def received() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return received


# ------------------------------------------------------------------------------------------ poisoning
@pytest.mark.slow
def test_a_poisoned_batch_is_held_and_the_served_estimate_does_not_move(
    course_champion: dict[str, Any],
    function: Callable[[str], Any],
    lake: Any,
    lambda_context: Any,
    topic: Callable[[], list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rentlake.model.gate import SHIFT_BOUND

    before = served_30m2(lake)
    capsys.readouterr()
    # GIVEN 3 000 listings at 150-195 €/m² that reached the clean zone
    commit_clean_batch(lake, poison(), "poison00000000000001")
    # WHEN the train and evaluate functions run
    trained, evaluated = train_and_evaluate(function, lambda_context)
    # THEN the batch is held out of training: nothing new to train, the answer says which batch and why
    assert trained["trained"] is False and trained["skipped"] is True
    [held] = trained["newly_held"]
    assert held["ingestion_id"] == "poison00000000000001" and held["rows"] == 3_000
    assert "median" in held["reason"] and "robust SD" in held["reason"]
    assert trained["held"] == trained["newly_held"]
    assert "1 batch(es) held for review" in trained["reason"]
    # AND the metric counts it, and the topic is told how to accept it
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"BatchesHeld"' in line]
    assert [m["BatchesHeld"] for m in emf] == [[1.0]]
    [message] = topic()
    assert message["Subject"] == "rentlake: batch poison00000000000001 held for review"
    assert "rentlake batches accept poison00000000000001" in message["Message"]
    # AND the served estimate has not moved
    assert evaluated["promoted"] is False and served_30m2(lake) == before
    # AND a second run does not hold it again (the review is recorded once) nor notify again
    again, _ = train_and_evaluate(function, lambda_context)
    assert again["newly_held"] == [] and [b["ingestion_id"] for b in again["held"]] == [held["ingestion_id"]]
    assert topic() == []

    # WHEN a person accepts the batch and the model is retrained on it
    from rentlake.stages import review

    review.accept(lake, "listings", held["ingestion_id"], by="test", now=lambda: datetime.now(UTC))
    trained, evaluated = train_and_evaluate(function, lambda_context)
    # THEN the challenger trained on it is refused: worse on the reference holdout of the course rows,
    # and its estimates move far beyond the bound; the served estimate still has not moved
    assert trained["trained"] is True and evaluated["promoted"] is False
    reasons = " | ".join(evaluated["gate"]["reasons"])
    assert "on the reference holdout" in reasons and "refused unless accepted" in reasons
    assert f"rentlake models promote {trained['version']}" in reasons
    ref = evaluated["reference_holdout"]
    assert ref["n"] >= 80 and ref["challenger"]["mae"] > 2 * ref["champion"]["mae"]
    shift30 = next(s for s in evaluated["shifts"] if s["surface_m2"] == 30.0)
    assert shift30["change"] > SHIFT_BOUND
    assert abs(served_30m2(lake) / before - 1) <= SHIFT_BOUND and served_30m2(lake) == before


def test_a_batch_of_the_same_market_trains_and_is_judged_on_the_reference_holdout(
    course_champion: dict[str, Any],
    function: Callable[[str], Any],
    lake: Any,
    lambda_context: Any,
) -> None:
    # GIVEN 500 more listings of the course's market (its rows resampled, with ±5 % noise)
    course = pd.read_csv(COURSE).rename(columns={"loyer": "rent_eur", "surface": "surface_m2"})
    course = course[course["rent_eur"] < 10_000]
    rng = np.random.default_rng(3)
    more = course.sample(500, replace=True, random_state=3).reset_index(drop=True)
    more["rent_eur"] = np.round(more["rent_eur"] * np.exp(rng.normal(0, 0.05, 500)))
    commit_clean_batch(lake, more, "market00000000000001")
    # WHEN trained and evaluated
    trained, evaluated = train_and_evaluate(function, lambda_context)
    # THEN the batch is admitted and trains; the champion's held-out course rows are the reference holdout
    assert trained["trained"] is True and trained["newly_held"] == []
    assert evaluated["reference_holdout"]["n"] == course_champion["sizes"]["test"]
    # AND the estimates at the reference surfaces stay within the bound, so the gate may promote
    assert all(abs(s["change"]) <= 0.15 for s in evaluated["shifts"]), evaluated["shifts"]
    assert evaluated["promoted"] is True, evaluated["gate"]["reasons"]


# ----------------------------------------------------------------------------------------- small data
def test_28_listings_give_a_first_champion_marked_small_sample(
    function: Callable[[str], Any],
    put_landing: Any,
    lake: Any,
    lambda_context: Any,
) -> None:
    from rentlake import registry
    from rentlake.model import MIN_HELDOUT_ROWS

    # GIVEN an empty lake and the first 28 listings of the course file
    head = "\n".join(COURSE.read_text().splitlines()[:29]) + "\n"
    ingest_and_clean(function, put_landing, lambda_context, "first28.csv", head.encode())
    # WHEN trained and evaluated
    trained, evaluated = train_and_evaluate(function, lambda_context)
    # THEN the model is promoted although the gate judged it on a handful of rows, and says so
    small = trained["small_sample"]
    assert small["heldout_rows"] < MIN_HELDOUT_ROWS and small["message"].startswith("small sample")
    assert evaluated["promoted"] is True and evaluated["gate"]["small_sample"] is True
    assert evaluated["small_sample"] == small
    card = registry.read_card(lake, trained["version"])
    assert card.small_sample == small and any(
        x.startswith("small sample") for x in card.documentation["limits"]
    )
    # AND the API's answer carries the card's message
    predict = function("predict")
    from rentlake.runtime.events import http_api_event, response_body

    event = http_api_event(
        "POST", "/estimates", json.dumps({"surface_m2": 30}), headers={"content-type": "application/json"}
    )
    resp = predict.handler(event, lambda_context)
    assert resp["statusCode"] == 200, resp
    assert small["message"] in json.loads(response_body(resp))["warnings"]

    # WHEN 10 more listings arrive: still too few held-out rows to judge a challenger
    more = "\n".join(COURSE.read_text().splitlines()[:1] + COURSE.read_text().splitlines()[100:110]) + "\n"
    ingest_and_clean(function, put_landing, lambda_context, "next10.csv", more.encode())
    trained2, evaluated2 = train_and_evaluate(function, lambda_context)
    # THEN the champion stays and the answer says why, and how to accept the challenger by hand
    assert trained2["trained"] is True and evaluated2["promoted"] is False
    why = next(r for r in evaluated2["gate"]["reasons"] if r.startswith("small sample"))
    assert "champion, which stays" in why and f"rentlake models promote {trained2['version']}" in why
    assert registry.read_pointer(lake).version == trained["version"]
