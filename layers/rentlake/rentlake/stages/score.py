"""The score stage: a file of listings -> the same rows with ``rent_eur``, ``low``, ``high`` and ``problem``.

What the ``score`` function runs (:func:`run`): each file named by the event is scored with the champion
(:func:`score_object`). A file that cannot be scored (format, content, missing, no champion) is an answer
with its ``error`` (and ``reason`` code), not a failure; any other lake error fails the invocation, so
that Lambda retries the event instead of reporting a file as done that was never scored. An unexpected
fault in one file is that file's ``internal_error`` (its trace logged), and the next file is scored.

The file is read as ingest reads it (:func:`rentlake.parsing.open_source`): CSV (any separator, quoted
newlines, UTF-8 or Latin-1), JSON Lines, a JSON array of records or Parquet; the header is mapped onto the
listings contract (``surface``, ``superficie``, ``sqft``... and the request's ``column_map``), and the
surface is read with the file's decimal comma and unit. Batch side (pandas and pyarrow allowed), in chunks
of ``chunk_rows`` rows, each one onnxruntime call on its valid rows (money rounded to the whole euro, as
in the API). One row comes out per row in, in order: a row whose surface is missing, not a number, not
finite, not positive or absurd (over 10 000 m²), or a record the parser could not split, keeps empty
estimates and says why in ``problem``.

Output, under ``scored/``: ``<stem>.scored.parquet`` always, ``<stem>.scored.csv`` when the input was CSV,
and ``<stem>.scored.json`` (counts, model version, outputs). The source columns keep their names and
values (Parquet types too); former ``rent_eur``/``low``/``high``/``problem`` columns are replaced.

In the CSV output a text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading ``'`` (OWASP's CSV-injection rule). A cell that
is a plain number (``-3``, ``+12.5``) is left as it is: a spreadsheet reads it as that number, and the
surfaces and estimates a user checks must stay numbers.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rentlake.cleaning import coerce_number
from rentlake.contracts import HeaderMapping
from rentlake.contracts.ranges import SURFACE_RANGE
from rentlake.events import ScoreRequest
from rentlake.lake import Lake, LakeError, ObjectNotFound, keys, safe_name
from rentlake.parsing import Rejected, Source, SourceChunk, Wanted, open_source
from rentlake.runtime.champion import ChampionCache, LoadedModel
from rentlake.runtime.errors import ModelUnavailable

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
MIN_SURFACE_M2, MAX_SURFACE_M2 = SURFACE_RANGE
OUT_OF_RANGE = f"surface_m2 must be between {MIN_SURFACE_M2:g} and {MAX_SURFACE_M2:g} m²"
MAX_OBJECT_BYTES = 512 << 20
ESTIMATE_COLUMNS = ("rent_eur", "low", "high", "problem")
EXTENSIONS = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
# A cell a spreadsheet would evaluate; a plain number is exempt.
_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$"
_NAN_WORDS = ("nan", "+nan", "-nan")


class ScoringError(ValueError):
    """The file cannot be scored at all (unsupported format, unreadable); ``reason`` is a stable code."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ScoreResult:
    """What one scored file produced."""

    input_key: str
    model_version: str
    rows: int = 0
    scored_rows: int = 0
    problem_rows: int = 0
    outputs: list[str] = field(default_factory=list)
    report_key: str = ""
    scored_at: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # source column → contract column used

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON."""
        return asdict(self)


@dataclass
class ScoreRun:
    """What one invocation answered: per file, its result or its ``error``."""

    scored: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows scored (with an estimate or a problem) over every file."""
        return sum(int(r.get("rows", 0)) for r in self.scored)

    @property
    def errors(self) -> int:
        """Files that could not be scored."""
        return sum("error" in r for r in self.scored)

    def to_dict(self) -> dict[str, Any]:
        """The function's answer."""
        return {"scored": self.scored}


