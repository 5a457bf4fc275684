"""The ingest and clean stages over the lake: what the ``ingest`` and ``clean`` handlers call.

Each function takes an injected :class:`~rentlake.lake.Lake`; parsing and cleaning rules live in
:mod:`rentlake.ingest` and :mod:`rentlake.clean`, S3 keys and I/O in :mod:`rentlake.lake`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from rentlake import contracts
from rentlake.clean import (
    CleanParams,
    reasons_to_series,
    robust_bounds,
    robust_outliers,
    row_hashes,
    type_chunk,
)
from rentlake.ingest import Rejected, parse_object
from rentlake.lake import Lake, keys
from rentlake.progress import report as report_progress

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
LINEAGE = ["source_key", "source_etag", "source_sha256", "source_row"]


def _now() -> datetime:
    return datetime.now(UTC)


def ingestion_id_of(data: bytes) -> tuple[str, str]:
    """The ingestion id of an object: from its content, so the same object ingested twice is one batch."""
    sha = hashlib.sha256(data).hexdigest()
    return sha[:20], sha


@dataclass
class IngestOutcome:
    """What happened to one landed object."""

    key: str
    status: str  # "ingested" | "duplicate" | "rejected"
    ingestion_id: str | None = None
    dataset: str | None = None
    rows: int = 0
    reason: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON, without the fields that are unset (``rows`` is always there)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}) or k == "rows"}


def _raw_dtype(contract: contracts.Contract) -> dict[str, str]:
    dtype = {c: "string" for c in contract.column_names}
    dtype.update(
        {
            "extra": "string",
            "raw_problem": "string",
            "source_key": "string",
            "source_etag": "string",
            "source_sha256": "string",
            "source_row": "bigint",
        }
    )
    return dtype


def ingest_key(
    lake: Lake,
    key: str,
    *,
    dataset: str | None = None,
    chunk_rows: int = 250_000,
    max_bytes: int = 512 << 20,
    progress: Progress = report_progress,
    now: Callable[[], datetime] = _now,
) -> IngestOutcome:
    """Ingest one object of the lake (normally under ``landing/``) into the raw zone.

    Idempotent: the ingestion id comes from the content, and an object whose id the ledger records as
    ingested adds nothing. An object rejected whole is copied to ``quarantine/objects/`` with its reason;
    the same content landing again is tried again (and, if rejected again, written at the same keys).

    Parameters
    ----------
    lake
        The lake.
    key
        The object's key.
    dataset
        Force a dataset contract instead of recognising the header.
    chunk_rows
        Rows per raw Parquet part (bounds memory).
    max_bytes
        Larger objects are rejected whole.
    progress
        Called with short progress messages.
    now
        Clock (injectable for tests).

    Returns
    -------
    IngestOutcome
        ``ingested`` (with the row count), ``duplicate`` (nothing added) or ``rejected`` (reason code and
        a message saying what to do).
    """
    head = lake.head(key)
    if head is None:
        return IngestOutcome(
            key, "rejected", reason="not_found", message=f"s3://{lake.bucket}/{key} does not exist"
        )
    if head["size"] > max_bytes:
        return _reject_large(lake, key, head, max_bytes)
    data = lake.get_bytes(key)
    ingestion_id, sha = ingestion_id_of(data)
    record_key = keys.ingestion_record(ingestion_id)
    previous = lake.get_json_or_none(record_key)
    # Only an ingestion makes the content a duplicate: a rejection is tried again (it may have come from a
    # forced dataset, or a contract that has learnt a new alias since), and rejected again at the same keys.
    if previous is not None and previous.get("status") == "ingested":
        return IngestOutcome(
            key,
            "duplicate",
            ingestion_id,
            previous.get("dataset"),
            0,
            message=f"same content as {previous.get('source_key')} "
            f"(ingested {previous.get('ingested_at')}): nothing added",
        )
    stamp = now()
    ingest_date = stamp.strftime("%Y-%m-%d")
    name = key.rsplit("/", 1)[-1]
    rows = 0
    raw_files: list[str] = []
    parsed = None
    try:
        parsed = parse_object(data, name, dataset=dataset, chunk_rows=chunk_rows, max_bytes=max_bytes)
        contract = contracts.get(parsed.dataset)
        lake.drop_batch("raw", parsed.dataset, ingest_date=ingest_date, ingestion_id=ingestion_id)
        for part, chunk in enumerate(parsed.chunks):
            chunk = chunk.assign(source_key=key, source_etag=head["etag"], source_sha256=sha)
            raw_files += lake.write_batch(
                chunk,
                "raw",
                parsed.dataset,
                ingest_date=ingest_date,
                ingestion_id=ingestion_id,
                part=part,
                dtype=_raw_dtype(contract),
            )
            rows += len(chunk)
            progress(f"ingest {name}: {rows:,} rows read")
        if rows == 0:
            raise Rejected("no_data_rows", f"{name} has a header but no data rows")
    except Rejected as exc:
        if parsed is not None:
            lake.drop_batch("raw", parsed.dataset, ingest_date=ingest_date, ingestion_id=ingestion_id)
        return _reject(lake, key, head, sha, ingestion_id, exc, stamp)
    raw_copy = keys.raw_object(ingest_date, ingestion_id, name)
    lake.copy(key, raw_copy)
    if previous is not None:  # rejected before, ingested now: the rejected copy no longer stands
        prev_name = str(previous.get("source_key", "")).rsplit("/", 1)[-1]
        lake.delete_keys(
            [keys.rejected_object(ingestion_id, prev_name), keys.rejected_reason(ingestion_id, prev_name)]
        )
    record = {
        "ingestion_id": ingestion_id,
        "status": "ingested",
        "dataset": parsed.dataset,
        "contract_version": contracts.get(parsed.dataset).version,
        "source_key": key,
        "source_etag": head["etag"],
        "source_version_id": head.get("version_id"),
        "source_sha256": sha,
        "size_bytes": head["size"],
        "raw_object": raw_copy,
        "raw_table": keys.batch_prefix("raw", parsed.dataset, ingest_date, ingestion_id),
        # Exactly the files of this ingestion: clean reads these, not whatever else the prefix holds.
        "raw_files": [lake.key_of(path) for path in raw_files],
        "ingest_date": ingest_date,
        "ingested_at": stamp.isoformat(),
        "rows": rows,
        "format": parsed.format,
        "details": {k: v for k, v in parsed.details.items() if k != "header"},
        "header": parsed.details.get("header"),
        "mapping": parsed.mapping.describe(),
    }
    lake.put_json(record_key, record)  # written last: it is the commit of the ingestion
    log.info("ingested %s: %d rows as %s (%s)", key, rows, parsed.dataset, ingestion_id)
    return IngestOutcome(
        key,
        "ingested",
        ingestion_id,
        parsed.dataset,
        rows,
        details={"format": parsed.format, **record["details"], "unknown_columns": parsed.mapping.unknown},
    )


def _reject(
    lake: Lake, key: str, head: dict[str, Any], sha: str, ingestion_id: str, exc: Rejected, stamp: datetime
) -> IngestOutcome:
    name = key.rsplit("/", 1)[-1]
    kept = keys.rejected_object(ingestion_id, name)
    lake.copy(key, kept)
    reason = {
        "source_key": key,
        "source_etag": head["etag"],
        "source_sha256": sha,
        "reason": exc.code,
        "message": exc.message,
        "rejected_at": stamp.isoformat(),
        "kept_at": kept,
    }
    lake.put_json(keys.rejected_reason(ingestion_id, name), reason)
    lake.put_json(
        keys.ingestion_record(ingestion_id), {"ingestion_id": ingestion_id, "status": "rejected", **reason}
    )
    log.warning("rejected %s: %s", key, exc)
    return IngestOutcome(
        key, "rejected", ingestion_id, reason=exc.code, message=exc.message, details={"kept_at": kept}
    )


def _reject_large(lake: Lake, key: str, head: dict[str, Any], max_bytes: int) -> IngestOutcome:
    # Too large to read into memory: identified by its ETag instead of its content hash, and left where
    # it landed (copying it would double the cost; the reason file says where it is).
    ingestion_id = "etag-" + head["etag"][:20]
    msg = f"{key} is {head['size']} bytes; the limit of one object is {max_bytes}: split it"
    lake.put_json(
        keys.rejected_reason(ingestion_id, key), {"source_key": key, "reason": "too_large", "message": msg}
    )
    return IngestOutcome(key, "rejected", ingestion_id, reason="too_large", message=msg)


def ingest_keys(lake: Lake, key_list: Iterable[str], **kwargs: Any) -> list[IngestOutcome]:
    """Ingest several objects (see :func:`ingest_key`)."""
    return [ingest_key(lake, key, **kwargs) for key in key_list]


# --------------------------------------------------------------------------------------------- clean
def pending_batches(lake: Lake, dataset: str | None = None) -> list[dict[str, Any]]:
    """Ingestion records (of ``dataset``, or of every dataset) that have no clean commit marker yet,
    oldest first."""
    out = []
    for key in lake.list_keys(keys.ingestion_records_prefix()):
        rec = lake.get_json(key)
        if rec.get("status") != "ingested" or (dataset and rec.get("dataset") != dataset):
            continue
        if not lake.exists(keys.clean_batch_record(rec["dataset"], rec["ingestion_id"])):
            out.append(rec)
    return sorted(out, key=lambda r: (r.get("ingested_at", ""), r["ingestion_id"]))


def _clean_dtype(contract: contracts.Contract) -> dict[str, str]:
    kinds = {"float": "double", "int": "bigint", "str": "string", "date": "timestamp", "bool": "boolean"}
    dtype = {c.name: kinds[c.kind] for c in contract.columns}
    dtype.update(
        {
            "source_key": "string",
            "source_etag": "string",
            "source_sha256": "string",
            "source_row": "bigint",
            "row_hash": "bigint",
            "key_hash": "bigint",
        }
    )
    return dtype


def _quarantine_dtype(contract: contracts.Contract) -> dict[str, str]:
    return {**_raw_dtype(contract), "reasons": "string"}


@dataclass
class _Pass1:
    """What the first pass keeps of a chunk: a few bytes per row, never the rows themselves."""

    n: int
    reasons: list[tuple[str, np.ndarray]]
    row_hash: np.ndarray
    key_hash: np.ndarray | None
    robust_value: np.ndarray | None
    robust_group: np.ndarray | None  # int32 codes of the group labels


def _group_codes(labels: np.ndarray, names: dict[Any, int]) -> np.ndarray:
    """Small integer codes of group labels (4 bytes a row, not a string), the same across chunks:
    ``names`` maps each label seen so far to its code."""
    inverse, uniques = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)
    table = np.array([names.setdefault(u, len(names)) for u in uniques.tolist()], dtype=np.int32)
    return table[inverse] if len(table) else np.zeros(len(labels), dtype=np.int32)


def _first_pass(
    contract: contracts.Contract,
    raw: pd.DataFrame,
    factors: dict[str, float],
    decimal_comma: bool,
    group_names: dict[Any, int],
) -> tuple[pd.DataFrame, _Pass1]:
    typed, reasons = type_chunk(raw, contract, factors=factors, decimal_comma=decimal_comma)
    rh = row_hashes(typed, contract.column_names)
    kh = row_hashes(typed, list(contract.key)) if contract.key else None
    rv = rg = None
    if contract.robust is not None:
        rv = contract.robust.value(typed)
        if contract.robust.group is not None:
            rg = _group_codes(contract.robust.group(typed), group_names)
    return typed, _Pass1(len(typed), reasons, rh, kh, rv, rg)


def clean_batch(
    lake: Lake,
    record: dict[str, Any],
    params: CleanParams,
    *,
    progress: Progress = report_progress,
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Clean one ingested batch: raw → clean + quarantine, then the quality report and commit marker.

    Two passes over the raw parts keep memory bounded by one chunk plus a few bytes per row: the first
    types and checks every row and collects hashes and the robust statistic; the batch-wide decisions
    (duplicates, conflicting keys, outliers) are taken on those arrays; the second pass writes.
    Whatever a failed earlier attempt wrote for the batch is dropped first, and the commit marker is
    written last, so a re-run gives the same result.

    Parameters
    ----------
    lake
        The lake.
    record
        The batch's ingestion record (from :func:`pending_batches`).
    params
        Thresholds of the statistical checks.
    progress
        Called with short progress messages.
    now
        Clock (injectable for tests).

    Returns
    -------
    dict
        The batch's quality report (also written to ``reports/quality/`` and as the commit marker).

    Raises
    ------
    RuntimeError
        When the rows written do not add up to the rows read (nothing is committed then).
    """
    dataset, iid, day = record["dataset"], record["ingestion_id"], record["ingest_date"]
    contract = contracts.get(dataset)
    factors = {k: float(v) for k, v in record.get("mapping", {}).get("unit_factors", {}).items()}
    decimal_comma = record.get("details", {}).get("delimiter") == ";"

    # Rows already in the clean zone take part in duplicate, key and outlier decisions.
    robust_cols = [c.name for c in contract.columns] if contract.robust else []
    hist_cols = sorted({"row_hash", "key_hash", *robust_cols})
    history = lake.read_clean(dataset, columns=hist_cols)
    hist_rows = set(history["row_hash"].astype("int64").tolist()) if len(history) else set()
    hist_keys: dict[int, int] = {}
    if contract.key and len(history):
        hist_keys = dict(
            zip(history["key_hash"].astype("int64"), history["row_hash"].astype("int64"), strict=True)
        )

    passes: list[_Pass1] = []
    group_names: dict[Any, int] = {}
    raw_keys = lake.committed_files(record, "raw")
    for chunk in lake.iter_keys(raw_keys):
        _, p1 = _first_pass(contract, chunk, factors, decimal_comma, group_names)
        passes.append(p1)
        progress(f"clean {dataset} {iid}: checked {sum(p.n for p in passes):,} rows")
    n = sum(p.n for p in passes)
    invalid = np.concatenate([_any(p.n, p.reasons) for p in passes]) if passes else np.zeros(0, bool)
    row_hash = np.concatenate([p.row_hash for p in passes]) if passes else np.zeros(0, "int64")
    key_hash = (
        np.concatenate([p.key_hash for p in passes])
        if passes and contract.key  # type: ignore[misc]
        else None
    )
    rv = rg = None
    if contract.robust is not None and n:
        rv = np.concatenate([p.robust_value for p in passes])  # type: ignore[misc]
        if contract.robust.group is not None:
            rg = np.concatenate([p.robust_group for p in passes])  # type: ignore[misc]
    del passes  # the per-chunk copies: pass 2 recomputes what it needs from the raw chunks

    # Exact duplicates: the first valid occurrence stays (in this batch or already clean).
    valid = ~invalid
    # Only valid rows count as first copies: equal typed values do not mean equal checks ("not a date" and
    # an empty date are both NaT, but only the first is invalid), and a row is not a duplicate of a row
    # that went to quarantine.
    dup = np.zeros(n, dtype=bool)
    dup[valid] = pd.Series(row_hash[valid]).duplicated(keep="first").to_numpy()
    if hist_rows:
        dup |= valid & pd.Series(row_hash).isin(hist_rows).to_numpy()
    # A key seen with different values is never silently resolved: every row of it is quarantined.
    conflict = np.zeros(n, dtype=bool)
    if key_hash is not None:
        cand = valid & ~dup
        frame = pd.DataFrame({"k": key_hash[cand], "r": row_hash[cand]})
        multi = frame.groupby("k")["r"].nunique()
        bad_keys = set(multi[multi > 1].index.tolist())
        bad_keys |= {
            k for k, r in zip(frame["k"], frame["r"], strict=True) if k in hist_keys and hist_keys[k] != r
        }
        if bad_keys:
            conflict = cand & pd.Series(key_hash).isin(bad_keys).to_numpy()
    # Robust outliers among the rows still standing, against the pool of clean + this batch.
    outlier = np.zeros(n, dtype=bool)
    bounds: dict[str, dict[str, float]] = {}  # per group label, for the report
    if rv is not None:
        keep = valid & ~dup & ~conflict
        pool_v, pool_g = rv[keep], (rg[keep] if rg is not None else None)
        if len(history):
            hv = contract.robust.value(history)
            pool_v = np.concatenate([hv, pool_v])
            if rg is not None:
                hg = _group_codes(contract.robust.group(history), group_names)  # type: ignore[misc]
                pool_g = np.concatenate([hg, pool_g])  # type: ignore[list-item]
        coded = robust_bounds(pool_v, pool_g, params)
        del pool_v, pool_g
        outlier = keep & robust_outliers(rv, rg, coded)
        label_of = {code: label for label, code in group_names.items()}
        bounds = {k if k == "*" else str(label_of[k]): v for k, v in coded.items()}

    # Second pass: write clean and quarantined rows, chunk by chunk.
    for zone in ("clean", "quarantine"):
        lake.drop_batch(zone, dataset, ingest_date=day, ingestion_id=iid)
    counts: Counter[str] = Counter()
    n_clean = n_quar = 0
    offset = 0
    written: dict[str, list[str]] = {"clean": [], "quarantine": []}
    for part, raw in enumerate(lake.iter_keys(raw_keys)):
        typed, p1 = _first_pass(contract, raw, factors, decimal_comma, group_names)
        sl = slice(offset, offset + p1.n)
        offset += p1.n
        reasons = list(p1.reasons) + [
            ("duplicate", dup[sl]),
            ("conflicting_key", conflict[sl]),
            (contract.robust.code if contract.robust else "outlier", outlier[sl]),
        ]
        reasons = [(c, m) for c, m in reasons if m.any()]
        for code, mask in reasons:
            counts[code] += int(mask.sum())
        bad = _any(p1.n, reasons)
        raw = raw.reset_index(drop=True)
        lineage = raw[LINEAGE]
        good = typed.loc[~bad].copy()
        if len(good):
            good[lineage.columns] = lineage.loc[~bad].to_numpy()
            good["source_row"] = good["source_row"].astype("int64")
            good["row_hash"] = p1.row_hash[~bad]
            if p1.key_hash is not None:
                good["key_hash"] = p1.key_hash[~bad]
            written["clean"] += lake.write_batch(
                good,
                "clean",
                dataset,
                ingest_date=day,
                ingestion_id=iid,
                part=part,
                dtype=_clean_dtype(contract),
            )
        if bad.any():
            quarantined = raw.loc[bad].copy()
            quarantined["reasons"] = reasons_to_series(p1.n, reasons)[bad].to_numpy()
            written["quarantine"] += lake.write_batch(
                quarantined,
                "quarantine",
                dataset,
                ingest_date=day,
                ingestion_id=iid,
                part=part,
                dtype=_quarantine_dtype(contract),
            )
        n_clean += int((~bad).sum())
        n_quar += int(bad.sum())
        progress(f"clean {dataset} {iid}: wrote {n_clean:,} clean, {n_quar:,} quarantined")
    if n_clean + n_quar != n or offset != n:
        raise RuntimeError(f"batch {iid}: {n} rows in but {n_clean} clean + {n_quar} quarantined")

    report = {
        "dataset": dataset,
        "ingestion_id": iid,
        "ingest_date": day,
        "contract_version": contract.version,
        "source_key": record.get("source_key"),
        "source_sha256": record.get("source_sha256"),
        "cleaned_at": now().isoformat(),
        "rows": {"in": n, "clean": n_clean, "quarantined": n_quar},
        "invariant_holds": n == n_clean + n_quar,
        "reasons": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "params": {
            **params.describe(),
            "robust_check": contract.robust.description if contract.robust else None,
            "ranges": {c.name: [c.min, c.max] for c in contract.columns if c.min is not None},
        },
        "robust_bounds": bounds,
        "history_rows": int(len(history)),
        "clean_zone": keys.batch_prefix("clean", dataset, day, iid),
        "quarantine_zone": keys.batch_prefix("quarantine", dataset, day, iid),
        # Exactly the files this run committed (readers use these, see Lake.committed_files).
        "clean_files": [lake.key_of(path) for path in written["clean"]],
        "quarantine_files": [lake.key_of(path) for path in written["quarantine"]],
    }
    lake.put_json(keys.quality_report(dataset, iid), report)
    lake.put_json(keys.clean_batch_record(dataset, iid), report)  # commit marker, written last
    return report


def _any(n: int, reasons: list[tuple[str, np.ndarray]]) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for _, mask in reasons:
        out |= mask
    return out


def clean_pending(
    lake: Lake,
    params: CleanParams,
    *,
    dataset: str | None = None,
    ingestion_ids: Iterable[str] | None = None,
    progress: Progress = report_progress,
) -> list[dict[str, Any]]:
    """Clean every pending batch (or only the given ingestion ids), oldest first.

    Parameters
    ----------
    lake
        The lake.
    params
        Thresholds of the statistical checks.
    dataset
        Only this dataset's batches.
    ingestion_ids
        Only these batches (ids that are not pending are ignored).
    progress
        Called with short progress messages.

    Returns
    -------
    list of dict
        The quality report of each batch cleaned.
    """
    wanted = set(ingestion_ids) if ingestion_ids is not None else None
    reports = []
    lake.ensure_database()
    for rec in pending_batches(lake, dataset):
        if wanted is not None and rec["ingestion_id"] not in wanted:
            continue
        reports.append(clean_batch(lake, rec, params, progress=progress))
    return reports
