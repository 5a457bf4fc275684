"""The model registry in the lake: versions, the champion pointer, promotion and rollback.

Layout (keys from :mod:`rentlake.lake`)::

    models/<version>/claim.json         created FIRST, only if absent: one writer owns the version id
                                        (:class:`VersionTaken` for the other)
    models/<version>/model.onnx         the served graph
    models/<version>/model.onnx.sha256  its digest, ``sha256sum`` format
    models/<version>/metrics.json       held-out metrics of training
    models/<version>/test_set.parquet   the held-out rows (the gate scores the champion on them)
    models/<version>/*.png, card.html   plots and the human model card
    models/<version>/card.json          the machine card (:class:`~rentlake.records.ModelCard`); written
                                        LAST: a version without it is incomplete
    models/<version>/evaluation.json    the gate's decision (written by the evaluate stage)
    models/<version>/legal.json         reference rents, when the reference module attaches them
    models/champion_history.json        the log of switches (:class:`~rentlake.records.ChampionSwitch`)
    models/champion.json                the serving pointer (:class:`~rentlake.records.ChampionPointer`)

Switching the champion
----------------------
The history is the log of switches, and the pointer is published from its last entry. A switch
(:func:`promote`, :func:`rollback`) is:

1. read the history and the pointer with their ETags, and decide on that state (the pure
   :func:`plan_promotion` / :func:`plan_rollback`, on the history's champion: :func:`champion_of`);
2. append its entry by compare-and-swap of the history (``If-Match`` on the ETag read in 1, or create
   only if absent for the first switch): this is the commit;
3. publish (:func:`publish`): write the history's last pointer to ``models/champion.json`` by
   compare-and-swap, once every file it names exists. One PUT of the whole pointer: a reader sees the
   old pointer or the new one, never a mix.

Two switches decided at the same time read the same history ETag: one appends, the other's swap fails
and it goes back to 1: it reads the new history and decides again, on the new champion. A manual
promotion then records its switch after the other one (both are in the history, in order, and the
pointer names the later one). A promotion the quality gate decided against a given champion
(``expected``) stops instead with :class:`ChampionMoved`: it was never compared with the new champion.
After :data:`MAX_ATTEMPTS` lost swaps a switch gives up with :class:`ChampionContended`.

The history never loses an entry: it is only ever replaced by the version its writer read plus one
entry. Publishing always writes the history's *last* pointer, and retries its own swap, so a slow
writer never puts back an older champion: whoever publishes last, the pointer names the history's top.
A writer that dies between 2 and 3 leaves the pointer one switch behind; the next switch, or
:func:`publish`, catches up. The legal refresh (:func:`refresh_legal`) rewrites the pointer of the same
switch by compare-and-swap too, deciding again when the pointer moved under it.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from rentlake.lake import Lake, PreconditionFailed, keys
from rentlake.records import ChampionPointer, ChampionSwitch, ModelCard, RecordError

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
#: Created first, only if absent: the writer that creates it owns ``models/<version>/``.
CLAIM = "claim.json"
#: Held-out metrics copied into listings and history entries (the full set is in metrics.json).
HEADLINE = ("n", "mae", "rmse", "r2", "mape", "coverage", "mean_width")
#: Module and function of the reference-rents colleague, called at every promotion when present.
REFERENCE_MODULE = "rentlake.legal.compile"
#: How many times a switch reads, decides and tries its compare-and-swap before giving up.
MAX_ATTEMPTS = 5


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, broken artifacts, nothing to roll back)."""


class VersionTaken(RegistryError):
    """Another writer claimed this version id first (same data, same second): nothing was written."""

    def __init__(self, version: str) -> None:
        super().__init__(f"version {version} was claimed by another writer: train again for a new id")
        self.version = version


