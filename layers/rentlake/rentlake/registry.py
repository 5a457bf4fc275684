"""The model registry in the lake: versions, the champion pointer, promotion and rollback.

Layout (keys from :mod:`rentlake.lake`)::

    models/<version>/model.onnx         the served graph
    models/<version>/model.onnx.sha256  its digest, ``sha256sum`` format
    models/<version>/metrics.json       held-out metrics of training
    models/<version>/test_set.parquet   the held-out rows (the gate scores the champion on them)
    models/<version>/*.png, card.html   plots and the human model card
    models/<version>/card.json          the machine card; written LAST: a version without it is incomplete
    models/<version>/evaluation.json    the gate's decision (written by the evaluate stage)
    models/<version>/legal.json         reference rents, when the reference module attaches them
    models/champion_history.json        append-only list of champion switches
    models/champion.json                the serving pointer

Switching the champion is one PUT of the whole pointer, made after every file it names exists and after
the history entry is written: a reader sees the old pointer or the new one, never a mix. The history is
replayed as a stack (a promotion pushes, a rollback pops), so ``rollback`` undoes the last promotion.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rentlake.lake import Lake, keys

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from rentlake.model.train import TrainResult

log = logging.getLogger(__name__)

MODEL = "model.onnx"
SHA_FILE = "model.onnx.sha256"
CARD = "card.json"
CARD_HTML = "card.html"
METRICS = "metrics.json"
TEST_SET = "test_set.parquet"
EVALUATION = "evaluation.json"
#: Held-out metrics copied into listings and history entries (the full set is in metrics.json).
HEADLINE = ("n", "mae", "rmse", "r2", "mape", "coverage", "mean_width")
#: Module and function of the reference-rents colleague, called at every promotion when present.
REFERENCE_MODULE = "rentlake.legal.compile"


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, broken artifacts, nothing to roll back)."""


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------- versions
def save_version(lake: Lake, result: TrainResult, *, lineage: dict[str, Any] | None = None,
                 plot_sample: list[list[float]] | None = None) -> dict[str, str]:
    """Write a trained model as a registry version; ``card.json`` is written last (the commit).

    Parameters
    ----------
    lake
        The lake.
    result
        The output of :func:`rentlake.model.train.train`.
    lineage
        Where the training data came from (also in ``result.card["data"]["lineage"]`` when passed to
        ``train``); copied to the card's top-level ``lineage``.
    plot_sample
        Up to a few hundred ``[surface_m2, rent_eur]`` listings, drawn as points on the tenant page's
        market plot (the card is the only training data the prediction side sees).

    Returns
    -------
    dict
        ``name -> key`` of every file written.
    """
    v = result.version
    written: dict[str, str] = {}

    def put(name: str, data: bytes, content_type: str) -> None:
        written[name] = keys.model_file(v, name)
        lake.put_bytes(written[name], data, content_type=content_type)

    put(MODEL, result.onnx, "application/octet-stream")
    put(SHA_FILE, f"{result.sha256}  {MODEL}\n".encode(), "text/plain")
    written[METRICS] = keys.model_file(v, METRICS)
    lake.put_json(written[METRICS], result.metrics)
    put(TEST_SET, _parquet_bytes(result.test_set), "application/vnd.apache.parquet")
    for name, data in result.files.items():
        ctype = "text/html; charset=utf-8" if name.endswith(".html") else "image/png"
        put(name, data, ctype)
    card = serving_card(result, lineage=lineage, artifacts=dict(written))
    if plot_sample is not None:
        card["plot_sample"] = plot_sample
    written[CARD] = keys.model_file(v, CARD)
    lake.put_json(written[CARD], card)  # last: the version exists once its card does
    return written


