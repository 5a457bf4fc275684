"""The local backend: the lake is a folder, every key a file at ``<root>/<key>``.

No server and no copy: each command reads and writes the files themselves, so two commands on one folder
see each other's writes as two Lambda functions on one bucket do.

* Writes are atomic: the data goes to a temp file in the key's own folder (a name beginning with
  :data:`TEMP_PREFIX`, unique per writer), then ``os.replace`` puts it in place. A reader sees the old
  file or the new one, never a part; a writer killed mid-write leaves only a temp file, which no read or
  listing returns (names beginning with ``.`` are never keys) and :meth:`LocalLake.sweep` removes once
  it is old.
* Conditional writes (:meth:`~rentlake.lake.Lake.create_json`, :meth:`~rentlake.lake.Lake.replace_json`)
  check and rename under an exclusive ``flock`` on ``<root>/.lock``; the ETag is the MD5 of the content,
  as S3 gives for a single-part upload (an object the lake wrote keeps it in an extended attribute, so a
  HEAD does not read the object again; a file changed since, or put there by hand, is read).
* Tables are Parquet files written by pyarrow with awswrangler's conventions (same column types, file
  names ``part-<chunk>-<uuid>.snappy.parquet``, partition folders ``ingest_date=D/ingestion_id=I``, the
  partition columns in the path only), and read back as awswrangler reads them (nullable pandas dtypes).
* There is no Glue: the catalog is one small JSON document per table under ``_catalog/`` (its columns
  and Athena types, its partition keys and location), kept for people and for
  :meth:`~rentlake.lake.Lake.glue_tables`; :meth:`~rentlake.lake.Lake.ensure_database` creates the folder.

Only the standard library is imported at module load (pyarrow and pandas inside the table methods).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from rentlake.lake import (
    PARTITION_COLS,
    BatchChunk,
    Lake,
    LakeError,
    ObjectNotFound,
    PreconditionFailed,
    keys,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

LOCAL_BUCKET = "rentlake-local"
"""The bucket name in the S3 events the command line builds for a local lake (no such bucket exists)."""
TEMP_PREFIX = ".tmp-"
"""File names beginning with this are writes in progress (or left by a killed writer), never keys."""
DEFAULT_SWEEP_HOURS = 6.0
CATALOG_PREFIX = "_catalog/"
# Objects from this size on are hashed in a thread while they are written (an upload of 100 MB: ~0.35 s
# -> ~0.2 s on this machine, when a core is free).
_HASH_APART_BYTES = 4 << 20
# The extended attribute holding the MD5 of a file the lake wrote: a HEAD of a large object (its ETag, as
# S3 gives it without reading the object) then need not read it again.
_MD5_ATTR = "user.rentlake.md5"
# awswrangler's ParquetWriter settings (s3/_write_parquet.py), so that files read the same from both lakes;
# only the encoding differs (see _encodings), which changes no value read back.
_PARQUET_WRITER = {
    "compression": "snappy",
    "coerce_timestamps": "ms",
    "flavor": "spark",
    "version": "1.0",
    # A column of many distinct values gives up its dictionary sooner (256 KiB of it, not 1 MiB): the
    # hashing of values that end up written plain anyway was a third of the write time of raw listings.
    "dictionary_pagesize_limit": 256 << 10,
}
_ATHENA_TO_ARROW = {
    "tinyint": "int8",
    "smallint": "int16",
    "int": "int32",
    "integer": "int32",
    "bigint": "int64",
    "float": "float32",
    "real": "float32",
    "double": "float64",
    "boolean": "bool_",
    "string": "string",
    "date": "date32",
    "binary": "binary",
}


def is_temp_name(name: str) -> bool:
    """Whether a file name is a temp file of a write in progress (or of a writer that died)."""
    return name.startswith(TEMP_PREFIX)


def md5_hex(data: bytes) -> str:
    """The ETag S3 gives a single-part upload of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# Extended attributes are Linux's (os.setxattr is missing on macOS and Windows): elsewhere each HEAD hashes.
_XATTRS = hasattr(os, "setxattr") and hasattr(os, "getxattr")


