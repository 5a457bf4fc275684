"""Reliability fixtures: one served API per module (:func:`tests.support.served_api`: ``rentlake serve``'s
server on loopback in front of the predict handler, whose champion lives on a moto server on 127.0.0.1);
and botocore event hooks that inject S3/Glue throttling and failures *inside* botocore's retry loop.

Nothing here reaches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import ServedApi, served_api


@pytest.fixture(scope="module")
def api() -> Iterator[ServedApi]:
    """One served API per module, champion ``v1`` with the legal table."""
    with served_api() as served:
        yield served


# ------------------------------------------------------------------------------------------ fault hooks
class _Raw:
    """The ``raw`` of a botocore AWSResponse: only ``stream()`` is read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def s3_error(
    url: str, status: int = 503, code: str = "SlowDown", message: str = "Please reduce your request rate."
) -> Any:
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml"}, _Raw(body))


def glue_throttle(url: str) -> Any:
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return AWSResponse(url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))


@dataclass
class FaultInjector:
    """Answers matching requests with an error *before they are sent*, inside botocore's retry loop
    (``before-send`` is emitted per attempt, so retries see each injected error).

    ``budget`` maps an operation name (``PutObject``) or ``"*"`` to how many of its attempts fail;
    ``None`` means every attempt fails (a persistent fault). ``when`` filters on the request URL.
    """

    budget: dict[str, int | None]
    response: Callable[[str], Any] = s3_error
    when: Callable[[str], bool] = lambda url: True
    injected: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, event_name: str, **_: Any) -> Any:
        op = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.seen[op] += 1
            key = op if op in self.budget else "*" if "*" in self.budget else None
            if key is None or not self.when(request.url):
                return None
            limit = self.budget[key]
            if limit is not None and self.injected[key] >= limit:
                return None
            self.injected[key] += 1
        return self.response(request.url)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry sleeps, recorded instead of slept (the delays prove retries happened)."""
    import types

    import botocore.endpoint

    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=delays.append))
    return delays
