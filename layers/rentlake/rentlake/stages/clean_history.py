"""The clean stage's history in the lake: a seen index and a cumulative summary per clean commit.

What a batch is checked against, without reading the clean rows (the rules are in
:mod:`rentlake.summaries`)::

    clean/_index/<dataset>/seen_on=S/month=YYYY-MM/<commit>.arrow  row_hash, seen (day), key_hash
    clean/_index/<dataset>/seen_on=S/month=YYYY-MM/upto-<commit>.arrow  the month's rows through <commit>
    clean/_summaries/<dataset>/<commit>.json                  sketches through <commit>, its index parts

``<commit>`` is the commit's number (10 digits), or ``batch-<ingestion id>`` for a commit written before
the numbering. Both are written *after* the commit they describe: by its writer, from the rows it has just
decided, or, when they are missing (the writer died in between, or the commit is older than the index),
by the next clean of the dataset, from the commit's clean files. So a lake cleaned before the index
existed is indexed once, lazily, by its first clean after the upgrade (it reads every clean row that
once). Their content depends only on the commit, so two writers of one part write the same thing. A
commit's summary is written after its index parts and after the previous commit's summary: a summary that
exists says that its commit's index, and every earlier one's, is complete.

The summary also lists, cumulatively, the ingestion ids committed and which commits have an index part
in each partition. So the clean stage learns which batches are committed, and under which number the
next commit goes, from one listing of the commit keys and one summary (:func:`read_commit_log`), not by
opening every commit; and it finds the index parts it needs without listing them.

A month's parts are compacted into one ``upto-`` part once a batch reads four or more of them (see
"compaction" below). Index parts are Arrow IPC files, uncompressed: a batch reads some of them whole, and
the hashes (random, incompressible) are then used where they lie in the bytes read, with no decoding
(Parquet, which parts were first written in and are still read in, cost a 100 k batch 20 ms to decode
650 k hashes).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rentlake.cleaning import BatchChecks, CleanParams, Decisions, History, group_codes
from rentlake.contracts import Contract
from rentlake.lake import Lake, LakeError, keys
from rentlake.records import CleanCommit, RecordError
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
INDEX_SUFFIX = ".arrow"
COMPACT_AT = 4
"""A partition read whole with this many index parts or more is compacted (:meth:`CleanHistory.compact`)."""
MERGED = "upto-"
Merged = tuple[str, tuple[str, ...], str]
"""A compacted partition: ``"<seen on>/<month>"``, the names of the parts merged, the merged part's name."""
PARALLEL_READS = 8
"""Index parts read (or written) at once (within botocore's default pool of 10 connections)."""


def commit_name(commit: CleanCommit) -> str:
    """The name of a commit's index parts and summary: its number, or its batch for an older commit."""
    return f"{commit.seq:010d}" if commit.seq is not None else f"batch-{commit.ingestion_id}"


@dataclass(frozen=True)
class CommitLog:
    """A dataset's commits as the clean stage needs them: the latest summary found, and the commits
    after it (without a summary yet, read one by one; usually none)."""

    summary: Summary
    after: tuple[CleanCommit, ...]
    next_seq: int

    @property
    def committed_ids(self) -> set[str]:
        """Ingestion ids of every committed batch."""
        return set(self.summary.committed) | {c.ingestion_id for c in self.after}


def read_commit_log(lake: Lake, contract: Contract) -> CommitLog:
    """List a dataset's commits and read back from the newest until a commit with a summary.

    Reads the commit keys (one listing) and, in a lake whose summaries are written, one summary. Commits
    newer than the latest summary, and every commit of a lake cleaned before summaries existed, are read
    one by one.
    """
    names = [
        k.rsplit("/", 1)[-1].removesuffix(".json")
        for k in lake.list_keys(keys.clean_batch_records_prefix(contract.name))
        if k.endswith(".json")
    ]
    numbered = sorted(int(n) for n in names if _numbered(n))
    after: list[CleanCommit] = []
    summary = None
    for seq in reversed(numbered):
        summary = _read_summary(lake, contract, f"{seq:010d}")
        if summary is not None:
            break
        after.insert(0, _read_commit(lake, keys.clean_commit(contract.name, seq)))
    if summary is None:  # older commits, named by their batch, in the order they were made
        older = [
            _read_commit(lake, keys.clean_batch_record(contract.name, n)) for n in names if not _numbered(n)
        ]
        older.sort(key=lambda c: (c.cleaned_at, c.ingestion_id))
        while older and summary is None:
            summary = _read_summary(lake, contract, commit_name(older[-1]))
            if summary is None:
                after.insert(0, older.pop())
    return CommitLog(summary or Summary(), tuple(after), max(numbered, default=0) + 1)


