"""The model registry on a moto lake: complete versions, the champion pointer written last, history,
manual promotion, rollback, digest checks and the legal-lookup hook."""

from __future__ import annotations

import hashlib
import sys
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def listings(seed: int, n: int = 200, level: float = 30.0) -> pd.DataFrame:
    """Plausible Paris listings: rent ≈ level €/m² × surface, log-normal spread."""
    rng = np.random.default_rng(seed)
    surface = rng.uniform(15, 120, n).round()
    rent = np.exp(np.log(level * surface) + rng.normal(0, 0.15, n)).round()
    return pd.DataFrame({"rent_eur": rent, "surface_m2": surface})


def new_version(lake: Any, seed: int, minutes: int = 0) -> str:
    """Train on synthetic listings and store the version (no plots: fast)."""
    from rentlake import registry
    from rentlake.model.train import train

    result = train(listings(seed), seed=seed, trained_at=T0 + timedelta(minutes=minutes), make_files=False)
    registry.save_version(lake, result, lineage={"dataset": "listings", "batches": []})
    return result.version


@pytest.fixture
def two_versions(lake: Any) -> tuple[str, str]:
    return new_version(lake, 1), new_version(lake, 2, minutes=5)


def clock(minutes: int) -> Any:
    return lambda: T0 + timedelta(hours=1, minutes=minutes)


def test_only_complete_versions_are_listed(lake: Any) -> None:
    from rentlake import registry

    # GIVEN one stored version and the leftovers of a training that died before writing its card
    v1 = new_version(lake, 1)
    lake.put_bytes("models/20300101T000000Z-deadbeef0000/model.onnx", b"partial")
    # THEN only the complete version is listed, with its headline metrics and no gate decision yet
    assert registry.list_versions(lake) == [v1]
    [row] = registry.describe(lake)
    assert row["version"] == v1 and row["champion"] is False and row["gate"] is None
    assert set(row["metrics"]) == set(registry.HEADLINE)
    card = registry.read_card(lake, v1)
    assert card["version"] == v1 and card["feature_ranges"]["district"] == []


