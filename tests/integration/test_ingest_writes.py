"""The ingest stage's writes of an object of many chunks, on a local-folder lake: order, lineage, and what
a failure halfway leaves (nothing)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest


@pytest.fixture
def lake(tmp_path: Path) -> Any:
    from rentlake.lake import open_lake

    lake = open_lake(tmp_path / "lake")
    lake.ensure_database()
    return lake


def csv_rows(n: int) -> bytes:
    return b"loyer,surface\n" + b"".join(b"%d,%d\n" % (1000 + i, 20 + i % 50) for i in range(n))


def raw_parquet(lake: Any) -> list[str]:
    return [k for k in lake.list_keys("raw/") if k.endswith(".parquet")]


def test_an_object_of_many_chunks_is_written_in_order_with_its_lineage(lake: Any) -> None:
    from rentlake.stages import ingest

    # GIVEN 25 rows landed, read in chunks of 4 rows
    data = csv_rows(25)
    etag = lake.put_bytes("landing/many.csv", data)
    # WHEN ingested
    out = ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    # THEN its 7 chunks are 7 files, in chunk order, and they are the ones the record lists
    assert (out.status, out.rows) == ("ingested", 25)
    record = lake.get_json(f"raw/_ingestions/{out.ingestion_id}.json")
    files = record["raw_files"]
    assert [f.rsplit("/", 1)[1][:10] for f in files] == [f"part-{i:05d}" for i in range(7)]
    assert sorted(files) == raw_parquet(lake)
    # AND every row is there once, in file order, with the line it came from and its source as strings
    raw = pd.concat(lake.iter_keys(files), ignore_index=True)
    assert raw["source_row"].tolist() == list(range(1, 26))
    assert raw["rent_eur"].tolist() == [str(1000 + i) for i in range(25)]
    assert set(raw["source_key"]) == {"landing/many.csv"} and set(raw["source_etag"]) == {etag}
    assert set(raw["source_sha256"]) == {record["source_sha256"]}
    assert str(raw["source_key"].dtype) == str(raw["rent_eur"].dtype)


def test_a_write_failing_halfway_leaves_no_raw_file_and_no_record(
    lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.lake import Lake, LakeError
    from rentlake.stages import ingest

    # GIVEN a lake that fails to write the fourth chunk of an object of seven
    real = Lake.write_batch

    def write_batch(self: Any, df: Any, *args: Any, **kw: Any) -> list[str]:
        if kw["part"] == 3:
            raise LakeError("disk full")
        return real(self, df, *args, **kw)

    monkeypatch.setattr(Lake, "write_batch", write_batch)
    lake.put_bytes("landing/many.csv", csv_rows(25))
    # WHEN ingested THEN the lake's error fails the ingestion
    with pytest.raises(LakeError, match="disk full"):
        ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    # AND the chunks written before it (and the one in flight) are gone, and nothing is recorded
    assert raw_parquet(lake) == [] and lake.list_keys("raw/_ingestions/") == []
    assert lake.list_keys("raw/objects/") == []


def test_a_fault_read_after_chunks_were_written_rejects_the_object_and_leaves_no_raw_file(lake: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rentlake.stages import ingest

    # GIVEN a Parquet file whose row 18 holds bytes that are not UTF-8, read in chunks of 4 rows
    loyer = [b"1000"] * 25
    loyer[18] = b"\xff"
    buf = io.BytesIO()
    table = pa.table({"loyer": pa.array(loyer, pa.binary()), "surface": pa.array(["30"] * 25)})
    pq.write_table(table, buf, row_group_size=4)
    lake.put_bytes("landing/late.parquet", buf.getvalue())
    # WHEN ingested
    out = ingest.ingest_object(lake, "landing/late.parquet", chunk_rows=4, progress=lambda _: None)
    # THEN it is rejected for that, and the chunks written before the fault are gone
    assert (out.status, out.reason) == ("rejected", "not_utf8")
    assert raw_parquet(lake) == [] and lake.list_keys("raw/objects/") == []


@pytest.fixture
def copied_while_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object counts as large: its copy to raw/objects/ runs in a thread from the start of the parse."""
    from rentlake.stages import ingest

    monkeypatch.setattr(ingest, "_APART_BYTES", 0)


