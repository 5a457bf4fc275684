"""Listings in, estimates out: one vectorised inference, then warnings, verdicts and rounding.

Money is rounded to the whole euro everywhere (an estimate to the cent would claim a precision the
model does not have); percentiles to 0.1. The legal reference rent (:mod:`rentlake.legal.lookup`) is
read from the table, to the cent, as published.

Each estimate carries either ``legal`` (the listing gave ``quartier``, ``rooms`` and ``built`` and the
champion has a reference table) or ``legal_hint`` (a sentence naming the missing fields, or saying the
table is unavailable); the market ``verdict`` is answered beside it in both cases. In a batch, a listing
that gives no legal field carries neither: the batch says the hint once (:func:`batch_hint`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rentlake.legal.lookup import REQUEST_FIELDS, LegalLookupError, LegalRequest, hint
from rentlake.runtime.champion import LoadedModel
from rentlake.runtime.errors import ApiError, FieldProblem, field_names
from rentlake.runtime.interval import percentile_of, verdict_of


class ListingLike(Protocol):
    """What :func:`estimates_for` reads from a listing (the API's pydantic model fits)."""

    surface_m2: float
    district: str | None
    current_rent_eur: float | None
    # The legal fields (rentlake.legal.lookup.REQUEST_FIELDS) are read with getattr: they are optional.


def _fmt(x: float) -> str:
    return f"{x:g}"


def listing_warnings(model: LoadedModel, surface: float, district: str | None) -> list[str]:
    """Warnings about one listing: extrapolated surface, unseen, missing or unused district, and a model
    trained on a small sample (the card's ``small_sample``)."""
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
    small = _small_sample_message(model)
    if small is not None:
        out.append(small)  # the card's own words: the model was judged on few listings
    return out


def _small_sample_message(model: LoadedModel) -> str | None:
    small = model.card.raw.get("small_sample")
    if isinstance(small, dict) and small.get("message"):
        return str(small["message"])
    return None


# The legal fields of a listing in one C call: most listings give none, and a batch of 1 000 pays this
# check per listing.
_LEGAL_VALUES = operator.attrgetter(*REQUEST_FIELDS)


def _gives_legal_field(item: ListingLike) -> bool:
    try:
        values = _LEGAL_VALUES(item)
    except AttributeError:  # a listing-like object without every optional field
        values = tuple(getattr(item, f, None) for f in REQUEST_FIELDS)
    return values.count(None) != len(values)


def legal_part(model: LoadedModel, item: ListingLike) -> dict[str, Any] | None:
    """``{"legal": {...}}`` or ``{"legal_hint": "..."}`` for one listing; None when it gives no legal field.

    Raises
    ------
    rentlake.legal.lookup.LegalLookupError
        A legal field given with a value the table cannot answer for (``field`` names it).
    """
    if not _gives_legal_field(item):
        return None
    request = LegalRequest.of(item)
    if request.missing():
        request.check_given()  # "rooms": 0 is wrong whether or not the quartier is given
    return request.answer(
        model.legal,
        surface_m2=item.surface_m2,
        current_rent_eur=item.current_rent_eur,
        no_table=model.no_table_hint,
    )


def batch_hint(answers: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``{"legal_hint": ...}`` for a batch answer when some listing gave no legal field, else ``{}``."""
    if any("legal" not in a and "legal_hint" not in a for a in answers):
        return {"legal_hint": hint()}
    return {}


def _whole_euros(values: np.ndarray, finite: np.ndarray) -> list[int]:
    """``round(v)`` of each value as Python ints, in one numpy pass (``np.rint`` rounds half to even, as
    ``round`` does); non-finite values give 0 (their listing is refused, never answered)."""
    return np.rint(np.where(finite, values, 0.0)).astype(np.int64).tolist()


def estimates_for(
    model: LoadedModel, listings: Sequence[ListingLike], *, batch: bool = True
) -> list[dict[str, Any]]:
    """The estimates of a batch of listings, with one onnxruntime call.

    Parameters
    ----------
    model
        The champion to use.
    listings
        Validated listings (surface within the contract's range and finite, rent >= 0 when given).
    batch
        Whether the request was a batch: refusals then name ``listings[i].field``, else ``field``; and a
        listing without any legal field carries no hint (the batch answer carries it once).

    Returns
    -------
    list of dict
        One estimate per listing, in order: ``rent_eur``, ``interval`` (``low``, ``high``, ``level``),
        ``model_version``, ``warnings``, when ``current_rent_eur`` was given ``verdict`` and
        ``percentile``, and ``legal`` or ``legal_hint`` (see :func:`legal_part`).

    Raises
    ------
    ApiError
        422 when the model returns a non-finite estimate for a listing, or when a legal field has a value
        the reference table cannot answer for (each such field named, with what it accepts).
    """
    # Surfaces as given (float64) for the trained-range check, as float32 for the model's input.
    surface = np.fromiter((x.surface_m2 for x in listings), dtype=np.float64, count=len(listings))
    district = None
    if model.uses_district:
        district = np.array([x.district or "" for x in listings], dtype=object)
    rent, low, high = model.predict(surface.astype(np.float32), district)
    finite = np.isfinite(rent) & np.isfinite(low) & np.isfinite(high)
    # What every listing of the call shares, read once: the per-listing loop is the cost of a batch.
    card = model.card
    shared = _Shared(
        version=model.version,
        level=card.interval_level,
        z=model.z,
        scale=card.interval_scale,
        plain_warnings=not model.uses_district and _small_sample_message(model) is None,
        extrapolated=_extrapolated(surface, card.surface_min, card.surface_max).tolist(),
    )
    rounded = zip(*(_whole_euros(a, finite) for a in (rent, low, high)), strict=True)
    # One conversion to Python floats per array: cheaper than n numpy scalar accesses.
    outputs = zip(finite.tolist(), low.tolist(), high.tolist(), rounded, strict=True)
    answers: list[dict[str, Any]] = []
    bad: list[FieldProblem] = []
    refused: list[FieldProblem] = []
    for i, (item, (ok, lo, hi, whole)) in enumerate(zip(listings, outputs, strict=True)):
        if not ok:
            bad.append(FieldProblem(f"listings[{i}].surface_m2", "the model returned no finite estimate"))
            continue
        try:
            legal = legal_part(model, item)
        except LegalLookupError as exc:
            refused.append(FieldProblem((f"listings[{i}]." if batch else "") + exc.field, exc.message))
            continue
        answer = _estimate(model, shared, i, item, (lo, hi), whole)
        answer.update(legal if legal is not None else ({} if batch else {"legal_hint": hint()}))
        answers.append(answer)
    _raise_refusals(refused, bad)
    return answers


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every estimate of one call reads from the champion (see :func:`estimates_for`)."""

    version: str
    level: float
    z: float
    scale: str
    plain_warnings: bool  # no district model, no small-sample message: warnings only for extrapolation
    extrapolated: list[bool]


def _extrapolated(surface: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    out = np.zeros(len(surface), dtype=bool)
    if lo is not None:
        out |= surface < lo
    if hi is not None:
        out |= surface > hi
    return out


def _estimate(
    model: LoadedModel,
    shared: _Shared,
    i: int,
    item: ListingLike,
    bounds: tuple[float, float],
    whole: tuple[int, int, int],
) -> dict[str, Any]:
    """One listing's estimate from the model's outputs (without its legal part)."""
    district = item.district
    if shared.plain_warnings and district is None and not shared.extrapolated[i]:
        warnings: list[str] = []
    else:
        warnings = listing_warnings(model, float(item.surface_m2), district)
    answer: dict[str, Any] = {
        "rent_eur": whole[0],
        "interval": {"low": whole[1], "high": whole[2], "level": shared.level},
        "model_version": shared.version,
        "warnings": warnings,
    }
    current = item.current_rent_eur
    if current is not None:
        low, high = bounds
        answer["verdict"] = verdict_of(current, low, high)
        pct = percentile_of(current, low, high, shared.z, shared.scale)
        answer["percentile"] = None if pct is None else round(pct, 1)
    return answer


def _raise_refusals(refused: list[FieldProblem], bad: list[FieldProblem]) -> None:
    """The 422 of a request with a legal field the table refuses, or a listing the model cannot answer."""
    if refused:
        message = f"invalid request: {field_names(refused)}"
        if len(refused) == 1:
            message = f"invalid request: {refused[0].field}: {refused[0].problem}"
        raise ApiError(422, "invalid_request", message, refused + bad)
    if bad:
        raise ApiError(422, "cannot_estimate", "the model cannot estimate some listings", bad)