def _numbered(name: str) -> bool:
    """Whether a commit key's name is a commit number (older commits are named by their batch)."""
    return len(name) == 10 and name.isdigit()


def _read_commit(lake: Lake, key: str) -> CleanCommit:
    try:
        return CleanCommit.from_json(lake.get_json(key))
    except RecordError as exc:
        raise LakeError(f"{lake.uri(key)}: {exc}") from exc


def _about(contract: Contract, name: str) -> dict[str, Any]:
    """What a summary says it describes (checked on read: another check's summary is rebuilt)."""
    robust = contract.robust
    return {
        "dataset": contract.name,
        "commit": name,
        "robust_check": robust.description if robust else None,
    }


def _read_summary(lake: Lake, contract: Contract, name: str) -> Summary | None:
    """A commit's summary, or None when it is missing or was made for another check or bin width."""
    doc = lake.get_json_or_none(keys.clean_summary(contract.name, name))
    if doc is None:
        return None
    if any(doc.get(k) != v for k, v in _about(contract, name).items()):
        log.warning("%s: summary of commit %s is for another commit or check; rebuilt", contract.name, name)
        return None
    try:
        summary = Summary.from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: summary of %s unreadable (%s); rebuilt", contract.name, name, exc)
        return None
    return summary if summary.width == Summary().width else None


def group_labels(contract: Contract, frame: pd.DataFrame) -> np.ndarray | None:
    """The robust check's group label of each row, as text (the summary's keys), or None without groups."""
    groups = group_labels_of(contract, frame)
    if groups is None:
        return None
    inverse, labels = groups
    return np.asarray(labels or [""], dtype=object)[inverse]


