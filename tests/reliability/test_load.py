"""Load on loopback: 20 concurrent keep-alive clients, 10 000 requests, against ``rentlake serve``'s server
(the predict handler, champion on a moto server). Pass/fail only; ``bench/bench_load.py`` records figures."""

from __future__ import annotations

import pytest

from tests.reliability.loadgen import MIX, run_load
from tests.support import ServedApi

pytestmark = pytest.mark.slow


def test_10000_requests_from_20_clients_all_answered_correctly(api: ServedApi) -> None:
    # GIVEN the served API with champion v1, and a mix of single, legal, batch and GET requests
    # WHEN 20 threads send 10 000 requests over keep-alive connections (bounded at 240 s)
    result = run_load(api.host, api.port, total=10_000, clients=20, timeout_s=240)
    print("load summary:", result.summary())
    # THEN every request was sent and answered 200 with a well-formed body: no error at all
    assert result.requests == 10_000, result.summary()
    assert result.errors == [], result.errors[:5]
    assert result.statuses == {200: 10_000}
    # AND every estimate came from the one champion
    estimates = sum(1 for m, p, _ in MIX if p == "/estimates")
    assert set(result.versions) == {"v1"}
    assert sum(result.versions.values()) == 10_000 // len(MIX) * estimates


# ------------------------------------------------------------------- server settings found by the load run
def _served_latency_ms(api: ServedApi, n: int = 50) -> float:
    import http.client
    import json
    import time

    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    body = json.dumps({"surface_m2": 30.0}).encode()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/estimates", body=body, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return sorted(times)[n // 2]


def test_keep_alive_answer_is_not_delayed_by_nagle(api: ServedApi) -> None:
    # GIVEN one client on a keep-alive connection WHEN it sends 50 estimates in a row
    # THEN the median answer takes well under the 40 ms delayed-ACK timer (the handler itself: < 1 ms)
    assert _served_latency_ms(api) < 10.0


def test_listen_backlog_holds_a_burst_of_20_clients(api: ServedApi) -> None:
    from rentlake.cli.cmd_serve import make_server

    server = make_server(api.predict.handler, "127.0.0.1", 0)
    try:
        assert server.request_queue_size >= 64
    finally:
        server.server_close()
