"""Hostile files through ingest and score, one case per test, each outcome asserted on values.

Ingest runs through the real handler on a moto lake (the S3 event an upload sends); the command line runs
in process on a local-folder lake. Every crash these files used to cause (a traceback, the next files of
the event skipped, rows under raw/ without a record) is now a rejection with a reason code, the object
kept whole in quarantine with its ``.reason.json``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.support import SAMPLES, FakeContext

CTX = FakeContext()
Ingest = Callable[..., dict[str, Any]]


@pytest.fixture
def ingest(function: Any, put_landing: Any) -> Ingest:
    """Land each (name, bytes) and run the ingest handler on one S3 event holding them all, in order."""

    def run(*files: tuple[str, bytes]) -> dict[str, Any]:
        records = [put_landing(name, data)["Records"][0] for name, data in files]
        return function("ingest").handler({"Records": records}, CTX)

    return run


def raw_files(lake: Any) -> list[str]:
    return [k for k in lake.list_keys("raw/listings/") if k.endswith(".parquet")]


def assert_rejected_whole(lake: Any, outcome: dict[str, Any], reason: str, data: bytes) -> None:
    """The object is rejected with ``reason``, kept byte for byte with its reason file, and nothing of it
    is under raw/ (no rows, and a ledger entry that says rejected)."""
    assert outcome["status"] == "rejected" and outcome["reason"] == reason, outcome
    kept, reason_at = outcome["details"]["kept_at"], outcome["details"]["reason_at"]
    assert lake.get_bytes(kept) == data
    assert reason_at == kept + ".reason.json" and lake.get_json(reason_at)["reason"] == reason
    assert lake.get_json(f"raw/_ingestions/{outcome['ingestion_id']}.json")["status"] == "rejected"


def parquet_bytes(table: Any, **kw: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


# --------------------------------------------------------------------------------------- crashes → reasons
def test_json_nested_fifty_thousand_levels_is_rejected_not_a_recursion_error(
    lake: Any, ingest: Ingest
) -> None:
    # GIVEN a JSON Lines file whose one record nests 50 000 arrays
    data = b'{"loyer": 1000, "surface": 30, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n"
    # WHEN ingested THEN it is rejected as nested too deep, naming the line, and kept whole
    (out,) = ingest(("deep.jsonl", data))["outcomes"]
    assert_rejected_whole(lake, out, "nesting_too_deep", data)
    assert "line 1" in out["message"] and raw_files(lake) == []


def test_parquet_binary_column_with_latin1_bytes_is_rejected_not_a_unicode_error(
    lake: Any, ingest: Ingest
) -> None:
    import pyarrow as pa

    # GIVEN a Parquet file whose rent column is binary and holds bytes that are not UTF-8
    table = pa.table({"loyer": pa.array([b"1000", b"\xff\xfe"], pa.binary()), "surface": ["30", "40"]})
    data = parquet_bytes(table)
    # WHEN ingested THEN it is rejected naming the column
    (out,) = ingest(("binary.parquet", data))["outcomes"]
    assert_rejected_whole(lake, out, "not_utf8", data)
    assert "'loyer'" in out["message"]


def test_csv_header_with_a_field_over_128_kib_is_rejected_not_a_csv_error(lake: Any, ingest: Ingest) -> None:
    # GIVEN a CSV whose header's third name is 140 000 characters long
    data = b"loyer,surface," + b"x" * 140_000 + b"\n1000,30,a\n"
    # WHEN ingested THEN it is rejected: that line is not a header of names
    (out,) = ingest(("long-header.csv", data))["outcomes"]
    assert_rejected_whole(lake, out, "header_too_long", data)


def test_a_300k_row_parquet_failing_after_a_written_chunk_leaves_nothing_under_raw(
    lake: Any, ingest: Ingest
) -> None:
    import pyarrow as pa

    # GIVEN a 300 000-row Parquet file whose row 280 000 holds bytes that are not UTF-8: the first chunk of
    # 250 000 rows is written to raw/ before the fault is read
    loyer = [b"1000"] * 300_000
    loyer[280_000] = b"\xff"
    table = pa.table({"loyer": pa.array(loyer, pa.binary()), "surface": pa.array(["30"] * 300_000)})
    data = parquet_bytes(table, row_group_size=100_000)
    # WHEN ingested
    (out,) = ingest(("late-fault.parquet", data))["outcomes"]
    # THEN it is rejected, and the rows written before the fault are gone: no raw file, no raw copy
    assert_rejected_whole(lake, out, "not_utf8", data)
    assert raw_files(lake) == [] and lake.list_keys("raw/objects/") == []


def test_json_lines_with_20_000_distinct_keys_is_refused_fast(lake: Any, ingest: Ingest) -> None:
    # GIVEN 849 KB of JSON Lines, each record bringing a key of its own (20 000 keys)
    data = "".join(f'{{"loyer": 1000, "surface": 30, "k{i}": 1}}\n' for i in range(20_000)).encode()
    # WHEN ingested
    started = time.perf_counter()
    (out,) = ingest(("wide.jsonl", data))["outcomes"]
    # THEN it is refused for its columns, within seconds (it reached 6.6 GB before)
    assert time.perf_counter() - started < 10
    assert_rejected_whole(lake, out, "too_many_columns", data)
    assert "1,000" in out["message"]


def test_a_header_of_5_000_columns_is_refused(lake: Any, ingest: Ingest) -> None:
    header = "loyer,surface," + ",".join(f"c{i}" for i in range(5_000))
    data = (header + "\n" + "1000,30" + ",x" * 5_000 + "\n").encode()
    (out,) = ingest(("many-columns.csv", data))["outcomes"]
    assert_rejected_whole(lake, out, "too_many_columns", data)


def test_utf16_text_is_rejected_saying_to_save_as_utf8(lake: Any, ingest: Ingest) -> None:
    data = "loyer,surface\n1000,30\n".encode("utf-16")
    (out,) = ingest(("excel.csv", data))["outcomes"]
    assert_rejected_whole(lake, out, "binary_content", data)
    assert "UTF-16" in out["message"]


# --------------------------------------------------------------------------------------- the next file runs
def test_files_after_a_hostile_one_in_the_same_event_are_ingested(lake: Any, ingest: Ingest) -> None:
    # GIVEN one event naming a good file, a nested bomb, and the course file
    bomb = b'{"loyer": 1, "surface": 2, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    result = ingest(
        ("first.csv", b"loyer,surface\n1000,30\n"),
        ("bomb.jsonl", bomb),
        ("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()),
    )
    # WHEN ingested THEN the bomb is rejected and both others are ingested, in order
    statuses = [(o["key"], o["status"]) for o in result["outcomes"]]
    assert statuses == [
        ("landing/first.csv", "ingested"),
        ("landing/bomb.jsonl", "rejected"),
        ("landing/house_intact.csv", "ingested"),
    ]
    assert result["rows"] == {"ingested": 546}


def test_an_unexpected_fault_rejects_that_file_as_internal_error_and_the_next_one_runs(
    lake: Any, ingest: Ingest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rentlake.stages import ingest as stage

    # GIVEN a parser that fails with an unexpected exception on one file only
    real = stage.parse_object

    def flaky(data: bytes, name: str, **kw: Any) -> Any:
        if name == "cursed.csv":
            raise ZeroDivisionError("a bug in the parser")
        return real(data, name, **kw)

    monkeypatch.setattr(stage, "parse_object", flaky)
    # WHEN an event names it between two good files
    result = ingest(
        ("a.csv", b"loyer,surface\n1000,30\n"),
        ("cursed.csv", b"loyer,surface\n1100,31\n"),
        ("b.csv", b"loyer,surface\n1200,32\n"),
    )
    # THEN the invocation succeeds; that file is rejected with the exception's message, kept with its
    # reason; the trace is logged; the next file is ingested
    outcomes = {o["key"]: o for o in result["outcomes"]}
    cursed = outcomes["landing/cursed.csv"]
    assert_rejected_whole(lake, cursed, "internal_error", b"loyer,surface\n1100,31\n")
    assert cursed["message"] == "ZeroDivisionError: a bug in the parser"
    assert outcomes["landing/b.csv"]["status"] == "ingested"
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    logs = [json.loads(line) for line in lines if line.startswith('{"level"')]
    (logged,) = [r for r in logs if r["message"] == "internal error while ingesting landing/cursed.csv"]
    assert logged["level"] == "ERROR" and "ZeroDivisionError: a bug in the parser" in logged["exception"]


# --------------------------------------------------------------------------------------- rows and lines
def test_quoted_newlines_are_taken_at_any_size(lake: Any, ingest: Ingest) -> None:
    # GIVEN a 5 MB RFC 4180 CSV whose every comment holds a newline: block boundaries of the parser fall
    # inside quoted values
    rows = "".join(f'{1000 + i},30,"line one\nline two {i}"\n' for i in range(150_000))
    data = ("loyer,surface,comment\n" + rows).encode()
    assert len(data) > 5_000_000
    # WHEN ingested
    (out,) = ingest(("quoted.csv", data))["outcomes"]
    # THEN every row is there, each numbered by the line it starts on (after the header)
    assert out["status"] == "ingested" and out["rows"] == 150_000
    raw = pd.concat(lake.iter_keys(raw_files(lake)), ignore_index=True).sort_values("source_row")
    assert raw["source_row"].tolist()[:3] == [1, 3, 5] and raw["source_row"].iloc[-1] == 2 * 150_000 - 1
    assert json.loads(raw["extra"].iloc[1]) == {"comment": "line one\nline two 1"}


def test_blank_lines_keep_source_row_on_the_file_line(lake: Any, ingest: Ingest) -> None:
    # GIVEN a CSV and a JSON Lines file with blank lines between records
    csv_data = b"loyer,surface\n1000,30\n\n\n1100,31\r\n\r\n1200,32\n"
    jsonl = b'{"loyer": 1000, "surface": 30}\n\n{"loyer": 1100, "surface": 31}\n\n\n'
    jsonl += b'{"loyer": 1200, "surface": 32}\n'
    ingest(("blank.csv", csv_data), ("blank.jsonl", jsonl))
    raw = pd.concat(lake.iter_keys(raw_files(lake)), ignore_index=True)
    rows = {
        key: dict(zip(part["rent_eur"], part["source_row"], strict=True))
        for key, part in raw.groupby("source_key")
    }
    # THEN CSV rows are numbered by their line after the header (line 5 → 4), JSON Lines by their line
    assert rows["landing/blank.csv"] == {"1000": 1, "1100": 4, "1200": 6}
    assert rows["landing/blank.jsonl"] == {"1000": 1, "1100": 3, "1200": 6}


def test_a_quote_never_closed_makes_its_row_malformed_not_the_rest_of_the_file_a_value(
    lake: Any, ingest: Ingest, function: Any
) -> None:
    # GIVEN a CSV whose third record opens a quote that never closes
    data = b'loyer,surface,note\n1000,30,ok\n1100,31,fine\n1200,32,"oops\n1300,33,lost\n'
    (out,) = ingest(("open-quote.csv", data))["outcomes"]
    report = function("clean").handler({}, CTX)["reports"][0]
    # THEN the two rows before it are clean; the rest is one malformed row, quarantined with its line
    assert out["rows"] == 3
    assert report["rows"] == {"in": 3, "clean": 2, "quarantined": 1}
    assert report["reasons"] == {"malformed_row": 1}


def test_a_json_array_of_records_is_ingested(lake: Any, ingest: Ingest) -> None:
    data = json.dumps(
        [{"loyer": 1000 + i, "surface": 30, "quartier": "Belleville"} for i in range(3)]
    ).encode()
    (out,) = ingest(("export.json", data))["outcomes"]
    assert out["status"] == "ingested" and out["rows"] == 3 and out["details"]["shape"] == "array"


def test_a_value_cut_in_a_column_no_contract_knows_is_noted(lake: Any, ingest: Ingest) -> None:
    # GIVEN a comment of 20 000 characters beside a valid listing
    data = b"loyer,surface,comment\n1000,30," + b"c" * 20_000 + b"\n"
    ingest(("long-comment.csv", data))
    raw = pd.concat(lake.iter_keys(raw_files(lake)), ignore_index=True)
    # THEN its raw row says the value was cut (the raw copy of the object keeps it whole)
    assert raw["raw_problem"].tolist() == ["extra_value_cut (comment)"]
    assert len(json.loads(raw["extra"].iloc[0])["comment"]) == 10_000


# --------------------------------------------------------------------------------------- score
@pytest.fixture
def score(lake: Any, function: Any) -> Callable[..., dict[str, Any]]:
    """Score bytes as ``score/<name>`` with a published champion; returns the file's result."""
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    publish_champion(lake, "v1", make_onnx_model(district_factors={"75011": 1.2}), make_card("v1"))
    app = function("score")

    def run(name: str, data: bytes, **event: Any) -> dict[str, Any]:
        lake.put_bytes(f"score/{name}", data)
        (item,) = app.handler({"keys": [f"score/{name}"], **event}, CTX)["scored"]
        return item

    return run


