"""Explore stage: clean zone → exploration report under ``reports/<run>/`` (figures, summary, page).

:func:`run` is what the explore function calls. The statistics and hypotheses are the pure rules of
:mod:`rentlake.explore`, the figures and the page are drawn by :mod:`rentlake.reporting`; this module
reads the clean zone and writes the report.

Which rows: all of them while the lake is small; past :data:`DEFAULT_MAX_ROWS` clean rows
(:data:`MAX_ROWS_ENV`), a hash sample stratified by district drawn by the training's rule
(:mod:`rentlake.model.sample`; :func:`explore_sample`), read file by file, so that memory follows the
sample and not the lake. The rows quarantined as duplicates, which the course's line counts, are sampled
at their district's rate too. Counts the report gives as the lake's (rows, usable rows, missing values,
listing dates, duplicates quarantined) are exact, counted while the files stream by; the summary and the
page say when the statistics are computed on a sample, and on how many of how many rows.

Idempotence: the report of a given set of committed batches has a fixed run id
(``<dataset>-<fingerprint>``), and an existing complete report (its ``report.html`` exists, written
last) is returned as is.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rentlake import contracts
from rentlake.events import ExploreRequest
from rentlake.explore import LakeTotals, analyse
from rentlake.lake import Lake, keys
from rentlake.model import InsufficientDataError
from rentlake.model.sample import SampleRule
from rentlake.records import CleanCommit
from rentlake.reporting import exploration_files, jsonable
from rentlake.stages.lineage import Lineage, clean_lineage, lineage_of, require_batches

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

Progress = Callable[[str], None]
#: The dataset whose report crosses the legal reference rents.
LISTINGS = "listings"
#: The legal reference rents, drawn beside the listings in the report when the lake has them.
REFERENCE_DATASET = "reference_rents"
#: The quarantine reason of an exact duplicate (kept by the course, dropped by cleaning).
DUPLICATE = "duplicate"
#: Environment variable: the exploration sample's cap (clean rows), default :data:`DEFAULT_MAX_ROWS`.
MAX_ROWS_ENV = "RENTLAKE_EXPLORE_MAX_ROWS"
#: Clean rows explored at most: see bench/RESULTS.md, "Explore at scale", for the memory it takes.
DEFAULT_MAX_ROWS = 1_000_000
#: Every district keeps at least this many rows in the sample (or all of its own): enough for its median
#: and the per-district figure.
GROUP_FLOOR = 1_000
#: The columns read from a quarantine file: what the course line needs, the district (its rate), the
#: listing date (with the values, each row's identity) and the reasons.
QUARANTINE_COLUMNS = ("rent_eur", "surface_m2", "district", "listed_at", "reasons")


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


@dataclass
class ExploreSample:
    """The rows a report is computed on, and what they were drawn from.

    Attributes
    ----------
    clean : pandas.DataFrame
        The sampled clean rows (every row below the cap), the contract's columns, in commit order.
    as_received : pandas.DataFrame
        ``rent_eur`` and ``surface_m2`` of those rows, then of the sampled rows quarantined as
        duplicates: the course's view of the listings (its line is fitted on them, duplicates
        included; cleaning keeps one copy of each).
    totals : LakeTotals
        Exact counts over every clean row and every duplicate quarantined.
    sampling : dict
        ``rule`` (in words), ``clean`` (:func:`rentlake.model.sample.describe`), ``duplicates``
        (``rows`` quarantined, ``sampled``) and ``all_rows`` (nothing was left out).
    """

    clean: pd.DataFrame
    as_received: pd.DataFrame
    totals: LakeTotals
    sampling: dict[str, Any]


def run(
    lake: Lake, request: ExploreRequest, *, progress: Progress = _noop, max_rows: int | None = None
) -> dict[str, Any]:
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
    max_rows
        Cap of the sample of clean rows (None: :data:`MAX_ROWS_ENV`, else :data:`DEFAULT_MAX_ROWS`);
        below it every row is explored.

    Returns
    -------
    dict
        ``explored`` (true), ``run_id``, ``reused``, ``rows`` (usable clean rows in the lake),
        ``rows_sampled`` (clean rows the statistics are computed on), ``keys`` (``name -> key``),
        ``report_key`` and ``hypotheses`` (``id -> supported``).

    Raises
    ------
    InsufficientDataError
        Empty clean zone, fewer than 3 usable rows or a single distinct surface.
    """
    commits = lake.committed_batches(request.dataset)
    sources = _sources(lake, request.dataset, commits)
    rid = request.run_id or f"{request.dataset}-{sources.fingerprint[:12]}"
    if request.run_id is None and lake.exists(keys.report_file(rid, "report.html")):
        return result(rid, lake.get_json(keys.report_file(rid, "summary.json")), reused=True)
    rule = sample_rule(max_rows)
    progress(
        f"explore {request.dataset}: reading {sources.lineage['rows_clean']:,} clean rows "
        f"(a hash sample past {rule.max_rows:,})"
    )
    # The contract's columns only: lineage columns (source_key, row_hash, ...) would show in the report's
    # missing values and constant columns, and make every row distinct for its duplicate count.
    sample = explore_sample(lake, commits, contracts.get(request.dataset).column_names, rule)
    if sample.totals.rows == 0:
        raise InsufficientDataError(
            f"the clean zone of {request.dataset!r} holds no rows: nothing to explore"
        )
    reference = lake.read_clean(REFERENCE_DATASET) if sources.reference is not None else None
    progress(f"explore {request.dataset}: analysing {len(sample.clean):,} rows")
    exploration = analyse(
        sample.clean,
        run_id=rid,
        reference=reference,
        as_received=sample.as_received,
        sampling=sample.sampling,
        lake=sample.totals.to_json(),
    )
    del sample
    progress(f"explore {request.dataset}: drawing the report")
    summary = {**exploration.summary, "hypotheses": exploration.hypotheses, "lineage": sources.lineage}
    return result(rid, _write(lake, rid, summary, exploration_files(exploration)), reused=False)


