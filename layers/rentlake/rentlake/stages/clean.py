"""The clean stage: ingested batches → clean zone + quarantine, one numbered commit per batch.

What the ``clean`` function runs (:func:`run`), batch by batch, oldest first (:func:`clean_batch`):

1. read which batches are committed and the next commit number: one listing of the commit keys and the
   latest summary (:func:`rentlake.stages.clean_history.read_commit_log`), not every commit;
2. first pass over the batch's raw files (those its ingestion record lists), two files at a time: type
   and check every row, keep its validity, hashes, day seen and robust statistic
   (:func:`rentlake.cleaning.check_chunk`), and its typed values;
3. read what the batch needs of the clean rows (the history, :mod:`rentlake.stages.clean_history`):
   the latest summary's sketches, and the parts of the seen index its rows can match in;
4. take the batch-wide decisions against the history (:func:`rentlake.cleaning.decide`);
5. second pass: write every row to the clean zone (its typed values kept from the first pass, its
   lineage read again) or to quarantine with its reasons (the raw row read again), under file names
   unique to this attempt; the next file is read while one is written;
6. commit: create commit number ``n + 1`` only if absent (``clean/_batches/<dataset>/<n+1>.json``), then
   write its index parts and summary.

The numbered commits make concurrent cleaning of one dataset give the rows of some sequential order: a
writer that loses slot ``n + 1`` reads the commit that took it. If it is the same batch, the writer
deletes its own files and reports ``already committed by another writer``. Otherwise that commit's index
parts and summary join the history, the decisions are taken again (and the files rewritten if they
changed), and the writer tries slot ``n + 2``. Every commit was thus decided against all the commits
numbered before it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rentlake import contracts
from rentlake.cleaning import (
    BatchChecks,
    CheckedChunk,
    CleanParams,
    Decisions,
    History,
    any_reason,
    check_chunk,
    clean_dtype,
    decide,
    quarantine_dtype,
    reasons_at,
)
from rentlake.config import Settings
from rentlake.events import CleanRequest
from rentlake.lake import Lake, PreconditionFailed, keys
from rentlake.parsing import LINEAGE
from rentlake.progress import report as report_progress
from rentlake.records import CleanCommit, IngestedBatch, RecordError, ingestion_record_from_json
from rentlake.stages import discard_uncommitted
from rentlake.stages.clean_history import (
    CleanHistory,
    CommitLog,
    Merged,
    Prepared,
    group_labels_of,
    read_commit_log,
)
from rentlake.summaries import seen_column, seen_days

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
ALREADY_COMMITTED = "already committed by another writer"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CleanResult:
    """What one clean run did: the commits it made, and the batches another writer committed first."""

    commits: list[CleanCommit] = field(default_factory=list)
    already_committed: list[str] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        """Rows in, clean and quarantined, over the batches this run committed."""
        return {
            "in": sum(c.rows_in for c in self.commits),
            "clean": sum(c.rows_clean for c in self.commits),
            "quarantined": sum(c.rows_quarantined for c in self.commits),
        }

    def to_dict(self) -> dict[str, Any]:
        """The function's answer: totals, and each batch's quality report (its commit)."""
        out: dict[str, Any] = {
            "batches": len(self.commits),
            "rows": self.rows(),
            "reports": [c.to_json() for c in self.commits],
        }
        if self.already_committed:
            out["already_committed"] = [
                {"ingestion_id": iid, "message": ALREADY_COMMITTED} for iid in self.already_committed
            ]
        return out


def run(lake: Lake, request: CleanRequest, settings: Settings) -> CleanResult:
    """Clean what a request asks for (what the ``clean`` handler calls).

    Parameters
    ----------
    lake
        The lake.
    request
        Which batches (all pending, one dataset, given ingestion ids) and optional thresholds.
    settings
        The deployment's settings (default thresholds).

    Returns
    -------
    CleanResult
        The commits made, oldest batch first.
    """
    params = CleanParams(
        mad_k=request.mad_k or settings.outlier_mad_k,
        min_group=request.min_group or settings.outlier_min_group,
        duplicate_window_days=settings.duplicate_window_days,
    )
    return clean_pending(lake, params, dataset=request.dataset, ingestion_ids=request.ingestion_ids)


def clean_pending(
    lake: Lake,
    params: CleanParams,
    *,
    dataset: str | None = None,
    ingestion_ids: Iterable[str] | None = None,
    progress: Progress = report_progress,
) -> CleanResult:
    """Clean every pending batch (or only the given ingestion ids), oldest first.

    Parameters
    ----------
    lake
        The lake.
    params
        Thresholds of the statistical checks.
    dataset
        Only this dataset's batches.
    ingestion_ids
        Only these batches (ids that are not pending are ignored).
    progress
        Called with short progress messages.

    Returns
    -------
    CleanResult
        The commits made, and the batches another writer committed meanwhile.
    """
    wanted = set(ingestion_ids) if ingestion_ids is not None else None
    result = CleanResult()
    lake.ensure_database()
    records, logs = _pending(lake, dataset, wanted)
    for record in records:
        # The log read to find the pending batches serves the first batch of its dataset; the next ones
        # read it again (a commit made meanwhile by another writer is met at its slot either way).
        commit = clean_batch(lake, record, params, progress=progress, commits=logs.pop(record.dataset, None))
        if commit is None:
            result.already_committed.append(record.ingestion_id)
        else:
            result.commits.append(commit)
    return result


def pending_batches(
    lake: Lake, dataset: str | None = None, *, only: set[str] | None = None
) -> list[IngestedBatch]:
    """Ingested batches (of ``dataset``, or of every dataset) that no clean commit names yet, oldest first.

    ``only`` restricts them to these ingestion ids (the others' ledger entries are not read). A ledger
    entry that is not a valid record is logged and left out: it names no batch anyone can clean, and must
    not hold up the others.
    """
    return _pending(lake, dataset, only)[0]


def _pending(
    lake: Lake, dataset: str | None, only: set[str] | None
) -> tuple[list[IngestedBatch], dict[str, CommitLog]]:
    """:func:`pending_batches`, and the commit log of each dataset it read."""
    # Committed batches come from the summaries: their ledger entries need not be opened.
    logs = {c.name: read_commit_log(lake, c) for c in contracts.all_contracts()}
    committed = set().union(*(commit_log.committed_ids for commit_log in logs.values()))
    out = []
    for key in lake.list_keys(keys.ingestion_records_prefix()):
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        if name in committed or (only is not None and name not in only):
            continue
        try:
            record = ingestion_record_from_json(lake.get_json(key))
        except RecordError as exc:
            log.error("%s is not an ingestion record, left out: %s", lake.uri(key), exc)
            continue
        if not isinstance(record, IngestedBatch) or (dataset and record.dataset != dataset):
            continue
        if record.ingestion_id not in committed and (only is None or record.ingestion_id in only):
            out.append(record)
    return sorted(out, key=lambda r: (r.ingested_at, r.ingestion_id)), logs


def clean_batch(
    lake: Lake,
    record: IngestedBatch,
    params: CleanParams,
    *,
    progress: Progress = report_progress,
    now: Callable[[], datetime] = _now,
    commits: CommitLog | None = None,
) -> CleanCommit | None:
    """Clean one ingested batch: raw → clean + quarantine, then its numbered commit.

    Two passes over the raw files keep memory bounded by a few chunks plus a few bytes per row: ~100 for
    listings, the typed values among them (see the module docstring for the steps and the commit
    protocol).

    Parameters
    ----------
    lake
        The lake.
    record
        The batch's ingestion record (from :func:`pending_batches`).
    params
        Thresholds of the statistical checks.
    progress
        Called with short progress messages.
    now
        Clock (injectable for tests).
    commits
        The dataset's commit log, when just read (:func:`rentlake.stages.clean_history.read_commit_log`).

    Returns
    -------
    CleanCommit or None
        The batch's commit (also its quality report, under ``reports/quality/``); None when another
        writer committed the batch first (this writer's files are deleted).

    Raises
    ------
    RuntimeError
        When the rows written do not add up to the rows read (nothing is committed then).
    """
    cleaner = _BatchCleaner(lake, record, params, contracts.get(record.dataset), progress, now)
    commits = commits or read_commit_log(lake, cleaner.contract)
    if record.ingestion_id in commits.committed_ids:
        return None
    batch = cleaner.scan()
    history = cleaner.store.load(commits, batch)
    decisions = decide(batch, history, params)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # The commit's index is worked out (it needs only the decisions), and the history's partitions
        # read whole are compacted, while the rows are written.
        prepared = pool.submit(cleaner.store.prepare, batch, decisions)
        compacted = pool.submit(cleaner.store.compact)
        written = cleaner.write(batch, decisions)
        return cleaner.commit(batch, history, decisions, written, commits.next_seq, prepared, compacted)


@dataclass
class _Written:
    """What the second pass wrote: this attempt's files, and the counts of the quality report."""

    clean_files: list[str] = field(default_factory=list)
    quarantine_files: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    rows_in: int = 0
    rows_clean: int = 0
    rows_quarantined: int = 0

    @property
    def files(self) -> list[str]:
        """Every file written."""
        return self.clean_files + self.quarantine_files


@dataclass
class _Chunk:
    """What the first pass keeps of one raw file for the second: its typed values as Arrow columns (text
    as dictionaries: a few bytes a row) and the rows of each of its reasons (positions: they are few).

    So the second pass reads the file again only for what it writes as received (lineage, quarantined
    rows), and does not check it twice.
    """

    key: str
    n: int
    typed: pa.Table
    dtypes: dict[str, Any]
    reason_rows: list[tuple[str, np.ndarray]]

    @classmethod
    def of(cls, key: str, checked: CheckedChunk) -> _Chunk:
        """Keep what the second pass needs of a checked chunk."""
        typed = pa.Table.from_pandas(checked.typed, preserve_index=False).replace_schema_metadata(None)
        for index, column in enumerate(typed.schema):
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                typed = typed.set_column(index, column.name, pc.dictionary_encode(typed.column(index)))
        reason_rows = [(code, np.flatnonzero(mask)) for code, mask in checked.reasons]
        return cls(key, checked.n, typed, checked.typed.dtypes.to_dict(), reason_rows)

    def reasons(self) -> list[tuple[str, np.ndarray]]:
        """The chunk's ``(reason, mask)`` pairs."""
        out = []
        for code, rows in self.reason_rows:
            mask = np.zeros(self.n, dtype=bool)
            mask[rows] = True
            out.append((code, mask))
        return out


@dataclass
class _ChunkTables:
    """One chunk as the second pass writes it: its clean rows, its quarantined rows, and their counts."""

    n: int
    reasons: Counter[str]
    clean: pa.Table | None
    quarantine: pa.Table | None
    rows_clean: int


@dataclass
class _BatchCleaner:
    """The steps of cleaning one batch; each reads or writes the lake, the decisions are pure."""

    lake: Lake
    record: IngestedBatch
    params: CleanParams
    contract: contracts.Contract
    progress: Progress
    now: Callable[[], datetime]
    # Group labels → small codes, shared by the batch and its history (see cleaning.group_codes).
    group_names: dict[Any, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"clean {self.record.dataset} {self.record.ingestion_id}"

    # Chunks checked at once in the first pass, and prepared while the previous one is written in the
    # second: the Arrow and numpy work releases the GIL, so two threads use both cores of a small machine.
    threads: int = 2
    # What the first pass keeps of each chunk for the second (see _Chunk).
    chunks: list[_Chunk] = field(default_factory=list)

    def _check(self, raw: pa.Table) -> CheckedChunk:
        return check_chunk(
            raw, self.contract, factors=self.record.unit_factors, decimal_comma=self.record.decimal_comma
        )

    @cached_property
    def store(self) -> CleanHistory:
        """The dataset's seen index and summaries (what the batch is checked against)."""
        return CleanHistory(self.lake, self.contract, self.params, self.group_names, self.progress)

    def scan(self) -> BatchChecks:
        """First pass: check every raw row; keep its validity, hashes and robust statistic, and the typed
        values for the second pass."""
        # Each of the batch's arrays is joined on its own, so that memory holds its chunks and the joined
        # array of one at a time, not two copies of them all.
        names = [f.name for f in dataclasses.fields(BatchChecks)]
        arrays: dict[str, list[Any]] = {name: [] for name in names}
        self.chunks = []
        files = self.lake.committed_files(self.record, "raw")
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            for part, chunk, groups in _ahead(pool, self._scan_file, files, self.threads):
                if groups is not None:
                    inverse, labels = groups
                    table = [self.group_names.setdefault(label, len(self.group_names)) for label in labels]
                    part.robust_group = np.asarray(table, dtype=np.int32)[inverse]
                for name in names:
                    arrays[name].append(getattr(part, name))
                self.chunks.append(chunk)
                self.progress(f"{self.label}: checked {sum(c.n for c in self.chunks):,} rows")
        if not self.chunks:
            return BatchChecks.concat([])
        joined = {}
        for name in names:
            joined[name] = None if arrays[name][0] is None else np.concatenate(arrays[name])
            arrays[name].clear()
        return BatchChecks(**joined)

    def _scan_file(self, key: str) -> tuple[BatchChecks, _Chunk, tuple[np.ndarray, list[str]] | None]:
        """Check one raw file (in a worker thread: touches nothing shared)."""
        checked_columns = [*self.contract.column_names, "raw_problem"]  # not the lineage: not checked
        checked = self._check(_read_table(self.lake, key, checked_columns))
        part = BatchChecks(any_reason(checked.n, checked.reasons), checked.row_hash, checked.key_hash)
        dates = checked.typed[date] if (date := seen_column(self.contract)) else None
        part.seen, part.dated = seen_days(dates, self.record.ingest_date, checked.n)
        robust = self.contract.robust
        if robust is not None:
            part.robust_value = np.asarray(robust.value(checked.typed), dtype="float64")
        return part, _Chunk.of(key, checked), group_labels_of(self.contract, checked.typed)

    def write(self, batch: BatchChecks, decisions: Decisions) -> _Written:
        """Second pass: every row to the clean zone or to quarantine, chunk by chunk.

        On any failure, the files this attempt wrote are deleted (no other writer's) before the error goes
        on: nothing is committed, and a re-run starts afresh.
        """
        written = _Written()
        try:
            starts = np.cumsum([0, *(c.n for c in self.chunks)]).tolist()
            work = [(chunk, starts[part], batch, decisions) for part, chunk in enumerate(self.chunks)]
            with ThreadPoolExecutor(max_workers=1) as pool:
                for part, tables in enumerate(_ahead(pool, self._chunk_tables, work, 1)):
                    self._write_chunk(part, tables, written)
            if written.rows_clean + written.rows_quarantined != written.rows_in or written.rows_in != len(
                decisions.duplicate
            ):
                raise RuntimeError(
                    f"batch {self.record.ingestion_id}: {len(decisions.duplicate)} rows in but "
                    f"{written.rows_clean} clean + {written.rows_quarantined} quarantined"
                )
        except BaseException:
            discard_uncommitted(self.lake, written.files)
            raise
        return written

    def _chunk_tables(self, work: tuple[_Chunk, int, BatchChecks, Decisions]) -> _ChunkTables:
        """The clean and quarantine rows of one chunk under the decisions (in a worker thread)."""
        chunk, start, batch, decisions = work
        raw = _read_table(self.lake, chunk.key, dictionary=LINEAGE)
        if raw.num_rows != chunk.n:
            raise RuntimeError(f"{chunk.key}: {raw.num_rows} rows now, {chunk.n} when checked")
        rows = slice(start, start + chunk.n)
        outlier_code = self.contract.robust.code if self.contract.robust else "outlier"
        reasons = [
            *chunk.reasons(),
            ("duplicate", decisions.duplicate[rows]),
            ("conflicting_key", decisions.conflicting_key[rows]),
            (outlier_code, decisions.outlier[rows]),
        ]
        reasons = [(code, mask) for code, mask in reasons if mask.any()]
        bad = any_reason(chunk.n, reasons)
        keep = ~bad
        key_hash = batch.key_hash[rows] if batch.key_hash is not None else None
        return _ChunkTables(
            n=chunk.n,
            reasons=Counter({code: int(mask.sum()) for code, mask in reasons}),
            clean=None if bad.all() else _clean_table(raw, chunk, keep, batch.row_hash[rows], key_hash),
            quarantine=_quarantine_table(raw, reasons, bad) if bad.any() else None,
            rows_clean=int(keep.sum()),
        )

    def _write_chunk(self, part: int, tables: _ChunkTables, written: _Written) -> None:
        batch = {"ingest_date": self.record.ingest_date, "ingestion_id": self.record.ingestion_id}
        written.reasons.update(tables.reasons)
        if tables.clean is not None:
            paths = self.lake.write_batch(
                tables.clean,
                "clean",
                self.record.dataset,
                part=part,
                dtype=clean_dtype(self.contract),
                **batch,
            )
            written.clean_files += [self.lake.key_of(p) for p in paths]
        if tables.quarantine is not None:
            paths = self.lake.write_batch(
                tables.quarantine,
                "quarantine",
                self.record.dataset,
                part=part,
                dtype=quarantine_dtype(self.contract),
                **batch,
            )
            written.quarantine_files += [self.lake.key_of(p) for p in paths]
        written.rows_in += tables.n
        written.rows_clean += tables.rows_clean
        written.rows_quarantined += tables.n - tables.rows_clean
        self.progress(
            f"{self.label}: wrote {written.rows_clean:,} clean, {written.rows_quarantined:,} quarantined"
        )

    def commit(
        self,
        batch: BatchChecks,
        history: History,
        decisions: Decisions,
        written: _Written,
        seq: int,
        prepared: Future[Prepared] | None = None,
        compacted: Future[list[Merged]] | None = None,
    ) -> CleanCommit | None:
        """Create commit ``seq``; on losing it, catch up with the commit that took it and try the next.

        ``prepared`` is the commit's index as :meth:`CleanHistory.prepare` works it out for ``decisions``
        (made again when the decisions change)."""
        dataset = self.record.dataset
        while True:
            commit = self._commit_record(decisions, written, history.n, seq)
            try:
                self.lake.create_json(keys.clean_commit(dataset, seq), commit.to_json())
                break
            except PreconditionFailed:
                other = CleanCommit.from_json(self.lake.get_json(keys.clean_commit(dataset, seq)))
            if other.ingestion_id == self.record.ingestion_id:
                log.info("%s: %s (commit %d)", self.label, ALREADY_COMMITTED, seq)
                discard_uncommitted(self.lake, written.files)
                return None
            self.progress(f"{self.label}: commit {seq} went to batch {other.ingestion_id}; checking again")
            history = self.store.catch_up(history, other, batch)
            again = decide(batch, history, self.params)
            if not again.same_rows(decisions):
                discard_uncommitted(self.lake, written.files)
                written = self.write(batch, again)
            decisions, seq = again, seq + 1
        self.store.record(
            commit, batch, decisions, prepared.result() if prepared is not None else None, compacted
        )
        self.lake.put_json(keys.quality_report(dataset, self.record.ingestion_id), commit.to_json())
        return commit

    def _commit_record(
        self, decisions: Decisions, written: _Written, history_rows: int, seq: int
    ) -> CleanCommit:
        record, contract = self.record, self.contract
        return CleanCommit(
            dataset=record.dataset,
            ingestion_id=record.ingestion_id,
            ingest_date=record.ingest_date,
            seq=seq,
            contract_version=contract.version,
            source_key=record.source_key,
            source_sha256=record.source_sha256,
            cleaned_at=self.now().isoformat(),
            rows_in=written.rows_in,
            rows_clean=written.rows_clean,
            rows_quarantined=written.rows_quarantined,
            reasons=dict(sorted(written.reasons.items(), key=lambda kv: -kv[1])),
            params={
                **self.params.describe(),
                "robust_check": contract.robust.description if contract.robust else None,
                "ranges": {c.name: [c.min, c.max] for c in contract.columns if c.min is not None},
            },
            robust_bounds=decisions.labelled_bounds(self.group_names),
            history_rows=history_rows,
            clean_zone=keys.batch_prefix("clean", record.dataset, record.ingest_date, record.ingestion_id),
            quarantine_zone=keys.batch_prefix(
                "quarantine", record.dataset, record.ingest_date, record.ingestion_id
            ),
            clean_files=tuple(written.clean_files),
            quarantine_files=tuple(written.quarantine_files),
        )


# ------------------------------------------------------------------------------------ Arrow in and out
# The rows go from the raw files to the clean and quarantine files as Arrow columns: only the typed
# values are pandas (the rules are written on frames), and the lineage is never turned into Python
# strings.
def _ahead(
    pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], depth: int
) -> Iterator[Any]:
    """``fn`` of each item, in order, computed by ``pool`` at most ``depth`` items ahead of the reader
    (memory holds a few chunks, never the batch)."""
    pending: deque[Future[Any]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _read_table(
    lake: Lake, key: str, columns: list[str] | None = None, dictionary: Iterable[str] = ()
) -> pa.Table:
    """One raw file as an Arrow table (``columns`` it lacks are left out; the text columns named in
    ``dictionary`` come as dictionaries, not one string per row)."""
    data = pa.BufferReader(lake.get_bytes(key))
    schema = pq.read_schema(data)
    strings = [c for c in dictionary if c in schema.names and pa.types.is_string(schema.field(c).type)]
    wanted = None if columns is None else [c for c in columns if c in schema.names]
    return pq.ParquetFile(data, read_dictionary=strings or None).read(columns=wanted)


def _clean_table(
    raw: pa.Table, chunk: _Chunk, keep: np.ndarray, row_hash: np.ndarray, key_hash: np.ndarray | None
) -> pa.Table:
    """The clean rows of a chunk: typed values, lineage, row and key hashes (the clean table's columns)."""
    rows = pa.array(keep)
    typed = chunk.typed.filter(rows)
    # Text stays the dictionaries it was kept or read as: the lake writes it as text, without decoding it.
    columns = {name: typed.column(name) for name in typed.column_names}
    for name in LINEAGE:
        columns[name] = raw.column(name).filter(rows)
    columns["source_row"] = columns["source_row"].cast(pa.int64())
    columns["row_hash"] = pa.array(row_hash[keep])
    if key_hash is not None:
        columns["key_hash"] = pa.array(key_hash[keep])
    dtypes = {
        **chunk.dtypes,
        **dict.fromkeys(LINEAGE, "str"),
        "source_row": "int64",
        "row_hash": "int64",
        "key_hash": "int64",
    }
    return _with_pandas_metadata(pa.table(columns), dtypes)


def _quarantine_table(raw: pa.Table, reasons: list[tuple[str, np.ndarray]], bad: np.ndarray) -> pa.Table:
    """The quarantined rows of a chunk: the raw row as received, and its reasons."""
    rows = np.flatnonzero(bad)
    reasons_column = pa.array(reasons_at(rows, reasons), pa.string())
    table = raw.take(pa.array(rows)).append_column("reasons", reasons_column)
    # The dtypes the raw rows had as a frame read from the lake (nullable types), the reasons as text.
    dtypes = {f.name: _read_dtype(f.type) for f in table.schema}
    return _with_pandas_metadata(table, {**dtypes, "reasons": "str"})


def _read_dtype(kind: pa.DataType) -> Any:
    """The pandas dtype a column of this Arrow type has when the lake reads it (nullable types)."""
    if pa.types.is_dictionary(kind):  # read as a dictionary here; written and read back as its values
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_integer(kind):
        return str(kind).replace("int", "Int").replace("uInt", "UInt")
    if pa.types.is_boolean(kind):
        return "boolean"
    return kind.to_pandas_dtype()


def _with_pandas_metadata(table: pa.Table, dtypes: dict[str, Any]) -> pa.Table:
    """``table`` with the pandas metadata of a frame of these dtypes, as a table written from pandas has
    it (readers rebuild the frame's dtypes from it)."""
    return table.replace_schema_metadata(
        _pandas_metadata(tuple((n, str(dtypes[n])) for n in table.column_names))
    )


@functools.lru_cache(maxsize=64)
def _pandas_metadata(columns: tuple[tuple[str, str], ...]) -> dict[bytes, bytes]:
    """The schema metadata pyarrow gives a frame with these columns and dtypes (the same for every chunk)."""
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns})
    return dict(pa.Schema.from_pandas(empty, preserve_index=False).metadata)
