"""The reference_rents contract: recognised by its header (every shape), typed and checked by clean."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from rentlake import contracts
from rentlake.cleaning import coerce_bool, type_chunk
from rentlake.parsing import parse_object

from tests.support import SAMPLES

OLD_HEADER = [
    "ville",
    "id_zone",
    "code_grand_quartier",
    "code_iris",
    "nom_quartier",
    "piece",
    "epoque",
    "meuble",
    "annee",
    "ref",
    "min",
    "max",
]
NEW_HEADER = [
    "annee",
    "secteurs_geographiques",
    "id_quartier",
    "nom_quartier",
    "piece",
    "epoque",
    "meuble_txt",
    "ref",
    "max",
    "min",
    "ville",
    "code_grand_quartier",
    "geo_shape",
    "geo_point_2d",
]
# The 2025 table of data/samples: the field names of the Paris records API (id_zone, no geometry), with
# ville and code_grand_quartier added.
RECORDS_HEADER = [
    "annee",
    "id_zone",
    "id_quartier",
    "nom_quartier",
    "piece",
    "epoque",
    "meuble_txt",
    "ref",
    "max",
    "min",
    "ville",
    "code_grand_quartier",
]
PARIS_2025 = SAMPLES / "encadrement_loyers_paris_2025.csv"
TITLED_HEADER = [
    "Année",
    "Secteurs géographiques",
    "Numéro du quartier",
    "Nom du quartier",
    "Nombre de pièces principales",
    "Epoque de construction",
    "Type de location",
    "Loyers de référence",
    "Loyers de référence majorés",
    "Loyers de référence minorés",
    "Ville",
    "Numéro INSEE du quartier",
]


@pytest.mark.parametrize(
    "header",
    [OLD_HEADER, NEW_HEADER, RECORDS_HEADER, TITLED_HEADER],
    ids=["2015-2017", "2019+", "2025 records", "titles"],
)
def test_detect_recognises_every_shape_of_the_reference_table(header: list[str]) -> None:
    mapping = contracts.detect(header)
    assert mapping is not None and mapping.dataset == "reference_rents"
    assert {
        "city",
        "rooms",
        "period",
        "furnished",
        "year",
        "ref_eur_m2",
        "min_eur_m2",
        "max_eur_m2",
        "quartier_code",
    } <= set(mapping.columns.values())


def test_listings_and_reference_never_match_each_other() -> None:
    # The listings header with its "quartier" district alias is not a reference table...
    listings_header = ["loyer", "surface", "quartier", "date"]
    assert contracts.detect(listings_header).dataset == "listings"
    assert not contracts.get("reference_rents").map_header(listings_header).ok
    # ...and no reference header satisfies the listings contract
    for header in (OLD_HEADER, NEW_HEADER, RECORDS_HEADER, TITLED_HEADER):
        mapping = contracts.get("listings").map_header(header)
        assert not mapping.ok and mapping.columns == {}


def test_newer_shape_parses_with_semicolons_and_decimal_commas() -> None:
    data = (
        "annee;secteurs_geographiques;id_quartier;nom_quartier;piece;epoque;meuble_txt;ref;max;min;ville;"
        "code_grand_quartier\n2019;1;1;St-Germain-l'Auxerrois;1;Avant 1946;non meublé;28,5;34,2;19,95;PARIS;"
        "7510101\n"
    ).encode("latin-1")
    parsed = parse_object(data, "encadrement-2019.csv")
    assert parsed.dataset == "reference_rents" and parsed.details["delimiter"] == ";"
    raw = next(parsed.chunks)
    typed, reasons = type_chunk(raw, contracts.get("reference_rents"), decimal_comma=True)
    assert reasons == []
    row = typed.iloc[0]
    assert (row["year"], row["rooms"], row["period"], bool(row["furnished"])) == (
        2019,
        1,
        "Avant 1946",
        False,
    )
    assert (row["ref_eur_m2"], row["min_eur_m2"], row["max_eur_m2"]) == (28.5, 19.95, 34.2)
    assert row["quartier_code"] == "7510101" and row["city"] == "PARIS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Avant 1946", "Avant 1946"),
        ("avant 1946", "Avant 1946"),
        ("1946-1970", "1946-1970"),
        ("1946 - 1970", "1946-1970"),
        ("1971_1990", "1971-1990"),
        ("Après 1990", "Apres 1990"),
        ("APRES 1990", "Apres 1990"),
    ],
)
def test_periods_are_normalised_to_the_four_spellings(text: str, expected: str) -> None:
    raw = pd.DataFrame(
        {c: pd.Series(["x"], dtype="string") for c in contracts.get("reference_rents").column_names}
    )
    raw = raw.assign(
        city="Lille",
        iris_code="593500101",
        rooms="2",
        period=text,
        furnished="meublé",
        year="2017",
        ref_eur_m2="17.2",
        min_eur_m2="12.04",
        max_eur_m2="20.64",
        quartier_code="5935001",
    )
    typed, reasons = type_chunk(raw, contracts.get("reference_rents"))
    assert reasons == [] and typed["period"].iloc[0] == expected and typed["city"].iloc[0] == "LILLE"
    assert bool(typed["furnished"].iloc[0]) is True


def test_meuble_words_are_booleans() -> None:
    values, invalid = coerce_bool(
        pd.Series(["meublé", "non meublé", "Meublé", "NON MEUBLE", "0", "1", "peut-être"], dtype="string")
    )
    assert values.tolist()[:6] == [True, False, True, False, False, True]
    assert invalid.tolist() == [False] * 6 + [True]


def test_an_unknown_choice_is_reported_once_not_also_as_missing() -> None:
    # clean.py: a value given but outside the choices is "unknown", never "missing" as well
    contract = contracts.get("reference_rents")
    raw = pd.DataFrame({c: pd.Series(["1"], dtype="string") for c in contract.column_names})
    raw = raw.assign(
        city="MARSEILLE",
        period="Avant 1946",
        year="2017",
        quartier_code="1320101",
        iris_code=None,
        ref_eur_m2="20",
        min_eur_m2="14",
        max_eur_m2="24",
    )
    _, reasons = type_chunk(raw, contract)
    assert [code for code, _ in reasons] == ["city_unknown_value"]


def test_sample_file_is_entirely_valid() -> None:
    parsed = parse_object(
        (SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv").read_bytes(), "sample.csv"
    )
    raw = pd.concat(list(parsed.chunks), ignore_index=True)
    typed, reasons = type_chunk(raw, contracts.get("reference_rents"))
    assert len(typed) == 11_200 and reasons == []


def test_2025_file_is_recognised_and_entirely_valid() -> None:
    # GIVEN the 2025 Paris table (semicolons, "." decimals, CRLF) WHEN parsed without naming the dataset
    data = PARIS_2025.read_bytes()
    parsed = parse_object(data, PARIS_2025.name)
    assert parsed.dataset == "reference_rents" and parsed.details["delimiter"] == ";"
    assert parsed.mapping.unknown == ["id_quartier"]  # kept in ``extra``, not a contract column
    raw = pd.concat(list(parsed.chunks), ignore_index=True)
    # THEN every one of its rows types and passes the rules, as the clean stage types a ";" file
    typed, reasons = type_chunk(raw, contracts.get("reference_rents"), decimal_comma=True)
    assert len(typed) == 2_560 and reasons == []
    key = ["quartier_code", "rooms", "period", "furnished"]
    assert not typed.duplicated(key).any() and typed["quartier_code"].nunique() == 80
    assert set(typed["year"]) == {2025} and set(typed["city"]) == {"PARIS"}
    # AND the values are the file's, row for row
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8")), delimiter=";"))
    expected = [[float(r["ref"]), float(r["min"]), float(r["max"])] for r in rows]
    assert typed[["ref_eur_m2", "min_eur_m2", "max_eur_m2"]].values.tolist() == expected
    assert typed["furnished"].tolist() == [r["meuble_txt"] == "meublé" for r in rows]
