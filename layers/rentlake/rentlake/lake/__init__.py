"""The data lake: every key and all lake I/O, on one of two backends.

A lake has one address: ``s3://bucket[/prefix]`` (the deployed functions, or a real bucket from the
command line) or a local folder (the ``rentlake`` command's default, ``./.rentlake``). :func:`open_lake`
opens either; both are a :class:`Lake`, so nothing above this package knows which one it has.

Zones are key prefixes::

    landing/                      uploads (an S3 event on this prefix triggers ingestion)
    raw/objects/ingest_date=D/ingestion_id=I/<attempt>/<name>   immutable copy of every accepted object
    raw/_ingestions/<I>.json      ingestion metadata (lineage, parse report); the idempotency ledger
    raw/<dataset>/ingest_date=D/ingestion_id=I/*.parquet    rows as received, header mapped, as strings
    clean/<dataset>/ingest_date=D/ingestion_id=I/*.parquet  typed rows (Glue table ``clean_<dataset>``)
    clean/_batches/<dataset>/<n>.json                       clean commit n (its files) + quality summary
    clean/_index/<dataset>/seen_on=S/month=M/<n>.arrow      hashes + day seen of commit n's clean rows
    clean/_summaries/<dataset>/<n>.json                     per-group sketches of the clean rows up to n
    quarantine/<dataset>/ingest_date=D/ingestion_id=I/*.parquet  rejected rows with ``reasons``
    quarantine/objects/ingestion_id=I/<name>                 objects rejected whole (+ ``.reason.json``)
    reports/quality/<dataset>/<I>.json   per-batch data-quality report
    reports/<run>/...                    exploration reports
    models/<version>/...                 the model registry; ``models/champion.json`` the serving pointer
    scored/...                           batch scoring output (input under ``score/``)

No other module builds a key: they call the builders of :data:`keys` and the :class:`Lake` methods.
The backends are :mod:`rentlake.lake.s3` (boto3, awswrangler and the Glue catalog) and
:mod:`rentlake.lake.local` (files under the folder, pyarrow). Only boto3 and the standard library are
imported at module load, so the light prediction path can use :meth:`Lake.get_bytes` and
:meth:`Lake.get_json`; pandas, pyarrow and awswrangler are imported inside the table methods.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentlake.records import CleanCommit, IngestedBatch, RecordError

if TYPE_CHECKING:  # pragma: no cover
    import boto3
    import pandas as pd
    import pyarrow as pa

PARTITION_COLS = ["ingest_date", "ingestion_id"]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._=-]+")


class LakeError(RuntimeError):
    """An S3 or catalog operation failed; the message names the key."""


class ObjectNotFound(LakeError):
    """The key does not exist in the lake."""


class PreconditionFailed(LakeError):
    """A conditional write lost: the key exists already, or changed since it was read (another writer)."""


def safe_name(name: str) -> str:
    """Return ``name`` reduced to characters that are safe in an S3 key segment and a Glue name.

    Parameters
    ----------
    name
        Any file or object name.

    Returns
    -------
    str
        The base name with unsafe runs replaced by ``_`` (never empty).
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return _SAFE_NAME.sub("_", base).strip("._") or "object"


@dataclass(frozen=True)
class BatchChunk:
    """Where one chunk of a batch goes in its zone table (what a backend needs to write it)."""

    ingest_date: str
    ingestion_id: str
    part: int
    dtype: dict[str, str]


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode("utf-8")


