"""The champion cache: pointer -> sha256-checked ONNX model -> one cached inference session.

A container fetches the model once, checks its sha256 against the champion pointer and builds one
``onnxruntime.InferenceSession``. The pointer is re-read at most every ``refresh_seconds``; when it names
another model, the new one is loaded and swapped in as one immutable :class:`LoadedModel` (a request that
already holds the old one finishes with it). A refresh that fails keeps the old model and logs why.

The champion's legal reference table (:mod:`rentlake.legal.lookup`) is loaded and swapped with it.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from rentlake.lake import Lake, LakeError, ObjectNotFound, keys
from rentlake.legal.lookup import NO_TABLE, TABLE_FAILED, LegalTable, LegalTableError, load_for_champion
from rentlake.runtime.errors import ModelUnavailable
from rentlake.runtime.interval import z_for_level

logger = logging.getLogger(__name__)

OUTPUTS = ("rent_eur", "low", "high")
NO_CHAMPION = "no model has been promoted yet; run the training pipeline"


@dataclass(frozen=True)
class ModelCard:
    """What the API needs from ``card.json`` (unknown fields are kept in ``raw``)."""

    version: str
    trained_at: str | None
    model_name: str | None
    metrics: dict[str, Any]
    features: list[str]
    surface_min: float | None
    surface_max: float | None
    districts: frozenset[str]
    interval_level: float
    interval_method: str | None
    interval_scale: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, card: Mapping[str, Any], fallback_version: str) -> ModelCard:
        """Parse a model card.

        Parameters
        ----------
        card
            The decoded ``card.json``.
        fallback_version
            Version from the pointer, used when the card has none.

        Returns
        -------
        ModelCard
            The parsed card.

        Raises
        ------
        ValueError
            When a field the API relies on has the wrong type.
        """
        if not isinstance(card, Mapping):
            raise ValueError("the model card is not a JSON object")
        ranges = card.get("feature_ranges") or {}
        surface = ranges.get("surface_m2") or {}
        interval = card.get("interval") or {}
        scale = str(interval.get("scale", "log"))
        if scale not in ("log", "linear"):
            raise ValueError(f"unknown interval scale {scale!r} in the model card")
        level = float(interval.get("level", 0.9))
        if not 0.0 < level < 1.0:
            raise ValueError(f"interval level {level} is not in (0, 1)")
        return cls(
            version=str(card.get("version") or fallback_version),
            trained_at=card.get("trained_at"),
            model_name=card.get("model_name"),
            metrics=dict(card.get("metrics") or {}),
            features=[str(f) for f in card.get("features") or []],
            surface_min=_opt_float(surface.get("min")),
            surface_max=_opt_float(surface.get("max")),
            districts=frozenset(str(d) for d in ranges.get("district") or []),
            interval_level=level,
            interval_method=interval.get("method"),
            interval_scale=scale,
            raw=dict(card),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class LoadedModel:
    """One champion, ready to serve: session, card and the pointer it came from (immutable)."""

    session: ort.InferenceSession = field(repr=False)
    card: ModelCard
    pointer: dict[str, Any]
    uses_district: bool
    z: float  # half-width of the interval in standard deviations, from the card's level
    legal: LegalTable | None = field(default=None, repr=False)
    # Why the champion's legal table could not be loaded (None: loaded, or the champion names none).
    legal_problem: str | None = None

    @property
    def version(self) -> str:
        return str(self.pointer.get("version") or self.card.version)

    @property
    def no_table_hint(self) -> str:
        """Why this champion answers without its legal table: it names none, or it failed to load."""
        return TABLE_FAILED if self.legal_problem is not None else NO_TABLE

    def predict(
        self, surface_m2: np.ndarray, district: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Estimate a batch of listings in one onnxruntime call.

        Parameters
        ----------
        surface_m2
            Surfaces, shape ``(n,)``, any float dtype.
        district
            Districts as strings, shape ``(n,)``; only read when the model uses it (``""`` for unknown).

        Returns
        -------
        tuple of numpy.ndarray
            ``rent_eur``, ``low`` and ``high``, each float32 of shape ``(n,)``.
        """
        feeds: dict[str, np.ndarray] = {"surface_m2": np.asarray(surface_m2, dtype=np.float32).reshape(-1, 1)}
        if self.uses_district:
            n = feeds["surface_m2"].shape[0]
            feeds["district"] = (
                np.full((n, 1), "", dtype=object)
                if district is None
                else np.asarray(district, dtype=object).reshape(-1, 1)
            )
        rent, low, high = self.session.run(OUTPUTS, feeds)
        return rent.reshape(-1), low.reshape(-1), high.reshape(-1)


