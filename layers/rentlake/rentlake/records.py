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


# ---------------------------------------------------------------------------- the model registry
# The champion pointer, its history and the model card. The prediction side reads the pointer and the
# card; the registry (rentlake.registry) writes them. The JSON layout is the one the registry has always
# written, so readers that still take the raw JSON keep working.

_HEX = frozenset("0123456789abcdef")
SWITCH_ACTIONS = ("promote", "rollback")
INTERVAL_SCALES = ("log", "linear")


def _digest(doc: Mapping[str, Any], name: str, what: str, *, optional: bool = False) -> str | None:
    """A sha256 hex digest (64 hex digits, either case)."""
    value = _field(doc, name, str, what, optional=optional)
    if value is not None and (len(value) != 64 or not set(value.lower()) <= _HEX):
        raise RecordError(f"{what}: field {name!r} should be a sha256 digest (64 hex digits), not {value!r}")
    return value


def _timestamp(doc: Mapping[str, Any], name: str, what: str, *, optional: bool = False) -> str | None:
    """An ISO 8601 time with its time zone (as the registry writes them)."""
    from datetime import datetime

    value = _field(doc, name, str, what, optional=optional)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{what}: field {name!r} should be an ISO 8601 time, not {value!r}") from None
    if parsed.tzinfo is None:
        raise RecordError(f"{what}: field {name!r} has no time zone ({value!r})")
    return value


def _number(doc: Mapping[str, Any], name: str, what: str) -> float:
    value = doc.get(name)
    if value is None:
        raise RecordError(f"{what}: field {name!r} is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{what}: field {name!r} should be a number, not {type(value).__name__}")
    return float(value)


def _strings(doc: Mapping[str, Any], name: str, what: str, *, optional: bool = False) -> tuple[str, ...]:
    listed = _field(doc, name, list, what, optional=optional)
    if listed is None:
        return ()
    if not all(isinstance(v, str) for v in listed):
        raise RecordError(f"{what}: field {name!r} should be a list of strings")
    return tuple(listed)


