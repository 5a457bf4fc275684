"""Train stage: clean zone → a registry version ``models/<version>/`` (ONNX, card, metrics, test set).

:func:`run` is what the train function calls. The modelling is the pure library :mod:`rentlake.model`
(:func:`rentlake.model.train.train`), the version layout is :mod:`rentlake.registry`'s; this module
decides whether there is anything to train, reads the clean zone and stores the version.

Which batches train: every committed batch is reviewed once against the earlier training batches
(:mod:`rentlake.stages.review`); a batch whose €/m² depart from them is held out of training until
accepted. The held-out rows are chosen by row hash (:func:`rentlake.model.train.holdout_mask`): the same
rows for every version, so the rows of earlier batches a challenger is judged on were never trained on by
the champion either (the reference holdout of the evaluate stage).

Idempotence: training is skipped when the training batches are exactly those the champion (or the last
version, already judged by the gate) was trained on; a last version trained on them but never evaluated
is handed to the evaluate stage again instead of training a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from rentlake import registry
from rentlake.events import TrainRequest
from rentlake.lake import Lake, keys
from rentlake.model import InsufficientDataError
from rentlake.records import ModelCard
from rentlake.stages.lineage import Lineage, batch_ids, lineage_of, require_batches
from rentlake.stages.review import Reviews, batch_rows, review_batches

Progress = Callable[[str], None]
PLOT_SAMPLE_SIZE = 500  # listings drawn on the tenant page (kept in the card: a few KB)


def _noop(_: str) -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrainedBefore:
    """A version trained on exactly the current clean batches.

    Attributes
    ----------
    version : str
        The version.
    why : str
        How it was found ("the champion", "gate decision: keep", "not evaluated yet").
    evaluated : bool
        Whether the gate already judged it (then there is nothing to do at all).
    """

    version: str
    why: str
    evaluated: bool


def run(
    lake: Lake,
    request: TrainRequest,
    *,
    now: Callable[[], datetime] = _now,
    progress: Progress = _noop,
    **fit_options: Any,
) -> dict[str, Any]:
    """Train a model on the clean zone and store it as a registry version, unless the data is unchanged.

    Parameters
    ----------
    lake
        The lake.
    request
        ``dataset``, ``seed`` (split, folds, subsamples) and ``force`` (train even when the clean data has
        not changed since the champion / the last version).
    now
        Clock (the version id starts with the training time).
    progress
        Progress callback.
    **fit_options
        Passed to :func:`rentlake.model.train.train` (``cv_folds``, ``max_rows_heavy``, ...).

    Returns
    -------
    dict
        Trained: ``{"trained": true, "skipped": false, "version", "model_name", "metrics", "sizes",
        "small_sample", "card_key", "lineage", "keys", "held", "newly_held"}``. No new training data:
        ``{"trained": false, "skipped": true, "version": V, "reason": "no new clean data since version V
        (...)", "held", "newly_held"}``. When the last version was trained on the same data but never
        evaluated, it is returned as trained (``"reused": true``) so the evaluate stage judges it.
        ``held`` lists every batch held for review (``ingestion_id``, ``rows``, ``reason``); ``newly_held``
        the ones this run held.

    Raises
    ------
    InsufficientDataError
        The clean zone is empty or cannot support a model (too few rows, one surface, constant rents).
    """
    reviews = review_batches(lake, request.dataset, now=now)
    lineage = lineage_of(request.dataset, reviews.training)
    require_batches(lineage)
    held = held_summary(reviews)
    if not request.force:
        before = trained_before(lake, lineage)
        if before is not None and before.evaluated:
            reason = f"no new clean data since version {before.version} ({before.why})"
            if held["held"]:
                reason += f"; {len(held['held'])} batch(es) held for review: rentlake batches list"
            return {"trained": False, "skipped": True, "version": before.version, "reason": reason, **held}
        if before is not None:
            card = registry.read_card(lake, before.version)
            reason = f"version {before.version} was trained on this data but {before.why}"
            return {**result(card), "reused": True, "reason": reason, **held}
    return {**_fit_and_store(lake, request, lineage, reviews, now, progress, fit_options), **held}


def held_summary(reviews: Reviews) -> dict[str, list[dict[str, Any]]]:
    """``held`` (every held batch) and ``newly_held`` (held by this run): id, rows and reason of each."""

    def row(r: Any) -> dict[str, Any]:
        return {"ingestion_id": r.ingestion_id, "rows": r.rows, "reason": r.reason}

    return {"held": [row(r) for r in reviews.held], "newly_held": [row(r) for r in reviews.newly_held]}


def trained_before(lake: Lake, lineage: Lineage) -> TrainedBefore | None:
    """A version trained on exactly the lineage's batches, or None.

    The champion is checked first; then the latest version (a challenger the gate may have refused, or
    one whose evaluation never ran).
    """
    current = batch_ids(lineage["batches"])
    pointer = registry.read_pointer(lake)
    if pointer is not None:
        doc = lake.get_json_or_none(pointer.card_key)
        if doc is not None and ModelCard.from_json(doc).batch_ids == current:
            return TrainedBefore(pointer.version, "the champion", evaluated=True)
    versions = registry.list_versions(lake)
    if not versions:
        return None
    latest = versions[-1]
    if registry.read_card(lake, latest).batch_ids != current:
        return None
    evaluation = lake.get_json_or_none(keys.model_file(latest, registry.EVALUATION))
    if evaluation is None:
        return TrainedBefore(latest, "not evaluated yet", evaluated=False)
    decision = (evaluation.get("gate") or {}).get("decision", "?")
    return TrainedBefore(latest, f"gate decision: {decision}", evaluated=True)


def _fit_and_store(
    lake: Lake,
    request: TrainRequest,
    lineage: Lineage,
    reviews: Reviews,
    now: Callable[[], datetime],
    progress: Progress,
    fit_options: dict[str, Any],
) -> dict[str, Any]:
    from rentlake.model.train import train as fit

    progress(f"train {request.dataset}: reading {lineage['rows_clean']:,} clean rows")
    df = training_rows(lake, reviews)
    if df.empty:
        raise InsufficientDataError(
            f"the clean zone of {request.dataset!r} holds no rows: nothing to train on"
        )
    progress(f"train {request.dataset}: fitting candidates on {len(df):,} rows")
    options = {"split": "hash", **fit_options}
    trained = fit(df, seed=request.seed, trained_at=now(), lineage=lineage, **options)
    progress(f"train {request.dataset}: writing version {trained.version}")
    sample = plot_sample(df, request.seed)
    written = registry.save_version(lake, trained, lineage=lineage, plot_sample=sample)
    return {**result(registry.read_card(lake, trained.version)), "keys": written}


def training_rows(lake: Lake, reviews: Reviews) -> pd.DataFrame:
    """The clean rows of the training batches, each tagged with its ``ingestion_id`` (commit order)."""
    frames = [
        reviews.frames[c.ingestion_id] if c.ingestion_id in reviews.frames else batch_rows(lake, c)
        for c in reviews.training
    ]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_sample(df: pd.DataFrame, seed: int, size: int = PLOT_SAMPLE_SIZE) -> list[list[float]]:
    """A seeded sample of clean listings for the tenant page's plot: ``[[surface_m2, rent_eur], ...]``."""
    points = df[["surface_m2", "rent_eur"]].dropna()
    if len(points) > size:
        points = points.sample(size, random_state=seed)
    return points.astype(float).round(1).to_numpy().tolist()


def result(card: ModelCard) -> dict[str, Any]:
    """The train function's answer for a stored version."""
    return {
        "trained": True,
        "skipped": False,
        "version": card.version,
        "model_name": card.model_name,
        "metrics": {k: card.metrics[k] for k in registry.HEADLINE if k in card.metrics},
        "sizes": {k: v for k, v in card.data.items() if isinstance(v, int)},
        "small_sample": card.small_sample,
        "card_key": keys.model_file(card.version, registry.CARD),
        "lineage": {"fingerprint": (card.lineage or {}).get("fingerprint"), "batches": card.batch_ids},
    }
