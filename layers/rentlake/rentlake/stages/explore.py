"""Explore stage: clean zone → exploration report under ``reports/<run>/`` (figures, summary, page).

:func:`run` is what the explore function calls. The statistics and hypotheses are the pure rules of
:mod:`rentlake.explore`, the figures and the page are drawn by :mod:`rentlake.reporting`; this module
reads the clean zone and writes the report.

Idempotence: the report of a given set of committed batches has a fixed run id
(``<dataset>-<fingerprint>``), and an existing complete report (its ``report.html`` exists, written
last) is returned as is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rentlake import contracts
from rentlake.events import ExploreRequest
from rentlake.explore import analyse
from rentlake.lake import Lake, keys
from rentlake.model import InsufficientDataError
from rentlake.reporting import exploration_files, jsonable
from rentlake.stages.lineage import Lineage, clean_lineage, require_batches

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

Progress = Callable[[str], None]
#: The dataset whose report crosses the legal reference rents.
LISTINGS = "listings"
#: The legal reference rents, drawn beside the listings in the report when the lake has them.
REFERENCE_DATASET = "reference_rents"
#: The quarantine reason of an exact duplicate (kept by the course, dropped by cleaning).
DUPLICATE = "duplicate"


def _noop(_: str) -> None:
    return None


@dataclass(frozen=True)
class _Sources:
    """What a report is made of: the dataset's lineage and, for listings, the reference rents'."""

    lineage: Lineage
    reference: Lineage | None

    @property
    def fingerprint(self) -> str:
        if self.reference is None:
            return str(self.lineage["fingerprint"])
        both = str(self.lineage["fingerprint"]) + str(self.reference["fingerprint"])
        return hashlib.sha256(both.encode()).hexdigest()


def run(lake: Lake, request: ExploreRequest, *, progress: Progress = _noop) -> dict[str, Any]:
    """Write (or reuse) the exploration report of the clean zone.

    Files: the PNG figures, ``summary.json`` (statistics, hypotheses, lineage, file list) and
    ``report.html`` (one self-contained page), written last.

    Parameters
    ----------
    lake
        The lake.
    request
        ``dataset`` to explore and ``run_id``: by default ``<dataset>-<fingerprint[:12]>`` of the committed
        batches, and an existing complete report of the same data is returned as is (``reused``: true).
        An explicit run id always rewrites its report.
    progress
        Progress callback.

    Returns
    -------
    dict
        ``explored`` (true), ``run_id``, ``reused``, ``rows``, ``keys`` (``name -> key``), ``report_key``
        and ``hypotheses`` (``id -> supported``).

    Raises
    ------
    InsufficientDataError
        Empty clean zone, fewer than 3 usable rows or a single distinct surface.
    """
    sources = _sources(lake, request.dataset)
    rid = request.run_id or f"{request.dataset}-{sources.fingerprint[:12]}"
    if request.run_id is None and lake.exists(keys.report_file(rid, "report.html")):
        return result(rid, lake.get_json(keys.report_file(rid, "summary.json")), reused=True)
    progress(f"explore {request.dataset}: reading {sources.lineage['rows_clean']:,} clean rows")
    # The contract's columns only: lineage columns (source_key, row_hash, ...) would show in the report's
    # missing values and constant columns, and make every row distinct for its duplicate count.
    df = lake.read_clean(request.dataset, columns=contracts.get(request.dataset).column_names)
    if df.empty:
        raise InsufficientDataError(
            f"the clean zone of {request.dataset!r} holds no rows: nothing to explore"
        )
    reference = lake.read_clean(REFERENCE_DATASET) if sources.reference is not None else None
    exploration = analyse(
        df, run_id=rid, reference=reference, as_received=as_received(lake, request.dataset, df)
    )
    summary = {**exploration.summary, "hypotheses": exploration.hypotheses, "lineage": sources.lineage}
    return result(rid, _write(lake, rid, summary, exploration_files(exploration)), reused=False)


def as_received(lake: Lake, dataset: str, clean: pd.DataFrame) -> pd.DataFrame:
    """The listings as the course takes them: the clean rows plus the rows quarantined only as duplicates.

    The course fits its line on its file as given, duplicates included; cleaning keeps one copy of each
    and quarantines the others with the reason ``duplicate``. Their values are read back as numbers.
    """
    import pandas as pd

    frames = [clean[["rent_eur", "surface_m2"]]]
    for commit in lake.committed_batches(dataset):
        for part in lake.iter_keys(lake.committed_files(commit, "quarantine")):
            if not {"rent_eur", "surface_m2", "reasons"} <= set(part.columns):
                continue
            dup = part[part["reasons"].astype(str) == DUPLICATE]
            frames.append(
                pd.DataFrame({c: pd.to_numeric(dup[c], errors="coerce") for c in ("rent_eur", "surface_m2")})
            )
    return pd.concat(frames, ignore_index=True)


def _sources(lake: Lake, dataset: str) -> _Sources:
    lineage = clean_lineage(lake, dataset)
    require_batches(lineage)
    # The second source, crossed with the listings in the report when the lake has it.
    reference = clean_lineage(lake, REFERENCE_DATASET) if dataset == LISTINGS else None
    return _Sources(lineage, reference if reference and reference["batches"] else None)


def _write(lake: Lake, run_id: str, summary: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Store the figures, then ``summary.json`` (listing every file), then ``report.html``: the commit."""
    written: dict[str, str] = {}
    for name, data in files.items():
        if name == "report.html":
            continue
        written[name] = keys.report_file(run_id, name)
        content_type = "image/png" if name.endswith(".png") else "application/octet-stream"
        lake.put_bytes(written[name], data, content_type=content_type)
    written["summary.json"] = keys.report_file(run_id, "summary.json")
    written["report.html"] = keys.report_file(run_id, "report.html")
    stored = jsonable({**summary, "files": written})
    lake.put_json(written["summary.json"], stored)
    # report.html last: a run whose page exists is complete
    lake.put_bytes(written["report.html"], files["report.html"], content_type="text/html; charset=utf-8")
    return stored


def result(run_id: str, summary: dict[str, Any], *, reused: bool) -> dict[str, Any]:
    """The explore function's answer for a stored report."""
    files = dict(summary.get("files") or {})
    return {
        "explored": True,
        "run_id": run_id,
        "reused": reused,
        "rows": summary.get("rows_usable"),
        "keys": files,
        "report_key": files.get("report.html"),
        "hypotheses": {
            str(h.get("id")): bool(h.get("supported"))
            for h in summary.get("hypotheses", [])
            if isinstance(h, dict)
        },
    }
