"""Does a new clean batch look like the market the earlier batches describe? (pure; no I/O)

A batch is compared with the *clean history*: the rows of the batches committed before it that train
models. Per group (its district when the history holds at least :data:`MIN_GROUP` rows of it, else all
rows pooled), on ``y = ln(rent / surface)``:

* **median shift**: ``z = (median_batch(y) − median_history(y)) / s``, where ``s`` is the history's robust
  standard deviation (1.4826 × MAD, at least :data:`MIN_SCALE`). Held when ``|z| >`` :data:`MAX_SHIFT`
  and the shift is beyond three standard errors of a batch median (``1.2533 · s / √n``), so a handful of
  rows cannot trip it by chance. Why 1 robust SD: rents drift a few percent a year (≈ 0.1–0.2 SD of the
  course data's 0.23); a batch whose typical €/m² sits where only the history's top (or bottom) sixth
  sits is not drift but another market, or a poisoned feed.
* **share beyond the history's range**: the share of the batch's rows outside the history's 1st–99th
  percentiles (2 % expected). Held when it exceeds :data:`MAX_SHARE_BEYOND` (10 %, five times that) and
  the count is improbable under the expected 2 % (binomial p < 10⁻³). This catches a poisoned *part* of a
  batch that moves the median little (30 % of rows at five times the price).

Robust statistics of the history are used, not the batch's: the clean stage's outlier bounds come from a
pool the new batch itself dominates when it is large, which is how a batch of 3 000 listings at 150–195
€/m² passes cleaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ShiftCheck",
    "HistorySample",
    "check_batch",
    "MAX_SHIFT",
    "MAX_SHARE_BEYOND",
    "MIN_GROUP",
    "MIN_HISTORY",
]

#: Largest shift of a group's median log €/m², in robust standard deviations of the history.
MAX_SHIFT = 1.0
#: Largest share of a batch's rows outside the history's 1st–99th percentiles.
MAX_SHARE_BEYOND = 0.10
#: A district is its own group from this many history rows (as the clean stage's robust check).
MIN_GROUP = 30
#: Below this many history rows there is no market to compare with: the batch is admitted.
MIN_HISTORY = 30
#: Floor of the robust SD (log scale), as the clean stage's: a history of identical €/m² is not a ruler.
MIN_SCALE = 0.05
#: Fewest batch rows in a group for it to be compared at all.
MIN_BATCH_GROUP = 5
#: The binomial test of the share beyond is at this level.
SHARE_ALPHA = 1e-3
#: Rows of the history a batch is compared with, at most (a hash sample beyond): the median, MAD and 1st
#: and 99th percentiles of a million rows are within a few thousandths of a robust SD of the whole's.
HISTORY_SAMPLE_ROWS = 1_000_000
#: Every district keeps this many rows of the history sample (or all its rows), so that a small district
#: stays its own group (:data:`MIN_GROUP`) however large the others.
HISTORY_GROUP_FLOOR = 1_000


@dataclass
class ShiftCheck:
    """The verdict on one batch."""

    held: bool
    reason: str
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``held``, ``reason``, ``groups`` (one dict of numbers per compared group) and the thresholds."""
        return {
            "held": self.held,
            "reason": self.reason,
            "statistic": "shift of the group median of ln(rent/surface) in robust SDs of the history; "
            "share of rows beyond the history's 1st-99th percentiles",
            "thresholds": {"max_shift_sd": MAX_SHIFT, "max_share_beyond": MAX_SHARE_BEYOND},
            "groups": self.groups,
        }


@dataclass
class HistorySample:
    """A bounded sample of the clean history, the same whatever order its batches are added in.

    It holds the ``max_rows`` rows of smallest hash ``u`` (:func:`rentlake.model.sample.uniform_of`)
    and, per district, that district's ``floor`` rows of smallest ``u``: a "bottom-k" sample, uniform and
    mergeable (a row dropped from a part's bottom k can never be in the whole's). Up to ``max_rows`` rows
    it is the whole history, so the review decides exactly as on every row.

    Attributes
    ----------
    max_rows : int
        Rows kept overall (plus the districts' floors).
    floor : int
        Rows kept per district at least (or all its rows).
    rows : int
        History rows added (sampled or not).
    """

    max_rows: int = HISTORY_SAMPLE_ROWS
    floor: int = HISTORY_GROUP_FLOOR
    rows: int = 0
    _kept: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {"rent_eur": [], "surface_m2": [], "district": pd.Series([], dtype=object), "u": []}
        ),
        repr=False,
    )

    def add(self, batch: pd.DataFrame, u: np.ndarray) -> None:
        """Add a batch's rows (``rent_eur``, ``surface_m2``, optional ``district``) with their ``u``."""
        district = (
            batch["district"].astype("object").where(batch["district"].notna(), "").astype(str)
            if "district" in batch.columns
            else pd.Series("", index=batch.index, dtype=object)
        )
        new = pd.DataFrame(
            {
                "rent_eur": pd.to_numeric(batch["rent_eur"], errors="coerce").to_numpy(dtype=float),
                "surface_m2": pd.to_numeric(batch["surface_m2"], errors="coerce").to_numpy(dtype=float),
                "district": district.to_numpy(dtype=object),
                "u": np.asarray(u, dtype=float),
            }
        )
        self.rows += len(new)
        kept = pd.concat([self._kept, new], ignore_index=True) if len(self._kept) else new
        if len(kept) > self.max_rows:
            kept = kept.iloc[np.argsort(kept["u"].to_numpy(), kind="stable")]
            rank = np.arange(len(kept))
            in_group = kept.groupby("district", sort=False).cumcount().to_numpy()
            kept = kept[(rank < self.max_rows) | (in_group < self.floor)].reset_index(drop=True)
        self._kept = kept

    def frame(self) -> pd.DataFrame:
        """The sampled rows: ``rent_eur``, ``surface_m2``, ``district`` (missing as ``""``)."""
        return self._kept[["rent_eur", "surface_m2", "district"]]

    @property
    def sampled(self) -> bool:
        """Whether rows were left out (the history is larger than the sample)."""
        return len(self._kept) < self.rows

    def to_json(self) -> dict[str, Any]:
        """``rows`` (history rows), ``compared_with`` (rows of the sample) and the bounds."""
        return {
            "rows": self.rows,
            "compared_with": len(self._kept),
            "max_rows": self.max_rows,
            "floor": self.floor,
        }


