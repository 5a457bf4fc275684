"""Property-based fuzzing of the estimates API against its own OpenAPI document (schemathesis).

The API is served exactly as ``rentlake serve`` serves it (``make_server`` on 127.0.0.1), its champion on a
moto server. Schemathesis reads ``/openapi.json`` from the server, generates requests that fit the schema
(positive) and requests that violate it (negative), sends each over HTTP, and checks every answer: no 5xx,
a status code the document declares, the declared content type, and a body matching the declared schema.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.support import ServedApi, leaks_in

pytestmark = pytest.mark.slow

MIN_REQUESTS = 1_000
EXAMPLES = {"positive": 450, "negative": 550}  # per operation that takes input


class Recorder:
    """Counts every HTTP exchange schemathesis makes and keeps what the assertions need."""

    def __init__(self) -> None:
        self.sent = 0
        self.by_status: Counter[int] = Counter()
        self.by_operation: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.leaks: list[str] = []

    def hook(self, label: str) -> Any:
        def on_response(resp: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            self.by_status[resp.status_code] += 1
            self.by_operation[label] += 1
            text = resp.content.decode("utf-8", "replace")
            if resp.status_code >= 500:
                self.server_errors.append(f"{label} -> {resp.status_code}: {text[:300]}")
            # What the client sent and gets named back in a 4xx ("no reference rents for 's3://'") is
            # its own input, not a leak of the server's internals.
            sent = resp.request.body or b""
            sent_text = sent.decode("utf-8", "replace") if isinstance(sent, bytes) else str(sent)
            sent_text += " " + str(resp.request.url)
            found = [s for s in leaks_in(text) if s not in sent_text]
            if found:
                self.leaks.append(f"{label} -> {resp.status_code} leaks {found}: {text[:300]}")
            return resp

        return on_response


def _fuzz_run(strategy: Any, run_settings: Any) -> Any:
    """A hypothesis test sending each generated case and validating its answer."""
    from hypothesis import given

    @run_settings
    @given(case=strategy)
    def run(base_url: str, session: Any, checks: list[Any], case: Any) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=checks)

    return run


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_schema_mismatch(api: ServedApi) -> None:
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
        content_type_conformance,
    ]
    # GIVEN the API's own OpenAPI document, as the served API publishes it
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert labels == [
        "GET /health",
        "GET /model",
        "GET /plot-data",
        "GET /quartiers",
        "POST /estimates",
    ]
    recorder = Recorder()
    fuzz_settings = settings(
        database=None,
        deadline=None,
        derandomize=True,  # the same requests on every CI run
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )

    # WHEN schemathesis sends positive and negative cases for every operation over loopback HTTP
    for op in operations:
        takes_input = bool(op.body) or any(True for _ in op.iter_parameters())
        modes = ["positive", "negative"] if takes_input else ["positive"]
        for mode in modes:
            with requests.Session() as session:
                session.hooks["response"].append(recorder.hook(f"{op.label} [{mode}]"))
                strategy = op.as_strategy(generation_mode=GenerationMode(mode))
                run = _fuzz_run(strategy, settings(fuzz_settings, max_examples=EXAMPLES[mode]))
                run(api.url, session, checks)

    # The operations without input give one distinct request each: send them again with the recorder on,
    # so the count below is of requests actually made, of every operation.
    with requests.Session() as session:
        for label in ("GET /health", "GET /model", "GET /plot-data", "GET /quartiers"):
            path = label.split(" ", 1)[1]
            session.hooks["response"] = [recorder.hook(f"{label} [repeat]")]
            for _ in range(5):
                assert session.get(api.url + path, timeout=30).status_code == 200

    # THEN at least 1 000 requests went out, none was answered with a 5xx or leaked an internal detail
    summary = {
        "sent": recorder.sent,
        "by_status": dict(sorted(recorder.by_status.items())),
        "by_operation": dict(sorted(recorder.by_operation.items())),
    }
    print("fuzz summary:", json.dumps(summary))
    assert recorder.sent >= MIN_REQUESTS, summary
    assert recorder.server_errors == [], recorder.server_errors[:5]
    assert not any(s >= 500 for s in recorder.by_status), summary
    assert recorder.leaks == [], recorder.leaks[:5]
    # AND the refusals were exercised, not only the happy path (negative cases reach the validators)
    assert recorder.by_status[200] > 0 and recorder.by_status[422] > 0, summary
