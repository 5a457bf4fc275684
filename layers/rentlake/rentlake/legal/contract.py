"""The reference_rents dataset: the legal reference rents of Paris and Lille ("encadrement des loyers").

One row per city, zone, room count, construction period, furnished or not and year: the reference rent
per m² and its legal bounds (min = 0.7 × ref, max = 1.2 × ref), in €/m²/month, excluding charges.
Paris is keyed by its 80 administrative quartiers (``code_grand_quartier`` 751AAQQ), Lille by IRIS
(``code_iris``, 9 digits).

Every shape of the open data seen so far maps onto this contract through aliases:

- the 2015–2017 extract
  (``ville,id_zone,code_grand_quartier,code_iris,nom_quartier,piece,epoque,meuble,annee,ref,min,max``);
- the Paris export of 2019 onwards (``annee;secteurs_geographiques;id_quartier;nom_quartier;piece;epoque;
  meuble_txt;ref;max;min;ville;code_grand_quartier;...``, semicolons and decimal commas), whose column
  titles ("Loyers de référence majorés", ...) are aliases too;
- the field names of the Paris records API, as in the 2025 table of ``data/samples``
  (``annee;id_zone;id_quartier;nom_quartier;piece;epoque;meuble_txt;ref;max;min;ville;code_grand_quartier``,
  semicolons and ``.`` decimals).

``id_quartier`` (the quartier's number, 1–80) is no contract column: ``code_grand_quartier`` is the key,
and ingestion keeps the number in ``extra``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from rentlake.contracts import Alias, Column, Contract, register
from rentlake.legal.lookup import CITIES, PERIODS, canonical_period

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd  # imported where a normaliser runs: ingest reads contracts without pandas

# Reference rents in both cities lie within 8–40 €/m²; 100 €/m² is beyond any regulated value and
# catches a rent per month typed instead of per m².
REF_MAX_EUR_M2 = 100.0
# Rent control started in Paris in August 2015; later years are accepted as they are published.
YEAR_RANGE = (2015, 2100)
PARIS_QUARTIER = re.compile(r"^751\d{4}$")  # 75 + 1 + arrondissement (2) + quartier (2)
LILLE_IRIS = re.compile(r"^59\d{7}$")  # IRIS code: INSEE commune (5) + IRIS (4), Nord département


def normalise_code(values: pd.Series) -> pd.Series:
    """Zone codes as digit strings: trimmed, with the ``.0`` a float column leaves removed."""
    text = values.astype("string").str.strip().str.replace(r"\.0+$", "", regex=True)
    return text.mask(text == "")


def normalise_period(values: pd.Series) -> pd.Series:
    """Construction periods in the table's four spellings (``"après 1990"`` → ``"Apres 1990"``); an
    unknown value is kept as written, so the ``choices`` check quarantines it."""
    import pandas as pd

    uniques = pd.unique(values.dropna())
    table = {u: (canonical_period(str(u)) or u) for u in uniques}
    return values.map(table).astype("string")


def _zone_rule(df: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    # The key zone depends on the city: Paris rows need their quartier code, Lille rows their IRIS code.
    city = df["city"].astype("string")
    paris = (city == "PARIS").fillna(False).to_numpy()
    lille = (city == "LILLE").fillna(False).to_numpy()
    quartier = df["quartier_code"].astype("string")
    iris = df["iris_code"].astype("string")
    q_present = quartier.notna().to_numpy()
    i_present = iris.notna().to_numpy()
    q_ok = quartier.str.match(PARIS_QUARTIER).fillna(False).to_numpy()
    i_ok = iris.str.match(LILLE_IRIS).fillna(False).to_numpy()
    return [
        ("missing_quartier_code", paris & ~q_present),
        ("quartier_code_invalid", paris & q_present & ~q_ok),
        ("missing_iris_code", lille & ~i_present),
        ("iris_code_invalid", lille & i_present & ~i_ok),
    ]


def _bounds_rule(df: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    ref = df["ref_eur_m2"].to_numpy(dtype="float64", na_value=np.nan)
    lo = df["min_eur_m2"].to_numpy(dtype="float64", na_value=np.nan)
    hi = df["max_eur_m2"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        not_positive = np.isfinite(ref) & (ref <= 0)
        known = np.isfinite(ref) & np.isfinite(lo) & np.isfinite(hi)
        inconsistent = known & ((lo > ref) | (ref > hi))
    return [("ref_eur_m2_not_positive", not_positive), ("bounds_inconsistent", inconsistent)]


def _eur_m2(name: str, description: str, aliases: tuple[Alias, ...]) -> Column:
    return Column(
        name,
        "float",
        description,
        unit="EUR/m2/month",
        required=True,
        min=0.0,
        max=REF_MAX_EUR_M2,
        aliases=aliases,
    )


CONTRACT = register(
    Contract(
        name="reference_rents",
        version=1,
        description="Legal reference rents (encadrement des loyers) of Paris and Lille: reference rent per "
        "m² and its min/max bounds per zone, room count, construction period, furnished or not, year.",
        columns=(
            Column(
                "city",
                "str",
                "City: PARIS or LILLE.",
                required=True,
                choices=CITIES,
                aliases=(Alias("ville"), Alias("commune")),
            ),
            Column(
                "zone_id",
                "str",
                "Rent zone (groups of quartiers with the same reference rents).",
                aliases=(
                    Alias("id_zone"),
                    Alias("secteurs_geographiques"),
                    Alias("secteur_geographique"),
                    Alias("zone"),
                ),
            ),
            Column(
                "quartier_code",
                "str",
                "INSEE code of the quartier (grand quartier), 751AAQQ in Paris; the Paris key zone.",
                aliases=(
                    Alias("code_grand_quartier"),
                    Alias("numero_insee_du_quartier"),
                    Alias("code_quartier"),
                ),
                normaliser=normalise_code,
            ),
            Column(
                "iris_code",
                "str",
                "IRIS code (9 digits); the Lille key zone, empty in Paris.",
                aliases=(Alias("code_iris"), Alias("iris")),
                normaliser=normalise_code,
            ),
            Column(
                "quartier_name",
                "str",
                "Name of the quartier as the table writes it.",
                aliases=(Alias("nom_quartier"), Alias("nom_du_quartier")),
            ),
            Column(
                "rooms",
                "int",
                "Number of main rooms (4 means 4 or more).",
                required=True,
                min=1,
                max=4,
                aliases=(
                    Alias("piece"),
                    Alias("pieces"),
                    Alias("nombre_de_pieces_principales"),
                    Alias("nb_pieces"),
                ),
            ),
            Column(
                "period",
                "str",
                "Construction period: Avant 1946, 1946-1970, 1971-1990, Apres 1990.",
                required=True,
                choices=PERIODS,
                normaliser=normalise_period,
                aliases=(Alias("epoque"), Alias("epoque_de_construction"), Alias("periode_de_construction")),
            ),
            Column(
                "furnished",
                "bool",
                "Furnished letting (meublé) or not.",
                required=True,
                aliases=(Alias("meuble"), Alias("meuble_txt"), Alias("type_de_location")),
            ),
            Column(
                "year",
                "int",
                "Year the reference rents apply to.",
                required=True,
                min=YEAR_RANGE[0],
                max=YEAR_RANGE[1],
                aliases=(Alias("annee"), Alias("annee_de_reference")),
            ),
            _eur_m2(
                "ref_eur_m2",
                "Reference rent per m² (loyer de référence).",
                (Alias("ref"), Alias("loyer_de_reference"), Alias("loyers_de_reference")),
            ),
            _eur_m2(
                "min_eur_m2",
                "Lower bound per m² (loyer de référence minoré, 0.7 × ref).",
                (Alias("min"), Alias("loyer_de_reference_minore"), Alias("loyers_de_reference_minores")),
            ),
            _eur_m2(
                "max_eur_m2",
                "Upper bound per m² (loyer de référence majoré, 1.2 × ref).",
                (Alias("max"), Alias("loyer_de_reference_majore"), Alias("loyers_de_reference_majores")),
            ),
        ),
        # Both zone columns are in the key: one of them is empty by city, and an empty value hashes
        # the same way on every row, so the key is (city, zone, rooms, period, furnished, year).
        key=("city", "quartier_code", "iris_code", "rooms", "period", "furnished", "year"),
        row_rules=(_zone_rule, _bounds_rule),
    )
)