def _remember_md5(fh: BinaryIO, digest: str) -> None:
    """Keep ``digest``, the MD5 of what ``fh`` holds, on the file itself (an extended attribute, which
    follows it through the rename into place), with the size and modification time it belongs to."""
    if not _XATTRS:
        return
    fh.flush()
    stat = os.fstat(fh.fileno())
    try:
        os.setxattr(fh.fileno(), _MD5_ATTR, f"{stat.st_size}:{stat.st_mtime_ns}:{digest}".encode())
    except OSError:  # a file system without user attributes: the ETag is then computed by each HEAD
        return


def _remembered_md5(path: Path, stat: os.stat_result) -> str | None:
    """The MD5 :func:`_remember_md5` kept on ``path``, if the file is still as it was then."""
    if not _XATTRS:
        return None
    try:
        size, mtime, digest = os.getxattr(path, _MD5_ATTR).decode().split(":")
        same = (int(size), int(mtime)) == (stat.st_size, stat.st_mtime_ns)
    except (OSError, ValueError):  # none kept (a file put there by hand), or not ours
        return None
    return digest if same and len(digest) == 32 else None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalLake(Lake):
    """A lake in a local folder.

    Parameters
    ----------
    root
        The folder (created on first write); keys are files under it.
    database
        Kept for symmetry with the S3 lake (recorded in the catalog documents).
    """

    bucket = LOCAL_BUCKET

    def __init__(self, root: str | Path, database: str = "rentlake") -> None:
        self.root = Path(root).expanduser().resolve()
        self.database = database

    def __repr__(self) -> str:
        return f"LocalLake({str(self.root)!r})"

    @property
    def address(self) -> str:
        """The folder's absolute path."""
        return str(self.root)

    # ------------------------------------------------------------------ keys and files
    def path(self, key: str) -> Path:
        """The file of a key; :class:`LakeError` for a key that would leave the folder or is no key."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or key.startswith("/"):
            raise LakeError(f"{key!r} is not a valid lake key")
        if any(p.startswith(".") for p in parts):
            raise ObjectNotFound(f"{key!r} names a hidden file, which is never a lake object")
        return self.root.joinpath(*parts)

    def uri(self, key: str) -> str:
        """The absolute path of a key's file (where a person opens it)."""
        return str(self.root / key) if key else str(self.root) + os.sep

    def key_of(self, path: str) -> str:
        """The key of a file path under the folder (as :meth:`write_batch` returns them)."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError as exc:
            raise LakeError(f"{path} is not in the lake {self.root}") from exc

    def _temp_beside(self, path: Path) -> Path:
        return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{path.name}")

    def _write_file(self, path: Path, fill: Callable[[BinaryIO], None]) -> None:
        """Write a file atomically: ``fill`` writes a temp file beside it, which then replaces it."""
        for attempt in range(5):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_beside(path)
            try:
                with tmp.open("xb") as fh:
                    fill(fh)
                os.replace(tmp, path)
                return
            except FileNotFoundError:
                # A deleter pruned the (then empty) folder between mkdir and open: make it again.
                tmp.unlink(missing_ok=True)
                if attempt == 4:
                    raise
            except IsADirectoryError as exc:
                tmp.unlink(missing_ok=True)
                raise LakeError(f"cannot write {path}: a folder of that name holds other keys") from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def _stage(self, path: Path, data: bytes) -> Path:
        """A complete temp file holding ``data`` beside ``path`` (for conditional writes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp_beside(path)
        tmp.write_bytes(data)
        return tmp

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock of the lake's conditional writes (between threads and processes)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ plain objects
    def _write(self, key: str, data: bytes, content_type: str) -> str:
        path = self.path(key)
        if len(data) < _HASH_APART_BYTES:
            etag = md5_hex(data)
            return self._write_hashed(path, data, lambda: etag)
        with ThreadPoolExecutor(max_workers=1) as pool:  # hashed while written: both outside the GIL
            return self._write_hashed(path, data, pool.submit(md5_hex, data).result)

    def _write_hashed(self, path: Path, data: bytes, etag: Callable[[], str]) -> str:
        """Write ``data`` at ``path`` with its MD5 (``etag()``) kept on the file; returns the MD5."""

        def fill(fh: BinaryIO) -> None:
            fh.write(data)
            _remember_md5(fh, etag())

        try:
            self._write_file(path, fill)
        except OSError as exc:
            raise LakeError(f"cannot write {path}: {exc}") from exc
        return etag()

    def _write_if_absent(self, key: str, data: bytes) -> str:
        path = self.path(key)
        tmp = self._stage(path, data)
        try:
            with self._locked():
                if path.exists():
                    raise PreconditionFailed(f"{path} was written by another writer")
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return md5_hex(data)

    def _write_if_match(self, key: str, data: bytes, etag: str) -> str:
        path = self.path(key)
        tmp = self._stage(path, data)
        try:
            with self._locked():
                try:
                    current = _md5_file(path)
                except FileNotFoundError:
                    current = None
                if current != etag:
                    raise PreconditionFailed(f"{path} changed since it was read (another writer)")
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return md5_hex(data)

    def _read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise LakeError(f"cannot read {path}: {exc}") from exc

    def _stat(self, key: str) -> dict[str, Any] | None:
        try:
            path = self.path(key)
            stat = path.stat()
            if not path.is_file():
                return None
            etag = _remembered_md5(path, stat) or _md5_file(path)
        except (ObjectNotFound, FileNotFoundError, NotADirectoryError):
            return None
        return {
            "etag": etag,
            "size": stat.st_size,
            "version_id": None,
            "last_modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        }

    def _list(self, prefix: str) -> list[str]:
        folder, _, partial = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            # Hidden names are temp files, the lock and anything a tool parks there: never keys.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if dirpath == str(start) and partial:
                dirnames[:] = [d for d in dirnames if d.startswith(partial)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            out.extend(base + f for f in filenames if not f.startswith(".") and (base + f).startswith(prefix))
        return sorted(out)

    def _delete(self, key_list: Iterable[str]) -> int:
        count = 0
        for key in key_list:
            path = self.path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise LakeError(f"cannot delete {path}: {exc}") from exc
            count += 1
            self._prune(path.parent)
        return count

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty (the folder stays readable)."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): the common case, nothing to do
                return
            folder = folder.parent

    def _copy(self, src_key: str, dst_key: str) -> None:
        src = self.path(src_key)
        if not src.is_file():
            raise ObjectNotFound(f"cannot copy {src}: it does not exist")
        try:
            with src.open("rb") as source:
                self._write_file(self.path(dst_key), lambda fh: shutil.copyfileobj(source, fh, 1 << 20))
        except OSError as exc:
            raise LakeError(f"cannot copy {src} to {dst_key}: {exc}") from exc

    def sweep(self, max_age_hours: float = DEFAULT_SWEEP_HOURS) -> int:
        """Remove temp files older than ``max_age_hours`` (left by writers that were killed).

        A younger temp file may belong to a writer still running, so it stays.

        Returns
        -------
        int
            How many files were removed.
        """
        cutoff = time.time() - max_age_hours * 3600
        removed = 0
        if not self.root.is_dir():
            return 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if not is_temp_name(name):
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):  # its writer finished or another sweep won
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    # ------------------------------------------------------------------ Parquet tables
    def _create_catalog(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _write_table(self, frame: pd.DataFrame, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        table = arrow_table(frame.drop(columns=PARTITION_COLS), batch.dtype)
        return self._write_parquet(table, zone, dataset, batch)

    def _write_arrow(self, table: pa.Table, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        table = table.drop_columns([c for c in PARTITION_COLS if c in table.column_names])
        return self._write_parquet(cast_columns(table, batch.dtype), zone, dataset, batch)

    def _write_parquet(self, table: pa.Table, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        prefix = keys.batch_prefix(zone, dataset, batch.ingest_date, batch.ingestion_id)
        path = self.path(f"{prefix}part-{batch.part:05d}-{uuid.uuid4().hex}.snappy.parquet")
        self._write_file(path, lambda fh: write_parquet(fh, table))
        self._register(zone, dataset, table.schema)
        return [str(path)]

    def _register(self, zone: str, dataset: str, schema: pa.Schema) -> None:
        """Record the table's columns in its catalog document (new columns are added, as Glue does)."""
        key = f"{CATALOG_PREFIX}{keys.glue_table(zone, dataset)}.json"
        columns = {f.name: athena_type(f.type) for f in schema}
        for _ in range(10):
            head = self.head(key)
            doc = self.get_json_or_none(key) if head else None
            known = dict(doc.get("columns", {})) if isinstance(doc, dict) else {}
            if head and all(c in known for c in columns):
                return
            entry = {
                "table": keys.glue_table(zone, dataset),
                "database": self.database,
                "location": keys.table_prefix(zone, dataset),
                "columns": {**known, **{c: t for c, t in columns.items() if c not in known}},
                "partition_keys": {c: "string" for c in PARTITION_COLS},
            }
            try:
                self.replace_json(key, entry, etag=head["etag"] if head else None)
                return
            except PreconditionFailed:
                continue  # another writer registered first: merge with what it wrote
        raise LakeError(
            f"cannot register table {keys.glue_table(zone, dataset)}: too many concurrent writers"
        )

    def _read_table(self, key: str, columns: list[str] | None) -> pd.DataFrame:
        import pyarrow.parquet as pq

        path = self.path(key)
        try:
            table = pq.read_table(path, columns=columns, use_threads=False, use_pandas_metadata=False)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{path} does not exist") from exc
        return arrow_to_pandas(table)

    def _catalog_tables(self) -> list[str]:
        return sorted(k[len(CATALOG_PREFIX) : -len(".json")] for k in self.list_keys(CATALOG_PREFIX))


def arrow_table(frame: pd.DataFrame, dtype: dict[str, str]) -> pa.Table:
    """The Arrow table awswrangler writes for ``frame``: inferred types, then the Athena ``dtype`` casts.

    Parameters
    ----------
    frame
        The rows (without partition columns).
    dtype
        Athena type of some columns (``{"rent_eur": "double"}``); unknown types raise :class:`LakeError`.
    """
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False, safe=True)
    for name, athena in dtype.items():
        if name in table.column_names:
            target = arrow_type(athena, str(frame[name].dtype))
            index = table.column_names.index(name)
            table = table.set_column(index, pa.field(name, target), table.column(name).cast(target))
    return table


def _encodings(schema: pa.Schema) -> dict[str, list[str]]:
    """Which columns get a dictionary and which get statistics (min and max per row group).

    Text gets a dictionary (a district, a date, the lineage columns repeat their values); numbers are
    written plain: a row number or a price is mostly distinct, and its dictionary would be built only to
    be dropped. Numbers and dates get statistics (a query engine skips row groups by them); text does not:
    comparing every string cost a fifth of the write time of raw listings, and no reader filters raw text
    by range.
    """
    import pyarrow as pa

    def text(kind: pa.DataType) -> bool:
        return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)

    return {
        "use_dictionary": [f.name for f in schema if text(f.type)],
        "write_statistics": [f.name for f in schema if not text(f.type)],
    }


def write_parquet(sink: Any, table: pa.Table) -> None:
    """Write ``table`` as one Parquet file to ``sink`` (a path or a binary file), as the lake writes tables:
    awswrangler's settings, with the encodings of :func:`_encodings` and :func:`_string_dictionaries`."""
    import pyarrow.parquet as pq

    table, schema_options = _string_dictionaries(table)
    options = {**_PARQUET_WRITER, **_encodings(table.schema), **schema_options}
    with pq.ParquetWriter(sink, table.schema, **options) as writer:
        writer.write_table(table)
        if not options.get("store_schema", True) and table.schema.metadata:
            # Without the Arrow schema the writer drops the schema's metadata (the pandas metadata
            # readers rebuild a frame's dtypes from): it is written on its own.
            writer.add_key_value_metadata(table.schema.metadata)


def _string_dictionaries(table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    """How to write a table's dictionary-of-string columns so that they read back as strings (as from the
    S3 lake, where they are strings): as the dictionaries they are, without the Arrow schema (a reader
    then takes each column's type from Parquet's own: string), when every other column reads back the
    same without it; else decoded first.

    Returns
    -------
    tuple
        The table to write and the writer options it needs.
    """
    import pyarrow as pa

    def string_dictionary(kind: pa.DataType) -> bool:
        return pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type)

    def plain(kind: pa.DataType) -> bool:  # read back the same from Parquet's types alone
        return (
            pa.types.is_string(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_floating(kind)
            or (pa.types.is_integer(kind) and pa.types.is_signed_integer(kind))
            # the spark flavor writes timestamps as INT96, read back in nanoseconds with or without it
            or (pa.types.is_timestamp(kind) and kind.tz is None)
        )

    kinds = [f.type for f in table.schema]
    if not any(string_dictionary(k) for k in kinds):
        return table, {}
    if all(string_dictionary(k) or plain(k) for k in kinds):
        return table, {"store_schema": False}
    for i, kind in enumerate(kinds):
        if string_dictionary(kind):
            table = table.set_column(
                i, table.field(i).with_type(pa.string()), table.column(i).cast(pa.string())
            )
    return table, {}


def cast_columns(table: pa.Table, dtype: dict[str, str]) -> pa.Table:
    """``table`` with the columns ``dtype`` names cast to the Arrow types of their Athena types.

    Parameters
    ----------
    table
        The rows.
    dtype
        Athena type of some columns; unknown types raise :class:`LakeError`.
    """
    import pyarrow as pa

    for name, athena in dtype.items():
        if name not in table.column_names:
            continue
        index = table.column_names.index(name)
        kind = table.schema.field(index).type
        target = arrow_type(athena, f"datetime64[{kind.unit}]" if pa.types.is_timestamp(kind) else "")
        if pa.types.is_dictionary(kind) and kind.value_type == target:
            continue  # written as its values' type (see _string_dictionaries)
        if kind != target:
            table = table.set_column(index, pa.field(name, target), table.column(index).cast(target))
    return table


def arrow_type(athena: str, pandas_dtype: str) -> pa.DataType:
    """The Arrow type awswrangler uses for an Athena type (a timestamp keeps the frame's unit)."""
    import pyarrow as pa

    name = athena.strip().lower()
    if name == "timestamp":
        unit = pandas_dtype[len("datetime64[") : -1] if pandas_dtype.startswith("datetime64[") else "ns"
        return pa.timestamp(unit if unit in ("s", "ms", "us", "ns") else "ns")
    if name.startswith(("char", "varchar")):
        return pa.string()
    if name not in _ATHENA_TO_ARROW:
        raise LakeError(f"the local lake does not know the Athena type {athena!r}")
    return getattr(pa, _ATHENA_TO_ARROW[name])()


def athena_type(arrow: pa.DataType) -> str:
    """The Athena name of an Arrow type, for the catalog documents."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow):  # written as its values (see _string_dictionaries)
        arrow = arrow.value_type
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    reverse = {getattr(pa, v)(): k for k, v in _ATHENA_TO_ARROW.items() if k not in ("integer", "real")}
    return reverse.get(arrow, str(arrow))


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """A DataFrame as ``awswrangler.s3.read_parquet`` returns it (nullable pandas dtypes, writable)."""
    import pandas as pd
    import pyarrow as pa

    def nullable(kind: pa.DataType) -> Any:
        if pa.types.is_integer(kind):
            return pd.api.types.pandas_dtype(str(kind).replace("int", "Int").replace("uInt", "UInt"))
        if pa.types.is_boolean(kind):
            return pd.BooleanDtype()
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pd.StringDtype()
        return None

    df = table.to_pandas(split_blocks=True, self_destruct=True, ignore_metadata=False, types_mapper=nullable)
    for column in df.columns:
        # split_blocks hands out read-only numpy views; callers assign into the frame.
        values = df[column].values
        if getattr(values, "flags", None) is not None and not values.flags.writeable:
            df[column] = values.copy()
    return df
