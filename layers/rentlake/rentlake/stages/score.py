"""The score stage: a file of listings (CSV or Parquet) -> the same rows with ``rent_eur``, ``low``, ``high``.

What the ``score`` function runs (:func:`run`): each file named by the event is scored with the champion
(:func:`score_object`). A file that cannot be scored (format, content, missing, no champion) is an answer
with its ``error``, not a failure; any other lake error fails the invocation, so that Lambda retries the
event instead of reporting a file as done that was never scored.

Batch side (pandas and pyarrow allowed). The file is processed in chunks of ``chunk_rows`` rows; each
chunk is one onnxruntime call on its valid rows (money rounded to the whole euro, as in the API). A row
whose surface is missing, not a number, not finite, not positive or absurd (over 10 000 m²) keeps empty
estimates and says why in the ``problem`` column:
no row is dropped and no row stops the file.

Output, under ``scored/``: ``<stem>.scored.parquet`` always, ``<stem>.scored.csv`` when the input was CSV,
and ``<stem>.scored.json`` (counts, model version, outputs).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rentlake.events import ScoreRequest
from rentlake.lake import Lake, ObjectNotFound, keys, safe_name
from rentlake.runtime.champion import ChampionCache, LoadedModel
from rentlake.runtime.errors import ModelUnavailable

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
MAX_SURFACE_M2 = 10_000.0
ESTIMATE_COLUMNS = ("rent_eur", "low", "high", "problem")


class ScoringError(ValueError):
    """The file cannot be scored at all (unsupported format, unreadable)."""


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
        The keys to score.
    chunk_rows
        Rows per inference call.

    Returns
    -------
    ScoreRun
        One entry per key: the :class:`ScoreResult` as JSON, or ``{"input_key", "error"}``.

    Raises
    ------
    LakeError
        When the lake fails otherwise than with a missing file (after its retries).
    """
    out = ScoreRun()
    for key in request.keys:
        try:
            model = champion.get()
            out.scored.append(score_object(champion.lake, key, model, chunk_rows=chunk_rows).as_dict())
        except (ScoringError, ModelUnavailable, ObjectNotFound) as exc:
            logger.error("cannot score %s: %s", key, exc)
            out.scored.append({"input_key": key, "error": str(exc)})
    return out


