"""Parsing landed objects into raw rows: formats, encodings, headers and objects rejected whole."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from rentlake.parsing import Rejected, parse_object


def rows(data: bytes, name: str = "listings.csv", **kw: object) -> pd.DataFrame:
    parsed = parse_object(data, name, **kw)  # type: ignore[arg-type]
    chunks = list(parsed.chunks)
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def test_course_file_maps_french_header_and_keeps_every_row(sample_bytes) -> None:
    # GIVEN the course's file, header "loyer,surface"
    data = sample_bytes("house_intact.csv")
    # WHEN it is parsed
    parsed = parse_object(data, "house_intact.csv")
    df = pd.concat(list(parsed.chunks))
    # THEN it is recognised as listings, every data row is kept, values as received
    assert parsed.dataset == "listings"
    assert parsed.mapping.columns == {"loyer": "rent_eur", "surface": "surface_m2"}
    assert len(df) == 545
    assert df["rent_eur"].iloc[0] == "1330" and df["surface_m2"].iloc[0] == "37"
    assert df["source_row"].tolist() == list(range(1, 546))


def test_semicolon_latin1_decimal_comma_and_unknown_columns() -> None:
    # GIVEN a French spreadsheet export: semicolons, Latin-1, decimal commas, an extra column
    data = "Loyer mensuel;Surface (m²);Arrondissement;Commentaire\n1 200,50;30,5;11e;très clair\n".encode(
        "latin-1"
    )
    # WHEN parsed
    parsed = parse_object(data, "export.csv")
    df = pd.concat(list(parsed.chunks))
    # THEN the delimiter and encoding are found, and the unknown column is kept, not dropped
    assert parsed.details["delimiter"] == ";" and parsed.details["encoding"] == "latin-1"
    assert df.loc[0, "rent_eur"] == "1 200,50" and df.loc[0, "district"] == "11e"
    assert json.loads(df.loc[0, "extra"]) == {"Commentaire": "très clair"}
    assert parsed.mapping.unknown == ["Commentaire"]


def test_mixed_encodings_are_decoded_line_by_line() -> None:
    # GIVEN a file whose lines were appended by tools with different encodings
    data = b"loyer,surface,quartier\n" + "900,20,Opéra\n".encode() + "950,21,Gobelins é\n".encode("latin-1")
    # WHEN parsed
    parsed = parse_object(data, "mixed.csv")
    df = pd.concat(list(parsed.chunks))
    # THEN both lines keep their accents
    assert parsed.details["encoding"].startswith("mixed")
    assert df["district"].tolist() == ["Opéra", "Gobelins é"]


def test_json_lines_with_a_broken_line_keeps_it_as_malformed() -> None:
    # GIVEN JSON Lines with English names and one line that is not JSON
    data = b'{"price": 1200, "area": 30}\n{"price": 900, "area": 25, "district": "75011"}\nnot json\n'
    # WHEN parsed
    df = rows(data, "listings.jsonl")
    # THEN the good lines are rows and the broken one is kept with its problem
    assert df["rent_eur"].tolist()[:2] == ["1200", "900"]
    assert df["raw_problem"].iloc[2] == "malformed_row (line 3)"
    assert df["source_row"].tolist() == [1, 2, 3]
    assert json.loads(df["extra"].iloc[2]) == {"line": "not json"}


def test_parquet_values_become_strings() -> None:
    # GIVEN a Parquet file with numeric columns
    buf = io.BytesIO()
    pd.DataFrame({"rent": [1000.0, 1500.5], "surface": [25, 40]}).to_parquet(buf)
    # WHEN parsed
    df = rows(buf.getvalue(), "listings.parquet")
    # THEN the values are kept as received, as strings
    assert df["rent_eur"].tolist() == ["1000.0", "1500.5"]
    assert df["surface_m2"].tolist() == ["25", "40"]


def test_line_with_too_many_fields_is_kept_as_malformed() -> None:
    # GIVEN a CSV with one line holding an extra field
    data = b"loyer,surface\n1000,30\n1200,40,oops\n900,20\n"
    # WHEN parsed
    df = rows(data)
    # THEN the two good rows and the malformed one are all there, each with its own record number
    assert len(df) == 3
    assert df["raw_problem"].dropna().tolist() == ["malformed_row (line 3)"]
    assert sorted(df["source_row"]) == [1, 2, 3]
    assert df.loc[df["rent_eur"] == "900", "source_row"].item() == 3


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"", "empty.csv", "empty_object"),
        (b"   \n\n", "blank.csv", "empty_object"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "photo.csv", "binary_content"),
        (bytes(range(256)) * 10, "garbage.bin", "binary_content"),
        (b"PK\x03\x04rest-of-zip", "listings.xlsx", "binary_content"),
        (b"city,population\nParis,2100000\n", "other.csv", "unrecognised_header"),
        (b"loyer:surface\n1000:30\n", "colons.csv", "unrecognised_header"),
        (b"loyer,loyer,surface\n1,2,3\n", "dup.csv", "ambiguous_header"),
        (b"PAR1 not really parquet", "broken.parquet", "unreadable"),
    ],
)
def test_objects_rejected_whole_with_a_reason(data: bytes, name: str, code: str) -> None:
    # GIVEN an object that is not a table of listings
    # WHEN parsed THEN it is rejected whole with a stable reason code and a message
    with pytest.raises(Rejected) as info:
        rows(data, name)
    assert info.value.code == code
    assert info.value.message


def test_unrecognised_header_message_says_what_is_expected() -> None:
    with pytest.raises(Rejected) as info:
        rows(b"foo,bar\n1,2\n")
    assert "'foo', 'bar'" in info.value.message and "rent_eur" in info.value.message


def test_one_50_mb_line_does_not_crash_and_is_flagged() -> None:
    # GIVEN a 50 MB field on one line
    data = b"loyer,surface\n" + b"9" * 50_000_000 + b",30\n1000,25\n"
    # WHEN parsed
    df = rows(data)
    # THEN both rows are there; the huge field is cut in the raw table and flagged
    assert len(df) == 2
    assert df["raw_problem"].iloc[0] == "field_too_long (rent_eur)"
    assert len(df["rent_eur"].iloc[0]) == 10_000


def test_large_file_comes_in_bounded_chunks() -> None:
    # GIVEN 25 000 rows and chunks of 10 000
    data = b"loyer,surface\n" + b"1000,30\n" * 25_000
    # WHEN parsed
    chunks = list(parse_object(data, "big.csv", chunk_rows=10_000).chunks)
    # THEN no chunk is much larger than asked and the row numbers follow on
    assert sum(len(c) for c in chunks) == 25_000
    assert all(len(c) < 20_000 for c in chunks)
    assert chunks[-1]["source_row"].iloc[-1] == 25_000


def test_header_with_spaces_keeps_values_as_written() -> None:
    # GIVEN a semicolon file whose header has spaces around the names, a rent written "1.200" (1 200 in a
    # file that writes decimals with a comma) and a district with a leading zero
    data = b"loyer ; surface ; arrondissement\n1.200 ; 30 ; 07\n950 ; 25 ; 11\n"
    # WHEN parsed
    df = rows(data)
    # THEN every value is the string received: pyarrow infers no type ("1.200" is not read as 1.2)
    assert df["rent_eur"].str.strip().tolist() == ["1.200", "950"]
    assert df["district"].str.strip().tolist() == ["07", "11"]


def test_parquet_nulls_stay_missing_and_integers_stay_integers() -> None:
    # GIVEN a Parquet file with nulls in a mapped integer column and in a column no contract knows
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "loyer": [1200.0, None],
            "surface": [30.0, 20.0],
            "arrondissement": pa.array([75011, None], pa.int64()),
            "note": ["calme", None],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    # WHEN parsed
    df = rows(buf.getvalue(), "listings.parquet")
    # THEN no row is lost, nulls are missing values, the integer is not turned into "75011.0"
    assert len(df) == 2
    assert df["district"].iloc[0] == "75011" and df["district"].isna().iloc[1]
    assert df["rent_eur"].isna().iloc[1]
    assert [json.loads(e) for e in df["extra"]] == [{"note": "calme"}, {"note": None}]


def test_json_lines_with_nested_values_and_keys_missing_in_some_records() -> None:
    # GIVEN records whose unknown keys differ, a nested value, and a string holding U+2028
    data = (
        '{"loyer": 1200, "surface": 30, "tags": ["calme", "sud"]}\n'
        '{"loyer": 900, "surface": 20, "quartier": "Belle\u2028ville"}\r\n'
    ).encode()
    # WHEN parsed
    df = rows(data, "listings.jsonl")
    # THEN each line is one record (U+2028 does not end a record), nested values are kept as JSON
    assert len(df) == 2 and df["raw_problem"].isna().all()
    assert df["source_row"].tolist() == [1, 2]
    assert df["district"].tolist()[1] == "Belle\u2028ville"
    assert json.loads(df["extra"].iloc[0]) == {"tags": '["calme", "sud"]'}
    assert json.loads(df["extra"].iloc[1]) == {"tags": None}


@pytest.mark.parametrize("data", [b"not json\n", b'{\n  "loyer": 1200,\n  "surface": 30\n}\n'])
def test_json_that_is_not_json_lines_is_rejected_saying_what_to_write(data: bytes) -> None:
    # GIVEN text that is not JSON, and one pretty-printed object (a document, not records)
    # WHEN parsed THEN it is rejected saying which shapes are read
    with pytest.raises(Rejected) as info:
        rows(data, "listings.json")
    assert info.value.code == "not_json_lines"
    assert "one JSON object per line" in info.value.message and "JSON array" in info.value.message


@pytest.mark.parametrize(
    "data",
    [
        b'[{"loyer": 1200, "surface": 30}, {"loyer": 900, "surface": 20, "note": "calme"}, 7]',
        b'\xef\xbb\xbf[\n  {"loyer": 1200, "surface": 30},\n'
        b'  {"loyer": 900, "surface": 20, "note": "calme"},\n  7\n]\n',
    ],
)
def test_a_json_array_of_records_is_read_element_by_element(data: bytes) -> None:
    # GIVEN a JSON array of records (an export's usual shape), minified or pretty-printed, with one element
    # that is no record
    # WHEN parsed
    parsed = parse_object(data, "export.json")
    df = pd.concat(list(parsed.chunks), ignore_index=True)
    # THEN every element is a row numbered by its position, the stray one kept with its problem
    assert parsed.format == "json" and parsed.dataset == "listings"
    assert df["rent_eur"].tolist()[:2] == ["1200", "900"]
    assert df["source_row"].tolist() == [1, 2, 3]
    assert json.loads(df["extra"].iloc[1]) == {"note": "calme"}
    assert df["raw_problem"].iloc[2] == "malformed_row (element 3: not a JSON object)"


def test_parquet_with_a_corrupt_page_is_rejected_not_crashed() -> None:
    # GIVEN a Parquet file whose footer is intact but whose first data page is garbage
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"loyer": [float(i) for i in range(1000)], "surface": [30.0] * 1000}), buf)
    data = bytearray(buf.getvalue())
    data[10:200] = b"\xff" * 190
    # WHEN its rows are read THEN the object is rejected whole (kept in quarantine by the stage)
    with pytest.raises(Rejected) as info:
        rows(bytes(data), "listings.parquet")
    assert info.value.code == "unreadable"


# ------------------------------------------------------------------------ the ingestion record
def _ingested_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "ingestion_id": "0123456789abcdef0123",
        "status": "ingested",
        "dataset": "listings",
        "contract_version": 3,
        "source_key": "landing/x.csv",
        "source_etag": "e",
        "source_sha256": "0" * 64,
        "size_bytes": 10,
        "raw_object": "raw/objects/ingest_date=2024-01-01/ingestion_id=0123456789abcdef0123/x.csv",
        "raw_table": "raw/listings/ingest_date=2024-01-01/ingestion_id=0123456789abcdef0123/",
        "raw_files": ["raw/listings/ingest_date=2024-01-01/ingestion_id=0123456789abcdef0123/p.parquet"],
        "ingest_date": "2024-01-01",
        "ingested_at": "2024-01-01T00:00:00+00:00",
        "rows": 2,
        "format": "csv",
        "details": {"encoding": "utf-8", "delimiter": ";"},
        "mapping": {"unit_factors": {"rent_eur": 0.5}},
    }
    doc.update(changes)
    return doc


def test_decimal_comma_is_recorded_and_derived_once_for_older_records() -> None:
    from rentlake.records import IngestedBatch, ingestion_record_from_json

    # GIVEN a semicolon-separated file parsed: the parser says how it writes decimals
    parsed = parse_object(b"loyer;surface\n1 200,50;30\n", "x.csv")
    assert parsed.decimal_comma is True
    assert parse_object(b"loyer,surface\n1200.5,30\n", "x.csv").decimal_comma is False
    # WHEN a record written before the field existed is read THEN it is derived from its delimiter
    old = ingestion_record_from_json(_ingested_doc())
    assert isinstance(old, IngestedBatch) and old.decimal_comma is True
    assert old.unit_factors == {"rent_eur": 0.5}
    # AND a record that says it explicitly is taken at its word, and round-trips
    new = IngestedBatch.from_json(_ingested_doc(decimal_comma=False))
    assert new.decimal_comma is False and IngestedBatch.from_json(new.to_json()) == new


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"rows": "2"}, "'rows'"), ({"raw_files": [1]}, "'raw_files'"), ({"status": "lost"}, "'status'")],
)
def test_a_broken_ingestion_record_names_its_field(changes: dict[str, object], field: str) -> None:
    from rentlake.records import RecordError, ingestion_record_from_json

    with pytest.raises(RecordError, match=field):
        ingestion_record_from_json(_ingested_doc(**changes))


# ------------------------------------------------------------------------ the CSV record index
def _arrow_records(data: bytes) -> tuple[list[str], list[int]]:
    """First fields of the rows pyarrow reads, and the ordinals of the records it reports malformed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bad: list[int] = []

    def on_invalid(row: object) -> str:
        bad.append(row.number)  # type: ignore[attr-defined]
        return "skip"

    reader = pacsv.open_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in "abc"}),
    )
    return [v for batch in reader for v in batch.column("a").to_pylist()], bad