def run(champion: ChampionCache, request: ScoreRequest, *, chunk_rows: int = CHUNK_ROWS) -> ScoreRun:
    """Score every file a request names with the champion (what the ``score`` handler calls).

    Parameters
    ----------
    champion
        The function's champion cache (its lake is the lake the files are read from and written to).
    request
        The keys to score, and the column map of headers no alias knows.
    chunk_rows
        Rows per inference call.

    Returns
    -------
    ScoreRun
        One entry per key: the :class:`ScoreResult` as JSON, or ``{"input_key", "error", "reason"}``.

    Raises
    ------
    LakeError
        When the lake fails otherwise than with a missing file (after its retries).
    """
    out = ScoreRun()
    for key in request.keys:
        try:
            model = champion.get()
            result = score_object(
                champion.lake, key, model, chunk_rows=chunk_rows, column_map=request.column_map
            )
            out.scored.append(result.as_dict())
        except (ScoringError, ModelUnavailable, ObjectNotFound) as exc:
            logger.error("cannot score %s: %s", key, exc)
            reason = getattr(exc, "reason", "no_model" if isinstance(exc, ModelUnavailable) else "not_found")
            out.scored.append({"input_key": key, "error": str(exc), "reason": reason})
        except LakeError:
            raise
        except Exception as exc:  # this file's fault: said in its answer, logged with its trace
            logger.exception("internal error while scoring %s", key)
            message = f"{key}: internal error: {type(exc).__name__}: {exc}"[:2000]
            out.scored.append({"input_key": key, "error": message, "reason": "internal_error"})
    return out