@dataclass(frozen=True)
class ChampionPointer:
    """The serving pointer ``models/champion.json``: the version that serves and the files it names.

    Only the registry writes it, by compare-and-swap, after every file it names exists. ``legal_key`` and
    ``legal_sha256`` (the compiled reference-rent lookup) come together or not at all;
    ``legal_refreshed_at`` says when a newer reference table replaced the lookup of the same model.
    Fields other than these are not kept.
    """

    version: str
    model_key: str
    sha256: str
    card_key: str
    promoted_at: str
    legal_key: str | None = None
    legal_sha256: str | None = None
    legal_refreshed_at: str | None = None

    def same_switch(self, other: ChampionPointer | None) -> bool:
        """Whether ``other`` comes from the same switch (same version, same ``promoted_at``).

        A legal refresh rewrites the pointer of the same switch; a promotion or rollback makes a new one.
        """
        return other is not None and (self.version, self.promoted_at) == (other.version, other.promoted_at)

    def with_legal(self, key: str, sha256: str, refreshed_at: str) -> ChampionPointer:
        """The same switch serving another reference-rent lookup."""
        import dataclasses

        return dataclasses.replace(self, legal_key=key, legal_sha256=sha256, legal_refreshed_at=refreshed_at)

    def to_json(self) -> dict[str, Any]:
        """The pointer as stored (legal fields only when set)."""
        doc: dict[str, Any] = {
            "version": self.version,
            "model_key": self.model_key,
            "sha256": self.sha256,
            "card_key": self.card_key,
            "promoted_at": self.promoted_at,
        }
        for name in ("legal_key", "legal_sha256", "legal_refreshed_at"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> ChampionPointer:
        """Read and check a stored pointer (:class:`RecordError` names the wrong field)."""
        what = "champion pointer"
        doc = _as_mapping(doc, what)
        legal_key = _field(doc, "legal_key", str, what, optional=True)
        legal_sha256 = _digest(doc, "legal_sha256", what, optional=True)
        if (legal_key is None) != (legal_sha256 is None):
            missing = "legal_sha256" if legal_sha256 is None else "legal_key"
            raise RecordError(f"{what}: field {missing!r} is missing (the legal fields go in pairs)")
        return cls(
            version=_field(doc, "version", str, what),
            model_key=_field(doc, "model_key", str, what),
            sha256=str(_digest(doc, "sha256", what)),
            card_key=_field(doc, "card_key", str, what),
            promoted_at=str(_timestamp(doc, "promoted_at", what)),
            legal_key=legal_key,
            legal_sha256=legal_sha256,
            legal_refreshed_at=_timestamp(doc, "legal_refreshed_at", what, optional=True),
        )


@dataclass(frozen=True)
class ChampionSwitch:
    """One entry of ``models/champion_history.json``: a promotion or a rollback, with the pointer it set.

    The history is the registry's log of switches, oldest first: replayed as a stack (a promotion pushes
    its pointer, a rollback pops) its top is the champion.
    """

    action: str
    version: str
    at: str
    reason: str
    previous: str | None
    pointer: ChampionPointer
    gate: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as stored (a promotion records its gate decision, possibly null)."""
        doc: dict[str, Any] = {"action": self.action, "version": self.version, "at": self.at}
        doc["reason"] = self.reason
        if self.action == "promote":
            doc["gate"] = self.gate
        return doc | {"previous": self.previous, "pointer": self.pointer.to_json()}

    @classmethod
    def from_json(cls, doc: Any) -> ChampionSwitch:
        """Read and check a stored entry (:class:`RecordError` names the wrong field)."""
        what = "champion history entry"
        doc = _as_mapping(doc, what)
        action = _field(doc, "action", str, what)
        if action not in SWITCH_ACTIONS:
            raise RecordError(f"{what}: field 'action' should be one of {SWITCH_ACTIONS}, not {action!r}")
        pointer = ChampionPointer.from_json(_field(doc, "pointer", dict, what))
        version = _field(doc, "version", str, what)
        if version != pointer.version:
            raise RecordError(f"{what}: field 'version' ({version}) is not the pointer's ({pointer.version})")
        return cls(
            action=action,
            version=version,
            at=str(_timestamp(doc, "at", what)),
            reason=_field(doc, "reason", str, what),
            previous=_field(doc, "previous", str, what, optional=True),
            pointer=pointer,
            gate=_field(doc, "gate", dict, what, optional=True),
        )


#: The card's fields that ModelCard types; the others are kept as written, in ``documentation``.
_CARD_FIELDS = frozenset(
    {
        "version",
        "trained_at",
        "model_name",
        "features",
        "feature_ranges",
        "interval",
        "metrics",
        "sha256",
        "lineage",
        "artifacts",
        "legal",
        "plot_sample",
        "data",
        "diagnostics",
    }
)


@dataclass(frozen=True)
class ModelCard:
    """The machine model card ``models/<version>/card.json``: what a version is and how it serves.

    The typed fields are those code reads (the prediction side: version, features and their ranges, the
    interval; the pipeline: metrics, lineage, data sizes, diagnostics, legal lookup). Every other field
    (``model``, ``intended_use``, ``selection``, ``ols_reference``, ``at_30m2``, ``params``, ``limits``...)
    is documentation for people and is kept as written in ``documentation``.
    """

    version: str
    trained_at: str
    model_name: str
    features: tuple[str, ...]
    feature_ranges: dict[str, Any]
    interval: dict[str, Any]
    metrics: dict[str, Any]
    sha256: str | None = None
    lineage: dict[str, Any] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    legal: dict[str, Any] | None = None
    plot_sample: tuple[tuple[float, float], ...] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    documentation: dict[str, Any] = field(default_factory=dict)

    @property
    def surface_range(self) -> tuple[float, float]:
        """Smallest and largest training surface (m²)."""
        surface = self.feature_ranges["surface_m2"]
        return float(surface["min"]), float(surface["max"])

    @property
    def districts(self) -> tuple[str, ...]:
        """The districts seen in training (empty when the model ignores the district)."""
        return tuple(self.feature_ranges.get("district") or ())

    @property
    def level(self) -> float:
        """Nominal level of the served interval (0.9)."""
        return float(self.interval["level"])

    @property
    def batch_ids(self) -> list[str]:
        """Sorted ingestion ids of the clean batches the version was trained on (its data's identity)."""
        return sorted(str(b["ingestion_id"]) for b in (self.lineage or {}).get("batches") or [])

    @property
    def small_sample(self) -> dict[str, Any] | None:
        """Set when the version was judged on too few held-out rows (``heldout_rows``, ``message``)."""
        value = self.documentation.get("small_sample")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def reference_district(self) -> str | None:
        """The district the card's 30 m² example (and the gate's reference surfaces) are evaluated in."""
        at = self.documentation.get("at_30m2")
        district = at.get("district") if isinstance(at, Mapping) else None
        return str(district) if district is not None else None

    def with_legal(self, legal: dict[str, Any] | None) -> ModelCard:
        """The same card with another reference-rent lookup."""
        import dataclasses

        return dataclasses.replace(self, legal=legal)

    def to_json(self) -> dict[str, Any]:
        """The card as stored (``plot_sample`` only when set)."""
        doc = dict(self.documentation)
        doc.update(
            {
                "data": self.data,
                "features": list(self.features),
                "feature_ranges": self.feature_ranges,
                "interval": self.interval,
                "metrics": self.metrics,
                "diagnostics": self.diagnostics,
                "version": self.version,
                "trained_at": self.trained_at,
                "model_name": self.model_name,
                "sha256": self.sha256,
                "lineage": self.lineage,
                "artifacts": self.artifacts,
                "legal": self.legal,
            }
        )
        if self.plot_sample is not None:
            doc["plot_sample"] = [list(p) for p in self.plot_sample]
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> ModelCard:
        """Read and check a stored card (:class:`RecordError` names the wrong field)."""
        what = "model card"
        doc = _as_mapping(doc, what)
        features = _strings(doc, "features", what)
        if not features:
            raise RecordError(f"{what}: field 'features' is empty")
        artifacts = _field(doc, "artifacts", dict, what, optional=True) or {}
        if not all(isinstance(v, str) for v in artifacts.values()):
            raise RecordError(f"{what}: field 'artifacts' should map file names to keys (strings)")
        return cls(
            version=_field(doc, "version", str, what),
            trained_at=str(_timestamp(doc, "trained_at", what)),
            model_name=_field(doc, "model_name", str, what),
            features=features,
            feature_ranges=_card_ranges(doc, what),
            interval=_card_interval(doc, what),
            metrics=_field(doc, "metrics", dict, what),
            sha256=_digest(doc, "sha256", what, optional=True),
            lineage=_field(doc, "lineage", dict, what, optional=True),
            artifacts=dict(artifacts),
            legal=_field(doc, "legal", dict, what, optional=True),
            plot_sample=_card_points(doc, what),
            data=_field(doc, "data", dict, what, optional=True) or {},
            diagnostics=_field(doc, "diagnostics", dict, what, optional=True) or {},
            documentation={k: v for k, v in doc.items() if k not in _CARD_FIELDS},
        )


def _card_ranges(doc: Mapping[str, Any], what: str) -> dict[str, Any]:
    ranges = _field(doc, "feature_ranges", dict, what)
    surface = _field(ranges, "surface_m2", dict, f"{what}: feature_ranges")
    low = _number(surface, "min", f"{what}: feature_ranges.surface_m2")
    high = _number(surface, "max", f"{what}: feature_ranges.surface_m2")
    if low > high:
        raise RecordError(f"{what}: field 'feature_ranges.surface_m2' has min {low:g} above max {high:g}")
    _strings(ranges, "district", f"{what}: feature_ranges", optional=True)
    return dict(ranges)


def _card_interval(doc: Mapping[str, Any], what: str) -> dict[str, Any]:
    interval = _field(doc, "interval", dict, what)
    level = _number(interval, "level", f"{what}: interval")
    if not 0.0 < level < 1.0:
        raise RecordError(f"{what}: field 'interval.level' should be in (0, 1), not {level:g}")
    scale = interval.get("scale", "log")
    if scale not in INTERVAL_SCALES:
        raise RecordError(f"{what}: field 'interval.scale' should be one of {INTERVAL_SCALES}, not {scale!r}")
    return dict(interval)


def _card_points(doc: Mapping[str, Any], what: str) -> tuple[tuple[float, float], ...] | None:
    points = _field(doc, "plot_sample", list, what, optional=True)
    if points is None:
        return None
    out = []
    for p in points:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)):
            raise RecordError(f"{what}: field 'plot_sample' should list [surface, rent] pairs, not {p!r}")
        out.append((float(p[0]), float(p[1])))
    return tuple(out)


