"""What only the local backend has to prove: atomic files, temp names, the sweep, its catalog and that
its Parquet files are the ones awswrangler writes to S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lake.test_lake_backends import LISTINGS_DTYPE, listings_frame
from tests.support import ROOT


def test_open_lake_reads_both_kinds_of_address(tmp_path: Path, aws_credentials: None) -> None:
    from rentlake.lake import Lake, LakeError, open_lake
    from rentlake.lake.local import LocalLake
    from rentlake.lake.s3 import S3Lake

    s3 = open_lake("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Lake) and s3.bucket == "bucket" and s3.uri("a/b") == "s3://bucket/some/prefix/a/b"
    assert s3.address == "s3://bucket/some/prefix" and open_lake("s3://bucket").address == "s3://bucket"
    local = open_lake(tmp_path / "lake")
    assert isinstance(local, LocalLake) and local.uri("a/b") == str(tmp_path / "lake" / "a" / "b")
    assert isinstance(Lake("bucket"), S3Lake)  # the constructor callers had before there were two
    assert not (tmp_path / "lake").exists()  # opening reads and creates nothing
    with pytest.raises(LakeError):
        open_lake("")


def test_keys_are_plain_files_and_hidden_names_are_never_keys(local_lake: Any) -> None:
    from rentlake.lake import LakeError, ObjectNotFound

    lake = local_lake
    lake.put_bytes("landing/a.csv", b"abc")
    assert (lake.root / "landing" / "a.csv").read_bytes() == b"abc"
    # GIVEN a temp file a killed writer left, and a hidden file
    (lake.root / "landing" / ".tmp-123-abc-a.csv").write_bytes(b"ab")
    (lake.root / "landing" / ".DS_Store").write_bytes(b"")
    # THEN neither is listed nor readable
    assert lake.list_keys("landing/") == ["landing/a.csv"]
    with pytest.raises(ObjectNotFound):
        lake.get_bytes("landing/.tmp-123-abc-a.csv")
    # AND a key cannot leave the folder
    for bad in ("../outside", "a//b", "/etc/passwd", ""):
        with pytest.raises(LakeError):
            lake.put_bytes(bad, b"x")


def test_the_etag_kept_with_a_file_is_used_only_while_the_file_is_unchanged(local_lake: Any) -> None:
    import hashlib

    lake = local_lake
    # GIVEN an object the lake wrote (its MD5 kept on the file), and one put in the folder by hand
    etag = lake.put_bytes("landing/a.csv", b"rent,surface\n1000,30\n")
    (lake.root / "landing" / "b.csv").write_bytes(b"by hand")
    # THEN both HEADs give the MD5 of the content
    assert lake.head("landing/a.csv")["etag"] == etag == hashlib.md5(b"rent,surface\n1000,30\n").hexdigest()
    assert lake.head("landing/b.csv")["etag"] == hashlib.md5(b"by hand").hexdigest()
    # WHEN the lake's file is changed in place, keeping its size
    path = lake.root / "landing" / "a.csv"
    with path.open("r+b") as fh:
        fh.write(b"loyer")
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before + 1_000, before + 1_000))  # as a later write does, whatever the clock's step
    # THEN its ETag is the new content's, not the one kept
    assert lake.head("landing/a.csv")["etag"] == hashlib.md5(b"loyersurface\n1000,30\n").hexdigest()


def test_without_extended_attributes_etags_are_computed(
    local_lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from rentlake.lake import local

    # GIVEN a system without extended attributes (macOS, Windows: no os.setxattr)
    monkeypatch.setattr(local, "_XATTRS", False)
    monkeypatch.delattr(os, "setxattr", raising=False)
    monkeypatch.delattr(os, "getxattr", raising=False)
    lake = local_lake
    # WHEN the lake writes objects, small and large (hashed while written), and compares-and-swaps one
    small = lake.put_bytes("landing/a.csv", b"rent,surface\n1000,30\n")
    large_bytes = b"x" * (5 << 20)
    large = lake.put_bytes("landing/big.bin", large_bytes)
    first = lake.create_json("models/champion.json", {"version": "v1"})
    lake.replace_json("models/champion.json", {"version": "v2"}, etag=first)
    # THEN every ETag is the content's MD5, as with them
    assert lake.head("landing/a.csv")["etag"] == small == hashlib.md5(b"rent,surface\n1000,30\n").hexdigest()
    assert lake.head("landing/big.bin")["etag"] == large == hashlib.md5(large_bytes).hexdigest()
    assert lake.get_json("models/champion.json") == {"version": "v2"}


def test_delete_prunes_empty_folders_and_keeps_the_lock(local_lake: Any) -> None:
    lake = local_lake
    lake.put_bytes("raw/objects/ingest_date=D/ingestion_id=I/a.csv", b"a")
    lake.create_json("models/champion.json", {"version": "v1"})
    lake.delete_prefix("raw/")
    assert not (lake.root / "raw").exists()
    assert (lake.root / ".lock").exists() and lake.list_keys("") == ["models/champion.json"]


def test_sweep_removes_only_old_temp_files(local_lake: Any) -> None:
    lake = local_lake
    lake.put_bytes("clean/_batches/listings/i1.json", b"{}")
    folder = lake.root / "clean" / "_batches" / "listings"
    old = folder / ".tmp-1-aaa-i2.json"
    young = folder / ".tmp-2-bbb-i3.json"
    old.write_bytes(b"")  # the 0-byte file a SIGKILL during a write leaves
    young.write_bytes(b"{")
    ten_hours_ago = time.time() - 10 * 3600
    os.utime(old, (ten_hours_ago, ten_hours_ago))
    # WHEN the leftovers older than 6 hours are swept
    assert lake.sweep(max_age_hours=6) == 1
    # THEN the old temp is gone, the young one (a writer may still be running) and the keys stay
    assert not old.exists() and young.exists()
    assert lake.list_keys("clean/") == ["clean/_batches/listings/i1.json"]
    assert lake.sweep(max_age_hours=0) == 1 and not young.exists()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {layer!r})
    from rentlake.lake import open_lake
    lake = open_lake({root!r})
    payloads = [bytes([65 + i]) * (8 << 20) for i in range(3)]  # 8 MB of A, of B, of C
    Path({ready!r}).write_text("go")
    i = 0
    while True:
        lake.put_bytes("models/big.bin", payloads[i % 3])
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_a_writer_killed_mid_write_leaves_nothing_half_written(local_lake: Any, delay: float) -> None:
    from rentlake.lake import ObjectNotFound

    lake = local_lake
    ready = lake.root.parent / "ready"
    script = _WRITER.format(layer=str(ROOT / "layers" / "rentlake"), root=str(lake.root), ready=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # THEN the key holds one whole payload (or does not exist yet), never a mix or a prefix
    try:
        data = lake.get_bytes("models/big.bin")
    except ObjectNotFound:
        data = None
    if data is not None:
        assert len(data) == 8 << 20 and data.count(data[:1]) == len(data)
    # AND whatever temp file the kill left is not a key, and the sweep takes it
    assert lake.list_keys("models/") == ([] if data is None else ["models/big.bin"])
    lake.sweep(max_age_hours=0)
    assert [p.name for p in (lake.root / "models").iterdir()] == (["big.bin"] if data is not None else [])


def test_local_parquet_matches_what_awswrangler_writes_to_s3(local_lake: Any, lake: Any) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    where = {"ingest_date": "2024-03-01", "ingestion_id": "i1"}
    lake.ensure_database()
    frame = listings_frame(50)
    s3_key = lake.key_of(
        lake.write_batch(frame, "clean", "listings", part=0, dtype=LISTINGS_DTYPE, **where)[0]
    )
    local_path = local_lake.write_batch(frame, "clean", "listings", part=0, dtype=LISTINGS_DTYPE, **where)[0]
    # THEN the two files have the same Arrow schema (column types, pandas metadata aside)
    s3_file = local_lake.root.parent / "from_s3.parquet"
    s3_file.write_bytes(lake.get_bytes(s3_key))
    s3_schema, local_schema = pq.read_schema(s3_file), pq.read_schema(local_path)
    assert s3_schema.remove_metadata() == local_schema.remove_metadata()
    assert pq.ParquetFile(s3_file).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert pq.ParquetFile(local_path).metadata.row_group(0).column(0).compression == "SNAPPY"
    # AND they read back to the same frame with the same dtypes
    pd.testing.assert_frame_equal(
        local_lake.read_parquet_key(local_lake.key_of(local_path)), lake.read_parquet_key(s3_key)
    )
    # AND the names follow awswrangler's pattern
    assert s3_key.rsplit("/", 1)[1].endswith(".snappy.parquet")
    assert local_path.endswith(".snappy.parquet")


def test_local_catalog_records_each_table_and_new_columns(local_lake: Any) -> None:
    lake = local_lake
    where = {"ingest_date": "2024-03-01", "ingestion_id": "i1"}
    frame = listings_frame(5)
    lake.write_batch(frame[["city", "rent_eur"]], "raw", "listings", part=0, dtype=LISTINGS_DTYPE, **where)
    lake.write_batch(frame, "raw", "listings", part=1, dtype=LISTINGS_DTYPE, **where)
    doc = lake.get_json("_catalog/raw_listings.json")
    assert doc["columns"] == {
        "city": "string",
        "rent_eur": "double",
        "rooms": "bigint",
        "furnished": "boolean",
        "listed_at": "timestamp",
        "source_row": "bigint",
    }
    assert doc["partition_keys"] == {"ingest_date": "string", "ingestion_id": "string"}
    assert lake.glue_tables() == ["raw_listings"]
