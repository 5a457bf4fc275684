"""The embedded local lake: an in-process S3 and Glue (moto server on 127.0.0.1) whose contents persist
in a visible folder between commands.

Layout of the folder (default ``./.rentlake``)::

    .rentlake/s3/<bucket>/<key>     every object of the lake, as a plain file you can open
    .rentlake/glue.json             the Glue catalog (databases, tables, partitions)

On start the folder is loaded into a fresh moto server; on exit the bucket and catalog are written back
(only changed files are rewritten; deleted objects are removed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_BUCKET = "rentlake-local"
LOCAL_REGION = "eu-west-3"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Read-only fields that get_table returns but create_table refuses.
_TABLE_READ_ONLY = {
    "DatabaseName",
    "CreateTime",
    "UpdateTime",
    "CreatedBy",
    "IsRegisteredWithLakeFormation",
    "CatalogId",
    "VersionId",
    "FederatedTable",
    "IsMultiDialectView",
    "IsMaterializedView",
}
_PARTITION_READ_ONLY = {"DatabaseName", "TableName", "CreationTime", "CatalogId", "LastAccessTime"}


@dataclass
class LocalLake:
    """A running embedded lake."""

    root: Path
    bucket: str
    endpoint: str
    env: dict[str, str]


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(root: Path, bucket: str, session: Any, database: str) -> int:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": LOCAL_REGION})
    base = root / "s3" / bucket
    count = 0
    if base.exists():
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, path.relative_to(base).as_posix())
            count += 1
    glue = session.client("glue")
    catalog_file = root / "glue.json"
    catalog = json.loads(catalog_file.read_text()) if catalog_file.exists() else {"databases": {}}
    if database not in catalog["databases"]:
        catalog["databases"][database] = {"tables": {}}
    for db, content in catalog["databases"].items():
        glue.create_database(DatabaseInput={"Name": db})
        for tinfo in content["tables"].values():
            table = {k: v for k, v in tinfo["table"].items() if k not in _TABLE_READ_ONLY}
            glue.create_table(DatabaseName=db, TableInput=table)
            parts = [
                {k: v for k, v in p.items() if k not in _PARTITION_READ_ONLY} for p in tinfo["partitions"]
            ]
            for i in range(0, len(parts), 100):
                glue.batch_create_partition(
                    DatabaseName=db, TableName=table["Name"], PartitionInputList=parts[i : i + 100]
                )
    return count


def _save(root: Path, bucket: str, session: Any) -> None:
    s3 = session.client("s3")
    base = root / "s3" / bucket
    seen: set[Path] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            path = base / obj["Key"]
            seen.add(path)
            etag = obj["ETag"].strip('"')
            if path.exists() and path.stat().st_size == obj["Size"] and _md5(path) == etag:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
    if base.exists():
        for path in sorted(base.rglob("*"), reverse=True):
            if path.is_file() and path not in seen:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    glue = session.client("glue")
    catalog: dict[str, Any] = {"databases": {}}
    for page in glue.get_paginator("get_databases").paginate():
        for db in page["DatabaseList"]:
            tables: dict[str, Any] = {}
            for tpage in glue.get_paginator("get_tables").paginate(DatabaseName=db["Name"]):
                for table in tpage["TableList"]:
                    parts: list[dict[str, Any]] = []
                    for ppage in glue.get_paginator("get_partitions").paginate(
                        DatabaseName=db["Name"], TableName=table["Name"]
                    ):
                        parts.extend(ppage["Partitions"])
                    tables[table["Name"]] = {"table": table, "partitions": parts}
            catalog["databases"][db["Name"]] = {"tables": tables}
    root.mkdir(parents=True, exist_ok=True)
    (root / "glue.json").write_text(json.dumps(catalog, indent=1, default=str))


@contextmanager
def embedded_lake(root: Path, *, database: str = "rentlake") -> Iterator[LocalLake]:
    """Run an in-process moto server holding the lake stored under ``root``.

    While the context is open, ``os.environ`` points boto3 (and so awswrangler and the handlers) at the
    server; the previous environment is restored on exit, after the lake has been written back.

    Parameters
    ----------
    root
        The lake folder (created if missing).
    database
        Glue database to create if the folder has none.
    """
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 call otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "RENTLAKE_BUCKET": LOCAL_BUCKET,
        "RENTLAKE_GLUE_DATABASE": database,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        session = boto3.Session(region_name=LOCAL_REGION)
        root.mkdir(parents=True, exist_ok=True)
        _load(root, LOCAL_BUCKET, session, database)
        try:
            yield LocalLake(root=root, bucket=LOCAL_BUCKET, endpoint=endpoint, env=env)
        finally:
            # Write back even after a failed command: what the handlers committed before the failure
            # (raw copies, quarantine) is part of the lake's truth.
            _save(root, LOCAL_BUCKET, session)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