class keys:  # noqa: N801 - a namespace of key builders, read as ``keys.champion()``
    """Builders of every S3 key of the lake (pure functions, no I/O)."""

    @staticmethod
    def landing(name: str) -> str:
        """Key under which an upload lands."""
        return f"landing/{safe_name(name)}"

    @staticmethod
    def raw_object(ingest_date: str, ingestion_id: str, name: str, attempt: str) -> str:
        """Immutable copy of an accepted object, under a folder unique to the ingestion attempt that made
        it (so an attempt that fails or loses the commit deletes its own copy, never the winner's)."""
        prefix = f"raw/objects/ingest_date={ingest_date}/ingestion_id={ingestion_id}"
        return f"{prefix}/{safe_name(attempt)}/{safe_name(name)}"

    @staticmethod
    def ingestion_record(ingestion_id: str) -> str:
        """Ingestion metadata and idempotency ledger entry."""
        return f"raw/_ingestions/{ingestion_id}.json"

    @staticmethod
    def ingestion_records_prefix() -> str:
        """Prefix of the ingestion ledger."""
        return "raw/_ingestions/"

    @staticmethod
    def table_prefix(zone: str, dataset: str) -> str:
        """Prefix of a Parquet table (``raw``, ``clean``, ``quarantine`` or ``scored`` zone)."""
        if zone not in ("raw", "clean", "quarantine", "scored"):
            raise ValueError(f"no table zone named {zone!r}")
        return f"{zone}/{dataset}/"

    @staticmethod
    def batch_prefix(zone: str, dataset: str, ingest_date: str, ingestion_id: str) -> str:
        """Prefix holding one batch's Parquet files in a table zone."""
        return f"{keys.table_prefix(zone, dataset)}ingest_date={ingest_date}/ingestion_id={ingestion_id}/"

    @staticmethod
    def clean_batch_record(dataset: str, ingestion_id: str) -> str:
        """Commit marker of a cleaned batch (written last: a batch without it is not in the clean zone)."""
        return f"clean/_batches/{dataset}/{ingestion_id}.json"

    @staticmethod
    def clean_commit(dataset: str, seq: int) -> str:
        """Clean commit number ``seq`` of a dataset (created only if absent: the order of the commits)."""
        return f"clean/_batches/{dataset}/{seq:010d}.json"

    @staticmethod
    def clean_batch_records_prefix(dataset: str) -> str:
        """Prefix of a dataset's clean commit markers."""
        return f"clean/_batches/{dataset}/"

    @staticmethod
    def clean_index_prefix(dataset: str, seen_on: str | None = None, month: str | None = None) -> str:
        """Prefix of a dataset's seen index; of the rows seen on ``seen_on`` (``row_date`` or
        ``ingest_date``), and in one month ``YYYY-MM``, when given."""
        base = f"clean/_index/{dataset}/"
        if seen_on is None:
            return base
        return f"{base}seen_on={seen_on}/" + ("" if month is None else f"month={month}/")

    @staticmethod
    def clean_index_part(dataset: str, seen_on: str, month: str, name: str) -> str:
        """The seen index of one clean commit's rows seen on ``seen_on`` in one month.

        ``name`` is the part's file name (``<commit>.arrow``, Arrow IPC), or, for a part written before
        those, the commit's name alone: such a part is ``<commit>.parquet``.
        """
        file = name if name.endswith((".arrow", ".parquet")) else f"{name}.parquet"
        return f"{keys.clean_index_prefix(dataset, seen_on, month)}{file}"

    @staticmethod
    def clean_summary(dataset: str, commit: str) -> str:
        """The summary of a dataset's clean rows up to and including one commit (JSON)."""
        return f"clean/_summaries/{dataset}/{commit}.json"

    @staticmethod
    def rejected_object(ingestion_id: str, name: str) -> str:
        """Copy of an object rejected whole."""
        return f"quarantine/objects/ingestion_id={ingestion_id}/{safe_name(name)}"

    @staticmethod
    def rejected_reason(ingestion_id: str, name: str) -> str:
        """Reason file beside an object rejected whole."""
        return keys.rejected_object(ingestion_id, name) + ".reason.json"

    @staticmethod
    def quality_report(dataset: str, ingestion_id: str) -> str:
        """Per-batch data-quality report."""
        return f"reports/quality/{dataset}/{ingestion_id}.json"

    @staticmethod
    def report_file(run_id: str, name: str) -> str:
        """A file of an exploration report run."""
        return f"reports/{safe_name(run_id)}/{safe_name(name)}"

    @staticmethod
    def model_file(version: str, name: str) -> str:
        """A file of a model version in the registry."""
        return f"models/{safe_name(version)}/{safe_name(name)}"

    @staticmethod
    def models_prefix() -> str:
        """Prefix of the model registry."""
        return "models/"

    @staticmethod
    def champion() -> str:
        """The serving pointer, switched atomically by promotion."""
        return "models/champion.json"

    @staticmethod
    def champion_history() -> str:
        """Append-only history of champion switches (for rollback)."""
        return "models/champion_history.json"

    @staticmethod
    def score_input_prefix() -> str:
        """Batch scoring input prefix (an S3 event here triggers scoring)."""
        return "score/"

    @staticmethod
    def score_input(name: str) -> str:
        """Key of a file to score (an upload under ``score/`` triggers the score function)."""
        return f"{keys.score_input_prefix()}{safe_name(name)}"

    @staticmethod
    def scored_output(name: str) -> str:
        """Batch scoring output for an input object name."""
        return f"scored/{safe_name(name)}"

    @staticmethod
    def glue_table(zone: str, dataset: str) -> str:
        """Glue table name of a zone's table (``clean_listings``)."""
        return f"{zone}_{dataset}"

    @staticmethod
    def uri(bucket: str, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{bucket}/{key}"


class Lake(ABC):
    """One lake: the interface every backend implements, and the methods built on it.

    ``Lake(bucket, database, boto3_session=...)`` predates the local backend and still opens the S3 lake
    of that bucket (:class:`rentlake.lake.s3.S3Lake`); code that reads an address calls :func:`open_lake`.
    """

    database: str
    bucket: str
    """The bucket name S3 event notifications carry for this lake."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Lake:
        if cls is Lake:
            from rentlake.lake.s3 import S3Lake

            cls = S3Lake
        return super().__new__(cls)

    # ------------------------------------------------------------------ what a backend implements
    # The public methods below are the backends' common contract (tests patch them on this class);
    # each backend implements these hooks.
    @property
    @abstractmethod
    def address(self) -> str:
        """The lake's address, as :func:`open_lake` reads it (``s3://bucket/prefix`` or a folder)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where a key of this lake is, for a person or a log line (``s3://`` URI or file path)."""

    @abstractmethod
    def key_of(self, path: str) -> str:
        """The key of a path :meth:`write_batch` returned."""

    @abstractmethod
    def _write(self, key: str, data: bytes, content_type: str) -> str: ...

    @abstractmethod
    def _write_if_absent(self, key: str, data: bytes) -> str: ...

    @abstractmethod
    def _write_if_match(self, key: str, data: bytes, etag: str) -> str: ...

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abstractmethod
    def _stat(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def _list(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def _delete(self, key_list: Iterable[str]) -> int: ...

    @abstractmethod
    def _copy(self, src_key: str, dst_key: str) -> None: ...

    @abstractmethod
    def _create_catalog(self) -> None: ...

    @abstractmethod
    def _write_table(self, frame: pd.DataFrame, zone: str, dataset: str, batch: BatchChunk) -> list[str]: ...

    def _write_arrow(self, table: pa.Table, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        """Write an Arrow table as :meth:`_write_table` writes a frame (a backend may skip pandas)."""
        import pandas as pd
        import pyarrow as pa

        for i, kind in enumerate(table.schema.types):
            if pa.types.is_dictionary(kind) and pa.types.is_string(
                kind.value_type
            ):  # strings, not categories
                table = table.set_column(
                    i, table.field(i).with_type(pa.string()), table.column(i).cast(pa.string())
                )
        strings = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
        frame = table.to_pandas(types_mapper=strings.get)
        frame = frame.assign(ingest_date=batch.ingest_date, ingestion_id=batch.ingestion_id)
        return self._write_table(frame, zone, dataset, batch)

    @abstractmethod
    def _read_table(self, key: str, columns: list[str] | None) -> pd.DataFrame: ...

    @abstractmethod
    def _catalog_tables(self) -> list[str]: ...

    # ------------------------------------------------------------------ plain objects (light side)
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Write an object (a reader sees the old or the new content, never a part); returns its ETag."""
        return self._write(key, data, content_type)

    def get_bytes(self, key: str) -> bytes:
        """Read a whole object; :class:`ObjectNotFound` when it does not exist."""
        return self._read(key)

    def head(self, key: str) -> dict[str, Any] | None:
        """ETag, size, version and modification time of an object, or None when it does not exist.

        The ETag changes on every write (a champion cache compares it to see a promotion).
        """
        return self._stat(key)

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""
        return self._list(prefix)

    def delete_keys(self, key_list: Iterable[str]) -> int:
        """Delete the given keys; returns how many were deleted. A key that cannot be deleted raises."""
        return self._delete(key_list)

    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy an object within the lake."""
        self._copy(src_key, dst_key)

    def warm_up(self, catalog: bool = True) -> None:
        """Make now, at a function's cold start, what its first invocation would otherwise make: a remote
        lake's clients (their service models stay loaded in its boto3 session) and, with ``catalog``, the
        library that writes and registers its tables. A local lake has nothing to make."""
        return None

    # ------------------------------------------------------------------ Parquet tables (batch side)
    def ensure_database(self) -> None:
        """Create the table catalog if it does not exist (the Glue database, or the local catalog file)."""
        self._create_catalog()

    def write_batch(
        self,
        df: pd.DataFrame | pa.Table,
        zone: str,
        dataset: str,
        *,
        ingest_date: str,
        ingestion_id: str,
        part: int,
        dtype: dict[str, str] | None = None,
    ) -> list[str]:
        """Append one chunk of a batch to a zone table and register the table in the catalog.

        Files are named ``part-<chunk>-<uuid>`` under ``ingest_date=D/ingestion_id=I/``, so writing the
        same chunk twice adds a copy: only the files a commit record lists are ever read. The
        chunk number keeps the files in chunk order for :meth:`batch_files`.

        Parameters
        ----------
        df
            The chunk's rows: a pandas frame, or an Arrow table (written without a pandas copy where the
            backend can; a column of dictionary-encoded strings is written, and read back, as strings).
        zone
            ``raw``, ``clean`` or ``quarantine``.
        dataset
            Dataset name (the table is ``<zone>_<dataset>``).
        ingest_date, ingestion_id
            The batch's partition values.
        part
            Chunk number within the batch.
        dtype
            Athena types of the columns (``{"rent_eur": "double", ...}``).

        Returns
        -------
        list of str
            The paths written (:meth:`key_of` gives their keys).
        """
        import pyarrow as pa

        batch = BatchChunk(ingest_date=ingest_date, ingestion_id=ingestion_id, part=part, dtype=dtype or {})
        try:
            if isinstance(df, pa.Table):
                return self._write_arrow(df, zone, dataset, batch)
            frame = df.assign(ingest_date=ingest_date, ingestion_id=ingestion_id)
            return self._write_table(frame, zone, dataset, batch)
        except LakeError:
            raise
        except Exception as exc:  # awswrangler and pyarrow raise many types; the caller needs the batch
            raise LakeError(f"cannot write {zone}/{dataset} batch {ingestion_id}: {exc}") from exc

    def read_parquet_key(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read one Parquet object."""
        return self._read_table(key, columns)

    def glue_tables(self) -> list[str]:
        """Names of the tables registered in the lake's catalog (Glue, or the local catalog file)."""
        return self._catalog_tables()

    # ------------------------------------------------------------------ built on the above
    def put_json(self, key: str, obj: Any) -> str:
        """Write a JSON document (UTF-8, indented for people who open it)."""
        return self.put_bytes(key, _json_bytes(obj), content_type="application/json")

    def get_json(self, key: str) -> Any:
        """Read a JSON document; :class:`ObjectNotFound` when missing, :class:`LakeError` when invalid."""
        raw = self.get_bytes(key)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise LakeError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def get_json_or_none(self, key: str) -> Any | None:
        """Read a JSON document; None when it does not exist."""
        try:
            return self.get_json(key)
        except ObjectNotFound:
            return None

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        return self.head(key) is not None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""
        return self.delete_keys(self.list_keys(prefix))

    def create_json(self, key: str, obj: Any) -> str:
        """Write a JSON document only if ``key`` does not exist yet (S3 ``If-None-Match: *``).

        This is how a writer commits: of two writers of one commit object, exactly one succeeds.

        Returns
        -------
        str
            The new object's ETag.

        Raises
        ------
        PreconditionFailed
            When the key exists (another writer committed first).
        """
        return self._write_if_absent(key, _json_bytes(obj))

    def replace_json(self, key: str, obj: Any, *, etag: str | None) -> str:
        """Compare-and-swap a JSON document: write only if the object still has ``etag`` (S3 ``If-Match``).

        Parameters
        ----------
        key
            The object's key.
        obj
            The new document.
        etag
            The ETag read before deciding (from :meth:`head`); None means "only if it does not exist".

        Raises
        ------
        PreconditionFailed
            When the object changed (or appeared) since it was read.
        """
        if etag is None:
            return self.create_json(key, obj)
        return self._write_if_match(key, _json_bytes(obj), etag)

    def sweep(self, max_age_hours: float = 6.0) -> int:
        """Remove leftovers of writers that died (temp files); returns how many. Nothing to do on S3."""
        return 0

    def batch_files(self, zone: str, dataset: str, *, ingest_date: str, ingestion_id: str) -> list[str]:
        """The Parquet files of one batch, in chunk order."""
        prefix = keys.batch_prefix(zone, dataset, ingest_date, ingestion_id)
        return [k for k in self.list_keys(prefix) if k.endswith(".parquet")]

    def iter_keys(self, key_list: Iterable[str], columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Yield the given Parquet objects one by one (bounded memory)."""
        for key in key_list:
            yield self.read_parquet_key(key, columns=columns)

    def iter_batch(
        self,
        zone: str,
        dataset: str,
        *,
        ingest_date: str,
        ingestion_id: str,
        columns: list[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield every file under one batch's prefix, chunk by chunk (bounded memory)."""
        files = self.batch_files(zone, dataset, ingest_date=ingest_date, ingestion_id=ingestion_id)
        yield from self.iter_keys(files, columns)

    def committed_files(self, record: IngestedBatch | CleanCommit, zone: str) -> list[str]:
        """The files a commit record (ingestion record or clean commit) names for ``zone``.

        A record lists exactly the files its writer wrote, so files that another writer of the same batch
        left beside them (an S3 event delivered twice, a re-run after a crash) are never read. Records
        written before the list existed fall back to the batch's prefix.
        """
        listed = record.files(zone)
        if listed is not None:
            return list(listed)
        return self.batch_files(
            zone, record.dataset, ingest_date=record.ingest_date, ingestion_id=record.ingestion_id
        )

    def committed_batches(self, dataset: str) -> list[CleanCommit]:
        """The clean commits of a dataset, in commit order (numbered commits after older unnumbered ones).

        Raises
        ------
        LakeError
            When a commit is not a valid record (it names the key and the field).
        """
        commits = []
        for key in self.list_keys(keys.clean_batch_records_prefix(dataset)):
            try:
                commits.append(CleanCommit.from_json(self.get_json(key)))
            except RecordError as exc:
                raise LakeError(f"{self.uri(key)}: {exc}") from exc
        return sorted(commits, key=lambda c: (c.seq is not None, c.seq or 0, c.cleaned_at, c.ingestion_id))

    def read_clean(self, dataset: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The clean zone of a dataset: every committed batch, in commit order.

        Files of a batch without a commit marker (a failed run) are never read.
        """
        import pandas as pd

        frames = []
        for commit in self.committed_batches(dataset):
            frames.extend(self.iter_keys(self.committed_files(commit, "clean"), columns))
        if not frames:
            return pd.DataFrame(columns=columns or [])
        return pd.concat(frames, ignore_index=True)


def is_s3_address(address: str) -> bool:
    """Whether a lake address names an S3 bucket (``s3://bucket[/prefix]``) rather than a folder."""
    return address.startswith("s3://")


def open_lake(
    address: str | Path, *, database: str = "rentlake", boto3_session: boto3.Session | None = None
) -> Lake:
    """Open the lake at ``address``.

    Parameters
    ----------
    address
        ``s3://bucket[/prefix]``, or a local folder (created on first write).
    database
        The Glue database of the S3 lake's tables (the local lake keeps its catalog in its folder).
    boto3_session
        boto3 session of an S3 lake (default: one created on first use).

    Returns
    -------
    Lake
        An :class:`~rentlake.lake.s3.S3Lake` or a :class:`~rentlake.lake.local.LocalLake`.
    """
    text = str(address)
    if not text:
        raise LakeError("no lake configured: set RENTLAKE_LAKE (s3://bucket or a folder) or RENTLAKE_BUCKET")
    if is_s3_address(text):
        from rentlake.lake.s3 import S3Lake

        bucket, _, prefix = text[len("s3://") :].partition("/")
        return S3Lake(bucket, database, boto3_session=boto3_session, prefix=prefix)
    from rentlake.lake.local import LocalLake

    return LocalLake(Path(text), database=database)
