"""Explore function: clean zone → exploration report under ``reports/<run>/`` (figures, summary, page).

Too little data is not a failure of the function: it answers ``{"explored": false, "reason": "..."}``.
"""

from __future__ import annotations

from typing import Any

from rentlake.events import parse_explore
from rentlake.handlers import BatchFunction
from rentlake.stages import explore

FUNCTION = BatchFunction("explore", insufficient={"explored": False})


@FUNCTION.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write (or reuse) the report of the clean data; returns the run id and the report's keys."""
    request = parse_explore(event)
    result = explore.run(FUNCTION.lake(), request)
    FUNCTION.count("RowsExplored", int(result.get("rows") or 0))
    return result