def test_a_large_object_is_copied_while_parsed_to_a_folder_of_its_attempt(
    lake: Any, copied_while_parsed: None
) -> None:
    from rentlake.stages import ingest

    # GIVEN 25 rows landed, ingested twice as two attempts would (the ledger entry removed in between)
    data = csv_rows(25)
    lake.put_bytes("landing/many.csv", data)
    first = ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    record = lake.get_json(f"raw/_ingestions/{first.ingestion_id}.json")
    lake.delete_keys([f"raw/_ingestions/{first.ingestion_id}.json"])
    # WHEN ingested again
    second = ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    again = lake.get_json(f"raw/_ingestions/{second.ingestion_id}.json")
    # THEN each attempt's copy holds the object's bytes, under the name it landed with, in its own folder
    copies = [record["raw_object"], again["raw_object"]]
    assert sorted(copies) == lake.list_keys("raw/objects/") and copies[0] != copies[1]
    assert [lake.get_bytes(k) for k in copies] == [data, data]
    assert {k.rsplit("/", 1)[1] for k in copies} == {"many.csv"}
    assert {k.rsplit("/", 2)[0] for k in copies} == {
        f"raw/objects/ingest_date={record['ingest_date']}/ingestion_id={first.ingestion_id}"
    }


def test_a_write_failing_while_the_copy_runs_deletes_the_copy_once_made(
    lake: Any, monkeypatch: pytest.MonkeyPatch, copied_while_parsed: None
) -> None:
    import threading

    from rentlake.lake import Lake, LakeError
    from rentlake.stages import ingest

    # GIVEN a copy that ends only after the fourth chunk's write has failed
    failed = threading.Event()
    real_copy, real_write = Lake.copy, Lake.write_batch

    def copy(self: Any, src: str, dst: str) -> None:
        assert failed.wait(10), "the write never failed"
        real_copy(self, src, dst)

    def write_batch(self: Any, df: Any, *args: Any, **kw: Any) -> list[str]:
        if kw["part"] == 3:
            failed.set()
            raise LakeError("disk full")
        return real_write(self, df, *args, **kw)

    monkeypatch.setattr(Lake, "copy", copy)
    monkeypatch.setattr(Lake, "write_batch", write_batch)
    lake.put_bytes("landing/many.csv", csv_rows(25))
    # WHEN ingested THEN the write's error fails the ingestion
    with pytest.raises(LakeError, match="disk full"):
        ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    # AND the copy, made after the failure, is gone with the chunks, and nothing is recorded
    assert lake.list_keys("raw/objects/") == []
    assert raw_parquet(lake) == [] and lake.list_keys("raw/_ingestions/") == []


@pytest.mark.parametrize("large", [False, True], ids=["copied-after", "copied-while-parsed"])
def test_a_copy_failing_fails_the_ingestion_and_leaves_no_raw_file(
    lake: Any, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    from rentlake.lake import Lake, LakeError
    from rentlake.stages import ingest

    # GIVEN a lake that cannot copy the object to raw/objects/
    def copy(self: Any, src: str, dst: str) -> None:
        raise LakeError("copy refused")

    monkeypatch.setattr(Lake, "copy", copy)
    if large:
        monkeypatch.setattr(ingest, "_APART_BYTES", 0)
    lake.put_bytes("landing/many.csv", csv_rows(25))
    # WHEN ingested THEN the lake's error fails the ingestion
    with pytest.raises(LakeError, match="copy refused"):
        ingest.ingest_object(lake, "landing/many.csv", chunk_rows=4, progress=lambda _: None)
    # AND every chunk written is gone, and nothing is recorded
    assert raw_parquet(lake) == [] and lake.list_keys("raw/_ingestions/") == []
    assert lake.list_keys("raw/objects/") == []


@pytest.mark.parametrize("rows", [3, 500_000])  # under and over the size hashed in a thread of its own
def test_content_already_ingested_is_a_duplicate_however_it_would_be_read_now(lake: Any, rows: int) -> None:
    from rentlake.stages import ingest

    # GIVEN listings ingested, then the same bytes landed again under another name
    data = csv_rows(rows)
    lake.put_bytes("landing/first.csv", data)
    lake.put_bytes("landing/again.csv", data)
    first = ingest.ingest_object(lake, "landing/first.csv", progress=lambda _: None)
    # WHEN the copy is ingested as another dataset, whose header it does not have
    again = ingest.ingest_object(
        lake, "landing/again.csv", dataset="reference_rents", progress=lambda _: None
    )
    # THEN it is a duplicate of the first (nothing added), not a rejection
    assert (first.status, first.rows) == ("ingested", rows)
    assert (again.status, again.ingestion_id, again.rows) == ("duplicate", first.ingestion_id, 0)
    # AND new content that cannot be read that way is rejected for its header, kept with its reason
    lake.put_bytes("landing/new.csv", data + b"1,2\n")
    new = ingest.ingest_object(lake, "landing/new.csv", dataset="reference_rents", progress=lambda _: None)
    assert (new.status, new.reason) == ("rejected", "unrecognised_header")
    assert lake.get_bytes(new.details["kept_at"]) == data + b"1,2\n"
