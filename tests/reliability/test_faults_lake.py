"""S3 and Glue faults during ingest, clean and train (moto in process, errors injected by botocore hooks).

Errors are injected on ``before-send``, which botocore emits for every *attempt* inside its retry loop:
an injected ``503 SlowDown`` or Glue ``ThrottlingException`` is seen by the retry handler exactly as a real
one would be. botocore's backoff sleeps are recorded instead of slept (fixture ``backoff``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from tests.reliability.conftest import FaultInjector, glue_throttle
from tests.support import REGION, SAMPLES

DATASET = "listings"
COURSE = SAMPLES / "house_intact.csv"
FIXED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# awswrangler's S3 writer retries its close() in __del__ after a persistent fault: expected noise here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def make_lake(bucket: str, database: str, *hooks: tuple[str, FaultInjector]) -> Any:
    """A Lake on its own bucket and Glue database, whose boto3 session carries the fault hooks (every client
    made from the session, the lake's and awswrangler's, inherits them)."""
    import boto3
    from rentlake.lake import Lake

    session = boto3.Session(region_name=REGION)
    session.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    for event, hook in hooks:
        session.events.register(event, hook)
    return Lake(bucket, database, boto3_session=session)


def run_stages(lake: Any, *, train: bool = True) -> dict[str, Any]:
    """Land the course file, ingest, clean, (train): what the pipeline's first three stages do."""
    from rentlake.cleaning import CleanParams
    from rentlake.events import TrainRequest
    from rentlake.stages import clean, ingest
    from rentlake.stages import train as train_stage

    lake.ensure_database()
    lake.put_bytes("landing/house_intact.csv", COURSE.read_bytes())
    out: dict[str, Any] = {}
    out["ingest"] = ingest.ingest_object(lake, "landing/house_intact.csv", now=lambda: FIXED).to_dict()
    out["clean"] = [c.to_json() for c in clean.clean_pending(lake, CleanParams()).commits]
    if train:
        out["train"] = train_stage.run(lake, TrainRequest(), now=lambda: FIXED)
    return out


def clean_zone(lake: Any) -> pd.DataFrame:
    df = lake.read_clean(DATASET)
    return df.sort_values("source_row").reset_index(drop=True)


def quality(lake: Any) -> list[tuple[Any, ...]]:
    """Per batch: rows in/clean/quarantined and the reasons (what a re-run must reproduce)."""
    return [
        (c.ingestion_id, (c.rows_in, c.rows_clean, c.rows_quarantined), c.reasons, c.invariant_holds)
        for c in lake.committed_batches(DATASET)
    ]


@pytest.fixture
def baseline(aws: None) -> dict[str, Any]:
    """The same stages on a lake without faults: the reference every faulty run must reproduce."""
    lake = make_lake("rentlake-baseline", "rentlake_baseline")
    result = run_stages(lake)
    return {"lake": lake, "result": result, "clean": clean_zone(lake), "quality": quality(lake)}


# --------------------------------------------------------------------------------------- configuration
def test_lake_s3_client_retries_throttling_ten_times_in_standard_mode(aws: None) -> None:
    # GIVEN the lake's S3 client WHEN its configuration is read
    # THEN throttling is retried: standard mode (which treats SlowDown/Throttling as retryable), 10 attempts
    from rentlake.lake import Lake

    retries = Lake("any-bucket").s3.meta.config.retries or {}
    assert retries.get("mode") == "standard", retries
    assert retries.get("max_attempts") == 10 or retries.get("total_max_attempts") == 11, retries


