"""What a clean batch is checked against, kept compact: pure parts (arrays in, arrays out; no I/O).

Cleaning a batch used to read every clean row of its dataset: memory and time grew with the lake. The
decisions need far less (:mod:`rentlake.stages.clean_history` reads and writes the pieces below):

* **Duplicates** need only the clean rows that could be the same listing *seen within the window*: a
  valid row is a duplicate of a clean row with the same values (row hash) seen at most ``window`` days
  apart. "Seen" is the contract's date column (the listing date, ``listed_at``) when the row has one,
  else the day its batch was ingested. The listing date is one of the hashed values, so a dated copy is
  a duplicate however late it comes back; an undated one counts as new after the window.
  The **seen index** holds, per commit, each clean row's row hash, key hash and seen day, partitioned by
  what it was seen on (its own date, or its ingestion day: equal rows are seen on the same) and the month
  seen. A batch reads only the partitions its valid rows can match in (:meth:`BatchLookup.partitions`:
  a dated row the month of its date, an undated one the months within the window of its ingestion) and
  streams them, a few parts at a time, against its own hashes (:meth:`BatchLookup.match`).
* **Conflicting keys** need the clean rows of the batch's keys, whatever their age: a key is an identity,
  it does not expire. Datasets with a key (the reference rents, a few thousand rows a table) read the
  whole index, streamed; a clean row of the same key and values is a duplicate there, without window.
* **Outlier bounds** need the median and MAD of the checked value per group over all clean rows. They
  come from a **sketch** per group: counts in fixed bins of width :data:`BIN_WIDTH` (in the checked
  value's units, log €/m² for listings), mergeable by adding counts, cumulated at each commit. Median and
  MAD read from it are within :func:`sketch_error` of the exact ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from rentlake.cleaning import CleanParams
    from rentlake.contracts import Contract

BIN_WIDTH = 0.001
"""Sketch bin width, in the checked value's units: 0.001 in log €/m² is 0.1 % of a rent per m²."""
MAD_SCALE = 1.4826
"""1.4826 · MAD estimates the standard deviation of normal data (the "scaled MAD")."""
SUMMARY_FORMAT = 3
SEEN_ON_ROW_DATE = "row_date"
SEEN_ON_INGEST_DATE = "ingest_date"
_EPOCH = np.datetime64("1970-01-01", "D")
# The lookup's filter has about this many slots per distinct hash of the batch (about 1 in 16 of the
# index's rows pass it by chance), as a power of two within these bounds.
_FILTER_SLOTS_PER_HASH = 16
_FILTER_MIN_BITS, _FILTER_MAX_BITS = 16, 24
# Bin numbers are int64: |value / width| must stay well inside that range.
_MAX_BIN = 2**60
# Largest table of counts (groups x bins) sketch_groups makes at once (32 MB of int64).
_MAX_COUNTS = 1 << 22
# Largest span of days month_numbers tabulates (8 MB of int64).
_MAX_DAY_SPAN = 1 << 20


