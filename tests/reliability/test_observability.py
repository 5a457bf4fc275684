"""Structured logs and metrics: Powertools JSON logs with request ids, EMF metrics for rows ingested and
quarantined, the gate's decisions and estimates served; and no secret in any log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import SAMPLES

SECRET = "SENTINEL-SECRET-KEY-7f3a9c"
TOKEN = "SENTINEL-SESSION-TOKEN-51be02"


class Records(logging.Handler):
    """Every record of a logger, formatted by the logger's own (Powertools JSON) formatter."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def capture(service: str) -> Records:
    """Attach a recorder to a function's Powertools logger (whatever stream it was bound to)."""
    from rentlake.observability import logger

    plt = logger(service)
    std = logging.getLogger(plt.name)
    formatter = std.handlers[0].formatter if std.handlers else None
    rec = Records(formatter)
    std.addHandler(rec)
    return rec


def emf(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents printed by Powertools Metrics."""
    docs = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_values(docs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in docs:
        for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = d[m["Name"]]
            out[m["Name"]] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return out


def ingest_and_clean(function: Callable[[str], Any], put_landing: Any, ctx: Any) -> None:
    event = put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    function("ingest").handler(event, ctx)
    function("clean").handler({}, ctx)


def test_ingest_and_clean_emit_row_metrics_and_json_logs_with_the_request_id(
    function: Callable[[str], Any], put_landing: Any, lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    logs = capture("ingest")
    # WHEN the course file is ingested and cleaned through the handlers
    ingest_and_clean(function, put_landing, lambda_context)
    out, _ = capfd.readouterr()
    # THEN EMF documents carry the row counts, in the rentlake namespace, per service
    docs = emf(out)
    values = metric_values(docs)
    assert values["RowsIngested"] == 545 and values["ObjectsRejected"] == 0
    assert values["RowsClean"] == 481 and values["RowsQuarantined"] == 64
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in docs} == {"rentlake"}
    assert {d["service"] for d in docs} == {"ingest", "clean"}
    # AND whatever the ingest function's Powertools logger wrote is JSON carrying the Lambda request id
    lines = [json.loads(x) for x in logs.lines]
    assert all(x["function_request_id"] == lambda_context.aws_request_id for x in lines)


def test_ingest_domain_log_line_is_json_with_the_request_id(
    function: Callable[[str], Any], put_landing: Any, lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    ingest_and_clean(function, put_landing, lambda_context)
    _, err = capfd.readouterr()
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    ingested = [x for x in lines if "ingested landing/house_intact.csv" in str(x.get("message"))]
    assert ingested and ingested[0]["function_request_id"] == lambda_context.aws_request_id, err[-1500:]


def test_evaluate_emits_the_gate_decision(
    function: Callable[[str], Any], put_landing: Any, lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a trained version of the course data
    ingest_and_clean(function, put_landing, lambda_context)
    trained = function("train").handler({}, lambda_context)
    capfd.readouterr()
    # WHEN it is evaluated (first model: the gate passes and it is promoted)
    result = function("evaluate").handler(trained, lambda_context)
    values = metric_values(emf(capfd.readouterr()[0]))
    # THEN the decision is in the metrics: passed, promoted
    assert result["promoted"] is True and result["gate"]["passed"] is True
    assert values["GatePassed"] == 1 and values["GateFailed"] == 0 and values["Promoted"] == 1
    # WHEN the same version is evaluated again THEN it is skipped: not passed, not promoted
    function("evaluate").handler(trained, lambda_context)
    values = metric_values(emf(capfd.readouterr()[0]))
    assert values["GatePassed"] == 0 and values["GateFailed"] == 1 and values["Promoted"] == 0


def test_no_secret_reaches_the_logs_of_an_ingest_or_a_request(
    monkeypatch: pytest.MonkeyPatch,
    function: Callable[[str], Any],
    put_landing: Any,
    lambda_context: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from rentlake.runtime.events import http_api_event
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    # GIVEN credentials set to sentinel values, the functions' loggers at DEBUG, every other logger at INFO
    # (botocore itself logs the signed request, session token included, at DEBUG: never enable it in prod)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.INFO)
    # WHEN a file is ingested and cleaned, and estimates are asked (good, refused, and without a model)
    ingest_and_clean(function, put_landing, lambda_context)
    predict = function("predict")
    bodies = ['{"surface_m2": 30}', '{"surface_m2": -1}', "{not json"]
    for body in bodies:  # no champion yet: 503
        predict.handler(
            http_api_event("POST", "/estimates", body, headers={"content-type": "application/json"}),
            lambda_context,
        )
    from rentlake.lake import Lake

    publish_champion(Lake(predict.SETTINGS.bucket), "v1", make_onnx_model(), make_card("v1"))
    predict = function("predict")
    for body in bodies:
        predict.handler(
            http_api_event("POST", "/estimates", body, headers={"content-type": "application/json"}),
            lambda_context,
        )
    out, err = capfd.readouterr()
    # THEN neither secret appears anywhere: stdout, stderr, or any log record (botocore's included)
    everything = out + err + caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert len(caplog.records) > 0
    assert SECRET not in everything and TOKEN not in everything


# ------------------------------------------------------------------------- predict: logs and metrics
def _predict_request(function: Callable[[str], Any], lambda_context: Any) -> tuple[str, str, str]:
    from rentlake.lake import Lake
    from rentlake.runtime.events import http_api_event
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    predict = function("predict")
    publish_champion(Lake(predict.SETTINGS.bucket), "v1", make_onnx_model(), make_card("v1"))
    event = http_api_event(
        "POST", "/estimates", '{"surface_m2": 30}', headers={"content-type": "application/json"}
    )
    event["requestContext"]["requestId"] = "apigw-request-0001"
    resp = predict.handler(event, lambda_context)
    assert resp["statusCode"] == 200
    return "apigw-request-0001", lambda_context.aws_request_id, ""


def test_predict_logs_json_lines_with_the_request_and_correlation_ids(
    function: Callable[[str], Any], lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # WHEN one estimate is asked with an API Gateway request id
    correlation, request_id, _ = _predict_request(function, lambda_context)
    _, err = capfd.readouterr()
    # THEN a JSON log line of the predict function carries both ids
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any(
        x.get("correlation_id") == correlation and x.get("function_request_id") == request_id for x in lines
    ), err[-2000:]


def test_predict_emits_estimates_served_and_latency_metrics(
    function: Callable[[str], Any], lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    _predict_request(function, lambda_context)
    docs = emf(capfd.readouterr()[0])
    predict_docs = [d for d in docs if d.get("service") == "predict"]
    assert predict_docs, "no EMF document from the predict function"
    names = set(metric_values(predict_docs))
    assert any("Estimate" in n for n in names) and any("Latency" in n for n in names), names