# --------------------------------------------------------------------------------- batch reviews
REVIEW_STATUSES = ("admitted", "held", "accepted")


@dataclass(frozen=True)
class BatchReview:
    """Whether a clean batch trains models (``models/_batches/<dataset>/<ingestion_id>.json``).

    Decided once, by the train stage, when it first sees the batch: ``admitted`` when its €/m² look like
    the earlier training batches', ``held`` when they depart beyond the thresholds of
    :mod:`rentlake.model.shift` (cleaned, but kept out of training); ``accepted`` when a person accepted a
    held batch (``rentlake batches accept ID``).
    """

    dataset: str
    ingestion_id: str
    status: str
    decided_at: str
    reason: str
    check: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    accepted_at: str | None = None
    accepted_by: str | None = None

    @property
    def trains(self) -> bool:
        """Whether the batch's rows train models."""
        return self.status in ("admitted", "accepted")

    def accept(self, at: str, by: str) -> BatchReview:
        """The same review, accepted."""
        import dataclasses

        return dataclasses.replace(self, status="accepted", accepted_at=at, accepted_by=by)

    def to_json(self) -> dict[str, Any]:
        """The review as stored."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> BatchReview:
        """Read and check a stored review (:class:`RecordError` names the wrong field)."""
        what = "batch review"
        doc = _as_mapping(doc, what)
        status = _field(doc, "status", str, what)
        if status not in REVIEW_STATUSES:
            raise RecordError(f"{what}: field 'status' should be one of {REVIEW_STATUSES}, not {status!r}")
        return cls(
            dataset=_field(doc, "dataset", str, what),
            ingestion_id=_field(doc, "ingestion_id", str, what),
            status=status,
            decided_at=str(_timestamp(doc, "decided_at", what)),
            reason=_field(doc, "reason", str, what),
            check=dict(_field(doc, "check", dict, what, optional=True) or {}),
            rows=_field(doc, "rows", int, what, optional=True) or 0,
            accepted_at=_timestamp(doc, "accepted_at", what, optional=True),
            accepted_by=_field(doc, "accepted_by", str, what, optional=True),
        )
