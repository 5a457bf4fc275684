"""The clean stage's history in the lake: a seen index and a cumulative summary per clean commit.

What a batch is checked against, without reading the clean rows (the rules are in
:mod:`rentlake.summaries`)::

    clean/_index/<dataset>/seen_on=S/month=YYYY-MM/<commit>.parquet  row_hash, seen (day), key_hash
    clean/_summaries/<dataset>/<commit>.json                    sketches through <commit>, its index parts

``<commit>`` is the commit's number (10 digits), or ``batch-<ingestion id>`` for a commit written before
the numbering. Both are written *after* the commit they describe: by its writer, from the rows it has just
decided, or, when they are missing (the writer died in between, or the commit is older than the index),
by the next clean of the dataset, from the commit's clean files. So a lake cleaned before the index
existed is indexed once, lazily, by its first clean after the upgrade (it reads every clean row that
once). Their content depends only on the commit, so two writers of one part write the same thing. A
commit's summary is written after its index parts and after the previous commit's summary: a summary that
exists says that its commit's index, and every earlier one's, is complete.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from rentlake.cleaning import BatchChecks, CleanParams, Decisions, History, group_codes
from rentlake.contracts import Contract
from rentlake.lake import Lake, LakeError, keys
from rentlake.records import CleanCommit
from rentlake.summaries import (
    BatchLookup,
    Sketch,
    Summary,
    index_parts,
    merge_groups,
    seen_column,
    seen_days,
    sketch_groups,
)

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def commit_name(commit: CleanCommit) -> str:
    """The name of a commit's index parts and summary: its number, or its batch for an older commit."""
    return f"{commit.seq:010d}" if commit.seq is not None else f"batch-{commit.ingestion_id}"


def group_labels(contract: Contract, frame: pd.DataFrame) -> np.ndarray | None:
    """The robust check's group label of each row, as text (the summary's keys), or None without groups."""
    robust = contract.robust
    if robust is None or robust.group is None:
        return None
    return np.asarray([str(v) for v in robust.group(frame)], dtype=object)


