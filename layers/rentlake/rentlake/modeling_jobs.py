"""The explore, train and evaluate/promote stages over the lake: what their handlers call.

Like :mod:`rentlake.jobs`, each function takes an injected :class:`~rentlake.lake.Lake`; the modelling
itself is the pure library :mod:`rentlake.model` (and :mod:`rentlake.explore`), the registry layout and
the champion pointer live in :mod:`rentlake.registry`.

Idempotence: a second pipeline run with no new clean data changes nothing. The exploration report of a
given set of committed batches has a fixed run id (``<dataset>-<fingerprint>``) and is reused; training
is skipped when the committed batches are exactly those the champion (or the last version, already
judged by the gate) was trained on; evaluating then has nothing to do.

Too little or degenerate data raises :class:`~rentlake.model.InsufficientDataError` with a message
saying what is wrong; the handlers turn it into a structured refusal (see ``functions/*/app.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from rentlake import contracts, registry
from rentlake.lake import Lake, LakeError, keys
from rentlake.model import InsufficientDataError

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
DATASET = "listings"
# The legal reference rents (issue 8), drawn beside the listings in the exploration report.
REFERENCE_DATASET = "reference_rents"
PLOT_SAMPLE_SIZE = 500  # listings drawn on the tenant page (kept in the card: a few KB)


def _noop(_: str) -> None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


# -------------------------------------------------------------------------------------------- lineage
def clean_lineage(lake: Lake, dataset: str = DATASET) -> dict[str, Any]:
    """What the clean zone of a dataset is made of: its committed batches and where they came from.

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
        ``cleaned_at``, ``rows_clean`` per batch, commit order), ``rows_clean`` and ``fingerprint`` (sha256
        of the sorted ingestion ids: equal fingerprints mean the same clean data).
    """
    batches = [
        {
            "ingestion_id": rec["ingestion_id"],
            "source_key": rec.get("source_key"),
            "source_sha256": rec.get("source_sha256"),
            "ingest_date": rec.get("ingest_date"),
            "cleaned_at": rec.get("cleaned_at"),
            "rows_clean": (rec.get("rows") or {}).get("clean"),
        }
        for rec in lake.committed_batches(dataset)
    ]
    ids = sorted(b["ingestion_id"] for b in batches)
    digest = hashlib.sha256(("\n".join([dataset, *ids])).encode()).hexdigest()
    return {
        "dataset": dataset,
        "batches": batches,
        "rows_clean": sum(int(b["rows_clean"] or 0) for b in batches),
        "clean_zone": keys.table_prefix("clean", dataset),
        "fingerprint": digest,
    }


def _require_batches(lineage: dict[str, Any]) -> None:
    if not lineage["batches"]:
        raise InsufficientDataError(
            f"the clean zone of {lineage['dataset']!r} is empty (no committed batch): ingest and clean "
            "data first"
        )


# -------------------------------------------------------------------------------------------- explore
def explore(lake: Lake, *, dataset: str = DATASET, run_id: str | None = None,
            progress: Progress = _noop) -> dict[str, Any]:
    """Write the exploration report of the clean zone under ``reports/<run>/``.

    Files: the PNG figures, ``summary.json`` (statistics, hypotheses, lineage, file list) and
    ``report.html`` (one self-contained page), written last.

    Parameters
    ----------
    lake
        The lake.
    dataset
        Dataset to explore.
    run_id
        Report run id. By default ``<dataset>-<fingerprint[:12]>`` of the committed batches, and an
        existing complete report of the same data is returned as is (``reused``: true).
    progress
        Progress callback.

    Returns
    -------
    dict
        ``explored`` (true), ``run_id``, ``reused``, ``rows``, ``keys`` (``name -> key``), ``report_key``
        and ``hypotheses`` (``id -> supported``).

    Raises
    ------
    InsufficientDataError
        Empty clean zone, fewer than 3 usable rows or a single distinct surface.
    """
    from rentlake.explore import build_report
    from rentlake.model._render import jsonable

    lineage = clean_lineage(lake, dataset)
    _require_batches(lineage)
    # The second source, crossed with the listings in the report when the lake has it.
    ref_lineage = clean_lineage(lake, REFERENCE_DATASET) if dataset == DATASET else None
    has_reference = bool(ref_lineage and ref_lineage.get("batches"))
    fingerprint = lineage["fingerprint"]
    if has_reference:
        fingerprint = hashlib.sha256((fingerprint + ref_lineage["fingerprint"]).encode()).hexdigest()
    rid = run_id or f"{dataset}-{fingerprint[:12]}"
    html_key = keys.report_file(rid, "report.html")
    summary_key = keys.report_file(rid, "summary.json")
    if run_id is None and lake.exists(html_key):
        summary = lake.get_json(summary_key)
        return _explore_result(rid, summary, reused=True)
    progress(f"explore {dataset}: reading {lineage['rows_clean']:,} clean rows")
    # The contract's columns only: lineage columns (source_key, row_hash, ...) would show in the report's
    # missing values and constant columns, and make every row distinct for its duplicate count.
    df = lake.read_clean(dataset, columns=contracts.get(dataset).column_names)
    if df.empty:
        raise InsufficientDataError(f"the clean zone of {dataset!r} holds no rows: nothing to explore")
    reference = lake.read_clean(REFERENCE_DATASET) if has_reference else None
    report = build_report(df, run_id=rid, reference=reference)
    written: dict[str, str] = {}
    for name, data in report.files.items():
        if name == "report.html":
            continue
        written[name] = keys.report_file(rid, name)
        lake.put_bytes(written[name], data, content_type="image/png" if name.endswith(".png") else
                       "application/octet-stream")
    written["summary.json"] = summary_key
    written["report.html"] = html_key
    summary = jsonable({**report.summary, "hypotheses": report.hypotheses, "lineage": lineage,
                        "files": written})
    lake.put_json(summary_key, summary)
    # report.html last: a run whose page exists is complete
    lake.put_bytes(html_key, report.files["report.html"], content_type="text/html; charset=utf-8")
    return _explore_result(rid, summary, reused=False)


def _explore_result(run_id: str, summary: dict[str, Any], *, reused: bool) -> dict[str, Any]:
    files = dict(summary.get("files") or {})
    return {
        "explored": True,
        "run_id": run_id,
        "reused": reused,
        "rows": summary.get("rows_usable"),
        "keys": files,
        "report_key": files.get("report.html"),
        "hypotheses": {str(h.get("id")): bool(h.get("supported")) for h in summary.get("hypotheses", [])
                       if isinstance(h, dict)},
    }


# ---------------------------------------------------------------------------------------------- train
def _batch_ids(lineage: dict[str, Any] | None) -> list[str]:
    return sorted(b["ingestion_id"] for b in (lineage or {}).get("batches", []))


def _same_data(lake: Lake, lineage: dict[str, Any]) -> tuple[str, str, bool] | None:
    """A version trained on exactly these batches: (version, why, already evaluated), or None.

    The champion is checked first; then the latest version (a challenger the gate may have refused, or
    one whose evaluation never ran).
    """
    current = _batch_ids(lineage)
    pointer = registry.read_pointer(lake)
    if pointer is not None:
        card = lake.get_json_or_none(str(pointer.get("card_key") or keys.model_file(pointer["version"],
                                                                                      registry.CARD)))
        if card is not None and _batch_ids(card.get("lineage")) == current:
            return str(pointer["version"]), "the champion", True
    versions = registry.list_versions(lake)
    if versions:
        latest = versions[-1]
        card = registry.read_card(lake, latest)
        if _batch_ids(card.get("lineage")) == current:
            evaluation = lake.get_json_or_none(keys.model_file(latest, registry.EVALUATION))
            if evaluation is None:
                return latest, "not evaluated yet", False
            decision = (evaluation.get("gate") or {}).get("decision", "?")
            return latest, f"gate decision: {decision}", True
    return None


def train(lake: Lake, *, dataset: str = DATASET, seed: int = 42, force: bool = False,
          now: Callable[[], datetime] = _now, progress: Progress = _noop,
          **train_kwargs: Any) -> dict[str, Any]:
    """Train a model on the clean zone and store it as a registry version ``models/<version>/``.

    Parameters
    ----------
    lake
        The lake.
    dataset
        Dataset to train on.
    seed
        Seed of the split, folds and subsamples.
    force
        Train even when the clean data has not changed since the champion / the last version.
    now
        Clock (the version id starts with the training time).
    progress
        Progress callback.
    **train_kwargs
        Passed to :func:`rentlake.model.train.train` (``cv_folds``, ``max_rows_heavy``, ...).

    Returns
    -------
    dict
        Trained: ``{"trained": true, "skipped": false, "version", "model_name", "metrics", "sizes",
        "keys", "lineage"}``. No new clean data: ``{"trained": false, "skipped": true, "version": V,
        "reason": "no new clean data since version V (...)"}``. When the last version was trained on the
        same data but never evaluated, it is returned as trained (``"reused": true``) so the evaluate stage
        judges it.

    Raises
    ------
    InsufficientDataError
        The clean zone is empty or cannot support a model (too few rows, one surface, constant rents).
    """
    from rentlake.model.train import train as fit

    lineage = clean_lineage(lake, dataset)
    _require_batches(lineage)
    if not force:
        same = _same_data(lake, lineage)
        if same is not None:
            version, why, evaluated = same
            if evaluated:
                return {"trained": False, "skipped": True, "version": version,
                        "reason": f"no new clean data since version {version} ({why})"}
            card = registry.read_card(lake, version)
            return {**_train_result(version, card), "reused": True,
                    "reason": f"version {version} was trained on this data but {why}"}
    progress(f"train {dataset}: reading {lineage['rows_clean']:,} clean rows")
    df = lake.read_clean(dataset)
    if df.empty:
        raise InsufficientDataError(f"the clean zone of {dataset!r} holds no rows: nothing to train on")
    progress(f"train {dataset}: fitting candidates on {len(df):,} rows")
    result = fit(df, seed=seed, trained_at=now(), lineage=lineage, **train_kwargs)
    progress(f"train {dataset}: writing version {result.version}")
    written = registry.save_version(lake, result, lineage=lineage, plot_sample=_plot_sample(df, seed))
    card = lake.get_json(written[registry.CARD])
    return {**_train_result(result.version, card), "keys": written}


def _plot_sample(df: Any, seed: int, size: int = PLOT_SAMPLE_SIZE) -> list[list[float]]:
    """A seeded sample of clean listings for the tenant page's plot: ``[[surface_m2, rent_eur], ...]``."""
    points = df[["surface_m2", "rent_eur"]].dropna()
    if len(points) > size:
        points = points.sample(size, random_state=seed)
    return points.astype(float).round(1).to_numpy().tolist()


