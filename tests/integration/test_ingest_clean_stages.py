"""The ingest and clean functions on a moto lake: zones, lineage, idempotency, invariant, bad input."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import SAMPLES, load_event


def run_ingest(function: Any, event: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return function("ingest").handler(event, ctx)


def run_clean(function: Any, ctx: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
    return function("clean").handler(event or {}, ctx)


def read_zone(lake: Any, zone: str, dataset: str = "listings") -> pd.DataFrame:
    import awswrangler as wr

    keys = [k for k in lake.list_keys(f"{zone}/{dataset}/") if k.endswith(".parquet")]
    if not keys:
        return pd.DataFrame()
    return wr.s3.read_parquet([lake.uri(k) for k in keys], dataset=False)


def test_course_file_lands_in_every_zone_with_nothing_lost(
    function, put_landing, lake, lambda_context
) -> None:
    # GIVEN the course's file uploaded to landing/ and the S3 event that upload sends
    event = put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    # WHEN the ingest then the clean function run
    ingested = run_ingest(function, event, lambda_context)
    cleaned = run_clean(function, lambda_context)
    # THEN rows in = clean + quarantined, duplicates and the 111 €/m² listing are quarantined with reasons
    assert ingested["rows"] == {"ingested": 545}
    report = cleaned["reports"][0]
    assert report["rows"] == {"in": 545, "clean": 481, "quarantined": 64}
    assert report["reasons"] == {"duplicate": 63, "rent_per_m2_outlier": 1}
    quarantine = read_zone(lake, "quarantine")
    assert len(quarantine) == 64 and quarantine["reasons"].notna().all()
    outlier = quarantine[quarantine["reasons"] == "rent_per_m2_outlier"]
    assert outlier[["rent_eur", "surface_m2"]].values.tolist() == [["20000", "180"]]
    # AND the clean zone is typed Parquet, registered in Glue with the raw table
    clean = read_zone(lake, "clean")
    assert len(clean) == 481
    assert clean["rent_eur"].dtype == "float64" and clean["surface_m2"].dtype == "float64"
    assert {"raw_listings", "clean_listings", "quarantine_listings"} <= set(lake.glue_tables())
    # AND the thresholds used are recorded in the report
    assert report["params"]["mad_k"] == 4.0 and report["robust_bounds"]["*"]["n"] == 482
    assert lake.get_json(f"reports/quality/listings/{report['ingestion_id']}.json")["rows"]["clean"] == 481


def test_raw_keeps_the_object_as_received_and_every_row_traces_back(
    function, put_landing, lake, lambda_context
) -> None:
    data = (SAMPLES / "house_intact.csv").read_bytes()
    event = put_landing("house_intact.csv", data)
    out = run_ingest(function, event, lambda_context)["outcomes"][0]
    run_clean(function, lambda_context)
    record = lake.get_json(f"raw/_ingestions/{out['ingestion_id']}.json")
    # THEN the raw copy is byte-identical and the ledger names key, ETag and content hash
    assert lake.get_bytes(record["raw_object"]) == data
    assert record["raw_object"].startswith(f"raw/objects/ingest_date={record['ingest_date']}/")
    assert record["source_key"] == "landing/house_intact.csv" and record["source_etag"]
    # AND every clean row points to its source row, whose raw values it came from
    clean = read_zone(lake, "clean")
    raw = read_zone(lake, "raw")
    assert (clean["source_key"] == "landing/house_intact.csv").all()
    assert (clean["source_sha256"] == record["source_sha256"]).all()
    joined = clean.merge(raw, on="source_row", suffixes=("", "_raw"))
    assert len(joined) == len(clean)
    assert np.allclose(joined["rent_eur"], joined["rent_eur_raw"].astype(float))
    source = pd.read_csv(io.BytesIO(data))
    assert np.allclose(source.loc[clean["source_row"] - 1, "loyer"].to_numpy(), clean["rent_eur"].to_numpy())


def test_same_object_twice_adds_nothing(function, put_landing, lake, lambda_context) -> None:
    data = (SAMPLES / "house_intact.csv").read_bytes()
    run_ingest(function, put_landing("house_intact.csv", data), lambda_context)
    run_clean(function, lambda_context)
    before = sorted(lake.list_keys("raw/")) + sorted(lake.list_keys("clean/"))
    # WHEN the same content lands again, under the same and under another name
    again = run_ingest(function, put_landing("house_intact.csv", data), lambda_context)
    other = run_ingest(function, put_landing("copy-of-house.csv", data), lambda_context)
    cleaned = run_clean(function, lambda_context)
    # THEN both are recognised as duplicates and the lake's raw and clean zones are unchanged
    assert again["outcomes"][0]["status"] == "duplicate" and other["outcomes"][0]["status"] == "duplicate"
    assert again["rows"]["ingested"] == 0 and cleaned["batches"] == 0
    assert sorted(lake.list_keys("raw/")) + sorted(lake.list_keys("clean/")) == before


def test_truncated_surfaces_never_reach_the_clean_zone(function, put_landing, lake, lambda_context) -> None:
    # GIVEN the corrupted copy whose surfaces lost their trailing zero (40 m² written 4)
    intact = pd.read_csv(SAMPLES / "house_intact.csv")
    broken = pd.read_csv(SAMPLES / "house.csv")
    truncated_rows = set(
        np.flatnonzero(intact["surface"].to_numpy() != broken["surface"].to_numpy()[:545]) + 1
    )
    assert len(truncated_rows) == 131
    # WHEN it is ingested and cleaned on its own
    run_ingest(function, put_landing("house.csv", (SAMPLES / "house.csv").read_bytes()), lambda_context)
    report = run_clean(function, lambda_context)["reports"][0]
    # THEN not one truncated row is clean, each is quarantined with a reason, and nothing is lost
    clean = read_zone(lake, "clean")
    quarantine = read_zone(lake, "quarantine")
    assert not truncated_rows & set(clean["source_row"])
    assert truncated_rows <= set(quarantine["source_row"])
    assert report["rows"]["in"] == 549 == len(clean) + len(quarantine)
    assert quarantine["reasons"].notna().all()


def test_thresholds_come_from_the_event_and_are_recorded(function, put_landing, lake, lambda_context) -> None:
    run_ingest(
        function, put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()), lambda_context
    )
    # WHEN cleaning with a stricter threshold (3.5 scaled MADs)
    report = run_clean(function, lambda_context, {"mad_k": 3.5})["reports"][0]
    # THEN one more listing (81.5 €/m²) is an outlier, and the report says which k was used
    assert report["params"]["mad_k"] == 3.5
    assert report["reasons"]["rent_per_m2_outlier"] == 2


def test_bad_rows_are_quarantined_with_reasons(function, put_landing, lake, lambda_context) -> None:
    # GIVEN one row of each problem people make, and two good rows
    text = (
        "loyer;surface;arrondissement\n"
        "1 200,50;30;11\n"  # good: thousands space, decimal comma
        "abc;30;11\n"  # non-numeric rent
        "1000;0;11\n"  # zero surface
        "1000;-20;11\n"  # negative surface
        "NaN;30;11\n"  # NaN
        "inf;30;11\n"  # infinity
        ";30;11\n"  # missing rent
        "1 200,50;30;11\n"  # duplicate of the first row
        "950;25;3e\n"  # good
        "1000;30;11;extra\n"  # too many fields
    )
    run_ingest(function, put_landing("people.csv", text.encode("utf-8")), lambda_context)
    report = run_clean(function, lambda_context)["reports"][0]
    quarantine = read_zone(lake, "quarantine").sort_values("source_row")
    clean = read_zone(lake, "clean").sort_values("source_row")
    # THEN the two good rows are clean, typed; every other row is quarantined with its own reason
    assert clean[["rent_eur", "surface_m2", "district"]].values.tolist() == [
        [1200.5, 30.0, "75011"],
        [950.0, 25.0, "75003"],
    ]
    reasons = dict(zip(quarantine["source_row"], quarantine["reasons"], strict=True))
    assert reasons[2] == "rent_eur_not_a_number"
    assert reasons[3] == "surface_m2_below_min" and reasons[4] == "surface_m2_below_min"
    assert reasons[5] == "rent_eur_not_finite" and reasons[6] == "rent_eur_not_finite"
    assert reasons[7] == "missing_rent_eur"
    assert reasons[8] == "duplicate"
    assert reasons[10] == "malformed_row"  # its record number, though the line is 11
    assert report["rows"] == {"in": 10, "clean": 2, "quarantined": 8}


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.csv", b"", "empty_object"),
        ("header-only.csv", b"loyer,surface\n", "no_data_rows"),
        ("garbage.csv", bytes(range(256)) * 40, "binary_content"),
        ("wrong-delimiter.csv", b"loyer:surface\n1000:30\n", "unrecognised_header"),
        ("unknown-columns.csv", b"city,population\nParis,2100000\n", "unrecognised_header"),
    ],
)
def test_objects_rejected_whole_are_kept_with_their_reason(
    function, put_landing, lake, lambda_context, name: str, data: bytes, reason: str
) -> None:
    # WHEN a bad object lands
    out = run_ingest(function, put_landing(name, data), lambda_context)["outcomes"][0]
    # THEN it is rejected with a clear reason, kept in quarantine/objects with a reason file, nothing raw
    assert out["status"] == "rejected" and out["reason"] == reason and out["message"]
    kept = out["details"]["kept_at"]
    assert lake.get_bytes(kept) == data
    assert lake.get_json(kept + ".reason.json")["reason"] == reason
    assert not [k for k in lake.list_keys("raw/listings/")]
    # AND the clean stage has nothing to do
    assert run_clean(function, lambda_context)["batches"] == 0


def test_one_50_mb_line_is_ingested_and_quarantined(function, put_landing, lake, lambda_context) -> None:
    data = b"loyer,surface\n" + b"7" * 50_000_000 + b",30\n1000,25\n"
    out = run_ingest(function, put_landing("huge-line.csv", data), lambda_context)["outcomes"][0]
    report = run_clean(function, lambda_context)["reports"][0]
    assert out["status"] == "ingested" and out["rows"] == 2
    assert report["rows"] == {"in": 2, "clean": 1, "quarantined": 1}
    assert "field_too_long" in read_zone(lake, "quarantine")["reasons"].iloc[0]


def test_json_lines_and_parquet_are_ingested(function, put_landing, lake, lambda_context) -> None:
    jsonl = (
        b'{"price": 1200, "area": 30, "district": "75011", "date": "2024-03-01"}\n'
        b'{"price": 800, "area": 20, "district": "75011", "date": "2024-03-02"}\n'
    )
    buf = io.BytesIO()
    pd.DataFrame({"loyer": [1500.0], "surface": [45.0], "arrondissement": [15]}).to_parquet(buf)
    run_ingest(function, put_landing("a.jsonl", jsonl), lambda_context)
    run_ingest(function, put_landing("b.parquet", buf.getvalue()), lambda_context)
    report = run_clean(function, lambda_context)
    clean = read_zone(lake, "clean").sort_values("rent_eur")
    assert report["rows"] == {"in": 3, "clean": 3, "quarantined": 0}
    assert clean["district"].tolist() == ["75011", "75011", "75015"]
    assert clean["listed_at"].iloc[0] == pd.Timestamp("2024-03-02")


def test_s3_event_with_encoded_key_and_a_bad_event(function, lake, lambda_context) -> None:
    from rentlake.events import BadEvent

    # GIVEN an upload whose name has a space: S3 events URL-encode it as '+'
    lake.put_bytes("landing/my listings.csv", b"loyer,surface\n1000,30\n")
    event = load_event("ingest_s3_put")
    event["Records"][0]["s3"]["object"]["key"] = "landing/my+listings.csv"
    out = run_ingest(function, event, lambda_context)
    assert (
        out["outcomes"][0]["status"] == "ingested" and out["outcomes"][0]["key"] == "landing/my listings.csv"
    )
    # AND an event that is neither an S3 notification nor a list of keys is refused with a clear message
    with pytest.raises(BadEvent, match="keys"):
        run_ingest(function, {"hello": "world"}, lambda_context)


def test_failed_clean_leaves_no_partial_data_and_reruns_to_the_same_result(
    function, put_landing, lake, lambda_context, monkeypatch
) -> None:
    from rentlake.lake import Lake, LakeError

    run_ingest(
        function, put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()), lambda_context
    )
    # GIVEN S3 failing on the quarantine write, after the clean rows were written
    real = Lake.write_batch

    def flaky(self: Lake, df: pd.DataFrame, zone: str, *args: Any, **kw: Any) -> list[str]:
        if zone == "quarantine":
            raise LakeError("injected: SlowDown")
        return real(self, df, zone, *args, **kw)

    monkeypatch.setattr(Lake, "write_batch", flaky)
    with pytest.raises(LakeError):
        run_clean(function, lambda_context)
    # THEN the batch is not committed: the clean zone as readers see it is empty, and it is still pending
    assert len(lake.read_clean("listings")) == 0
    monkeypatch.setattr(Lake, "write_batch", real)
    # WHEN re-run, it gives the same result as a clean first run, with no leftover files
    report = run_clean(function, lambda_context)["reports"][0]
    assert report["rows"] == {"in": 545, "clean": 481, "quarantined": 64}
    assert len(lake.read_clean("listings")) == 481
    assert len([k for k in lake.list_keys("clean/listings/") if k.endswith(".parquet")]) == 1


def test_later_batch_is_checked_against_the_clean_zone(function, put_landing, lake, lambda_context) -> None:
    run_ingest(
        function, put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()), lambda_context
    )
    run_clean(function, lambda_context)
    # GIVEN a small later file: a listing already clean, a new plausible one, and an absurd rent per m²
    later = b"loyer,surface\n1330,37\n1250,33\n3000,12\n"
    run_ingest(function, put_landing("later.csv", later), lambda_context)
    report = run_clean(function, lambda_context)["reports"][0]
    # THEN the outlier test uses the pool of clean rows, not just three rows
    assert report["history_rows"] == 481
    assert report["reasons"] == {"duplicate": 1, "rent_per_m2_too_high": 1}
    assert report["rows"] == {"in": 3, "clean": 1, "quarantined": 2}


def test_rejected_object_is_tried_again_not_called_a_duplicate(
    function, put_landing, lake, lambda_context
) -> None:
    # GIVEN listings ingested with the wrong dataset forced: rejected whole
    data = b"loyer,surface\n1000,30\n1200,40\n"
    event = put_landing("mine.csv", data)
    forced = {"keys": ["landing/mine.csv"], "dataset": "reference_rents"}
    first = function("ingest").handler(forced, lambda_context)
    assert first["outcomes"][0]["status"] == "rejected"
    kept = first["outcomes"][0]["details"]["kept_at"]
    # WHEN the same content is ingested again, recognising its dataset
    again = run_ingest(function, event, lambda_context)["outcomes"][0]
    # THEN it is ingested (not "duplicate: nothing added"), and the stale rejected copy is gone
    assert again["status"] == "ingested" and again["rows"] == 2
    assert not lake.exists(kept) and not lake.exists(kept + ".reason.json")
    # AND a third time it is a duplicate that adds nothing
    assert run_ingest(function, event, lambda_context)["outcomes"][0]["status"] == "duplicate"


def test_every_row_lost_to_no_one_on_degenerate_batches(function, put_landing, lake, lambda_context) -> None:
    # GIVEN a file whose every data line is malformed, and a file whose every row is already clean
    run_ingest(function, put_landing("first.csv", b"loyer,surface\n1000,30\n1200,40\n"), lambda_context)
    run_clean(function, lambda_context)
    run_ingest(function, put_landing("allbad.csv", b"loyer,surface\n1,2,3\n4,5,6\n"), lambda_context)
    run_ingest(function, put_landing("again.csv", b"surface;loyer\n40;1200\n30;1000\n"), lambda_context)
    reports = {r["source_key"]: r for r in run_clean(function, lambda_context)["reports"]}
    # THEN each batch is committed with every row quarantined, with its reason
    assert reports["landing/allbad.csv"]["rows"] == {"in": 2, "clean": 0, "quarantined": 2}
    assert reports["landing/allbad.csv"]["reasons"] == {"malformed_row": 2}
    assert reports["landing/again.csv"]["rows"] == {"in": 2, "clean": 0, "quarantined": 2}
    assert reports["landing/again.csv"]["reasons"] == {"duplicate": 2}
    assert len(lake.read_clean("listings")) == 2 and len(read_zone(lake, "quarantine")) == 4


def test_chunk_boundaries_change_nothing(function, put_landing, lake, lambda_context, monkeypatch) -> None:
    # GIVEN the course file ingested in chunks of 100 rows (duplicates and malformed rows across chunks)
    text = (SAMPLES / "house_intact.csv").read_text().replace("\n1330,37\n", "\n1330,37\n1,2,3\n", 1)
    monkeypatch.setenv("RENTLAKE_CHUNK_ROWS", "100")
    out = run_ingest(function, put_landing("chunked.csv", text.encode()), lambda_context)
    report = run_clean(function, lambda_context)["reports"][0]
    # THEN the result is the one of a single chunk, plus the malformed row
    assert out["rows"] == {"ingested": 546}
    assert len([k for k in lake.list_keys("raw/listings/") if k.endswith(".parquet")]) == 7  # 6 + malformed
    assert report["rows"] == {"in": 546, "clean": 481, "quarantined": 65}
    assert report["reasons"] == {"duplicate": 63, "rent_per_m2_outlier": 1, "malformed_row": 1}
    clean = read_zone(lake, "clean")
    assert clean["source_row"].is_unique and len(clean) == 481


def test_a_valid_row_is_not_a_duplicate_of_a_quarantined_one(
    function, put_landing, lake, lambda_context
) -> None:
    # GIVEN two rows equal once typed: an invalid date and no date both become NaT
    data = b"loyer,surface,date\n1000,30,not a date\n1000,30,\n"
    run_ingest(function, put_landing("dates.csv", data), lambda_context)
    report = run_clean(function, lambda_context)["reports"][0]
    # THEN the row without a date is clean: its only "first copy" was quarantined
    assert report["rows"] == {"in": 2, "clean": 1, "quarantined": 1}
    assert report["reasons"] == {"listed_at_invalid_date": 1}


def test_a_key_s3_could_not_delete_is_an_error_not_a_deletion(lake, monkeypatch) -> None:
    from rentlake.lake import LakeError

    # GIVEN a file an attempt wrote and will not commit, and S3 answering DeleteObjects with a per-key error
    own = "clean/listings/ingest_date=2024-01-01/ingestion_id=x/part-00000-a.parquet"
    lake.put_bytes(own, b"x")
    refused = {"Errors": [{"Key": own, "Code": "AccessDenied", "Message": "denied"}]}
    monkeypatch.setattr(lake.s3, "delete_objects", lambda **kw: refused)
    # WHEN the attempt deletes its own file THEN the failure is raised, not taken for a deletion
    with pytest.raises(LakeError, match="AccessDenied"):
        lake.delete_keys([own])


@pytest.mark.parametrize(
    ("name", "value"),
    [("RENTLAKE_CHUNK_ROWS", "0"), ("RENTLAKE_CHUNK_ROWS", "0.5"), ("RENTLAKE_OUTLIER_MAD_K", "-1")],
)
def test_settings_refuse_sizes_and_thresholds_that_cannot_work(name: str, value: str) -> None:
    from rentlake.config import load

    # A chunk of 0 rows never ends the CSV read loop: the typo fails at cold start, naming the variable
    with pytest.raises(ValueError, match=name):
        load({name: value})
    assert load({"RENTLAKE_MODEL_REFRESH_SECONDS": "0"}).model_refresh_seconds == 0  # 0: re-check always


def test_a_second_writer_of_the_same_batch_is_never_read(function, put_landing, lake, lambda_context) -> None:
    # GIVEN the course file ingested, and a second writer of the same batch (an S3 event delivered twice,
    # racing the first) having left its own copy of the raw rows beside the first one's
    out = run_ingest(
        function, put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()), lambda_context
    )["outcomes"][0]
    record = lake.get_json(f"raw/_ingestions/{out['ingestion_id']}.json")
    first = record["raw_files"]
    assert len(first) == 1 and lake.exists(first[0])
    lake.copy(first[0], first[0].replace("part-00000-", "part-00000-racer-"))
    # WHEN the batch is cleaned
    report = run_clean(function, lambda_context)["reports"][0]
    # THEN only the committed files count: no row twice, no "duplicate" inflated by the copy
    assert report["rows"] == {"in": 545, "clean": 481, "quarantined": 64}
    # AND likewise a stray file beside the committed clean files is not part of the clean zone
    committed = report["clean_files"]
    lake.copy(committed[0], committed[0].replace("part-00000-", "part-00000-stray-"))
    assert len(lake.read_clean("listings")) == 481


def test_a_ledger_entry_that_is_not_a_record_is_an_error_naming_it(
    function, put_landing, lake, lambda_context
) -> None:
    from rentlake.lake import LakeError
    from rentlake.parsing import ingestion_id_of

    # GIVEN the ledger entry of a content edited by hand (its row count written as text)
    data = b"loyer,surface\n1000,30\n"
    iid, _ = ingestion_id_of(data)
    lake.put_json(f"raw/_ingestions/{iid}.json", {"ingestion_id": iid, "status": "ingested", "rows": "1"})
    # WHEN the same content lands THEN ingestion fails naming the entry and the field, and writes nothing
    with pytest.raises(LakeError, match=rf"raw/_ingestions/{iid}.json: .*'dataset'"):
        run_ingest(function, put_landing("again.csv", data), lambda_context)
    assert lake.list_keys("raw/listings/") == []
