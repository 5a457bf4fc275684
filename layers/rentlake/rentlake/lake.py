"""The data lake: every S3 key and all lake I/O.

One bucket, zones as prefixes::

    landing/                      uploads (an S3 event on this prefix triggers ingestion)
    raw/objects/ingest_date=D/ingestion_id=I/<name>   immutable copy of every accepted object
    raw/_ingestions/<I>.json      ingestion metadata (lineage, parse report); the idempotency ledger
    raw/<dataset>/ingest_date=D/ingestion_id=I/*.parquet    rows as received, header mapped, as strings
    clean/<dataset>/ingest_date=D/ingestion_id=I/*.parquet  typed rows (Glue table ``clean_<dataset>``)
    clean/_batches/<dataset>/<I>.json                       commit marker (its files) + quality summary
    quarantine/<dataset>/ingest_date=D/ingestion_id=I/*.parquet  rejected rows with ``reasons``
    quarantine/objects/ingestion_id=I/<name>                 objects rejected whole (+ ``.reason.json``)
    reports/quality/<dataset>/<I>.json   per-batch data-quality report
    reports/<run>/...                    exploration reports
    models/<version>/...                 the model registry; ``models/champion.json`` the serving pointer
    scored/...                           batch scoring output (input under ``score/``)

No other module builds an S3 key: they call the functions of :mod:`rentlake.lake.keys` (exposed here as
:data:`keys`) and the :class:`Lake` methods. Only boto3 and the standard library are imported at module
load, so the light prediction path can use :meth:`Lake.get_bytes` and :meth:`Lake.get_json`;
pandas and awswrangler are imported inside the table methods that need them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# S3 answers 503 SlowDown under load and throttles bursts: retry with backoff rather than fail a batch.
# "standard" mode retries throttling and transient errors with jittered exponential backoff; awswrangler's
# own clients read the same settings from AWS_MAX_ATTEMPTS / AWS_RETRY_MODE (set in template.yaml).
RETRY_CONFIG = Config(retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=10, read_timeout=60)

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


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode("utf-8")


class keys:  # noqa: N801 - a namespace of key builders, read as ``keys.champion()``
    """Builders of every S3 key of the lake (pure functions, no I/O)."""

    @staticmethod
    def landing(name: str) -> str:
        """Key under which an upload lands."""
        return f"landing/{safe_name(name)}"

    @staticmethod
    def raw_object(ingest_date: str, ingestion_id: str, name: str) -> str:
        """Immutable copy of an accepted object."""
        return f"raw/objects/ingest_date={ingest_date}/ingestion_id={ingestion_id}/{safe_name(name)}"

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
    def clean_batch_records_prefix(dataset: str) -> str:
        """Prefix of a dataset's clean commit markers."""
        return f"clean/_batches/{dataset}/"

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


