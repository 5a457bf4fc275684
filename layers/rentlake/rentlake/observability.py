"""Structured logs and metrics (Powertools Logger and Metrics), the same for every function."""

from __future__ import annotations

import logging
import sys
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
        _LOGGERS[service] = Logger(service=service, logger_handler=_StderrHandler())
    bind_library_logs(_LOGGERS[service])
    return _LOGGERS[service]


def bind_library_logs(log: Logger) -> None:
    """Send the ``rentlake.*`` records to ``log``'s JSON handler (with its keys: request ids, service).

    A Lambda process runs one function, so binding once is enough there; where several functions share
    a process (the CLI, tests), each request binds its own function's logger.
    """
    library = logging.getLogger("rentlake")
    if library.handlers == log.handlers:
        return  # the common case, on every request: setLevel would clear logging's cache of every logger
    library.handlers = list(log.handlers)
    library.setLevel(log.log_level)
    library.propagate = False  # as Powertools does for the loggers it configures: no double lines


def metrics(service: str) -> Metrics:
    """An EMF metrics emitter in the ``rentlake`` namespace."""
    return Metrics(namespace="rentlake", service=service)