def serving_card(result: TrainResult, *, lineage: dict[str, Any] | None = None,
                 artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    """The training card plus the top-level fields the prediction side reads.

    Parameters
    ----------
    result
        A training result.
    lineage
        Data lineage, stored at the top level (and already under ``data.lineage``).
    artifacts
        ``name -> key`` of the version's files.

    Returns
    -------
    dict
        The card with ``version``, ``trained_at``, ``model_name``, ``sha256``, ``feature_ranges.district``
        (the districts seen; the runtime's name for them), ``lineage`` and ``artifacts``.
    """
    card = dict(result.card)
    ranges = dict(card.get("feature_ranges") or {})
    ranges["district"] = list(ranges.get("districts") or [])
    card.update(
        {
            "version": result.version,
            "trained_at": result.trained_at.astimezone(UTC).isoformat(),
            "model_name": result.model_name,
            "sha256": result.sha256,
            "feature_ranges": ranges,
            "lineage": lineage if lineage is not None else (card.get("data") or {}).get("lineage"),
            "artifacts": artifacts or {},
            "legal": None,
        }
    )
    return card


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.reset_index(drop=True).to_parquet(buf, index=False)
    return buf.getvalue()


def list_versions(lake: Lake) -> list[str]:
    """Every complete version, oldest first (version ids start with their UTC training time)."""
    prefix = keys.models_prefix()
    out = []
    for key in lake.list_keys(prefix):
        rest = key[len(prefix):]
        # only models/<version>/card.json marks a complete version
        if rest.count("/") == 1 and rest.endswith("/" + CARD):
            out.append(rest.split("/", 1)[0])
    return sorted(out)


def read_card(lake: Lake, version: str) -> dict[str, Any]:
    """The card of a version; :class:`RegistryError` naming the known versions when there is none."""
    card = lake.get_json_or_none(keys.model_file(version, CARD))
    if card is None:
        known = list_versions(lake)
        hint = f"known versions: {', '.join(known[-5:])}" if known else "no version has been trained yet"
        raise RegistryError(f"no model version {version!r} in the registry ({hint})")
    return card


def read_test_set(lake: Lake, version: str) -> pd.DataFrame:
    """The held-out rows a version was evaluated on."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(lake.get_bytes(keys.model_file(version, TEST_SET))))


def read_model(lake: Lake, version: str, expected_sha256: str | None = None) -> bytes:
    """The ONNX bytes of a version, checked against its ``.sha256`` file (and ``expected_sha256``).

    Raises
    ------
    RegistryError
        When a digest does not match: a corrupted or replaced file is never scored or served.
    """
    data = lake.get_bytes(keys.model_file(version, MODEL))
    actual = hashlib.sha256(data).hexdigest()
    recorded = lake.get_bytes(keys.model_file(version, SHA_FILE)).decode().split()[0].lower()
    for label, want in (("its .sha256 file", recorded), ("the expected digest", expected_sha256)):
        if want and actual != want.lower():
            raise RegistryError(
                f"model {version}: sha256 {actual[:12]}… does not match {label} ({want[:12]}…)"
            )
    return data


def describe(lake: Lake) -> list[dict[str, Any]]:
    """One row per version (oldest first): date, model, headline metrics, gate decision, champion flag."""
    pointer = read_pointer(lake)
    champion = pointer.get("version") if pointer else None
    rows = []
    for v in list_versions(lake):
        card = read_card(lake, v)
        evaluation = lake.get_json_or_none(keys.model_file(v, EVALUATION))
        metrics = card.get("metrics") or {}
        rows.append(
            {
                "version": v,
                "trained_at": card.get("trained_at"),
                "model_name": card.get("model_name"),
                "metrics": {k: metrics.get(k) for k in HEADLINE if k in metrics},
                "rows": (card.get("data") or {}).get("rows"),
                "gate": (evaluation or {}).get("gate", {}).get("decision"),
                "champion": v == champion,
            }
        )
    return rows


# ------------------------------------------------------------------------------- pointer and history
def read_pointer(lake: Lake) -> dict[str, Any] | None:
    """The champion pointer, or None before the first promotion."""
    return lake.get_json_or_none(keys.champion())


def read_history(lake: Lake) -> list[dict[str, Any]]:
    """Every champion switch, oldest first (empty before the first promotion)."""
    return list(lake.get_json_or_none(keys.champion_history()) or [])


def champion_stack(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay the history: a promotion pushes its pointer, a rollback pops; the top is the champion."""
    stack: list[dict[str, Any]] = []
    for entry in history:
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry["pointer"])
    return stack


