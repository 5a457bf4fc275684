"""Parsing of landed objects into raw rows: the ingest stage's rules (bytes in, frames and a report out;
no I/O).

Accepted: CSV (comma, semicolon, tab or pipe; decimal comma; UTF-8, Latin-1 or a mix of both),
JSON Lines and Parquet. The header is mapped onto a dataset contract; every value is kept as the string
received (typing is the cleaning stage's job), so the raw zone holds the data as it came.

An object is either rejected whole (:class:`Rejected`, with a reason code and a message a person can act
on) or turned into raw rows. Rows the parser cannot split (a line with too many fields, a JSON line that
is not an object) are kept as raw rows with ``raw_problem`` set, so cleaning quarantines them with a
reason instead of losing them. The stage that drives this over the lake is :mod:`rentlake.stages.ingest`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rentlake import contracts
from rentlake.contracts import HeaderMapping

DELIMITERS = (",", ";", "\t", "|")
# Lineage columns every raw (and clean) row carries back to its source object.
LINEAGE = ["source_key", "source_etag", "source_sha256", "source_row"]
MAX_FIELD_CHARS = 10_000
# pyarrow's own default: larger blocks cost memory (16 MB blocks: +110 MB RSS per million rows)
_BLOCK = 1 << 20
# Magic numbers of formats people drop by mistake.
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a ZIP archive (an .xlsx spreadsheet is one: export it as CSV)",
    b"\x1f\x8b": "a gzip archive (decompress it first)",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document (export it as CSV)",
}


class Rejected(ValueError):
    """The whole object is rejected; ``code`` is a stable reason code, the message says why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Parsed:
    """An object turned into raw rows."""

    dataset: str
    mapping: HeaderMapping
    format: str
    chunks: Iterator[pd.DataFrame]
    details: dict[str, Any] = field(default_factory=dict)
    # Whether numbers are written with a decimal comma ("1 200,50"): decided here, from the file, and
    # recorded with the ingestion for the cleaning stage, which types the values.
    decimal_comma: bool = False


def ingestion_id_of(data: bytes) -> tuple[str, str]:
    """The ingestion id and sha256 of an object's content: the same content ingested twice is one batch."""
    sha = hashlib.sha256(data).hexdigest()
    return sha[:20], sha


def raw_dtype(contract: contracts.Contract) -> dict[str, str]:
    """Athena types of the raw table: every value as the string received, lineage included."""
    dtype = {c: "string" for c in contract.column_names}
    dtype.update({"extra": "string", "raw_problem": "string", **dict.fromkeys(LINEAGE, "string")})
    dtype["source_row"] = "bigint"
    return dtype