def build_model(pointer: Mapping[str, Any], model_bytes: bytes, card: Mapping[str, Any]) -> LoadedModel:
    """Check a downloaded champion and build its inference session.

    Parameters
    ----------
    pointer
        The champion pointer (``version``, ``model_key``, ``sha256``...).
    model_bytes
        The ONNX file.
    card
        The decoded model card.

    Returns
    -------
    LoadedModel
        The model, ready to serve.

    Raises
    ------
    ModelUnavailable
        When the sha256 does not match, the file is not a valid ONNX model, or its interface is not the
        contract's (inputs ``surface_m2`` [+ ``district``], outputs ``rent_eur``, ``low``, ``high``).
    """
    version = str(pointer.get("version", "?"))
    expected = str(pointer.get("sha256") or "").lower()
    if not expected:
        raise ModelUnavailable(f"champion {version}: the pointer has no sha256; refusing an unchecked model")
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != expected:
        raise ModelUnavailable(
            f"champion {version}: model sha256 {actual[:12]}… does not match the pointer's {expected[:12]}…"
        )
    options = ort.SessionOptions()
    # One thread: a request holds a handful of rows, and thread hand-offs cost more than they save.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (unexported) exception types for bad files
        raise ModelUnavailable(f"champion {version}: the model file cannot be loaded", str(exc)) from exc
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if "surface_m2" not in inputs or not inputs <= {"surface_m2", "district"}:
        raise ModelUnavailable(f"champion {version}: unexpected model inputs {sorted(inputs)}")
    if not set(OUTPUTS) <= outputs:
        raise ModelUnavailable(f"champion {version}: model outputs {sorted(outputs)} lack {list(OUTPUTS)}")
    try:
        parsed = ModelCard.from_dict(card, version)
    except (ValueError, TypeError) as exc:
        raise ModelUnavailable(f"champion {version}: invalid model card ({exc})", str(exc)) from exc
    return LoadedModel(
        session=session,
        card=parsed,
        pointer=dict(pointer),
        uses_district="district" in inputs,
        z=z_for_level(parsed.interval_level),
    )


def load_champion(lake: Lake) -> LoadedModel:
    """Fetch the current champion from the lake and build it (no caching).

    Parameters
    ----------
    lake
        The lake holding ``models/champion.json``.

    Returns
    -------
    LoadedModel
        The champion.

    Raises
    ------
    ModelUnavailable
        When no champion has been promoted or it cannot be loaded.
    """
    pointer = read_pointer(lake)
    return fetch_champion(lake, pointer)


def read_pointer(lake: Lake) -> dict[str, Any]:
    """Read the champion pointer; :class:`ModelUnavailable` when there is none or it is unreadable."""
    try:
        pointer = lake.get_json_or_none(keys.champion())
    except LakeError as exc:
        raise ModelUnavailable("cannot read the champion pointer", str(exc)) from exc
    if pointer is None:
        raise ModelUnavailable(NO_CHAMPION)
    if not isinstance(pointer, dict) or not pointer.get("model_key"):
        raise ModelUnavailable("the champion pointer is malformed (no model_key)")
    return pointer


