"""Structured logs and metrics (Powertools Logger and Metrics), the same for every function."""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger, Metrics

_LOGGERS: dict[str, Logger] = {}


def logger(service: str) -> Logger:
    """The JSON logger of a function (one per service and process: Powertools binds its formatter to the
    first instance). It writes to stderr, so a command's stdout stays its result."""
    if service not in _LOGGERS:
        _LOGGERS[service] = Logger(service=service, logger_handler=logging.StreamHandler(sys.stderr))
    return _LOGGERS[service]


def metrics(service: str) -> Metrics:
    """An EMF metrics emitter in the ``rentlake`` namespace."""
    return Metrics(namespace="rentlake", service=service)
