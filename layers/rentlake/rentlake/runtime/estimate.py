"""Listings in, answers out: one vectorised inference, then warnings, verdicts and rounding.

Money is rounded to the whole euro everywhere (an estimate to the cent would claim a precision the
model does not have); percentiles to 0.1. The legal reference rent (:mod:`rentlake.runtime.legal`) is
read from the table, to the cent, as published.

Each answer carries either ``legal`` (the listing gave ``quartier``, ``rooms`` and ``built`` and the
champion has a reference table) or ``legal_hint`` (a sentence naming the missing fields, or saying the
table is unavailable); the market ``verdict`` is answered beside it in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rentlake.runtime import legal
from rentlake.runtime.errors import ApiError, FieldProblem
from rentlake.runtime.model import LoadedModel

TABLE_UNAVAILABLE = (
    "the legal reference table could not be loaded with this model: the legal reference rent is "
    "unavailable for now (the market estimate is not affected)"
)
# The fields of a listing the legal lookup reads (besides surface_m2 and current_rent_eur).
LEGAL_REQUEST_FIELDS = ("city", "quartier", "rooms", "built", "furnished", "year")
_NO_LEGAL_FIELDS: dict[str, Any] = {"legal_hint": legal.hint(legal.LEGAL_FIELDS)}  # merged, never mutated


class ListingLike(Protocol):
    """What :func:`estimate` reads from a listing (the API's pydantic model fits)."""

    surface_m2: float
    district: str | None
    current_rent_eur: float | None
    # Optional legal fields (city, quartier, rooms, built, furnished, year) are read with getattr.


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


def batch_hint(answers: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``{"legal_hint": ...}`` for a batch answer when some listing gave no legal field, else ``{}``."""
    for a in answers:
        if "legal" not in a and "legal_hint" not in a:
            return dict(_NO_LEGAL_FIELDS)
    return {}


def legal_request(item: ListingLike) -> dict[str, Any]:
    """The legal lookup's request fields of one listing (absent ones as None)."""
    req = {f: getattr(item, f, None) for f in LEGAL_REQUEST_FIELDS}
    req["surface_m2"] = item.surface_m2
    req["current_rent_eur"] = item.current_rent_eur
    return req


def _check_given(req: dict[str, Any]) -> None:
    """Refuse the legal fields given with a wrong value even when the set is incomplete."""
    if req.get("city") not in (None, ""):
        legal.normalise_city(req["city"])
    if req.get("rooms") not in (None, ""):
        legal.normalise_rooms(req["rooms"])
    if req.get("built") not in (None, ""):
        legal.normalise_built(req["built"])
    legal.normalise_furnished(req.get("furnished"))


def legal_part(model: LoadedModel, item: ListingLike) -> dict[str, Any]:
    """``{"legal": {...}}`` or ``{"legal_hint": "..."}`` for one listing.

    Parameters
    ----------
    model
        The champion (its ``legal`` table, or ``legal_problem`` when the table failed to load).
    item
        The listing.

    Returns
    -------
    dict
        The keys to merge into the listing's answer.

    Raises
    ------
    rentlake.runtime.legal.LegalLookupError
        A legal field given with a value the table cannot answer for (``field`` names it).
    """
    if all(getattr(item, f, None) is None for f in LEGAL_REQUEST_FIELDS):
        return _NO_LEGAL_FIELDS  # the common case, kept at ~1 µs: batches of 1 000 pay it per listing
    req = legal_request(item)
    missing = legal.missing_fields(req)
    if missing:
        _check_given(req)  # "rooms": 0 is wrong whether or not the quartier is given
        return {"legal_hint": legal.hint(missing)}
    if model.legal is None:
        return {"legal_hint": TABLE_UNAVAILABLE if model.legal_problem else legal.hint(available=False)}
    return legal.attach(model.legal, req)


def estimate(
    model: LoadedModel, listings: Sequence[ListingLike], *, batch: bool = True
) -> list[dict[str, Any]]:
    """Answer a batch of listings with one onnxruntime call.

    Parameters
    ----------
    model
        The champion to use.
    listings
        Validated listings (surface > 0 and finite, rent >= 0 when given).
    batch
        Whether the request was a batch: refusals then name ``listings[i].field``, else ``field``.

    Returns
    -------
    list of dict
        One answer per listing, in order: ``rent_eur``, ``interval`` (``low``, ``high``, ``level``),
        ``model_version``, ``warnings``, when ``current_rent_eur`` was given ``verdict`` and
        ``percentile``, and ``legal`` or ``legal_hint`` (see :func:`legal_part`); in a batch, a listing
        without any legal field carries neither (the batch answer carries the hint once).

    Raises
    ------
    ApiError
        422 when the model returns a non-finite estimate for a listing, or when a legal field has a value
        the reference table cannot answer for (each such field named, with what it accepts).
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
    refused: list[FieldProblem] = []
    for i, item in enumerate(listings):
        r, lo, hi = rent_l[i], low_l[i], high_l[i]
        if not (math.isfinite(r) and math.isfinite(lo) and math.isfinite(hi)):
            bad.append(FieldProblem(f"listings[{i}].surface_m2", "the model returned no finite estimate"))
            continue
        try:
            extra = legal_part(model, item)
            if batch and extra is _NO_LEGAL_FIELDS:
                extra = {}  # a batch says it once, beside "estimates" (see rentlake.runtime.api)
        except legal.LegalLookupError as exc:
            refused.append(FieldProblem(f"listings[{i}].{exc.field}" if batch else exc.field, exc.message))
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
        answer.update(extra)
        answers.append(answer)
    if refused:
        names = ", ".join(f.field for f in refused[:5]) + (" …" if len(refused) > 5 else "")
        message = f"invalid request: {names}"
        if len(refused) == 1:
            message = f"invalid request: {refused[0].field}: {refused[0].problem}"
        raise ApiError(422, "invalid_request", message, refused + bad)
    if bad:
        raise ApiError(422, "cannot_estimate", "the model cannot estimate some listings", bad)
    return answers
