"""The ingest stage: landed objects → raw zone, one ingestion record per content.

What the ``ingest`` function runs (:func:`run`), one object at a time (:func:`ingest_object`):

1. read the landed object (too large: rejected where it lies, unread);
2. look its content up in the ledger (``raw/_ingestions/<id>.json``): already ingested → ``duplicate``;
3. parse it (:mod:`rentlake.parsing`) and write its raw rows as Parquet files whose names are unique to
   this attempt, and copy the object under ``raw/objects/`` (to a folder of this attempt; a large object
   is copied while it is parsed);
4. commit: create the ingestion record only if absent (or replace a rejection, compare-and-swap on its
   ETag). The record lists exactly the files written, and readers read nothing else.

An object the parser refuses, or whose reading fails in any unexpected way, is rejected whole: copied to
``quarantine/objects/`` with its ``.reason.json`` (reason ``internal_error`` and the exception for the
unexpected, whose trace is logged), its raw files deleted, and the next object of the request is read.
A lake failure (:class:`~rentlake.lake.LakeError`, after the client's retries) fails the invocation
instead: nothing is committed, and Lambda's retry of the event is the remedy; a retry would only repeat
an object's own failure, so those do not fail it (the ``IngestInternalErrors`` metric counts them).

Of two writers of one content (an S3 event delivered twice, the same bytes uploaded under two names), one
commits; the other deletes only the files it wrote itself and reports ``already committed by another
writer``. A failure before the commit deletes this attempt's files; a crash leaves them unlisted, never
read, for the lake's sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rentlake import contracts
from rentlake.config import Settings
from rentlake.events import IngestRequest
from rentlake.lake import Lake, LakeError, PreconditionFailed, keys
from rentlake.parsing import Parsed, Rejected, ingestion_id_of, parse_object, raw_dtype
from rentlake.progress import report as report_progress
from rentlake.records import (
    IngestedBatch,
    IngestionRecord,
    RecordError,
    RejectedObject,
    ingestion_record_from_json,
)
from rentlake.stages import discard_uncommitted

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
# Compare-and-swap attempts on one ledger entry before giving up (each loss means another writer moved it).
_MAX_COMMIT_TRIES = 5


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class IngestOutcome:
    """What happened to one landed object."""

    key: str
    status: str  # "ingested" | "duplicate" | "rejected"
    ingestion_id: str | None = None
    dataset: str | None = None
    rows: int = 0
    reason: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON, without the fields that are unset (``rows`` is always there)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}) or k == "rows"}


@dataclass
class IngestResult:
    """The outcomes of one invocation."""

    outcomes: list[IngestOutcome]

    @property
    def rows(self) -> int:
        """Rows added to the raw zone."""
        return sum(o.rows for o in self.outcomes)

    @property
    def rejected(self) -> int:
        """Objects rejected whole."""
        return sum(o.status == "rejected" for o in self.outcomes)

    @property
    def internal_errors(self) -> int:
        """Objects rejected because their reading failed unexpectedly (``internal_error``)."""
        return sum(o.reason == "internal_error" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The function's answer."""
        return {"rows": {"ingested": self.rows}, "outcomes": [o.to_dict() for o in self.outcomes]}


def run(lake: Lake, request: IngestRequest, settings: Settings) -> IngestResult:
    """Ingest every object a request names (what the ``ingest`` handler calls).

    Parameters
    ----------
    lake
        The lake.
    request
        The keys to ingest, and optionally the dataset contract to force and a column map.
    settings
        The deployment's settings (rows per raw part, largest object).

    Returns
    -------
    IngestResult
        One outcome per key, in order.
    """
    lake.ensure_database()
    return IngestResult(
        [
            ingest_object(
                lake,
                key,
                dataset=request.dataset,
                column_map=request.column_map,
                chunk_rows=settings.chunk_rows,
                max_bytes=settings.max_object_bytes,
            )
            for key in request.keys
        ]
    )


# ------------------------------------------------------------------------------------ the ledger
@dataclass
class _Ledger:
    """The ledger entry of a content as read: the record (None when absent) and the ETag to swap on."""

    record: IngestionRecord | None
    etag: str | None

    @property
    def ingested(self) -> IngestedBatch | None:
        """The record, when it says the content is ingested (which nothing replaces)."""
        return self.record if isinstance(self.record, IngestedBatch) else None


