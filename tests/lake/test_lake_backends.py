"""The lake's contract, run on both backends (see ``any_lake``): objects, conditional writes, tables."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_objects_round_trip(any_lake: Any) -> None:
    from rentlake.lake import ObjectNotFound

    lake = any_lake
    # GIVEN three objects written in two folders
    etag = lake.put_bytes("landing/a.csv", b"a,b\n1,2\n")
    lake.put_json("reports/quality/listings/i1.json", {"rows": 3, "ville": "Paris"})
    lake.put_bytes("landing/b.csv", b"x")
    # THEN they read back, with the ETag S3 gives (MD5 of the content) and their size
    assert lake.get_bytes("landing/a.csv") == b"a,b\n1,2\n"
    assert lake.get_json("reports/quality/listings/i1.json") == {"rows": 3, "ville": "Paris"}
    head = lake.head("landing/a.csv")
    assert head is not None and head["etag"] == etag == md5(b"a,b\n1,2\n") and head["size"] == 8
    assert head["last_modified"] is not None
    # AND listing works by folder and by partial name, sorted
    assert lake.list_keys("landing/") == ["landing/a.csv", "landing/b.csv"]
    assert lake.list_keys("landing/a") == ["landing/a.csv"]
    assert lake.list_keys("reports/") == ["reports/quality/listings/i1.json"]
    assert lake.list_keys("nothing/") == []
    # AND a missing key is told apart from an existing one
    assert lake.head("landing/zzz.csv") is None and not lake.exists("landing/zzz.csv")
    assert lake.get_json_or_none("landing/zzz.json") is None
    with pytest.raises(ObjectNotFound):
        lake.get_bytes("landing/zzz.csv")
    with pytest.raises(ObjectNotFound):
        lake.get_bytes("landing")  # a folder is not an object


def test_copy_overwrite_and_delete(any_lake: Any) -> None:
    lake = any_lake
    lake.put_bytes("landing/a.csv", b"first")
    # WHEN an object is copied, then overwritten
    lake.copy("landing/a.csv", "raw/objects/ingest_date=2024-01-01/ingestion_id=i1/a.csv")
    second = lake.put_bytes("landing/a.csv", b"second")
    # THEN the copy kept the old content and the ETag changed with the new one
    assert lake.get_bytes("raw/objects/ingest_date=2024-01-01/ingestion_id=i1/a.csv") == b"first"
    assert lake.head("landing/a.csv")["etag"] == second == md5(b"second")
    # WHEN a prefix and a list of keys are deleted (a missing key counts, as on S3)
    assert lake.delete_prefix("raw/") == 1
    assert lake.delete_keys(["landing/a.csv", "landing/never.csv"]) == 2
    # THEN nothing is left
    assert lake.list_keys("") == [] or all(k.startswith("_catalog/") for k in lake.list_keys(""))
    assert not lake.exists("landing/a.csv")


def test_every_write_changes_the_etag_the_champion_cache_compares(any_lake: Any) -> None:
    from rentlake.lake import keys

    lake = any_lake
    seen = set()
    for version in ("v1", "v2", "v3"):
        lake.put_json(keys.champion(), {"version": version})
        seen.add(lake.head(keys.champion())["etag"])
    assert len(seen) == 3


def test_create_json_lets_exactly_one_of_two_threads_commit(any_lake: Any) -> None:
    from rentlake.lake import PreconditionFailed

    lake = any_lake
    for round_ in range(10):
        key = f"clean/_batches/listings/i{round_}.json"
        start = threading.Barrier(2)
        results: dict[str, str] = {}

        def commit(
            writer: str, key: str = key, start: threading.Barrier = start, results: dict[str, str] = results
        ) -> None:
            start.wait()
            try:
                lake.create_json(key, {"writer": writer})
                results[writer] = "won"
            except PreconditionFailed:
                results[writer] = "lost"

        threads = [threading.Thread(target=commit, args=(w,)) for w in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # THEN one won, one lost, and the object is the winner's
        assert sorted(results.values()) == ["lost", "won"], results
        winner = next(w for w, r in results.items() if r == "won")
        assert lake.get_json(key) == {"writer": winner}


def test_replace_json_refuses_a_stale_etag(any_lake: Any) -> None:
    from rentlake.lake import PreconditionFailed, keys

    lake = any_lake
    key = keys.champion()
    # GIVEN a pointer created once (a second create is refused)
    first = lake.replace_json(key, {"version": "v1"}, etag=None)
    with pytest.raises(PreconditionFailed):
        lake.create_json(key, {"version": "other"})
    # WHEN a writer swaps it with the ETag it read
    second = lake.replace_json(key, {"version": "v2"}, etag=first)
    assert second != first and lake.get_json(key) == {"version": "v2"}
    # THEN a writer still holding the first ETag is refused, and the pointer is unchanged
    with pytest.raises(PreconditionFailed):
        lake.replace_json(key, {"version": "stale"}, etag=first)
    with pytest.raises(PreconditionFailed):
        lake.replace_json(key, {"version": "blind"}, etag=None)
    with pytest.raises(PreconditionFailed):
        lake.replace_json("models/absent.json", {"version": "x"}, etag=first)
    assert lake.get_json(key) == {"version": "v2"}


def test_compare_and_swap_loses_no_increment_under_threads(any_lake: Any) -> None:
    from rentlake.lake import PreconditionFailed

    lake = any_lake
    key = "models/counter.json"
    lake.create_json(key, {"n": 0})

    def add(times: int) -> None:
        done = 0
        while done < times:
            head = lake.head(key)
            doc = lake.get_json(key)
            try:
                lake.replace_json(key, {"n": doc["n"] + 1}, etag=head["etag"])
                done += 1
            except PreconditionFailed:
                continue  # another thread moved it: read again

    threads = [threading.Thread(target=add, args=(10,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lake.get_json(key) == {"n": 60}


LISTINGS_DTYPE = {
    "city": "string",
    "rent_eur": "double",
    "rooms": "bigint",
    "furnished": "boolean",
    "listed_at": "timestamp",
    "source_row": "bigint",
}


def listings_frame(n: int, offset: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rows = np.arange(offset, offset + n)
    return pd.DataFrame(
        {
            "city": pd.array([None if i % 7 == 0 else f"Paris {i % 20}" for i in rows], dtype="string"),
            "rent_eur": [float("nan") if i % 11 == 0 else 500.0 + i for i in rows],
            "rooms": pd.array([None if i % 5 == 0 else int(i % 6) for i in rows], dtype="Int64"),
            "furnished": pd.array([None if i % 3 == 0 else bool(i % 2) for i in rows], dtype="boolean"),
            "listed_at": pd.to_datetime(["2024-03-01"] * n) + pd.to_timedelta(rows, unit="h"),
            "source_row": rows.astype("int64"),
        }
    )


def test_write_batch_then_read_back(any_lake: Any) -> None:
    import pandas as pd
    from rentlake.lake import keys

    lake = any_lake
    lake.ensure_database()
    where = {"ingest_date": "2024-03-01", "ingestion_id": "i1"}
    # WHEN a batch is written in two chunks (the second written first)
    second = lake.write_batch(
        listings_frame(40, 60), "clean", "listings", part=1, dtype=LISTINGS_DTYPE, **where
    )
    first = lake.write_batch(listings_frame(60), "clean", "listings", part=0, dtype=LISTINGS_DTYPE, **where)
    # THEN the written paths are keys under the batch's partition folders, listed in chunk order
    written = [lake.key_of(p) for p in first + second]
    assert all(k.startswith(keys.batch_prefix("clean", "listings", **where)) for k in written)
    assert all(k.rsplit("/", 1)[1].startswith(("part-00000-", "part-00001-")) for k in written)
    assert lake.batch_files("clean", "listings", **where) == written
    # AND the rows read back as written, without the partition columns (they are in the path)
    back = pd.concat(lake.iter_keys(written), ignore_index=True)
    expected = pd.concat([listings_frame(60), listings_frame(40, 60)], ignore_index=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert str(back["rooms"].dtype) == "Int64" and str(back["city"].dtype).startswith("string")
    assert lake.read_parquet_key(written[0], columns=["rent_eur"]).columns.tolist() == ["rent_eur"]
    # AND the table is in the lake's catalog
    assert "clean_listings" in lake.glue_tables()
    # AND deleting the batch's prefix removes its files
    assert lake.delete_prefix(keys.batch_prefix("clean", "listings", **where)) == 2
    assert lake.batch_files("clean", "listings", **where) == []


def test_an_arrow_table_is_written_as_the_frame_it_holds(any_lake: Any) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    lake = any_lake
    lake.ensure_database()
    where = {"ingest_date": "2024-03-01", "ingestion_id": "i2"}
    dtype = {"city": "string", "source_key": "string", "source_row": "bigint"}
    # GIVEN an Arrow table whose constant column is a dictionary of one string, and a column of nulls
    n = 50
    table = pa.table(
        {
            "city": pa.array([None if i % 7 == 0 else f"Paris {i % 20}" for i in range(n)], pa.string()),
            "extra": pa.nulls(n, pa.string()),
            "source_row": pa.array(np.arange(1, n + 1)),
            "source_key": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), ["landing/a.csv"]
            ),
        }
    )
    # WHEN it is written in two chunks
    paths = [
        *lake.write_batch(table.slice(0, 30), "raw", "listings", part=0, dtype=dtype, **where),
        *lake.write_batch(table.slice(30), "raw", "listings", part=1, dtype=dtype, **where),
    ]
    written = [lake.key_of(p) for p in paths]
    assert lake.batch_files("raw", "listings", **where) == written
    # THEN it reads back as the same rows as pandas frames give, the dictionary as plain strings
    back = pd.concat(lake.iter_keys(written), ignore_index=True)
    assert back["source_key"].tolist() == ["landing/a.csv"] * n and back["source_row"].tolist() == [
        *range(1, n + 1)
    ]
    assert str(back["source_key"].dtype) == str(back["city"].dtype) == str(back["extra"].dtype)
    assert (
        back["city"].isna().sum() == 8
        and back["extra"].isna().all()
        and str(back["source_row"].dtype) == "Int64"
    )
    # AND the catalog gives its columns' Athena types, the dictionary's as a string
    assert "raw_listings" in lake.glue_tables()
    if lake.address.startswith("s3://"):
        import awswrangler as wr

        types = wr.catalog.get_table_types(
            database=lake.database, table="raw_listings", boto3_session=lake.session
        )
    else:
        types = lake.get_json("_catalog/raw_listings.json")["columns"]
    assert {c: types[c] for c in table.column_names} == {
        "city": "string",
        "extra": "string",
        "source_row": "bigint",
        "source_key": "string",
    }


@pytest.mark.parametrize("chunk", ["frame", "arrow"])
def test_a_table_of_another_lake_sharing_the_glue_database_is_not_written_to(bucket: str, chunk: str) -> None:
    import boto3
    import pyarrow as pa
    from rentlake.lake import LakeError, open_lake

    # GIVEN two lakes in two buckets sharing one Glue database, the first holding the raw table
    boto3.client("s3").create_bucket(
        Bucket="rentlake-other", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    first, other = (
        open_lake(f"s3://{bucket}", database="shared"),
        open_lake("s3://rentlake-other", database="shared"),
    )
    first.ensure_database()
    rows = pa.table({"city": ["Paris"], "source_row": pa.array([1], pa.int64())})
    where = {"ingest_date": "2024-03-01", "ingestion_id": "i1", "part": 0, "dtype": {"source_row": "bigint"}}
    first.write_batch(rows, "raw", "listings", **where)
    # WHEN the other lake writes a chunk of the same table (a frame or an Arrow table)
    data = rows.to_pandas() if chunk == "frame" else rows
    with pytest.raises(LakeError, match="does not match the existing Glue catalog table path"):
        other.write_batch(data, "raw", "listings", **where)
    # THEN it is refused, and nothing is left in its bucket
    assert other.list_keys("raw/") == []