def group_labels_of(contract: Contract, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """The distinct group labels of the rows of ``frame`` (as text, in order of appearance) and each row's
    place among them; None when the robust check has no groups.

    The labels are few: each is made text once, and :func:`rentlake.cleaning.group_codes` of the rows'
    labels is ``codes[inverse]`` with ``codes`` the codes of the distinct labels.
    """
    robust = contract.robust
    if robust is None or robust.group is None:
        return None
    inverse, uniques = _factorize(robust.group(frame))
    return inverse, [str(v) for v in uniques]


def _factorize(labels: np.ndarray | pd.Series) -> tuple[np.ndarray, Any]:
    """Each label's code and the distinct labels in order of appearance (NA is a label too)."""
    # A Series keeps its own type (Arrow strings factorize without becoming Python objects).
    values = labels if isinstance(labels, pd.Series) else np.asarray(labels)
    return pd.factorize(values, use_na_sentinel=False)


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
    summary: Summary = field(default_factory=Summary)
    """The summary through the last commit the history holds (set by :meth:`load`)."""
    to_compact: dict[str, dict[str, pa.Table]] = field(default_factory=dict)
    """Partitions read whole that are worth compacting: their parts, by name (set by :meth:`load`)."""

    @property
    def dataset(self) -> str:
        return self.contract.name

    # ------------------------------------------------------------------ what a batch is checked against
    def load(self, commits: CommitLog, batch: BatchChecks) -> History:
        """The history of ``batch`` against every commit of the dataset.

        Indexes the commits that have no summary yet, then reads the index parts the batch's valid rows
        can match in (the latest summary says which commits have a part in which month).
        """
        summary = commits.summary
        for commit in commits.after:
            self.progress(f"clean {self.dataset}: indexing commit {commit_name(commit)} (no summary yet)")
            summary = self._build(commit, summary)
        self.summary = summary
        if not summary.partitions:  # no clean row indexed yet: nothing to look the batch's rows up in
            return History().extend(self._coded(summary))
        lookup = self._lookup(batch)
        parts = self._parts_for(lookup, summary)
        self.to_compact = {}
        matched = self._matched(parts, lookup, self._compactable(summary, parts))
        return matched.extend(self._coded(summary))

    def catch_up(self, history: History, other: CleanCommit, batch: BatchChecks) -> History:
        """``history`` followed by ``other``, the commit that took the slot after it (for re-deciding)."""
        summary = _read_summary(self.lake, self.contract, commit_name(other))
        self.summary = summary or self._build(other, self.summary)
        matched = self._matched(list(self.summary.index_parts), self._lookup(batch))
        coded = self._coded(self.summary)
        return replace(history.extend(matched), rows=coded.rows, sketches=coded.sketches)

    def prepare(self, batch: BatchChecks, decisions: Decisions) -> Prepared:
        """What the index parts and the summary of the batch's commit hold of its rows, before the commit
        (it may run while the rows are written: it reads nothing and writes nothing)."""
        clean = batch.clean_rows(decisions)
        key_hash = batch.key_hash[clean] if batch.key_hash is not None else None
        parts = _index_files(batch.row_hash[clean], batch.seen[clean], batch.dated[clean], key_hash)
        own: dict[Any, Sketch] = {}
        if batch.robust_value is not None:
            group = batch.robust_group[clean] if batch.robust_group is not None else None
            own = self._labelled(sketch_groups(batch.robust_value[clean], group))
        return Prepared(decisions, parts, int(clean.sum()), own)

    def record(
        self,
        commit: CleanCommit,
        batch: BatchChecks,
        decisions: Decisions,
        prepared: Prepared | None = None,
        compacted: Future[list[Merged]] | None = None,
    ) -> None:
        """Write the index parts and the summary of the commit just made from the batch's own rows
        (``prepared`` when made for these decisions, see :meth:`prepare`); the summary names the merged
        parts ``compacted`` wrote (see :meth:`compact`).

        A failure is logged, not raised: the commit stands, and the next clean of the dataset writes them.
        """
        if prepared is None or prepared.decisions is not decisions:
            prepared = self.prepare(batch, decisions)
        merged = compacted.result() if compacted is not None else []
        try:
            parts = self._write_index(commit, prepared.parts)
            summary = _next(self.summary, prepared.rows, prepared.sketches, parts, commit, merged)
            self._put_summary(commit, summary)
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

    def _parts_for(self, lookup: BatchLookup, summary: Summary) -> list[str]:
        """The index parts to read: those of the months the batch can match in (every part when keys are
        compared), as the summary names them: no listing."""
        if not len(lookup.hashes):
            return []
        wanted = summary.partitions if self.contract.key else [f"{on}/{m}" for on, m in lookup.partitions()]
        return [
            keys.clean_index_part(self.dataset, *where.split("/"), name)
            for where in wanted
            for name in summary.partitions.get(where, ())
        ]

    def _matched(
        self, parts: list[str], lookup: BatchLookup, compact: frozenset[str] = frozenset()
    ) -> History:
        """The hashes and keys of the index parts that concern the batch.

        Parts are small (one commit's rows of one month): what they cost is the request, so a few are
        read at once; each is matched as soon as it is read and only its matches are kept, but for the
        parts in ``compact`` (whole partitions worth compacting), kept in :attr:`to_compact`.
        """
        if not parts:
            return History()
        columns = ["row_hash", "seen", *(["key_hash"] if self.contract.key else [])]

        def match(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            table = _read_part_table(self.lake, key, columns)
            if key in compact:
                where, name = _where_and_name(key)
                self.to_compact.setdefault(where, {})[name] = table
            part = {name: table.column(name).to_numpy() for name in table.column_names}
            key_hash = part["key_hash"] if self.contract.key else None
            return lookup.match(part["row_hash"], part["seen"], key_hash)

        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            matches = list(pool.map(match, parts))
        seen_rows, key_hashes, key_rows = (list(column) for column in zip(*matches, strict=True))
        # A clean row of one of the batch's keys with the same values is the same row seen again,
        # whatever its age: keys are compared with the whole history.
        row_hash = np.concatenate([*seen_rows, *key_rows])
        return History(row_hash, np.concatenate(key_hashes), np.concatenate(key_rows))

    # ------------------------------------------------------------------ compaction
    # Each commit adds one part to each partition it has rows in: a month that every batch of a window
    # reads gathers one part per commit, and a batch pays one request per part (the ingestion months of
    # undated rows, one part a week, most of all). A batch that reads a partition of COMPACT_AT parts or
    # more writes, while its rows are written, one part holding them all, "upto-<newest commit>": every
    # row of the partition through that commit, whichever batch writes it. Its summary names that part
    # instead of the ones merged; those stay, as an older summary names them.
    def _compactable(self, summary: Summary, parts: list[str]) -> frozenset[str]:
        """The parts of ``parts`` in partitions worth compacting: read whole, of Arrow parts only (none for
        a dataset with a key, whose batches read every partition: holding them would hold the index)."""
        if self.contract.key:
            return frozenset()
        wanted = set(parts)
        out: set[str] = set()
        for where, names in summary.partitions.items():
            if len(names) < COMPACT_AT or any(_commit_number(n) is None for n in names):
                continue
            part_keys = {keys.clean_index_part(self.dataset, *where.split("/"), n) for n in names}
            if part_keys <= wanted:
                out |= part_keys
        return frozenset(out)

    def compact(self) -> list[Merged]:
        """Write one merged part for each partition :meth:`load` kept; (partition, names merged, merged
        name) of each. It may run while the batch's rows are written: what it writes depends on the
        history only, and no summary names it before the commit's. A failure is logged: no compaction."""
        merged, data = [], []
        for where, tables in sorted(self.to_compact.items()):
            newest = max(int(_commit_number(n) or 0) for n in tables)
            names = tuple(sorted(tables))
            merged.append((where, names, f"{MERGED}{newest:010d}{INDEX_SUFFIX}"))
            data.append(_ipc_bytes(pa.concat_tables([tables[n] for n in names])))
        written = [keys.clean_index_part(self.dataset, *where.split("/"), name) for where, _, name in merged]
        try:
            with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
                list(pool.map(self.lake.put_bytes, written, data))
        except LakeError as exc:
            log.warning("%s: index parts not compacted (a later clean will): %s", self.dataset, exc)
            return []
        return merged

    def _write_index(self, commit: CleanCommit, parts: list[tuple[str, str, bytes]]) -> tuple[str, ...]:
        name = f"{commit_name(commit)}{INDEX_SUFFIX}"
        written = [keys.clean_index_part(self.dataset, on, month, name) for on, month, _ in parts]
        # A part is small: what it costs is the request, so a few are put at once (a batch dated over two
        # years has some fifty). All are written before the summary that names them.
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            list(pool.map(self.lake.put_bytes, written, [data for _, _, data in parts]))
        return tuple(written)

    # ------------------------------------------------------------------ summaries
    def _put_summary(self, commit: CleanCommit, summary: Summary) -> None:
        # Compact JSON: thousands of counts, one per line indented, would be ten times the bytes.
        about = {
            **_about(self.contract, commit_name(commit)),
            "seq": commit.seq,
            "ingestion_id": commit.ingestion_id,
        }
        doc = json.dumps(summary.to_json(about), separators=(",", ":")).encode("utf-8")
        key = keys.clean_summary(self.dataset, commit_name(commit))
        self.lake.put_bytes(key, doc, content_type="application/json")

    def _build(self, commit: CleanCommit, previous: Summary) -> Summary:
        """Index a commit from its clean files, and write its summary (``previous`` + its rows)."""
        robust, column, keyed = self.contract.robust, seen_column(self.contract), bool(self.contract.key)
        columns = ["row_hash", *(["key_hash"] if keyed else []), *self.contract.column_names]
        arrays: dict[str, list[np.ndarray]] = {"row_hash": [], "seen": [], "dated": [], "key_hash": []}
        groups: dict[str, Sketch] = {}
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
        parts = self._write_index(
            commit, _index_files(joined["row_hash"], joined["seen"], joined["dated"], key_hash)
        )
        summary = _next(previous, len(joined["row_hash"]), groups, parts, commit)
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


def _next(
    previous: Summary,
    rows: int,
    groups: dict[str, Sketch],
    parts: tuple[str, ...],
    commit: CleanCommit,
    merged: Iterable[Merged] = (),
) -> Summary:
    """The summary after ``previous``, with one more commit's rows, sketches and index parts, and the
    partitions compacted (``merged``) named by their merged part, unless ``previous`` no longer names
    every part merged (another writer's commit compacted the partition first)."""
    partitions = dict(previous.partitions)
    for where, names, name in merged:
        current = partitions.get(where, ())
        if set(names) <= set(current):
            partitions[where] = (name, *(n for n in current if n not in names))
    for key in parts:  # clean/_index/<dataset>/seen_on=S/month=M/<commit>.arrow
        *_, on, month, name = key.split("/")
        where = f"{on.partition('=')[2]}/{month.partition('=')[2]}"
        partitions[where] = (*partitions.get(where, ()), name)
    return Summary(
        previous.rows + rows,
        merge_groups(previous.groups, groups),
        parts,
        (*previous.committed, commit.ingestion_id),
        partitions,
    )


@dataclass(frozen=True)
class Prepared:
    """A commit's index parts (seen on, month, Parquet bytes), clean rows and sketches by group label, as
    :meth:`CleanHistory.prepare` made them for ``decisions``."""

    decisions: Decisions
    parts: list[tuple[str, str, bytes]]
    rows: int
    sketches: dict[Any, Sketch]


def _index_files(
    row_hash: np.ndarray, seen: np.ndarray, dated: np.ndarray, key_hash: np.ndarray | None
) -> list[tuple[str, str, bytes]]:
    """The seen index of clean rows as the files of its parts (:func:`rentlake.summaries.index_parts`)."""
    return [
        (on, month, _part_bytes(frame)) for on, month, frame in index_parts(row_hash, seen, dated, key_hash)
    ]


def _part_bytes(frame: pd.DataFrame) -> bytes:
    """An index part as an Arrow IPC file, uncompressed (see the module's note)."""
    return _ipc_bytes(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None))


def _ipc_bytes(table: pa.Table) -> bytes:
    """A table as an Arrow IPC file, uncompressed."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_part(lake: Lake, key: str, columns: Iterable[str]) -> dict[str, np.ndarray]:
    """The columns of one index part (Arrow IPC, or Parquet for a part written before)."""
    table = _read_part_table(lake, key, columns)
    # One chunk: the columns are views of the bytes read, not copies.
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _read_part_table(lake: Lake, key: str, columns: Iterable[str]) -> pa.Table:
    """One index part as a table of one chunk (Arrow IPC, or Parquet for a part written before)."""
    data = lake.get_bytes(key)
    if key.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data), columns=list(columns)).combine_chunks()
    return pa.ipc.open_file(pa.py_buffer(data)).read_all().select(list(columns)).combine_chunks()


def _where_and_name(key: str) -> tuple[str, str]:
    """``("<seen on>/<month>", "<file name>")`` of an index part's key."""
    *_, on, month, name = key.split("/")
    return f"{on.partition('=')[2]}/{month.partition('=')[2]}", name


def _commit_number(name: str) -> int | None:
    """The commit number of an Arrow index part's name (``0000000012.arrow``, ``upto-0000000012.arrow``);
    None for the others (Parquet parts, commits named by their batch), which are never compacted."""
    stem = name.removeprefix(MERGED).removesuffix(INDEX_SUFFIX)
    return int(stem) if name.endswith(INDEX_SUFFIX) and _numbered(stem) else None
