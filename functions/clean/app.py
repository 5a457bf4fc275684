"""Clean function: pending raw batches → clean zone + quarantine, with a quality report per batch."""

from __future__ import annotations

from typing import Any

from rentlake.events import parse_clean
from rentlake.handlers import BatchFunction
from rentlake.stages import clean

FUNCTION = BatchFunction("clean")


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Clean what is pending (or the batches the event names); returns per-batch reports and totals."""
    request = parse_clean(event)
    result = clean.run(FUNCTION.lake(), request, FUNCTION.settings)
    rows = result.rows()
    FUNCTION.count("RowsClean", rows["clean"])
    FUNCTION.count("RowsQuarantined", rows["quarantined"])
    return result.to_dict()
