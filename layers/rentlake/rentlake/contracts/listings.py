"""The listings dataset: one rental listing per row (monthly rent versus surface, the course's data)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from rentlake.contracts import Alias, Column, Contract, RobustRule, register
from rentlake.contracts.ranges import SURFACE_RANGE  # shared with the API (no pandas there)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd  # imported where a normaliser runs: ingest reads contracts without pandas

# Rents outside 50–100 000 €/month are typing errors, not listings.
RENT_RANGE = (50.0, 100_000.0)
# Rent per m² outside 5–200 €/month/m² is impossible in Paris (the legal references are 15–38 €/m²,
# the course data 20–111 €/m²); it is how a surface that lost a zero (40 m² written 4) shows up.
RENT_PER_M2_RANGE = (5.0, 200.0)

_ARR = re.compile(r"^(?:paris\s*)?(\d{1,2})\s*(?:e|er|eme|ème|è|ième)?(?:\s*arr\.?(?:ondissement)?)?$", re.I)
_POSTCODE = re.compile(r"^75(\d{3})$")


def normalise_district(values: pd.Series) -> pd.Series:
    """Paris arrondissements as postcodes (``"11"``, ``"11e"``, ``"Paris 11ème"`` → ``"75011"``);
    other districts are kept, trimmed, with inner white space collapsed."""
    import pandas as pd

    text = values.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
    text = text.mask(text == "")

    def one(v: object) -> object:
        if v is pd.NA or v is None:
            return pd.NA
        s = str(v)
        if s.endswith(".0") and s[:-2].isdigit():  # a number that went through a float column
            s = s[:-2]
        m = _POSTCODE.match(s)
        if m:
            return s
        m = _ARR.match(s)
        if m and 1 <= int(m.group(1)) <= 20:
            return f"750{int(m.group(1)):02d}"
        return s

    # Few distinct districts: normalise the uniques once, then map (fast on millions of rows).
    uniques = pd.unique(text.dropna())
    table = {u: one(u) for u in uniques}
    return text.map(table).astype("string")


def _rent_per_m2_rule(df: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (df["rent_eur"] / df["surface_m2"]).to_numpy(dtype="float64", na_value=np.nan)
    lo, hi = RENT_PER_M2_RANGE
    # Only where both values are plausible on their own: a negative surface is reported once, as such.
    rent = df["rent_eur"].to_numpy(dtype="float64", na_value=np.nan)
    surface = df["surface_m2"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        known = np.isfinite(ratio) & (rent > 0) & (surface > 0)
    return [
        ("rent_per_m2_too_low", known & (ratio < lo)),
        ("rent_per_m2_too_high", known & (ratio > hi)),
    ]


def _log_rent_per_m2(df: pd.DataFrame) -> np.ndarray:
    rent = df["rent_eur"].to_numpy(dtype="float64", na_value=np.nan)
    surface = df["surface_m2"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # such rows are out of range anyway
        return np.log(rent / surface)


def _district_group(df: pd.DataFrame) -> pd.Series:
    # A Series, not an array of Python strings: its few distinct values are what the codes are made of.
    return df["district"].astype("string").fillna("(none)")


CONTRACT = register(
    Contract(
        name="listings",
        version=1,
        description="Rental listings: monthly rent versus surface, optionally district and listing date.",
        columns=(
            Column(
                "rent_eur",
                "float",
                "Monthly rent in euros.",
                unit="EUR/month",
                required=True,
                min=RENT_RANGE[0],
                max=RENT_RANGE[1],
                aliases=(
                    Alias("loyer"),
                    Alias("loyer_mensuel"),
                    Alias("loyer_eur"),
                    Alias("price"),
                    Alias("prix"),
                    Alias("rent"),
                    Alias("monthly_rent"),
                    Alias("rent_per_month"),
                    Alias("loyer_annuel", 1 / 12, "yearly rent divided by 12"),
                    Alias("annual_rent", 1 / 12, "yearly rent divided by 12"),
                ),
            ),
            Column(
                "surface_m2",
                "float",
                "Habitable surface in square metres.",
                unit="m2",
                required=True,
                min=SURFACE_RANGE[0],
                max=SURFACE_RANGE[1],
                aliases=(
                    Alias("surface"),
                    Alias("surface_habitable"),
                    Alias("area"),
                    Alias("area_m2"),
                    Alias("m2"),
                    Alias("sqm"),
                    Alias("superficie"),
                    Alias("size_m2"),
                    Alias("surface_sqft", 0.09290304, "square feet to m²"),
                    Alias("sqft", 0.09290304, "square feet to m²"),
                ),
            ),
            Column(
                "district",
                "str",
                "District: Paris arrondissement as its postcode (75001–75020), or another district name.",
                aliases=(
                    Alias("arrondissement"),
                    Alias("arr"),
                    Alias("quartier"),
                    Alias("neighbourhood"),
                    Alias("neighborhood"),
                    Alias("code_postal"),
                    Alias("postcode"),
                    Alias("zipcode"),
                ),
                normaliser=normalise_district,
            ),
            Column(
                "listed_at",
                "date",
                "Date the listing was published.",
                aliases=(Alias("date"), Alias("date_annonce"), Alias("listing_date"), Alias("published_at")),
            ),
        ),
        row_rules=(_rent_per_m2_rule,),
        # Rent per m² is comparable within a district (surface bands are not: a column of surfaces that
        # lost their trailing zero fills the small-surface band and would shift its median).
        robust=RobustRule(
            code="rent_per_m2_outlier",
            description="log(rent per m²) more than k scaled MADs from the median of its district",
            value=_log_rent_per_m2,
            group=_district_group,
        ),
    )
)
