"""Typed events of the batch functions, checked at the edge (pydantic, Powertools parser models).

A function accepts either the standard event of its trigger (an S3 ``ObjectCreated`` notification) or a
direct invocation (``{"keys": [...]}``); both become one request model, and anything else is refused
with a :class:`BadEvent` naming the problem.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class BadEvent(ValueError):
    """The event is not one the function accepts; the message says what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestRequest(_Strict):
    """Ingest these keys (direct invocation), optionally forcing the dataset contract."""

    keys: list[str] = Field(min_length=1, max_length=10_000)
    dataset: str | None = None


class CleanRequest(_Strict):
    """Clean pending batches (all, one dataset, or given ingestion ids), with optional thresholds."""

    dataset: str | None = None
    ingestion_ids: list[str] | None = None
    mad_k: float | None = Field(default=None, gt=0, le=50)
    min_group: int | None = Field(default=None, ge=1)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors())


def s3_keys(event: dict[str, Any], *, bucket: str | None = None) -> list[str] | None:
    """Keys of an S3 event notification (URL-decoded), or None when ``event`` is not one.

    Records for another bucket than ``bucket`` are refused: a function acts on its own lake only.
    """
    if not isinstance(event, dict) or "Records" not in event:
        return None
    from aws_lambda_powertools.utilities.parser.models import S3Model

    try:
        model = S3Model.model_validate(event)
    except ValidationError as exc:
        raise BadEvent(f"not a valid S3 event notification: {_errors(exc)}") from exc
    out = []
    for rec in model.Records:
        if not rec.eventName.startswith("ObjectCreated") or rec.s3.object is None:
            continue
        if bucket and rec.s3.bucket.name != bucket:
            raise BadEvent(f"event names bucket {rec.s3.bucket.name!r}, this function serves {bucket!r}")
        out.append(unquote_plus(rec.s3.object.key))
    return out


def parse_ingest(event: Any, *, bucket: str | None = None) -> IngestRequest:
    """An ingest request from an S3 notification or ``{"keys": [...], "dataset": ...}``."""
    keys = s3_keys(event, bucket=bucket)
    if keys is not None:
        if not keys:
            raise BadEvent("the S3 event holds no ObjectCreated record")
        return IngestRequest(keys=keys)
    try:
        return IngestRequest.model_validate(event)
    except ValidationError as exc:
        raise BadEvent(f"expected an S3 ObjectCreated notification or {{\"keys\": [...]}}: {_errors(exc)}") from exc


def parse_clean(event: Any) -> CleanRequest:
    """A clean request (an empty event cleans everything pending)."""
    try:
        return CleanRequest.model_validate(event or {})
    except ValidationError as exc:
        raise BadEvent(f"invalid clean request: {_errors(exc)}") from exc
