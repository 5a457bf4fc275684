"""The clean stage's history in the lake (seen index + summaries), on moto S3 and on a local folder.

What a batch is checked against comes from per-commit index parts and cumulative summaries: written at
each commit, built lazily for commits that have none, read back by a writer that lost its slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import SAMPLES

COURSE = (SAMPLES / "house_intact.csv").read_bytes()
DAY0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["s3", "local"])
def new_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Any]:
    """A factory of empty lakes, by name (one bucket, or one folder, each)."""
    from rentlake.lake import Lake, open_lake

    def make(name: str) -> Any:
        if request.param == "local":
            lake = open_lake(tmp_path / name)
        else:
            import boto3

            request.getfixturevalue("bucket")
            boto3.client("s3").create_bucket(
                Bucket=f"hist-{name}", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
            )
            lake = Lake(f"hist-{name}", f"hist_{name}")
        lake.ensure_database()
        return lake

    return make


def ingest(lake: Any, name: str, data: bytes, day: datetime = DAY0) -> Any:
    """Land ``data`` and ingest it as of ``day``; returns its ingestion record."""
    from rentlake.lake import keys
    from rentlake.records import ingestion_record_from_json
    from rentlake.stages.ingest import ingest_object

    lake.put_bytes(keys.landing(name), data)
    outcome = ingest_object(lake, keys.landing(name), now=lambda: day, progress=lambda _: None)
    assert outcome.status == "ingested", outcome
    return ingestion_record_from_json(lake.get_json(keys.ingestion_record(outcome.ingestion_id)))


def clean(lake: Any, record: Any, **params: Any) -> Any:
    from rentlake.cleaning import CleanParams
    from rentlake.stages.clean import clean_batch

    return clean_batch(lake, record, CleanParams(**params), progress=lambda _: None)


def course_rows(start: int, stop: int) -> bytes:
    lines = COURSE.decode().splitlines()
    return ("\n".join([lines[0], *lines[1 + start : 1 + stop]]) + "\n").encode()


def history_objects(lake: Any, dataset: str = "listings") -> dict[str, bytes]:
    """Every index part and summary of a dataset, by key."""
    found = lake.list_keys(f"clean/_index/{dataset}/") + lake.list_keys(f"clean/_summaries/{dataset}/")
    return {k: lake.get_bytes(k) for k in found}


# ------------------------------------------------------------------------------------ written at commit
def test_each_commit_writes_its_index_and_a_cumulative_summary(new_lake: Callable[[str], Any]) -> None:
    from rentlake.lake import keys

    lake = new_lake("a")
    # GIVEN the course file, then a later file with one listing already clean and one new
    first = clean(lake, ingest(lake, "house.csv", COURSE))
    second = clean(lake, ingest(lake, "later.csv", b"loyer,surface\n1330,37\n1250,33\n", DAY0 + timedelta(1)))
    # THEN each commit has a summary, cumulative: clean rows, ingestion ids, sketch counts
    summaries = [lake.get_json(keys.clean_summary("listings", f"{n:010d}")) for n in (1, 2)]
    assert [s["rows"] for s in summaries] == [481, 482] == [first.rows_clean, 482]
    assert summaries[1]["committed"] == [first.ingestion_id, second.ingestion_id]
    assert summaries[1]["groups"]["(none)"]["n"] == 482
    # AND its own index parts: the rows of an undated file are seen on their ingestion day
    (part,) = summaries[0]["index_parts"]
    assert part == "clean/_index/listings/seen_on=ingest_date/month=2025-03/0000000001.arrow"
    assert second.history_rows == 481 and second.reasons == {"duplicate": 1}


def test_a_batch_reads_only_the_index_months_its_rows_can_match_in(
    new_lake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.stages import clean_history

    lake = new_lake("b")
    # GIVEN listings dated in January, then in June, each cleaned
    clean(lake, ingest(lake, "jan.csv", b"loyer,surface,date\n1000,30,2025-01-10\n1100,35,2025-01-12\n"))
    clean(lake, ingest(lake, "jun.csv", b"loyer,surface,date\n1200,40,2025-06-02\n1300,45,2025-06-03\n"))
    read: list[str] = []
    real = clean_history._read_part_table
    monkeypatch.setattr(
        clean_history, "_read_part_table", lambda lk, key, cols: read.append(key) or real(lk, key, cols)
    )
    # WHEN a June batch is cleaned, one of its listings seen before
    later = clean(
        lake, ingest(lake, "jun2.csv", b"loyer,surface,date\n1200,40,2025-06-02\n900,30,2025-06-20\n")
    )
    # THEN only the June part was read, and the copy was found in it
    assert read == ["clean/_index/listings/seen_on=row_date/month=2025-06/0000000002.arrow"]
    assert later.reasons == {"duplicate": 1}


def test_a_month_read_in_many_parts_is_compacted_into_one(
    new_lake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.lake import keys
    from rentlake.stages import clean_history

    lake = new_lake("k")
    # GIVEN four batches of listings dated in June, each cleaned: four index parts in that month
    for n in range(4):
        rows = f"loyer,surface,date\n{1000 + n},30,2025-06-0{n + 1}\n{1500 + n},40,2025-06-1{n}\n"
        clean(lake, ingest(lake, f"jun{n}.csv", rows.encode()))
    fourth = lake.get_json(keys.clean_summary("listings", "0000000004"))
    assert len(fourth["partitions"]["row_date/2025-06"]) == 4
    # WHEN a fifth June batch is cleaned
    clean(lake, ingest(lake, "jun4.csv", b"loyer,surface,date\n900,25,2025-06-20\n"))
    # THEN its summary names one part holding the four, then its own
    fifth = lake.get_json(keys.clean_summary("listings", "0000000005"))
    assert fifth["partitions"]["row_date/2025-06"] == ["upto-0000000004.arrow", "0000000005.arrow"]
    key = keys.clean_index_part("listings", "row_date", "2025-06", "upto-0000000004.arrow")
    assert len(clean_history._read_part(lake, key, ["row_hash"])["row_hash"]) == 8
    # AND a later batch reads those two parts, and finds in them a copy of the first batch's listing
    read: list[str] = []
    real = clean_history._read_part_table

    def reading(lk: Any, key: str, cols: Any) -> Any:
        read.append(key.rsplit("/", 1)[-1])
        return real(lk, key, cols)

    monkeypatch.setattr(clean_history, "_read_part_table", reading)
    later = clean(lake, ingest(lake, "jun5.csv", b"loyer,surface,date\n1000,30,2025-06-01\n"))
    assert sorted(read) == ["0000000005.arrow", "upto-0000000004.arrow"]
    assert later.reasons == {"duplicate": 1}


# ------------------------------------------------------------------------------------ the window
def test_an_undated_listing_is_new_again_after_the_window(new_lake: Callable[[str], Any]) -> None:
    lake = new_lake("c")
    a, b, c = b"1000,30\n", b"1200,40\n", b"900,31\n"
    # GIVEN listings a and b seen on day 0, then a and c on day 100
    clean(lake, ingest(lake, "d0.csv", b"loyer,surface\n" + a + b))
    day100 = clean(lake, ingest(lake, "d100.csv", b"loyer,surface\n" + a + c, DAY0 + timedelta(100)))
    # WHEN b and c come again on day 250
    day250 = clean(lake, ingest(lake, "d250.csv", b"loyer,surface\n" + b + c, DAY0 + timedelta(250)))
    # THEN a was a duplicate on day 100; on day 250 c (seen 150 days before) is one, b (250 days) is new
    assert day100.reasons == {"duplicate": 1}
    assert day250.reasons == {"duplicate": 1} and day250.rows_clean == 1


def test_the_window_is_a_parameter(new_lake: Callable[[str], Any]) -> None:
    lake = new_lake("d")
    clean(lake, ingest(lake, "d0.csv", b"loyer,surface\n1000,30\n"))
    again = ingest(lake, "d40.csv", b"loyer,surface\n1000,30\n1100,31\n", DAY0 + timedelta(40))
    assert clean(lake, again, duplicate_window_days=30).reasons == {}


def test_a_dated_listing_is_a_duplicate_however_late_it_comes_back(new_lake: Callable[[str], Any]) -> None:
    lake = new_lake("e")
    clean(lake, ingest(lake, "d0.csv", b"loyer,surface,date\n1000,30,2025-02-20\n"))
    late = ingest(
        lake,
        "d400.csv",
        b"loyer,surface,date\n1000,30,2025-02-20\n1100,31,2026-04-01\n",
        DAY0 + timedelta(400),
    )
    assert clean(lake, late).reasons == {"duplicate": 1}


def test_keys_are_compared_with_the_whole_history(new_lake: Callable[[str], Any]) -> None:
    lake = new_lake("f")
    lines = (SAMPLES / "encadrement_loyers_paris_2025.csv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:41]
    # GIVEN 40 reference rows cleaned on day 0
    clean(lake, ingest(lake, "ref.csv", "\n".join([header, *rows]).encode()))
    # WHEN 400 days later one comes again as it was, and one with another reference rent
    changed = rows[1].replace(";33.9;", ";34.0;")
    assert changed != rows[1]
    late = ingest(lake, "ref2.csv", "\n".join([header, rows[0], changed]).encode(), DAY0 + timedelta(400))
    # THEN the first is a duplicate and the second a conflicting key, whatever the window
    assert clean(lake, late).reasons == {"duplicate": 1, "conflicting_key": 1}


# ------------------------------------------------------------------------------------ built lazily
def test_a_lake_cleaned_before_the_index_existed_is_indexed_once(
    new_lake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.stages import clean_history

    lake = new_lake("g")
    clean(lake, ingest(lake, "a.csv", course_rows(0, 300)))
    clean(lake, ingest(lake, "b.csv", course_rows(300, 545)))
    written = history_objects(lake)
    # GIVEN a lake whose commits have no index nor summary (as cleaned before they existed)
    lake.delete_keys(list(written))
    builds: list[str] = []
    real = clean_history.CleanHistory._build
    monkeypatch.setattr(
        clean_history.CleanHistory,
        "_build",
        lambda self, commit, previous: builds.append(commit.ingestion_id) or real(self, commit, previous),
    )
    # WHEN a batch with a copy of a clean listing is cleaned
    third = clean(lake, ingest(lake, "c.csv", b"loyer,surface\n1330,37\n1250,33\n"))
    # THEN both commits were indexed, exactly as their writers had, and the copy found
    assert len(builds) == 2 and third.reasons == {"duplicate": 1} and third.history_rows == 481
    rebuilt = history_objects(lake)
    assert {k: rebuilt[k] for k in written} == written
    # AND the next clean builds nothing
    clean(lake, ingest(lake, "d.csv", b"loyer,surface\n1111,33\n"))
    assert len(builds) == 2


def test_an_index_written_in_parquet_before_is_still_read(new_lake: Callable[[str], Any]) -> None:
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from rentlake.lake import keys

    lake = new_lake("p")
    clean(lake, ingest(lake, "jan.csv", b"loyer,surface,date\n1000,30,2025-01-10\n1100,35,2025-01-12\n"))
    # GIVEN the commit's index part rewritten as parts were written before Arrow files: Parquet, and
    # named in the summary by the commit alone
    summary_key = keys.clean_summary("listings", "0000000001")
    summary = lake.get_json(summary_key)
    (arrow_key,) = summary["index_parts"]
    table = pa.ipc.open_file(pa.py_buffer(lake.get_bytes(arrow_key))).read_all()
    buf = io.BytesIO()
    pq.write_table(table, buf)
    parquet_key = arrow_key.removesuffix(".arrow") + ".parquet"
    lake.put_bytes(parquet_key, buf.getvalue())
    lake.delete_keys([arrow_key])
    summary["index_parts"] = [parquet_key]
    summary["partitions"] = {"row_date/2025-01": ["0000000001"]}
    lake.put_bytes(summary_key, json.dumps(summary).encode())
    # WHEN a batch with a copy of one of its listings is cleaned
    later = clean(
        lake, ingest(lake, "jan2.csv", b"loyer,surface,date\n1100,35,2025-01-12\n900,30,2025-01-20\n")
    )
    # THEN the copy is found in the Parquet part, and the new commit's part is an Arrow file
    assert later.reasons == {"duplicate": 1} and later.rows_clean == 1
    newer = lake.get_json(keys.clean_summary("listings", "0000000002"))
    assert newer["partitions"]["row_date/2025-01"] == ["0000000001", "0000000002.arrow"]


def test_commits_named_by_their_batch_are_indexed_too(new_lake: Callable[[str], Any]) -> None:
    from rentlake.lake import keys

    lake = new_lake("h")
    first = clean(lake, ingest(lake, "a.csv", COURSE))
    # GIVEN the commit rewritten as commits were before the numbering (named by batch, no number)
    doc = {**first.to_json(), "seq": None}
    lake.put_json(keys.clean_batch_record("listings", first.ingestion_id), doc)
    lake.delete_keys([keys.clean_commit("listings", 1), *history_objects(lake)])
    # WHEN a later batch is cleaned
    later = clean(lake, ingest(lake, "b.csv", b"loyer,surface\n1330,37\n1250,33\n"))
    # THEN it is checked against that commit, indexed under its batch's name, and takes number 1
    assert later.reasons == {"duplicate": 1} and later.history_rows == 481 and later.seq == 1
    assert lake.exists(keys.clean_summary("listings", f"batch-{first.ingestion_id}"))


def test_an_index_that_could_not_be_written_is_written_by_the_next_clean(
    new_lake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.lake import LakeError, keys
    from rentlake.stages import clean_history

    lake = new_lake("i")
    real = clean_history.CleanHistory._put_summary

    def failing(self: Any, commit: Any, summary: Any) -> None:
        raise LakeError("injected: SlowDown")

    # GIVEN a commit whose summary could not be written (the commit stands)
    monkeypatch.setattr(clean_history.CleanHistory, "_put_summary", failing)
    first = clean(lake, ingest(lake, "a.csv", COURSE))
    assert first.seq == 1 and not lake.exists(keys.clean_summary("listings", "0000000001"))
    # WHEN the next batch is cleaned
    monkeypatch.setattr(clean_history.CleanHistory, "_put_summary", real)
    later = clean(lake, ingest(lake, "b.csv", b"loyer,surface\n1330,37\n1250,33\n"))
    # THEN it wrote the missing summary first, and its decisions are those of a sequential run
    assert lake.exists(keys.clean_summary("listings", "0000000001"))
    assert later.reasons == {"duplicate": 1} and later.history_rows == 481


# ------------------------------------------------------------------------------------ lost slot
@pytest.mark.parametrize("winner_indexed", [True, False])
def test_a_writer_that_loses_its_slot_rereads_the_winner_from_its_index(
    new_lake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, winner_indexed: bool
) -> None:
    from rentlake.stages import clean as clean_stage
    from rentlake.stages.clean_history import CommitLog
    from rentlake.summaries import Summary

    a, b = course_rows(0, 300), course_rows(200, 545)  # rows 200-300 in both
    # GIVEN the expected result: A then B, one after the other
    alone = new_lake("seq")
    clean(alone, ingest(alone, "a.csv", a))
    expected = clean(alone, ingest(alone, "b.csv", b))
    # AND, in another lake, B decided as if the lake were empty while A committed meanwhile
    lake = new_lake("race")
    clean(lake, ingest(lake, "a.csv", a))
    if not winner_indexed:  # A's writer died before writing its index and summary
        lake.delete_keys(list(history_objects(lake)))
    record_b = ingest(lake, "b.csv", b)
    stale = iter([CommitLog(Summary(), (), 1)])
    real = clean_stage.read_commit_log
    monkeypatch.setattr(clean_stage, "read_commit_log", lambda lk, c: next(stale, None) or real(lk, c))
    # WHEN B commits: it loses slot 1 to A, reads A's index and summary, decides again, takes slot 2
    got = clean(lake, record_b)
    # THEN its decisions are those of the sequential run
    assert got.seq == 2 and expected.seq == 2
    assert (got.reasons, got.rows_clean, got.history_rows) == (
        expected.reasons,
        expected.rows_clean,
        expected.history_rows,
    )
    assert got.robust_bounds == expected.robust_bounds
    assert history_objects(lake) == history_objects(alone)


def test_a_batch_ingested_twice_is_cleaned_once(new_lake: Callable[[str], Any]) -> None:
    lake = new_lake("j")
    record = ingest(lake, "a.csv", COURSE)
    assert clean(lake, record) is not None
    assert clean(lake, replace(record)) is None
