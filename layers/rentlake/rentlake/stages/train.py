"""Train stage: clean zone → a registry version ``models/<version>/`` (ONNX, card, metrics, test set).

:func:`run` is what the train function calls. The modelling is the pure library :mod:`rentlake.model`
(:func:`rentlake.model.train.train`), the version layout is :mod:`rentlake.registry`'s; this module
decides whether there is anything to train, reads the clean zone and stores the version.

Which batches train: every committed batch is reviewed once against the earlier training batches
(:mod:`rentlake.stages.review`); a batch whose €/m² depart from them is held out of training until
accepted. The held-out rows are chosen by row hash (:func:`rentlake.model.train.holdout_mask`): the same
rows for every version, so the rows of earlier batches a challenger is judged on were never trained on by
the champion either (the reference holdout of the evaluate stage).

Which rows: all of them while the lake is small; past :data:`DEFAULT_MAX_ROWS` training rows (or
:data:`DEFAULT_MAX_HELDOUT_ROWS` held-out rows), a hash sample stratified by district
(:mod:`rentlake.model.sample`, :func:`training_sample`), read file by file, so that memory follows the
sample and not the lake. The card's ``data.sampling`` says how many rows the lake held and how many were
kept, and its limits say so in words. The held-out sample is what the evaluate stage scores both models on.

Idempotence: training is skipped when the training batches are exactly those the champion (or the last
version, already judged by the gate) was trained on; a last version trained on them but never evaluated
is handed to the evaluate stage again instead of training a copy.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from rentlake import registry
from rentlake.events import TrainRequest
from rentlake.lake import Lake, keys
from rentlake.model import InsufficientDataError
from rentlake.model.sample import SampleRule
from rentlake.records import CleanCommit, ModelCard
from rentlake.stages.clean_rows import TRAIN_COLUMNS, commit_frames, group_labels
from rentlake.stages.lineage import Lineage, batch_ids, lineage_of, require_batches
from rentlake.stages.review import Reviews, review_batches

Progress = Callable[[str], None]
#: Trainings whose version id another writer claimed first, before giving up.
VERSION_ATTEMPTS = 3
PLOT_SAMPLE_SIZE = 500  # listings drawn on the tenant page (kept in the card: a few KB)
#: Environment variable: the training sample's cap (rows), default :data:`DEFAULT_MAX_ROWS`.
MAX_ROWS_ENV = "RENTLAKE_TRAIN_MAX_ROWS"
#: Environment variable: the held-out sample's cap (rows), default :data:`DEFAULT_MAX_HELDOUT_ROWS`.
MAX_HELDOUT_ROWS_ENV = "RENTLAKE_HELDOUT_MAX_ROWS"
#: Training rows at most (expected): see bench/RESULTS.md, "Training at scale", for the memory it takes.
DEFAULT_MAX_ROWS = 2_000_000
#: Held-out rows at most: the served and candidate models, the champion and the challenger are scored on
#: them; half a million rows put a coverage within ±0.001 and a district's MAE within a euro or two.
DEFAULT_MAX_HELDOUT_ROWS = 500_000
#: Every district keeps at least this many training rows (or all of its own).
GROUP_FLOOR = 2_000
#: Every district keeps at least this many held-out rows (or all of its own).
HELDOUT_GROUP_FLOOR = 500
#: The held-out share, as :func:`rentlake.model.train.train` splits by default.
DEFAULT_TEST_SIZE = 0.2


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
    max_rows: int | None = None,
    max_heldout_rows: int | None = None,
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
    max_rows, max_heldout_rows
        Caps of the training and held-out samples (None: :data:`MAX_ROWS_ENV` /
        :data:`MAX_HELDOUT_ROWS_ENV`, else :data:`DEFAULT_MAX_ROWS` / :data:`DEFAULT_MAX_HELDOUT_ROWS`);
        a lake within them trains on every row.
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
    rules = sample_rules(max_rows, max_heldout_rows)
    return {**_fit_and_store(lake, request, lineage, reviews, rules, now, progress, fit_options), **held}


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
    rules: tuple[SampleRule, SampleRule],
    now: Callable[[], datetime],
    progress: Progress,
    fit_options: dict[str, Any],
) -> dict[str, Any]:
    from rentlake.model.train import train as fit

    test_size = float(fit_options.get("test_size", DEFAULT_TEST_SIZE))
    progress(f"train {request.dataset}: sampling {lineage['rows_clean']:,} clean rows")
    df, sampling = training_sample(lake, reviews.training, rules, test_size)
    if df.empty:
        raise InsufficientDataError(
            f"the clean zone of {request.dataset!r} holds no rows: nothing to train on"
        )
    options = {"split": "hash", **fit_options}
    sample = plot_sample(df, request.seed)
    trained_at = now()
    for attempt in range(1, VERSION_ATTEMPTS + 1):
        progress(f"train {request.dataset}: fitting candidates on {len(df):,} rows")
        trained = fit(
            df, seed=request.seed, trained_at=trained_at, lineage=lineage, sampling=sampling, **options
        )
        progress(f"train {request.dataset}: writing version {trained.version}")
        try:
            written = registry.save_version(lake, trained, lineage=lineage, plot_sample=sample)
        except registry.VersionTaken:
            if attempt == VERSION_ATTEMPTS:
                raise
            # Another training of the same data in the same second owns this id (it is the training time
            # and the data's hash): a later second gives this one its own.
            trained_at = max(now(), trained_at + timedelta(seconds=1))
            continue
        return {**result(registry.read_card(lake, trained.version)), "keys": written}
    raise AssertionError("unreachable: the last attempt returns or raises")


def sample_rules(
    max_rows: int | None = None, max_heldout_rows: int | None = None
) -> tuple[SampleRule, SampleRule]:
    """The caps of the training sample and of the held-out sample: the arguments, else the environment
    (:data:`MAX_ROWS_ENV`, :data:`MAX_HELDOUT_ROWS_ENV`), else the defaults."""

    def cap(given: int | None, env: str, default: int) -> int:
        if given is not None:
            return int(given)
        text = os.environ.get(env, "").strip()
        return int(text) if text else default

    return (
        SampleRule(cap(max_rows, MAX_ROWS_ENV, DEFAULT_MAX_ROWS), GROUP_FLOOR),
        SampleRule(
            cap(max_heldout_rows, MAX_HELDOUT_ROWS_ENV, DEFAULT_MAX_HELDOUT_ROWS), HELDOUT_GROUP_FLOOR
        ),
    )


def training_sample(
    lake: Lake, commits: list[CleanCommit], rules: tuple[SampleRule, SampleRule], test_size: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows a model is trained and judged on: a hash sample of the training batches, in two passes.

    The first pass reads each file's district and row hash and counts, per district, the rows held out
    (:func:`rentlake.model.train.holdout_mask`, the same rows for every version) and the others. The rates
    follow (:func:`rentlake.model.sample.group_rates`, one cap for each part). The second pass reads each
    file's training columns (:data:`~rentlake.stages.clean_rows.TRAIN_COLUMNS`) and keeps the rows whose
    hash falls below their district's rate; the draw's noise beyond each cap is cut off
    (:func:`rentlake.model.sample.trim_mask`). Peak memory is one file plus the rows kept.

    Parameters
    ----------
    lake
        The lake.
    commits
        The training batches, in commit order.
    rules
        Caps and floors of the training rows and of the held-out rows.
    test_size
        Held-out share (as :func:`rentlake.model.train.train` splits).

    Returns
    -------
    (DataFrame, dict)
        The rows kept (tagged with ``ingestion_id``; ``row_hash`` is each row's identity), and the card's
        ``sampling``: ``rule`` (in words), ``train`` and ``heldout`` (:func:`rentlake.model.sample.describe`)
        and ``all_rows`` (nothing was left out).
    """
    from rentlake.model.sample import describe, group_rates, row_identity, row_rates, trim_mask, uniform_of
    from rentlake.model.train import holdout_mask

    counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
    for commit in commits:
        for frame in commit_frames(lake, commit, ("district", "row_hash")):
            held = holdout_mask(frame, test_size)
            groups = group_labels(frame)
            counts[0].update(pd.Series(groups[~held]).value_counts().to_dict())
            counts[1].update(pd.Series(groups[held]).value_counts().to_dict())
    rates = (group_rates(counts[0], rules[0]), group_rates(counts[1], rules[1]))
    kept: list[pd.DataFrame] = []
    scaled: list[np.ndarray] = []
    for commit in commits:
        for frame in commit_frames(lake, commit, TRAIN_COLUMNS):
            identity = row_identity(frame)
            held = holdout_mask(frame, test_size)
            groups, u = group_labels(frame), uniform_of(identity)
            rate = np.where(held, row_rates(groups, rates[1]), row_rates(groups, rates[0]))
            keep = u < rate
            if not keep.any():
                continue
            rows = frame.loc[keep, [c for c in TRAIN_COLUMNS if c in frame.columns]].reset_index(drop=True)
            # The identity the split and the sample were decided on, for every row (also without row_hash).
            rows["row_hash"] = identity[keep].view(np.int64)
            if "district" in rows.columns:
                rows["district"] = rows["district"].astype("string")
            rows["ingestion_id"] = commit.ingestion_id
            kept.append(rows)
            scaled.append(u[keep] / rate[keep])
    df = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    del kept
    held = holdout_mask(df, test_size) if len(df) else np.zeros(0, dtype=bool)
    if len(df):
        # The draw's binomial noise is cut off at each cap, so that the caps hold row for row.
        u_over_rate = np.concatenate(scaled)
        keep = np.ones(len(df), dtype=bool)
        for part, rule in ((~held, rules[0]), (held, rules[1])):
            keep[part] = trim_mask(u_over_rate[part], rule.max_rows)
        if not keep.all():
            df, held = df[keep].reset_index(drop=True), held[keep]
    parts = (
        describe(counts[0], rates[0], int((~held).sum()), rules[0]),
        describe(counts[1], rates[1], int(held.sum()), rules[1]),
    )
    sampling = {
        "rule": "hash sample: each row's u in [0, 1) from its row_hash (salted); a district's rows with u "
        "below its rate are kept; rates stratified by district (every district keeps at least min(its rows, "
        "floor), the others one base rate) so that the expected rows stay within max_rows; held-out rows "
        "(by row hash, as always) sampled the same way with their own cap",
        "train": parts[0],
        "heldout": parts[1],
        "all_rows": parts[0]["all_rows"] and parts[1]["all_rows"],
    }
    return df, sampling


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
        "sampling": card.data.get("sampling"),
        "card_key": keys.model_file(card.version, registry.CARD),
        "lineage": {"fingerprint": (card.lineage or {}).get("fingerprint"), "batches": card.batch_ids},
    }
