"""The pipeline's stages as the CLI runs them: through the functions' handlers, with the events their
triggers would send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rentlake.cli.context import Context
from rentlake.cli.errors import CliError
from rentlake.events import BadEvent
from rentlake.lake import keys


def s3_put_event(bucket: str, key: str, *, etag: str, size: int) -> dict[str, Any]:
    """The S3 ``ObjectCreated:Put`` notification S3 sends for an upload."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "eu-west-3",
                "eventTime": "1970-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "rentlake-cli"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "local", "x-amz-id-2": "local"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "landing",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "local"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {"key": quote_plus(key), "size": size, "eTag": etag, "sequencer": "0"},
                },
            }
        ]
    }


def invoke(ctx: Context, function: str, event: dict[str, Any]) -> Any:
    """Run a handler; a refused event or a domain error the handler raises (which fails the Lambda
    invocation with its message) becomes a CLI error: one line, no traceback."""
    from rentlake.lake import LakeError
    from rentlake.model import InsufficientDataError
    from rentlake.registry import RegistryError

    try:
        return ctx.invoke(function, event)
    except (BadEvent, RegistryError, LakeError, InsufficientDataError) as exc:
        raise CliError(f"{function}: {exc}") from exc


def upload(ctx: Context, path: Path, prefix_key: str | None = None) -> tuple[str, dict[str, Any]]:
    """Upload a local file to ``landing/`` and return its key and the S3 event of the upload."""
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    key = prefix_key or keys.landing(path.name)
    etag = ctx.lake.put_bytes(key, path.read_bytes())
    return key, s3_put_event(ctx.lake.bucket, key, etag=etag, size=path.stat().st_size)


def parse_map(pairs: list[str] | None, dataset: str | None = None) -> dict[str, str] | None:
    """``--map COLUMN=FIELD`` options as a column map (None when there are none); a malformed pair or a
    field no contract knows is a CLI error."""
    from rentlake import contracts

    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, name = pair.partition("=")
        if not sep or not column.strip() or not name.strip():
            raise CliError(f"--map {pair!r}: write COLUMN=FIELD, e.g. --map superficie=surface_m2")
        out[column.strip()] = name.strip()
    try:
        contracts.check_column_map(out, dataset)
    except (ValueError, KeyError) as exc:
        raise CliError(f"--map: {exc}") from exc
    return out


def ingest_files(
    ctx: Context, files: list[str], dataset: str | None = None, column_map: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Upload files to ``landing/`` and ingest them through the ingest handler (one S3 event each)."""
    outcomes: list[dict[str, Any]] = []
    for name in files:
        key, event = upload(ctx, Path(name))
        ctx.progress(f"uploaded {name} to {key}; ingesting")
        if dataset or column_map:  # a direct invocation, as an operator would do it
            event = {"keys": [key], "dataset": dataset, "column_map": column_map}
        result = invoke(ctx, "ingest", event)
        outcomes.extend(result["outcomes"])
    return outcomes


def rejected_status(ctx: Context, outcomes: list[dict[str, Any]]) -> int:
    """Exit status of a command that ingested ``outcomes``: 1 when a file was rejected (said on stderr,
    with where its reason is), else 0."""
    import sys

    rejected = [o for o in outcomes if o["status"] == "rejected"]
    for o in rejected:
        where = o.get("details", {}).get("reason_at")
        print(
            f"rentlake: {o['key']} rejected ({o.get('reason')})"
            + (f"; its reason: {ctx.where(where)}" if where else ""),
            file=sys.stderr,
        )
    return 1 if rejected else 0


def clean(ctx: Context, **request: Any) -> dict[str, Any]:
    """Clean what is pending through the clean handler."""
    ctx.progress("cleaning pending batches")
    return invoke(ctx, "clean", {k: v for k, v in request.items() if v is not None})


def print_outcomes(ctx: Context, outcomes: list[dict[str, Any]]) -> None:
    for o in outcomes:
        if o["status"] == "ingested":
            print(
                f"  ingested  {o['key']}: {o['rows']:,} rows as '{o['dataset']}' (id {o['ingestion_id']})",
                file=ctx.out,
            )
        elif o["status"] == "duplicate":
            print(f"  skipped   {o['key']}: {o.get('message')}", file=ctx.out)
        else:
            print(f"  REJECTED  {o['key']}: {o.get('reason')}: {o.get('message')}", file=ctx.out)
            details = o.get("details", {})
            if details.get("kept_at"):
                print(f"            kept at {ctx.where(details['kept_at'])}", file=ctx.out)
            if details.get("reason_at"):
                print(f"            reason  {ctx.where(details['reason_at'])}", file=ctx.out)


def print_clean(ctx: Context, result: dict[str, Any]) -> None:
    for r in result["reports"]:
        rows = r["rows"]
        print(
            f"  cleaned   {r['dataset']} batch {r['ingestion_id']}: {rows['in']:,} rows in = "
            f"{rows['clean']:,} clean + {rows['quarantined']:,} quarantined",
            file=ctx.out,
        )
        for code, count in list(r["reasons"].items())[:8]:
            print(f"              {count:6,} × {code}", file=ctx.out)
        print(
            f"            report: {ctx.where(keys.quality_report(r['dataset'], r['ingestion_id']))}",
            file=ctx.out,
        )
    for other in result.get("already_committed", []):
        print(f"  skipped   batch {other['ingestion_id']}: {other['message']}", file=ctx.out)
    if not result["reports"] and not result.get("already_committed"):
        print("  nothing pending to clean", file=ctx.out)