def _read_ledger(lake: Lake, ingestion_id: str) -> _Ledger:
    # The ETag is read before the body: if the entry changes in between, a swap on this ETag fails
    # (never the other way round, which could overwrite an ingestion with a stale decision).
    key = keys.ingestion_record(ingestion_id)
    head = lake.head(key)
    if head is None:
        return _Ledger(None, None)
    doc = lake.get_json_or_none(key)
    try:
        return _Ledger(None if doc is None else ingestion_record_from_json(doc), head["etag"])
    except RecordError as exc:  # a ledger entry written by hand or truncated: name it, do not guess
        raise LakeError(f"{lake.uri(key)}: {exc}") from exc


def _commit(lake: Lake, record: IngestionRecord, seen: _Ledger) -> tuple[bool, _Ledger]:
    """Write ``record`` as the content's ledger entry unless an ingestion is already there.

    A rejection may replace a rejection, an ingestion a rejection; nothing replaces an ingestion.

    Returns
    -------
    tuple
        ``(True, the entry replaced)`` when this writer committed, ``(False, the ingestion another writer
        committed)`` otherwise.
    """
    key = keys.ingestion_record(record.ingestion_id)
    for _ in range(_MAX_COMMIT_TRIES):
        if seen.ingested is not None:
            return False, seen
        try:
            lake.replace_json(key, record.to_json(), etag=seen.etag)  # etag None: create only if absent
            return True, seen
        except PreconditionFailed:
            seen = _read_ledger(lake, record.ingestion_id)
    raise LakeError(f"{lake.uri(key)} keeps changing under this writer: {_MAX_COMMIT_TRIES} commits lost")


# ------------------------------------------------------------------------------------ one object
def ingest_object(
    lake: Lake,
    key: str,
    *,
    dataset: str | None = None,
    column_map: Mapping[str, str] | None = None,
    chunk_rows: int = 250_000,
    max_bytes: int = 512 << 20,
    progress: Progress = report_progress,
    now: Callable[[], datetime] = _now,
) -> IngestOutcome:
    """Ingest one object of the lake (normally under ``landing/``) into the raw zone.

    Idempotent: the ingestion id comes from the content, and content the ledger records as ingested adds
    nothing. An object rejected whole is copied to ``quarantine/objects/`` with its reason; the same
    content landing again is tried again.

    Parameters
    ----------
    lake
        The lake.
    key
        The object's key.
    dataset
        Force a dataset contract instead of recognising the header.
    column_map
        Source column → contract field, for headers no alias knows.
    chunk_rows
        Rows per raw Parquet part (bounds memory).
    max_bytes
        Larger objects are rejected whole.
    progress
        Called with short progress messages.
    now
        Clock (injectable for tests).

    Returns
    -------
    IngestOutcome
        ``ingested`` (with the row count), ``duplicate`` (nothing added: ingested before, or by another
        writer at the same time) or ``rejected`` (reason code and a message saying what to do).

    Raises
    ------
    LakeError
        When the lake fails (nothing of this attempt is committed).
    """
    head = lake.head(key)
    if head is None:
        msg = f"{lake.uri(key)} does not exist"
        return IngestOutcome(key, "rejected", reason="not_found", message=msg)
    if head["size"] > max_bytes:
        return _reject_large(lake, key, head, max_bytes)
    data = lake.get_bytes(key)

    def open_object() -> Parsed:
        return parse_object(
            data,
            _name(key),
            dataset=dataset,
            column_map=column_map,
            chunk_rows=chunk_rows,
            max_bytes=max_bytes,
        )

    (ingestion_id, sha), opened = _hash_while(data, open_object)
    seen = _read_ledger(lake, ingestion_id)
    if seen.ingested is not None:
        return _duplicate(key, seen.ingested, "same content as")
    stamp = now()
    try:
        parsed = opened.take()
        record = _write_raw(lake, key, head, sha, ingestion_id, parsed, stamp, progress)
    except Rejected as exc:
        return _reject(lake, key, head, sha, ingestion_id, exc, stamp, seen)
    except LakeError:
        raise
    except Exception as exc:  # a fault of this object's reading: it is rejected, the next one is read
        log.exception("internal error while ingesting %s", key)
        failure = Rejected("internal_error", f"{type(exc).__name__}: {exc}"[:2000])
        return _reject(lake, key, head, sha, ingestion_id, failure, stamp, seen)
    return _commit_ingested(lake, record, seen, parsed)