def load_legal(
    lake: Lake, pointer: Mapping[str, Any], card: Mapping[str, Any]
) -> tuple[LegalTable | None, str | None]:
    """The legal reference table a champion names, or why it cannot be had; never raises.

    Parameters
    ----------
    lake
        The lake holding ``legal_key``.
    pointer
        The champion pointer (``legal_key``, ``legal_sha256`` at its top level).
    card
        The model card (the same fields under ``legal``), used when the pointer names no table.

    Returns
    -------
    tuple
        ``(table, None)``; ``(None, None)`` when the champion has no table; ``(None, reason)`` when the
        table is corrupt, of another format, or unreadable: the estimate is then answered without it.
    """
    source: Mapping[str, Any] = pointer if pointer.get("legal_key") else card
    try:
        return load_for_champion(lake, source), None
    except (LegalTableError, LakeError) as exc:
        version = pointer.get("version", "?")
        logger.error("champion %s: legal reference table unavailable: %s", version, exc)
        return None, str(exc)


class _ReadFailed(ModelUnavailable):
    """The champion's files could not be read (throttling, network): worth retrying, unlike a bad file."""


def fetch_champion(lake: Lake, pointer: Mapping[str, Any]) -> LoadedModel:
    """Download and build the champion a pointer names, with its legal table.

    Raises
    ------
    ModelUnavailable
        When its files are missing, unreadable (a retryable read failure) or invalid.
    """
    version = str(pointer.get("version", "?"))
    try:
        model_bytes = lake.get_bytes(str(pointer["model_key"]))
        card_key = pointer.get("card_key") or keys.model_file(version, "card.json")
        card_bytes = lake.get_bytes(str(card_key))
    except ObjectNotFound as exc:
        raise ModelUnavailable(f"champion {version}: a file it points to is missing", str(exc)) from exc
    except LakeError as exc:
        raise _ReadFailed(f"champion {version}: cannot read its files", str(exc)) from exc
    try:
        card = json.loads(card_bytes)
    except ValueError as exc:
        raise ModelUnavailable(f"champion {version}: invalid model card (not JSON)", str(exc)) from exc
    model = build_model(pointer, model_bytes, card)
    table, problem = load_legal(lake, pointer, card if isinstance(card, Mapping) else {})
    return dataclasses.replace(model, legal=table, legal_problem=problem)


