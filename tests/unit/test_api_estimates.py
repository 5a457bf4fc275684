"""The predict function through its handler: API Gateway HTTP API v2 events in, JSON answers out."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import pytest

from tests.support import ROOT, FakeContext, load_function

EVENTS = ROOT / "tests" / "events"  # API Gateway events, beside the tests (infra/events has the batch ones)
CONTEXT = FakeContext()  # Lambda's context: the handler's Powertools logger reads it


# `lake`: tests/conftest.py's chain (fake credentials -> mock_aws() -> bucket -> Lake).
@pytest.fixture
def predict(lake: Any) -> ModuleType:
    """A fresh predict module (one per test = one container), configured from the environment."""
    return load_function("predict")


@pytest.fixture
def champion(lake: Any) -> dict[str, Any]:
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    return publish_champion(
        lake,
        "v1",
        make_onnx_model(district_factors={"75006": 1.3}),
        make_card("v1", districts=["75006", "75019"]),
    )


def call(
    mod: ModuleType,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: str | None = None,
    ctype: str | None = "application/json",
) -> tuple[int, dict[str, str], Any]:
    from rentlake.runtime.events import http_api_event

    text = raw if raw is not None else (None if body is None else json.dumps(body))
    event = http_api_event(method, path, text, headers={"content-type": ctype} if ctype else {})
    resp = mod.handler(event, CONTEXT)
    headers = {k.lower(): v for k, v in resp.get("headers", {}).items()}
    ct = headers.get("content-type", "")
    payload = json.loads(resp["body"]) if ct.startswith("application/json") else resp["body"]
    return resp["statusCode"], headers, payload


def assert_error(status: int, payload: Any, expected_status: int, code: str) -> list[dict[str, str]]:
    """The error contract: 4xx/503, {"error": {"code", "message", "fields"}}, nothing internal."""
    assert status == expected_status, payload
    assert set(payload) == {"error"}
    err = payload["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    text = json.dumps(payload)
    for leak in ("Traceback", ".py", "/work/", "site-packages", "s3://"):
        assert leak not in text
    return err["fields"]


# ----------------------------------------------------------------------------------------- answers
def test_single_listing_answer(predict: ModuleType, champion: dict[str, Any]) -> None:
    # GIVEN the sample event of the repository (30 m2 in 75006, paying 1 900)
    from rentlake.runtime.testing import expected_rent

    event = json.loads((EVENTS / "predict_single.json").read_text())
    # WHEN it goes through the handler
    resp = predict.handler(event, CONTEXT)
    body = json.loads(resp["body"])
    # THEN one answer object with the estimate, its interval, the verdict and the percentile
    rent = expected_rent(30.0, factor=1.3)
    assert resp["statusCode"] == 200
    assert body["rent_eur"] == round(rent)
    assert body["interval"] == {
        "low": round(rent * math.exp(-0.4)),
        "high": round(rent * math.exp(0.4)),
        "level": 0.9,
    }
    assert body["model_version"] == "v1"
    assert body["warnings"] == []
    assert body["verdict"] == "within"
    assert 0 <= body["percentile"] <= 100


def test_batch_answer(predict: ModuleType, champion: dict[str, Any]) -> None:
    # GIVEN the batch sample event: 3 listings, one with an unseen district, one extrapolated
    event = json.loads((EVENTS / "predict_batch.json").read_text())
    resp = predict.handler(event, CONTEXT)
    body = json.loads(resp["body"])
    # THEN {"estimates": [...], "model_version"} in order, warnings where due
    assert resp["statusCode"] == 200
    assert body["model_version"] == "v1"
    assert [e["rent_eur"] > 0 for e in body["estimates"]] == [True, True, True]
    assert body["estimates"][0]["warnings"] == []
    assert body["estimates"][1]["warnings"] == [
        "district 'Atlantis' was not seen in training: the estimate ignores it"
    ]
    assert "outside the range the model was trained on (9–250 m²)" in body["estimates"][2]["warnings"][0]
    assert body["estimates"][2]["verdict"] == "below"


def test_batch_of_1000_is_accepted(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(
        predict, "POST", "/estimates", {"listings": [{"surface_m2": 20 + i % 50} for i in range(1000)]}
    )
    assert status == 200 and len(body["estimates"]) == 1000


def test_get_model_describes_the_champion(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "GET", "/model")
    assert status == 200
    assert body["version"] == "v1"
    assert body["trained_at"] == "2026-05-01T12:00:00+00:00"
    assert body["metrics"] == {"mae_eur": 150.0, "coverage_90": 0.9}
    assert body["feature_ranges"] == {
        "surface_m2": {"min": 9.0, "max": 250.0},
        "district": ["75006", "75019"],
    }
    assert body["promoted_at"] == champion["promoted_at"]


def test_health_does_not_need_a_model(predict: ModuleType) -> None:
    status, _, body = call(predict, "GET", "/health")
    assert (status, body) == (200, {"status": "ok", "model_version": None})


def test_openapi_document_describes_the_api(predict: ModuleType) -> None:
    # WHEN the OpenAPI document is fetched
    status, _, doc = call(predict, "GET", "/openapi.json")
    # THEN it is generated from the pydantic models
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert {"/estimates", "/model", "/health"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"Listing", "ListingBatch", "Estimate", "EstimateBatch", "ErrorBody"} <= set(schemas)
    surface = schemas["Listing"]["properties"]["surface_m2"]
    # the listings contract's surface range (rentlake.contracts.ranges), not a looser one of the API's
    assert (surface["minimum"], surface["maximum"]) == (9, 1000) and "exclusiveMinimum" not in surface
    assert schemas["ListingBatch"]["properties"]["listings"]["maxItems"] == 1000
    assert schemas["Listing"]["additionalProperties"] is False


def test_docs_page_is_self_contained(predict: ModuleType) -> None:
    # WHEN the docs page is fetched THEN it is HTML with the Swagger UI inlined (no CDN script or CSS)
    status, headers, page = call(predict, "GET", "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page
    assert '<script src="http' not in page and '<link rel="stylesheet" href="http' not in page
    assert "/estimates" in page


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("raw", "field", "problem_part"),
    [
        ('{"surface_m2": "30"}', "surface_m2", "must be a number"),
        ('{"surface_m2": NaN}', "surface_m2", "finite"),
        ('{"surface_m2": Infinity}', "surface_m2", "finite"),
        ('{"surface_m2": -Infinity}', "surface_m2", "finite"),
        ('{"surface_m2": "NaN"}', "surface_m2", "must be a number"),
        ('{"surface_m2": "Infinity"}', "surface_m2", "must be a number"),
        ('{"surface_m2": 1e400}', "surface_m2", "finite"),
        ('{"surface_m2": 0}', "surface_m2", "must be between 9 and 1000 m²"),
        ('{"surface_m2": -12}', "surface_m2", "must be between 9 and 1000 m²"),
        ('{"surface_m2": 8.99}', "surface_m2", "must be between 9 and 1000 m²"),
        ('{"surface_m2": 1001}', "surface_m2", "must be between 9 and 1000 m²"),
        ('{"surface_m2": true}', "surface_m2", "must be a number"),
        ('{"surface_m2": 30, "current_rent_eur": -5}', "current_rent_eur", "must not be negative"),
        ('{"surface_m2": 30, "current_rent_eur": NaN}', "current_rent_eur", "finite"),
        ('{"surface_m2": 30, "floor": 2}', "floor", "unknown field"),
        ('{"district": "75006"}', "surface_m2", "required"),
        ('{"surface_m2": 30, "district": 75006}', "district", "must be a string"),
        ('{"surface_m2": 30, "district": ""}', "district", "must not be empty"),
        (
            '{"listings": [{"surface_m2": 30}, {"surface_m2": 20}, {"surface_m2": 25}, {"surface_m2": -1}]}',
            "listings[3].surface_m2",
            "must be between 9 and 1000 m²",
        ),
        ('{"listings": [{"surface_m2": 30, "bogus": 1}]}', "listings[0].bogus", "unknown field"),
        ('{"listings": []}', "listings", "at least 1"),
        ('{"listings": {"surface_m2": 30}}', "listings", "must be a list"),
        ('{"listings": [{"surface_m2": 30}], "extra": 1}', "extra", "unknown field"),
        ("[]", "body", "JSON object"),
        ("42", "body", "JSON object"),
    ],
)
def test_invalid_requests_are_422_naming_field_and_problem(
    predict: ModuleType, champion: dict[str, Any], raw: str, field: str, problem_part: str
) -> None:
    # GIVEN an invalid body WHEN posted
    status, _, body = call(predict, "POST", "/estimates", raw=raw)
    # THEN 422 with the field and its problem
    fields = assert_error(status, body, 422, "invalid_request")
    assert any(f["field"] == field and problem_part in f["problem"] for f in fields), fields


def test_too_many_listings(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "POST", "/estimates", {"listings": [{"surface_m2": 30}] * 1001})
    fields = assert_error(status, body, 422, "invalid_request")
    assert fields == [{"field": "listings", "problem": "at most 1000 items per request"}]


@pytest.mark.parametrize("raw", ['{"surface_m2": 3', "{surface_m2: 30}", "not json", '{"a": 1}}'])
def test_malformed_json_is_400(predict: ModuleType, champion: dict[str, Any], raw: str) -> None:
    status, _, body = call(predict, "POST", "/estimates", raw=raw)
    fields = assert_error(status, body, 400, "malformed_json")
    assert fields == [{"field": "body", "problem": "malformed JSON"}]


def test_json_nested_too_deeply_is_400_not_5xx(predict: ModuleType, champion: dict[str, Any]) -> None:
    # GIVEN a small body (40 KB, under the size limit) nested 5 000 levels deep
    raw = '{"a":' * 5000 + "1" + "}" * 5000
    # WHEN posted THEN the parser's recursion limit is the client's problem: a 400 naming it
    status, _, body = call(predict, "POST", "/estimates", raw=raw)
    fields = assert_error(status, body, 400, "malformed_json")
    assert fields == [{"field": "body", "problem": "nested too deeply"}]


def test_a_number_with_too_many_digits_is_400_not_5xx(predict: ModuleType, champion: dict[str, Any]) -> None:
    # GIVEN an integer of 5 000 digits (Python refuses to parse more than 4 300)
    status, _, body = call(predict, "POST", "/estimates", raw='{"surface_m2": ' + "9" * 5000 + "}")
    # THEN a 400 naming the body, not the 503 of an unexpected error
    fields = assert_error(status, body, 400, "malformed_json")
    assert fields == [{"field": "body", "problem": "number too long"}]


def test_a_boolean_is_not_a_surface(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": True})
    fields = assert_error(status, body, 422, "invalid_request")
    assert fields == [{"field": "surface_m2", "problem": "must be a number (not a string, boolean or null)"}]


def test_empty_body_is_422(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "POST", "/estimates", raw="")
    fields = assert_error(status, body, 422, "invalid_request")
    assert fields[0]["field"] == "body" and "empty" in fields[0]["problem"]


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", None]
)
def test_wrong_content_type_is_415(predict: ModuleType, champion: dict[str, Any], ctype: str | None) -> None:
    status, _, body = call(predict, "POST", "/estimates", raw='{"surface_m2": 30}', ctype=ctype)
    assert_error(status, body, 415, "unsupported_media_type")


def test_json_with_charset_is_accepted(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, _ = call(
        predict, "POST", "/estimates", raw='{"surface_m2": 30}', ctype="application/json; charset=utf-8"
    )
    assert status == 200


def test_oversized_body_is_413(predict: ModuleType, champion: dict[str, Any]) -> None:
    raw = json.dumps({"listings": [{"surface_m2": 30.123456789, "district": "x" * 60}] * 3000})
    assert len(raw) > 256 * 1024
    status, _, body = call(predict, "POST", "/estimates", raw=raw)
    assert_error(status, body, 413, "payload_too_large")


def test_base64_body_is_decoded(predict: ModuleType, champion: dict[str, Any]) -> None:
    import base64

    from rentlake.runtime.events import http_api_event

    event = http_api_event(
        "POST", "/estimates", '{"surface_m2": 30}', headers={"content-type": "application/json"}
    )
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert predict.handler(event, CONTEXT)["statusCode"] == 200
    event["body"] = base64.b64encode(b"\xff\xfe{").decode()
    resp = predict.handler(event, CONTEXT)
    assert_error(resp["statusCode"], json.loads(resp["body"]), 400, "malformed_json")


def test_unknown_route_is_404_and_wrong_method_405(predict: ModuleType) -> None:
    status, _, body = call(predict, "GET", "/nowhere")
    assert_error(status, body, 404, "not_found")
    status, _, body = call(predict, "DELETE", "/estimates")
    assert_error(status, body, 405, "method_not_allowed")


def test_no_champion_is_503_with_clear_message(predict: ModuleType) -> None:
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30})
    assert_error(status, body, 503, "model_unavailable")
    assert body["error"]["message"] == "no model has been promoted yet; run the training pipeline"
    status, _, body = call(predict, "GET", "/model")
    assert_error(status, body, 503, "model_unavailable")


def test_checksum_mismatch_at_first_load_is_503(predict: ModuleType, lake: Any) -> None:
    from rentlake.runtime.testing import make_onnx_model, publish_champion

    publish_champion(lake, "v1", make_onnx_model(), sha256="ab" * 32)
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30})
    assert_error(status, body, 503, "model_unavailable")
    assert "sha256" in body["error"]["message"]


def test_corrupted_new_champion_keeps_serving_the_old_one(
    predict: ModuleType, champion: dict[str, Any], lake: Any
) -> None:
    # GIVEN v1 served, then a corrupted v2 promoted, and the refresh period over
    from rentlake.runtime.testing import publish_champion

    assert call(predict, "POST", "/estimates", {"surface_m2": 30})[2]["model_version"] == "v1"
    publish_champion(lake, "v2", b"garbage")
    predict.CHAMPION.refresh_seconds = 0.0
    # WHEN a request comes THEN it is answered by v1
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30})
    assert (status, body["model_version"]) == (200, "v1")


def test_unexpected_error_is_503_without_trace(
    predict: ModuleType,
    champion: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a bug deep inside the estimate path
    import rentlake.runtime.routes as routes

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internal detail /work/x.py")

    monkeypatch.setattr(routes, "estimates_for", boom)
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30})
    # THEN a 503 without the detail, which is logged instead (the function's JSON log, on stderr)
    assert_error(status, body, 503, "internal_error")
    assert "secret internal detail" not in json.dumps(body)
    logged = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    assert any(x["level"] == "ERROR" and "secret internal detail" in x.get("exception", "") for x in logged)


def test_garbage_event_is_answered(predict: ModuleType) -> None:
    resp = predict.handler({"nonsense": True}, CONTEXT)
    assert 400 <= resp["statusCode"] < 600 and resp["statusCode"] != 500
    assert "error" in json.loads(resp["body"])


def test_an_event_that_is_not_an_http_api_event_is_400_not_503(
    predict: ModuleType, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN another function's event (rentlake invoke predict infra/events/train.json)
    resp = predict.handler({"force": False}, CONTEXT)
    # THEN the caller is told, without an "unexpected error" trace in the logs
    assert_error(resp["statusCode"], json.loads(resp["body"]), 400, "malformed_request")
    assert "Traceback" not in capfd.readouterr().err
