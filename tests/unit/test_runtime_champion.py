"""The champion cache: sha256 check, one session per container, timed refresh, safe swaps."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest


# `lake`: tests/conftest.py's chain (fake credentials -> mock_aws() -> bucket -> Lake).
class Clock:
    """Injectable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _publish(lake: object, version: str, a: float = 118.0, **kw: object) -> dict:
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    return publish_champion(lake, version, make_onnx_model(a=a), make_card(version), **kw)  # type: ignore[arg-type]


def _rent30(model: object) -> float:
    rent, _, _ = model.predict(np.array([30.0]))  # type: ignore[attr-defined]
    return float(rent[0])


def test_no_champion_is_model_unavailable_with_clear_message(lake: object) -> None:
    # GIVEN an empty registry
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.errors import ModelUnavailable

    cache = ChampionCache(lake)  # type: ignore[arg-type]
    # WHEN a request needs the model THEN it is told to run the training pipeline
    with pytest.raises(ModelUnavailable, match="no model has been promoted yet; run the training pipeline"):
        cache.get()


def test_model_is_loaded_once_and_predicts_the_power_law(lake: object) -> None:
    # GIVEN a champion rent = 118 * s^0.68
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.testing import expected_rent

    _publish(lake, "v1")
    clock = Clock()
    cache = ChampionCache(lake, refresh_seconds=60, clock=clock)  # type: ignore[arg-type]
    # WHEN asked three times within the refresh period
    first = cache.get()
    clock.now += 30
    again = [cache.get(), cache.get()]
    # THEN one session was built, reused, and answers the law
    assert cache.loads == 1
    assert all(m is first for m in again)
    assert first.version == "v1"
    assert _rent30(first) == pytest.approx(expected_rent(30), rel=1e-5)


def test_sha256_mismatch_at_first_load_is_unavailable_and_not_retried(lake: object) -> None:
    # GIVEN a pointer whose sha256 does not match the model file
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.errors import ModelUnavailable

    _publish(lake, "v1", sha256="0" * 64)
    clock = Clock()
    cache = ChampionCache(lake, refresh_seconds=60, clock=clock)  # type: ignore[arg-type]
    # WHEN loaded THEN refused with a message naming the mismatch
    with pytest.raises(ModelUnavailable, match="sha256"):
        cache.get()
    # AND a second request does not download the same bad model again
    lake.get_bytes = None  # type: ignore[attr-defined]  # would raise TypeError if called
    lake.get_json_or_none = lambda key: {  # type: ignore[attr-defined]
        "version": "v1",
        "model_key": "models/v1/model.onnx",
        "sha256": "0" * 64,
    }
    with pytest.raises(ModelUnavailable, match="sha256"):
        cache.get()
    assert cache.loads == 0


def test_corrupted_model_file_is_unavailable(lake: object) -> None:
    # GIVEN a champion whose file is not ONNX (checksum honestly computed on the garbage)
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.errors import ModelUnavailable
    from rentlake.runtime.testing import make_card, publish_champion

    publish_champion(lake, "v1", b"not an onnx model", make_card("v1"))  # type: ignore[arg-type]
    cache = ChampionCache(lake)  # type: ignore[arg-type]
    # WHEN loaded THEN a 503-type error with a public message and the detail kept for the logs
    with pytest.raises(ModelUnavailable) as info:
        cache.get()
    assert str(info.value) == "champion v1: the model file cannot be loaded"
    assert info.value.detail


def test_pointer_is_rechecked_only_after_refresh_seconds_and_model_switches(lake: object) -> None:
    # GIVEN v1 served, then v2 promoted (a = 2x)
    from rentlake.runtime.champion import ChampionCache

    _publish(lake, "v1", a=100.0)
    clock = Clock()
    cache = ChampionCache(lake, refresh_seconds=60, clock=clock)  # type: ignore[arg-type]
    v1 = cache.get()
    _publish(lake, "v2", a=200.0)
    # WHEN less than refresh_seconds passed THEN still v1 (pointer not re-read)
    clock.now += 59
    assert cache.get() is v1
    # WHEN the period is over THEN v2 is swapped in, and answers twice v1's rent
    clock.now += 2
    v2 = cache.get()
    assert v2.version == "v2"
    assert _rent30(v2) == pytest.approx(2 * _rent30(v1), rel=1e-5)
    assert cache.loads == 2