def read_scored(lake: Any, key: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(lake.get_bytes(key)), dtype=str, keep_default_na=False)


def test_score_reads_the_course_file_through_its_aliases(lake: Any, score: Any) -> None:
    # GIVEN the course file (header "loyer,surface")
    item = score("house.csv", (SAMPLES / "house_intact.csv").read_bytes())
    # THEN every row has an estimate (it said "no surface_m2 column" for all of them before)
    assert (item["rows"], item["scored_rows"], item["problem_rows"]) == (545, 545, 0)
    assert item["columns"] == {"loyer": "rent_eur", "surface": "surface_m2"}


def test_score_reads_a_semicolon_latin1_file_with_decimal_commas_and_square_feet(
    lake: Any, score: Any
) -> None:
    from rentlake.runtime.testing import expected_rent

    # GIVEN a French spreadsheet export and an American one
    fr = "Superficie;Arrondissement;Commentaire\n30,5;11e;très clair\n".encode("latin-1")
    us = b"sqft,zip\n322.917,75002\n"
    fr_item, us_item = score("fr.csv", fr), score("us.csv", us)
    fr_out, us_out = read_scored(lake, fr_item["outputs"][1]), read_scored(lake, us_item["outputs"][1])
    # THEN the surface is read as 30.5 m² in the 11th (district normalised), 322.917 sq ft as 30 m²
    assert float(fr_out["rent_eur"][0]) == pytest.approx(expected_rent(30.5, factor=1.2), abs=0.5)
    assert fr_out["Commentaire"][0] == "très clair"
    assert float(us_out["rent_eur"][0]) == pytest.approx(expected_rent(30.0), abs=0.5)


