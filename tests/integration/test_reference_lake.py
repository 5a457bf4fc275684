"""Reference rents through the ordinary ingest and clean functions, compiled at promotion, answered light."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from typing import Any

import pandas as pd
import pytest

from tests.support import SAMPLES, reference_rows, row_of

SAMPLE = SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"
PARIS_2025 = SAMPLES / "encadrement_loyers_paris_2025.csv"


def ingest_and_clean(
    function: Any, put_landing: Any, ctx: Any, name: str, data: bytes, dataset: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    event = put_landing(name, data)
    if dataset is not None:  # a direct invocation that forces the contract
        event = {"keys": [f"landing/{name}"], "dataset": dataset}
    ingested = function("ingest").handler(event, ctx)
    cleaned = function("clean").handler({}, ctx)
    return ingested["outcomes"][0], cleaned


def newer_shaped(rows: list[dict[str, str]], year: int, factor: float) -> bytes:
    """The Paris open data shape of 2019+: other column order, semicolons, decimal commas, meuble_txt."""
    out = io.StringIO()
    out.write(
        "annee;secteurs_geographiques;id_quartier;nom_quartier;piece;epoque;meuble_txt;ref;max;min;"
        "ville;code_grand_quartier\n"
    )
    for i, r in enumerate(rows):
        ref = round(float(r["ref"]) * factor, 1)
        values = [
            str(year),
            r["id_zone"],
            str(i + 1),
            r["nom_quartier"],
            r["piece"],
            r["epoque"].lower(),
            "meublé" if r["meuble"] == "1" else "non meublé",
            f"{ref:.1f}".replace(".", ","),
            f"{ref * 1.2:.2f}".replace(".", ","),
            f"{ref * 0.7:.2f}".replace(".", ","),
            "Paris",
            r["code_grand_quartier"],
        ]
        out.write(";".join(values) + "\n")
    return out.getvalue().encode("utf-8")


@pytest.fixture
def loaded(function: Any, put_landing: Any, lake: Any, lambda_context: Any) -> dict[str, Any]:
    outcome, cleaned = ingest_and_clean(
        function, put_landing, lambda_context, "encadrement.csv", SAMPLE.read_bytes()
    )
    return {"outcome": outcome, "cleaned": cleaned}


def test_sample_table_lands_as_its_own_clean_table_with_nothing_lost(
    loaded: dict[str, Any], lake: Any
) -> None:
    # GIVEN the 2015-2017 reference file uploaded to landing/ (fixture) WHEN ingested and cleaned
    # THEN the header is recognised as reference_rents and every row is clean
    assert loaded["outcome"]["dataset"] == "reference_rents"
    assert loaded["outcome"]["rows"] == 11_200
    report = loaded["cleaned"]["reports"][0]
    assert report["dataset"] == "reference_rents"
    assert report["rows"] == {"in": 11_200, "clean": 11_200, "quarantined": 0}
    # AND it is its own Glue table, typed
    assert {"raw_reference_rents", "clean_reference_rents"} <= set(lake.glue_tables())
    clean = lake.read_clean("reference_rents")
    assert clean.groupby("city").size().to_dict() == {"LILLE": 3520, "PARIS": 7680}
    assert sorted(clean["period"].unique()) == sorted(["Avant 1946", "1946-1970", "1971-1990", "Apres 1990"])
    assert clean["furnished"].dtype == "boolean" and clean["rooms"].dtype == "Int64"
    row = clean[
        (clean["quartier_code"] == "7510101")
        & (clean["year"] == 2015)
        & (clean["rooms"] == 1)
        & (clean["period"] == "Avant 1946")
        & ~clean["furnished"]
    ]
    assert row[["ref_eur_m2", "min_eur_m2", "max_eur_m2"]].values.tolist() == [[30.3, 21.2, 36.4]]


def test_bad_rows_are_quarantined_with_reasons_and_conflicting_keys_never_picked(
    function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN a small table: a valid row, a repeated key with another value, an exact duplicate, an unknown
    # city, a room count of 0, an unknown period, ref outside [min, max], a non-positive ref, a Lille row
    # without IRIS code
    header = (
        "ville,id_zone,code_grand_quartier,code_iris,nom_quartier,piece,epoque,meuble,annee,ref,min,max\n"
    )
    body = (
        "PARIS,2,7510101,,St-Germain-l'Auxerrois,1,Avant 1946,0,2015,30.3,21.2,36.4\n"
        "PARIS,2,7510102,,Halles,1,Avant 1946,0,2015,30.3,21.2,36.4\n"
        "PARIS,2,7510102,,Halles,1,Avant 1946,0,2015,31.0,21.7,37.2\n"
        "paris,2,7510103,,Palais-Royal,2,après 1990,1,2015,25.0,17.5,30.0\n"
        "paris,2,7510103,,Palais-Royal,2,après 1990,1,2015,25.0,17.5,30.0\n"
        "MARSEILLE,1,1320101,,Vieux-Port,1,Avant 1946,0,2015,20,14,24\n"
        "PARIS,2,7510104,,Vivienne,0,Avant 1946,0,2015,30,21,36\n"
        "PARIS,2,7510104,,Vivienne,1,Avant 1900,0,2015,30,21,36\n"
        "PARIS,2,7510104,,Vivienne,2,Avant 1946,0,2015,40,21,36\n"
        "PARIS,2,7510104,,Vivienne,3,Avant 1946,0,2015,0,0,0\n"
        "LILLE,1,5935001,,Lille-Centre,1,Avant 1946,0,2017,17.2,12,20.6\n"
    )
    # WHEN it goes through ingest and clean
    _, cleaned = ingest_and_clean(
        function, put_landing, lambda_context, "ref_bad.csv", (header + body).encode("utf-8")
    )
    report = cleaned["reports"][0]
    # THEN rows in = clean + quarantined, each quarantined row with its reason
    assert report["rows"] == {"in": 11, "clean": 2, "quarantined": 9}
    assert report["reasons"] == {
        "conflicting_key": 2,
        "city_unknown_value": 1,
        "duplicate": 1,
        "rooms_below_min": 1,
        "period_unknown_value": 1,
        "bounds_inconsistent": 1,
        "ref_eur_m2_not_positive": 1,
        "missing_iris_code": 1,
    }
    clean = lake.read_clean("reference_rents")
    assert sorted(clean["quartier_code"]) == ["7510101", "7510103"]
    # AND the accented, lower-case spellings were normalised to the canonical ones
    assert clean.loc[clean["quartier_code"] == "7510103", ["city", "period"]].values.tolist() == [
        ["PARIS", "Apres 1990"]
    ]
    # AND a later batch that disagrees with the clean zone on a key is quarantined, not picked
    _, again = ingest_and_clean(
        function,
        put_landing,
        lambda_context,
        "ref_conflict.csv",
        (header + "PARIS,2,7510101,,St-Germain-l'Auxerrois,1,Avant 1946,0,2015,33.0,23.1,39.6\n").encode(
            "utf-8"
        ),
    )
    assert again["reports"][0]["reasons"] == {"conflicting_key": 1}
    assert len(lake.read_clean("reference_rents")) == 2


def test_dataset_can_be_forced(function: Any, put_landing: Any, lake: Any, lambda_context: Any) -> None:
    # GIVEN the sample's first rows WHEN ingested with --dataset reference_rents forced
    data = "".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:5]).encode("utf-8")
    outcome, cleaned = ingest_and_clean(
        function, put_landing, lambda_context, "forced.csv", data, dataset="reference_rents"
    )
    # THEN it is the reference table and listings never see it
    assert outcome["dataset"] == "reference_rents" and cleaned["reports"][0]["rows"]["clean"] == 4
    assert lake.read_clean("listings").empty


def test_promotion_artifact_answers_the_table_values(loaded: dict[str, Any], lake: Any) -> None:
    from rentlake.legal.compile import attach_to_model
    from rentlake.legal.lookup import load_for_champion, lookup

    # WHEN the registry attaches the table to a model version
    attached = attach_to_model(lake, "v7")
    # THEN the artifact is written under the version, small, and its hash is the one returned
    assert attached is not None and attached["legal_key"] == "models/v7/legal.json"
    data = lake.get_bytes(attached["legal_key"])
    assert len(data) < 1_000_000
    assert hashlib.sha256(data).hexdigest() == attached["legal_sha256"]
    assert attached["legal_years"] == {"LILLE": [2017], "PARIS": [2015, 2016, 2017]}
    assert attached["legal_source"]["table"] == "clean_reference_rents"
    # AND a champion carrying it answers the table's values for sampled keys of both cities
    table = load_for_champion(lake, attached)
    # AND the model card form ({"legal": {...}}) names the same table; a card without it, none
    assert load_for_champion(lake, {"version": "v7", "legal": attached}) is table
    assert load_for_champion(lake, {"version": "v6", "legal": None}) is None
    rows = pd.DataFrame(reference_rows())
    for _, r in rows.sample(40, random_state=3).iterrows():
        got = lookup(
            table,
            city=r["ville"].lower(),
            quartier=r["code_iris"] if r["ville"] == "LILLE" else r["code_grand_quartier"],
            rooms=int(r["piece"]),
            built=r["epoque"],
            furnished=r["meuble"] == "1",
            year=int(r["annee"]),
        )
        assert [got["ref_eur_m2"], got["min_eur_m2"], got["max_eur_m2"]] == [
            float(r["ref"]),
            float(r["min"]),
            float(r["max"]),
        ]
        assert got["year"] == int(r["annee"]) and "encadrement.csv" in got["source"]


def test_empty_reference_table_attaches_nothing(lake: Any) -> None:
    from rentlake.legal.compile import attach_to_model

    assert attach_to_model(lake, "v1") is None
    assert not lake.exists("models/v1/legal.json")


def test_newer_shaped_year_ingested_later_becomes_the_default(
    loaded: dict[str, Any], function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    from rentlake.legal.compile import attach_to_model
    from rentlake.legal.lookup import load_for_champion, lookup

    # GIVEN the 2015-2017 table, then a 2019 table in the newer open-data shape (2017 Paris rows + 5 %)
    paris17 = [r for r in reference_rows() if r["ville"] == "PARIS" and r["annee"] == "2017"]
    outcome, cleaned = ingest_and_clean(
        function,
        put_landing,
        lambda_context,
        "logement-encadrement-2019.csv",
        newer_shaped(paris17, 2019, 1.05),
    )
    # THEN the newer shape is recognised, parsed with decimal commas and entirely clean
    assert outcome["dataset"] == "reference_rents" and outcome["details"]["delimiter"] == ";"
    assert cleaned["reports"][0]["rows"] == {"in": 2560, "clean": 2560, "quarantined": 0}
    attached = attach_to_model(lake, "v8")
    assert attached is not None and attached["legal_years"]["PARIS"] == [2015, 2016, 2017, 2019]
    table = load_for_champion(lake, attached)
    # WHEN asked without a year
    got = lookup(
        table,
        quartier="Saint-Germain-l'Auxerrois",
        rooms=1,
        built=1900,
        furnished=True,
        surface_m2=30,
        today=dt.date(2026, 1, 1),
    )
    # THEN the 2019 answer is given, and names its year and file
    assert got["year"] == 2019 and "logement-encadrement-2019.csv" in got["source"]
    assert got["ref_eur_m2"] == round(34.3 * 1.05, 1)
    # AND Lille still defaults to its own latest year, 2017; an explicit year still answers it
    assert lookup(table, city="lille", quartier="593500101", rooms=1, built="Avant 1946")["year"] == 2017
    assert (
        lookup(table, quartier="7510101", rooms=1, built=1900, furnished=True, year=2017)["ref_eur_m2"]
        == 34.3
    )


def paris_2025_rows() -> list[dict[str, str]]:
    """The 2025 table as text rows, as the file has them (expected values)."""
    return list(csv.DictReader(io.StringIO(PARIS_2025.read_text(encoding="utf-8")), delimiter=";"))


def test_2025_table_lands_clean_with_every_row_accounted_for(
    function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN the 2025 Paris table uploaded to landing/ WHEN ingested and cleaned
    outcome, cleaned = ingest_and_clean(
        function, put_landing, lambda_context, PARIS_2025.name, PARIS_2025.read_bytes()
    )
    # THEN it is recognised as reference_rents and all 2 560 rows are clean, none quarantined
    assert outcome["dataset"] == "reference_rents" and outcome["rows"] == 2_560
    report = cleaned["reports"][0]
    assert report["dataset"] == "reference_rents"
    assert report["rows"] == {"in": 2_560, "clean": 2_560, "quarantined": 0}
    clean = lake.read_clean("reference_rents")
    assert len(clean) == 2_560 and set(clean["year"]) == {2025} and clean["quartier_code"].nunique() == 80
    # AND each clean row carries the file's values
    by_cell = clean.set_index(["quartier_code", "rooms", "period", "furnished"])
    for r in paris_2025_rows()[::37]:
        cell = by_cell.loc[
            (r["code_grand_quartier"], int(r["piece"]), r["epoque"], r["meuble_txt"] == "meublé")
        ]
        assert cell[["ref_eur_m2", "min_eur_m2", "max_eur_m2"]].tolist() == [
            float(r["ref"]),
            float(r["min"]),
            float(r["max"]),
        ]


@pytest.mark.parametrize("first", ["2015-2017", "2025"])
def test_2025_table_wins_over_2017_when_both_are_in_the_lake(
    first: str, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    from rentlake.legal.compile import attach_to_model
    from rentlake.legal.lookup import load_for_champion, lookup

    # GIVEN both tables ingested and cleaned, in either order
    files = [(SAMPLE.name, SAMPLE.read_bytes()), (PARIS_2025.name, PARIS_2025.read_bytes())]
    for name, data in files if first == "2015-2017" else files[::-1]:
        ingest_and_clean(function, put_landing, lambda_context, name, data)
    # WHEN the reference table is attached at promotion
    attached = attach_to_model(lake, "v9")
    assert attached is not None
    assert attached["legal_years"] == {"LILLE": [2017], "PARIS": [2015, 2016, 2017, 2025]}
    table = load_for_champion(lake, attached)
    question = {"quartier": "Belleville", "rooms": 2, "built": 1965, "surface_m2": 30}
    got = lookup(table, **question, today=dt.date(2026, 1, 1))
    # THEN without a year the answer is 2025's row of the 2025 file, and names that file
    row = row_of(
        paris_2025_rows(), nom_quartier="Belleville", piece="2", epoque="1946-1970", meuble_txt="non meublé"
    )
    assert [got["ref_eur_m2"], got["min_eur_m2"], got["max_eur_m2"]] == [
        float(row["ref"]),
        float(row["min"]),
        float(row["max"]),
    ]
    assert got["year"] == 2025 and PARIS_2025.name in got["source"]
    assert got["quartier"] == {"name": "Belleville", "code": row["code_grand_quartier"]}
    # AND 2017 is still answered when asked for, with its own (different) values
    old = row_of(
        reference_rows(),
        ville="PARIS",
        annee="2017",
        code_grand_quartier=row["code_grand_quartier"],
        piece="2",
        epoque="1946-1970",
        meuble="0",
    )
    got17 = lookup(table, **question, year=2017, today=dt.date(2026, 1, 1))
    assert got17["year"] == 2017 and got17["ref_eur_m2"] == float(old["ref"]) != float(row["ref"])


def test_join_reference_adds_the_arrondissement_median(loaded: dict[str, Any], lake: Any) -> None:
    from rentlake.legal.compile import join_reference

    reference = lake.read_clean("reference_rents")
    listings = pd.DataFrame(
        {
            "rent_eur": [1000.0, 900.0, 800.0],
            "surface_m2": [30.0, 25.0, 20.0],
            "district": ["75001", "75020", None],
        }
    )
    joined = join_reference(listings, reference)
    expected = reference[
        (reference["city"] == "PARIS")
        & (reference["year"] == 2017)
        & ~reference["furnished"]
        & reference["quartier_code"].str.startswith("75101")
    ]["ref_eur_m2"].median()
    assert joined["ref_median_eur_m2"].iloc[0] == expected
    assert joined["ref_median_eur_m2"].iloc[1] > 0 and pd.isna(joined["ref_median_eur_m2"].iloc[2])
    assert joined["ref_year"].tolist() == [2017, 2017, 2017]
    assert join_reference(listings, reference, year=2015)["ref_year"].iloc[0] == 2015
    with pytest.raises(ValueError, match="2014"):
        join_reference(listings, reference, year=2014)


def test_a_later_year_reaches_the_api_without_a_new_model(
    loaded: dict[str, Any], function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    import json

    from rentlake.runtime.events import http_api_event

    # GIVEN a champion trained on the course listings and promoted with the 2015-2017 table
    ingest_and_clean(
        function, put_landing, lambda_context, "house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()
    )
    trained = function("train").handler({}, lambda_context)
    assert function("evaluate").handler(trained, lambda_context)["promoted"]
    predict = function("predict")
    body = {
        "surface_m2": 30,
        "quartier": "St-Germain-l'Auxerrois",
        "rooms": 1,
        "built": 1900,
        "furnished": True,
    }

    def legal_year() -> int:
        event = http_api_event(
            "POST", "/estimates", json.dumps(body), headers={"content-type": "application/json"}
        )
        answer = json.loads(predict.handler(event, lambda_context)["body"])
        return int(answer["legal"]["year"])

    assert legal_year() == 2017
    pointer_before = lake.get_json("models/champion.json")
    # WHEN a 2019 table lands and the scheduled cycle runs again (no new listings: no new model)
    paris17 = [r for r in reference_rows() if r["ville"] == "PARIS" and r["annee"] == "2017"]
    ingest_and_clean(
        function, put_landing, lambda_context, "encadrement-2019.csv", newer_shaped(paris17, 2019, 1.05)
    )
    again = function("train").handler({}, lambda_context)
    evaluated = function("evaluate").handler(again, lambda_context)
    # THEN the champion is the same model, its legal lookup now has 2019, and the API answers with it
    pointer = lake.get_json("models/champion.json")
    assert again["skipped"] and not evaluated["promoted"]
    assert pointer["version"] == pointer_before["version"] and pointer["sha256"] == pointer_before["sha256"]
    assert evaluated["legal_refreshed"]["legal_years"]["PARIS"] == [2015, 2016, 2017, 2019]
    assert pointer["legal_sha256"] != pointer_before["legal_sha256"]
    assert hashlib.sha256(lake.get_bytes(pointer["legal_key"])).hexdigest() == pointer["legal_sha256"]
    predict.CHAMPION.refresh_seconds = 0  # the next request re-reads the pointer
    assert legal_year() == 2019
    # AND a further run with nothing new changes nothing
    assert (
        function("evaluate").handler(function("train").handler({}, lambda_context), lambda_context)[
            "legal_refreshed"
        ]
        is None
    )
    assert lake.get_json("models/champion.json") == pointer
