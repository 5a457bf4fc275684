"""Parsing of objects into tables: the rules every file that enters goes through (no I/O).

Ingest (:mod:`rentlake.stages.ingest`) and score (:mod:`rentlake.stages.score`) read a file the same way:
:func:`open_source` recognises its format, encoding and separator, maps its header onto a dataset
contract (aliases, unit factors, and the caller's own ``column_map``), and yields it in chunks of bounded
size, each row with ``source_row``, the position a person finds it at in the file. :func:`parse_object`
turns those chunks into raw rows for the raw zone.

Accepted: CSV (comma, semicolon, tab or pipe; quoted values, newlines inside them included; decimal
comma; UTF-8, Latin-1 or a mix of both, line by line), JSON Lines, a JSON array of records, and Parquet.
Every value is kept as the string received (typing is the cleaning stage's job).

``source_row`` is the line a row starts on, counted from the line after the header for CSV (blank lines
and quoted newlines count, so the row on line 12 of a file with a one-line header is 11), the line for
JSON Lines, the element's position for a JSON array, and the row's position for Parquet.

An object is either rejected whole (:class:`Rejected`: a stable reason code and a message a person can act
on) or read to its end. A record the parser cannot split (a CSV line with too many fields, a JSON line that
is not an object) is kept as a row with ``raw_problem`` set, so cleaning quarantines it with a reason.
Memory stays bounded by the chunk size, never by the object: the bytes are read once, and no decoded copy
of the whole text is made.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rentlake import contracts, textscan
from rentlake.contracts import HeaderMapping

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

DELIMITERS = (",", ";", "\t", "|")
# Lineage columns every raw (and clean) row carries back to its source object.
LINEAGE = ["source_key", "source_etag", "source_sha256", "source_row"]
MAX_FIELD_CHARS = 10_000
# More distinct columns (or JSON keys) than this is not a table of listings: refused before reading on.
MAX_COLUMNS = 1_000
# A header line is names; under 128 KiB no name can reach the csv module's field limit either.
MAX_HEADER_BYTES = 128 * 1024 - 1
# One JSON array element held while it is parsed.
MAX_JSON_ELEMENT_CHARS = 64 << 20
# A JSON file with more keys no contract knows than this keeps in ``extra`` only the keys a record has.
SPARSE_EXTRA_KEYS = 32
# Cells of a JSON chunk held at once (rows × distinct keys): wide records come in shorter chunks.
_JSON_CHUNK_CELLS = 2_000_000
# Rows of ``extra`` turned into Python objects at once, where Arrow cannot build the JSON itself.
_JSON_SLICE = 20_000
# pyarrow's own default: larger blocks cost memory (16 MB blocks: +110 MB RSS per million rows)
_BLOCK = 1 << 20
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
# Magic numbers of formats people drop by mistake.
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a ZIP archive (an .xlsx spreadsheet is one: export it as CSV)",
    b"\x1f\x8b": "a gzip archive (decompress it first)",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document (export it as CSV)",
    b"\xff\xfe": "UTF-16 text (save it as UTF-8)",
    b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
}


class Rejected(ValueError):
    """The whole object is rejected; ``code`` is a stable reason code, the message says why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Wanted:
    """What a reader of a file asks of it.

    Parameters
    ----------
    dataset
        Force this dataset contract instead of recognising it from the header.
    column_map
        Source column → contract field (a column or one of its aliases) for headers no alias knows.
    required
        Columns that must be in the header; None: the contract's required columns. Score asks for none
        (a file without a surface gets a reason on every row, not a refusal).
    """

    dataset: str | None = None
    column_map: Mapping[str, str] | None = None
    required: tuple[str, ...] | None = None


@dataclass
class SourceChunk:
    """Rows of a source in file order: the table (columns as the header names them), each row's
    ``source_row``, and the records in the same stretch of the file the parser could not split."""

    table: Any  # pyarrow.Table
    rows: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (source_row, problem and text)


@dataclass
class Source:
    """An object opened as a table. ``mapping`` and ``details`` are final once ``chunks`` is exhausted
    (JSON records may bring new keys as they come)."""

    format: str
    header: list[str]
    mapping: HeaderMapping
    chunks: Iterator[SourceChunk]
    details: dict[str, Any] = field(default_factory=dict)
    # Whether numbers are written with a decimal comma ("1 200,50"): decided here, from the file, and
    # recorded with the ingestion for the cleaning stage, which types the values.
    decimal_comma: bool = False
    # No value is longer than this many characters (None: not known): a CSV record of L bytes holds no
    # value of more than L characters, so values need not be measured for the MAX_FIELD_CHARS cut.
    longest_value: int | None = None

    @property
    def dataset(self) -> str:
        """The dataset the header maps onto."""
        return self.mapping.dataset