# Objects from this size on are hashed in a thread while they are opened, and copied to the raw zone in a
# thread while they are parsed (under it, a thread costs more than it hides).
_APART_BYTES = 4 << 20


def _hash_while(data: bytes, open_object: Callable[[], Parsed]) -> tuple[tuple[str, str], _Opened]:
    """The content's ingestion id and sha256, and what ``open_object()`` gave: the parsed object, or the
    exception it raised (raised by :meth:`_Opened.take`).

    The object is opened (format, header, the CSV record index: no lake I/O) while its bytes are hashed
    in another thread; both run outside the GIL. A failure to open it waits: the ledger decides first
    (content already ingested is a duplicate, however it would be read now).
    """
    if len(data) < _APART_BYTES:
        digest = ingestion_id_of(data)
        return digest, _Opened.of(open_object)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-hash") as pool:
        hashing = pool.submit(ingestion_id_of, data)
        opened = _Opened.of(open_object)
        return hashing.result(), opened


class _Opened:
    """An object opened for parsing, or the exception its opening raised, held until it is taken."""

    def __init__(self, value: Parsed | Exception) -> None:
        self.value: Parsed | Exception | None = value

    @classmethod
    def of(cls, open_object: Callable[[], Parsed]) -> _Opened:
        try:
            return cls(open_object())
        except Exception as exc:  # held, then raised by take() once the ledger has been read
            return cls(exc)

    def take(self) -> Parsed:
        """The parsed object; raises the exception instead when opening it failed."""
        value, self.value = self.value, None
        if isinstance(value, Exception):
            try:
                raise value
            finally:  # no frame keeps the error (and the object's bytes its traceback holds) in a cycle
                value = None
        assert value is not None, "taken twice"
        return value


def _write_raw(
    lake: Lake,
    key: str,
    head: dict[str, Any],
    sha: str,
    ingestion_id: str,
    parsed: Parsed,
    stamp: datetime,
    progress: Progress,
) -> IngestedBatch:
    """Write the raw rows and the object's copy; the record that would commit them (not written yet).

    Each chunk is written while the next one is parsed (:class:`_ChunkWrites`). On any failure, the files
    this attempt wrote are deleted (no other writer's) before the error goes on, once the write in flight
    has ended.
    """
    ingest_date = stamp.strftime("%Y-%m-%d")
    name = _name(key)
    contract = contracts.get(parsed.dataset)
    dtype = raw_dtype(contract)
    rows = 0
    lineage = Lineage({"source_key": key, "source_etag": head["etag"], "source_sha256": sha})

    def write(part: int, chunk: pa.Table) -> list[str]:
        return lake.write_batch(
            chunk,
            "raw",
            parsed.dataset,
            ingest_date=ingest_date,
            ingestion_id=ingestion_id,
            part=part,
            dtype=dtype,
        )

    raw_copy = keys.raw_object(ingest_date, ingestion_id, name, attempt=uuid.uuid4().hex[:16])
    copy = _ObjectCopy(lake, key, raw_copy, apart=head["size"] >= _APART_BYTES)
    writes = _ChunkWrites(lake, write)
    try:
        for part, table in enumerate(parsed.tables):
            chunk = lineage.add(table)
            writes.add(part, chunk)
            rows += chunk.num_rows
            progress(f"ingest {name}: {rows:,} rows read")
        written = writes.finish()
        if rows == 0:
            raise Rejected("no_data_rows", f"{name} has a header but no data rows")
        copy.finish()
    except BaseException:
        discard_uncommitted(lake, [*writes.abort(), *copy.abort()])
        raise
    finally:
        writes.close()
    return IngestedBatch(
        ingestion_id=ingestion_id,
        dataset=parsed.dataset,
        contract_version=contract.version,
        source_key=key,
        source_etag=head["etag"],
        source_version_id=head.get("version_id"),
        source_sha256=sha,
        size_bytes=head["size"],
        raw_object=raw_copy,
        raw_table=keys.batch_prefix("raw", parsed.dataset, ingest_date, ingestion_id),
        raw_files=tuple(written),
        ingest_date=ingest_date,
        ingested_at=stamp.isoformat(),
        rows=rows,
        format=parsed.format,
        decimal_comma=parsed.decimal_comma,
        details={k: v for k, v in parsed.details.items() if k != "header"},
        header=parsed.details.get("header"),
        mapping=parsed.mapping.describe(),
    )


