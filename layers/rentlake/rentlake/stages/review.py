"""Which clean batches train models: the review of each batch against the clean history.

The train stage reviews every committed batch it has not seen yet (:func:`review_batches`), in commit
order, against the rows of the earlier batches that train (:func:`rentlake.model.shift.check_batch`; a
hash sample of them beyond a million rows, :class:`rentlake.model.shift.HistorySample`). A
batch that departs from them is *held*: it stays in the clean zone (the report and scoring see it) but no
model is trained on it until a person accepts it (:func:`accept`, ``rentlake batches accept ID``).

Each decision is a record ``models/_batches/<dataset>/<ingestion_id>.json``
(:class:`~rentlake.records.BatchReview`), created only if absent: two trainings that review the same
batch at once keep the first decision. The first batch of an empty lake has no history: it is admitted.
When a topic is configured, every newly held batch is published to it (:func:`notify_held`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rentlake.lake import Lake, LakeError, PreconditionFailed, keys
from rentlake.model.shift import HISTORY_SAMPLE_ROWS
from rentlake.records import BatchReview, CleanCommit, RecordError
from rentlake.stages.clean_rows import batch_rows

log = logging.getLogger(__name__)

#: Environment variable naming the SNS topic told about held batches (none: no notification).
TOPIC_ENV = "RENTLAKE_REVIEW_TOPIC_ARN"
#: The columns a review reads (``row_hash``: each row's identity, for the history's hash sample).
COLUMNS = ("rent_eur", "surface_m2", "district", "row_hash")


def review_prefix(dataset: str) -> str:
    """Where the reviews of a dataset's batches are kept (beside the models they decide on)."""
    return f"{keys.models_prefix()}_batches/{dataset}/"


def review_key(dataset: str, ingestion_id: str) -> str:
    """The review record of one batch."""
    return f"{review_prefix(dataset)}{ingestion_id}.json"


@dataclass
class Reviews:
    """The reviews of a dataset's committed batches, in commit order.

    Attributes
    ----------
    commits : list of CleanCommit
        Every committed batch.
    reviews : dict
        ``ingestion_id -> BatchReview`` for every committed batch.
    new : list of BatchReview
        Reviews decided by this call.
    """

    commits: list[CleanCommit]
    reviews: dict[str, BatchReview]
    new: list[BatchReview] = field(default_factory=list)

    @property
    def training(self) -> list[CleanCommit]:
        """The commits that train models."""
        return [c for c in self.commits if self.reviews[c.ingestion_id].trains]

    @property
    def held(self) -> list[BatchReview]:
        """The reviews of held batches, in commit order."""
        return [
            self.reviews[c.ingestion_id]
            for c in self.commits
            if self.reviews[c.ingestion_id].status == "held"
        ]

    @property
    def newly_held(self) -> list[BatchReview]:
        """Batches held by this call."""
        return [r for r in self.new if r.status == "held"]


def read_reviews(lake: Lake, dataset: str) -> dict[str, BatchReview]:
    """Every stored review of a dataset.

    Raises
    ------
    LakeError
        A review that is not a valid record (naming its key).
    """
    out: dict[str, BatchReview] = {}
    for key in lake.list_keys(review_prefix(dataset)):
        if not key.endswith(".json"):
            continue
        try:
            review = BatchReview.from_json(lake.get_json(key))
        except RecordError as exc:
            raise LakeError(f"{lake.uri(key)}: {exc}") from exc
        out[review.ingestion_id] = review
    return out


