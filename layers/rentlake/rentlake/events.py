"""Typed events of the batch functions, checked at the edge (pydantic, Powertools parser models).

A function accepts either the standard event of its trigger (an S3 ``ObjectCreated`` notification) or a
direct invocation (``{"keys": [...]}``); both become one request model, and anything else is refused
with a :class:`BadEvent` naming the problem.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)


class BadEvent(ValueError):
    """The event is not one the function accepts; the message says what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _checked_map(column_map: dict[str, str] | None, dataset: str | None) -> dict[str, str] | None:
    """A column map whose fields a contract knows (ValueError naming the others)."""
    if column_map:
        from rentlake import contracts

        contracts.check_column_map(column_map, dataset)
    return column_map or None


class IngestRequest(_Strict):
    """Ingest these keys (direct invocation), optionally forcing the dataset contract, and naming the
    contract field of columns no alias knows (``column_map``: ``{"superficie": "surface_m2"}``)."""

    keys: list[str] = Field(min_length=1, max_length=10_000)
    dataset: str | None = None
    column_map: dict[str, str] | None = Field(default=None, max_length=1_000)

    @model_validator(mode="after")
    def _known_fields(self) -> IngestRequest:
        self.column_map = _checked_map(self.column_map, self.dataset)
        return self


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
        raise BadEvent(
            f'expected an S3 ObjectCreated notification or {{"keys": [...]}}: {_errors(exc)}'
        ) from exc


def parse_clean(event: Any) -> CleanRequest:
    """A clean request (an empty event cleans everything pending)."""
    try:
        return CleanRequest.model_validate(event or {})
    except ValidationError as exc:
        raise BadEvent(f"invalid clean request: {_errors(exc)}") from exc


class ScoreRequest(_Strict):
    """Score these files (keys under ``score/``), with a ``column_map`` as for ingest."""

    keys: list[str] = Field(max_length=10_000)
    column_map: dict[str, str] | None = Field(default=None, max_length=1_000)

    @model_validator(mode="after")
    def _known_fields(self) -> ScoreRequest:
        self.column_map = _checked_map(self.column_map, "listings")
        return self


def parse_score(event: Any) -> ScoreRequest:
    """A score request from ``{"keys": [...]}`` or the S3 records of uploads under ``score/``.

    S3 keys are URL-decoded (a space arrives as ``+``); a record for a key outside ``score/`` is logged and
    left out (the notification is filtered on that prefix: such a record is a misconfiguration).
    """
    if isinstance(event, dict) and "Records" in event:
        from aws_lambda_powertools.utilities.data_classes import S3Event

        from rentlake.lake import keys

        prefix = keys.score_input_prefix()
        out = []
        for record in S3Event(event).records:
            key = unquote_plus(record.s3.get_object.key)
            if key.startswith(prefix):
                out.append(key)
            else:
                log.warning("ignoring %s: not under %s", key, prefix)
        return ScoreRequest(keys=out)
    try:
        return ScoreRequest.model_validate(event)
    except ValidationError as exc:
        raise BadEvent(
            f'expected an S3 ObjectCreated notification or {{"keys": [...]}}: {_errors(exc)}'
        ) from exc


# ------------------------------------------------------------------------------------ model stages
_RUN_ID = r"^[A-Za-z0-9._=-]{1,120}$"


class ExploreRequest(_Strict):
    """Explore a dataset's clean zone; ``run_id`` names the report folder (default: from the data)."""

    dataset: str = "listings"
    run_id: str | None = Field(default=None, pattern=_RUN_ID)


class TrainRequest(_Strict):
    """Train on a dataset's clean zone; ``force`` trains even when the clean data has not changed."""

    dataset: str = "listings"
    seed: int = Field(default=42, ge=0)
    force: bool = False


class EvaluateRequest(_Strict):
    """Evaluate (and promote when the gate passes) a registry version.

    ``version`` is None when the train stage produced nothing to judge; ``skip_reason`` then says why.
    """

    version: str | None = Field(default=None, pattern=_RUN_ID)
    tolerance: float = Field(default=0.05, ge=0, le=1)
    promote: bool = True
    skip_reason: str | None = None


def parse_explore(event: Any) -> ExploreRequest:
    """An explore request (an empty event explores ``listings``)."""
    try:
        return ExploreRequest.model_validate(event or {})
    except ValidationError as exc:
        raise BadEvent(f"invalid explore request: {_errors(exc)}") from exc


def parse_train(event: Any) -> TrainRequest:
    """A train request (an empty event trains on ``listings``)."""
    try:
        return TrainRequest.model_validate(event or {})
    except ValidationError as exc:
        raise BadEvent(f"invalid train request: {_errors(exc)}") from exc


def parse_evaluate(event: Any) -> EvaluateRequest:
    """An evaluate request: ``{"version": V, "tolerance": ..., "promote": ...}``, or the train function's
    output as the state machine passes it on (it holds ``trained``: a skipped or refused training becomes
    a request with no version and the reason)."""
    if isinstance(event, dict) and "trained" in event:
        if event.get("trained") and event.get("version"):
            event = {"version": event["version"]}
        else:
            event = {"skip_reason": str(event.get("reason") or "the train stage produced no version")}
    try:
        req = EvaluateRequest.model_validate(event or {})
    except ValidationError as exc:
        raise BadEvent(f"invalid evaluate request: {_errors(exc)}") from exc
    if req.version is None and req.skip_reason is None:
        raise BadEvent(
            'invalid evaluate request: expected {"version": "<registry version>"} or the train '
            "function's output"
        )
    return req