def sample_rule(max_rows: int | None = None) -> SampleRule:
    """The exploration sample's cap: the argument, else :data:`MAX_ROWS_ENV`, else the default."""
    if max_rows is None:
        text = os.environ.get("RENTLAKE_EXPLORE_MAX_ROWS", "").strip()
        max_rows = int(text) if text else DEFAULT_MAX_ROWS
    return SampleRule(int(max_rows), GROUP_FLOOR)


def explore_sample(
    lake: Lake, commits: Sequence[CleanCommit], columns: Sequence[str], rule: SampleRule
) -> ExploreSample:
    """The clean rows a report is computed on: every row below the cap, else a stratified hash sample.

    The rule is the training sample's (:mod:`rentlake.model.sample`): a row is kept when the salted hash
    of its ``row_hash`` falls below its district's rate, the rates stratified by district so that the
    expected sample stays within ``rule.max_rows``. Rows that are equal share their ``row_hash``, so they
    are kept or left out together and the sample's exact duplicates are a sample of the lake's.

    A first pass counts each file's rows per district — skipped when the commits' clean rows are within
    the cap, as every rate is then 1. The second pass reads each file's contract columns, counts them
    exactly (:class:`rentlake.explore.LakeTotals`) and keeps the sampled rows. Then each commit's
    quarantine files give the rows quarantined as duplicates: all counted, sampled at their district's
    rate (the contract's normaliser puts their raw district in the clean zone's form; the base rate for a
    district the clean zone lacks), with a salted hash of their values as identity, so that the copies of
    one listing are kept together. Each draw's binomial noise beyond the cap is cut off
    (:func:`rentlake.model.sample.trim_mask`). Peak memory: one file plus the rows kept.

    Parameters
    ----------
    lake
        The lake.
    commits
        The dataset's clean commits, in commit order.
    columns
        The contract's columns.
    rule
        Cap and per-district floor.

    Returns
    -------
    ExploreSample
    """
    import numpy as np
    import pandas as pd

    from rentlake.model.sample import describe, group_rates, row_identity, row_rates, trim_mask, uniform_of
    from rentlake.stages.clean_rows import commit_frames, group_labels

    stated = [c.rows_clean for c in commits]
    rates: dict[str, float] | None = None  # None: every rate is 1, no counting pass needed
    if any(n is None for n in stated) or sum(int(n or 0) for n in stated) > rule.max_rows:
        counts: Counter[str] = Counter()
        for commit in commits:
            for frame in commit_frames(lake, commit, ("district",)):
                counts.update(pd.Series(group_labels(frame)).value_counts().to_dict())
        rates = group_rates(counts, rule)
    base = _base_rate(rates)

    def rates_of(groups: np.ndarray) -> np.ndarray:
        return np.ones(len(groups)) if rates is None else row_rates(groups, rates, default=base)

    totals = LakeTotals(list(columns))
    kept: list[pd.DataFrame] = []
    scaled: list[np.ndarray] = []
    for commit in commits:
        for frame in commit_frames(lake, commit, [*columns, "row_hash"]):
            groups = group_labels(frame)
            present = [c for c in columns if c in frame.columns]
            totals.add(frame[present], groups)
            rate = rates_of(groups)
            u = uniform_of(row_identity(frame))
            keep = u < rate
            if keep.any():
                rows = frame.loc[keep, present].reset_index(drop=True)
                if "district" in rows.columns:
                    rows["district"] = rows["district"].astype("string")
                kept.append(rows)
                scaled.append(u[keep] / rate[keep])
    clean = _concat(kept, columns)
    del kept
    if len(clean):
        trimmed = trim_mask(np.concatenate(scaled), rule.max_rows)
        if not trimmed.all():
            clean = clean[trimmed].reset_index(drop=True)
    duplicates = _duplicates(lake, commits, rates_of, rule, totals)
    received = pd.concat([clean[["rent_eur", "surface_m2"]], duplicates], ignore_index=True)
    counted = dict(totals.groups) if rates is None else counts
    described = describe(counted, rates or dict.fromkeys(counted, 1.0), len(clean), rule)
    sampling = {
        "rule": "hash sample: each row's u in [0, 1) from its row_hash (salted); a district's rows with u "
        "below its rate are kept; rates stratified by district (every district keeps at least min(its rows, "
        "floor), the others one base rate) so that the expected rows stay within max_rows; the rows "
        "quarantined as duplicates sampled at their district's rate (u from their values)",
        "clean": described,
        "duplicates": {"rows": totals.duplicates_quarantined, "sampled": len(duplicates)},
        "all_rows": described["all_rows"] and len(duplicates) == totals.duplicates_quarantined,
    }
    return ExploreSample(clean, received, totals, sampling)


