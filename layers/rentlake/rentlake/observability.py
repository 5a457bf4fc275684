"""Structured logs and metrics (Powertools Logger and Metrics), the same for every function."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics

_LOGGERS: dict[str, Logger] = {}


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on whatever ``sys.stderr`` is when a record is written, not when the handler
    was made: a logger lives as long as the process, while the CLI and test runners swap stderr."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def logger(service: str) -> Logger:
    """The JSON logger of a function (one per service and process: Powertools binds its formatter to the
    first instance). It writes to stderr, so a command's stdout stays its result.

    The library's own modules log through the standard ``logging`` module under ``rentlake.*``; their
    records go to this logger's JSON handler too, so they carry the same request ids.
    """
    if service not in _LOGGERS:
        log = Logger(service=service, logger_handler=_StderrHandler())
        library = logging.getLogger("rentlake")
        library.handlers = list(log.handlers)  # the function's JSON handler, replacing an earlier one's
        library.setLevel(log.log_level)
        library.propagate = False
        _LOGGERS[service] = log
    return _LOGGERS[service]


def request_log_keys(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The ids a request's log lines carry: API Gateway's request id as the correlation id, and the
    Lambda request id (absent when a handler is called without a context, as in unit tests)."""
    keys: dict[str, Any] = {}
    request_id = ((event.get("requestContext") or {}) if isinstance(event, Mapping) else {}).get("requestId")
    if request_id:
        keys["correlation_id"] = request_id
    if context is not None and getattr(context, "aws_request_id", None):
        keys["function_request_id"] = context.aws_request_id
        keys["function_name"] = getattr(context, "function_name", None)
    return keys


def metrics(service: str) -> Metrics:
    """An EMF metrics emitter in the ``rentlake`` namespace."""
    return Metrics(namespace="rentlake", service=service)
