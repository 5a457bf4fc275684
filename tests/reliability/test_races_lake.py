"""Two writers of the lake at once (real threads), on moto S3 and on a local folder.

The writers are made to race where it hurts: each thread does all its work, then waits at a barrier
before its first commit, so both commit having seen the same (empty) state. moto checks S3's conditions
(``If-None-Match``, ``If-Match``) and stores the object in two steps; a lock makes that one step, as it is
in S3 (the protocol under test is ours, not moto's atomicity).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.support import SAMPLES

COURSE = (SAMPLES / "house_intact.csv").read_bytes()
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(params=["s3", "local"])
def make_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A factory of handles on one lake (one per thread: a boto3 session is not shared between threads)."""
    from rentlake.lake import Lake, open_lake

    if request.param == "local":
        return lambda: open_lake(tmp_path / "lake")
    bucket = request.getfixturevalue("bucket")
    return lambda: Lake(bucket, "rentlake")


@pytest.fixture
def race_at_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two worker threads wait for each other before their first commit (``Lake.create_json``); the test's
    own thread (setting up, checking) never waits."""
    from rentlake.lake import Lake

    barrier = threading.Barrier(2, timeout=120)
    seen = threading.local()
    real = Lake.create_json

    def create_json(self: Any, key: str, obj: Any) -> str:
        if threading.current_thread() is not threading.main_thread() and not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return real(self, key, obj)

    monkeypatch.setattr(Lake, "create_json", create_json)
    yield
    barrier.abort()  # a thread still waiting (its twin failed early) gets an error, not a hang


def in_two_threads(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result(timeout=600) for f in futures]


def parquet_under(lake: Any, prefix: str) -> list[str]:
    return sorted(k for k in lake.list_keys(prefix) if k.endswith(".parquet"))


def listing_rows(start: int, stop: int) -> bytes:
    lines = COURSE.decode().splitlines()
    return ("\n".join([lines[0], *lines[1 + start : 1 + stop]]) + "\n").encode()


# ------------------------------------------------------------------------------------------- ingest
def test_same_content_under_two_keys_is_ingested_once(make_lake: Any, race_at_commit: None) -> None:
    from rentlake.cleaning import CleanParams
    from rentlake.lake import keys
    from rentlake.records import IngestedBatch
    from rentlake.stages import clean, ingest

    # GIVEN the course file uploaded twice at once, under two names
    lake = make_lake()
    lake.ensure_database()
    for name in ("a.csv", "b.csv"):
        lake.put_bytes(keys.landing(name), COURSE)
    # WHEN two ingest functions run on them at the same time
    outcomes = in_two_threads(
        lambda: ingest.ingest_object(make_lake(), "landing/a.csv"),
        lambda: ingest.ingest_object(make_lake(), "landing/b.csv"),
    )
    # THEN one ingests it and the other reports the winner's commit, adding nothing
    statuses = sorted((o.status, o.reason) for o in outcomes)
    assert statuses == [("duplicate", "committed_by_another_writer"), ("ingested", None)]
    assert [o.rows for o in outcomes if o.status == "ingested"] == [545]
    # AND there is exactly one ingestion record, whose files all exist and are the only raw files left
    (record_key,) = lake.list_keys(keys.ingestion_records_prefix())
    record = IngestedBatch.from_json(lake.get_json(record_key))
    assert all(lake.exists(k) for k in record.raw_files or ())
    assert parquet_under(lake, "raw/listings/") == sorted(record.raw_files or ())
    assert lake.list_keys("raw/objects/") == [record.raw_object]
    # AND the batch cleans as a single ingestion would
    result = clean.clean_pending(lake, CleanParams())
    assert [c.to_json()["rows"] for c in result.commits] == [{"in": 545, "clean": 481, "quarantined": 64}]


# ------------------------------------------------------------------------------------------- clean
def test_two_cleaners_of_one_batch_commit_once(make_lake: Any, race_at_commit: None) -> None:
    from rentlake.cleaning import CleanParams
    from rentlake.stages import clean, ingest

    # GIVEN the course file ingested
    lake = make_lake()
    lake.ensure_database()
    lake.put_bytes("landing/house_intact.csv", COURSE)
    assert ingest.ingest_object(lake, "landing/house_intact.csv").status == "ingested"
    (record,) = clean.pending_batches(lake)
    # WHEN two clean functions clean it at the same time
    commits = in_two_threads(
        lambda: clean.clean_batch(make_lake(), record, CleanParams()),
        lambda: clean.clean_batch(make_lake(), record, CleanParams()),
    )
    # THEN one commits; the other says another writer committed it (None) and leaves none of its files
    (commit,) = [c for c in commits if c is not None]
    assert commits.count(None) == 1
    assert (commit.rows_in, commit.rows_clean, commit.rows_quarantined) == (545, 481, 64)
    assert [c.ingestion_id for c in lake.committed_batches("listings")] == [record.ingestion_id]
    assert parquet_under(lake, "clean/listings/") == sorted(commit.clean_files or ())
    assert parquet_under(lake, "quarantine/listings/") == sorted(commit.quarantine_files or ())
    # AND the rows add up: every row in is clean or quarantined, once
    assert len(lake.read_clean("listings")) == 481
    quarantined = pd.concat(lake.iter_keys(lake.committed_files(commit, "quarantine")))
    assert len(quarantined) == 64
    assert clean.pending_batches(lake) == []


def test_overlapping_batches_cleaned_at_once_give_the_rows_of_one_after_the_other(
    make_lake: Any, race_at_commit: None, tmp_path: Path
) -> None:
    from rentlake.cleaning import CleanParams
    from rentlake.contracts import get
    from rentlake.lake import open_lake
    from rentlake.stages import clean, ingest

    # GIVEN two files of listings sharing 100 rows (rows 200 to 299 of the course file), both ingested
    files = {"first.csv": listing_rows(0, 300), "second.csv": listing_rows(200, 545)}
    lake = make_lake()
    lake.ensure_database()
    for name, data in files.items():
        lake.put_bytes(f"landing/{name}", data)
        assert ingest.ingest_object(lake, f"landing/{name}").status == "ingested"
    records = clean.pending_batches(lake)
    # WHEN both batches are cleaned at the same time, each having read an empty clean zone
    commits = in_two_threads(
        *[lambda r=r: clean.clean_batch(make_lake(), r, CleanParams()) for r in records]  # type: ignore[misc]
    )
    # THEN both commit, one after the other: the second took its decisions again against the first
    first, second = sorted(commits, key=lambda c: c.seq)
    assert (first.seq, second.seq) == (1, 2)
    assert first.history_rows == 0 and second.history_rows == first.rows_clean
    for c in (first, second):
        assert c.rows_in == c.rows_clean + c.rows_quarantined
    # AND the clean zone has no row twice
    columns = get("listings").column_names
    together = lake.read_clean("listings")
    assert len(together) == first.rows_clean + second.rows_clean
    assert not together.duplicated(columns).any()
    # AND it holds the very rows of the same two batches cleaned one after the other, in that order
    alone = open_lake(tmp_path / "sequential")
    alone.ensure_database()
    for c in (first, second):
        alone.put_bytes(c.source_key, files[c.source_key.rsplit("/", 1)[-1]])
        ingest.ingest_object(alone, c.source_key)
        (pending,) = [r for r in clean.pending_batches(alone) if r.ingestion_id == c.ingestion_id]
        again = clean.clean_batch(alone, pending, CleanParams())
        assert again is not None and again.reasons == c.reasons
    order = ["source_key", "source_row"]
    expected = alone.read_clean("listings").sort_values(order).reset_index(drop=True)
    got = together.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