def surface_problems(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse surfaces and say what is wrong with each invalid one.

    Parameters
    ----------
    raw
        The ``surface_m2`` column as read (text from a CSV, numbers from Parquet).

    Returns
    -------
    tuple
        ``surface`` (float64, NaN where invalid) and ``problem`` (object array, ``None`` where valid).
    """
    n = len(raw)
    nan_word = np.zeros(n, dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        num = raw.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)  # arrow-backed: read-only
        missing = np.isnan(num)
    else:
        text = raw.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
        num = pd.to_numeric(text.fillna(""), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        # "nan" parses as a float: name it, rather than calling it "not a number" or "missing".
        nan_word = text.str.lower().isin(["nan", "+nan", "-nan"]).fillna(False).to_numpy(dtype=bool)
    problem = np.full(n, None, dtype=object)
    with np.errstate(invalid="ignore"):
        problem[np.isnan(num) & ~missing & ~nan_word] = "surface_m2 is not a number"
        problem[missing] = "surface_m2 is missing"
        problem[nan_word] = "surface_m2 is NaN"
        problem[np.isinf(num)] = "surface_m2 is not finite"
        problem[num <= 0] = "surface_m2 must be greater than 0"
        problem[np.isfinite(num) & (num > MAX_SURFACE_M2)] = f"surface_m2 is over {MAX_SURFACE_M2:g} m²"
    bad = problem != None  # noqa: E711 - elementwise on an object array
    num[bad] = np.nan
    return num, problem


def score_table(model: LoadedModel, table: pa.Table) -> pa.Table:
    """Append ``rent_eur``, ``low``, ``high`` and ``problem`` to one chunk (one inference call).

    Parameters
    ----------
    model
        The champion.
    table
        A chunk of listings with a ``surface_m2`` column (and ``district`` when the model uses it).

    Returns
    -------
    pyarrow.Table
        The same rows and columns (former estimate columns replaced), plus the four new ones; estimates
        are null where ``problem`` is set.
    """
    n = table.num_rows
    for name in ESTIMATE_COLUMNS:  # a re-scored file: replace, never duplicate
        if name in table.column_names:
            table = table.drop_columns([name])
    if "surface_m2" in table.column_names:
        surface, problem = surface_problems(table.column("surface_m2").to_pandas())
    else:
        surface = np.full(n, np.nan)
        problem = np.full(n, "no surface_m2 column in the file", dtype=object)
    ok = problem == None  # noqa: E711 - elementwise on an object array
    rent = np.full(n, np.nan)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    if ok.any():
        district = None
        if model.uses_district and "district" in table.column_names:
            d = table.column("district").to_pandas().astype("string").fillna("").to_numpy(dtype=object)
            district = d[ok]
        r, lo, hi = model.predict(surface[ok], district)
        rent[ok], low[ok], high[ok] = np.round(r), np.round(lo), np.round(hi)  # whole euros, as the API
    invalid = ~ok
    return (
        table.append_column("rent_eur", pa.array(rent, pa.float64(), mask=invalid))
        .append_column("low", pa.array(low, pa.float64(), mask=invalid))
        .append_column("high", pa.array(high, pa.float64(), mask=invalid))
        .append_column("problem", pa.array(problem.tolist(), pa.string()))
    )


def _chunks(data: bytes, fmt: str, chunk_rows: int) -> Iterator[pa.Table]:
    if fmt == "csv":
        # Every input column read as text: the rows come back exactly as they were (zip codes keep
        # their zeros); only surface_m2 is parsed, in score_table.
        reader = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, chunksize=chunk_rows)
        for frame in reader:
            yield pa.Table.from_pandas(frame, preserve_index=False)
        return
    pf = pq.ParquetFile(io.BytesIO(data))
    for batch in pf.iter_batches(batch_size=chunk_rows):
        yield pa.Table.from_batches([batch])


def _format(key: str) -> str:
    low = key.lower()
    if low.endswith(".csv"):
        return "csv"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    raise ScoringError(f"{key}: only .csv and .parquet files can be scored")


def score_object(lake: Lake, key: str, model: LoadedModel, *, chunk_rows: int = CHUNK_ROWS) -> ScoreResult:
    """Score one file of the lake and write the results to the ``scored/`` zone.

    Parameters
    ----------
    lake
        The lake.
    key
        The input object (CSV or Parquet), usually under ``score/``.
    model
        The champion to score with.
    chunk_rows
        Rows per chunk (bounded memory per inference call).

    Returns
    -------
    ScoreResult
        Counts and output keys.

    Raises
    ------
    ScoringError
        When the file's format is not supported or it cannot be parsed.
    """
    fmt = _format(key)
    data = lake.get_bytes(key)
    name = safe_name(key)
    stem = name.rsplit(".", 1)[0]
    result = ScoreResult(input_key=key, model_version=model.version)
    parquet_sink = io.BytesIO()
    csv_sink = io.BytesIO() if fmt == "csv" else None
    pq_writer: pq.ParquetWriter | None = None
    csv_writer: pacsv.CSVWriter | None = None
    try:
        for chunk in _chunks(data, fmt, chunk_rows):
            scored = score_table(model, chunk)
            if pq_writer is None:
                pq_writer = pq.ParquetWriter(parquet_sink, scored.schema)
                if csv_sink is not None:
                    csv_writer = pacsv.CSVWriter(csv_sink, scored.schema)
            pq_writer.write_table(scored.cast(pq_writer.schema))
            if csv_writer is not None:
                csv_writer.write_table(scored.cast(pq_writer.schema))
            ok_rows = scored.column("problem").null_count
            result.rows += scored.num_rows
            result.scored_rows += ok_rows
            result.problem_rows += scored.num_rows - ok_rows
    except (pa.ArrowInvalid, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ScoringError(f"{key}: cannot read the file as {fmt} ({exc})") from exc
    finally:
        if pq_writer is not None:
            pq_writer.close()
        if csv_writer is not None:
            csv_writer.close()
    if pq_writer is None:  # an empty file: still answer with an empty, well-formed output
        empty = score_table(model, pa.table({"surface_m2": pa.array([], pa.string())}))
        pq.write_table(empty, parquet_sink)
    out_pq = keys.scored_output(f"{stem}.scored.parquet")
    lake.put_bytes(out_pq, parquet_sink.getvalue())
    result.outputs.append(out_pq)
    if csv_sink is not None:
        out_csv = keys.scored_output(f"{stem}.scored.csv")
        lake.put_bytes(out_csv, csv_sink.getvalue(), content_type="text/csv")
        result.outputs.append(out_csv)
    result.scored_at = datetime.now(UTC).isoformat()
    result.report_key = keys.scored_output(f"{stem}.scored.json")
    lake.put_json(result.report_key, result.as_dict())
    logger.info("scored %s: %d rows, %d with a problem", key, result.rows, result.problem_rows)
    return result