def _base_rate(rates: dict[str, float] | None) -> float:
    """The rate of the groups sampled proportionally (the smallest), 1 when nothing is sampled."""
    return min(rates.values(), default=1.0) if rates else 1.0


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The kept rows of every file, with every contract column (missing in a file that lacks it)."""
    import pandas as pd

    if not frames:
        return pd.DataFrame(columns=list(columns))
    df = pd.concat(frames, ignore_index=True)
    if "district" in df.columns:
        df["district"] = df["district"].astype("string")
    return df.reindex(columns=list(columns))


def _duplicates(
    lake: Lake,
    commits: Sequence[CleanCommit],
    rates_of: Callable[[np.ndarray], np.ndarray],
    rule: SampleRule,
    totals: LakeTotals,
) -> pd.DataFrame:
    """The sampled rows quarantined as duplicates (``rent_eur``, ``surface_m2`` as numbers), all counted
    in ``totals``; see :func:`explore_sample`."""
    import numpy as np
    import pandas as pd

    from rentlake.model.sample import row_identity, trim_mask, uniform_of
    from rentlake.stages.clean_rows import group_labels, read_file

    normalise = _district_normaliser(commits[0].dataset) if commits else None
    frames: list[pd.DataFrame] = []
    scaled: list[np.ndarray] = []
    for commit in commits:
        for key in lake.committed_files(commit, "quarantine"):
            part = read_file(lake, key, QUARANTINE_COLUMNS, dictionary=("district", "reasons"))
            if not {"rent_eur", "surface_m2", "reasons"} <= set(part.columns):
                continue
            dup = part[(part["reasons"].astype(str) == DUPLICATE).to_numpy()].reset_index(drop=True)
            totals.duplicates_quarantined += len(dup)
            if dup.empty:
                continue
            district = dup[["district"]] if "district" in dup.columns else dup.iloc[:, :0]
            if normalise is not None and "district" in dup.columns:
                district = pd.DataFrame({"district": normalise(dup["district"])})
            rate = rates_of(group_labels(district))
            u = uniform_of(row_identity(dup.drop(columns="reasons")))
            keep = u < rate
            if keep.any():
                frames.append(
                    pd.DataFrame(
                        {
                            c: pd.to_numeric(dup.loc[keep, c], errors="coerce")
                            for c in ("rent_eur", "surface_m2")
                        }
                    )
                )
                scaled.append(u[keep] / rate[keep])
    if not frames:
        return pd.DataFrame({"rent_eur": [], "surface_m2": []}, dtype=float)
    out = pd.concat(frames, ignore_index=True)
    trimmed = trim_mask(np.concatenate(scaled), rule.max_rows)
    return out if trimmed.all() else out[trimmed].reset_index(drop=True)


def _district_normaliser(dataset: str) -> Callable[[pd.Series], pd.Series] | None:
    """The contract's normaliser of ``district`` (a quarantined row's district is as received)."""
    contract = contracts.get(dataset)
    if "district" not in contract.column_names:
        return None
    return contract.column("district").normaliser


def _sources(lake: Lake, dataset: str, commits: list[CleanCommit]) -> _Sources:
    lineage = lineage_of(dataset, commits)
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
        "rows": (summary.get("lake") or {}).get("rows_usable", summary.get("rows_usable")),
        "rows_sampled": (summary.get("sampling") or {}).get("clean", {}).get("sampled", summary.get("rows")),
        "keys": files,
        "report_key": files.get("report.html"),
        "hypotheses": {
            str(h.get("id")): bool(h.get("supported"))
            for h in summary.get("hypotheses", [])
            if isinstance(h, dict)
        },
    }