@dataclass
class Parsed:
    """An object turned into raw rows (canonical columns as strings, ``extra``, ``source_row``,
    ``raw_problem``), chunk by chunk: ``tables`` as Arrow tables (what the ingest stage writes), or
    ``chunks`` as pandas frames (one or the other: both read the same iterator)."""

    source: Source
    tables: Iterator[pa.Table]

    @property
    def chunks(self) -> Iterator[pd.DataFrame]:
        """The raw chunks as pandas frames (strings as ``string`` dtype, ``source_row`` int64)."""
        return (_frame(table) for table in self.tables)

    @property
    def dataset(self) -> str:
        return self.source.dataset

    @property
    def mapping(self) -> HeaderMapping:
        return self.source.mapping

    @property
    def format(self) -> str:
        return self.source.format

    @property
    def details(self) -> dict[str, Any]:
        return self.source.details

    @property
    def decimal_comma(self) -> bool:
        return self.source.decimal_comma


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


# ------------------------------------------------------------------------------------ entry points
def open_source(
    data: bytes,
    name: str,
    wanted: Wanted | None = None,
    *,
    chunk_rows: int = 250_000,
    max_bytes: int = 512 << 20,
) -> Source:
    """Open an object as a table: format, encoding, separator and header mapping decided, rows lazily.

    Parameters
    ----------
    data
        The object's content.
    name
        Its key or file name (the extension guides the format; the content decides in the end).
    wanted
        The dataset, column map and required columns the reader asks for.
    chunk_rows
        Rows per chunk at most (memory stays bounded by this, not by the object size).
    max_bytes
        Objects larger than this are rejected whole.

    Returns
    -------
    Source
        The format, header, mapping and a lazy iterator of :class:`SourceChunk`.

    Raises
    ------
    Rejected
        When the object as a whole cannot be read (empty, binary, unknown header, too many columns...);
        also raised while iterating, for a fault found further in (a corrupt Parquet page, a JSON value
        nested too deep).
    """
    wanted = wanted or Wanted()
    if len(data) > max_bytes:
        raise Rejected("too_large", f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    start = textscan.bom_length(data)
    text = _NOT_BLANK.search(data, start)  # (no data[start:].strip(): that would copy the object)
    if text is None:
        raise Rejected("empty_object", f"{name} is empty")
    lower = name.lower()
    if data.startswith(b"PAR1") or lower.endswith((".parquet", ".pq")):
        return _open_parquet(data, name, wanted, chunk_rows)
    _check_binary(data, name)
    first = data[text.start() : text.start() + 1]
    if first == b"[":
        return _open_json(data, name, wanted, chunk_rows, start, array=True)
    if lower.endswith((".jsonl", ".ndjson", ".json")) or first == b"{":
        return _open_json(data, name, wanted, chunk_rows, start, array=False)
    return _open_csv(data, name, wanted, chunk_rows, start)


def parse_object(
    data: bytes,
    name: str,
    *,
    dataset: str | None = None,
    column_map: Mapping[str, str] | None = None,
    chunk_rows: int = 250_000,
    max_bytes: int = 512 << 20,
) -> Parsed:
    """Turn an object's bytes into raw rows (what the ingest stage writes to the raw zone).

    Parameters
    ----------
    data
        The object's content.
    name
        Its key or file name.
    dataset
        Force a dataset contract instead of recognising it from the header.
    column_map
        Source column → contract field, for headers no alias knows (``{"superficie": "surface_m2"}``).
    chunk_rows
        Rows per yielded chunk at most.
    max_bytes
        Objects larger than this are rejected whole.

    Returns
    -------
    Parsed
        The dataset, header mapping, format details and a lazy iterator of raw chunks; rows the parser
        could not split come in chunks of their own.

    Raises
    ------
    Rejected
        When the object as a whole cannot be ingested (see :func:`open_source`).
    """
    source = open_source(data, name, Wanted(dataset, column_map), chunk_rows=chunk_rows, max_bytes=max_bytes)
    return Parsed(source, _raw_tables(source, chunk_rows))


def _raw_tables(source: Source, chunk_rows: int) -> Iterator[pa.Table]:
    malformed: list[tuple[int, str]] = []
    for chunk in source.chunks:
        if chunk.table.num_rows:
            yield raw_table(chunk, source)
        malformed += chunk.malformed
        if len(malformed) >= chunk_rows:
            yield malformed_table(malformed, source.mapping)
            malformed = []
    if malformed:
        yield malformed_table(malformed, source.mapping)


def _check_binary(data: bytes, name: str) -> None:
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise Rejected("binary_content", f"{name} is {what}, not CSV, JSON or Parquet")
    if b"\x00" in data[: 1 << 16]:
        raise Rejected("binary_content", f"{name} holds binary data (NUL bytes): not a text table")


# ------------------------------------------------------------------------------------ header mapping
def _acceptable(mapping: HeaderMapping | None, wanted: Wanted) -> bool:
    if mapping is None or mapping.ambiguous:
        return False
    if wanted.required is None:
        return mapping.ok
    return all(c in mapping.factors for c in wanted.required)


def map_header(header: list[str], wanted: Wanted) -> HeaderMapping | None:
    """The mapping of a header onto the wanted contract (or the one it matches best); None if none fits."""
    if wanted.dataset is not None:
        mapping = contracts.get(wanted.dataset).map_header(header, wanted.column_map)
    else:
        mapping = contracts.detect(header, wanted.column_map)
    return mapping if _acceptable(mapping, wanted) else None


def _require_mapping(header: list[str], wanted: Wanted, name: str) -> HeaderMapping:
    if len(header) > MAX_COLUMNS:
        raise Rejected(
            "too_many_columns", f"{name} has {len(header):,} columns; the limit is {MAX_COLUMNS:,}"
        )
    mapping = map_header(header, wanted)
    if mapping is not None:
        return mapping
    _raise_ambiguous(header, wanted)
    if wanted.required == () and wanted.dataset is not None:  # nothing required: map what is there
        return contracts.get(wanted.dataset).map_header(header, wanted.column_map)
    raise Rejected("unrecognised_header", _header_message(header[:12], wanted.dataset))


def _raise_ambiguous(header: list[str], wanted: Wanted) -> None:
    cands = [contracts.get(wanted.dataset)] if wanted.dataset else contracts.all_contracts()
    for contract in cands:
        mapping = contract.map_header(header, wanted.column_map)
        if mapping.ambiguous and not mapping.missing_required:
            raise Rejected(
                "ambiguous_header",
                f"several columns of the header {header[:12]} mean {', '.join(mapping.ambiguous)}: "
                "keep one of them",
            )


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
    return (
        f"the header {shown} matches no dataset contract: {expected} "
        "(or name your column with --map COLUMN=FIELD)"
    )


# ------------------------------------------------------------------------------------ raw frames
def raw_table(chunk: SourceChunk, source: Source) -> pa.Table:
    """Raw rows of a chunk: mapped columns renamed, unknown ones packed into ``extra`` (JSON), every value
    as a string; a value over :data:`MAX_FIELD_CHARS` is cut and its row says so in ``raw_problem``.

    Columns: the contract's, ``extra``, ``source_row`` (int64) and ``raw_problem``, in that order.
    """
    import pyarrow as pa

    mapping = source.mapping
    table = chunk.table
    n = table.num_rows
    problems = _Problems(n)
    # Values are measured only when one may be too long (a CSV's longest record says none can).
    measure = source.longest_value is None or source.longest_value > MAX_FIELD_CHARS
    out: dict[str, Any] = {}
    for src, canon in mapping.columns.items():
        if src in table.schema.names:
            text = _as_text(table.column(src))
            out[canon] = _cut(text, canon, problems, "field_too_long") if measure else text
    for col in contracts.get(mapping.dataset).column_names:
        out.setdefault(col, pa.nulls(n, pa.string()))
    index = {name: i for i, name in enumerate(table.column_names)}  # by name: a lookup per column
    extra = {c: _as_text(table.column(index[c])) for c in mapping.unknown if c in index}
    if extra and measure and _longest(extra.values()) > MAX_FIELD_CHARS:
        extra = {c: _cut(col, c, problems, "extra_value_cut") for c, col in extra.items()}
    # JSON records of many keys are sparse: the absent ones are left out rather than written as null.
    sparse = source.format in ("json", "jsonl") and len(extra) > SPARSE_EXTRA_KEYS
    out["extra"] = _extra_json(extra, n, sparse=sparse)
    out["source_row"] = int64_array(chunk.rows)
    out["raw_problem"] = problems.array()
    return pa.table(out)


def raw_frame(chunk: SourceChunk, source: Source) -> pd.DataFrame:
    """:func:`raw_table` as a pandas frame (strings as ``string`` dtype, ``source_row`` int64)."""
    return _frame(raw_table(chunk, source))


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array of numpy values, sharing their memory (``pa.array`` would import pandas to
    check for a pandas object, a quarter of a second the ingest of a CSV does not need otherwise)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def string_array(values: list[str | None]) -> pa.Array:
    """An Arrow string array of Python strings (None: null), built from its buffers (``pa.array`` would
    import pandas to check its argument: a quarter of a second for the few malformed rows of a CSV)."""
    import pyarrow as pa

    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    data = b"".join(encoded)
    if len(data) >= 2**31:  # beyond int32 offsets: let Arrow say so
        return pa.array(values, pa.string())
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = len(values) - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(data), bitmap, nulls)