# --------------------------------------------------------------------------------------- transient faults
def test_transient_throttling_during_ingest_clean_and_train_is_absorbed_by_retries(
    baseline: dict[str, Any], backoff: list[float]
) -> None:
    # GIVEN a lake whose S3 answers the first attempts of each operation with 503 SlowDown, and Glue the
    # first attempts of each call with ThrottlingException
    s3 = FaultInjector(
        {
            "PutObject": 3,
            "GetObject": 3,
            "ListObjectsV2": 2,
            "HeadObject": 2,
            "CopyObject": 1,
            "DeleteObjects": 1,
        }
    )
    glue = FaultInjector({"*": 3}, response=glue_throttle)
    lake = make_lake(
        "rentlake-throttled", "rentlake_throttled", ("before-send.s3", s3), ("before-send.glue", glue)
    )
    # WHEN ingest, clean and train run on it
    result = run_stages(lake)
    # THEN every injected error was retried (one backoff sleep per injected error) ...
    injected = sum(s3.injected.values()) + sum(glue.injected.values())
    assert s3.injected["PutObject"] == 3 and s3.injected["GetObject"] == 3 and glue.injected["*"] == 3
    assert len(backoff) >= injected, (len(backoff), injected)
    # ... and the outcome is the faultless one: same batch, same clean rows, same quarantine, same model
    assert result["ingest"] == baseline["result"]["ingest"]
    assert result["ingest"]["status"] == "ingested" and result["ingest"]["rows"] == 545
    pd.testing.assert_frame_equal(clean_zone(lake), baseline["clean"])
    assert quality(lake) == baseline["quality"]
    assert [r["rows"] for r in result["clean"]] == [{"in": 545, "clean": 481, "quarantined": 64}]
    assert result["train"]["version"] == baseline["result"]["train"]["version"]
    assert result["train"]["metrics"] == baseline["result"]["train"]["metrics"]


# --------------------------------------------------------------------------------------- persistent faults
def test_persistent_s3_failure_fails_the_clean_batch_shows_nothing_partial_and_a_rerun_matches(
    baseline: dict[str, Any], backoff: list[float]
) -> None:
    from rentlake.cleaning import CleanParams
    from rentlake.lake import LakeError, keys
    from rentlake.stages import clean, ingest

    # GIVEN an ingested batch, and an S3 that refuses every write under quarantine/ (503 on every attempt):
    # the clean rows of the batch get written, then its quarantined rows cannot be
    fault = FaultInjector({"PutObject": None}, when=lambda url: "/quarantine/" in url)
    lake = make_lake("rentlake-broken", "rentlake_broken", ("before-send.s3", fault))
    lake.ensure_database()
    lake.put_bytes("landing/house_intact.csv", COURSE.read_bytes())
    ingested = ingest.ingest_object(lake, "landing/house_intact.csv", now=lambda: FIXED)
    assert ingested.status == "ingested"
    # WHEN the batch is cleaned
    with pytest.raises(LakeError) as failure:
        clean.clean_pending(lake, CleanParams())
    # THEN it fails with an error naming the zone, the batch and S3's answer, after the retries
    message = str(failure.value)
    assert f"cannot write quarantine/{DATASET} batch {ingested.ingestion_id}" in message
    assert "SlowDown" in message
    assert fault.injected["PutObject"] >= 2 and len(backoff) >= fault.injected["PutObject"] - 1
    # AND nothing of it shows: the writer deleted the clean files it had written (its own only), there is
    # no commit, readers see no clean row, and the batch is still pending
    day = FIXED.strftime("%Y-%m-%d")
    assert lake.batch_files("clean", DATASET, ingest_date=day, ingestion_id=ingested.ingestion_id) == []
    assert lake.list_keys(keys.clean_batch_records_prefix(DATASET)) == []
    assert lake.read_clean(DATASET).empty
    assert [r.ingestion_id for r in clean.pending_batches(lake)] == [ingested.ingestion_id]

    # WHEN the fault is gone and the batch is cleaned again
    fault.budget["PutObject"] = 0
    reports = clean.clean_pending(lake, CleanParams()).commits
    # THEN the result is the faultless run's: same clean rows, same quarantine counts and reasons
    assert [r.to_json()["rows"] for r in reports] == [{"in": 545, "clean": 481, "quarantined": 64}]
    pd.testing.assert_frame_equal(clean_zone(lake), baseline["clean"])
    assert quality(lake) == baseline["quality"]
    # (read through the commit: awswrangler's writer may still complete the failed upload from __del__ once
    # S3 recovers, leaving an uncommitted file under the batch's prefix that no reader reads)
    (commit,) = lake.committed_batches(DATASET)
    quarantined = pd.concat(lake.iter_keys(lake.committed_files(commit, "quarantine")))
    assert len(quarantined) == 64
    assert clean.pending_batches(lake) == []


