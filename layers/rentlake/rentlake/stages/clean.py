"""The clean stage: ingested batches → clean zone + quarantine, one numbered commit per batch.

What the ``clean`` function runs (:func:`run`), batch by batch, oldest first (:func:`clean_batch`):

1. read which batches are committed and the next commit number: one listing of the commit keys and the
   latest summary (:func:`rentlake.stages.clean_history.read_commit_log`), not every commit;
2. first pass over the batch's raw files (those its ingestion record lists): type and check every row,
   keep its validity, hashes, day seen and robust statistic (:func:`rentlake.cleaning.check_chunk`);
3. read what the batch needs of the clean rows (the history, :mod:`rentlake.stages.clean_history`):
   the latest summary's sketches, and the parts of the seen index its rows can match in;
4. take the batch-wide decisions against the history (:func:`rentlake.cleaning.decide`);
5. second pass: write every row to the clean zone or to quarantine with its reasons, under file names
   unique to this attempt;
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

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

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
    group_codes,
    quarantine_dtype,
    reasons_to_series,
)
from rentlake.config import Settings
from rentlake.events import CleanRequest
from rentlake.lake import Lake, PreconditionFailed, keys
from rentlake.parsing import LINEAGE
from rentlake.progress import report as report_progress
from rentlake.records import CleanCommit, IngestedBatch, RecordError, ingestion_record_from_json
from rentlake.stages import discard_uncommitted
from rentlake.stages.clean_history import CleanHistory, CommitLog, group_labels, read_commit_log
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

    Two passes over the raw files keep memory bounded by one chunk plus a few bytes per row (see the
    module docstring for the steps and the commit protocol).

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
    written = cleaner.write(decisions)
    return cleaner.commit(batch, history, decisions, written, commits.next_seq)


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

    def _check(self, raw: pd.DataFrame) -> CheckedChunk:
        return check_chunk(
            raw, self.contract, factors=self.record.unit_factors, decimal_comma=self.record.decimal_comma
        )

    @cached_property
    def store(self) -> CleanHistory:
        """The dataset's seen index and summaries (what the batch is checked against)."""
        return CleanHistory(self.lake, self.contract, self.params, self.group_names, self.progress)

    def scan(self) -> BatchChecks:
        """First pass: check every raw row; keep its validity, hashes and robust statistic."""
        parts: list[BatchChecks] = []
        robust = self.contract.robust
        for raw in self.lake.iter_keys(self.lake.committed_files(self.record, "raw")):
            checked = self._check(raw)
            part = BatchChecks(any_reason(checked.n, checked.reasons), checked.row_hash, checked.key_hash)
            dates = checked.typed[date] if (date := seen_column(self.contract)) else None
            part.seen, part.dated = seen_days(dates, self.record.ingest_date, checked.n)
            if robust is not None:
                part.robust_value = np.asarray(robust.value(checked.typed), dtype="float64")
                if robust.group is not None:
                    labels = group_labels(self.contract, checked.typed)
                    part.robust_group = group_codes(labels, self.group_names)
            parts.append(part)
            self.progress(f"{self.label}: checked {sum(p.n for p in parts):,} rows")
        return BatchChecks.concat(parts)

    def write(self, decisions: Decisions) -> _Written:
        """Second pass: every row to the clean zone or to quarantine, chunk by chunk.

        On any failure, the files this attempt wrote are deleted (no other writer's) before the error goes
        on: nothing is committed, and a re-run starts afresh.
        """
        written = _Written()
        try:
            for part, raw in enumerate(self.lake.iter_keys(self.lake.committed_files(self.record, "raw"))):
                self._write_chunk(part, raw.reset_index(drop=True), decisions, written)
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

    def _write_chunk(self, part: int, raw: pd.DataFrame, decisions: Decisions, written: _Written) -> None:
        checked = self._check(raw)
        rows = slice(written.rows_in, written.rows_in + checked.n)
        outlier_code = self.contract.robust.code if self.contract.robust else "outlier"
        reasons = [
            *checked.reasons,
            ("duplicate", decisions.duplicate[rows]),
            ("conflicting_key", decisions.conflicting_key[rows]),
            (outlier_code, decisions.outlier[rows]),
        ]
        reasons = [(code, mask) for code, mask in reasons if mask.any()]
        for code, mask in reasons:
            written.reasons[code] += int(mask.sum())
        bad = any_reason(checked.n, reasons)
        batch = {"ingest_date": self.record.ingest_date, "ingestion_id": self.record.ingestion_id}
        if not bad.all():
            good = checked.typed.loc[~bad].copy()
            good[LINEAGE] = raw.loc[~bad, LINEAGE].to_numpy()
            good["source_row"] = good["source_row"].astype("int64")
            good["row_hash"] = checked.row_hash[~bad]
            if checked.key_hash is not None:
                good["key_hash"] = checked.key_hash[~bad]
            paths = self.lake.write_batch(
                good, "clean", self.record.dataset, part=part, dtype=clean_dtype(self.contract), **batch
            )
            written.clean_files += [self.lake.key_of(p) for p in paths]
        if bad.any():
            quarantined = raw.loc[bad].copy()
            quarantined["reasons"] = reasons_to_series(checked.n, reasons)[bad].to_numpy()
            paths = self.lake.write_batch(
                quarantined,
                "quarantine",
                self.record.dataset,
                part=part,
                dtype=quarantine_dtype(self.contract),
                **batch,
            )
            written.quarantine_files += [self.lake.key_of(p) for p in paths]
        written.rows_in += checked.n
        written.rows_clean += int((~bad).sum())
        written.rows_quarantined += int(bad.sum())
        self.progress(
            f"{self.label}: wrote {written.rows_clean:,} clean, {written.rows_quarantined:,} quarantined"
        )

    def commit(
        self, batch: BatchChecks, history: History, decisions: Decisions, written: _Written, seq: int
    ) -> CleanCommit | None:
        """Create commit ``seq``; on losing it, catch up with the commit that took it and try the next."""
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
                written = self.write(again)
            decisions, seq = again, seq + 1
        self.store.record(commit, batch, decisions)
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