def test_score_csv_neutralises_formulas_and_keeps_negative_numbers(lake: Any, score: Any) -> None:
    # GIVEN cells a spreadsheet would run, a negative surface and a header that is a formula
    data = b'surface_m2,note,=HYPERLINK("x")\n30,=1+1,a\n-3,@SUM(A1),b\n40,+33 1 23,-x\n'
    item = score("inject.csv", data)
    out = read_scored(lake, item["outputs"][1])
    # THEN those cells start with a quote, the number -3 stays a number (with its problem), and the
    # Parquet output keeps the values as they were
    assert out["note"].tolist() == ["'=1+1", "'@SUM(A1)", "'+33 1 23"]
    assert out['\'=HYPERLINK("x")'].tolist() == ["a", "b", "'-x"]
    assert out["surface_m2"].tolist() == ["30", "-3", "40"]
    assert out["problem"][1] == "surface_m2 must be between 9 and 1000 m²"
    parquet = pd.read_parquet(io.BytesIO(lake.get_bytes(item["outputs"][0])))
    assert parquet["note"].tolist() == ["=1+1", "@SUM(A1)", "+33 1 23"]


def test_score_gives_one_row_out_per_row_in_with_malformed_lines_in_place(lake: Any, score: Any) -> None:
    data = b"id,surface\na,30\nb,31,extra\n\nc,32\n"
    item = score("rows.csv", data)
    out = read_scored(lake, item["outputs"][1])
    assert out["id"].tolist() == ["a", "", "c"]
    assert out["problem"].tolist() == ["", "malformed_row (line 3)", ""]