@dataclass
class Lake:
    """Handle on one lake bucket. All S3 and Glue I/O of rentlake goes through these methods.

    Parameters
    ----------
    bucket
        The lake bucket.
    database
        The Glue database holding the zone tables.
    boto3_session
        Optional boto3 session (credentials, region, endpoint via ``AWS_ENDPOINT_URL``); a default one is
        created lazily, as awswrangler does.
    """

    bucket: str
    database: str = "rentlake"
    boto3_session: boto3.Session | None = None
    _s3: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.bucket:
            raise LakeError("no lake bucket configured: set RENTLAKE_BUCKET or pass --bucket")

    # ------------------------------------------------------------------ plain objects (light side)
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

    def uri(self, key: str) -> str:
        """``s3://`` URI of a key of this lake."""
        return keys.uri(self.bucket, key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Write an object; returns its ETag (without quotes)."""
        try:
            resp = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as exc:
            raise LakeError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return str(resp.get("ETag", "")).strip('"')

    def _put_conditional(self, key: str, data: bytes, condition: dict[str, str]) -> str:
        try:
            resp = self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json", **condition
            )
        except ClientError as exc:
            # S3 answers 412 when the condition fails and 409 when a concurrent conditional write to the
            # same key is in flight: both mean another writer got there first.
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise PreconditionFailed(f"s3://{self.bucket}/{key} was written by another writer") from exc
            raise LakeError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return str(resp.get("ETag", "")).strip('"')

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
        return self._put_conditional(key, _json_bytes(obj), {"IfNoneMatch": "*"})

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
        return self._put_conditional(key, _json_bytes(obj), {"IfMatch": f'"{etag}"'})

    def get_bytes(self, key: str) -> bytes:
        """Read a whole object; :class:`ObjectNotFound` when it does not exist."""
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"s3://{self.bucket}/{key} does not exist") from exc
            raise LakeError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    def put_json(self, key: str, obj: Any) -> str:
        """Write a JSON document (UTF-8, indented for people who open it)."""
        return self.put_bytes(key, _json_bytes(obj), content_type="application/json")

    def get_json(self, key: str) -> Any:
        """Read a JSON document; :class:`ObjectNotFound` when missing, :class:`LakeError` when invalid."""
        raw = self.get_bytes(key)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise LakeError(f"s3://{self.bucket}/{key} is not valid JSON: {exc}") from exc

    def get_json_or_none(self, key: str) -> Any | None:
        """Read a JSON document; None when it does not exist."""
        try:
            return self.get_json(key)
        except ObjectNotFound:
            return None

    def head(self, key: str) -> dict[str, Any] | None:
        """ETag, size and version of an object, or None when it does not exist."""
        try:
            resp = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise LakeError(f"cannot stat s3://{self.bucket}/{key}: {exc}") from exc
        return {
            "etag": str(resp.get("ETag", "")).strip('"'),
            "size": int(resp.get("ContentLength", 0)),
            "version_id": resp.get("VersionId"),
            "last_modified": resp.get("LastModified"),
        }

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        return self.head(key) is not None

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""
        out: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(obj["Key"] for obj in page.get("Contents", []))
        except ClientError as exc:
            raise LakeError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc
        return sorted(out)

    def delete_keys(self, key_list: Iterable[str]) -> int:
        """Delete the given keys; returns how many were deleted."""
        batch: list[dict[str, str]] = []
        count = 0
        for key in key_list:
            batch.append({"Key": key})
            if len(batch) == 1000:
                count += self._delete(batch)
                batch = []
        if batch:
            count += self._delete(batch)
        return count

    def _delete(self, batch: list[dict[str, str]]) -> int:
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

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""
        return self.delete_keys(self.list_keys(prefix))

    def copy(self, src_key: str, dst_key: str) -> None:
        """Server-side copy of an object within the lake bucket."""
        try:
            self.s3.copy_object(
                Bucket=self.bucket, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key}
            )
        except ClientError as exc:
            raise LakeError(f"cannot copy s3://{self.bucket}/{src_key} to {dst_key}: {exc}") from exc

    # ------------------------------------------------------------------ Parquet tables (batch side)
    def ensure_database(self) -> None:
        """Create the Glue database if it does not exist."""
        import awswrangler as wr

        wr.catalog.create_database(self.database, exist_ok=True, boto3_session=self.session)

    def write_batch(
        self,
        df: pd.DataFrame,
        zone: str,
        dataset: str,
        *,
        ingest_date: str,
        ingestion_id: str,
        part: int,
        dtype: dict[str, str] | None = None,
    ) -> list[str]:
        """Append one chunk of a batch to a zone table and register it in the Glue catalog.

        Files are named ``part-<chunk>-<uuid>`` (awswrangler always adds the uuid), so writing the same
        chunk twice adds a copy: a re-run of a failed batch must first call :meth:`drop_batch`. The chunk
        number keeps the files in chunk order for :meth:`batch_files`.

        Parameters
        ----------
        df
            The chunk's rows.
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
            The S3 paths written.
        """
        import awswrangler as wr

        frame = df.assign(ingest_date=ingest_date, ingestion_id=ingestion_id)
        try:
            res = wr.s3.to_parquet(
                frame,
                path=self.uri(keys.table_prefix(zone, dataset)),
                dataset=True,
                mode="append",
                database=self.database,
                table=keys.glue_table(zone, dataset),
                partition_cols=PARTITION_COLS,
                filename_prefix=f"part-{part:05d}-",
                dtype=dtype,
                schema_evolution=True,
                boto3_session=self.session,
            )
        except Exception as exc:  # awswrangler raises many types; the caller needs the key
            raise LakeError(f"cannot write {zone}/{dataset} batch {ingestion_id}: {exc}") from exc
        return list(res["paths"])

    def drop_batch(self, zone: str, dataset: str, *, ingest_date: str, ingestion_id: str) -> int:
        """Delete whatever a previous, failed attempt wrote for a batch (files only)."""
        return self.delete_prefix(keys.batch_prefix(zone, dataset, ingest_date, ingestion_id))

    def batch_files(self, zone: str, dataset: str, *, ingest_date: str, ingestion_id: str) -> list[str]:
        """The Parquet files of one batch, in chunk order."""
        prefix = keys.batch_prefix(zone, dataset, ingest_date, ingestion_id)
        return [k for k in self.list_keys(prefix) if k.endswith(".parquet")]

    def read_parquet_key(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read one Parquet object."""
        import awswrangler as wr

        return wr.s3.read_parquet(self.uri(key), columns=columns, boto3_session=self.session)

    def key_of(self, uri: str) -> str:
        """The key of an ``s3://bucket/key`` URI of this lake (as awswrangler returns written paths)."""
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise LakeError(f"{uri} is not in the lake bucket {self.bucket}")
        return uri[len(prefix) :]

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

    def committed_files(self, record: dict[str, Any], zone: str) -> list[str]:
        """The files a commit record (ingestion record or clean batch marker) names for ``zone``.

        A record lists exactly the files its writer wrote, so files that another writer of the same batch
        left beside them (an S3 event delivered twice, a re-run after a crash) are never read. Records
        written before the list existed fall back to the batch's prefix.
        """
        listed = record.get(f"{zone}_files")
        if listed is not None:
            return list(listed)
        return self.batch_files(
            zone, record["dataset"], ingest_date=record["ingest_date"], ingestion_id=record["ingestion_id"]
        )

    def committed_batches(self, dataset: str) -> list[dict[str, Any]]:
        """Commit markers of the clean batches of a dataset, oldest first."""
        recs = [self.get_json(k) for k in self.list_keys(keys.clean_batch_records_prefix(dataset))]
        return sorted(recs, key=lambda r: (r.get("cleaned_at", ""), r.get("ingestion_id", "")))

    def read_clean(self, dataset: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The clean zone of a dataset: every committed batch, in commit order.

        Files of a batch without a commit marker (a failed run) are never read.
        """
        import pandas as pd

        frames = []
        for rec in self.committed_batches(dataset):
            frames.extend(self.iter_keys(self.committed_files({**rec, "dataset": dataset}, "clean"), columns))
        if not frames:
            return pd.DataFrame(columns=columns or [])
        return pd.concat(frames, ignore_index=True)

    def glue_tables(self) -> list[str]:
        """Names of the tables registered in the lake's Glue database."""
        import awswrangler as wr

        try:
            tables = wr.catalog.get_tables(database=self.database, boto3_session=self.session)
            return sorted(t["Name"] for t in tables)
        except Exception as exc:  # EntityNotFound when the database does not exist yet
            if "EntityNotFound" in type(exc).__name__ or "EntityNotFound" in str(exc):
                return []
            raise
