"""The explore, train and evaluate functions on a moto lake, after ingest + clean through their handlers:
artifacts, lineage, the champion pointer, idempotence, the gate refusing a worse challenger, bad input."""

from __future__ import annotations

import hashlib
import io
import sys
import types
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import SAMPLES, load_event

POINTER_FIELDS = {"version", "model_key", "sha256", "card_key", "promoted_at"}


def ingest_and_clean(
    function: Callable[[str], Any], put_landing: Any, ctx: Any, name: str, data: bytes
) -> dict[str, Any]:
    """Land a file, ingest and clean it through the handlers; returns the clean function's answer."""
    function("ingest").handler(put_landing(name, data), ctx)
    return function("clean").handler({}, ctx)


def csv_bytes(rows: dict[str, list[Any]]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


@pytest.fixture
def course_lake(function: Callable[[str], Any], put_landing: Any, lake: Any, lambda_context: Any) -> Any:
    """A lake whose clean zone holds house_intact.csv (481 clean rows)."""
    cleaned = ingest_and_clean(
        function, put_landing, lambda_context, "house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()
    )
    assert cleaned["rows"]["clean"] == 481
    return lake


@pytest.fixture
def champion(function: Callable[[str], Any], course_lake: Any, lambda_context: Any) -> dict[str, Any]:
    """Explore → train → evaluate on the course data; returns the three answers."""
    explored = function("explore").handler(load_event("explore"), lambda_context)
    trained = function("train").handler(load_event("train"), lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    return {"explore": explored, "train": trained, "evaluate": evaluated}


def snapshot(lake: Any, prefix: str) -> dict[str, str]:
    return {k: lake.head(k)["etag"] for k in lake.list_keys(prefix)}


# ------------------------------------------------------------------------------------------ happy path
def test_course_data_gives_a_report_and_a_champion_with_every_artifact(
    champion: dict[str, Any], course_lake: Any
) -> None:
    lake = course_lake
    from rentlake.lake import keys

    # THEN the report run holds its summary (with hypotheses), the figures and one self-contained page
    explored = champion["explore"]
    assert explored["explored"] is True and explored["rows"] == 481
    run = explored["run_id"]
    summary = lake.get_json(keys.report_file(run, "summary.json"))
    assert summary["rows_usable"] == 481 and {h["id"] for h in summary["hypotheses"]} >= {"linear"}
    assert summary["lineage"]["rows_clean"] == 481
    pngs = [k for k in explored["keys"].values() if k.endswith(".png")]
    assert pngs and all(lake.get_bytes(k).startswith(b"\x89PNG") for k in pngs)
    page = lake.get_bytes(explored["report_key"]).decode()
    assert explored["report_key"] == f"reports/{run}/report.html"
    assert "data:image/png;base64," in page and 'src="http' not in page

    # AND training wrote a complete version whose model matches its digest everywhere
    trained = champion["train"]
    v = trained["version"]
    assert trained["trained"] is True and trained["metrics"]["n"] == trained["sizes"]["test"]
    for name in (
        "model.onnx",
        "model.onnx.sha256",
        "metrics.json",
        "card.json",
        "card.html",
        "test_set.parquet",
        "fit_bands.png",
        "evaluation.json",
    ):
        assert lake.exists(f"models/{v}/{name}"), name
    onnx = lake.get_bytes(f"models/{v}/model.onnx")
    digest = hashlib.sha256(onnx).hexdigest()
    assert lake.get_bytes(f"models/{v}/model.onnx.sha256").decode() == f"{digest}  model.onnx\n"

    # AND the card carries what the prediction side reads, and the lineage of the clean batches
    card = lake.get_json(f"models/{v}/card.json")
    assert card["version"] == v and card["sha256"] == digest and card["model_name"] == trained["model_name"]
    assert datetime.fromisoformat(card["trained_at"]).tzinfo is not None
    assert card["features"] == ["surface_m2"]
    assert card["feature_ranges"]["surface_m2"]["min"] >= 9 and card["feature_ranges"]["district"] == []
    assert card["interval"]["level"] == 0.9 and card["interval"]["scale"] == "log"
    assert card["interval"]["method"]
    assert card["metrics"]["mae"] == pytest.approx(trained["metrics"]["mae"])
    batch = lake.committed_batches("listings")[0]
    ingestion = lake.get_json(f"raw/_ingestions/{batch.ingestion_id}.json")
    [lineage_batch] = card["lineage"]["batches"]
    assert lineage_batch["ingestion_id"] == batch.ingestion_id
    assert lineage_batch["source_key"] == "landing/house_intact.csv"
    assert lineage_batch["source_sha256"] == ingestion["source_sha256"]
    sample_sha = hashlib.sha256((SAMPLES / "house_intact.csv").read_bytes()).hexdigest()
    assert lineage_batch["source_sha256"] == sample_sha
    assert card["data"]["lineage"] == card["lineage"]

    # AND the held-out rows are stored, and re-scoring them gives the card's metrics
    test_set = pd.read_parquet(io.BytesIO(lake.get_bytes(f"models/{v}/test_set.parquet")))
    assert len(test_set) == card["metrics"]["n"] == trained["sizes"]["test"]

    # AND the evaluate function promoted it: pointer format exact, written with a history entry
    evaluated = champion["evaluate"]
    assert evaluated["promoted"] is True and evaluated["gate"]["decision"] == "promote"
    assert evaluated["metrics"]["mae"] == pytest.approx(card["metrics"]["mae"])
    for m in ("mae", "rmse", "r2", "mape", "coverage", "mean_width"):
        assert np.isfinite(evaluated["metrics"][m]), m
    pointer = lake.get_json("models/champion.json")
    legal = {"legal_key", "legal_sha256"} & set(pointer)
    assert set(pointer) - legal == POINTER_FIELDS
    assert pointer == {
        "version": v,
        "model_key": f"models/{v}/model.onnx",
        "sha256": digest,
        "card_key": f"models/{v}/card.json",
        "promoted_at": pointer["promoted_at"],
    }
    assert datetime.fromisoformat(pointer["promoted_at"]).tzinfo is not None
    history = lake.get_json("models/champion_history.json")
    assert [(h["action"], h["version"]) for h in history] == [("promote", v)]
    assert history[0]["pointer"] == pointer and history[0]["previous"] is None
    evaluation = lake.get_json(f"models/{v}/evaluation.json")
    assert evaluation["gate"] == evaluated["gate"] and evaluation["champion"] is None
    assert "reference" in evaluation["diagnostics"]["training"]


def test_the_predict_side_loads_the_promoted_champion(champion: dict[str, Any], course_lake: Any) -> None:
    from rentlake.runtime.champion import load_champion

    # WHEN the runtime reads the pointer and the files it names
    model = load_champion(course_lake)
    # THEN it serves the promoted version, sha256-checked, with a positive 30 m² estimate inside its interval
    assert model.version == champion["train"]["version"]
    card = course_lake.get_json(f"models/{model.version}/card.json")
    assert model.card.surface_max == card["feature_ranges"]["surface_m2"]["max"]
    rent, low, high = model.predict(np.array([30.0]))
    assert 0 < low[0] < rent[0] < high[0]


def test_second_run_with_no_new_data_changes_nothing(
    champion: dict[str, Any], function: Any, course_lake: Any, lambda_context: Any
) -> None:
    # GIVEN a lake with a champion
    before = {p: snapshot(course_lake, p) for p in ("models/", "reports/")}
    # WHEN the three stages run again with no new clean data
    explored = function("explore").handler({}, lambda_context)
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN the report is reused, training is skipped naming the champion, nothing is promoted or written
    v = champion["train"]["version"]
    assert explored["reused"] is True and explored["run_id"] == champion["explore"]["run_id"]
    assert trained == {
        "trained": False,
        "skipped": True,
        "version": v,
        "reason": f"no new clean data since version {v} (the champion)",
        "held": [],
        "newly_held": [],
    }
    assert evaluated["promoted"] is False and evaluated["skipped"] is True
    assert {p: snapshot(course_lake, p) for p in ("models/", "reports/")} == before


def test_two_trainings_of_the_same_data_in_the_same_second_write_two_versions(course_lake: Any) -> None:
    from rentlake import registry
    from rentlake.events import TrainRequest
    from rentlake.stages import train

    # GIVEN a version trained on the course data at T (its id: T and the data's hash)
    at = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    first = train.run(course_lake, TrainRequest(force=True), now=lambda: at)
    files = snapshot(course_lake, f"models/{first['version']}/")
    # WHEN another training of the same data asks for the same second
    second = train.run(course_lake, TrainRequest(force=True), now=lambda: at)
    # THEN it took the next second's id and wrote its own version; the first is untouched
    assert first["version"].startswith("20310504T030201Z-")
    assert second["version"] == first["version"].replace("030201Z", "030202Z")
    assert registry.list_versions(course_lake) == [first["version"], second["version"]]
    assert snapshot(course_lake, f"models/{first['version']}/") == files


def test_new_clean_data_trains_a_challenger_judged_on_the_same_rows(
    champion: dict[str, Any], function: Any, put_landing: Any, course_lake: Any, lambda_context: Any
) -> None:
    # GIVEN a second batch of plausible listings (same price level as the course data)
    rng = np.random.default_rng(7)
    surface = rng.uniform(15, 90, 120).round()
    rent = (surface * rng.uniform(25, 35, 120)).round()
    ingest_and_clean(
        function, put_landing, lambda_context, "more.csv", csv_bytes({"loyer": rent, "surface": surface})
    )
    # WHEN train and evaluate run
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN a new version is trained on both batches and the champion was scored on its held-out rows
    assert trained["trained"] is True and trained["version"] != champion["train"]["version"]
    assert len(trained["lineage"]["batches"]) == 2
    assert evaluated["champion"]["version"] == champion["train"]["version"]
    assert evaluated["champion"]["metrics"]["n"] == evaluated["metrics"]["n"] == trained["sizes"]["test"]
    pointer = course_lake.get_json("models/champion.json")
    expected = trained["version"] if evaluated["promoted"] else champion["train"]["version"]
    assert pointer["version"] == expected


def test_worse_challenger_is_refused_and_the_champion_stays(
    champion: dict[str, Any], function: Any, course_lake: Any, lambda_context: Any
) -> None:
    from rentlake import registry
    from rentlake.model.train import train

    lake = course_lake
    v1 = champion["train"]["version"]
    pointer_before = lake.get_bytes("models/champion.json")
    history_before = lake.get_json("models/champion_history.json")
    # GIVEN a challenger trained on deliberately corrupted rents (×1.6), stored with the champion's held-out
    # rows so that both are scored on the same, true, rents
    df = lake.read_clean("listings")
    bad = train(
        df.assign(rent_eur=df["rent_eur"] * 1.6),
        seed=1,
        make_files=False,
        trained_at=datetime(2031, 1, 1, tzinfo=UTC),
    )
    bad.test_set = registry.read_test_set(lake, v1)
    registry.save_version(lake, bad, lineage={"batches": []})
    # WHEN the evaluate function judges it
    evaluated = function("evaluate").handler(load_event("evaluate", VERSION=bad.version), lambda_context)
    # THEN the gate refuses it with the MAE comparison among its reasons, and nothing switched
    assert evaluated["promoted"] is False and evaluated["gate"]["decision"] == "keep"
    assert evaluated["champion"]["version"] == v1
    assert evaluated["metrics"]["mae"] > 1.05 * evaluated["champion"]["metrics"]["mae"]
    assert any("worse than the champion" in r for r in evaluated["gate"]["reasons"])
    assert lake.get_bytes("models/champion.json") == pointer_before
    assert lake.get_json("models/champion_history.json") == history_before
    assert lake.get_json(f"models/{bad.version}/evaluation.json")["gate"]["passed"] is False


def test_corrupted_model_file_is_never_promoted(
    champion: dict[str, Any], function: Any, course_lake: Any, lambda_context: Any
) -> None:
    from rentlake import registry
    from rentlake.events import TrainRequest
    from rentlake.stages import train as train_stage

    lake = course_lake
    pointer_before = lake.get_bytes("models/champion.json")
    # GIVEN a second version whose model.onnx was replaced after training
    trained = train_stage.run(lake, TrainRequest(force=True), now=lambda: datetime(2031, 1, 1, tzinfo=UTC))
    v2 = trained["version"]
    lake.put_bytes(f"models/{v2}/model.onnx", b"not the trained graph")
    # WHEN it is evaluated THEN the digest check refuses it by name and the champion is unchanged
    with pytest.raises(registry.RegistryError, match=f"model {v2}: sha256"):
        function("evaluate").handler({"version": v2}, lambda_context)
    assert lake.get_bytes("models/champion.json") == pointer_before


def test_evaluating_an_unknown_version_names_the_known_ones(
    champion: dict[str, Any], function: Any, lambda_context: Any
) -> None:
    from rentlake.registry import RegistryError

    with pytest.raises(RegistryError, match=f"no model version 'nope'.*{champion['train']['version']}"):
        function("evaluate").handler({"version": "nope"}, lambda_context)


def test_malformed_events_are_refused_by_name(function: Any, lambda_context: Any) -> None:
    from rentlake.events import BadEvent

    with pytest.raises(BadEvent, match="seed"):
        function("train").handler({"seed": "many"}, lambda_context)
    with pytest.raises(BadEvent, match="version"):
        function("evaluate").handler({}, lambda_context)
    with pytest.raises(BadEvent, match="run_id"):
        function("explore").handler({"run_id": "../escape"}, lambda_context)


# -------------------------------------------------------------------------------------- legal lookup
def test_promotion_attaches_the_legal_lookup_when_the_reference_module_provides_it(
    function: Any, course_lake: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.lake import keys

    # GIVEN a fake reference module that writes models/<v>/legal.json
    calls: list[str] = []

    def attach_to_model(lake: Any, version: str) -> dict[str, Any]:
        calls.append(version)
        data = b'{"format": "fake"}'
        key = keys.model_file(version, "legal.json")
        lake.put_bytes(key, data)
        return {"legal_key": key, "legal_sha256": hashlib.sha256(data).hexdigest(), "years": [2017]}

    monkeypatch.setitem(
        sys.modules, "rentlake.legal.compile", types.SimpleNamespace(attach_to_model=attach_to_model)
    )
    # WHEN a model is trained and promoted
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN the pointer and the card carry the lookup
    v = trained["version"]
    assert evaluated["promoted"] is True and calls == [v]
    pointer = course_lake.get_json("models/champion.json")
    assert set(pointer) == POINTER_FIELDS | {"legal_key", "legal_sha256"}
    assert pointer["legal_key"] == f"models/{v}/legal.json"
    assert pointer["legal_sha256"] == hashlib.sha256(b'{"format": "fake"}').hexdigest()
    assert course_lake.get_json(f"models/{v}/card.json")["legal"]["years"] == [2017]


def test_promotion_without_a_reference_module_serves_without_legal(
    function: Any, course_lake: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no rentlake.legal.compile module at all (None in sys.modules makes the import fail as missing)
    monkeypatch.setitem(sys.modules, "rentlake.legal.compile", None)
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN promotion still happens, with the plain pointer
    assert evaluated["promoted"] is True
    assert set(course_lake.get_json("models/champion.json")) == POINTER_FIELDS


# ------------------------------------------------------------------------------------------ bad input
def assert_nothing_trained(lake: Any) -> None:
    # no version, no pointer, no history: under models/ there are only the batches' review records
    # (a batch is reviewed once, whether or not a model can be trained on it)
    assert [k for k in lake.list_keys("models/") if not k.startswith("models/_batches/")] == []
    assert all(k.endswith(".json") for k in lake.list_keys("models/_batches/"))


def test_empty_clean_zone_is_a_clear_refusal(function: Any, lake: Any, lambda_context: Any) -> None:
    # GIVEN a lake where nothing was ever cleaned WHEN the three stages run
    explored = function("explore").handler({}, lambda_context)
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN each says why, and nothing is written
    assert explored == {"explored": False, "reason": explored["reason"]} and "empty" in explored["reason"]
    assert trained["trained"] is False and trained["skipped"] is False
    assert "clean zone of 'listings' is empty" in trained["reason"]
    assert evaluated["promoted"] is False and evaluated["reason"] == trained["reason"]
    assert_nothing_trained(lake)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"loyer": [900, 1000, 1100, 1200, 1300], "surface": [30, 32, 35, 40, 45]}, "only 5 usable rows"),
        ({"loyer": list(range(700, 1300, 20)), "surface": [30] * 30}, "same surface"),
        ({"loyer": [1000] * 30, "surface": list(range(25, 55))}, "same rent"),
    ],
    ids=["tiny", "single_surface", "constant_rent"],
)
def test_degenerate_clean_data_is_refused_with_its_reason(
    rows: dict[str, list[Any]], message: str, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN a clean zone that cannot support a model
    cleaned = ingest_and_clean(function, put_landing, lambda_context, "bad.csv", csv_bytes(rows))
    assert cleaned["rows"]["clean"] == len(rows["loyer"])
    # WHEN train and evaluate run
    trained = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(trained, lambda_context)
    # THEN training is refused with the reason, and no version or pointer exists
    assert trained["trained"] is False and message in trained["reason"]
    assert evaluated["promoted"] is False and evaluated["skipped"] is True
    assert_nothing_trained(lake)


def test_all_nan_surface_column_is_refused(
    function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN a file whose surface column is empty: every row is quarantined, the clean batch has no rows
    cleaned = ingest_and_clean(
        function,
        put_landing,
        lambda_context,
        "nan.csv",
        csv_bytes({"loyer": list(range(700, 1300, 20)), "surface": [np.nan] * 30}),
    )
    assert cleaned["rows"]["clean"] == 0
    # WHEN the model stages run THEN both refuse, saying there is nothing usable
    explored = function("explore").handler({}, lambda_context)
    trained = function("train").handler({}, lambda_context)
    assert explored["explored"] is False and trained["trained"] is False
    assert "no rows" in trained["reason"] and "no rows" in explored["reason"]
    assert_nothing_trained(lake)


def test_exploration_report_describes_the_listings_not_their_lineage(course_lake: Any) -> None:
    from rentlake.events import ExploreRequest
    from rentlake.lake import keys
    from rentlake.stages import explore

    # WHEN the clean course data (one batch) is explored
    run = explore.run(course_lake, ExploreRequest())["run_id"]
    summary = course_lake.get_json(keys.report_file(run, "summary.json"))
    # THEN the columns, missing values and constant columns are the listings' own, not the lineage's
    assert summary["columns"] == ["rent_eur", "surface_m2", "district", "listed_at"]
    assert not {"source_key", "source_etag", "source_sha256"} & set(summary["constant_columns"])


def test_a_challenger_whose_champion_changed_while_it_was_judged_is_not_promoted(
    course_lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry
    from rentlake.events import TrainRequest
    from rentlake.stages import evaluate
    from rentlake.stages import train as train_stage

    lake = course_lake
    # GIVEN two versions of the course data (two seeds) and no champion yet
    first = train_stage.run(lake, TrainRequest(), now=lambda: datetime(2031, 1, 1, tzinfo=UTC))["version"]
    second = train_stage.run(
        lake, TrainRequest(force=True, seed=7), now=lambda: datetime(2031, 1, 2, tzinfo=UTC)
    )["version"]
    real_replace = lake.replace_json
    others: list[str] = []

    def another_promotion_lands_first(key: str, obj: Any, *, etag: str | None) -> str:
        if key == "models/champion_history.json" and not others:
            others.append(first)
            registry.promote(lake, first, reason="manual")  # another writer, between decision and switch
        return real_replace(key, obj, etag=etag)

    monkeypatch.setattr(lake, "replace_json", another_promotion_lands_first)
    # WHEN the second is judged (against no champion) and passes the gate
    out = evaluate.judge(lake, second)
    # THEN it is not promoted: the answer names the champion that won instead, and nothing else switched
    assert out["gate"]["passed"] is True and out["champion"] is None
    assert out["promoted"] is False and out["lost_to"] == first and "another promotion won" in out["reason"]
    assert registry.read_pointer(lake).version == first
    assert [(h.action, h.version) for h in registry.read_history(lake)] == [("promote", first)]
    # AND its evaluation record says the promotion was lost
    evaluation = lake.get_json(f"models/{second}/evaluation.json")
    assert evaluation["will_promote"] is False and "changed from none to" in evaluation["promotion_lost"]