def scalar(value: str | int | bool) -> pa.Scalar:
    """An Arrow scalar of a Python value for a compute function, taken from an array built from buffers
    (the conversion of a Python value imports pandas, as :func:`string_array` says)."""
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(bytes([value]))])[0]
    if isinstance(value, int):
        return int64_array(np.array([value], dtype=np.int64))[0]
    return string_array([value])[0]


def _frame(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    strings = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
    return table.to_pandas(types_mapper=strings.get)


class _Problems:
    """The ``raw_problem`` of each row of a chunk; held only once a row has one (most chunks have none)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: np.ndarray | None = None

    def note(self, rows: np.ndarray, problem: str, *, first_only: bool = False) -> None:
        """Set ``problem`` on the rows of the boolean mask ``rows`` (``first_only``: where none is set)."""
        if self.values is None:
            self.values = np.full(self.n, None, dtype=object)
        if first_only:
            rows = rows & (self.values == None)  # noqa: E711 - elementwise
        self.values[rows] = problem

    def array(self) -> pa.Array:
        import pyarrow as pa

        if self.values is None:
            return pa.nulls(self.n, pa.string())
        return string_array(self.values.tolist())


def _as_text(column: Any) -> Any:
    """A column as strings: text as it is, other types as pandas writes them ("1000.0", "75011")."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    import pandas as pd

    text = column.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    return pa.array(text.array, pa.string())


def _cut(column: Any, label: str, problems: _Problems, code: str) -> Any:
    """``column`` with values over :data:`MAX_FIELD_CHARS` cut, each such row noted in ``problems``.

    A value cut in a contract column makes the row unusable (cleaning quarantines it, whatever else is
    noted); a value cut in a column no contract knows is only noted: the raw copy of the object keeps it.
    """
    import pyarrow.compute as pc

    too_long = pc.fill_null(pc.greater(pc.utf8_length(column), scalar(MAX_FIELD_CHARS)), scalar(False))
    if not pc.any(too_long).as_py():
        return column
    # By the rows' indices, read from their buffer: pyarrow's to_numpy imports pandas.
    rows = pc.indices_nonzero(too_long)
    rows = rows.combine_chunks() if hasattr(rows, "combine_chunks") else rows
    mask = np.zeros(len(too_long), dtype=bool)
    mask[np.frombuffer(rows.buffers()[1], dtype=np.uint64, count=len(rows), offset=rows.offset * 8)] = True
    problems.note(mask, f"{code} ({label})", first_only=code != "field_too_long")
    return pc.if_else(too_long, pc.utf8_slice_codeunits(column, 0, MAX_FIELD_CHARS), column)


def _longest(columns: Iterable[Any]) -> int:
    """The longest value of string columns, in characters (one compute call for them all)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = [c.cast(pa.string()) for col in columns for c in col.chunks]
    if not chunks:
        return 0
    longest = pc.max(pc.utf8_length(pa.chunked_array(chunks, pa.string()))).as_py()
    return int(longest or 0)


def _extra_json(extra: dict[str, Any], n: int, *, sparse: bool = False) -> Any:
    """The ``extra`` column: per row, a JSON object of the columns no contract knows (null without any);
    ``sparse`` leaves out the null values (the cost is then the values present, not rows × columns)."""
    import pyarrow as pa

    if not extra:
        return pa.nulls(n, pa.string())
    if not sparse and not any(_has_control_characters(col) for col in extra.values()):
        return _dense_json(extra)
    parts = []
    for start in range(0, n, _JSON_SLICE):  # Python objects for a slice of rows at a time
        part = {k: col.slice(start, _JSON_SLICE) for k, col in extra.items()}
        rows = _present(part) if sparse else pa.table(part).to_pylist()
        parts.append(pa.array([json.dumps(r, ensure_ascii=False) for r in rows], pa.string()))
    return pa.chunked_array(parts, pa.string())


def _has_control_characters(column: Any) -> bool:
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring_regex(column, "[\\x00-\\x1f]")).as_py())


def _dense_json(extra: dict[str, Any]) -> Any:
    """``json.dumps(row, ensure_ascii=False)`` of every row, built column by column in Arrow (text without
    control characters: only backslashes and quotes are escaped)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fragments = []
    for key, column in extra.items():
        name = json.dumps(key, ensure_ascii=False)
        escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        quoted = pc.binary_join_element_wise(scalar(f'{name}: "'), escaped, scalar('"'), scalar(""))
        fragments.append(pc.fill_null(quoted, scalar(f"{name}: null")))
    body = pc.binary_join_element_wise(*fragments, scalar(", ")) if len(fragments) > 1 else fragments[0]
    return pc.binary_join_element_wise(scalar("{"), body, scalar("}"), scalar("")).cast(pa.string())


def _present(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row, the non-null values of the columns."""
    n = len(next(iter(extra.values())))
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, column in extra.items():
        present = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
        for i, value in zip(present.tolist(), column.drop_null().to_pylist(), strict=True):
            rows[i][key] = value
    return rows


def malformed_table(rows: list[tuple[int, str]], mapping: HeaderMapping) -> pa.Table:
    """Raw rows for records the parser could not split: ``rows`` holds (source_row, problem and text);
    the columns of :func:`raw_table`, the contract's all null and the record's text in ``extra``."""
    import pyarrow as pa

    contract = contracts.get(mapping.dataset)
    n = len(rows)
    out: dict[str, Any] = {c: pa.nulls(n, pa.string()) for c in contract.column_names}
    texts = [text.split("\n", 1) for _, text in rows]
    out["extra"] = string_array([json.dumps({"line": t[-1][:MAX_FIELD_CHARS]}) for t in texts])
    out["source_row"] = int64_array(np.array([r for r, _ in rows], dtype="int64"))
    out["raw_problem"] = string_array([t[0] for t in texts])
    return pa.table(out)


def malformed_frame(rows: list[tuple[int, str]], mapping: HeaderMapping) -> pd.DataFrame:
    """:func:`malformed_table` as a pandas frame."""
    return _frame(malformed_table(rows, mapping))


def malformed(position: int, text: str, why: str = "", *, where: str = "line") -> str:
    """The problem and text of a record that could not be split, as :class:`SourceChunk` carries them."""
    return f"malformed_row ({where} {position}{': ' + why if why else ''})\n{text[:MAX_FIELD_CHARS]}"


# ------------------------------------------------------------------------------------ CSV
def _header_line(data: bytes, start: int, name: str) -> str:
    """The first non-blank line, decoded (a header is names: it must be short)."""
    pos = start
    while pos < len(data):
        ends = [
            i
            for i in (
                data.find(b"\n", pos, pos + MAX_HEADER_BYTES + 2),
                data.find(b"\r", pos, pos + MAX_HEADER_BYTES + 2),
            )
            if i >= 0
        ]
        end = min(ends) if ends else min(len(data), pos + MAX_HEADER_BYTES + 1)
        line = data[pos:end]
        if line.strip():
            if len(line) > MAX_HEADER_BYTES:
                raise Rejected(
                    "header_too_long",
                    f"{name}'s first line is over {MAX_HEADER_BYTES + 1:,} bytes: not a header of column "
                    "names (is the file one long line, or a binary file?)",
                )
            return textscan.decode_line(line)[0]
        pos = end + 1
    raise Rejected("empty_object", f"{name} holds no text")


def _split_header(line: str, delimiter: str, *, strip: bool = True) -> list[str]:
    try:
        names = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as exc:
        raise Rejected("unreadable_header", f"the header cannot be split into names: {exc}") from exc
    return [h.strip() for h in names] if strip else names


def _choose_delimiter(line: str, wanted: Wanted, name: str) -> tuple[str, list[str], HeaderMapping]:
    most = max(DELIMITERS, key=line.count)
    if line.count(most) + 1 > MAX_COLUMNS:
        raise Rejected(
            "too_many_columns", f"{name}'s header has over {MAX_COLUMNS:,} columns ({most!r}-separated)"
        )
    best: tuple[str, list[str], HeaderMapping] | None = None
    for delim in DELIMITERS:
        header = _split_header(line, delim)
        mapping = map_header(header, wanted)
        if mapping is not None and (best is None or len(mapping.columns) > len(best[2].columns)):
            best = (delim, header, mapping)
    if best is not None and best[2].columns:
        return best
    header = _split_header(line, most)
    return most, header, _require_mapping(header, wanted, name)


def _open_csv(data: bytes, name: str, wanted: Wanted, chunk_rows: int, start: int) -> Source:
    line = _header_line(data, start, name)
    delim, header, mapping = _choose_delimiter(line, wanted, name)
    if len(set(header)) != len(header):
        raise Rejected("ambiguous_header", f"{name} repeats a column name in its header: {header[:12]}")
    # Most files have no quote, no blank line and one line per record: their index needs no scan.
    index = textscan.simple_index(data, start)
    simple = index is not None
    if index is None:
        index = textscan.index_records(data, delim, start)
    utf8 = not index.non_ascii or textscan.is_utf8(data, start)
    details: dict[str, Any] = {"encoding": "utf-8", "delimiter": delim, "header": header}
    as_written = _split_header(line, delim, strip=False)
    reader = _CsvReader(data, start, delim, as_written, index, utf8, details, simple=simple)
    return Source(
        "csv",
        header,
        mapping,
        reader.chunks(header, chunk_rows, name),
        details,
        # A semicolon-separated file is how spreadsheets that write decimals with a comma export CSV.
        decimal_comma=delim == ";",
        longest_value=index.longest,
    )


class _CsvReader:
    """pyarrow's streaming CSV reader, with each row numbered by :class:`textscan.RecordIndex`."""

    def __init__(
        self,
        data: bytes,
        start: int,
        delim: str,
        as_written: list[str],
        index: textscan.RecordIndex,
        utf8: bool,
        details: dict[str, Any],
        *,
        simple: bool = False,
    ) -> None:
        self.index = index
        self.simple = simple  # no quote in the text: no quoted newline to look for
        self.details = details
        self.delim = delim
        self.bad: list[tuple[int, str]] = []  # (record ordinal, text) as the parser reports them
        self.cursor = 1  # ordinal of the last well-formed record numbered (the header is record 1)
        self.seen = 1  # records accounted for: the header, the rows numbered, the malformed ones
        self.stream: Any = None if utf8 else textscan.Utf8Stream(data, start)
        self.input: Any = data
        self.as_written = as_written

    def _open(self) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        def on_invalid(row: Any) -> str:
            self.bad.append((int(row.number), str(row.text)[: MAX_FIELD_CHARS + 1]))
            return "skip"

        # A block must hold the longest record (Latin-1 grows up to 3× as UTF-8).
        grow = 3 if self.stream is not None else 1
        block = max(_BLOCK, 2 * self.index.longest * grow + 1)
        # pyarrow names the columns as written (" surface" keeps its space): the string types must be keyed
        # on those names, or pyarrow infers a type and rewrites the values ("1.200" → 1.2, "007" → 7).
        return pacsv.open_csv(
            pa.BufferReader(self.input) if self.stream is None else self.stream,
            read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delim,
                newlines_in_values=not self.simple,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in self.as_written},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    def chunks(self, header: list[str], chunk_rows: int, name: str) -> Iterator[SourceChunk]:
        """Chunks of at most ``chunk_rows`` rows; the last one is held until the end, so that a quote left
        open at the end of the file can be charged to its row."""
        import pyarrow as pa

        pending: list[Any] = []
        size = 0
        try:
            for batch in self._open():
                pending.append(batch.rename_columns(header))
                size += batch.num_rows
                while size > chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield self._chunk(table.slice(0, chunk_rows))
                    rest = table.slice(chunk_rows)
                    pending, size = rest.to_batches(), rest.num_rows
        except pa.ArrowInvalid as exc:
            raise Rejected("unreadable", f"{name} cannot be read as CSV: {exc}") from exc
        if self.stream is not None:
            self.details["encoding"] = self.stream.encoding
        yield self._last_chunk(pa.Table.from_batches(pending, schema=_text_schema(header)), name)

    def _number(self, n: int) -> np.ndarray:
        """Ordinals of the next ``n`` well-formed records (the malformed ones reported are skipped)."""
        bad = np.array(sorted(o for o, _ in self.bad if o > self.cursor), dtype=np.int64)
        cand = np.arange(self.cursor + 1, self.cursor + 1 + n + bad.size, dtype=np.int64)
        ordinals = cand[~np.isin(cand, bad)][:n]
        if n:
            self.cursor = int(ordinals[-1])
        self.seen += n
        return ordinals

    def _rows(self, ordinals: np.ndarray) -> np.ndarray:
        return self.index.line_of(ordinals) - self.index.header_end_line

    def _malformed_upto(self, last: int | None) -> list[tuple[int, str]]:
        """The malformed records reported up to ordinal ``last`` (all when None), numbered."""
        take = [(o, t) for o, t in self.bad if last is None or o <= last]
        self.bad = [(o, t) for o, t in self.bad if not (last is None or o <= last)]
        self.seen += len(take)
        lines = self.index.line_of(np.array([o for o, _ in take], dtype=np.int64)).tolist()
        end = self.index.header_end_line
        return [(ln - end, malformed(ln, t)) for ln, (_, t) in zip(lines, take, strict=True)]

    def _chunk(self, table: Any) -> SourceChunk:
        ordinals = self._number(table.num_rows)
        return SourceChunk(table, self._rows(ordinals), self._malformed_upto(self.cursor))

    def _last_chunk(self, table: Any, name: str) -> SourceChunk:
        ordinals = self._number(table.num_rows)
        unclosed: list[tuple[int, str]] = []
        open_line = self.index.unterminated_quote_line
        if open_line is not None and ordinals.size and ordinals[-1] == self.index.records:
            # The last record swallowed the rest of the file into a quoted value: it is no row.
            values = table.slice(table.num_rows - 1).to_pylist()[0].values()
            line = int(self.index.line_of(ordinals[-1:])[0])
            why = f"a quote opened on line {open_line} is never closed"
            unclosed = [(line - self.index.header_end_line, malformed(line, self.delim.join(values), why))]
            table, ordinals = table.slice(0, table.num_rows - 1), ordinals[:-1]
        chunk = SourceChunk(table, self._rows(ordinals), self._malformed_upto(None) + unclosed)
        if self.seen != self.index.records:
            # The parser and the index disagree on where records are: the numbering cannot be trusted.
            raise RuntimeError(
                f"{name}: the CSV parser read {self.seen} records where the record index found "
                f"{self.index.records}"
            )
        return chunk


def _text_schema(header: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([(h, pa.string()) for h in header])


# ------------------------------------------------------------------------------------ JSON
_WHITESPACE = re.compile(r"[ \t\n\r]*")
JsonRecord = tuple[int, Any, str]  # (position, parsed value or None, text)


def _deep(name: str, where: str) -> Rejected:
    return Rejected(
        "nesting_too_deep",
        f"{name}: {where} nests JSON values deeper than this parser goes (about "
        f"{sys.getrecursionlimit():,} levels): a listing is a flat record",
    )


def _json_lines(data: bytes, start: int, name: str, details: dict[str, Any]) -> Iterator[JsonRecord]:
    """One record per line (``\\n`` only: a U+2028 or a form feed inside a string ends nothing), with its
    line number; blank lines are skipped but counted."""
    latin = utf8 = 0
    scan = json.JSONDecoder().scan_once
    pos, line, n = start, 0, len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        line += 1
        raw, pos = data[pos:end], end + 1
        if len(raw) > MAX_JSON_ELEMENT_CHARS:
            yield line, None, f"(a line of {len(raw):,} bytes) " + raw[:MAX_FIELD_CHARS].decode("latin-1")
            continue
        if not raw.strip():
            continue
        text, how = textscan.decode_line(raw.removesuffix(b"\r"))
        if how != "ascii":
            latin, utf8 = latin + (how == "latin-1"), utf8 + (how == "utf-8")
        try:
            value = _json_value(scan, text)
        except RecursionError:
            raise _deep(name, f"line {line}") from None
        yield line, value, text
    details["encoding"] = textscan.encoding_name(latin, utf8)


def _json_value(scan: Callable[[str, int], tuple[Any, int]], text: str) -> Any:
    """The JSON value a line holds, None when it is not one JSON value (``scan``: the decoder's scanner,
    what ``json.loads`` runs without its wrapping)."""
    begin = len(text) - len(text.lstrip()) if text[:1].isspace() else 0
    try:
        value, end = scan(text, begin)
    except (ValueError, StopIteration):  # StopIteration: nothing JSON at the start
        return None
    return value if end == len(text) or not text[end:].strip() else None


class _JsonArray:
    """The elements of a JSON array, parsed one at a time from a sliding window of the text."""

    def __init__(self, data: bytes, start: int, name: str, details: dict[str, Any]) -> None:
        self.stream = textscan.Utf8Stream(data, start)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.json = json.JSONDecoder()
        self.name = name
        self.details = details
        self.buf = ""
        self.i = 0
        self.eof = False

    def _fill(self, want: int) -> None:
        """Read until ``want`` characters lie ahead, or the end; drops what is behind."""
        if self.i > 1 << 20:
            self.buf, self.i = self.buf[self.i :], 0
        while not self.eof and len(self.buf) - self.i < want:
            part = self.stream.read(max(1 << 20, want))
            self.eof = not part
            self.buf += self.decoder.decode(part or b"", final=self.eof)

    def _peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            self.i = _WHITESPACE.match(self.buf, self.i).end()  # type: ignore[union-attr]
            if self.i < len(self.buf) or self.eof:
                return self.buf[self.i : self.i + 1]
            self._fill(1 << 16)

    def _element(self, n: int) -> tuple[Any, str]:
        want = 1 << 16
        while True:
            self._fill(want)
            self._peek()
            try:
                value, end = self.json.raw_decode(self.buf, self.i)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.i > MAX_JSON_ELEMENT_CHARS:
                    msg = f"{self.name}: element {n} is not valid JSON: {exc.msg}"
                    raise Rejected("invalid_json", msg) from None
                want = 2 * (len(self.buf) - self.i) + (1 << 20)
                continue
            except RecursionError:
                raise _deep(self.name, f"element {n}") from None
            if end == len(self.buf) and not self.eof:  # a number may go on past the window
                want = 2 * (len(self.buf) - self.i) + (1 << 20)
                continue
            text = "" if isinstance(value, dict) else self.buf[self.i : min(end, self.i + MAX_FIELD_CHARS)]
            self.i = end
            return value, text

    def records(self) -> Iterator[JsonRecord]:
        """(element number, value, text) for each element."""
        self._fill(1 << 16)
        self._peek()
        self.i += 1  # the "[" open_source saw
        n = 0
        if self._peek() == "]":
            self.i += 1
        else:
            while True:
                n += 1
                yield (n, *self._element(n))
                sep = self._peek()
                self.i += 1
                if sep == "]":
                    break
                if sep != ",":
                    found = repr(sep) if sep else "the end of the file"
                    raise Rejected(
                        "invalid_json", f"{self.name}: after element {n}, expected ',' or ']', found {found}"
                    )
        if self._peek():
            raise Rejected("invalid_json", f"{self.name}: text after the end of the JSON array")
        self.details["encoding"] = self.stream.encoding


def _text(value: Any) -> str | None:
    """A JSON value as the string the raw zone keeps (nested values as JSON)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class _Block:
    """JSON records of a stretch of a chunk, grouped by their keys (most records share theirs): each
    record's values are held as one tuple until the block becomes an Arrow table (compact)."""

    def __init__(self, seen: dict[str, None], new_key: Callable[[str], None]) -> None:
        self.n = 0
        self.seen = seen
        self.new_key = new_key
        self.groups: dict[tuple[str, ...], tuple[list[int], list[tuple[Any, ...]]]] = {}

    def add(self, record: dict[str, Any]) -> None:
        shape = tuple(record)
        group = self.groups.get(shape)
        if group is None:
            for key in shape:
                if key not in self.seen:
                    self.new_key(key)
            group = self.groups[shape] = ([], [])
        group[0].append(self.n)
        group[1].append(tuple(record.values()))
        self.n += 1

    def table(self) -> Any:
        """The block's rows in order, a column per key seen so far in the file (in order of appearance)."""
        import pyarrow as pa

        found: dict[str, tuple[list[Any], list[np.ndarray]]] = {}
        for shape, (rows, values) in self.groups.items():
            at = np.asarray(rows, dtype=np.int64)
            for key, column in zip(shape, zip(*values, strict=True), strict=True):
                parts = found.setdefault(key, ([], []))
                parts[0].append(_strings(column))
                parts[1].append(at)
        columns = {}
        for key in self.seen:
            if key in found:
                values = pa.concat_arrays(found[key][0])
                where = np.full(self.n, -1, dtype=np.int64)  # row → its value in ``values``, -1: none
                where[np.concatenate(found[key][1])] = np.arange(len(values))
                columns[key] = values.take(pa.array(where, mask=where < 0))
        return pa.table(columns) if columns else _no_columns(self.n)


def _strings(values: tuple[Any, ...]) -> Any:
    """A column of JSON values as strings (nested values as JSON)."""
    import pyarrow as pa

    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # numbers, booleans, nested values
        return pa.array([v if v is None or type(v) is str else _text(v) for v in values], pa.string())


def _no_columns(n: int) -> Any:
    import pyarrow as pa

    return pa.table({"": pa.nulls(n, pa.string())}).drop_columns([""])


class _JsonGather:
    """JSON records gathered into chunks of at most ``chunk_rows`` rows (fewer when records are wide)."""

    # Records held as Python values at once; then they become Arrow (compact).
    BLOCK_ROWS = 50_000

    def __init__(self, records: Iterator[JsonRecord], name: str, chunk_rows: int, where: str) -> None:
        self.records = records
        self.name = name
        self.chunk_rows = chunk_rows
        self.where = where  # "line" or "element"
        self.keys: dict[str, None] = {}  # every key seen, in order of appearance
        self.objects = 0
        self.limit = chunk_rows

    def _new_key(self, key: str) -> None:
        self.keys[key] = None
        if len(self.keys) > MAX_COLUMNS:
            raise Rejected(
                "too_many_columns",
                f"{self.name}'s records have over {MAX_COLUMNS:,} distinct keys (the {MAX_COLUMNS + 1:,}th: "
                f"{key[:40]!r}): not a table of listings",
            )
        self.limit = min(self.chunk_rows, max(1_000, _JSON_CHUNK_CELLS // len(self.keys)))

    def next_chunk(self) -> SourceChunk | None:
        """The next chunk, None at the end."""
        import pyarrow as pa

        rows: list[int] = []
        bad: list[tuple[int, str]] = []
        tables: list[Any] = []
        block = _Block(self.keys, self._new_key)
        for pos, value, text in self.records:
            if type(value) is dict:
                rows.append(pos)
                block.add(value)
                if block.n >= self.BLOCK_ROWS:
                    tables.append(block.table())
                    block = _Block(self.keys, self._new_key)
            else:
                why = "" if value is None else "not a JSON object"
                bad.append((pos, malformed(pos, text, why, where=self.where)))
            if len(rows) + len(bad) >= self.limit:
                break
        self.objects += len(rows)
        if not rows and not bad:
            return None
        if block.n or not tables:
            tables.append(block.table())
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        return SourceChunk(table, np.array(rows, dtype=np.int64), bad)


def _open_json(data: bytes, name: str, wanted: Wanted, chunk_rows: int, start: int, *, array: bool) -> Source:
    details: dict[str, Any] = {"encoding": "utf-8", "shape": "array" if array else "lines"}
    records = (
        _JsonArray(data, start, name, details).records() if array else _json_lines(data, start, name, details)
    )
    gather = _JsonGather(records, name, chunk_rows, "element" if array else "line")
    first = gather.next_chunk()  # the header is the first chunk's keys (later keys join as they come)
    if first is None:
        raise Rejected("empty_object", f"{name} holds no JSON records")
    if not gather.objects:
        raise Rejected(
            "not_json_lines",
            f"{name} holds no JSON object: write one JSON object per line "
            '({"loyer": 1200, "surface": 30}) or a JSON array of such objects, not a pretty-printed '
            "document",
        )
    header = list(gather.keys)
    details["header"] = header
    mapping = _require_mapping(header, wanted, name)
    source = Source("json" if array else "jsonl", header, mapping, iter(()), details)
    fixed = Wanted(mapping.dataset, wanted.column_map, wanted.required)
    source.chunks = _json_chunks(source, first, gather, fixed, name)
    return source


def _json_chunks(
    source: Source, first: SourceChunk, gather: _JsonGather, wanted: Wanted, name: str
) -> Iterator[SourceChunk]:
    chunk: SourceChunk | None = first
    while chunk is not None:
        if len(gather.keys) != len(source.header):  # new keys: map them too (two names of one column: no)
            source.header = list(gather.keys)
            source.details["header"] = source.header
            source.mapping = _require_mapping(source.header, wanted, name)
        yield chunk
        chunk = gather.next_chunk()


# ------------------------------------------------------------------------------------ Parquet
def _open_parquet(data: bytes, name: str, wanted: Wanted, chunk_rows: int) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise Rejected("unreadable", f"{name} is not a readable Parquet file: {exc}") from exc
    header = list(pf.schema_arrow.names)
    if len(set(header)) != len(header):
        raise Rejected("ambiguous_header", f"{name} repeats a column name: {header[:12]}")
    mapping = _require_mapping(header, wanted, name)
    return Source("parquet", header, mapping, _parquet_chunks(pf, name, chunk_rows), {"header": header})


def _parquet_chunks(pf: Any, name: str, chunk_rows: int) -> Iterator[SourceChunk]:
    import pyarrow as pa

    row = 1
    batches = pf.iter_batches(batch_size=chunk_rows)
    while True:
        try:  # a corrupt page shows only when its row group is read
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise Rejected("unreadable", f"{name} is not a readable Parquet file: {exc}") from exc
        if batch is None:
            return
        table = _text_columns(pa.Table.from_batches([batch]), name)
        yield SourceChunk(table, np.arange(row, row + table.num_rows, dtype=np.int64))
        row += table.num_rows


def _text_columns(table: Any, name: str) -> Any:
    """Binary columns as UTF-8 text (other types are kept: values become strings in the raw frame)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, fld in enumerate(table.schema):
        kind = fld.type.value_type if pa.types.is_dictionary(fld.type) else fld.type
        if not (
            pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
        ):
            continue
        column = table.column(i)
        if pa.types.is_dictionary(fld.type):
            column = pc.cast(column, kind)
        try:
            text = pc.cast(column, pa.large_string() if pa.types.is_large_binary(kind) else pa.string())
        except pa.ArrowInvalid as exc:
            raise Rejected(
                "not_utf8",
                f"column {fld.name!r} of {name} holds bytes that are not UTF-8 text: write it as a string "
                "column",
            ) from exc
        table = table.set_column(i, fld.name, text)
    return table
