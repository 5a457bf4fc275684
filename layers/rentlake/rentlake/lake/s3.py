"""The S3 backend: objects in a bucket (under an optional prefix), tables registered in Glue.

Conditional writes are S3's own (``If-None-Match: *`` and ``If-Match``); tables are written by awswrangler,
which registers each partition in the Glue catalog so that Athena can query the zones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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

# S3 answers 503 SlowDown under load and throttles bursts: retry with backoff rather than fail a batch.
# "standard" mode retries throttling and transient errors with jittered exponential backoff; awswrangler's
# own clients read the same settings from AWS_MAX_ATTEMPTS / AWS_RETRY_MODE (set in template.yaml).
RETRY_CONFIG = Config(retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=10, read_timeout=60)
_MISSING = ("NoSuchKey", "404", "NotFound")
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", *_MISSING)


@dataclass
class S3Lake(Lake):
    """A lake in an S3 bucket. All S3 and Glue I/O of rentlake goes through these methods.

    Parameters
    ----------
    bucket
        The lake bucket.
    database
        The Glue database holding the zone tables.
    boto3_session
        Optional boto3 session (credentials, region, endpoint via ``AWS_ENDPOINT_URL``); a default one is
        created lazily, as awswrangler does.
    prefix
        Optional key prefix under which the whole lake lives (``s3://bucket/prefix``).
    """

    bucket: str
    database: str = "rentlake"
    boto3_session: boto3.Session | None = None
    prefix: str = ""
    _s3: Any = field(default=None, init=False, repr=False)
    # Batches whose Glue partition (and table columns) this lake registered: their next chunks skip it.
    _registered: set[tuple[Any, ...]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.bucket:
            raise LakeError("no lake bucket configured: set RENTLAKE_BUCKET or pass --bucket")
        self.prefix = self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""

    # ------------------------------------------------------------------ plain objects (light side)
    @property
    def address(self) -> str:
        """``s3://bucket`` or ``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def session(self) -> boto3.Session:
        """The boto3 session (created on first use)."""
        if self.boto3_session is None:
            self.boto3_session = boto3.Session()
        return self.boto3_session

    @property
    def s3(self) -> Any:
        """The S3 client, with :data:`RETRY_CONFIG` (created on first use)."""
        if self._s3 is None:
            self._s3 = self.session.client("s3", config=RETRY_CONFIG)
        return self._s3

    def warm_up(self, catalog: bool = True) -> None:
        """Make the S3 client and, with ``catalog``, the Glue client and awswrangler (375 ms to import)."""
        _ = self.s3
        if catalog:
            import awswrangler  # noqa: F401

            self.session.client("glue", config=RETRY_CONFIG)

    def _k(self, key: str) -> str:
        return self.prefix + key

    def uri(self, key: str) -> str:
        """``s3://`` URI of a key of this lake."""
        return keys.uri(self.bucket, self._k(key))

    def key_of(self, path: str) -> str:
        """The key of an ``s3://bucket/key`` URI of this lake (as awswrangler returns written paths)."""
        start = self.uri("")
        if not path.startswith(start):
            raise LakeError(f"{path} is not in the lake {self.address}")
        return path[len(start) :]

    def _write(self, key: str, data: bytes, content_type: str) -> str:
        try:
            resp = self.s3.put_object(
                Bucket=self.bucket, Key=self._k(key), Body=data, ContentType=content_type
            )
        except ClientError as exc:
            raise LakeError(f"cannot write {self.uri(key)}: {exc}") from exc
        return str(resp.get("ETag", "")).strip('"')

    def _put_conditional(self, key: str, data: bytes, condition: dict[str, str]) -> str:
        try:
            resp = self.s3.put_object(
                Bucket=self.bucket, Key=self._k(key), Body=data, ContentType="application/json", **condition
            )
        except ClientError as exc:
            # S3 answers 412 when the condition fails, 409 when a concurrent conditional write to the
            # same key is in flight and 404 to If-Match when the object was deleted: all three mean
            # another writer got there first.
            if exc.response.get("Error", {}).get("Code") in _LOST_RACE:
                raise PreconditionFailed(f"{self.uri(key)} was written by another writer") from exc
            raise LakeError(f"cannot write {self.uri(key)}: {exc}") from exc
        return str(resp.get("ETag", "")).strip('"')

    def _write_if_absent(self, key: str, data: bytes) -> str:
        return self._put_conditional(key, data, {"IfNoneMatch": "*"})

    def _write_if_match(self, key: str, data: bytes, etag: str) -> str:
        return self._put_conditional(key, data, {"IfMatch": f'"{etag}"'})

    def _read(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ObjectNotFound(f"{self.uri(key)} does not exist") from exc
            raise LakeError(f"cannot read {self.uri(key)}: {exc}") from exc

    def _stat(self, key: str) -> dict[str, Any] | None:
        try:
            resp = self.s3.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise LakeError(f"cannot stat {self.uri(key)}: {exc}") from exc
        return {
            "etag": str(resp.get("ETag", "")).strip('"'),
            "size": int(resp.get("ContentLength", 0)),
            "version_id": resp.get("VersionId"),
            "last_modified": resp.get("LastModified"),
        }

    def _list(self, prefix: str) -> list[str]:
        out: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        cut = len(self.prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._k(prefix)):
                out.extend(obj["Key"][cut:] for obj in page.get("Contents", []))
        except ClientError as exc:
            raise LakeError(f"cannot list {self.uri(prefix)}: {exc}") from exc
        return sorted(out)

    def _delete(self, key_list: Iterable[str]) -> int:
        batch: list[dict[str, str]] = []
        count = 0
        for key in key_list:
            batch.append({"Key": self._k(key)})
            if len(batch) == 1000:  # DeleteObjects' limit
                count += self._delete_chunk(batch)
                batch = []
        if batch:
            count += self._delete_chunk(batch)
        return count

    def _delete_chunk(self, batch: list[dict[str, str]]) -> int:
        try:
            resp = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        except ClientError as exc:
            raise LakeError(f"cannot delete {len(batch)} objects in s3://{self.bucket}: {exc}") from exc
        # DeleteObjects answers 200 and lists the keys it could not delete: a batch re-run relies on the
        # deletion, so a key left behind is an error (the files would be read twice).
        errors = resp.get("Errors") or []
        if errors:
            shown = "; ".join(f"{e.get('Key')}: {e.get('Code')}" for e in errors[:3])
            raise LakeError(
                f"cannot delete {len(errors)} of {len(batch)} objects in s3://{self.bucket} ({shown})"
            )
        return len(batch)

    def _copy(self, src_key: str, dst_key: str) -> None:
        try:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=self._k(dst_key),
                CopySource={"Bucket": self.bucket, "Key": self._k(src_key)},
            )
        except ClientError as exc:
            raise LakeError(f"cannot copy {self.uri(src_key)} to {dst_key}: {exc}") from exc

    # ------------------------------------------------------------------ Parquet tables (batch side)
    def _create_catalog(self) -> None:
        import awswrangler as wr

        wr.catalog.create_database(self.database, exist_ok=True, boto3_session=self.session)

    def _write_table(self, frame: pd.DataFrame, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        import awswrangler as wr

        # awswrangler adds a uuid to every file name and registers new partitions in Glue.
        res = wr.s3.to_parquet(
            frame,
            path=self.uri(keys.table_prefix(zone, dataset)),
            dataset=True,
            mode="append",
            database=self.database,
            table=keys.glue_table(zone, dataset),
            partition_cols=PARTITION_COLS,
            filename_prefix=f"part-{batch.part:05d}-",
            dtype=batch.dtype or None,
            schema_evolution=True,
            boto3_session=self.session,
        )
        return list(res["paths"])

    def _write_arrow(self, table: pa.Table, zone: str, dataset: str, batch: BatchChunk) -> list[str]:
        """An Arrow table written as the local lake writes it (no pandas copy, no awswrangler write), put as
        one object, then registered as awswrangler registers a written file: the table created or its new
        columns added, and the batch's partition, once per batch and lake (not once per chunk)."""
        import io
        import uuid

        import awswrangler as wr

        from rentlake.lake.local import athena_type, cast_columns, write_parquet

        table = cast_columns(
            table.drop_columns([c for c in PARTITION_COLS if c in table.column_names]), batch.dtype
        )
        prefix = keys.batch_prefix(zone, dataset, batch.ingest_date, batch.ingestion_id)
        key = f"{prefix}part-{batch.part:05d}-{uuid.uuid4().hex}.snappy.parquet"
        columns = {f.name: athena_type(f.type) for f in table.schema}
        registered = (zone, dataset, batch.ingest_date, batch.ingestion_id, tuple(columns.items()))
        glue_table = keys.glue_table(zone, dataset)
        path = self.uri(keys.table_prefix(zone, dataset))
        if registered not in self._registered:
            self._check_location(glue_table, path)
        body = io.BytesIO()
        write_parquet(body, table)
        self.s3.put_object(Bucket=self.bucket, Key=self._k(key), Body=body.getvalue())
        if registered not in self._registered:
            try:
                wr.catalog.create_parquet_table(
                    database=self.database,
                    table=glue_table,
                    path=path,
                    columns_types=columns,
                    partitions_types=dict.fromkeys(PARTITION_COLS, "string"),
                    compression="snappy",
                    mode="append",  # new columns are added, as awswrangler's schema evolution does
                    boto3_session=self.session,
                )
                wr.catalog.add_parquet_partitions(
                    database=self.database,
                    table=glue_table,
                    partitions_values={self.uri(prefix): [batch.ingest_date, batch.ingestion_id]},
                    compression="snappy",
                    columns_types=columns,
                    boto3_session=self.session,
                )
            except BaseException:
                self._delete([key])  # as awswrangler does: a file the catalog does not know is not left
                raise
            self._registered.add(registered)
        return [self.uri(key)]

    def _check_location(self, glue_table: str, path: str) -> None:
        """Refuse to add files under ``path`` to a Glue table that lives elsewhere (another lake sharing the
        database), as awswrangler's writer refuses it, before anything is written."""
        import awswrangler as wr

        glue = self.session.client("glue", config=RETRY_CONFIG)
        try:
            found = glue.get_table(DatabaseName=self.database, Name=glue_table)["Table"]["StorageDescriptor"]
        except glue.exceptions.EntityNotFoundException:
            return
        location = found.get("Location") or ""
        if location and location.rstrip("/") != path.rstrip("/"):
            raise wr.exceptions.InvalidArgumentValue(
                f"The specified path: {path}, does not match the existing Glue catalog table path: {location}"
            )

    def _read_table(self, key: str, columns: list[str] | None) -> pd.DataFrame:
        import awswrangler as wr

        return wr.s3.read_parquet(self.uri(key), columns=columns, boto3_session=self.session)

    def _catalog_tables(self) -> list[str]:
        import awswrangler as wr

        try:
            tables = wr.catalog.get_tables(database=self.database, boto3_session=self.session)
            return sorted(t["Name"] for t in tables)
        except Exception as exc:  # EntityNotFound when the database does not exist yet
            if "EntityNotFound" in type(exc).__name__ or "EntityNotFound" in str(exc):
                return []
            raise