def _log_price(df: pd.DataFrame) -> pd.DataFrame:
    rent = pd.to_numeric(df["rent_eur"], errors="coerce").to_numpy(dtype=float)
    surface = pd.to_numeric(df["surface_m2"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(rent / surface)
    district = (
        df["district"].astype("object").where(df["district"].notna(), "").astype(str).to_numpy()
        if "district" in df.columns
        else np.full(len(df), "", dtype=object)
    )
    ok = np.isfinite(y)
    return pd.DataFrame({"y": y[ok], "district": district[ok]})


def check_batch(history: pd.DataFrame, batch: pd.DataFrame) -> ShiftCheck:
    """Compare a batch's €/m² with the clean history's, per group.

    Parameters
    ----------
    history : pandas.DataFrame
        Rows of the earlier training batches: ``rent_eur``, ``surface_m2``, optional ``district``.
    batch : pandas.DataFrame
        The new batch's clean rows, same columns.

    Returns
    -------
    ShiftCheck
        ``held`` and the reason, with the numbers of every compared group.
    """
    h, b = _log_price(history), _log_price(batch)
    if len(h) < MIN_HISTORY:
        return ShiftCheck(
            False, f"admitted: the history holds {len(h)} rows, fewer than {MIN_HISTORY} to compare with"
        )
    if b.empty:
        return ShiftCheck(False, "the batch has no clean row")
    groups = []
    for name, rows in _groups(h, b):
        groups.append(_compare(name, rows[0], rows[1]))
    flagged = [g for g in groups if g["held"]]
    if not flagged:
        worst = max(groups, key=lambda g: abs(g["shift_sd"]), default=None)
        detail = f" (largest median shift {worst['shift_sd']:+.2f} SD in {worst['group']})" if worst else ""
        return ShiftCheck(False, f"€/m² in line with the history{detail}", groups)
    return ShiftCheck(True, "; ".join(g["why"] for g in flagged), groups)


def _groups(h: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """(name, (history y, batch y)) per district with enough history, then the rest pooled."""
    counts = h["district"].value_counts()
    own = sorted(d for d in b["district"].unique() if d and counts.get(d, 0) >= MIN_GROUP)
    out = [
        (
            f"district {d}",
            (h.loc[h["district"] == d, "y"].to_numpy(), b.loc[b["district"] == d, "y"].to_numpy()),
        )
        for d in own
    ]
    rest = ~b["district"].isin(own)
    if rest.any():
        out.append(
            (
                "all districts" if not own else "other districts",
                (h["y"].to_numpy(), b.loc[rest, "y"].to_numpy()),
            )
        )
    return [(n, r) for n, r in out if r[1].size >= MIN_BATCH_GROUP]


def _compare(name: str, hy: np.ndarray, by: np.ndarray) -> dict[str, Any]:
    from scipy import stats

    med_h = float(np.median(hy))
    scale = max(1.4826 * float(np.median(np.abs(hy - med_h))), MIN_SCALE)
    med_b = float(np.median(by))
    shift = (med_b - med_h) / scale
    se = 1.2533 / math.sqrt(by.size)
    q_lo, q_hi = np.quantile(hy, [0.01, 0.99])
    beyond = int(((by < q_lo) | (by > q_hi)).sum())
    share = beyond / by.size
    p_share = float(stats.binom.sf(beyond - 1, by.size, 0.02)) if beyond else 1.0
    shifted = abs(shift) > MAX_SHIFT and abs(shift) > 3 * se
    spread = share > MAX_SHARE_BEYOND and p_share < SHARE_ALPHA
    why = []
    if shifted:
        why.append(
            f"{name}: median {math.exp(med_b):.1f} €/m² vs {math.exp(med_h):.1f} €/m² in the history, "
            f"a shift of {shift:+.1f} robust SD (limit {MAX_SHIFT:g})"
        )
    if spread:
        why.append(
            f"{name}: {share:.0%} of its {by.size} rows beyond the history's 1st-99th percentiles "
            f"({math.exp(q_lo):.1f}-{math.exp(q_hi):.1f} €/m²; limit {MAX_SHARE_BEYOND:.0%})"
        )
    return {
        "group": name,
        "history_rows": int(hy.size),
        "batch_rows": int(by.size),
        "history_median_eur_m2": math.exp(med_h),
        "batch_median_eur_m2": math.exp(med_b),
        "robust_sd": scale,
        "shift_sd": shift,
        "share_beyond": share,
        "share_beyond_p": p_share,
        "held": bool(shifted or spread),
        "why": "; ".join(why),
    }
