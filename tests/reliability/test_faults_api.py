"""Faults while the API serves: a corrupted model or pointer, a champion switched under load, a broken
pointer at cold start. Served by ``make_server`` on 127.0.0.1, champion on a moto server."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest

from tests.support import leaks_in, publish, served_api

LISTING = {"surface_m2": 30.0}


def _logged_errors(capfd: pytest.CaptureFixture[str]) -> list[str]:
    """Messages of the ERROR lines the function logged (JSON, on stderr) since the last call."""
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    return [str(x.get("message")) for x in lines if x.get("level") in ("ERROR", "CRITICAL")]


def test_corrupted_model_or_pointer_keeps_the_last_good_model_serving_and_is_logged(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from rentlake.lake import keys
    from rentlake.runtime.testing import make_onnx_model

    with served_api(refresh_seconds=0) as api:
        # GIVEN the API serving champion v1 (the pointer is re-read on every request)
        assert api.estimate(LISTING)[1]["model_version"] == "v1"
        capfd.readouterr()

        # WHEN v2 is promoted but its model.onnx is corrupted (bytes do not match the pointer's sha256)
        good = make_onnx_model(a=130.0)
        pointer = publish(api.lake, "v2", a=130.0)
        api.lake.put_bytes(keys.model_file("v2", "model.onnx"), good[: len(good) // 2])
        answers = [api.estimate(LISTING) for _ in range(5)]
        # THEN every answer is a 200 from v1, the last good model
        assert [(s, b["model_version"]) for s, b in answers] == [(200, "v1")] * 5
        # AND the problem is logged (a JSON line of the function) naming the version and the checksum
        errors = _logged_errors(capfd)
        assert any("still serving v1" in m and "v2" in m and "sha256" in m for m in errors), errors

        # WHEN the pointer itself is corrupted (not JSON)
        api.lake.put_bytes(keys.champion(), b'{"version": "v3", "model_key": ')
        answers = [api.estimate(LISTING) for _ in range(5)]
        # THEN v1 still answers, and the unreadable pointer is logged
        assert [(s, b["model_version"]) for s, b in answers] == [(200, "v1")] * 5
        errors = _logged_errors(capfd)
        assert any("still serving v1" in m and "champion pointer" in m for m in errors), errors

        # WHEN a good pointer comes back THEN the API switches to it
        api.lake.put_json(keys.champion(), {**pointer, "sha256": hashlib.sha256(good).hexdigest()})
        api.lake.put_bytes(keys.model_file("v2", "model.onnx"), good)
        assert api.estimate(LISTING)[1]["model_version"] == "v2"


@pytest.mark.parametrize(
    "pointer",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"version": "v1"}',
        b'{"version": "v1", "model_key": "models/v1/none.onnx", "sha256": "00"}',
    ],
    ids=["empty", "not-json", "not-an-object", "no-model-key", "missing-model"],
)
def test_corrupted_pointer_at_cold_start_is_a_clear_503_and_nothing_else(pointer: bytes) -> None:
    from rentlake.lake import keys

    # GIVEN a cold API whose champion pointer is corrupted
    with served_api(champion=None) as api:
        api.lake.put_bytes(keys.champion(), pointer)
        # WHEN estimates, the model and the plot are asked for
        answers = [
            api.request("POST", "/estimates", json.dumps(LISTING), {"Content-Type": "application/json"}),
            api.request("GET", "/model"),
            api.request("GET", "/plot-data"),
        ]
        # THEN each is a 503 model_unavailable with a sentence, no internal detail; liveness stays 200
        for status, headers, body in answers:
            assert status == 503, body
            assert headers["content-type"].startswith("application/json")
            error = json.loads(body)["error"]
            assert error["code"] == "model_unavailable"
            assert "champion" in error["message"] and len(error["message"]) > 20
            assert leaks_in(body.decode()) == []
        assert api.request("GET", "/health")[0] == 200


def test_champion_switch_under_load_fails_no_request_and_versions_go_old_then_new() -> None:
    with served_api(refresh_seconds=0) as api:
        # GIVEN 8 clients sending estimates continuously to an API serving v1
        stop = threading.Event()
        seen: list[list[tuple[int, str]]] = [[] for _ in range(8)]
        failures: list[str] = []

        def client(i: int) -> None:
            import http.client

            conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
            try:
                while not stop.is_set():
                    try:
                        status, body = api.estimate({"surface_m2": 25.0 + i}, conn)
                    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is allowed
                        failures.append(f"client {i}: {type(exc).__name__}: {exc}")
                        return
                    seen[i].append((status, body.get("model_version", "?")))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()

        def every_client_saw(version: str | None) -> None:
            # Waits on what the clients saw, not on the clock: a loaded machine slows the answers, and a
            # client that had no answer before a switch would never see the old version.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not failures:
                if all(any(version in (None, v) for _, v in per) for per in seen):
                    return
                time.sleep(0.05)

        # WHEN v2 is promoted (pointer switched) while they run, then v3
        every_client_saw(None)
        publish(api.lake, "v2", a=130.0)
        every_client_saw("v2")
        publish(api.lake, "v3", a=140.0)
        every_client_saw("v3")
        stop.set()
        for t in threads:
            t.join(30)
        # THEN no request failed: all 200
        answers = [a for per in seen for a in per]
        assert failures == []
        assert {s for s, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
        # AND each client saw v1, then v2, then v3, never going back
        order = {"v1": 1, "v2": 2, "v3": 3}
        for per in seen:
            versions = [order[v] for _, v in per]
            assert versions == sorted(versions), per
            assert versions[0] == 1 and versions[-1] == 3
        assert {v for _, v in answers} == {"v1", "v2", "v3"}
        print(
            "switch under load:",
            len(answers),
            "requests,",
            {v: sum(1 for _, x in answers if x == v) for v in order},
        )


def test_estimates_answer_with_the_lake_gone_after_load(capfd: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that loaded v1 WHEN the lake stops answering (bucket deleted) with a refresh due
    import boto3

    with served_api(refresh_seconds=0) as api:
        assert api.estimate(LISTING)[0] == 200
        s3: Any = boto3.client("s3", endpoint_url=api.moto.endpoint, region_name="eu-west-3")
        for key in api.lake.list_keys(""):
            s3.delete_object(Bucket=api.lake.bucket, Key=key)
        s3.delete_bucket(Bucket=api.lake.bucket)
        capfd.readouterr()
        answers = [api.estimate(LISTING) for _ in range(3)]
        # THEN it keeps answering with v1 and logs why it could not refresh
        assert [(s, b["model_version"]) for s, b in answers] == [(200, "v1")] * 3
        assert any("still serving v1" in m for m in _logged_errors(capfd))