def review_batches(
    lake: Lake,
    dataset: str,
    *,
    now: Callable[[], datetime],
    history_rows: int = HISTORY_SAMPLE_ROWS,
) -> Reviews:
    """Review the committed batches that have no review yet; returns every batch's review.

    The batches are read one at a time, up to the last one to review: each batch to review is compared
    with a hash sample of the earlier training batches (:class:`~rentlake.model.shift.HistorySample`, the
    whole history up to ``history_rows`` rows), then joins it when it trains. Memory is one batch plus the
    sample, whatever the lake holds.

    Parameters
    ----------
    lake
        The lake.
    dataset
        Dataset name.
    now
        Clock (``decided_at``).
    history_rows
        Rows of the history sample (beyond them, each district keeps its floor and the rest is sampled).
    """
    from rentlake.model.sample import row_identity, uniform_of
    from rentlake.model.shift import HistorySample, check_batch

    commits = lake.committed_batches(dataset)
    reviews = read_reviews(lake, dataset)
    out = Reviews(commits, reviews)
    pending = [i for i, c in enumerate(commits) if c.ingestion_id not in reviews]
    if not pending:
        return out
    history = HistorySample(max_rows=history_rows)
    for commit in commits[: pending[-1] + 1]:
        review = reviews.get(commit.ingestion_id)
        if review is not None and not review.trains:
            continue
        rows = batch_rows(lake, commit, COLUMNS)
        if review is None:
            verdict = check_batch(history.frame(), rows)
            check = {**verdict.to_json(), "history": history.to_json()}
            review = _record(lake, commit, verdict.held, verdict.reason, check, now())
            reviews[commit.ingestion_id] = review
            out.new.append(review)
            if review.status == "held":
                log.info("batch %s of %s held for review: %s", commit.ingestion_id, dataset, review.reason)
        if review.trains:
            history.add(rows, uniform_of(row_identity(rows)))
    return out


def _record(
    lake: Lake, commit: CleanCommit, held: bool, reason: str, check: dict[str, Any], at: datetime
) -> BatchReview:
    """Store a decision unless another writer stored one first (then that one stands)."""
    review = BatchReview(
        dataset=commit.dataset,
        ingestion_id=commit.ingestion_id,
        status="held" if held else "admitted",
        decided_at=at.astimezone(UTC).isoformat(),
        reason=reason,
        check=check,
        rows=commit.rows_clean,
    )
    key = review_key(commit.dataset, commit.ingestion_id)
    try:
        lake.create_json(key, review.to_json())
    except PreconditionFailed:
        return BatchReview.from_json(lake.get_json(key))
    return review


def accept(
    lake: Lake, dataset: str, ingestion_id: str, *, by: str, now: Callable[[], datetime]
) -> BatchReview:
    """Accept a held batch: its rows train the next model.

    Raises
    ------
    LakeError
        No review of that batch (naming the held ones), or the review changed while it was accepted.
    """
    key = review_key(dataset, ingestion_id)
    head = lake.head(key)
    if head is None:
        held = [r.ingestion_id for r in read_reviews(lake, dataset).values() if r.status == "held"]
        hint = f"held batches: {', '.join(held)}" if held else "no batch is held"
        raise LakeError(f"no review of batch {ingestion_id!r} in {dataset!r} ({hint})")
    review = BatchReview.from_json(lake.get_json(key))
    if review.status != "held":
        return review
    accepted = review.accept(now().astimezone(UTC).isoformat(), by)
    try:
        lake.replace_json(key, accepted.to_json(), etag=str(head["etag"]))
    except PreconditionFailed as exc:
        raise LakeError(f"the review of batch {ingestion_id} changed meanwhile; try again") from exc
    return accepted


def notify_held(dataset: str, held: list[dict[str, Any]], topic_arn: str | None, client: Any = None) -> int:
    """Publish one message per newly held batch to the SNS topic, when one is configured.

    Parameters
    ----------
    dataset
        The batches' dataset.
    held
        ``ingestion_id``, ``rows`` and ``reason`` of each batch (the train stage's ``newly_held``).
    topic_arn
        The topic (None or empty: nothing is published).
    client
        An SNS client (default: boto3's).

    Returns
    -------
    int
        Messages published.
    """
    if not topic_arn or not held:
        return 0
    if client is None:
        import boto3

        client = boto3.client("sns")
    for batch in held:
        client.publish(
            TopicArn=topic_arn,
            Subject=f"rentlake: batch {batch['ingestion_id']} held for review"[:100],
            Message=(
                f"Clean batch {batch['ingestion_id']} of {dataset} ({batch['rows']} rows) is held out of "
                f"training: {batch['reason']}\n"
                f"Accept it with: rentlake batches accept {batch['ingestion_id']}"
            ),
        )
    log.info("%d held batch(es) announced on %s", len(held), topic_arn)
    return len(held)