def _train_result(version: str, card: dict[str, Any]) -> dict[str, Any]:
    metrics = card.get("metrics") or {}
    return {
        "trained": True,
        "skipped": False,
        "version": version,
        "model_name": card.get("model_name"),
        "metrics": {k: metrics[k] for k in registry.HEADLINE if k in metrics},
        "sizes": {k: v for k, v in (card.get("data") or {}).items() if isinstance(v, int)},
        "card_key": keys.model_file(version, registry.CARD),
        "lineage": {"fingerprint": (card.get("lineage") or {}).get("fingerprint"),
                    "batches": _batch_ids(card.get("lineage"))},
    }


# ------------------------------------------------------------------------------------ evaluate/promote
def skipped_evaluation(reason: str, version: str | None = None) -> dict[str, Any]:
    """The evaluate stage's answer when there is nothing to judge (no version, or already the champion)."""
    return {"promoted": False, "skipped": True, "version": version, "reason": reason,
            "gate": {"decision": "skip", "passed": False, "reasons": [reason]}}


def evaluate(lake: Lake, version: str, *, tolerance: float = 0.05, promote: bool = True,
             now: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Evaluate a version on its held-out rows, run the quality gate, and promote it when it passes.

    The challenger's ONNX graph (checked against its sha256) and the current champion's are scored with
    ``score_onnx`` on the SAME held-out rows (``models/<version>/test_set.parquet``); the gate
    (:func:`rentlake.model.gate.decide`) sees both MAEs, the challenger's coverage and the training
    diagnostics. ``models/<version>/evaluation.json`` records the decision; only when it passes is the
    champion switched (:func:`rentlake.registry.promote`: history, then one PUT of the pointer, last).
    The gate judges the served model's diagnosis (see :func:`gate_diagnostics`). A challenger whose graph
    is byte-identical to the champion's (unchanged data retrained with ``force``) is kept out: switching
    would change nothing but the pointer.

    A held-out residual diagnosis (``ln rent ~ ln estimate``) is recorded for people; it does not block,
    because a held-out set of a few dozen rows makes influence tests erratic.

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
        ``promoted``, ``version``, ``gate`` (``decision``, ``passed``, ``reasons``), ``metrics`` (challenger,
        held-out), ``champion`` (``version`` and ``metrics`` on the same rows, or None), ``evaluation_key``
        and, when promoted, ``pointer``. When ``version`` is already the champion: ``skipped`` true and
        nothing written.

    Raises
    ------
    rentlake.registry.RegistryError
        Unknown version, or a model file that does not match its digest.
    """
    from rentlake.model import gate
    from rentlake.model._render import jsonable
    from rentlake.model.evaluate import metrics as heldout_metrics
    from rentlake.model.evaluate import score_onnx

    card = registry.read_card(lake, version)
    pointer = registry.read_pointer(lake)
    if pointer is not None and pointer.get("version") == version:
        return skipped_evaluation(f"{version} is already the champion", version)
    onnx_bytes = registry.read_model(lake, version, card.get("sha256"))
    test = registry.read_test_set(lake, version)
    y = test["rent_eur"].to_numpy(dtype=float)
    pred = score_onnx(onnx_bytes, test)
    challenger = heldout_metrics(y, pred["rent_eur"], pred["low"], pred["high"])

    champion: dict[str, Any] | None = None
    champion_metrics: dict[str, Any] | None = None
    if pointer is not None:
        champion = {"version": pointer.get("version")}
        try:
            champ_bytes = registry.read_model(lake, str(pointer["version"]), pointer.get("sha256"))
        except (LakeError, registry.RegistryError) as exc:
            # A champion that cannot be read cannot be compared; the challenger is judged on its own
            # and, if it passes, replaces the broken one.
            champion["error"] = str(exc)
            log.warning("champion %s cannot be scored: %s", pointer.get("version"), exc)
        else:
            cp = score_onnx(champ_bytes, test)
            champion_metrics = heldout_metrics(y, cp["rent_eur"], cp["low"], cp["high"])
            champion["metrics"] = champion_metrics

    decision = gate.decide(challenger, champion_metrics, gate_diagnostics(card), tolerance=tolerance)
    same_graph = hashlib.sha256(onnx_bytes).hexdigest() == str((pointer or {}).get("sha256", "")).lower()
    if pointer is not None and same_graph:
        # Retraining unchanged data (--force) gives the same graph: promoting it would only churn the pointer.
        decision.passed = False
        decision.reasons.append(f"the challenger's model is identical to champion {pointer.get('version')}'s "
                                "(same sha256): nothing to switch")
    evaluation = {
        "version": version,
        "evaluated_at": now().astimezone(UTC).isoformat(),
        "heldout_rows": int(len(test)),
        "metrics": challenger,
        "champion": champion,
        "tolerance": tolerance,
        "diagnostics": {
            "training": card.get("diagnostics"),
            "heldout_residuals": _heldout_diagnosis(y, pred["rent_eur"]),
        },
        "gate": decision.to_dict(),
        "will_promote": bool(decision.passed and promote),
    }
    evaluation_key = keys.model_file(version, registry.EVALUATION)
    lake.put_json(evaluation_key, jsonable(evaluation))
    out: dict[str, Any] = {
        "promoted": False,
        "skipped": False,
        "version": version,
        "gate": decision.to_dict(),
        "metrics": jsonable(challenger),
        "champion": jsonable(champion),
        "evaluation_key": evaluation_key,
    }
    if decision.passed and promote:
        out["pointer"] = registry.promote(lake, version, reason="quality gate passed",
                                          gate=decision.to_dict(), now=now)
        out["promoted"] = True
    return out


def gate_diagnostics(card: dict[str, Any]) -> dict[str, Any]:
    """The diagnoses the gate judges: the served model's own fit, ``ln rent ~ ln surface``.

    The card also holds the course line ``rent ~ surface`` (``reference``); it is recorded in
    ``evaluation.json`` but not gated: it is not the served model, and on the course data its legitimate
    large flats (415 m²) make it flag ``influential_point`` in euros while the log-scale fit that is served
    is not decided by them. Gating it would refuse every model of the course data.
    """
    diagnostics = card.get("diagnostics") or {}
    served = diagnostics.get("served_scale")
    return {"served_scale": served} if served else {}


def _heldout_diagnosis(y: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
    from rentlake.model.diagnostics import diagnose

    try:
        return diagnose(np.log(estimate), np.log(y)).to_dict()
    except InsufficientDataError as exc:
        return {"verdict": "not_run", "reason": str(exc)}