class ChampionMoved(RegistryError):
    """The champion changed between the decision that was expecting it and the switch: another one won."""

    def __init__(self, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"the champion changed from {expected or 'none'} to {actual or 'none'} since the challenger was "
            "evaluated: another promotion won; evaluate the challenger again against the new champion"
        )
        self.expected = expected
        self.actual = actual


class ChampionContended(RegistryError):
    """Another writer kept switching the champion first, :data:`MAX_ATTEMPTS` times in a row."""


class _AnyChampion:
    """Sentinel type of :data:`ANY_CHAMPION`."""

    def __repr__(self) -> str:
        return "ANY_CHAMPION"


#: ``promote(expected=ANY_CHAMPION)``: promote whoever the champion is when the switch is decided.
ANY_CHAMPION: Final = _AnyChampion()


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------- versions
def save_version(
    lake: Lake,
    result: TrainResult,
    *,
    lineage: dict[str, Any] | None = None,
    plot_sample: list[list[float]] | None = None,
) -> dict[str, str]:
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

    Raises
    ------
    VersionTaken
        Another writer claimed ``result.version`` first; nothing was written.
    """
    v = result.version
    # Two trainings on the same data in the same second get the same id; the second must not overwrite
    # the first one's files under the card (or the pointer) it has already written.
    try:
        lake.create_json(keys.model_file(v, CLAIM), {"version": v, "claimed_at": _now().isoformat()})
    except PreconditionFailed:
        raise VersionTaken(v) from None
    written: dict[str, str] = {CLAIM: keys.model_file(v, CLAIM)}

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
    card = serving_card(result, lineage=lineage, artifacts=dict(written), plot_sample=plot_sample)
    written[CARD] = keys.model_file(v, CARD)
    lake.put_json(written[CARD], card.to_json())  # last: the version exists once its card does
    return written


def serving_card(
    result: TrainResult,
    *,
    lineage: dict[str, Any] | None = None,
    artifacts: dict[str, str] | None = None,
    plot_sample: list[list[float]] | None = None,
) -> ModelCard:
    """The training card plus the top-level fields the prediction side reads, checked as a ModelCard.

    Parameters
    ----------
    result
        A training result.
    lineage
        Data lineage, stored at the top level (and already under ``data.lineage``).
    artifacts
        ``name -> key`` of the version's files.
    plot_sample
        ``[surface_m2, rent_eur]`` points for the tenant page (omitted from the card when None).

    Returns
    -------
    ModelCard
        The card with ``version``, ``trained_at``, ``model_name``, ``sha256``, ``feature_ranges.district``
        (the districts seen; the runtime's name for them), ``lineage`` and ``artifacts``.

    Raises
    ------
    RecordError
        When the training card misses a field the prediction side needs.
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
    if plot_sample is not None:
        card["plot_sample"] = plot_sample
    return ModelCard.from_json(card)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.reset_index(drop=True).to_parquet(buf, index=False)
    return buf.getvalue()


def list_versions(lake: Lake) -> list[str]:
    """Every complete version, oldest first (version ids start with their UTC training time)."""
    prefix = keys.models_prefix()
    out = []
    for key in lake.list_keys(prefix):
        rest = key[len(prefix) :]
        # only models/<version>/card.json marks a complete version
        if rest.count("/") == 1 and rest.endswith("/" + CARD):
            out.append(rest.split("/", 1)[0])
    return sorted(out)


def read_card(lake: Lake, version: str) -> ModelCard:
    """The card of a version.

    Raises
    ------
    RegistryError
        No such version (naming the known ones), or a card that is not a valid model card.
    """
    doc = lake.get_json_or_none(keys.model_file(version, CARD))
    if doc is None:
        known = list_versions(lake)
        hint = f"known versions: {', '.join(known[-5:])}" if known else "no version has been trained yet"
        raise RegistryError(f"no model version {version!r} in the registry ({hint})")
    try:
        return ModelCard.from_json(doc)
    except RecordError as exc:
        raise RegistryError(f"model {version}: {exc}") from exc


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
    champion = pointer.version if pointer else None
    rows = []
    for v in list_versions(lake):
        card = read_card(lake, v)
        evaluation = lake.get_json_or_none(keys.model_file(v, EVALUATION))
        rows.append(
            {
                "version": v,
                "trained_at": card.trained_at,
                "model_name": card.model_name,
                "metrics": {k: card.metrics.get(k) for k in HEADLINE if k in card.metrics},
                "rows": card.data.get("rows"),
                "gate": (evaluation or {}).get("gate", {}).get("decision"),
                "champion": v == champion,
            }
        )
    return rows


# ------------------------------------------------------------------------------- pointer and history
@dataclass(frozen=True)
class ChampionState:
    """One read of the champion pointer and the history, with the ETags a switch swaps against."""

    pointer: ChampionPointer | None
    pointer_etag: str | None
    history: list[ChampionSwitch] = field(default_factory=list)
    history_etag: str | None = None
    #: The history as stored: a new history is this plus one entry, so nothing stored is ever dropped.
    history_json: list[Any] = field(default_factory=list, repr=False)


def _read_versioned(lake: Lake, key: str) -> tuple[Any, str | None]:
    """A JSON document and its ETag. The ETag is read first: if a write lands in between, the content is
    newer than the ETag, and a compare-and-swap against it fails (safe), never the other way round."""
    head = lake.head(key)
    if head is None:
        return None, None
    return lake.get_json_or_none(key), str(head["etag"])


def _pointer(doc: Any) -> ChampionPointer | None:
    if doc is None:
        return None
    try:
        return ChampionPointer.from_json(doc)
    except RecordError as exc:
        raise RegistryError(f"{keys.champion()}: {exc}") from exc


def read_state(lake: Lake) -> ChampionState:
    """The pointer and the history with their ETags (what a switch decides on)."""
    pointer_doc, pointer_etag = _read_versioned(lake, keys.champion())
    history_doc, history_etag = _read_versioned(lake, keys.champion_history())
    stored = list(history_doc or [])
    try:
        history = [ChampionSwitch.from_json(entry) for entry in stored]
    except RecordError as exc:
        raise RegistryError(f"{keys.champion_history()}: {exc}") from exc
    return ChampionState(_pointer(pointer_doc), pointer_etag, history, history_etag, stored)


def read_pointer(lake: Lake) -> ChampionPointer | None:
    """The champion pointer as published, or None before the first promotion."""
    return _pointer(lake.get_json_or_none(keys.champion()))


def read_history(lake: Lake) -> list[ChampionSwitch]:
    """Every champion switch, oldest first (empty before the first promotion)."""
    return read_state(lake).history


def champion(lake: Lake) -> ChampionPointer | None:
    """The champion as the history says (:func:`champion_of`): what a switch or an evaluation decides on."""
    return champion_of(read_state(lake))


def champion_stack(history: list[ChampionSwitch]) -> list[ChampionPointer]:
    """Replay the history: a promotion pushes its pointer, a rollback pops; the top is the champion.

    The champion a rollback brings back serves under the rollback's own pointer (a new ``promoted_at``,
    the legal lookup it had), so that pointer replaces the top left by the pop.
    """
    stack: list[ChampionPointer] = []
    for entry in history:
        if entry.action == "rollback":
            if stack:
                stack.pop()
            if stack:
                stack[-1] = entry.pointer
            else:  # a rollback past the first switch (a history edited by hand): its pointer serves
                stack.append(entry.pointer)
        else:
            stack.append(entry.pointer)
    return stack


def champion_of(state: ChampionState) -> ChampionPointer | None:
    """The champion a switch decides on: the history's last one, else the pointer (published by hand)."""
    stack = champion_stack(state.history)
    return stack[-1] if stack else state.pointer


# ----------------------------------------------------------------------------------- switch decisions
@dataclass(frozen=True)
class PromotionPlan:
    """What a promotion does, decided on one :class:`ChampionState` (pure).

    Attributes
    ----------
    switch : bool
        False when there is nothing to record (the version already is the champion).
    previous : ChampionPointer or None
        The champion being replaced.
    """

    switch: bool
    previous: ChampionPointer | None


def plan_promotion(
    state: ChampionState, version: str, expected: str | None | _AnyChampion = ANY_CHAMPION
) -> PromotionPlan:
    """Decide a promotion of ``version`` on ``state``.

    Parameters
    ----------
    state
        One read of the pointer and history.
    version
        The version to promote.
    expected
        The champion the promotion was decided against (a version, or None for "no champion"); the
        default accepts any champion.

    Returns
    -------
    PromotionPlan
        ``switch`` false when ``version`` is already the champion.

    Raises
    ------
    ChampionMoved
        The champion is not ``expected``.
    """
    current = champion_of(state)
    current_version = current.version if current is not None else None
    if not isinstance(expected, _AnyChampion) and expected != current_version:
        raise ChampionMoved(expected, current_version)
    return PromotionPlan(switch=current_version != version, previous=current)


def plan_rollback(state: ChampionState) -> tuple[ChampionPointer, ChampionPointer]:
    """Decide a rollback on ``state``: back to the champion before the last promotion.

    Returns
    -------
    (current, target)
        The champion now, and the earlier switch whose version serves again.

    Raises
    ------
    RegistryError
        No champion; a pointer the history does not know (written by hand); no previous champion.
    """
    current = champion_of(state)
    if current is None:
        raise RegistryError("there is no champion: nothing to roll back")
    stack = champion_stack(state.history)
    pointer = state.pointer
    # A pointer one switch behind the history (its writer died before publishing) is the history's
    # own; one the history never recorded was written by hand, and undoing "the last promotion" is
    # then meaningless.
    by_hand = pointer is not None and not any(pointer.same_switch(e.pointer) for e in state.history)
    if not stack or (by_hand and pointer is not None and pointer.version != stack[-1].version):
        shown = pointer.version if pointer is not None else current.version
        raise RegistryError(
            f"the champion pointer names {shown} but the history does not end with it; "
            "promote a version explicitly instead"
        )
    if len(stack) < 2:
        raise RegistryError(f"{current.version} is the first champion: there is no previous one")
    return current, stack[-2]


# ---------------------------------------------------------------------------------- switching (I/O)
def _commit_switch(
    lake: Lake, build: Callable[[ChampionState], ChampionSwitch | None]
) -> tuple[ChampionSwitch | None, ChampionState]:
    """Read, decide (``build``), append to the history by compare-and-swap, publish; retried on conflict.

    Returns
    -------
    (entry, state)
        The entry recorded (None when ``build`` decided there was nothing to do) and the state it was
        decided on.

    Raises
    ------
    ChampionContended
        Another writer appended first :data:`MAX_ATTEMPTS` times in a row.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        state = read_state(lake)
        entry = build(state)
        if entry is None:
            return None, state
        history = [*state.history_json, entry.to_json()]
        try:
            lake.replace_json(keys.champion_history(), history, etag=state.history_etag)
        except PreconditionFailed:
            log.info(
                "another switch was recorded while %s %s was decided (attempt %d): deciding again",
                entry.action,
                entry.version,
                attempt,
            )
            continue
        publish(lake)
        log.info("champion is now %s (%s)", entry.version, entry.action)
        return entry, state
    raise ChampionContended(
        f"the champion history changed {MAX_ATTEMPTS} times while a switch was being decided; try again"
    )


def publish(lake: Lake) -> ChampionPointer | None:
    """Make ``models/champion.json`` name the history's champion (compare-and-swap; nothing when it does).

    Returns
    -------
    ChampionPointer or None
        The pointer now published (None: no pointer and an empty history).

    Raises
    ------
    ChampionContended
        The pointer kept changing under the swap :data:`MAX_ATTEMPTS` times in a row.
    """
    for _ in range(MAX_ATTEMPTS):
        state = read_state(lake)
        stack = champion_stack(state.history)
        if not stack or stack[-1].same_switch(state.pointer):
            return state.pointer
        try:
            lake.replace_json(keys.champion(), stack[-1].to_json(), etag=state.pointer_etag)
        except PreconditionFailed:
            continue  # another writer published (or refreshed) meanwhile: look again
        return stack[-1]
    raise ChampionContended(f"{keys.champion()} kept changing while it was published; try again")


def _reference_module() -> Any | None:
    """The reference-rents module, or None when it does not exist (an import error inside it propagates)."""
    import importlib

    try:
        return importlib.import_module(REFERENCE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != REFERENCE_MODULE:
            raise
        return None


def attach_legal(lake: Lake, version: str) -> dict[str, Any] | None:
    """Compile the reference-rent lookup for a version, when the reference module provides it.

    Calls ``rentlake.legal.compile.attach_to_model(lake, version)``. When that module does not exist
    (yet), there is nothing to attach; any other import error is a real bug and propagates.

    Returns
    -------
    dict or None
        ``{"legal_key", "legal_sha256", "years", ...}`` or None.
    """
    module = _reference_module()
    if module is None:
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
    the champion under a content-addressed name and the pointer is switched to it by compare-and-swap
    (the prediction side reloads its table when ``legal_sha256`` changes). When the pointer moved
    meanwhile (a promotion), the decision is taken again on the new pointer. Same table: nothing is
    written.

    Parameters
    ----------
    lake
        The lake.
    now
        Clock (recorded as ``legal_refreshed_at``).

    Returns
    -------
    dict or None
        The new legal fields (as :func:`rentlake.legal.compile.legal_summary`), or None when nothing
        changed (no champion, no reference data, or the same table).

    Raises
    ------
    ChampionContended
        The pointer kept changing under the swap.
    """
    if read_pointer(lake) is None:
        return None
    reference = _reference_module()
    build: Callable[[Lake], tuple[dict[str, Any], bytes] | None] | None = getattr(
        reference, "build_artifact", None
    )
    if reference is None or build is None:
        return None
    built = build(lake)
    if built is None:
        return None
    doc, data = built
    sha = hashlib.sha256(data).hexdigest()
    for _ in range(MAX_ATTEMPTS):
        raw, etag = _read_versioned(lake, keys.champion())
        pointer = _pointer(raw)
        if pointer is None or sha == pointer.legal_sha256:
            return None
        key = keys.model_file(pointer.version, reference.refreshed_artifact_name(sha))
        lake.put_bytes(key, data, content_type="application/json")  # content-addressed: same bytes
        updated = pointer.with_legal(key, sha, now().isoformat())
        try:
            lake.replace_json(keys.champion(), updated.to_json(), etag=etag)
        except PreconditionFailed:
            continue  # the pointer moved (a switch): decide again on the new one
        legal = reference.legal_summary(doc, key, data)
        log.info("legal lookup of champion %s refreshed: %s", pointer.version, legal["legal_years"])
        return legal
    raise ChampionContended(f"{keys.champion()} kept changing while its legal lookup was refreshed")


def _pointer_for(
    lake: Lake, version: str, card: ModelCard, promoted_at: datetime, legal: dict[str, Any] | None
) -> ChampionPointer:
    """The pointer that serves ``version``, after checking the files it names (model digest, legal)."""
    data = read_model(lake, version, card.sha256 or (card.documentation.get("model") or {}).get("sha256"))
    legal_key = legal_sha256 = None
    if legal and legal.get("legal_key") and legal.get("legal_sha256"):
        legal_key, legal_sha256 = str(legal["legal_key"]), str(legal["legal_sha256"])
        if not lake.exists(legal_key):
            raise RegistryError(f"model {version}: the legal lookup {legal_key} was not written")
    return ChampionPointer(
        version=version,
        model_key=keys.model_file(version, MODEL),
        sha256=hashlib.sha256(data).hexdigest(),
        card_key=keys.model_file(version, CARD),
        promoted_at=promoted_at.astimezone(UTC).isoformat(),
        legal_key=legal_key,
        legal_sha256=legal_sha256,
    )


def promote(
    lake: Lake,
    version: str,
    *,
    reason: str,
    gate: dict[str, Any] | None = None,
    expected: str | None | _AnyChampion = ANY_CHAMPION,
    now: Callable[[], datetime] = _now,
) -> ChampionPointer:
    """Make ``version`` the champion (by compare-and-swap of the history, then of the pointer).

    Checks the version's files (card, model and its digest), attaches the reference-rent lookup when
    available (``legal`` in the card, ``legal_key``/``legal_sha256`` in the pointer), appends the switch
    to the history, then publishes the pointer. When another switch is recorded first, the promotion is
    decided again on the new champion (see the module docstring).

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
    expected
        The champion the decision was taken against (the evaluate stage passes the one the gate compared
        with; None: there was none). When the champion is another one at the switch, nothing is written
        and :class:`ChampionMoved` is raised. Default: promote over whatever champion.
    now
        Clock (tests).

    Returns
    -------
    ChampionPointer
        The pointer of this promotion (the current one, unchanged, when ``version`` is already the
        champion). A later switch may already have replaced it when this returns.

    Raises
    ------
    RegistryError
        Unknown version or a model file that does not match its digest.
    ChampionMoved
        The champion is not ``expected``.
    ChampionContended
        Other switches kept winning.
    """
    card = read_card(lake, version)
    if not plan_promotion(read_state(lake), version, expected).switch:
        return _serving(lake)
    legal = attach_legal(lake, version)
    if legal is not None:
        card = card.with_legal(legal)
        lake.put_json(keys.model_file(version, CARD), card.to_json())
    pointer = _pointer_for(lake, version, card, now(), legal)

    def build(state: ChampionState) -> ChampionSwitch | None:
        plan = plan_promotion(state, version, expected)
        if not plan.switch:
            return None  # another writer promoted this very version meanwhile
        previous = plan.previous.version if plan.previous is not None else None
        return ChampionSwitch("promote", version, pointer.promoted_at, reason, previous, pointer, gate)

    entry, _ = _commit_switch(lake, build)
    return pointer if entry is not None else _serving(lake)


def _serving(lake: Lake) -> ChampionPointer:
    """The published champion (publishing the history's first when the pointer lags behind it)."""
    pointer = publish(lake)
    if pointer is None:  # pragma: no cover - a plan found a champion, so one of the two exists
        raise RegistryError("there is no champion pointer")
    return pointer


def rollback(lake: Lake, *, now: Callable[[], datetime] = _now) -> ChampionPointer:
    """Make the previous champion (the one before the last promotion) the champion again.

    Decided by :func:`plan_rollback`; when another switch is recorded first, the rollback is decided
    again on the new history (it then undoes that switch's promotion).

    Returns
    -------
    ChampionPointer
        The new pointer (the previous champion's, with a new ``promoted_at``).

    Raises
    ------
    RegistryError
        No champion, no previous champion, or a pointer the history does not know.
    """

    def build(state: ChampionState) -> ChampionSwitch:
        current, target = plan_rollback(state)
        legal = {"legal_key": target.legal_key, "legal_sha256": target.legal_sha256}
        pointer = _pointer_for(lake, target.version, read_card(lake, target.version), now(), legal)
        why = f"rollback from {current.version}"
        return ChampionSwitch("rollback", target.version, pointer.promoted_at, why, current.version, pointer)

    entry, _ = _commit_switch(lake, build)
    if entry is None:  # pragma: no cover - build records an entry or raises
        raise RegistryError("the rollback was not recorded")
    return entry.pointer
