"""Progress of long steps, reported to whoever is listening.

Domain code calls :func:`report`; nothing listens inside Lambda (the messages go to the debug log), and
the ``rentlake`` command installs a reporter that prints them on stderr, so a long ingest or clean shows
how far it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_log = logging.getLogger("rentlake.progress")
_reporter: Callable[[str], None] | None = None


def set_reporter(reporter: Callable[[str], None] | None) -> None:
    """Install (or remove, with None) the function that receives progress messages."""
    global _reporter
    _reporter = reporter


def report(message: str) -> None:
    """Report a progress message."""
    if _reporter is not None:
        _reporter(message)
    else:
        _log.debug(message)
