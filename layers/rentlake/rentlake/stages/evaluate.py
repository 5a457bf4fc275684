"""Evaluate stage: a version against the champion on the same held-out rows → the gate → promotion.

The held-out rows are the version's (chosen by row hash, the same for every version; past a cap, a hash
sample of them stratified by district, as the card says): those of the batches the champion was trained
on form the *reference holdout*, on which the champion never trained either; the gate compares both
models there too, and compares their estimates at the reference surfaces (20, 30, 50, 80 m²). A version
judged on too few held-out rows is a *small sample*: promoted only when there is no champion
(:mod:`rentlake.model.gate`).

:func:`run` is what the evaluate function calls: it judges the version (:func:`judge`), then brings the
champion's legal lookup up to date with the newest reference table, whatever the gate said. The gate is
the pure rule :func:`rentlake.model.gate.decide`; the switch of the champion is
:func:`rentlake.registry.promote` (compare-and-swap).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from rentlake import registry
from rentlake.events import EvaluateRequest
from rentlake.lake import Lake, LakeError, keys
from rentlake.model import InsufficientDataError
from rentlake.model.gate import GateDecision
from rentlake.records import ChampionPointer, ModelCard
from rentlake.reporting import jsonable

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def run(lake: Lake, request: EvaluateRequest, *, now: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Judge the requested version (or say why there is none), then refresh the champion's legal lookup.

    Parameters
    ----------
    lake
        The lake.
    request
        ``version`` (None when training produced nothing: ``skip_reason`` says why), ``tolerance`` and
        ``promote``.
    now
        Clock.

    Returns
    -------
    dict
        :func:`judge`'s answer (or :func:`skipped`'s) plus ``legal_refreshed``: the new legal fields when
        a newer reference table reached the champion, else None.

    Raises
    ------
    rentlake.registry.RegistryError
        Unknown version, or a model file that does not match its digest.
    """
    if request.version is None:
        out = skipped(str(request.skip_reason))
    else:
        out = judge(lake, request.version, tolerance=request.tolerance, promote=request.promote, now=now)
    # Whatever the gate said, the champion answers with the newest reference table (a later year may
    # have been ingested while the listings, and so the model, stayed the same).
    out["legal_refreshed"] = registry.refresh_legal(lake, now=now)
    return out


def skipped(reason: str, version: str | None = None) -> dict[str, Any]:
    """The answer when there is nothing to judge (no version, or already the champion)."""
    return {
        "promoted": False,
        "skipped": True,
        "version": version,
        "reason": reason,
        "gate": {"decision": "skip", "passed": False, "reasons": [reason]},
    }


@dataclass
class _Scores:
    """Held-out metrics of the challenger and of the champion on the same rows."""

    heldout_rows: int
    challenger: dict[str, Any]
    heldout_residuals: dict[str, Any]
    champion: dict[str, Any] | None  # {"version", "metrics"} or {"version", "error"}; None: no champion
    reference: dict[str, Any] | None = None  # the reference holdout: n, challenger and champion metrics
    shifts: list[dict[str, Any]] = field(default_factory=list)
    champion_small_sample: bool = False

    @property
    def champion_metrics(self) -> dict[str, Any] | None:
        return None if self.champion is None else self.champion.get("metrics")


