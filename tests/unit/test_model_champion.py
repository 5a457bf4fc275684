"""The champion's records and the registry's switch decisions, without a lake (GIVEN / WHEN / THEN)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rentlake import registry
from rentlake.records import ChampionPointer, ChampionSwitch, ModelCard, RecordError
from rentlake.registry import ChampionMoved, ChampionState, RegistryError, plan_promotion, plan_rollback

DIGEST = "ab" * 32


def pointer_doc(name: str, promoted_at: str = "2030-01-01T01:00:00+00:00", **changes: Any) -> dict[str, Any]:
    return {
        "version": name,
        "model_key": f"models/{name}/model.onnx",
        "sha256": DIGEST,
        "card_key": f"models/{name}/card.json",
        "promoted_at": promoted_at,
        **changes,
    }


def pointer(version: str, minute: int = 0) -> ChampionPointer:
    return ChampionPointer.from_json(pointer_doc(version, f"2030-01-01T01:{minute:02d}:00+00:00"))


def switch(action: str, p: ChampionPointer, previous: str | None) -> ChampionSwitch:
    gate = {} if action == "promote" else None
    return ChampionSwitch(action, p.version, p.promoted_at, action, previous, p, gate)


def card_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model": {"name": "ols", "format": "onnx"},
        "intended_use": "estimate the monthly rent",
        "data": {"rows": 475, "train": 380, "test": 95, "split": "random", "lineage": None},
        "features": ["surface_m2"],
        "feature_ranges": {"surface_m2": {"min": 9.0, "max": 250}, "districts": [], "district": []},
        "interval": {"level": 0.9, "method": "cross-conformal", "scale": "log", "log_halfwidth": 0.3},
        "metrics": {"n": 95, "mae": 150.0, "coverage": 0.9},
        "selection": {"chosen": "ols"},
        "diagnostics": {"served_scale": {"flags": []}},
        "limits": ["trained on surfaces from 9 to 250 m²"],
        "version": "v1",
        "trained_at": "2030-01-01T00:00:00+00:00",
        "model_name": "ols",
        "sha256": DIGEST,
        "lineage": {"batches": [{"ingestion_id": "b"}, {"ingestion_id": "a"}]},
        "artifacts": {"model.onnx": "models/v1/model.onnx"},
        "legal": None,
        "plot_sample": [[30.0, 900.5], [45, 1200]],
    }
    doc.update(changes)
    return doc


# ------------------------------------------------------------------------------------------- records
def test_a_pointer_reads_and_writes_the_registry_layout() -> None:
    # GIVEN the pointer the registry writes, with and without a legal lookup
    plain = pointer_doc("v1")
    legal = pointer_doc(
        "v1",
        legal_key="models/v1/legal.json",
        legal_sha256="c" * 64,
        legal_refreshed_at="2030-02-01T00:00:00+00:00",
    )
    # WHEN read and written back THEN the JSON is unchanged, key for key
    assert ChampionPointer.from_json(plain).to_json() == plain
    assert json.dumps(ChampionPointer.from_json(legal).to_json()) == json.dumps(legal)
    assert ChampionPointer.from_json(legal).legal_key == "models/v1/legal.json"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (["not", "an", "object"], "champion pointer: expected a JSON object, not list"),
        ({k: v for k, v in pointer_doc("v1").items() if k != "model_key"}, "field 'model_key' is missing"),
        (pointer_doc("v1", sha256="abc"), "field 'sha256' should be a sha256 digest"),
        (pointer_doc("v1", version=3), "field 'version' should be a string, not int"),
        (pointer_doc("v1", promoted_at="yesterday"), "field 'promoted_at' should be an ISO 8601 time"),
        (pointer_doc("v1", promoted_at="2030-01-01T00:00:00"), "field 'promoted_at' has no time zone"),
        (pointer_doc("v1", legal_key="models/v1/legal.json"), "field 'legal_sha256' is missing"),
    ],
    ids=["not-object", "missing", "digest", "type", "time", "naive-time", "legal-pair"],
)
def test_a_broken_pointer_is_refused_naming_the_field(doc: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        ChampionPointer.from_json(doc)


def test_a_history_entry_keeps_its_layout_and_checks_its_pointer() -> None:
    # GIVEN a promotion and a rollback as the registry writes them
    promote = {
        "action": "promote",
        "version": "v2",
        "at": "2030-01-01T01:00:00+00:00",
        "reason": "gate",
        "gate": {"passed": True},
        "previous": "v1",
        "pointer": pointer_doc("v2"),
    }
    back = {
        "action": "rollback",
        "version": "v1",
        "at": "2030-01-01T02:00:00+00:00",
        "reason": "rollback from v2",
        "previous": "v2",
        "pointer": pointer_doc("v1"),
    }
    # THEN each reads and writes back identically (a rollback has no gate)
    for doc in (promote, back):
        assert ChampionSwitch.from_json(doc).to_json() == doc
    # AND an entry whose version is not its pointer's, or an unknown action, is refused by name
    with pytest.raises(RecordError, match="field 'version' \\(v9\\) is not the pointer's \\(v2\\)"):
        ChampionSwitch.from_json({**promote, "version": "v9"})
    with pytest.raises(RecordError, match="field 'action' should be one of"):
        ChampionSwitch.from_json({**promote, "action": "demote"})


def test_a_card_keeps_every_field_and_types_what_code_reads() -> None:
    doc = card_doc()
    # WHEN a card is read THEN the fields code reads are typed
    card = ModelCard.from_json(doc)
    assert (card.version, card.model_name, card.level, card.surface_range) == ("v1", "ols", 0.9, (9.0, 250.0))
    assert card.districts == () and card.batch_ids == ["a", "b"]
    assert card.plot_sample == ((30.0, 900.5), (45.0, 1200.0))
    assert card.documentation["limits"] == doc["limits"] and card.documentation["model"]["name"] == "ols"
    # AND written back, it is the same JSON document
    assert card.to_json() == doc
    # AND a legal lookup attaches without touching the rest
    legal = {"legal_key": "models/v1/legal.json", "years": [2017]}
    assert card.with_legal(legal).to_json() == {**doc, "legal": legal}


def test_a_minimal_card_as_the_prediction_side_knows_it_is_read() -> None:
    # GIVEN a card with only the fields the API needs (no sha256, lineage, artifacts or plot sample)
    doc = {
        "version": "v1",
        "trained_at": "2026-05-01T12:00:00+00:00",
        "model_name": "synthetic",
        "metrics": {"mae_eur": 150.0},
        "features": ["surface_m2", "district"],
        "feature_ranges": {"surface_m2": {"min": 9.0, "max": 250.0}, "district": ["75001"]},
        "interval": {"level": 0.9, "method": "synthetic", "scale": "log"},
    }
    card = ModelCard.from_json(doc)
    # THEN it is read, and the optional fields are empty
    assert card.districts == ("75001",) and card.sha256 is None and card.plot_sample is None
    assert "plot_sample" not in card.to_json() and card.to_json()["features"] == ["surface_m2", "district"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": []}, "field 'features' is empty"),
        ({"features": ["surface_m2", 3]}, "field 'features' should be a list of strings"),
        ({"feature_ranges": {"surface_m2": {"min": 9.0}}}, "surface_m2: field 'max' is missing"),
        ({"feature_ranges": {"surface_m2": {"min": 90, "max": 9}}}, "min 90 above max 9"),
        ({"interval": {"level": 90, "scale": "log"}}, "field 'interval.level' should be in \\(0, 1\\)"),
        ({"interval": {"level": 0.9, "scale": "sqrt"}}, "field 'interval.scale' should be one of"),
        ({"interval": {"level": "0.9"}}, "interval: field 'level' should be a number"),
        ({"sha256": "not-a-digest"}, "field 'sha256' should be a sha256 digest"),
        ({"metrics": None}, "field 'metrics' is missing"),
        ({"plot_sample": [[30.0]]}, "field 'plot_sample' should list \\[surface, rent\\] pairs"),
        ({"artifacts": {"model.onnx": 1}}, "field 'artifacts' should map file names to keys"),
    ],
    ids=[
        "no-features",
        "feature-type",
        "range-max",
        "range-order",
        "level",
        "scale",
        "level-type",
        "digest",
        "metrics",
        "points",
        "artifacts",
    ],
)
def test_a_broken_card_is_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        ModelCard.from_json(card_doc(**changes))


# ------------------------------------------------------------------------------------ switch decisions
def state(history: list[ChampionSwitch], published: ChampionPointer | None = None) -> ChampionState:
    top = registry.champion_stack(history)
    return ChampionState(
        published if published is not None else (top[-1] if top else None),
        "etag",
        history,
        "etag" if history else None,
    )


def test_the_history_replays_as_a_stack_whose_top_is_the_champion() -> None:
    # GIVEN v1, then v2 promoted, then a rollback that brings v1 back under a new pointer
    p1, p2, back = pointer("v1", 0), pointer("v2", 1), pointer("v1", 2)
    history = [switch("promote", p1, None), switch("promote", p2, "v1"), switch("rollback", back, "v2")]
    # THEN the stack after each switch ends with the champion of that moment
    assert registry.champion_stack(history[:1]) == [p1]
    assert registry.champion_stack(history[:2]) == [p1, p2]
    assert registry.champion_stack(history) == [back]
    assert registry.champion_of(state(history)) == back


def test_a_promotion_is_decided_on_the_history_champion() -> None:
    p1 = pointer("v1")
    history = [switch("promote", p1, None)]
    # THEN promoting another version switches from v1, and promoting v1 again records nothing
    assert plan_promotion(state(history), "v2") == registry.PromotionPlan(switch=True, previous=p1)
    assert plan_promotion(state(history), "v1").switch is False
    # AND the first promotion has no previous champion
    assert plan_promotion(state([]), "v1") == registry.PromotionPlan(switch=True, previous=None)
    # AND a pointer published without the registry (no history) is the champion decided on
    by_hand = pointer("v0")
    assert plan_promotion(state([], published=by_hand), "v1").previous == by_hand


def test_a_promotion_expecting_another_champion_is_refused() -> None:
    history = [switch("promote", pointer("v1"), None)]
    # WHEN the gate compared the challenger with no champion, but v1 was promoted meanwhile
    with pytest.raises(ChampionMoved, match="changed from none to v1") as lost:
        plan_promotion(state(history), "v2", expected=None)
    assert (lost.value.expected, lost.value.actual) == (None, "v1")
    # THEN against the right champion it is decided as usual
    assert plan_promotion(state(history), "v2", expected="v1").switch is True


def test_a_rollback_goes_back_one_promotion_and_no_further() -> None:
    p1, p2 = pointer("v1", 0), pointer("v2", 1)
    history = [switch("promote", p1, None), switch("promote", p2, "v1")]
    # THEN from v2 it goes back to v1
    assert plan_rollback(state(history)) == (p2, p1)
    # AND with one promotion, or none, it is refused by name
    with pytest.raises(RegistryError, match="v1 is the first champion"):
        plan_rollback(state(history[:1]))
    with pytest.raises(RegistryError, match="there is no champion"):
        plan_rollback(state([]))


def test_a_rollback_tolerates_a_lagging_pointer_but_not_one_written_by_hand() -> None:
    p1, p2 = pointer("v1", 0), pointer("v2", 1)
    history = [switch("promote", p1, None), switch("promote", p2, "v1")]
    # GIVEN the pointer still at v1 (the writer of v2's switch died before publishing) THEN v2 is undone
    assert plan_rollback(state(history, published=p1)) == (p2, p1)
    # GIVEN a pointer to v9 the history never recorded THEN the rollback is refused
    with pytest.raises(RegistryError, match="names v9 but the history does not end with it"):
        plan_rollback(state(history, published=pointer("v9")))
    # GIVEN a pointer published without any history THEN too
    with pytest.raises(RegistryError, match="names v9 but the history does not end with it"):
        plan_rollback(state([], published=pointer("v9")))
