"""Structured logs and metrics (Powertools Logger and Metrics), the same for every function."""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger, Metrics


def logger(service: str) -> Logger:
    """A JSON logger for a function. It writes to stderr, so a command's stdout stays its result."""
    return Logger(service=service, logger_handler=logging.StreamHandler(sys.stderr))


def metrics(service: str) -> Metrics:
    """An EMF metrics emitter in the ``rentlake`` namespace."""
    return Metrics(namespace="rentlake", service=service)
