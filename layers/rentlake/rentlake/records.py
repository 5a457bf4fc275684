"""What the lake stores as JSON records, typed: each a dataclass with ``to_json`` / ``from_json``.

``from_json`` validates what it reads (a record written by hand, truncated or from an older version names
the field that is wrong, as a :class:`RecordError`), so code above reads attributes, never built-up keys.
Only the standard library is imported: the light prediction side reads the champion pointer and card too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class RecordError(ValueError):
    """A stored record is not what its type says (missing or mistyped field)."""


_KIND_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list", bool: "true or false"}


def _field(doc: Mapping[str, Any], name: str, kind: type, what: str, *, optional: bool = False) -> Any:
    """``doc[name]``, checked to be of ``kind`` (None when optional and absent); RecordError otherwise."""
    value = doc.get(name)
    if value is None:
        if optional:
            return None
        raise RecordError(f"{what}: field {name!r} is missing")
    # bool is an int to Python, never to a record: a count written ``true`` is a broken record.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordError(
            f"{what}: field {name!r} should be {_KIND_NAMES.get(kind, kind.__name__)}, "
            f"not {type(value).__name__}"
        )
    return value


def _files(doc: Mapping[str, Any], name: str, what: str) -> tuple[str, ...] | None:
    """A list of keys (None for records written before the list existed)."""
    listed = _field(doc, name, list, what, optional=True)
    if listed is None:
        return None
    if not all(isinstance(k, str) for k in listed):
        raise RecordError(f"{what}: field {name!r} should list keys (strings)")
    return tuple(listed)


def _as_mapping(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise RecordError(f"{what}: expected a JSON object, not {type(doc).__name__}")
    return doc


@dataclass(frozen=True)
class IngestedBatch:
    """The ingestion record of an accepted object (``raw/_ingestions/<id>.json``, status ``ingested``).

    It is the commit of the ingestion: created only if absent, it lists exactly the raw files its writer
    wrote, and only those are ever read.
    """

    ingestion_id: str
    dataset: str
    contract_version: int
    source_key: str
    source_etag: str
    source_sha256: str
    size_bytes: int
    raw_object: str
    raw_table: str
    raw_files: tuple[str, ...] | None  # None: written before the list existed (read by prefix)
    ingest_date: str
    ingested_at: str
    rows: int
    format: str
    decimal_comma: bool  # whether the source writes decimals with a comma ("1 200,50")
    details: dict[str, Any] = field(default_factory=dict)
    header: list[str] | None = None
    mapping: dict[str, Any] = field(default_factory=dict)
    source_version_id: str | None = None
    status: str = "ingested"

    @property
    def unit_factors(self) -> dict[str, float]:
        """Unit factors of the source header (e.g. 1/12 for a yearly rent column), by canonical column."""
        return {str(k): float(v) for k, v in (self.mapping.get("unit_factors") or {}).items()}

    def files(self, zone: str) -> tuple[str, ...] | None:
        """The files this record commits in ``zone`` (``raw``); None for an old record without the list."""
        if zone != "raw":
            raise ValueError(f"an ingestion record commits raw files, not {zone!r} files")
        return self.raw_files

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        doc = asdict(self)
        doc["raw_files"] = None if self.raw_files is None else list(self.raw_files)
        order = ["ingestion_id", "status", "dataset", "contract_version", "source_key", "source_etag"]
        return {k: doc[k] for k in order} | {k: v for k, v in doc.items() if k not in order}

    @classmethod
    def from_json(cls, doc: Any) -> IngestedBatch:
        """Read and check a stored record (:class:`RecordError` names the wrong field)."""
        what = "ingestion record"
        doc = _as_mapping(doc, what)
        details = _field(doc, "details", dict, what, optional=True) or {}
        decimal_comma = _field(doc, "decimal_comma", bool, what, optional=True)
        if decimal_comma is None:  # written before it was recorded: what the cleaning used to infer
            decimal_comma = details.get("delimiter") == ";"
        return cls(
            ingestion_id=_field(doc, "ingestion_id", str, what),
            dataset=_field(doc, "dataset", str, what),
            contract_version=_field(doc, "contract_version", int, what),
            source_key=_field(doc, "source_key", str, what),
            source_etag=_field(doc, "source_etag", str, what),
            source_sha256=_field(doc, "source_sha256", str, what),
            size_bytes=_field(doc, "size_bytes", int, what),
            raw_object=_field(doc, "raw_object", str, what),
            raw_table=_field(doc, "raw_table", str, what),
            raw_files=_files(doc, "raw_files", what),
            ingest_date=_field(doc, "ingest_date", str, what),
            ingested_at=_field(doc, "ingested_at", str, what),
            rows=_field(doc, "rows", int, what),
            format=_field(doc, "format", str, what),
            decimal_comma=decimal_comma,
            details=dict(details),
            header=_field(doc, "header", list, what, optional=True),
            mapping=dict(_field(doc, "mapping", dict, what, optional=True) or {}),
            source_version_id=_field(doc, "source_version_id", str, what, optional=True),
        )


@dataclass(frozen=True)
class RejectedObject:
    """The ingestion record of an object rejected whole (status ``rejected``).

    A later ingestion of the same content may replace it (compare-and-swap on its ETag): a rejection is
    tried again, an ingestion never is.
    """

    ingestion_id: str
    source_key: str
    source_etag: str
    source_sha256: str
    reason: str
    message: str
    rejected_at: str
    kept_at: str
    status: str = "rejected"

    def reason_json(self) -> dict[str, Any]:
        """The reason file kept beside the rejected copy (the record without the ledger fields)."""
        return {k: v for k, v in self.to_json().items() if k not in ("ingestion_id", "status")}

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        doc = asdict(self)
        return {"ingestion_id": doc.pop("ingestion_id"), "status": doc.pop("status"), **doc}

    @classmethod
    def from_json(cls, doc: Any) -> RejectedObject:
        """Read and check a stored record (:class:`RecordError` names the wrong field)."""
        what = "ingestion record (rejected)"
        doc = _as_mapping(doc, what)
        return cls(
            ingestion_id=_field(doc, "ingestion_id", str, what),
            source_key=_field(doc, "source_key", str, what),
            source_etag=_field(doc, "source_etag", str, what),
            source_sha256=_field(doc, "source_sha256", str, what),
            reason=_field(doc, "reason", str, what),
            message=_field(doc, "message", str, what),
            rejected_at=_field(doc, "rejected_at", str, what),
            kept_at=_field(doc, "kept_at", str, what),
        )


IngestionRecord = IngestedBatch | RejectedObject


def ingestion_record_from_json(doc: Any) -> IngestionRecord:
    """An ingestion record as stored, typed by its ``status`` (ingested or rejected).

    Raises
    ------
    RecordError
        When the status is neither, or a field is missing or mistyped.
    """
    status = _field(_as_mapping(doc, "ingestion record"), "status", str, "ingestion record")
    if status == "ingested":
        return IngestedBatch.from_json(doc)
    if status == "rejected":
        return RejectedObject.from_json(doc)
    raise RecordError(f"ingestion record: field 'status' should be 'ingested' or 'rejected', not {status!r}")


@dataclass(frozen=True)
class CleanCommit:
    """The commit of one cleaned batch (``clean/_batches/<dataset>/<seq>.json``), with its quality summary.

    Commits of a dataset are numbered: ``seq`` is the slot this commit won (created only if absent), and
    every decision of the batch (duplicates, conflicting keys, outliers) was taken against the rows of all
    commits numbered before it. Records written before the numbering have ``seq`` None.
    """

    dataset: str
    ingestion_id: str
    ingest_date: str
    cleaned_at: str
    rows_in: int
    rows_clean: int
    rows_quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    contract_version: int | None = None
    source_key: str | None = None
    source_sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    robust_bounds: dict[str, Any] = field(default_factory=dict)
    history_rows: int = 0
    clean_zone: str | None = None
    quarantine_zone: str | None = None
    clean_files: tuple[str, ...] | None = None  # None: written before the lists existed (read by prefix)
    quarantine_files: tuple[str, ...] | None = None
    seq: int | None = None

    @property
    def invariant_holds(self) -> bool:
        """Every row in is clean or quarantined."""
        return self.rows_in == self.rows_clean + self.rows_quarantined

    def files(self, zone: str) -> tuple[str, ...] | None:
        """The files this commit names in ``zone`` (``clean`` or ``quarantine``); None for an old record."""
        if zone == "clean":
            return self.clean_files
        if zone == "quarantine":
            return self.quarantine_files
        raise ValueError(f"a clean commit names clean and quarantine files, not {zone!r} files")

    def to_json(self) -> dict[str, Any]:
        """The commit as stored (and as the clean function reports it)."""
        return {
            "dataset": self.dataset,
            "ingestion_id": self.ingestion_id,
            "ingest_date": self.ingest_date,
            "seq": self.seq,
            "contract_version": self.contract_version,
            "source_key": self.source_key,
            "source_sha256": self.source_sha256,
            "cleaned_at": self.cleaned_at,
            "rows": {"in": self.rows_in, "clean": self.rows_clean, "quarantined": self.rows_quarantined},
            "invariant_holds": self.invariant_holds,
            "reasons": dict(self.reasons),
            "params": self.params,
            "robust_bounds": self.robust_bounds,
            "history_rows": self.history_rows,
            "clean_zone": self.clean_zone,
            "quarantine_zone": self.quarantine_zone,
            "clean_files": None if self.clean_files is None else list(self.clean_files),
            "quarantine_files": None if self.quarantine_files is None else list(self.quarantine_files),
        }

    @classmethod
    def from_json(cls, doc: Any) -> CleanCommit:
        """Read and check a stored commit (:class:`RecordError` names the wrong field)."""
        what = "clean commit"
        doc = _as_mapping(doc, what)
        rows = _field(doc, "rows", dict, what)
        counts = [_field(rows, k, int, f"{what}: rows") for k in ("in", "clean", "quarantined")]
        reasons = _field(doc, "reasons", dict, what, optional=True) or {}
        return cls(
            dataset=_field(doc, "dataset", str, what),
            ingestion_id=_field(doc, "ingestion_id", str, what),
            ingest_date=_field(doc, "ingest_date", str, what),
            cleaned_at=_field(doc, "cleaned_at", str, what),
            rows_in=counts[0],
            rows_clean=counts[1],
            rows_quarantined=counts[2],
            reasons={str(k): _field(reasons, k, int, f"{what}: reasons") for k in reasons},
            contract_version=_field(doc, "contract_version", int, what, optional=True),
            source_key=_field(doc, "source_key", str, what, optional=True),
            source_sha256=_field(doc, "source_sha256", str, what, optional=True),
            params=dict(_field(doc, "params", dict, what, optional=True) or {}),
            robust_bounds=dict(_field(doc, "robust_bounds", dict, what, optional=True) or {}),
            history_rows=_field(doc, "history_rows", int, what, optional=True) or 0,
            clean_zone=_field(doc, "clean_zone", str, what, optional=True),
            quarantine_zone=_field(doc, "quarantine_zone", str, what, optional=True),
            clean_files=_files(doc, "clean_files", what),
            quarantine_files=_files(doc, "quarantine_files", what),
            seq=_field(doc, "seq", int, what, optional=True),
        )