@dataclass
class CleanHistory:
    """Reads and writes one dataset's seen index and summaries for the batch being cleaned.

    ``group_names`` is the batch's map of group labels to codes (:func:`rentlake.cleaning.group_codes`),
    shared so that the history's sketches and the batch's rows use the same codes.
    """

    lake: Lake
    contract: Contract
    params: CleanParams
    group_names: dict[Any, int]
    progress: Progress

    @property
    def dataset(self) -> str:
        return self.contract.name

    # ------------------------------------------------------------------ what a batch is checked against
    def load(self, commits: list[CleanCommit], batch: BatchChecks) -> History:
        """The history of ``batch`` against ``commits`` (every commit of the dataset, in order).

        Indexes the commits that have no summary yet, then reads the latest summary and the index parts
        the batch's valid rows can match in.
        """
        summary = self.summary_through(commits)
        lookup = self._lookup(batch)
        names = {commit_name(c) for c in commits}
        parts = [k for k in self._parts_for(lookup) if _part_commit(k) in names]
        return self._matched(parts, lookup).extend(self._coded(summary))

    def catch_up(self, history: History, other: CleanCommit, batch: BatchChecks) -> History:
        """``history`` followed by ``other``, the commit that took the slot after it (for re-deciding)."""
        summary = self._read_summary(other) or self._build(other, self._summary_of(history))
        matched = self._matched(list(summary.index_parts), self._lookup(batch))
        coded = self._coded(summary)
        return replace(history.extend(matched), rows=coded.rows, sketches=coded.sketches)

    def summary_through(self, commits: list[CleanCommit]) -> Summary:
        """The summary up to the last of ``commits``, indexing (once) those that have none yet."""
        last = len(commits) - 1
        found = Summary()
        while last >= 0:
            summary = self._read_summary(commits[last])
            if summary is not None:
                found = summary
                break
            last -= 1
        for commit in commits[last + 1 :]:
            self.progress(f"clean {self.dataset}: indexing commit {commit_name(commit)} (no summary yet)")
            found = self._build(commit, found)
        return found

    def record(self, commit: CleanCommit, batch: BatchChecks, decisions: Decisions, history: History) -> None:
        """Write the index parts and the summary of the commit just made from the batch's own rows.

        A failure is logged, not raised: the commit stands, and the next clean of the dataset writes them.
        """
        clean = batch.clean_rows(decisions)
        key_hash = batch.key_hash[clean] if batch.key_hash is not None else None
        try:
            parts = self._write_index(
                commit, batch.row_hash[clean], batch.seen[clean], batch.dated[clean], key_hash
            )
            own: dict[Any, Sketch] = {}
            if batch.robust_value is not None:
                group = batch.robust_group[clean] if batch.robust_group is not None else None
                own = self._labelled(sketch_groups(batch.robust_value[clean], group))
            previous = self._summary_of(history)
            groups = merge_groups(previous.groups, own)
            self._put_summary(commit, Summary(history.rows + int(clean.sum()), groups, parts))
        except LakeError as exc:
            log.warning(
                "%s: index of commit %s not written (the next clean will): %s",
                self.dataset,
                commit_name(commit),
                exc,
            )

    # ------------------------------------------------------------------ the index
    def _lookup(self, batch: BatchChecks) -> BatchLookup:
        valid = ~batch.invalid
        key_hash = batch.key_hash[valid] if batch.key_hash is not None else None
        return BatchLookup.of(
            batch.row_hash[valid],
            batch.seen[valid],
            batch.dated[valid],
            key_hash,
            self.params.duplicate_window_days,
        )

    def _parts_for(self, lookup: BatchLookup) -> list[str]:
        """The index parts to read: the months the batch can match in; every part when keys are compared."""
        if not len(lookup.hashes):
            return []
        if self.contract.key:
            return self.lake.list_keys(keys.clean_index_prefix(self.dataset))
        prefixes = [keys.clean_index_prefix(self.dataset, *where) for where in lookup.partitions()]
        return [key for prefix in prefixes for key in self.lake.list_keys(prefix)]

    def _matched(self, parts: list[str], lookup: BatchLookup) -> History:
        """The hashes and keys of the index parts that concern the batch, one part at a time."""
        seen_rows, key_hashes, key_rows = [], [], []
        columns = ["row_hash", "seen", *(["key_hash"] if self.contract.key else [])]
        for key in parts:
            part = _read_part(self.lake, key, columns)
            key_hash = part["key_hash"] if self.contract.key else None
            rows, pair_keys, pair_rows = lookup.match(part["row_hash"], part["seen"], key_hash)
            seen_rows.append(rows)
            key_hashes.append(pair_keys)
            key_rows.append(pair_rows)
        if not parts:
            return History()
        # A clean row of one of the batch's keys with the same values is the same row seen again,
        # whatever its age: keys are compared with the whole history.
        row_hash = np.concatenate([*seen_rows, *key_rows])
        return History(row_hash, np.concatenate(key_hashes), np.concatenate(key_rows))

    def _write_index(
        self,
        commit: CleanCommit,
        row_hash: np.ndarray,
        seen: np.ndarray,
        dated: np.ndarray,
        key_hash: np.ndarray | None,
    ) -> tuple[str, ...]:
        written = []
        for seen_on, month, frame in index_parts(row_hash, seen, dated, key_hash):
            key = keys.clean_index_part(self.dataset, seen_on, month, commit_name(commit))
            self.lake.put_bytes(key, _part_bytes(frame))
            written.append(key)
        return tuple(written)

    # ------------------------------------------------------------------ summaries
    def _about(self, commit: CleanCommit) -> dict[str, Any]:
        robust = self.contract.robust
        return {
            "dataset": self.dataset,
            "commit": commit_name(commit),
            "seq": commit.seq,
            "ingestion_id": commit.ingestion_id,
            "robust_check": robust.description if robust else None,
        }

    def _read_summary(self, commit: CleanCommit) -> Summary | None:
        """The commit's summary, or None when it is missing or was made for another check or bin width."""
        doc = self.lake.get_json_or_none(keys.clean_summary(self.dataset, commit_name(commit)))
        if doc is None:
            return None
        about = self._about(commit)
        if any(doc.get(k) != v for k, v in about.items()):
            log.warning(
                "%s: summary of commit %s is for another commit or check; rebuilt",
                self.dataset,
                about["commit"],
            )
            return None
        try:
            summary = Summary.from_json(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: summary of %s unreadable (%s); rebuilt", self.dataset, about["commit"], exc)
            return None
        return summary if summary.width == Summary().width else None

    def _put_summary(self, commit: CleanCommit, summary: Summary) -> None:
        # Compact JSON: thousands of counts, one per line indented, would be ten times the bytes.
        doc = json.dumps(summary.to_json(self._about(commit)), separators=(",", ":")).encode("utf-8")
        key = keys.clean_summary(self.dataset, commit_name(commit))
        self.lake.put_bytes(key, doc, content_type="application/json")

    def _build(self, commit: CleanCommit, previous: Summary) -> Summary:
        """Index a commit from its clean files, and write its summary (``previous`` + its rows)."""
        robust, column, keyed = self.contract.robust, seen_column(self.contract), bool(self.contract.key)
        columns = ["row_hash", *(["key_hash"] if keyed else []), *self.contract.column_names]
        arrays: dict[str, list[np.ndarray]] = {"row_hash": [], "seen": [], "dated": [], "key_hash": []}
        groups = previous.groups
        for frame in self.lake.iter_keys(self.lake.committed_files(commit, "clean"), columns):
            seen, dated = seen_days(frame[column] if column else None, commit.ingest_date, len(frame))
            arrays["row_hash"].append(frame["row_hash"].to_numpy(dtype="int64"))
            arrays["seen"].append(seen)
            arrays["dated"].append(dated)
            if keyed:
                arrays["key_hash"].append(frame["key_hash"].to_numpy(dtype="int64"))
            if robust is not None:
                values = np.asarray(robust.value(frame), dtype="float64")
                groups = merge_groups(groups, sketch_groups(values, group_labels(self.contract, frame)))
        kinds = {"row_hash": "int64", "seen": "int32", "dated": "bool", "key_hash": "int64"}
        joined = {k: np.concatenate(v) if v else np.zeros(0, dtype=kinds[k]) for k, v in arrays.items()}
        key_hash = joined["key_hash"] if keyed else None
        parts = self._write_index(commit, joined["row_hash"], joined["seen"], joined["dated"], key_hash)
        summary = Summary(previous.rows + len(joined["row_hash"]), groups, parts)
        self._put_summary(commit, summary)
        return summary

    # ------------------------------------------------------------------ labels ↔ the batch's codes
    def _coded(self, summary: Summary) -> History:
        """The summary's rows and sketches, keyed by the batch's group codes."""
        labels = [label for label in summary.groups if label != "*"]
        codes = group_codes(np.array(labels, dtype=object), self.group_names).tolist()
        sketches: dict[Any, Sketch] = dict(zip(codes, (summary.groups[k] for k in labels), strict=True))
        if "*" in summary.groups:
            sketches["*"] = summary.groups["*"]
        return History(rows=summary.rows, sketches=sketches)

    def _labelled(self, sketches: dict[Any, Sketch]) -> dict[str, Sketch]:
        label_of = {code: label for label, code in self.group_names.items()}
        return {k if k == "*" else str(label_of[k]): v for k, v in sketches.items()}

    def _summary_of(self, history: History) -> Summary:
        return Summary(history.rows, self._labelled(history.sketches))


def _part_commit(key: str) -> str:
    """The commit name of an index part's key (its file name without ``.parquet``)."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


def _part_bytes(frame: pd.DataFrame) -> bytes:
    """An index part as Parquet (pyarrow directly: pandas' to_parquet costs more than the write)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="snappy")
    return buf.getvalue()


def _read_part(lake: Lake, key: str, columns: Iterable[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(lake.get_bytes(key)), columns=list(columns))
    return {name: table.column(name).to_numpy() for name in table.column_names}