@pytest.mark.parametrize("window", [3, 7, 64, 1 << 20])
def test_the_record_index_numbers_lines_as_pyarrow_splits_records(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    import numpy as np
    from rentlake import textscan

    # GIVEN CSV files mixing every line end, blank lines, quoted newlines, escaped quotes, stray quotes
    # inside fields and rows with a missing field; each row's first field names the line it starts on;
    # scanned in windows of a few bytes, so that every construct straddles a window's edge somewhere
    monkeypatch.setattr(textscan, "WINDOW", window)
    rng = random.Random(window)
    ends = [b"\n", b"\r\n", b"\r"]
    for _ in range(60):
        parts, line = [b"a,b,c\n"], 2
        for _ in range(rng.randint(0, 25)):
            while rng.random() < 0.2:
                parts.append(rng.choice(ends[1:] if parts[-1].endswith(b"\r") else ends))
                line += 1
            body, spans = rng.choice(
                [(b'"x\ny""z"', 1), (b'5"inch', 0), (b'"ab"cd', 0), (b"v", 0), (b'"q,\r\nr"', 1)]
            )
            tail = b",w" if rng.random() < 0.85 else b""
            parts.append(b"L%d," % line + body + tail + rng.choice(ends))
            line += 1 + spans
        data = b"".join(parts)
        # WHEN indexed
        index = textscan.index_records(data, ",")
        # THEN it finds pyarrow's records, and each row's line is the one written in it
        firsts, bad = _arrow_records(data)
        assert index.records == 1 + len(firsts) + len(bad)
        ordinals = [o for o in range(2, index.records + 1) if o not in bad]
        assert index.line_of(np.array(ordinals)).tolist() == [int(f[1:]) for f in firsts]


@pytest.mark.parametrize("window", [5, 64, 1 << 20])
def test_the_simple_index_is_the_record_index_of_files_laid_out_simply(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    import numpy as np
    from rentlake import textscan

    # GIVEN CSV files without quotes or blank lines: \n or \r\n line ends, a last line with or without its
    # end, lines of many lengths, accented text, a byte order mark; scanned in windows of a
    # few bytes, so that line ends straddle a window's edge
    monkeypatch.setattr(textscan, "WINDOW", window)
    rng = random.Random(window)
    for case in range(40):
        bom = textscan.BOM if case % 5 == 0 else b""
        ends = [b"\n", b"\r\n"] if case % 2 else [b"\n"]
        values = [b"1200", b"x" * rng.randint(1, 40), "é".encode(), b"y" * 300, b" "]
        lines = [b"a,b,c"] + [b",".join(rng.choices(values, k=rng.randint(1, 4))) for _ in range(30)]
        data = bom + b"".join(line + rng.choice(ends) for line in lines)
        if case % 3 == 0:
            data = data.rstrip(b"\r\n")
        start = len(bom)
        # WHEN indexed both ways
        simple = textscan.simple_index(data, start)
        full = textscan.index_records(data, ",", start)
        # THEN they agree on every record, its line, the longest record and the encoding
        assert simple is not None
        ordinals = np.arange(1, full.records + 1)
        assert (simple.records, simple.header_end_line, simple.longest, simple.non_ascii) == (
            full.records,
            full.header_end_line,
            full.longest,
            full.non_ascii,
        )
        assert simple.line_of(ordinals).tolist() == full.line_of(ordinals).tolist()


@pytest.mark.parametrize(
    "data",
    [
        b'a,b\n"1",2\n',  # a quote
        b"a,b\n1,2\n\n3,4\n",  # a blank line
        b"a,b\r\n1,2\r\n\r\n3,4\r\n",  # a blank line, Windows style
        b"\na,b\n1,2\n",  # a blank first line
        b"a,b\r1,2\r",  # lines ended by \r alone
        b"a,b\n1,2\r3,4\n",  # one \r alone
    ],
)
def test_the_simple_index_declines_what_needs_the_full_scan(data: bytes) -> None:
    from rentlake import textscan

    assert textscan.simple_index(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b"loyer,surface,ville\n1000,30,Paris\n1200,40,oops,extra\n900,20,Lyon\n950,25\n",
        b"loyer;surface;commentaire\n1 200,50;30;tr\xe8s clair\n950;25;\xc3\xa0 voir\n",
        b"loyer,surface,note\r\n1000,30,\r\n1100,31," + b"z" * 10_050 + b"\r\n1200,32,ok",
        b"\xef\xbb\xbfloyer,surface\n1000,30\n" + b"1100,31\n" * 30,
    ],
)
def test_the_simple_path_reads_as_the_full_scan_does(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from rentlake import textscan

    # GIVEN files the simple index takes (too many or too few fields, Latin-1 and UTF-8 lines, a value over
    # the 10 000-character cut, Windows line ends, a byte order mark), read in chunks of 4 rows
    assert textscan.simple_index(data, textscan.bom_length(data)) is not None
    fast = rows(data, chunk_rows=4)
    # WHEN read again without it (the full scan of quotes and line ends)
    monkeypatch.setattr(textscan, "simple_index", lambda data, start=0: None)
    full = rows(data, chunk_rows=4)
    # THEN every raw row is the same: values, cuts, problems and source rows
    pd.testing.assert_frame_equal(fast, full)


def test_raw_chunks_as_arrow_tables_are_the_frames_they_become() -> None:
    import pyarrow as pa

    # GIVEN a file with a malformed row, read in chunks of 2 rows
    data = b"loyer,surface,ville\n1000,30,Paris\n1200,40,oops,extra\n900,20,Lyon\n"
    tables = list(parse_object(data, "x.csv", chunk_rows=2).tables)
    # THEN the raw columns come in the frame's order and types, the malformed row in a table of its own
    names = ["rent_eur", "surface_m2", "district", "listed_at", "extra", "source_row", "raw_problem"]
    assert [t.column_names for t in tables] == [names] * 2
    assert all(t.schema.field("source_row").type == pa.int64() for t in tables)
    assert [t.column("source_row").to_pylist() for t in tables] == [[1, 3], [2]]
    assert tables[1].column("raw_problem").to_pylist() == ["malformed_row (line 3)"]
    assert pd.concat([t.to_pandas() for t in tables])["extra"].tolist() == [
        '{"ville": "Paris"}',
        '{"ville": "Lyon"}',
        '{"line": "1200,40,oops,extra"}',
    ]


def test_a_csv_is_read_into_raw_tables_without_importing_pandas() -> None:
    import subprocess
    import sys
    import textwrap

    # GIVEN a CSV with a column no contract knows, a value over the cut, a malformed row and a quote
    code = textwrap.dedent(
        """
        import sys
        from rentlake.parsing import parse_object
        data = (b'loyer,surface,ville\\n1000,30,"Paris"\\n1200,40,oops,extra\\n'
                b'900,20,' + b'z' * 10050 + b'\\n')
        tables = list(parse_object(data, 'x.csv').tables)
        assert sum(t.num_rows for t in tables) == 3
        print('pandas' in sys.modules)
        """
    )
    # WHEN it is read into raw tables in a fresh process
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # THEN pandas was not imported (a quarter of a second of every ingest's start)
    assert done.stdout.strip() == "False"