def _decode(data: bytes) -> tuple[str, str]:
    """Decode text that may be UTF-8, Latin-1 (Windows-1252) or a mix of both, line by line; returns the
    text and the encoding found (``utf-8``, ``latin-1`` or ``mixed utf-8/latin-1``)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    out: list[str] = []
    n_utf8 = 0  # lines that are non-ASCII UTF-8: with some Latin-1 lines, the file mixes both
    for line in lines:
        try:
            out.append(line.decode("utf-8"))
            if any(b > 127 for b in line):
                n_utf8 += 1
        except UnicodeDecodeError:
            out.append(line.decode("cp1252", errors="replace"))
    return "\n".join(out), ("mixed utf-8/latin-1" if n_utf8 else "latin-1")


def _check_binary(data: bytes, name: str) -> None:
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise Rejected("binary_content", f"{name} is {what}, not CSV, JSON Lines or Parquet")
    head = data[: 1 << 16]
    if b"\x00" in head:
        raise Rejected("binary_content", f"{name} holds binary data (NUL bytes): not a text table")


def _longest_line(data: bytes, window: int = 16 << 20) -> int:
    """Length of the longest line, scanning in windows (bounded memory, numpy speed)."""
    longest = 0
    last_nl = -1
    for start in range(0, len(data), window):
        part = np.frombuffer(data, dtype=np.uint8, count=min(window, len(data) - start), offset=start)
        nl = np.flatnonzero(part == 10) + start
        if nl.size:
            longest = max(longest, int(nl[0] - last_nl), int(np.diff(nl).max(initial=0)))
            last_nl = int(nl[-1])
    return max(longest, len(data) - last_nl)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _split_header(line: str, delimiter: str, *, strip: bool = True) -> list[str]:
    names = next(csv.reader([line], delimiter=delimiter))
    return [h.strip() for h in names] if strip else names


def _choose_delimiter(line: str, dataset: str | None) -> tuple[str, list[str], HeaderMapping]:
    best: tuple[str, list[str], HeaderMapping] | None = None
    for delim in DELIMITERS:
        header = _split_header(line, delim)
        if dataset is not None:
            mapping: HeaderMapping | None = contracts.get(dataset).map_header(header)
            if mapping is not None and not mapping.ok:
                mapping = None
        else:
            mapping = contracts.detect(header)
        if mapping is not None and (best is None or len(mapping.columns) > len(best[2].columns)):
            best = (delim, header, mapping)
    if best is None:
        for delim in DELIMITERS:
            header = _split_header(line, delim)
            for contract in [contracts.get(dataset)] if dataset else contracts.all_contracts():
                mapping = contract.map_header(header)
                if mapping.ambiguous and not mapping.missing_required:
                    raise Rejected(
                        "ambiguous_header",
                        f"several columns of the header {header[:12]} mean "
                        f"{', '.join(mapping.ambiguous)}: keep one of them",
                    )
        most = max(DELIMITERS, key=line.count)
        found = _split_header(line, most)[:12]
        raise Rejected("unrecognised_header", _header_message(found, dataset))
    return best


def _header_message(found: list[str], dataset: str | None) -> str:
    cands = [contracts.get(dataset)] if dataset else contracts.all_contracts()
    expected = "; ".join(
        f"{c.name} needs "
        + ", ".join(
            f"{col.name} (or {'/'.join(a.name for a in col.aliases[:4])})"
            for col in c.columns
            if col.required
        )
        for c in cands
    )
    shown = ", ".join(repr(h[:40]) for h in found)
    return f"the header {shown} matches no dataset contract: {expected}"


def _frame(df: pd.DataFrame, mapping: HeaderMapping, start_row: int) -> pd.DataFrame:
    """Rename mapped columns, pack unknown ones into ``extra`` (JSON), flag over-long fields."""
    contract = contracts.get(mapping.dataset)
    out = pd.DataFrame(index=df.index)
    problems = pd.Series(pd.NA, index=df.index, dtype="string")
    for src, canon in mapping.columns.items():
        col = df[src].astype("string")
        lengths = col.str.len()
        too_long = (lengths > MAX_FIELD_CHARS).fillna(False).to_numpy()
        if too_long.any():
            col = col.where(~too_long, col.str.slice(0, MAX_FIELD_CHARS))
            problems = problems.where(~too_long, f"field_too_long ({canon})")
        out[canon] = col
    for col in contract.column_names:
        if col not in out:
            out[col] = pd.Series(pd.NA, index=df.index, dtype="string")
    if mapping.unknown:
        extra = df[[c for c in mapping.unknown if c in df.columns]].astype("string")
        records = extra.to_dict("records")
        out["extra"] = pd.array(
            [
                json.dumps(
                    # to_dict gives a missing value as None or NA, depending on the pandas version
                    {k: (v[:MAX_FIELD_CHARS] if isinstance(v, str) else None) for k, v in r.items()},
                    ensure_ascii=False,
                )
                for r in records
            ],
            dtype="string",
        )
    else:
        out["extra"] = pd.Series(pd.NA, index=df.index, dtype="string")
    out["source_row"] = np.arange(start_row, start_row + len(df), dtype="int64")
    out["raw_problem"] = problems
    return out.reset_index(drop=True)


def _malformed_frame(
    rows: list[tuple[int, str]], mapping: HeaderMapping, *, header_lines: int
) -> pd.DataFrame:
    """Rows the parser could not split: ``rows`` holds (line number, text); the record number is the line
    number less the header lines."""
    contract = contracts.get(mapping.dataset)
    n = len(rows)
    out = pd.DataFrame({c: pd.Series([pd.NA] * n, dtype="string") for c in contract.column_names})
    out["extra"] = pd.array(
        [json.dumps({"line": text[:MAX_FIELD_CHARS]}) for _, text in rows], dtype="string"
    )
    out["source_row"] = np.array([ln - header_lines for ln, _ in rows], dtype="int64")
    out["raw_problem"] = pd.array([f"malformed_row (line {ln})" for ln, _ in rows], dtype="string")
    return out


def _parse_csv(data: bytes, name: str, dataset: str | None, chunk_rows: int) -> Parsed:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text, encoding = _decode(data)
    line = _first_line(text)
    if not line:
        raise Rejected("empty_object", f"{name} holds no text")
    delim, header, mapping = _choose_delimiter(line, dataset)
    if len(set(header)) != len(header):
        raise Rejected("ambiguous_header", f"{name} repeats a column name in its header: {header[:12]}")
    utf8 = text.encode("utf-8") if encoding != "utf-8" or data.startswith(b"\xef\xbb\xbf") else data
    # pyarrow names the columns as written (" surface" keeps its space): the string types must be keyed on
    # those names, or pyarrow infers a type and rewrites the values ("1.200" → 1.2, "007" → 7).
    as_written = _split_header(line, delim, strip=False)
    bad_rows: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((int(row.number) if row.number is not None else -1, str(row.text)))
        return "skip"

    def reader(block: int) -> Any:
        return pacsv.open_csv(
            io.BytesIO(utf8),
            read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delim, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in as_written},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    # A block must hold the longest line; measure it rather than find out halfway through the stream.
    block = max(_BLOCK, 2 * _longest_line(utf8) + 1)
    try:
        stream = reader(block)
    except pa.ArrowInvalid as exc:
        raise Rejected("unreadable", f"{name} cannot be read as CSV: {exc}") from exc

    def numbered(df: pd.DataFrame, first: int) -> pd.DataFrame:
        # Record numbers of well-formed rows skip the malformed records reported so far (the handler
        # runs while a block is parsed, before its rows are yielded), so every record has one number.
        out = _frame(df, mapping, first)
        if bad_rows:
            shifted = np.array(sorted(ln - 1 for ln, _ in bad_rows), dtype="int64")
            shifted -= np.arange(len(shifted))
            ordinals = out["source_row"].to_numpy()
            out["source_row"] = ordinals + np.searchsorted(shifted, ordinals, side="right")
        return out

    def chunks() -> Iterator[pd.DataFrame]:
        row = 1
        pending: list[pd.DataFrame] = []
        size = 0
        try:
            for batch in stream:
                df = batch.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
                df.columns = header
                pending.append(df)
                size += len(df)
                while size >= chunk_rows:
                    whole = pd.concat(pending, ignore_index=True)
                    yield numbered(whole.iloc[:chunk_rows], row)
                    row += chunk_rows
                    rest = whole.iloc[chunk_rows:]
                    pending, size = ([rest], len(rest)) if len(rest) else ([], 0)
        except pa.ArrowInvalid as exc:
            raise Rejected("unreadable", f"{name} cannot be read as CSV: {exc}") from exc
        if size:
            yield numbered(pd.concat(pending, ignore_index=True), row)
        if bad_rows:
            yield _malformed_frame(bad_rows, mapping, header_lines=1)

    return Parsed(
        mapping.dataset,
        mapping,
        "csv",
        chunks(),
        {"encoding": encoding, "delimiter": delim, "header": header},
        # A semicolon-separated file is how spreadsheets that write decimals with a comma export CSV.
        decimal_comma=delim == ";",
    )


def _parse_jsonl(data: bytes, name: str, dataset: str | None, chunk_rows: int) -> Parsed:
    text, encoding = _decode(data)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[tuple[int, str]] = []
    # Records end at "\n" only: str.splitlines would also cut a record at a U+2028 or a form feed inside
    # a string value, turning one record into two malformed ones.
    for ln, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            records.append(
                {
                    str(k): (
                        None if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                    )
                    for k, v in obj.items()
                }
            )
            lines.append(ln)
        else:
            bad.append((ln, line))
    if not records and not bad:
        raise Rejected("empty_object", f"{name} holds no JSON lines")
    if not records or text.lstrip().startswith("["):
        # Nothing to take a header from, or a JSON document (an array) rather than one object per line.
        raise Rejected(
            "not_json_lines",
            f"{name} is not JSON Lines: write one JSON object per line "
            '({"loyer": 1200, "surface": 30}), not a JSON array or a pretty-printed document',
        )
    header: list[str] = list(dict.fromkeys(k for r in records for k in r))
    mapping = contracts.get(dataset).map_header(header) if dataset else contracts.detect(header)
    if mapping is None or not mapping.ok:
        raise Rejected("unrecognised_header", _header_message(header[:12], dataset))

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, len(records), chunk_rows):
            df = pd.DataFrame.from_records(records[start : start + chunk_rows], columns=header)
            out = _frame(df.astype("string"), mapping, start + 1)
            out["source_row"] = np.array(lines[start : start + chunk_rows], dtype="int64")  # line = record
            yield out
        if bad:
            yield _malformed_frame(bad, mapping, header_lines=0)

    return Parsed(mapping.dataset, mapping, "jsonl", chunks(), {"encoding": encoding, "header": header})


def _parse_parquet(data: bytes, name: str, dataset: str | None, chunk_rows: int) -> Parsed:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise Rejected("unreadable", f"{name} is not a readable Parquet file: {exc}") from exc
    header = list(pf.schema_arrow.names)
    mapping = contracts.get(dataset).map_header(header) if dataset else contracts.detect(header)
    if mapping is None or not mapping.ok:
        raise Rejected("unrecognised_header", _header_message(header[:12], dataset))

    def chunks() -> Iterator[pd.DataFrame]:
        row = 1
        batches = pf.iter_batches(batch_size=chunk_rows)
        while True:
            try:  # a corrupt page shows only when its row group is read
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise Rejected("unreadable", f"{name} is not a readable Parquet file: {exc}") from exc
            if batch is None:
                return
            # Values as strings, like CSV: typing is the cleaning stage's job. Arrow types are kept until
            # then, so an integer column with nulls stays "75011", not the float "75011.0".
            df = batch.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
            yield _frame(df, mapping, row)
            row += len(df)

    return Parsed(mapping.dataset, mapping, "parquet", chunks(), {"header": header})


def parse_object(
    data: bytes,
    name: str,
    *,
    dataset: str | None = None,
    chunk_rows: int = 250_000,
    max_bytes: int = 512 << 20,
) -> Parsed:
    """Turn an object's bytes into raw rows.

    Parameters
    ----------
    data
        The object's content.
    name
        Its key or file name (the extension guides the format; the content decides in the end).
    dataset
        Force a dataset contract instead of recognising it from the header.
    chunk_rows
        Rows per yielded chunk (memory stays bounded by this, not by the object size).
    max_bytes
        Objects larger than this are rejected whole.

    Returns
    -------
    Parsed
        The dataset, header mapping, format details and a lazy iterator of raw chunks.

    Raises
    ------
    Rejected
        When the object as a whole cannot be ingested (empty, binary, unknown header, ...).
    """
    if len(data) > max_bytes:
        raise Rejected("too_large", f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    if not data.strip():
        raise Rejected("empty_object", f"{name} is empty")
    lower = name.lower()
    if data.startswith(b"PAR1") or lower.endswith((".parquet", ".pq")):
        return _parse_parquet(data, name, dataset, chunk_rows)
    _check_binary(data, name)
    if lower.endswith((".jsonl", ".ndjson", ".json")) or data.lstrip()[:1] == b"{":
        return _parse_jsonl(data, name, dataset, chunk_rows)
    return _parse_csv(data, name, dataset, chunk_rows)
