"""Listings in, answers out: one vectorised inference, then warnings, verdicts and rounding.

Money is rounded to the whole euro everywhere (an estimate to the cent would claim a precision the
model does not have); percentiles to 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rentlake.runtime.errors import ApiError, FieldProblem
from rentlake.runtime.model import LoadedModel


class ListingLike(Protocol):
    """What :func:`estimate` reads from a listing (the API's pydantic model fits)."""

    surface_m2: float
    district: str | None
    current_rent_eur: float | None


def percentile_of(rent: float, low: float, high: float, z: float, scale: str) -> float | None:
    """Where ``rent`` stands in the predictive distribution, in percent.

    The interval ``[low, high]`` is read as a central interval of a normal law on the ``scale`` given
    (``"log"``: log-normal), ``z`` standard deviations either side of its centre.

    Parameters
    ----------
    rent
        The current rent.
    low, high
        Bounds of the predictive interval.
    z
        Half-width of the interval in standard deviations (1.6449 for 90 %).
    scale
        ``"log"`` or ``"linear"``.

    Returns
    -------
    float or None
        The percentile (0-100), or ``None`` when the interval is degenerate.
    """
    if scale == "log":
        if low <= 0 or high <= 0 or rent <= 0:
            return 0.0 if rent <= 0 < low else None
        lo, hi, x = math.log(low), math.log(high), math.log(rent)
    else:
        lo, hi, x = low, high, rent
    if not hi > lo:
        return None
    centre = (lo + hi) / 2
    sigma = (hi - lo) / (2 * z)
    phi = 0.5 * (1.0 + math.erf((x - centre) / (sigma * math.sqrt(2.0))))
    return min(100.0, max(0.0, 100.0 * phi))


def verdict_of(rent: float, low: float, high: float) -> str:
    """``"above"``, ``"within"`` or ``"below"`` the market interval ``[low, high]`` (bounds included)."""
    if rent > high:
        return "above"
    if rent < low:
        return "below"
    return "within"


def _fmt(x: float) -> str:
    return f"{x:g}"


def listing_warnings(model: LoadedModel, surface: float, district: str | None) -> list[str]:
    """Warnings about one listing: extrapolated surface, unseen, missing or unused district."""
    card = model.card
    out: list[str] = []
    lo, hi = card.surface_min, card.surface_max
    if (lo is not None and surface < lo) or (hi is not None and surface > hi):
        out.append(
            f"surface_m2 {_fmt(surface)} is outside the range the model was trained on "
            f"({_fmt(lo if lo is not None else -math.inf)}–{_fmt(hi if hi is not None else math.inf)} m²); "
            "the estimate is an extrapolation"
        )
    if model.uses_district:
        if district is None:
            out.append("no district given: the estimate is for a typical district")
        elif card.districts and district not in card.districts:
            out.append(f"district {district!r} was not seen in training: the estimate ignores it")
    elif district is not None:
        out.append(f"district is not used by model {model.version}: ignored")
    return out


def estimate(model: LoadedModel, listings: Sequence[ListingLike]) -> list[dict[str, Any]]:
    """Answer a batch of listings with one onnxruntime call.

    Parameters
    ----------
    model
        The champion to use.
    listings
        Validated listings (surface > 0 and finite, rent >= 0 when given).

    Returns
    -------
    list of dict
        One answer per listing, in order: ``rent_eur``, ``interval`` (``low``, ``high``, ``level``),
        ``model_version``, ``warnings`` and, when ``current_rent_eur`` was given, ``verdict`` and
        ``percentile``.

    Raises
    ------
    ApiError
        422 when the model returns a non-finite estimate for a listing.
    """
    n = len(listings)
    surface = np.fromiter((x.surface_m2 for x in listings), dtype=np.float32, count=n)
    district = None
    if model.uses_district:
        district = np.array([x.district or "" for x in listings], dtype=object)
    rent, low, high = model.predict(surface, district)
    # One conversion to Python floats per array: cheaper than n numpy scalar accesses.
    rent_l, low_l, high_l = rent.tolist(), low.tolist(), high.tolist()
    card = model.card
    version = model.version
    level = card.interval_level
    answers: list[dict[str, Any]] = []
    bad: list[FieldProblem] = []
    for i, item in enumerate(listings):
        r, lo, hi = rent_l[i], low_l[i], high_l[i]
        if not (math.isfinite(r) and math.isfinite(lo) and math.isfinite(hi)):
            bad.append(FieldProblem(f"listings[{i}].surface_m2", "the model returned no finite estimate"))
            continue
        answer: dict[str, Any] = {
            "rent_eur": round(r),
            "interval": {"low": round(lo), "high": round(hi), "level": level},
            "model_version": version,
            "warnings": listing_warnings(model, float(item.surface_m2), item.district),
        }
        current = item.current_rent_eur
        if current is not None:
            answer["verdict"] = verdict_of(current, lo, hi)
            pct = percentile_of(current, lo, hi, model.z, card.interval_scale)
            answer["percentile"] = None if pct is None else round(pct, 1)
        answers.append(answer)
    if bad:
        raise ApiError(422, "cannot_estimate", "the model cannot estimate some listings", bad)
    return answers