# ------------------------------------------------------------------------------------ the sketch
def _empty_int64() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Sketch:
    """Counts of values in fixed bins: bin ``b`` holds the values in ``[b · width, (b + 1) · width)``.

    ``bins`` is sorted and unique, ``counts`` positive; two sketches of the same width merge exactly.
    """

    bins: np.ndarray = field(default_factory=_empty_int64)
    counts: np.ndarray = field(default_factory=_empty_int64)
    width: float = BIN_WIDTH

    @classmethod
    def of(cls, values: np.ndarray, width: float = BIN_WIDTH) -> Sketch:
        """The sketch of the finite ``values`` (NaN and infinities left out, as in the exact statistics)."""
        v = np.asarray(values, dtype="float64")
        scaled = v[np.isfinite(v)] / width
        if scaled.size and np.abs(scaled).max() >= _MAX_BIN:
            raise ValueError(f"values up to {np.abs(v[np.isfinite(v)]).max():g} overflow bins of {width}")
        bins, counts = np.unique(np.floor(scaled).astype(np.int64), return_counts=True)
        return cls(bins, counts.astype(np.int64), width)

    @property
    def n(self) -> int:
        """Values counted."""
        return int(self.counts.sum())

    def merge(self, other: Sketch) -> Sketch:
        """The sketch of both sketches' values."""
        if other.width != self.width:
            raise ValueError(f"cannot merge sketches of bin widths {self.width} and {other.width}")
        if not other.bins.size:
            return self
        if not self.bins.size:
            return other
        bins, inverse = np.unique(np.concatenate([self.bins, other.bins]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([self.counts, other.counts]))
        return Sketch(bins, counts.astype(np.int64), self.width)

    def centres(self) -> np.ndarray:
        """The middle of each bin (no value of a bin is more than ``width / 2`` from it)."""
        return (self.bins + 0.5) * self.width

    def median(self) -> float:
        """The median, within ``width / 2`` of the exact one (the midpoint of its bin)."""
        return _weighted_median(self.centres(), self.counts)

    def mad(self, centre: float) -> float:
        """The median absolute deviation from ``centre``, each value taken at the middle of its bin.

        With ``centre`` the sketch's median, it is within ``width`` of the exact MAD: each deviation is off
        by at most ``width / 2`` (the value's place in its bin) plus ``width / 2`` (the median's error), and
        a median moves no more than the values it is taken of.
        """
        deviation = np.abs(self.centres() - centre)
        order = np.argsort(deviation, kind="stable")
        return _weighted_median(deviation[order], self.counts[order])

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: the first bin, then the step to each next bin, and the counts."""
        steps = np.diff(self.bins).tolist() if self.bins.size else []
        first = int(self.bins[0]) if self.bins.size else 0
        return {"n": self.n, "first_bin": first, "bin_steps": steps, "counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], width: float) -> Sketch:
        """Read :meth:`to_json`'s form back."""
        counts = np.asarray(doc["counts"], dtype=np.int64)
        if not counts.size:
            return cls(width=width)
        steps = np.asarray(doc["bin_steps"], dtype=np.int64)
        bins = int(doc["first_bin"]) + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
        if bins.size != counts.size or (steps <= 0).any() or (counts <= 0).any():
            raise ValueError("sketch: bins and counts do not match")
        return cls(bins, counts, width)


def _weighted_median(sorted_values: np.ndarray, counts: np.ndarray) -> float:
    """Median of the multiset holding ``counts[i]`` copies of ``sorted_values[i]`` (as ``np.median``:
    the mean of the two middle values when the count is even)."""
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    cum = np.cumsum(counts)
    low = np.searchsorted(cum, (total - 1) // 2, side="right")
    high = np.searchsorted(cum, total // 2, side="right")
    return float((sorted_values[low] + sorted_values[high]) / 2)


def sketch_groups(
    values: np.ndarray, groups: np.ndarray | None, width: float = BIN_WIDTH
) -> dict[Any, Sketch]:
    """One sketch per group label (``"*"`` for all values when ``groups`` is None)."""
    if groups is None:
        return {"*": Sketch.of(values, width)}
    # factorize, not np.unique: labels may be Python strings, which numpy sorts slowly. Group codes
    # (integers) stay integers: as Python objects they would cost ~40 bytes a row.
    inverse, labels = pd.factorize(np.asarray(groups), use_na_sentinel=False)
    sketches = _group_sketches(np.asarray(values, dtype="float64"), inverse, len(labels), width)
    return {label: sketch for label, sketch in zip(labels.tolist(), sketches, strict=True) if sketch.n}


def _group_sketches(values: np.ndarray, inverse: np.ndarray, groups: int, width: float) -> list[Sketch]:
    """The sketch of the values of each group ``0 .. groups - 1`` (``inverse`` gives each value's group):
    :meth:`Sketch.of` of each group's values."""
    finite = np.isfinite(values)
    everywhere = bool(finite.all())  # the usual case: no copy of the values to leave some out
    scaled = (values if everywhere else values[finite]) / width
    if not scaled.size:
        return [Sketch(width=width) for _ in range(groups)]
    smallest, largest = float(scaled.min()), float(scaled.max())
    if max(-smallest, largest) >= _MAX_BIN:
        raise ValueError(f"values up to {max(-smallest, largest) * width:g} overflow bins of {width}")
    low = int(np.floor(smallest))
    span = int(np.floor(largest)) - low + 1
    if span * groups > _MAX_COUNTS:  # values spread too far for one table of counts: group by group
        return [Sketch.of(values[inverse == i], width) for i in range(groups)]
    # One table of counts per (group, bin): one pass over the values, whatever the number of groups.
    cells = np.floor(scaled).astype(np.int64) - low
    cells += (inverse if everywhere else inverse[finite]).astype(np.int64) * span
    counts = np.bincount(cells, minlength=groups * span).reshape(groups, span)
    out = []
    for row in counts:
        present = np.flatnonzero(row)
        out.append(Sketch(present.astype(np.int64) + low, row[present].astype(np.int64), width))
    return out


def merge_groups(*parts: Mapping[Any, Sketch]) -> dict[Any, Sketch]:
    """Group sketches of several sets of rows, merged group by group."""
    out: dict[Any, Sketch] = {}
    for part in parts:
        for label, sketch in part.items():
            out[label] = out[label].merge(sketch) if label in out else sketch
    return out


def sketch_bounds(
    groups: Mapping[Any, Sketch], params: CleanParams, *, grouped: bool
) -> dict[Any, dict[str, float]]:
    """Median, scaled MAD and accepted bounds per group and for the pool (``"*"``), from sketches.

    What :func:`rentlake.cleaning.robust_bounds` computes from the values themselves, within
    :func:`sketch_error`: a pool smaller than ``min_group`` is not checked; groups of ``min_group`` rows
    or more have their own statistics (only when ``grouped``).
    """
    pool = Sketch(width=next(iter(groups.values())).width) if groups else Sketch()
    for sketch in groups.values():
        pool = pool.merge(sketch)
    if pool.n < params.min_group:
        return {}
    out = {"*": _stats(pool, params)}
    if grouped:
        for label, sketch in groups.items():
            if sketch.n >= params.min_group:
                out[label] = _stats(sketch, params)
    return out


def _stats(sketch: Sketch, params: CleanParams) -> dict[str, float]:
    med = sketch.median()
    scaled = max(sketch.mad(med) * MAD_SCALE, params.min_scale)
    return {
        "n": sketch.n,
        "median": med,
        "scaled_mad": scaled,
        "low": med - params.mad_k * scaled,
        "high": med + params.mad_k * scaled,
    }


def sketch_error(params: CleanParams, width: float = BIN_WIDTH) -> dict[str, float]:
    """The largest difference between a statistic read from sketches and the exact one.

    The median is off by at most ``width / 2``, the MAD by ``width`` (see :meth:`Sketch.mad`), so the
    scaled MAD (floored or not) by ``1.4826 · width`` and each bound by ``width / 2 + k · 1.4826 · width``
    (0.0064 in log €/m² with the defaults: 0.64 % of a rent per m²).
    """
    return {
        "median": width / 2,
        "scaled_mad": MAD_SCALE * width,
        "bound": width / 2 + params.mad_k * MAD_SCALE * width,
    }


# ------------------------------------------------------------------------------------ seen days, window
def seen_column(contract: Contract) -> str | None:
    """The column a row is "seen" on: the contract's date column (the listing date), or None."""
    dates = [c.name for c in contract.columns if c.kind == "date"]
    return dates[0] if dates else None


def day_number(date: str) -> int:
    """Days since 1970-01-01 of an ISO date (``"2025-01-31"``)."""
    return int((np.datetime64(date[:10], "D") - _EPOCH).astype(np.int64))


def seen_days(dates: pd.Series | None, ingest_date: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The day each row was seen, and whether it was the row's own date.

    Parameters
    ----------
    dates
        The rows' date column (NaT where missing), or None when the contract has none.
    ingest_date
        The batch's ingestion day, for the rows without a date.
    n
        Rows (when ``dates`` is None).

    Returns
    -------
    days, dated
        Days since 1970-01-01 (int32), and the mask of rows seen on their own date.
    """
    days = np.full(n, day_number(ingest_date), dtype=np.int64)
    if dates is None:
        return days.astype(np.int32), np.zeros(n, dtype=bool)
    stamps = pd.to_datetime(pd.Series(dates).reset_index(drop=True)).to_numpy().astype("datetime64[D]")
    dated = ~np.isnat(stamps)
    days[dated] = (stamps[dated] - _EPOCH).astype(np.int64)
    return days.astype(np.int32), dated


def month_numbers(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each day number (8 bytes a row; :func:`month_of` names them)."""
    days = np.asarray(days)
    if not days.size:
        return np.zeros(0, dtype=np.int64)
    first, last = int(days.min()), int(days.max())
    if last - first >= _MAX_DAY_SPAN:
        return (_EPOCH + days.astype(np.int64)).astype("datetime64[M]").astype(np.int64)
    # Calendar arithmetic per row is slow: the month of each day of the span, then one lookup a row.
    return _months_of_days(first, last)[days - first]


def _months_of_days(first: int, last: int) -> np.ndarray:
    """Months since 1970-01 of the days ``first .. last``."""
    return (_EPOCH + np.arange(first, last + 1, dtype=np.int64)).astype("datetime64[M]").astype(np.int64)


def month_of(days: np.ndarray) -> np.ndarray:
    """``YYYY-MM`` of each day number (the index's partition)."""
    # Formatting dates is slow and wide: format each distinct month once, as 7 characters.
    unique, inverse = np.unique(month_numbers(days), return_inverse=True)
    text = np.datetime_as_string(unique.astype("datetime64[M]"), unit="M").astype("U7")
    return text[inverse.reshape(-1)]


def months_between(first_day: int, last_day: int) -> list[str]:
    """Every ``YYYY-MM`` from the month of ``first_day`` to that of ``last_day``."""
    first, last = (_EPOCH + np.int64(d) for d in (first_day, last_day))
    months = np.arange(first.astype("datetime64[M]"), last.astype("datetime64[M]") + 1)
    return np.datetime_as_string(months, unit="M").tolist()


@dataclass(frozen=True)
class BatchLookup:
    """The batch's valid rows as the seen index is searched for them: hashes, keys and seen days.

    Rows with equal hashes are seen the same day: dated rows hash their date, undated rows of one batch
    all have its ingestion day. So one seen day per distinct hash says it all. Hashes and keys are kept
    sorted and searched (13 bytes a row), not in a hash table (several times that); a table of the hashes'
    low bits first rules out most of a part's rows at the cost of one lookup. The table is sized to the
    batch (about 16 slots a hash: 2 MB for 100 000 rows, at most 16 MB): a fixed 16 MB one cost a 100 k
    batch more to touch, in a fresh process, than everything it saved, and is slower to look up in
    (it does not stay in the cache).
    """

    hashes: np.ndarray
    seen: np.ndarray
    dated: np.ndarray
    keys: np.ndarray | None
    window_days: int
    maybe: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)

    @classmethod
    def of(
        cls,
        row_hash: np.ndarray,
        seen: np.ndarray,
        dated: np.ndarray,
        key_hash: np.ndarray | None,
        window_days: int,
    ) -> BatchLookup:
        """Build the lookup from the batch's valid rows (their hashes, seen days and keys)."""
        # Equal hashes are seen the same day (see above): any row of a hash gives its day, so an unstable
        # sort (several times faster than np.unique's stable one) will do.
        row_hash = np.asarray(row_hash, dtype=np.int64)
        order = np.argsort(row_hash)
        ordered = row_hash[order]
        distinct = np.ones(len(ordered), dtype=bool)
        distinct[1:] = ordered[1:] != ordered[:-1]
        hashes, first = ordered[distinct], order[distinct]
        keys = None if key_hash is None else np.unique(np.asarray(key_hash, dtype=np.int64))
        bits = int(len(hashes) * _FILTER_SLOTS_PER_HASH).bit_length()
        maybe = np.zeros(1 << min(max(bits, _FILTER_MIN_BITS), _FILTER_MAX_BITS), dtype=bool)
        maybe[hashes & (maybe.size - 1)] = True
        return cls(hashes, seen[first], dated[first], keys, window_days, maybe)

    def partitions(self) -> list[tuple[str, str]]:
        """The index partitions (seen on, month) a clean row must be in to match a batch row.

        A dated row's copy has its date (one month); an undated row's copy was ingested at most
        ``window`` days before or after it.
        """
        out = {(SEEN_ON_ROW_DATE, m) for m in month_of(np.unique(self.seen[self.dated])).tolist()}
        undated = self.seen[~self.dated]
        if undated.size:
            first, last = int(undated.min()) - self.window_days, int(undated.max()) + self.window_days
            out.update((SEEN_ON_INGEST_DATE, m) for m in months_between(first, last))
        return sorted(out)

    def match(
        self, row_hash: np.ndarray, seen: np.ndarray, key_hash: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a part of the index holds for this batch.

        Parameters
        ----------
        row_hash, seen, key_hash
            One index part's columns (``key_hash`` None for a dataset without a key).

        Returns
        -------
        seen_rows, keys, key_rows
            Row hashes of the batch seen within the window, and the (key hash, row hash) pairs of the
            clean rows that share a key with the batch.
        """
        within = (
            self.maybe[row_hash & (self.maybe.size - 1)] if self.maybe.size else np.ones(len(row_hash), bool)
        )
        candidates = np.flatnonzero(within)
        position, hit = _search(self.hashes, row_hash[candidates])
        gap = np.abs(seen[candidates].astype(np.int64) - self.seen[position].astype(np.int64))
        within[candidates] = hit & (gap <= self.window_days)
        if key_hash is None or self.keys is None:
            return row_hash[within], _empty_int64(), _empty_int64()
        same_key = _search(self.keys, key_hash)[1]
        return row_hash[within], key_hash[same_key], row_hash[same_key]


def _search(sorted_values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in ``sorted_values`` (unique), and whether it is there at all."""
    if not sorted_values.size:
        return np.zeros(len(wanted), dtype=np.intp), np.zeros(len(wanted), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_values, wanted), sorted_values.size - 1)
    return position, sorted_values[position] == wanted


def index_parts(
    row_hash: np.ndarray, seen: np.ndarray, dated: np.ndarray, key_hash: np.ndarray | None
) -> Iterable[tuple[str, str, pd.DataFrame]]:
    """The seen index of one commit's clean rows: one frame per (seen on, month ``YYYY-MM``)."""
    if not len(row_hash):
        return
    first_day, last_day = int(seen.min()), int(seen.max())
    if last_day - first_day >= _MAX_DAY_SPAN:
        months = month_numbers(seen)
        first = int(months.min())
        relative = months - first
    else:  # the month of each day of the span, as a small number from the first month: one lookup a row
        table = _months_of_days(first_day, last_day)
        first = int(table[0])
        relative = (table - first).astype(np.uint32)[seen - first_day]
    span = int(relative.max()) + 1
    # Each row's part as one small number (rows seen on their date first, then by month), one stable
    # sort by it (numpy sorts 16-bit numbers by radix, in one pass), and each part is then a slice.
    part = relative + (~np.asarray(dated, dtype=bool)).astype(relative.dtype) * relative.dtype.type(span)
    part = part.astype(np.uint16) if 2 * span <= 1 << 16 else part
    order = np.argsort(part, kind="stable")
    sizes = np.bincount(part, minlength=2 * span)
    columns = {"row_hash": row_hash[order].astype(np.int64), "seen": seen[order].astype(np.int32)}
    if key_hash is not None:
        columns["key_hash"] = key_hash[order].astype(np.int64)
    end = 0
    for number in np.flatnonzero(sizes).tolist():
        start, end = end, end + int(sizes[number])
        seen_on = SEEN_ON_ROW_DATE if number < span else SEEN_ON_INGEST_DATE
        month = str(np.datetime64(first + number % span, "M"))
        yield seen_on, month, pd.DataFrame({name: values[start:end] for name, values in columns.items()})


# ------------------------------------------------------------------------------------ the summary record
@dataclass(frozen=True)
class Summary:
    """What the clean zone of a dataset holds up to one commit: its clean rows, the sketch of the checked
    value per group label, the ingestion ids of the batches committed and which commits have an index
    part in each partition (``seen_on/month``), all cumulative over the commits; and the index parts of
    that commit alone."""

    rows: int = 0
    groups: dict[str, Sketch] = field(default_factory=dict)
    index_parts: tuple[str, ...] = ()
    committed: tuple[str, ...] = ()
    partitions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    width: float = BIN_WIDTH

    def to_json(self, about: Mapping[str, Any]) -> dict[str, Any]:
        """The stored document: ``about`` (which commit, which check), then the summary."""
        return {
            "format": SUMMARY_FORMAT,
            **about,
            "bin_width": self.width,
            "rows": self.rows,
            "index_parts": list(self.index_parts),
            "groups": {label: sketch.to_json() for label, sketch in sorted(self.groups.items())},
            "committed": list(self.committed),
            "partitions": {k: list(v) for k, v in sorted(self.partitions.items())},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Summary:
        """Read a stored summary (``ValueError`` or ``KeyError`` when it is not one)."""
        if doc.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"summary format {doc.get('format')!r}, expected {SUMMARY_FORMAT}")
        width = float(doc["bin_width"])
        groups = {str(k): Sketch.from_json(v, width) for k, v in dict(doc["groups"]).items()}
        parts, committed = (tuple(str(k) for k in doc[name]) for name in ("index_parts", "committed"))
        partitions = {str(k): tuple(str(n) for n in v) for k, v in dict(doc["partitions"]).items()}
        return cls(int(doc["rows"]), groups, parts, committed, partitions, width)