# ------------------------------------------------------------------------------------ rules
def surface_problems(
    raw: pd.Series, *, factor: float = 1.0, decimal_comma: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Parse surfaces and say what is wrong with each invalid one.

    Parameters
    ----------
    raw
        The surface column as read (text from a CSV or JSON, numbers from Parquet).
    factor
        Unit factor of the column (0.0929... for square feet).
    decimal_comma
        Whether the file writes decimals with a comma ("30,5").

    Returns
    -------
    tuple
        ``surface`` (float64 in m², NaN where invalid) and ``problem`` (object array, ``None`` where valid).
    """
    n = len(raw)
    nan_word = np.zeros(n, dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        num = raw.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)  # arrow-backed: read-only
        missing = np.isnan(num)
    else:
        text = raw.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
        num, _, not_finite = coerce_number(
            text, decimal_comma=decimal_comma
        )  # "30,5 m²" as cleaning reads it
        # "nan" parses as a float: name it, rather than calling it "not a number" or "missing".
        nan_word = text.str.lower().isin(_NAN_WORDS).fillna(False).to_numpy(dtype=bool)
        num[not_finite & ~nan_word] = np.inf
    num = num * factor
    problem = np.full(n, None, dtype=object)
    with np.errstate(invalid="ignore"):
        problem[np.isnan(num) & ~missing & ~nan_word] = "surface_m2 is not a number"
        problem[missing] = "surface_m2 is missing"
        problem[nan_word] = "surface_m2 is NaN"
        problem[np.isinf(num)] = "surface_m2 is not finite"
        # The contract's domain, as cleaning and the API apply it: a surface they refuse is not estimated.
        problem[np.isfinite(num) & ((num < MIN_SURFACE_M2) | (num > MAX_SURFACE_M2))] = OUT_OF_RANGE
    bad = problem != None  # noqa: E711 - elementwise on an object array
    num[bad] = np.nan
    return num, problem


def _source_column(mapping: HeaderMapping | None, canon: str) -> str | None:
    if mapping is None:
        return canon
    return next((src for src, c in mapping.columns.items() if c == canon), None)


def score_table(
    model: LoadedModel, table: pa.Table, *, mapping: HeaderMapping | None = None, decimal_comma: bool = False
) -> pa.Table:
    """Append ``rent_eur``, ``low``, ``high`` and ``problem`` to one chunk (one inference call).

    Parameters
    ----------
    model
        The champion.
    table
        A chunk of listings: the surface column (and the district when the model uses it), named as the
        file names them.
    mapping
        How the file's header maps onto the listings contract; None: the columns are named
        ``surface_m2`` and ``district``.
    decimal_comma
        Whether the file writes decimals with a comma.

    Returns
    -------
    pyarrow.Table
        The same rows and columns (former estimate columns replaced), plus the four new ones; estimates
        are null where ``problem`` is set.
    """
    n = table.num_rows
    surface_col = _source_column(mapping, "surface_m2")
    district_col = _source_column(mapping, "district")
    if surface_col in table.column_names:
        factor = mapping.factors.get("surface_m2", 1.0) if mapping else 1.0
        raw = table.column(surface_col).to_pandas(types_mapper=pd.ArrowDtype)
        surface, problem = surface_problems(raw, factor=factor, decimal_comma=decimal_comma)
    else:
        surface = np.full(n, np.nan)
        problem = np.full(n, "no surface_m2 column in the file", dtype=object)
    district = None
    if model.uses_district and district_col in table.column_names:
        district = _districts(table.column(district_col))
    table = table.drop_columns([c for c in ESTIMATE_COLUMNS if c in table.column_names])
    return _with_estimates(model, table, surface, problem, district)


def _districts(column: pa.ChunkedArray) -> np.ndarray:
    """Districts as the contract normalises them for training ("11e" → "75011")."""
    from rentlake.contracts.listings import normalise_district

    text = column.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    return normalise_district(text).fillna("").to_numpy(dtype=object)


def _with_estimates(
    model: LoadedModel, table: pa.Table, surface: np.ndarray, problem: np.ndarray, district: np.ndarray | None
) -> pa.Table:
    n = table.num_rows
    ok = problem == None  # noqa: E711 - elementwise on an object array
    rent, low, high = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    if ok.any():
        r, lo, hi = model.predict(surface[ok], None if district is None else district[ok])
        rent[ok], low[ok], high[ok] = np.round(r), np.round(lo), np.round(hi)  # whole euros, as the API
    invalid = ~ok
    return (
        table.append_column("rent_eur", pa.array(rent, pa.float64(), mask=invalid))
        .append_column("low", pa.array(low, pa.float64(), mask=invalid))
        .append_column("high", pa.array(high, pa.float64(), mask=invalid))
        .append_column("problem", pa.array(problem.tolist(), pa.string()))
    )


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """The table as a spreadsheet may open it: text cells (and column names) that would run as a formula
    get a leading ``'``; plain numbers are kept (see the module's docstring)."""
    names = [_neutral_name(c) for c in table.column_names]
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.and_(
                pc.match_substring_regex(column, _FORMULA_START),
                pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER)),
            )
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.table(columns, names=names)


def _neutral_name(name: str) -> str:
    return "'" + name if re.match(_FORMULA_START, name) and not re.match(_PLAIN_NUMBER, name) else name


# ------------------------------------------------------------------------------------ one file
def _check_extension(key: str) -> None:
    if not key.lower().endswith(EXTENSIONS):
        raise ScoringError(
            f"{key}: only .csv and .parquet files (or JSON: .jsonl, .ndjson, .json) can be scored",
            "unsupported_format",
        )


def _unreadable(key: str, exc: Rejected) -> ScoringError:
    kind = key.lower().rsplit(".", 1)[-1]
    return ScoringError(f"{key}: cannot read the file as {kind} ({exc.message})", exc.code)


def _open(data: bytes, key: str, column_map: Mapping[str, str] | None, chunk_rows: int) -> Source:
    wanted = Wanted("listings", column_map, required=())
    try:
        return open_source(data, safe_name(key), wanted, chunk_rows=chunk_rows, max_bytes=MAX_OBJECT_BYTES)
    except Rejected as exc:
        raise _unreadable(key, exc) from exc


def _columns(
    data: bytes, key: str, column_map: Mapping[str, str] | None, chunk_rows: int
) -> list[str] | None:
    """Every column of a JSON file (its records may bring keys as they come: the output needs them all
    from its first row); None for the other formats, whose header is their first line or their schema."""
    source = _open(data, key, column_map, chunk_rows)
    if source.format not in ("json", "jsonl"):
        return None
    try:
        for _ in source.chunks:
            pass
    except Rejected as exc:
        raise _unreadable(key, exc) from exc
    return source.header


def _scored_chunks(source: Source, model: LoadedModel, columns: list[str] | None) -> Iterator[pa.Table]:
    for chunk in source.chunks:
        table = chunk.table
        if columns is not None:  # every JSON key, in order, null where a record lacks it
            n = table.num_rows
            table = pa.table(
                {c: table.column(c) if c in table.column_names else pa.nulls(n, pa.string()) for c in columns}
            )
        scored = score_table(model, table, mapping=source.mapping, decimal_comma=source.decimal_comma)
        yield _with_malformed(scored, chunk)


def _with_malformed(scored: pa.Table, chunk: SourceChunk) -> pa.Table:
    """The scored rows and the records the parser could not split, in file order (one row out per row in)."""
    if not chunk.malformed:
        return scored
    n = len(chunk.malformed)
    problems = [text.split("\n", 1)[0] for _, text in chunk.malformed]
    filler = {f.name: pa.nulls(n, f.type) for f in scored.schema}
    filler["problem"] = pa.array(problems, pa.string())
    both = pa.concat_tables([scored, pa.table(filler, schema=scored.schema)])
    rows = np.concatenate([chunk.rows, np.array([r for r, _ in chunk.malformed], dtype=np.int64)])
    return both.take(pa.array(np.argsort(rows, kind="stable")))


def score_object(
    lake: Lake,
    key: str,
    model: LoadedModel,
    *,
    chunk_rows: int = CHUNK_ROWS,
    column_map: Mapping[str, str] | None = None,
) -> ScoreResult:
    """Score one file of the lake and write the results to the ``scored/`` zone.

    Parameters
    ----------
    lake
        The lake.
    key
        The input object (CSV, JSON Lines, JSON array or Parquet), usually under ``score/``.
    model
        The champion to score with.
    chunk_rows
        Rows per chunk (bounded memory per inference call).
    column_map
        Source column → listings field, for headers no alias knows (``{"taille": "surface_m2"}``).

    Returns
    -------
    ScoreResult
        Counts, output keys and the columns used.

    Raises
    ------
    ScoringError
        When the file's format is not supported or it cannot be read at all.
    """
    _check_extension(key)
    data = lake.get_bytes(key)
    columns = _columns(data, key, column_map, chunk_rows)
    source = _open(data, key, column_map, chunk_rows)
    stem = safe_name(key).rsplit(".", 1)[0]
    result = ScoreResult(input_key=key, model_version=model.version)
    try:
        parquet, csv = _write_outputs(source, model, columns, result)
    except Rejected as exc:  # found further in: a corrupt page, a value nested too deep
        raise _unreadable(key, exc) from exc
    result.columns = dict(source.mapping.columns)
    out_pq = keys.scored_output(f"{stem}.scored.parquet")
    lake.put_bytes(out_pq, parquet)
    result.outputs.append(out_pq)
    if csv is not None:
        out_csv = keys.scored_output(f"{stem}.scored.csv")
        lake.put_bytes(out_csv, csv, content_type="text/csv")
        result.outputs.append(out_csv)
    result.scored_at = datetime.now(UTC).isoformat()
    result.report_key = keys.scored_output(f"{stem}.scored.json")
    lake.put_json(result.report_key, result.as_dict())
    logger.info("scored %s: %d rows, %d with a problem", key, result.rows, result.problem_rows)
    return result


def _write_outputs(
    source: Source, model: LoadedModel, columns: list[str] | None, result: ScoreResult
) -> tuple[bytes, bytes | None]:
    """The Parquet output, and the CSV one for a CSV input; counts go into ``result``."""
    parquet_sink = io.BytesIO()
    csv_sink = io.BytesIO() if source.format == "csv" else None
    pq_writer: pq.ParquetWriter | None = None
    csv_writer: pacsv.CSVWriter | None = None
    try:
        for scored in _scored_chunks(source, model, columns):
            if pq_writer is None:
                pq_writer = pq.ParquetWriter(parquet_sink, scored.schema)
            scored = scored.cast(pq_writer.schema)
            pq_writer.write_table(scored)
            if csv_sink is not None:
                shown = neutralise_formulas(scored)
                csv_writer = csv_writer or pacsv.CSVWriter(csv_sink, shown.schema)
                csv_writer.write_table(shown)
            ok_rows = scored.column("problem").null_count
            result.rows += scored.num_rows
            result.scored_rows += ok_rows
            result.problem_rows += scored.num_rows - ok_rows
    finally:
        if pq_writer is not None:
            pq_writer.close()
        if csv_writer is not None:
            csv_writer.close()
    if pq_writer is None:  # no row at all: still answer with an empty, well-formed output
        empty = pa.table({h: pa.array([], pa.string()) for h in source.header})
        pq.write_table(score_table(model, empty, mapping=source.mapping), parquet_sink)
    return parquet_sink.getvalue(), None if csv_sink is None else csv_sink.getvalue()