def judge(
    lake: Lake,
    version: str,
    *,
    tolerance: float = 0.05,
    promote: bool = True,
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Evaluate a version on its held-out rows, run the quality gate, and promote it when it passes.

    The challenger's ONNX graph (checked against its sha256) and the current champion's are scored on
    the SAME held-out rows (``models/<version>/test_set.parquet``); the gate sees both MAEs, the
    challenger's coverage and the served model's diagnosis (:func:`gate_diagnostics`).
    ``models/<version>/evaluation.json`` records the decision; only when it passes is the champion
    switched, by compare-and-swap against the champion it was compared with: if another promotion won
    meanwhile, nothing switches and the answer says so (``lost_to``). A challenger whose graph is
    byte-identical to the champion's (unchanged data retrained with ``force``) is kept out: switching
    would change nothing but the pointer. A held-out residual diagnosis (``ln rent ~ ln estimate``) is
    recorded for people; it does not block (a few dozen rows make influence tests erratic).

    Parameters
    ----------
    lake
        The lake.
    version
        A complete registry version.
    tolerance
        Allowed relative MAE degradation versus the champion.
    promote
        Switch the champion when the gate passes (False: evaluate only).
    now
        Clock.

    Returns
    -------
    dict
        ``promoted``, ``skipped``, ``version``, ``gate`` (``decision``, ``passed``, ``reasons``,
        ``small_sample``), ``small_sample`` (the card's field), ``reference_holdout`` (both models on the
        held-out rows of the champion's batches) and ``shifts`` (both estimates at 20, 30, 50, 80 m²),
        ``metrics`` (challenger, held-out), ``champion`` (``version`` and ``metrics`` on the same rows, or
        None), ``evaluation_key`` and, when promoted, ``pointer``; ``lost_to`` when another promotion won.
        When ``version`` is already the champion: ``skipped`` true and nothing written.

    Raises
    ------
    rentlake.registry.RegistryError
        Unknown version, or a model file that does not match its digest.
    """
    card = registry.read_card(lake, version)
    champion = registry.champion(lake)
    if champion is not None and champion.version == version:
        return skipped(f"{version} is already the champion", version)
    onnx_bytes = registry.read_model(lake, version, card.sha256)
    scores = _score(lake, card, onnx_bytes, champion)
    decision = _decide(scores, card, onnx_bytes, champion, tolerance)
    evaluation = _evaluation(version, scores, card, decision, tolerance, promote=promote, at=now())
    evaluation_key = keys.model_file(version, registry.EVALUATION)
    lake.put_json(evaluation_key, evaluation)
    out: dict[str, Any] = {
        "promoted": False,
        "skipped": False,
        "version": version,
        "gate": decision.to_dict(),
        "metrics": jsonable(scores.challenger),
        "champion": jsonable(scores.champion),
        "reference_holdout": jsonable(scores.reference),
        "shifts": jsonable(scores.shifts),
        "small_sample": card.small_sample,
        "evaluation_key": evaluation_key,
    }
    if decision.passed and promote:
        expected = champion.version if champion is not None else None
        try:
            pointer = registry.promote(
                lake,
                version,
                reason="quality gate passed" + (" (small sample)" if decision.small_sample else ""),
                gate=decision.to_dict(),
                expected=expected,
                now=now,
            )
        except registry.ChampionMoved as lost:
            log.warning("%s passed the gate but was not promoted: %s", version, lost)
            lake.put_json(evaluation_key, {**evaluation, "will_promote": False, "promotion_lost": str(lost)})
            return {**out, "lost_to": lost.actual, "reason": str(lost)}
        out.update({"pointer": pointer.to_json(), "promoted": True})
    return out


def _score(lake: Lake, card: ModelCard, onnx_bytes: bytes, champion: ChampionPointer | None) -> _Scores:
    """Score the challenger and the champion (when it can be read) on the challenger's held-out rows."""
    from rentlake.model.evaluate import metrics, score_onnx

    test: pd.DataFrame = registry.read_test_set(lake, card.version)
    y = test["rent_eur"].to_numpy(dtype=float)
    pred = score_onnx(onnx_bytes, test)
    scores = _Scores(
        heldout_rows=int(len(test)),
        challenger=metrics(y, pred["rent_eur"], pred["low"], pred["high"]),
        heldout_residuals=_heldout_diagnosis(y, pred["rent_eur"]),
        champion=None,
    )
    if champion is None:
        return scores
    scores.champion = {"version": champion.version}
    try:
        champ_bytes = registry.read_model(lake, champion.version, champion.sha256)
        champ_card = registry.read_card(lake, champion.version)
    except (LakeError, registry.RegistryError) as exc:
        # A champion that cannot be read cannot be compared; the challenger is judged on its own
        # and, if it passes, replaces the broken one.
        scores.champion["error"] = str(exc)
        log.warning("champion %s cannot be scored: %s", champion.version, exc)
        return scores
    cp = score_onnx(champ_bytes, test)
    scores.champion["metrics"] = metrics(y, cp["rent_eur"], cp["low"], cp["high"])
    scores.reference = _reference(test, y, pred, cp, champ_card)
    scores.shifts = estimate_shifts(onnx_bytes, champ_bytes, card)
    scores.champion_small_sample = champ_card.small_sample is not None
    return scores


def _reference(
    test: pd.DataFrame,
    y: np.ndarray,
    pred: dict[str, np.ndarray],
    champ: dict[str, np.ndarray],
    champion_card: ModelCard,
) -> dict[str, Any] | None:
    """Both models on the reference holdout: the held-out rows of the batches the champion trained on."""
    from rentlake.model.evaluate import metrics

    if "ingestion_id" not in test.columns or not champion_card.batch_ids:
        return None
    mine = test["ingestion_id"].astype(str).isin(champion_card.batch_ids).to_numpy()
    out: dict[str, Any] = {"n": int(mine.sum()), "batches": champion_card.batch_ids}
    if mine.any():
        out["challenger"] = metrics(y[mine], pred["rent_eur"][mine], pred["low"][mine], pred["high"][mine])
        out["champion"] = metrics(y[mine], champ["rent_eur"][mine], champ["low"][mine], champ["high"][mine])
    return out


def estimate_shifts(challenger: bytes, champion: bytes, card: ModelCard) -> list[dict[str, Any]]:
    """Both models' estimates at the reference surfaces (the challenger's reference district)."""
    from rentlake.model.evaluate import score_onnx
    from rentlake.model.reference import REFERENCE_SURFACES

    grid = pd.DataFrame(
        {
            "surface_m2": list(REFERENCE_SURFACES),
            "district": [card.reference_district] * len(REFERENCE_SURFACES),
        }
    )
    new, old = score_onnx(challenger, grid)["rent_eur"], score_onnx(champion, grid)["rent_eur"]
    return [
        {
            "surface_m2": s,
            "champion": float(b),
            "challenger": float(a),
            "change": float(a / b - 1.0) if b > 0 else float("inf"),
        }
        for s, a, b in zip(REFERENCE_SURFACES, new, old, strict=True)
    ]


def _decide(
    scores: _Scores, card: ModelCard, onnx_bytes: bytes, champion: ChampionPointer | None, tolerance: float
) -> GateDecision:
    """The gate's decision, kept from passing when the challenger's graph is the champion's own."""
    from rentlake.model import gate

    cells = card.diagnostics.get("conditional_coverage") or {}
    compare = gate.Comparison(
        cells=[*cells.get("terciles", []), *cells.get("groups", [])],
        reference=scores.reference,
        shifts=scores.shifts,
        champion_small_sample=scores.champion_small_sample,
        version=card.version,
    )
    decision = gate.decide(
        scores.challenger,
        scores.champion_metrics,
        gate_diagnostics(card),
        tolerance=tolerance,
        compare=compare,
    )
    if champion is not None and hashlib.sha256(onnx_bytes).hexdigest() == champion.sha256.lower():
        # Retraining unchanged data (--force) gives the same graph: promoting it would only churn the pointer.
        decision.passed = False
        decision.reasons.append(
            f"the challenger's model is identical to champion {champion.version}'s (same sha256): "
            "nothing to switch"
        )
    return decision


def _evaluation(
    version: str,
    scores: _Scores,
    card: ModelCard,
    decision: GateDecision,
    tolerance: float,
    *,
    promote: bool,
    at: datetime,
) -> dict[str, Any]:
    """The document ``models/<version>/evaluation.json``."""
    return jsonable(
        {
            "version": version,
            "evaluated_at": at.astimezone(UTC).isoformat(),
            "heldout_rows": scores.heldout_rows,
            # Past its cap, the held-out set is a hash sample of the lake's held-out rows (the card's).
            "heldout_sampling": (card.data.get("sampling") or {}).get("heldout"),
            "metrics": scores.challenger,
            "champion": scores.champion,
            "reference_holdout": scores.reference,
            "shifts": scores.shifts,
            "small_sample": decision.small_sample,
            "tolerance": tolerance,
            "diagnostics": {"training": card.diagnostics, "heldout_residuals": scores.heldout_residuals},
            "gate": decision.to_dict(),
            "will_promote": bool(decision.passed and promote),
        }
    )


def gate_diagnostics(card: ModelCard) -> dict[str, Any]:
    """The diagnoses the gate judges: the served model's own fit (``ln rent ~ ln surface`` for a log-scale
    model, ``rent ~ surface`` for a linear-scale one).

    The card also holds the course line ``rent ~ surface`` (``reference``); it is recorded in
    ``evaluation.json`` but not gated: it is not the served model, and on the course data its legitimate
    large flats (415 m²) make it flag ``influential_point`` in euros while the log-scale fit that is served
    is not decided by them. Gating it would refuse every model of the course data.
    """
    served = card.diagnostics.get("served_scale")
    return {"served_scale": served} if served else {}


def _heldout_diagnosis(y: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
    from rentlake.model.diagnostics import diagnose

    try:
        return diagnose(np.log(estimate), np.log(y)).to_dict()
    except InsufficientDataError as exc:
        return {"verdict": "not_run", "reason": str(exc)}