def test_failed_refresh_keeps_serving_the_old_model(
    lake: object, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library's records may be bound to a function's JSON handler; let caplog's root handler see them.
    monkeypatch.setattr(logging.getLogger("rentlake"), "propagate", True)
    # GIVEN v1 served, then a corrupted v2 promoted
    from rentlake.runtime.champion import ChampionCache

    _publish(lake, "v1")
    clock = Clock()
    cache = ChampionCache(lake, refresh_seconds=10, clock=clock)  # type: ignore[arg-type]
    v1 = cache.get()
    _publish(lake, "v2", sha256="f" * 64)
    # WHEN the refresh finds it
    clock.now += 11
    served = cache.get()
    # THEN v1 is still served and the problem is logged
    assert served is v1
    assert "still serving v1" in caplog.text
    # AND once a good v3 is promoted it is picked up at the next check
    _publish(lake, "v3", a=50.0)
    clock.now += 11
    assert cache.get().version == "v3"


def test_no_request_fails_while_the_champion_switches(lake: object) -> None:
    # GIVEN 4 threads asking for the model while the champion switches every check
    from rentlake.runtime.champion import ChampionCache

    _publish(lake, "v1")
    cache = ChampionCache(lake, refresh_seconds=0.0)  # type: ignore[arg-type]  # re-check every request
    cache.get()
    errors: list[BaseException] = []
    versions: set[str] = set()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                m = cache.get()
                versions.add(m.version)
                assert _rent30(m) > 0
            except BaseException as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    # WHEN three new champions are promoted meanwhile
    for v in ("v2", "v3", "v4"):
        _publish(lake, v, a=100.0 + len(versions))
        deadline = threading.Event()
        for _ in range(200):
            if cache.peek() is not None and cache.peek().version == v:  # type: ignore[union-attr]
                break
            deadline.wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    # THEN no request failed and the last champion is served
    assert errors == []
    assert cache.peek().version == "v4"  # type: ignore[union-attr]


def test_missing_bucket_configuration_is_unavailable_not_a_crash() -> None:
    # GIVEN a cache whose lake cannot be built (RENTLAKE_BUCKET unset)
    from rentlake.lake import Lake
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.errors import ModelUnavailable

    cache = ChampionCache(lambda: Lake(""))
    # WHEN asked THEN a 503-type error, not an exception at import
    with pytest.raises(ModelUnavailable, match="not configured"):
        cache.get()


def test_percentile_level_matches_card_level() -> None:
    # GIVEN the level of the contract
    from rentlake.runtime.interval import Z_90, z_for_level

    # THEN the z of a 90 % interval is 1.6449
    assert z_for_level(0.9) == pytest.approx(Z_90, abs=1e-9)
    assert z_for_level(0.8) == pytest.approx(1.2815515655, abs=1e-8)


def test_a_read_failure_at_first_load_is_retried_not_remembered_as_a_broken_model(lake: object) -> None:
    # GIVEN a good champion whose model file cannot be read once (a throttled GET)
    from rentlake.lake import LakeError
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.errors import ModelUnavailable

    _publish(lake, "v1")
    real_get_bytes = lake.get_bytes  # type: ignore[attr-defined]
    calls = {"n": 0}

    def flaky(key: str) -> bytes:
        calls["n"] += key.endswith(".onnx")
        if calls["n"] == 1 and key.endswith(".onnx"):
            raise LakeError(f"cannot read s3://bucket/{key}: SlowDown")
        return real_get_bytes(key)

    lake.get_bytes = flaky  # type: ignore[attr-defined]
    cache = ChampionCache(lake)  # type: ignore[arg-type]
    # WHEN the first request meets the failure THEN it is a 503-type error
    with pytest.raises(ModelUnavailable, match="cannot read its files"):
        cache.get()
    # AND the next request loads the model (the pointer was not marked broken)
    assert cache.get().version == "v1"
    assert cache.loads == 1


def test_use_lake_starts_afresh_with_the_default_loader(lake: object) -> None:
    # GIVEN a cache serving through another loader (the benchmark's sklearn baseline does this)
    import dataclasses

    from rentlake.runtime.champion import ChampionCache, fetch_champion

    _publish(lake, "v1")

    def relabelled(lk: object, pointer: dict) -> object:
        return dataclasses.replace(fetch_champion(lk, pointer), pointer={**pointer, "version": "other"})  # type: ignore[arg-type]

    cache = ChampionCache(lake, loader=relabelled)  # type: ignore[arg-type]
    assert cache.get().version == "other"
    # WHEN it is pointed at a lake again, as a predict module does at import
    cache.use_lake(lake, refresh_seconds=5)  # type: ignore[arg-type]
    # THEN the model is reloaded with the default loader and the new refresh period
    assert cache.peek() is None
    assert cache.get().version == "v1" and cache.refresh_seconds == 5 and cache.loads == 2
