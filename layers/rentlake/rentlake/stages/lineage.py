"""What the clean zone of a dataset is made of: the lineage the explore and train stages record.

Its ``fingerprint`` identifies the clean data: equal fingerprints mean the same committed batches, which
is how a report is reused and a training skipped when nothing new was cleaned.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rentlake.lake import Lake, keys
from rentlake.model import InsufficientDataError
from rentlake.records import CleanCommit

Lineage = dict[str, Any]


def clean_lineage(lake: Lake, dataset: str) -> Lineage:
    """The committed batches of a dataset's clean zone and where they came from.

    Parameters
    ----------
    lake
        The lake.
    dataset
        Dataset name.

    Returns
    -------
    dict
        ``dataset``, ``batches`` (``ingestion_id``, ``source_key``, ``source_sha256``, ``ingest_date``,
        ``cleaned_at``, ``rows_clean`` per batch, commit order), ``rows_clean``, ``clean_zone`` and
        ``fingerprint`` (sha256 of the dataset and the sorted ingestion ids).
    """
    return lineage_of(dataset, lake.committed_batches(dataset))


def lineage_of(dataset: str, commits: list[CleanCommit]) -> Lineage:
    """The lineage of the given clean commits (see :func:`clean_lineage`)."""
    batches = [
        {
            "ingestion_id": rec.ingestion_id,
            "source_key": rec.source_key,
            "source_sha256": rec.source_sha256,
            "ingest_date": rec.ingest_date,
            "cleaned_at": rec.cleaned_at,
            "rows_clean": rec.rows_clean,
        }
        for rec in commits
    ]
    digest = hashlib.sha256("\n".join([dataset, *batch_ids(batches)]).encode()).hexdigest()
    return {
        "dataset": dataset,
        "batches": batches,
        "rows_clean": sum(int(b["rows_clean"] or 0) for b in batches),
        "clean_zone": keys.table_prefix("clean", dataset),
        "fingerprint": digest,
    }


def batch_ids(batches: list[dict[str, Any]]) -> list[str]:
    """The sorted ingestion ids of lineage batches (the identity of the data they make up)."""
    return sorted(str(b["ingestion_id"]) for b in batches)


def require_batches(lineage: Lineage) -> None:
    """Refuse an empty clean zone.

    Raises
    ------
    InsufficientDataError
        The dataset has no committed clean batch.
    """
    if not lineage["batches"]:
        raise InsufficientDataError(
            f"the clean zone of {lineage['dataset']!r} is empty (no committed batch): ingest and clean "
            "data first"
        )
