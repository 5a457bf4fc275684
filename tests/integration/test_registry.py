"""The model registry on a moto lake: complete versions, the champion pointer written last, history,
manual promotion, rollback, digest checks and the legal-lookup hook."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import types
from collections.abc import Callable
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
    assert card.version == v1 and card.feature_ranges["district"] == [] and card.districts == ()


def test_a_version_id_is_written_by_one_writer_only(lake: Any) -> None:
    from rentlake import registry
    from rentlake.model.train import train

    # GIVEN a stored version, and another training of other data that got the same id (same second)
    v1 = new_version(lake, 1)
    files = {k: lake.get_bytes(k) for k in lake.list_keys(f"models/{v1}/")}
    other = train(listings(7), seed=7, trained_at=T0, make_files=False)
    other.version = v1
    # WHEN the second writer stores it
    with pytest.raises(registry.VersionTaken, match=v1):
        registry.save_version(lake, other, lineage={"dataset": "listings", "batches": []})
    # THEN nothing of the first version was overwritten
    assert {k: lake.get_bytes(k) for k in lake.list_keys(f"models/{v1}/")} == files
    assert registry.read_card(lake, v1).sha256 == hashlib.sha256(files[f"models/{v1}/model.onnx"]).hexdigest()


def test_promotion_writes_the_history_then_the_whole_pointer_last(
    lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    puts: list[str] = []
    real_put, real_replace = lake.put_bytes, lake.replace_json

    def recording(key: str, data: bytes, **kw: Any) -> str:
        puts.append(key)
        return real_put(key, data, **kw)

    def recording_swap(key: str, obj: Any, *, etag: str | None) -> str:
        puts.append(f"{key} (compare-and-swap)")
        return real_replace(key, obj, etag=etag)

    monkeypatch.setattr(lake, "put_bytes", recording)
    monkeypatch.setattr(lake, "replace_json", recording_swap)
    # WHEN the version is promoted
    pointer = registry.promote(lake, v1, reason="test", now=clock(0))
    # THEN the pointer is written once, last, right after the history entry, both by compare-and-swap
    assert puts[-2:] == [
        "models/champion_history.json (compare-and-swap)",
        "models/champion.json (compare-and-swap)",
    ]
    assert puts.count("models/champion.json (compare-and-swap)") == 1
    assert "models/champion.json" not in puts
    digest = hashlib.sha256(lake.get_bytes(f"models/{v1}/model.onnx")).hexdigest()
    assert (
        lake.get_json("models/champion.json")
        == pointer.to_json()
        == {
            "version": v1,
            "model_key": f"models/{v1}/model.onnx",
            "sha256": digest,
            "card_key": f"models/{v1}/card.json",
            "promoted_at": (T0 + timedelta(hours=1)).isoformat(),
        }
    )
    [entry] = registry.read_history(lake)
    assert entry.action == "promote" and entry.reason == "test" and entry.pointer == pointer


def test_rollback_undoes_the_last_promotion_then_refuses(lake: Any, two_versions: tuple[str, str]) -> None:
    from rentlake import registry

    v1, v2 = two_versions
    registry.promote(lake, v1, reason="first", now=clock(0))
    registry.promote(lake, v2, reason="second", now=clock(1))
    # WHEN rolled back
    pointer = registry.rollback(lake, now=clock(2))
    # THEN v1 serves again (new promoted_at), and the history records the three switches
    assert pointer.version == v1 and lake.get_json("models/champion.json") == pointer.to_json()
    assert pointer.promoted_at == clock(2)().isoformat()
    history = registry.read_history(lake)
    assert [(h.action, h.version, h.previous) for h in history] == [
        ("promote", v1, None),
        ("promote", v2, v1),
        ("rollback", v1, v2),
    ]
    assert [r["version"] for r in registry.describe(lake) if r["champion"]] == [v1]
    # AND a second rollback has nowhere to go: clear refusal, pointer unchanged
    with pytest.raises(registry.RegistryError, match="first champion: there is no previous one"):
        registry.rollback(lake)
    assert lake.get_json("models/champion.json") == pointer.to_json()


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


def test_a_model_that_does_not_match_its_digest_is_never_promoted(
    lake: Any, two_versions: tuple[str, str]
) -> None:
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


def test_legal_lookup_follows_promotion_and_rollback(
    lake: Any, two_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
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
    assert p2.legal_key == f"models/{v2}/legal.json"
    assert registry.read_card(lake, v2).legal["years"] == [2017]
    # WHEN rolled back THEN the pointer names v1's own lookup again
    back = registry.rollback(lake)
    assert (back.legal_key, back.legal_sha256) == (p1.legal_key, p1.legal_sha256)
    assert back.legal_key == f"models/{v1}/legal.json"


def test_reference_module_absent_is_skipped_but_other_import_errors_propagate(
    lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry

    v1 = new_version(lake, 1)
    # GIVEN no reference module: nothing attached
    monkeypatch.setitem(sys.modules, "rentlake.legal.compile", None)
    assert registry.attach_legal(lake, v1) is None
    # GIVEN a reference module that itself imports something missing: a real bug, not silenced
    monkeypatch.setattr(registry, "REFERENCE_MODULE", "rentlake_missing_package.reference")
    with pytest.raises(ModuleNotFoundError, match="rentlake_missing_package"):
        registry.attach_legal(lake, v1)


# --------------------------------------------------------------------------- concurrent switches (CAS)
class SwitchRace:
    """Two writers, each with its own lake client (two Lambda invocations), switching at the same time.

    The barrier holds each writer's first history commit until both have read and decided on the same
    state, so the race the registry must survive happens on every run, not by luck. On moto, an
    ``If-Match`` is checked and written in two steps that threads can interleave, where S3 does both
    atomically: ``atomic`` makes each conditional write atomic, as on S3, and nothing more (reads and
    decisions still interleave freely). The local folder's own lock does that for itself.
    """

    def __init__(self, make_lake: Callable[[], Any], *, atomic: bool) -> None:
        import threading

        self.barrier = threading.Barrier(2, timeout=60)
        self.atomic = threading.Lock() if atomic else contextlib.nullcontext()
        self.make_lake = make_lake

    def lake(self) -> Any:
        import threading

        lake = self.make_lake()
        real_replace = lake.replace_json
        waited = threading.Event()

        def replace_json(key: str, obj: Any, *, etag: str | None) -> str:
            if key == "models/champion_history.json" and not waited.is_set():
                waited.set()
                self.barrier.wait()
            with self.atomic:
                return real_replace(key, obj, etag=etag)

        lake.replace_json = replace_json
        return lake

    def run(self, *calls: Any) -> list[Any]:
        """Run each ``call(lake)`` in its own thread; returns each result or the exception it raised."""
        from concurrent.futures import ThreadPoolExecutor

        lakes = [self.lake() for _ in calls]
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(call, lk) for call, lk in zip(calls, lakes, strict=True)]
            return [f.exception() or f.result() for f in futures]


@pytest.fixture(params=["s3", "folder"])
def race(request: pytest.FixtureRequest, bucket: str, tmp_path: Any) -> tuple[Any, SwitchRace, Any]:
    """One lake on moto S3 or in a local folder, two trained versions, and a race of two clients on it."""
    from rentlake.lake import Lake, open_lake

    if request.param == "s3":

        def make_lake() -> Any:
            lake = Lake(bucket, "rentlake")
            lake.s3  # noqa: B018 - create the client here, not concurrently in the threads
            return lake

        switch_race = SwitchRace(make_lake, atomic=True)
    else:

        def make_lake() -> Any:
            return open_lake(tmp_path / "lake")

        switch_race = SwitchRace(make_lake, atomic=False)
    lake = make_lake()
    return lake, switch_race, (new_version(lake, 1), new_version(lake, 2, minutes=5))


def test_two_promotions_at_once_are_both_recorded_in_order(race: Any) -> None:
    from rentlake import registry

    lake, switch_race, (v1, v2) = race
    # GIVEN no champion WHEN two writers promote v1 and v2 at the same time (both decided on "no champion")
    p1, p2 = switch_race.run(
        lambda lk: registry.promote(lk, v1, reason="one", now=clock(1)),
        lambda lk: registry.promote(lk, v2, reason="two", now=clock(2)),
    )
    # THEN neither failed: the writer whose history swap lost decided again on the new champion
    assert (p1.version, p2.version) == (v1, v2)
    history = registry.read_history(lake)
    first, second = (h.version for h in history)
    assert {first, second} == {v1, v2}
    # AND the history has both switches, in order: the second replaced the first
    assert [(h.action, h.version, h.previous) for h in history] == [
        ("promote", first, None),
        ("promote", second, first),
    ]
    # AND the pointer names the later switch, whose files exist and match its digest
    pointer = registry.read_pointer(lake)
    assert pointer == history[-1].pointer and pointer.version == second
    model = lake.get_bytes(pointer.model_key)
    assert hashlib.sha256(model).hexdigest() == pointer.sha256
    assert registry.read_card(lake, second).sha256 == pointer.sha256
    # AND a rollback undoes the later one
    assert registry.rollback(lake, now=clock(3)).version == first


def test_two_gate_promotions_against_the_same_champion_one_wins_the_other_reports_it(race: Any) -> None:
    from rentlake import registry

    lake, switch_race, (v1, v2) = race
    # GIVEN no champion WHEN both challengers, each judged against "no champion", are promoted at once
    out = switch_race.run(
        lambda lk: registry.promote(lk, v1, reason="gate", expected=None, now=clock(1)),
        lambda lk: registry.promote(lk, v2, reason="gate", expected=None, now=clock(2)),
    )
    # THEN exactly one is promoted and the other says which champion won instead of switching
    [winner] = [r for r in out if not isinstance(r, Exception)]
    [lost] = [r for r in out if isinstance(r, Exception)]
    assert isinstance(lost, registry.ChampionMoved)
    assert (lost.expected, lost.actual) == (None, winner.version)
    assert "another promotion won" in str(lost)
    # AND the history holds the one switch and the pointer names it
    [entry] = registry.read_history(lake)
    assert (entry.action, entry.version, entry.previous) == ("promote", winner.version, None)
    assert registry.read_pointer(lake) == winner == entry.pointer


def test_a_switch_that_keeps_losing_gives_up_and_changes_nothing(
    lake: Any, two_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry
    from rentlake.lake import PreconditionFailed

    v1, v2 = two_versions
    registry.promote(lake, v1, reason="first", now=clock(0))
    before = (lake.get_bytes("models/champion.json"), lake.get_bytes("models/champion_history.json"))
    attempts: list[str] = []

    def always_lost(key: str, obj: Any, *, etag: str | None) -> str:
        attempts.append(key)
        raise PreconditionFailed(f"{key} was written by another writer")

    monkeypatch.setattr(lake, "replace_json", always_lost)
    # WHEN every history swap loses THEN the promotion gives up after the bounded attempts, by name
    with pytest.raises(registry.ChampionContended, match="changed 5 times"):
        registry.promote(lake, v2, reason="second", now=clock(1))
    assert attempts == ["models/champion_history.json"] * registry.MAX_ATTEMPTS
    # AND nothing was written
    assert (lake.get_bytes("models/champion.json"), lake.get_bytes("models/champion_history.json")) == before


def test_a_pointer_left_behind_by_a_dead_writer_is_published_by_the_next_switch(
    lake: Any, two_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry

    v1, v2 = two_versions
    registry.promote(lake, v1, reason="first", now=clock(0))
    real_replace = lake.replace_json

    def dies_before_publishing(key: str, obj: Any, *, etag: str | None) -> str:
        if key == "models/champion.json":
            raise RuntimeError("killed")
        return real_replace(key, obj, etag=etag)

    # GIVEN a promotion of v2 whose writer died after recording it, before publishing the pointer
    monkeypatch.setattr(lake, "replace_json", dies_before_publishing)
    with pytest.raises(RuntimeError, match="killed"):
        registry.promote(lake, v2, reason="second", now=clock(1))
    monkeypatch.setattr(lake, "replace_json", real_replace)
    assert registry.read_pointer(lake).version == v1
    assert [h.version for h in registry.read_history(lake)] == [v1, v2]
    # WHEN the champion is asked for, and published THEN the history's champion, v2, is published
    assert registry.champion(lake).version == v2
    assert registry.publish(lake).version == v2
    assert registry.read_pointer(lake) == registry.read_history(lake)[-1].pointer
    # AND a rollback then undoes v2's promotion
    assert registry.rollback(lake, now=clock(2)).version == v1


def test_a_legal_refresh_that_loses_to_a_promotion_decides_again_on_the_new_champion(
    lake: Any, two_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake import registry

    v1, v2 = two_versions
    table = b'{"years": [2019]}'
    fake = types.SimpleNamespace(
        build_artifact=lambda lk: ({"years": [2019]}, table),
        refreshed_artifact_name=lambda sha: f"legal-{sha[:12]}.json",
        legal_summary=lambda doc, key, data: {"legal_key": key, "legal_years": {"PARIS": doc["years"]}},
    )
    monkeypatch.setitem(sys.modules, "rentlake.legal.compile", fake)
    registry.promote(lake, v1, reason="first", now=clock(0))
    real_replace = lake.replace_json
    swaps: list[str] = []

    def promotion_lands_first(key: str, obj: Any, *, etag: str | None) -> str:
        if key == "models/champion.json" and not swaps:
            swaps.append(obj["version"])
            # GIVEN a promotion of v2 that lands between the refresh's read and its swap
            registry.promote(lake, v2, reason="second", now=clock(1))
        return real_replace(key, obj, etag=etag)

    monkeypatch.setattr(lake, "replace_json", promotion_lands_first)
    # WHEN the legal lookup is refreshed
    refreshed = registry.refresh_legal(lake, now=clock(2))
    # THEN its first swap (for v1) lost, and it refreshed the new champion v2 instead
    sha = hashlib.sha256(table).hexdigest()
    assert swaps == [v1]
    assert refreshed == {"legal_key": f"models/{v2}/legal-{sha[:12]}.json", "legal_years": {"PARIS": [2019]}}
    pointer = registry.read_pointer(lake)
    assert (pointer.version, pointer.legal_sha256, pointer.legal_key) == (v2, sha, refreshed["legal_key"])
    assert pointer.legal_refreshed_at == clock(2)().isoformat()
    assert lake.get_bytes(pointer.legal_key) == table
    # AND the promotion's history is intact
    assert [h.version for h in registry.read_history(lake)] == [v1, v2]