def test_promotion_writes_the_history_then_the_whole_pointer_last(lake: Any, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    puts: list[str] = []
    real_put = lake.put_bytes

    def recording(key: str, data: bytes, **kw: Any) -> str:
        puts.append(key)
        return real_put(key, data, **kw)

    monkeypatch.setattr(lake, "put_bytes", recording)
    # WHEN the version is promoted
    pointer = registry.promote(lake, v1, reason="test", now=clock(0))
    # THEN the pointer is written once, last, right after the history entry
    assert puts[-2:] == ["models/champion_history.json", "models/champion.json"]
    assert puts.count("models/champion.json") == 1
    digest = hashlib.sha256(lake.get_bytes(f"models/{v1}/model.onnx")).hexdigest()
    assert lake.get_json("models/champion.json") == pointer == {
        "version": v1, "model_key": f"models/{v1}/model.onnx", "sha256": digest,
        "card_key": f"models/{v1}/card.json", "promoted_at": (T0 + timedelta(hours=1)).isoformat(),
    }
    [entry] = registry.read_history(lake)
    assert entry["action"] == "promote" and entry["reason"] == "test" and entry["pointer"] == pointer


def test_rollback_undoes_the_last_promotion_then_refuses(lake: Any, two_versions: tuple[str, str]) -> None:
    from rentlake import registry

    v1, v2 = two_versions
    registry.promote(lake, v1, reason="first", now=clock(0))
    registry.promote(lake, v2, reason="second", now=clock(1))
    # WHEN rolled back
    pointer = registry.rollback(lake, now=clock(2))
    # THEN v1 serves again (new promoted_at), and the history records the three switches
    assert pointer["version"] == v1 and lake.get_json("models/champion.json") == pointer
    assert pointer["promoted_at"] == clock(2)().isoformat()
    history = registry.read_history(lake)
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", v1, None), ("promote", v2, v1), ("rollback", v1, v2)]
    assert [r["version"] for r in registry.describe(lake) if r["champion"]] == [v1]
    # AND a second rollback has nowhere to go: clear refusal, pointer unchanged
    with pytest.raises(registry.RegistryError, match="first champion: there is no previous one"):
        registry.rollback(lake)
    assert lake.get_json("models/champion.json") == pointer


def test_rollback_without_a_champion_is_refused(lake: Any) -> None:
    from rentlake import registry

    with pytest.raises(registry.RegistryError, match="there is no champion"):
        registry.rollback(lake)
    assert not lake.exists("models/champion.json")


def test_unknown_version_is_refused_and_the_pointer_unchanged(lake: Any) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    registry.promote(lake, v1, reason="first")
    before = lake.get_bytes("models/champion.json")
    with pytest.raises(registry.RegistryError, match=f"no model version 'v-unknown'.*known versions: {v1}"):
        registry.promote(lake, "v-unknown", reason="manual")
    assert lake.get_bytes("models/champion.json") == before
    assert len(registry.read_history(lake)) == 1


def test_a_model_that_does_not_match_its_digest_is_never_promoted(lake: Any,
                                                                   two_versions: tuple[str, str]) -> None:
    from rentlake import registry

    v1, v2 = two_versions
    registry.promote(lake, v1, reason="first")
    before = lake.get_bytes("models/champion.json")
    # GIVEN v2's model replaced after training
    lake.put_bytes(f"models/{v2}/model.onnx", lake.get_bytes(f"models/{v1}/model.onnx"))
    # THEN promoting it is refused by name
    with pytest.raises(registry.RegistryError, match=f"model {v2}: sha256 .* does not match"):
        registry.promote(lake, v2, reason="manual")
    assert lake.get_bytes("models/champion.json") == before


def test_promoting_the_champion_again_changes_nothing(lake: Any) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    first = registry.promote(lake, v1, reason="first", now=clock(0))
    assert registry.promote(lake, v1, reason="again", now=clock(5)) == first
    assert len(registry.read_history(lake)) == 1


def test_legal_lookup_follows_promotion_and_rollback(lake: Any, two_versions: tuple[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rentlake import registry
    from rentlake.lake import keys

    def attach_to_model(lk: Any, version: str) -> dict[str, Any]:
        data = f'{{"for": "{version}"}}'.encode()
        key = keys.model_file(version, "legal.json")
        lk.put_bytes(key, data)
        return {"legal_key": key, "legal_sha256": hashlib.sha256(data).hexdigest(), "years": [2017]}

    fake = types.SimpleNamespace(attach_to_model=attach_to_model)
    monkeypatch.setitem(sys.modules, "rentlake.legal.compile", fake)
    v1, v2 = two_versions
    p1 = registry.promote(lake, v1, reason="first")
    p2 = registry.promote(lake, v2, reason="second")
    assert p2["legal_key"] == f"models/{v2}/legal.json"
    assert registry.read_card(lake, v2)["legal"]["years"] == [2017]
    # WHEN rolled back THEN the pointer names v1's own lookup again
    back = registry.rollback(lake)
    assert (back["legal_key"], back["legal_sha256"]) == (p1["legal_key"], p1["legal_sha256"])


def test_reference_module_absent_is_skipped_but_other_import_errors_propagate(
        lake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    # GIVEN no reference module: nothing attached
    monkeypatch.setitem(sys.modules, "rentlake.legal.compile", None)
    assert registry.attach_legal(lake, v1) is None
    # GIVEN a reference module that itself imports something missing: a real bug, not silenced
    monkeypatch.setattr(registry, "REFERENCE_MODULE", "rentlake_missing_package.reference")
    with pytest.raises(ModuleNotFoundError, match="rentlake_missing_package"):
        registry.attach_legal(lake, v1)