def test_score_with_a_column_map_and_a_json_array(lake: Any, score: Any) -> None:
    data = json.dumps([{"taille": 30, "ref": "a"}, {"taille": "x", "ref": "b"}]).encode()
    item = score("mapped.json", data, column_map={"taille": "surface_m2"})
    parquet = pd.read_parquet(io.BytesIO(lake.get_bytes(item["outputs"][0])))
    assert (
        parquet["ref"].tolist() == ["a", "b"]
        and parquet["problem"].tolist()[1] == "surface_m2 is not a number"
    )
    assert item["scored_rows"] == 1


def test_score_rejects_a_hostile_file_with_its_reason(lake: Any, score: Any) -> None:
    bomb = b'{"surface": 30, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    item = score("bomb.jsonl", bomb)
    assert item["reason"] == "nesting_too_deep" and "cannot read the file as jsonl" in item["error"]


# --------------------------------------------------------------------------------------- the command line
def cli(tmp_path: Path, *args: str) -> int:
    from rentlake.cli.main import main

    return main(["-q", "--lake-dir", str(tmp_path / "lake"), *args])


def test_cli_exits_non_zero_on_a_rejected_file_and_says_where_its_reason_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an image saved as .csv and a good file
    (tmp_path / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "good.csv").write_bytes(b"loyer,surface\n1000,30\n")
    # WHEN both are ingested
    status = cli(tmp_path, "ingest", str(tmp_path / "photo.csv"), str(tmp_path / "good.csv"))
    out, err = capsys.readouterr()
    # THEN the command fails, names the reason file, which exists; the good file is ingested
    said = next(line for line in err.splitlines() if line.startswith("rentlake: landing/photo.csv rejected"))
    reason = Path(said.split("its reason: ")[1])
    assert status == 1
    assert json.loads(reason.read_text())["reason"] == "binary_content"
    assert "ingested  landing/good.csv" in out and "next: `rentlake clean`" in out


