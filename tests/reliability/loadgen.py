"""A closed-loop load generator on loopback: N client threads, each with its own keep-alive connection,
share a fixed request budget; every answer is checked (status and body) and timed.

Used by ``tests/reliability/test_load.py`` (pass/fail) and ``bench/bench_load.py`` (figures).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The request mix: what a tenant page and scripts send. (method, path, body or None, expected status)
MIX: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/estimates", {"surface_m2": 30.0}),
    ("POST", "/estimates", {"surface_m2": 45.5, "district": "75006", "current_rent_eur": 1500.0}),
    ("POST", "/estimates", {"surface_m2": 30.0, "quartier": "Belleville", "rooms": 2, "built": 1965}),
    ("POST", "/estimates", {"listings": [{"surface_m2": 20.0 + i} for i in range(10)]}),
    ("POST", "/estimates", {"surface_m2": 72.0, "current_rent_eur": 2100.0}),
    ("GET", "/model", None),
    ("POST", "/estimates", {"surface_m2": 18.0, "district": "75019"}),
    ("GET", "/health", None),
]


@dataclass
class LoadResult:
    requests: int
    clients: int
    seconds: float
    latencies_ms: list[float]
    errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "errors": len(self.errors),
            "statuses": dict(self.statuses),
        }


def _check(method: str, path: str, body: dict[str, Any] | None, status: int, data: bytes) -> str | None:
    """``None`` when the answer is right, else what is wrong."""
    if status != 200:
        return f"{method} {path}: HTTP {status}: {data[:200]!r}"
    try:
        payload = json.loads(data)
    except ValueError:
        return f"{method} {path}: body is not JSON: {data[:200]!r}"
    if path == "/estimates":
        if body is not None and "listings" in body:
            got, sent = len(payload.get("estimates", [])), len(body["listings"])
            if got != sent:
                return f"{method} {path}: {got} estimates for {sent} listings"
        elif not (isinstance(payload.get("rent_eur"), int) and payload["rent_eur"] > 0):
            return f"{method} {path}: no rent in {payload}"
    return None


def run_load(
    host: str, port: int, *, total: int = 10_000, clients: int = 20, timeout_s: float = 300.0
) -> LoadResult:
    """Send ``total`` requests from ``clients`` threads (keep-alive, one connection per thread).

    A request that fails (connection error, timeout, wrong status or body) is recorded as an error and the
    thread reconnects; the run stops at ``timeout_s`` whatever is left (bounded time).
    """
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    encoded = [(m, p, b, None if b is None else json.dumps(b).encode()) for m, p, b in MIX]
    done = [0]

    # Connections are opened one after the other before the clock starts: the run measures steady-state
    # load, not a burst of 20 simultaneous connects (see test_server_config_* for what that burst costs).
    pool = []
    for _ in range(clients):
        c = http.client.HTTPConnection(host, port, timeout=30)
        c.connect()
        pool.append(c)

    def client(idx: int) -> None:
        conn = pool[idx]
        mine: list[float] = []
        my_status: Counter[int] = Counter()
        my_versions: Counter[str] = Counter()
        my_errors: list[str] = []
        try:
            while time.monotonic() < deadline:
                n = next(counter)
                if n >= total:
                    break
                method, path, body, raw = encoded[n % len(encoded)]
                headers = {"Content-Type": "application/json"} if raw is not None else {}
                t0 = time.perf_counter()
                try:
                    conn.request(method, path, body=raw, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    mine.append((time.perf_counter() - t0) * 1000)
                    my_errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                    continue
                mine.append((time.perf_counter() - t0) * 1000)
                my_status[resp.status] += 1
                problem = _check(method, path, body, resp.status, data)
                if problem:
                    my_errors.append(problem)
                elif path == "/estimates":
                    payload = json.loads(data)
                    my_versions[str(payload.get("model_version"))] += 1
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)
                errors.extend(my_errors)
                statuses.update(my_status)
                versions.update(my_versions)
                done[0] += len(mine)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 60)
    seconds = time.perf_counter() - t0
    return LoadResult(done[0], clients, seconds, latencies, errors, statuses, versions)