class Lineage:
    """The lineage columns of a batch's raw rows: one string column per item, the same value on every row.

    Each column is a dictionary of one string (4 bytes a row, and written as the dictionary it is: no
    hashing of the same 64 characters on every row), built once for the largest chunk seen; each chunk
    gets a zero-copy slice. The lake writes them as strings (:meth:`rentlake.lake.Lake.write_batch`).

    Parameters
    ----------
    values
        Column name → the value of every row (the source object's key, ETag and sha256).
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.columns: dict[str, pa.Array] = {}

    def add(self, table: pa.Table) -> pa.Table:
        """``table`` with the lineage columns appended, in order."""
        n = table.num_rows
        for name, value in self.values.items():
            column = self.columns.get(name)
            if column is None or len(column) < n:
                column = self.columns[name] = constant_column(value, n)
            table = table.append_column(name, column.slice(0, n))
        return table


def constant_column(value: str, n: int) -> pa.DictionaryArray:
    """``n`` times ``value``, as a dictionary array of that one string (built from buffers: ``pa.array``
    would import pandas to check its argument)."""
    import numpy as np
    import pyarrow as pa

    raw = value.encode("utf-8")
    offsets = np.array([0, len(raw)], dtype=np.int32)
    dictionary = pa.StringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(raw))
    indices = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(np.zeros(n, dtype=np.int32))])
    return pa.DictionaryArray.from_arrays(indices, dictionary)


class _ObjectCopy:
    """The copy of the object to ``raw/objects/``, made while its rows are parsed and written.

    The copy is the lake's (a server-side copy on S3): on a large object it runs in a thread from the start,
    so its time hides behind the parse instead of following it; a small object is copied at the end, in
    the calling thread (a thread would cost more than it hides). Its key is unique to this attempt, so an
    attempt that fails deletes its own copy (:meth:`abort`) and nobody else's.
    """

    def __init__(self, lake: Lake, source: str, target: str, *, apart: bool) -> None:
        self.lake, self.source, self.target = lake, source, target
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Future[None] | None = None
        if apart:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-copy")
            self.pending = self.pool.submit(lake.copy, source, target)

    def finish(self) -> None:
        """Wait for the copy (or make it now); its failure is raised here."""
        try:
            if self.pending is None:
                self.lake.copy(self.source, self.target)
            else:
                self.pending.result()
        finally:
            self._close()

    def abort(self) -> list[str]:
        """After a failure: the copy's key, if it was made (to delete), once the copy in flight has ended."""
        pending, self.pending = self.pending, None
        self._close()
        if pending is None or pending.cancelled() or pending.exception() is not None:
            return []
        return [self.target]

    def _close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _ChunkWrites:
    """A batch's raw chunks written in order, each while the next one is parsed.

    The first chunk is held until a second one comes: an object of one chunk is written in the calling
    thread, and no thread is started. From the second on, the writes run one at a time in a background
    thread (parsing and writing both run in Arrow, outside the GIL), so that at most three chunks are held:
    one written, one waiting, one being parsed.

    Parameters
    ----------
    lake
        The lake (its keys are what the writes return).
    write
        Writes one chunk ``(part, table)`` and returns the paths written.
    """

    def __init__(self, lake: Lake, write: Callable[[int, pa.Table], list[str]]) -> None:
        self.lake = lake
        self.write = write
        self.written: list[str] = []
        self.held: tuple[int, pa.Table] | None = None
        self.pending: Future[list[str]] | None = None
        self.pool: ThreadPoolExecutor | None = None

    def add(self, part: int, chunk: pa.Table) -> None:
        """Take the next chunk; the one held before it starts being written."""
        if self.held is not None:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
            self._collect()
            self.pending = self.pool.submit(self.write, *self.held)
        self.held = (part, chunk)

    def finish(self) -> list[str]:
        """Write what is left; the keys of every file written, in order."""
        self._collect()
        if self.held is not None:
            part, chunk = self.held
            self.held = None
            self.written += [self.lake.key_of(p) for p in self.write(part, chunk)]
        return self.written

    def abort(self) -> list[str]:
        """After a failure: the keys written so far (to delete), once the write in flight has ended (its
        own failure, if it failed too, leaves no file it names; the first failure is the one reported)."""
        self.held = None
        future, self.pending = self.pending, None
        if future is not None and future.exception() is None:
            self.written += [self.lake.key_of(p) for p in future.result()]
        return self.written

    def close(self) -> None:
        """Stop the background thread (after its write, if one is running)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _collect(self) -> None:
        """Wait for the write in flight and keep its keys; its error, if it failed, is raised here."""
        future, self.pending = self.pending, None
        if future is None:
            return
        error = future.exception()
        if error is not None:
            try:
                raise error
            finally:  # neither this frame nor the future keep the error (and its chunk) alive in a cycle
                error = future = None
        self.written += [self.lake.key_of(p) for p in future.result()]


def _commit_ingested(lake: Lake, record: IngestedBatch, seen: _Ledger, parsed: Parsed) -> IngestOutcome:
    """Commit the ingestion; the loser of a race deletes its own files and says who won."""
    won, entry = _commit(lake, record, seen)
    if not won and entry.ingested is not None:
        # Only this attempt's files (the copy of the object too: its key is the attempt's own).
        discard_uncommitted(lake, [*(record.raw_files or ()), record.raw_object])
        return _duplicate(record.source_key, entry.ingested, "already committed by another writer:")
    if isinstance(entry.record, RejectedObject):  # rejected before, ingested now: the rejected copy goes
        lake.delete_keys(_rejected_keys(entry.record.ingestion_id, entry.record.source_key))
    log.info(
        "ingested %s: %d rows as %s (%s)", record.source_key, record.rows, record.dataset, record.ingestion_id
    )
    return IngestOutcome(
        record.source_key,
        "ingested",
        record.ingestion_id,
        record.dataset,
        record.rows,
        details={"format": record.format, **record.details, "unknown_columns": parsed.mapping.unknown},
    )


def _duplicate(key: str, ingested: IngestedBatch, how: str) -> IngestOutcome:
    return IngestOutcome(
        key,
        "duplicate",
        ingested.ingestion_id,
        ingested.dataset,
        0,
        reason="committed_by_another_writer" if how.startswith("already") else None,
        message=f"{how} {ingested.source_key} (ingested {ingested.ingested_at}): nothing added",
    )


# ------------------------------------------------------------------------------------ rejections
def _reject(
    lake: Lake,
    key: str,
    head: dict[str, Any],
    sha: str,
    ingestion_id: str,
    exc: Rejected,
    stamp: datetime,
    seen: _Ledger,
) -> IngestOutcome:
    """Keep a copy of the object and its reason, then record the rejection (unless it was ingested)."""
    kept, reason_key = _rejected_keys(ingestion_id, key)
    record = RejectedObject(
        ingestion_id=ingestion_id,
        source_key=key,
        source_etag=head["etag"],
        source_sha256=sha,
        reason=exc.code,
        message=exc.message,
        rejected_at=stamp.isoformat(),
        kept_at=kept,
    )
    # The copy and its reason first: a committed rejection always points to a copy that exists.
    lake.copy(key, kept)
    lake.put_json(reason_key, record.reason_json())
    won, entry = _commit(lake, record, seen)
    if not won and entry.ingested is not None:
        # Ingested by another writer meanwhile: this rejection is stale, and so is its copy.
        lake.delete_keys([kept, reason_key])
        return _duplicate(key, entry.ingested, "already committed by another writer:")
    log.warning("rejected %s: %s", key, exc)
    return IngestOutcome(
        key,
        "rejected",
        ingestion_id,
        reason=exc.code,
        message=exc.message,
        details={"kept_at": kept, "reason_at": reason_key},
    )


def _reject_large(lake: Lake, key: str, head: dict[str, Any], max_bytes: int) -> IngestOutcome:
    # Too large to read into memory: identified by its ETag instead of its content hash, and left where
    # it landed (copying it would double the cost; the reason file says where it is).
    ingestion_id = "etag-" + head["etag"][:20]
    msg = f"{key} is {head['size']} bytes; the limit of one object is {max_bytes}: split it"
    reason_key = keys.rejected_reason(ingestion_id, key)
    lake.put_json(reason_key, {"source_key": key, "reason": "too_large", "message": msg})
    details = {"kept_at": key, "reason_at": reason_key}
    return IngestOutcome(key, "rejected", ingestion_id, reason="too_large", message=msg, details=details)


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _rejected_keys(ingestion_id: str, source_key: str) -> list[str]:
    """Where an object rejected whole is kept, and its reason file."""
    name = _name(source_key)
    return [keys.rejected_object(ingestion_id, name), keys.rejected_reason(ingestion_id, name)]
