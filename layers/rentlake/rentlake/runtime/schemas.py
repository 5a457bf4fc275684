"""The estimates API's request and response models (pydantic): its OpenAPI schemas and its validation.

Requests are validated strictly (a number given as a string is refused, not converted) against the
listings contract's domain: a surface outside :data:`SURFACE_M2` is a 422 naming the range. Responses are
documented here and built as plain dicts (validating every answer would cost more than the inference).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from rentlake.contracts.ranges import SURFACE_RANGE
from rentlake.runtime.errors import JSON

MAX_LISTINGS = 1000
MAX_RENT_EUR = 1_000_000.0
MIN_SURFACE_ENV = "RENTLAKE_MIN_SURFACE_M2"


def surface_domain(env: Mapping[str, str]) -> tuple[float, float]:
    """The surfaces the API estimates: the listings contract's range, its minimum raised by
    ``RENTLAKE_MIN_SURFACE_M2`` when set (never below the contract's: the model was trained on no smaller
    dwelling).

    Raises
    ------
    ValueError
        When the variable is not a number within the contract's range (a typo must fail at cold start).
    """
    low, high = SURFACE_RANGE
    raw = env.get(MIN_SURFACE_ENV, "").strip()
    if not raw:
        return low, high
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {MIN_SURFACE_ENV}={raw!r} is not a number") from exc
    if not low <= value < high:  # NaN fails too
        raise ValueError(
            f"environment variable {MIN_SURFACE_ENV}={raw!r} must be at least {low:g} (the listings "
            f"contract's minimum) and below {high:g}"
        )
    return value, high


SURFACE_M2 = surface_domain(os.environ)
# Refusals that name the whole domain, below or above it (see rentlake.runtime.errors.validation_error).
FIELD_DOMAINS = {"surface_m2": f"must be between {SURFACE_M2[0]:g} and {SURFACE_M2[1]:g} m²"}


# ----------------------------------------------------------------------------------- request models
Surface = Annotated[
    float,
    Field(
        strict=True,  # "30" or "NaN" as strings are type errors, not silently converted
        ge=SURFACE_M2[0],
        le=SURFACE_M2[1],
        allow_inf_nan=False,
        description=f"Living area in m², {SURFACE_M2[0]:g} to {SURFACE_M2[1]:g} (the listings contract's "
        "range: smaller or larger surfaces are not dwellings the model knows).",
        examples=[30],
    ),
]
Rent = Annotated[
    float,
    Field(
        strict=True,
        ge=0,
        le=MAX_RENT_EUR,
        allow_inf_nan=False,
        description="Rent paid now, €/month excluding charges; adds a verdict and a percentile.",
        examples=[1250],
    ),
]
District = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=64,
        description="District, as in the training data.",
        examples=["75011"],
    ),
]


City = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=32,
        description="City of the legal reference table: `paris` (default) or `lille`.",
        examples=["paris"],
    ),
]
Quartier = Annotated[
    str | int,
    Field(
        description="Paris: the quartier's name (accents, case, 'St'/'Saint' do not matter) or its 7-digit "
        "code (751AAQQ); Lille: the 9-digit IRIS code. See `GET /quartiers`.",
        examples=["Belleville"],
    ),
]
Rooms = Annotated[
    int,
    Field(strict=True, description="Main rooms, 1-4; more than 4 counts as 4.", examples=[2]),
]
Built = Annotated[
    int | str,
    Field(
        description="Construction year, or one of the periods 'Avant 1946', '1946-1970', '1971-1990', "
        "'Apres 1990'.",
        examples=[1965],
    ),
]
Furnished = Annotated[bool, Field(description="Furnished letting (default false).", examples=[False])]
LegalYear = Annotated[
    int,
    Field(strict=True, description="Year of the reference table (default: the latest).", examples=[2017]),
]


class Listing(BaseModel):
    """One listing to estimate; ``quartier``, ``rooms`` and ``built`` together add the legal answer."""

    model_config = ConfigDict(extra="forbid")

    surface_m2: Surface
    district: District | None = None
    current_rent_eur: Rent | None = None
    city: City | None = None
    quartier: Quartier | None = None
    rooms: Rooms | None = None
    built: Built | None = None
    furnished: Furnished | None = None
    year: LegalYear | None = None

    def __repr__(self) -> str:
        # Powertools formats the route arguments into a debug f-string on every request (see ListingBatch):
        # the fields set, without pydantic's generic repr machinery.
        return f"Listing({', '.join(f'{k}={getattr(self, k)!r}' for k in sorted(self.model_fields_set))})"


class ListingBatch(BaseModel):
    """Up to 1 000 listings estimated in one call."""

    model_config = ConfigDict(extra="forbid")

    listings: Annotated[list[Listing], Field(min_length=1, max_length=MAX_LISTINGS)]

    def __repr__(self) -> str:
        # Powertools formats the route arguments into a debug f-string on every request (even with debug
        # logging off): pydantic's full repr of 1 000 listings would cost more than the inference.
        return f"ListingBatch(<{len(self.listings)} listings>)"


def _request_kind(value: Any) -> str | None:
    """Tell a batch from a single listing (``None``: not a JSON object)."""
    if isinstance(value, Mapping):
        return "batch" if "listings" in value else "listing"
    if isinstance(value, BaseModel):
        return "batch" if isinstance(value, ListingBatch) else "listing"
    return None


EstimateRequest = Annotated[
    Annotated[Listing, Tag("listing")] | Annotated[ListingBatch, Tag("batch")],
    Discriminator(_request_kind),
]


# ---------------------------------------------------------------------------------- response models
class Interval(BaseModel):
    low: int = Field(description="Lower bound, €/month.")
    high: int = Field(description="Upper bound, €/month.")
    level: float = Field(description="Probability of the interval.", examples=[0.9])


class QuartierRef(BaseModel):
    name: str = Field(examples=["Belleville"])
    code: str = Field(examples=["7512077"])


class LegalAnswer(BaseModel):
    """The legal reference rent (encadrement des loyers) of the listing, read from the reference table.

    Information from the official table, not legal advice (``notice``). Amounts exclude charges.
    """

    ref_eur_m2: float = Field(description="Reference rent, €/m²/month.", examples=[28.4])
    min_eur_m2: float = Field(description="Minimum ('loyer de référence minoré'), €/m²/month.")
    max_eur_m2: float = Field(description="Maximum ('loyer de référence majoré'), €/m²/month.")
    ref_rent_eur: float | None = Field(None, description="Reference rent × surface, €/month (to the cent).")
    min_rent_eur: float | None = Field(None, description="Minimum × surface, €/month.")
    max_rent_eur: float | None = Field(None, description="Maximum × surface, €/month.")
    year: int = Field(description="Year of the table used.", examples=[2017])
    source: str = Field(description="The table's source.")
    city: Literal["PARIS", "LILLE"]
    quartier: QuartierRef
    rooms: int = Field(description="Room class used (1-4).")
    period: str = Field(description="Construction period used.", examples=["1946-1970"])
    furnished: bool
    current_rent_eur: float | None = Field(None, description="The rent given, when given.")
    verdict: Literal["above_max", "within", "below_min"] | None = Field(
        None, description="Where the current rent stands against the legal band (bounds included)."
    )
    notice: str = Field(description="Information from the reference table, not legal advice.")


class Estimate(BaseModel):
    """The answer for one listing (money rounded to the euro; legal amounts to the cent)."""

    rent_eur: int = Field(description="Estimated rent, €/month.", examples=[1190])
    interval: Interval
    model_version: str
    warnings: list[str]
    verdict: Literal["above", "within", "below"] | None = Field(
        None, description="Where the current rent stands against the interval (when given)."
    )
    percentile: float | None = Field(
        None, description="Percentile of the current rent in the predictive distribution (0-100)."
    )
    legal: LegalAnswer | None = Field(
        None,
        description="The legal reference rent, when the listing gives quartier, rooms and built (and the "
        "model carries a reference table). With current_rent_eur it adds a legal verdict.",
    )
    legal_hint: str | None = Field(
        None,
        description="Instead of `legal`: the fields that would add the legal answer, or why the reference "
        "table is unavailable.",
    )


class EstimateBatch(BaseModel):
    estimates: list[Estimate]
    model_version: str
    legal_hint: str | None = Field(
        None,
        description="Present when some listings gave no legal field: the fields that would add the legal "
        "answer (said once for the batch; listings with some legal fields carry their own hint).",
    )


class FieldError(BaseModel):
    field: str = Field(examples=["listings[3].surface_m2"])
    problem: str = Field(examples=["must be greater than 0"])


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError]


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelInfo(BaseModel):
    version: str
    model_name: str | None
    trained_at: str | None
    promoted_at: str | None
    metrics: dict[str, Any]
    features: list[str]
    feature_ranges: dict[str, Any]
    interval: dict[str, Any]
    small_sample: dict[str, Any] | None = Field(
        default=None,
        description="Set when the model was judged on fewer held-out listings than the quality gate decides "
        "on (the first model of a small lake): `heldout_rows`, `min_heldout_rows`, `message`.",
    )
    legal: dict[str, Any] = Field(
        description="The legal reference table served with the model: `available`, `years` per city, "
        "`source`, or `problem` when it could not be loaded."
    )


class QuartierList(BaseModel):
    city: Literal["PARIS", "LILLE"]
    years: list[int]
    quartiers: list[QuartierRef]
    hint: str | None = None


class BandPoint(BaseModel):
    surface_m2: float
    rent_eur: float
    low: float
    high: float


class PlotData(BaseModel):
    model_version: str
    level: float
    surface_range: list[float]
    district: str | None
    band: list[BandPoint] = Field(description="The model's estimate and interval over the surface range.")
    points: list[list[float]] = Field(
        description="Up to 500 training listings as [surface_m2, rent_eur], when the model card has them."
    )


class Health(BaseModel):
    status: str
    model_version: str | None


def error_responses(*codes: int) -> dict[int, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of refusals with these status codes."""
    return {
        c: {
            "description": "Refused; the body names the fields at fault.",
            "content": {JSON: {"model": ErrorBody}},
        }
        for c in codes
    }