def _identity(pointer: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """What makes two pointers name the same model (and the same legal table)."""
    return (
        str(pointer.get("version")),
        str(pointer.get("model_key")),
        str(pointer.get("sha256")).lower(),
        str(pointer.get("legal_sha256") or ""),
    )


Loader = Callable[[Lake, Mapping[str, Any]], LoadedModel]


def _no_lake() -> Lake:
    raise LakeError("the champion cache was given no lake")


class ChampionCache:
    """The champion of one container, loaded once and refreshed at most every ``refresh_seconds``.

    Parameters
    ----------
    lake
        The lake, or a function returning it (called on first use, so a missing bucket becomes a 503
        rather than a failed cold start). Default: none yet (every request is a 503 until
        :meth:`use_lake`).
    refresh_seconds
        Minimum delay between two reads of the champion pointer once a model is loaded.
    clock
        Monotonic clock in seconds (injectable for tests).
    loader
        How the model a pointer names is built (default :func:`fetch_champion`: ONNX, card, legal table).
    """

    def __init__(
        self,
        lake: Lake | Callable[[], Lake] = _no_lake,
        refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        loader: Loader = fetch_champion,
    ) -> None:
        self._lake_source = lake
        self._lake: Lake | None = lake if isinstance(lake, Lake) else None
        self.refresh_seconds = float(refresh_seconds)
        self._clock = clock
        self._loader = loader
        self._current: LoadedModel | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()
        # Pointers whose model was found broken (checksum, file, card) -> why; not the ones whose files
        # could not be read (a throttled GET): those are retried at the next check.
        self._bad: dict[tuple[str, str, str, str], ModelUnavailable] = {}
        self.loads = 0  # number of models built (tests and logs)

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            try:
                self._lake = self._lake_source() if callable(self._lake_source) else self._lake_source
            except LakeError as exc:  # e.g. RENTLAKE_BUCKET unset
                raise ModelUnavailable(
                    "the prediction function is not configured (no lake bucket)", str(exc)
                ) from exc
        return self._lake

    def use_lake(
        self,
        lake: Lake | Callable[[], Lake],
        *,
        refresh_seconds: float | None = None,
        loader: Loader = fetch_champion,
    ) -> None:
        """Serve from another lake, as a fresh container would: the loaded model is dropped.

        Parameters
        ----------
        lake
            The lake, or a function returning it on first use.
        refresh_seconds
            A new refresh period (unchanged when None).
        loader
            How the champion is built (default :func:`fetch_champion`, whatever was used before).
        """
        with self._lock:
            self._lake_source = lake
            self._lake = lake if isinstance(lake, Lake) else None
            if refresh_seconds is not None:
                self.refresh_seconds = float(refresh_seconds)
            self._loader = loader
            self._current = None
            self._checked_at = -math.inf
            self._bad.clear()
            self._last_error = ModelUnavailable(NO_CHAMPION)

    def bind(self, lake: Lake) -> None:
        """Serve from ``lake`` unless already bound to that very object (keeps a loaded model then)."""
        if self._lake is not lake:
            self.use_lake(lake)

    def peek(self) -> LoadedModel | None:
        """The loaded model, without any I/O (``None`` before the first load)."""
        return self._current

    def get(self) -> LoadedModel:
        """The champion to serve this request with.

        Returns
        -------
        LoadedModel
            The current model; refreshed first when the pointer is due for a check.

        Raises
        ------
        ModelUnavailable
            When no model has ever been loaded and loading fails now.
        """
        current = self._current
        if current is not None and self._clock() - self._checked_at < self.refresh_seconds:
            return current
        if current is None:
            with self._lock:  # first load: every thread waits for the one that loads
                if self._current is None:
                    self._refresh()
                if self._current is None:  # a fresh exception: re-raising one would grow its traceback
                    raise ModelUnavailable(str(self._last_error), self._last_error.detail)
                return self._current
        # Refresh: one thread checks, the others keep serving the current model meanwhile.
        if self._lock.acquire(blocking=False):
            try:
                if self._clock() - self._checked_at >= self.refresh_seconds:
                    self._refresh()
            finally:
                self._lock.release()
        return self._current or current

    _last_error: ModelUnavailable = ModelUnavailable(NO_CHAMPION)

    def _refresh(self) -> None:
        """Re-read the pointer and swap in the model it names; never raises (the lock is held)."""
        self._checked_at = self._clock()
        try:
            pointer = read_pointer(self.lake)
        except ModelUnavailable as exc:
            self._fail(exc)
            return
        ident = _identity(pointer)
        if self._current is not None and _identity(self._current.pointer) == ident:
            if self._current.legal_problem is not None:  # e.g. a throttled GET: try the table again
                self._retry_legal(self._current)
            return
        if ident in self._bad:
            self._fail(self._bad[ident], log=False)
            return
        try:
            model = self._loader(self.lake, pointer)
        except ModelUnavailable as exc:
            if not isinstance(exc, _ReadFailed):
                self._bad[ident] = exc
            self._fail(exc)
            return
        old = self._current
        self._current = model  # one reference assignment: atomic for concurrent readers
        self.loads += 1
        # What exists now (modules, schemas, this model and its legal table) lives until the next switch:
        # out of the cyclic collector's generations, a collection during a request walks only that
        # request's objects (the p99 of 100-listing requests, bench/bench_predict.py). The old model is
        # still freed by reference counting when the last request using it ends.
        gc.freeze()
        logger.info(
            "champion loaded",
            extra={"model_version": model.version, "previous": old.version if old else None},
        )

    def _retry_legal(self, current: LoadedModel) -> None:
        table, problem = load_legal(self.lake, current.pointer, current.card.raw)
        if problem is None:
            self._current = dataclasses.replace(current, legal=table, legal_problem=None)
            logger.info("legal reference table loaded", extra={"model_version": current.version})

    def _fail(self, error: ModelUnavailable, *, log: bool = True) -> None:
        self._last_error = error
        if log:
            if self._current is not None:
                logger.error(
                    "champion refresh failed; still serving %s: %s", self._current.version, error.for_logs()
                )
            else:
                logger.error("champion load failed: %s", error.for_logs())