def test_persistent_s3_failure_during_ingest_records_nothing_and_a_rerun_matches(
    baseline: dict[str, Any], backoff: list[float]
) -> None:
    from rentlake.cleaning import CleanParams
    from rentlake.lake import LakeError, keys
    from rentlake.stages import clean, ingest

    # GIVEN an S3 that refuses every write of the raw table (503 on every attempt)
    fault = FaultInjector({"PutObject": None}, when=lambda url: f"/raw/{DATASET}/" in url)
    lake = make_lake("rentlake-broken-raw", "rentlake_broken_raw", ("before-send.s3", fault))
    lake.ensure_database()
    lake.put_bytes("landing/house_intact.csv", COURSE.read_bytes())
    # WHEN the landed file is ingested THEN ingestion fails with a clear error
    with pytest.raises(LakeError, match=rf"cannot write raw/{DATASET} batch .*SlowDown"):
        ingest.ingest_object(lake, "landing/house_intact.csv", now=lambda: FIXED)
    # AND nothing is committed: no ledger entry (the re-run is not taken for a duplicate), nothing to clean
    assert lake.list_keys(keys.ingestion_records_prefix()) == []
    assert clean.pending_batches(lake) == []
    # WHEN S3 recovers and the same file is ingested and cleaned again
    fault.budget["PutObject"] = 0
    again = ingest.ingest_object(lake, "landing/house_intact.csv", now=lambda: FIXED)
    clean.clean_pending(lake, CleanParams())
    # THEN it is the faultless run, row for row
    assert again.to_dict() == baseline["result"]["ingest"]
    pd.testing.assert_frame_equal(clean_zone(lake), baseline["clean"])
    assert quality(lake) == baseline["quality"]


def test_a_lake_failure_on_the_second_object_fails_the_invocation_and_its_retry_adds_only_that_one(
    aws: None, backoff: list[float]
) -> None:
    from rentlake.config import load
    from rentlake.events import IngestRequest
    from rentlake.lake import LakeError, keys
    from rentlake.parsing import ingestion_id_of
    from rentlake.records import ingestion_record_from_json
    from rentlake.stages import ingest

    # GIVEN an event naming two objects, and an S3 that refuses every write of the second one's raw rows
    second = b"loyer,surface\n1200,40\n"
    second_id, _ = ingestion_id_of(second)
    fault = FaultInjector(
        {"PutObject": None}, when=lambda url: f"/raw/{DATASET}/" in url and second_id in url
    )
    lake = make_lake("rentlake-second-fails", "rentlake_second_fails", ("before-send.s3", fault))
    lake.ensure_database()
    lake.put_bytes("landing/course.csv", COURSE.read_bytes())
    lake.put_bytes("landing/second.csv", second)
    request = IngestRequest(keys=["landing/course.csv", "landing/second.csv"])
    # WHEN the event is ingested THEN the invocation fails on the lake (Lambda retries the event), with the
    # first object committed and the second not: no record
    with pytest.raises(LakeError, match="SlowDown"):
        ingest.run(lake, request, load({}))
    assert lake.get_json(keys.ingestion_record(ingestion_id_of(COURSE.read_bytes())[0]))["rows"] == 545
    assert not lake.exists(keys.ingestion_record(second_id))
    # WHEN S3 recovers and the event is retried
    fault.budget["PutObject"] = 0
    retried = ingest.run(lake, request, load({}))
    # THEN the first is a duplicate that adds nothing and the second is ingested; its record lists only
    # the files of the retry (a part awswrangler may finish uploading after the failure is never read)
    assert [(o.status, o.rows) for o in retried.outcomes] == [("duplicate", 0), ("ingested", 1)]
    record = ingestion_record_from_json(lake.get_json(keys.ingestion_record(second_id)))
    assert len(pd.concat(lake.iter_keys(lake.committed_files(record, "raw")))) == 1
