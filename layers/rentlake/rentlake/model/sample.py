"""Which rows train a model when the lake holds more than one function can fit: a hash sample (pure).

The rule
--------
Every row gets a uniform number ``u`` in [0, 1) from its identity: the clean zone's ``row_hash`` (the
hash of the contract's columns, written by the clean stage), mixed with a fixed salt
(:func:`uniform_of`). A group (district) of ``n`` rows is sampled at a rate ``r``: its rows with
``u < r`` are kept. So the sample depends only on the rows, never on the order they are read in or on a
random generator's state, and it needs no more memory than the rows it keeps.

The rates (:func:`group_rates`) keep the sample within ``max_rows`` rows in expectation, stratified by
group: every group keeps at least ``min(its rows, floor)`` rows (a small district is not lost in a
proportional draw), the others are sampled proportionally at one base rate, the largest that fits. Below
``max_rows`` every rate is 1: a small lake trains on every row, as before sampling existed.

Rates are taken on a grid of ``2^(-j/4)`` (:data:`RATE_STEPS` steps per halving) and only fall as a
group grows. So adding a batch changes no rate as long as the expected sample still fits the cap (a rate
steps down about once each time the lake grows by a fifth), and when a rate falls, the rows kept before
are a superset of those kept after: a row of an earlier batch sampled by the bigger lake was sampled by
the smaller one (samples nest). Once capped, the expected sample lies between about 0.84 and 1 times
``max_rows``; the binomial noise of the draw (±√max_rows, ±0.07 % at 2 M) is cut off at ``max_rows``
(:func:`trim_mask`: the few rows of largest ``u / rate``), so the cap holds row for row.

The held-out rows are sampled by the same rule with their own cap; which rows are held out is decided
before, by :func:`rentlake.model.train.holdout_mask`, on the whole lake.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "RATE_STEPS",
    "SampleRule",
    "group_rates",
    "row_identity",
    "uniform_of",
    "keep_mask",
    "row_rates",
    "trim_mask",
    "describe",
]

#: Grid steps per halving of a rate: rates are ``2 ** (-j / RATE_STEPS)``.
RATE_STEPS = 4
#: Deepest grid step (a rate of 2^-50: far below any sample of one row in a lake of a billion).
_MAX_STEP = 50 * RATE_STEPS
#: Salt of the sampling hash, so that ``u`` is independent of the held-out split's hash of the same rows.
_SALT = np.uint64(int.from_bytes(hashlib.sha256(b"rentlake/sample").digest()[:8], "little"))
#: Columns hashed for a row's identity when the clean zone has no ``row_hash`` (older lakes, tests).
IDENTITY_COLUMNS = ("rent_eur", "surface_m2", "district", "listed_at")


@dataclass(frozen=True)
class SampleRule:
    """How many rows a sample may hold.

    Attributes
    ----------
    max_rows : int
        Expected rows of the sample at most (the cap).
    floor : int
        Every group keeps at least ``min(its rows, floor)`` rows (lowered to ``max_rows / (2 × groups)``
        when there are so many groups that the floors alone would fill the cap).
    """

    max_rows: int
    floor: int = 2_000

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.floor < 0:
            raise ValueError(
                f"a sample needs max_rows >= 1 and floor >= 0, got {self.max_rows}, {self.floor}"
            )

    def to_json(self) -> dict[str, int]:
        """``max_rows`` and ``floor``."""
        return {"max_rows": self.max_rows, "floor": self.floor}


def row_identity(df: pd.DataFrame) -> np.ndarray:
    """A 64-bit identity per row: the clean zone's ``row_hash`` where present, else a hash of the values.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows with ``row_hash`` and/or the columns of :data:`IDENTITY_COLUMNS` (those present are hashed).

    Returns
    -------
    numpy.ndarray
        uint64 per row; the same row gives the same value whatever frame it is read in.
    """
    has = (
        df["row_hash"].notna().to_numpy(dtype=bool)
        if "row_hash" in df.columns
        else np.zeros(len(df), dtype=bool)
    )
    out = np.zeros(len(df), dtype=np.uint64)
    if has.any():
        out[has] = df.loc[has, "row_hash"].to_numpy(dtype=np.int64).view(np.uint64)
    if not has.all():
        cols = [c for c in IDENTITY_COLUMNS if c in df.columns]
        out[~has] = pd.util.hash_pandas_object(df.loc[~has, cols], index=False).to_numpy()
    return out


def uniform_of(identity: np.ndarray) -> np.ndarray:
    """A reproducible uniform number in [0, 1) per row identity (53 bits of a salted 64-bit mix).

    The mix is pandas' (``hash_array``: a bijection of 64-bit integers with full avalanche); the salt makes
    it independent of :func:`rentlake.model.train.holdout_mask`, which mixes the same identities unsalted.
    """
    mixed = pd.util.hash_array(np.asarray(identity, dtype=np.uint64) ^ _SALT)
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _grid_up(x: float) -> float:
    """The smallest grid rate ``2^(-j/RATE_STEPS)`` not below ``x`` (1 for ``x >= 1``)."""
    if x >= 1.0:
        return 1.0
    j = math.floor(-math.log2(x) * RATE_STEPS + 1e-9)
    return 2.0 ** (-j / RATE_STEPS)


def group_rates(counts: Mapping[Any, int], rule: SampleRule) -> dict[Any, float]:
    """The sampling rate of each group: 1 below the cap; else floors for small groups, one base rate.

    Parameters
    ----------
    counts : mapping
        Rows per group (the whole lake's, or its held-out part's).
    rule : SampleRule
        The cap and the per-group floor.

    Returns
    -------
    dict
        ``group -> rate`` in (0, 1], on the grid ``2^(-j/4)``; the expected sample,
        ``Σ rate × rows``, is at most ``rule.max_rows``.
    """
    sizes = {g: int(n) for g, n in counts.items() if int(n) > 0}
    if sum(sizes.values()) <= rule.max_rows:
        return dict.fromkeys(sizes, 1.0)
    floor = min(rule.floor, rule.max_rows // (2 * len(sizes)))
    floors = {g: _grid_up(floor / n) if floor else 0.0 for g, n in sizes.items()}
    rates: dict[Any, float] = {}
    for step in range(1, _MAX_STEP + 1):
        base = 2.0 ** (-step / RATE_STEPS)
        rates = {g: min(1.0, max(base, floors[g])) for g in sizes}
        if sum(rates[g] * n for g, n in sizes.items()) <= rule.max_rows:
            break
    return rates


def row_rates(groups: np.ndarray, rates: Mapping[Any, float], default: float = 0.0) -> np.ndarray:
    """The rate of each row's group (``default``, 0 unless given, for a group without a rate).

    Parameters
    ----------
    groups : numpy.ndarray
        Each row's group label.
    rates : mapping
        :func:`group_rates`.
    default : float
        The rate of a group :func:`group_rates` was not given (rows counted elsewhere, such as the
        exploration's quarantined duplicates, sampled at the base rate of the groups that were).
    """
    codes, labels = pd.factorize(np.asarray(groups, dtype=object), use_na_sentinel=False)
    table = np.array([rates.get(label, default) for label in labels.tolist()], dtype=np.float64)
    return table[codes] if len(codes) else np.zeros(0, dtype=np.float64)


def keep_mask(u: np.ndarray, groups: np.ndarray, rates: Mapping[Any, float]) -> np.ndarray:
    """Rows kept: ``u < rate`` of the row's group (a group without a rate keeps nothing).

    Parameters
    ----------
    u : numpy.ndarray
        :func:`uniform_of` of each row.
    groups : numpy.ndarray
        Each row's group label.
    rates : mapping
        :func:`group_rates`.
    """
    return u < row_rates(groups, rates)


def trim_mask(scaled: np.ndarray, max_rows: int) -> np.ndarray:
    """The rows a draw keeps once cut to ``max_rows``: those of smallest ``u / rate`` (all when within).

    The draw keeps at most ``max_rows`` in expectation; its binomial noise may add a few hundred rows.
    Cutting at the smallest ``u / rate`` lowers every group's rate by the same factor (a hair below 1), so
    the sample stays stratified and the bound holds row for row.

    Parameters
    ----------
    scaled : numpy.ndarray
        ``u / rate`` of each drawn row (in [0, 1)).
    max_rows : int
        The cap.
    """
    keep = np.ones(len(scaled), dtype=bool)
    if len(scaled) > max_rows:
        keep[:] = False
        keep[np.argpartition(scaled, max_rows - 1)[:max_rows]] = True
    return keep


def describe(
    counts: Mapping[Any, int], rates: Mapping[Any, float], kept: int, rule: SampleRule
) -> dict[str, Any]:
    """What the card says about one sample: rows in the lake, rows kept, the rule and its rates.

    Parameters
    ----------
    counts : mapping
        Rows per group in the lake.
    rates : mapping
        The rates applied.
    kept : int
        Rows kept.
    rule : SampleRule
        The cap and floor.

    Returns
    -------
    dict
        ``rows`` (in the lake), ``sampled``, ``max_rows``, ``floor``, ``groups``, ``base_rate`` (the rate of
        the largest group), ``groups_at_floor`` (groups sampled above the base rate to keep their floor)
        and ``all_rows`` (no group was sampled).
    """
    total = int(sum(counts.values()))
    largest = max(counts, key=lambda g: counts[g], default=None)
    base = rates.get(largest, 1.0) if largest is not None else 1.0
    return {
        "rows": total,
        "sampled": int(kept),
        **rule.to_json(),
        "groups": len(counts),
        "base_rate": base,
        "groups_at_floor": sum(1 for g in counts if rates.get(g, 1.0) > base),
        "all_rows": all(r >= 1.0 for r in rates.values()),
    }