def test_cli_does_not_suggest_clean_when_nothing_was_ingested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    assert cli(tmp_path, "ingest", str(tmp_path / "empty.csv")) == 1
    assert "rentlake clean" not in capsys.readouterr().out


def test_cli_map_and_quarantine_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a header no alias knows ("taille"), mapped on the command line
    (tmp_path / "mine.csv").write_bytes(b"prix,taille\n1000,30\n1000,30\n90000,30\n")
    assert cli(tmp_path, "ingest", str(tmp_path / "mine.csv"), "--map", "taille=surface_m2") == 0
    assert cli(tmp_path, "clean") == 0
    capsys.readouterr()
    # WHEN the quarantine is listed for one reason
    assert cli(tmp_path, "quarantine", "--reason", "duplicate", "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    # THEN the duplicate row is listed with its source and line
    assert listing["total_rows"] == 1 and listing["counts"] == {"duplicate": 1}
    (row,) = listing["rows"]
    assert (row["source_key"], row["source_row"], row["reasons"]) == ("landing/mine.csv", 2, "duplicate")
    # AND a map naming no field is refused before anything runs
    assert cli(tmp_path, "ingest", str(tmp_path / "mine.csv"), "--map", "taille=size") == 2


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    from rentlake import __version__
    from rentlake.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"rentlake {__version__}"