def attach_legal(lake: Lake, version: str) -> dict[str, Any] | None:
    """Compile the reference-rent lookup for a version, when the reference module provides it.

    Calls ``rentlake.legal.compile.attach_to_model(lake, version)``. When that module does not exist (yet),
    there is nothing to attach; any other import error is a real bug and propagates.

    Returns
    -------
    dict or None
        ``{"legal_key", "legal_sha256", "years", ...}`` or None.
    """
    import importlib

    try:
        module = importlib.import_module(REFERENCE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != REFERENCE_MODULE:
            raise
        return None
    attach: Callable[[Lake, str], dict[str, Any] | None] | None = getattr(module, "attach_to_model", None)
    if attach is None:
        return None
    return attach(lake, version)


def refresh_legal(lake: Lake, *, now: Callable[[], datetime] = _now) -> dict[str, Any] | None:
    """Bring the champion's legal lookup up to date with the clean reference table.

    A reference table for a later year can be ingested while the listings (and so the champion) stay
    the same: the legal answer must use it from then on, without waiting for a new model. The lookup is
    recompiled (deterministic bytes); when its sha256 differs from the pointer's, it is written beside
    the champion under a content-addressed name and the pointer is switched to it in one PUT (the
    prediction side reloads its table when ``legal_sha256`` changes). Same table: nothing is written.

    Parameters
    ----------
    lake
        The lake.
    now
        Clock (recorded as ``legal_refreshed_at``).

    Returns
    -------
    dict or None
        The new legal fields (as :func:`rentlake.legal.compile.legal_summary`), or None when nothing changed
        (no champion, no reference data, or the same table).
    """
    pointer = read_pointer(lake)
    if pointer is None:
        return None
    try:
        from rentlake.legal import compile as reference
    except ModuleNotFoundError as exc:
        if exc.name != REFERENCE_MODULE:
            raise
        return None
    built = reference.build_artifact(lake)
    if built is None:
        return None
    doc, data = built
    sha = hashlib.sha256(data).hexdigest()
    if sha == pointer.get("legal_sha256"):
        return None
    key = keys.model_file(pointer["version"], reference.refreshed_artifact_name(sha))
    lake.put_bytes(key, data, content_type="application/json")
    legal = reference.legal_summary(doc, key, data)
    updated = {**pointer, "legal_key": key, "legal_sha256": sha, "legal_refreshed_at": now().isoformat()}
    lake.put_json(keys.champion(), updated)  # one PUT, after the file it names exists
    log.info("legal lookup of champion %s refreshed: %s", pointer["version"], legal["legal_years"])
    return legal


def _pointer_for(lake: Lake, version: str, card: dict[str, Any], promoted_at: datetime,
                 legal: dict[str, Any] | None) -> dict[str, Any]:
    model_key = keys.model_file(version, MODEL)
    data = read_model(lake, version, card.get("sha256") or (card.get("model") or {}).get("sha256"))
    pointer: dict[str, Any] = {
        "version": version,
        "model_key": model_key,
        "sha256": hashlib.sha256(data).hexdigest(),
        "card_key": keys.model_file(version, CARD),
        "promoted_at": promoted_at.astimezone(UTC).isoformat(),
    }
    if legal:
        for field_name in ("legal_key", "legal_sha256"):
            if legal.get(field_name):
                pointer[field_name] = legal[field_name]
        if pointer.get("legal_key") and not lake.exists(pointer["legal_key"]):
            raise RegistryError(f"model {version}: the legal lookup {pointer['legal_key']} was not written")
    return pointer


def _switch(lake: Lake, pointer: dict[str, Any], entry: dict[str, Any]) -> None:
    history = read_history(lake)
    history.append({**entry, "pointer": pointer})
    lake.put_json(keys.champion_history(), history)
    lake.put_json(keys.champion(), pointer)  # the switch: one PUT of the whole pointer, last
    log.info("champion is now %s (%s)", pointer["version"], entry.get("action"))


def promote(lake: Lake, version: str, *, reason: str, gate: dict[str, Any] | None = None,
            now: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Make ``version`` the champion.

    Checks the version's files (card, model and its digest), attaches the reference-rent lookup when
    available (``legal`` in the card, ``legal_key``/``legal_sha256`` in the pointer), appends to the
    history, then writes the pointer.

    Parameters
    ----------
    lake
        The lake.
    version
        A complete registry version.
    reason
        Why (``"gate passed"``, ``"manual"``...), recorded in the history.
    gate
        The gate decision, recorded in the history.
    now
        Clock (tests).

    Returns
    -------
    dict
        The new pointer (the current one, unchanged, when ``version`` is already the champion).

    Raises
    ------
    RegistryError
        Unknown version or a model file that does not match its digest.
    """
    card = read_card(lake, version)
    current = read_pointer(lake)
    if current is not None and current.get("version") == version:
        return current  # already serving: nothing to switch, nothing to record
    legal = attach_legal(lake, version)
    if legal is not None:
        card["legal"] = legal
        lake.put_json(keys.model_file(version, CARD), card)
    pointer = _pointer_for(lake, version, card, now(), legal)
    _switch(lake, pointer, {"action": "promote", "version": version, "at": pointer["promoted_at"],
                            "reason": reason, "gate": gate,
                            "previous": current.get("version") if current else None})
    return pointer


def rollback(lake: Lake, *, now: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Make the previous champion (the one before the last promotion) the champion again.

    Returns
    -------
    dict
        The new pointer (the previous champion's, with a new ``promoted_at``).

    Raises
    ------
    RegistryError
        No champion, no previous champion, or a history that disagrees with the pointer.
    """
    current = read_pointer(lake)
    if current is None:
        raise RegistryError("there is no champion: nothing to roll back")
    stack = champion_stack(read_history(lake))
    if not stack or stack[-1].get("version") != current.get("version"):
        raise RegistryError(
            f"the champion pointer names {current.get('version')} but the history does not end with it; "
            "promote a version explicitly instead"
        )
    if len(stack) < 2:
        raise RegistryError(f"{current['version']} is the first champion: there is no previous one")
    target = stack[-2]
    version = str(target["version"])
    card = read_card(lake, version)
    legal = {k: target[k] for k in ("legal_key", "legal_sha256") if k in target} or None
    pointer = _pointer_for(lake, version, card, now(), legal)
    _switch(lake, pointer, {"action": "rollback", "version": version, "at": pointer["promoted_at"],
                            "reason": f"rollback from {current['version']}", "previous": current["version"]})
    return pointer
