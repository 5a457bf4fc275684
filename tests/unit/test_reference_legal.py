"""The light lookup (rentlake.legal.lookup) on the artifact compiled from the sample table."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rentlake.legal.compile import artifact_bytes, compile_lookup
from rentlake.legal.lookup import (
    NOTICE,
    LegalLookupError,
    LegalTable,
    LegalTableError,
    attach,
    canonical_period,
    fold,
    hint,
    load_for_champion,
    load_table,
    lookup,
    period_of_year,
)

from tests.support import REFERENCE_SAMPLE as SAMPLE
from tests.support import ROOT, SAMPLES, compile_legal_sample, reference_rows, row_of

PARIS_2025 = SAMPLES / "encadrement_loyers_paris_2025.csv"
TODAY = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def artifact(legal_artifact: bytes) -> bytes:
    return legal_artifact


@pytest.fixture(scope="module")
def table(artifact: bytes) -> LegalTable:
    return load_table(artifact, sha256=hashlib.sha256(artifact).hexdigest())


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return reference_rows()


def triple(r: dict[str, str]) -> list[float]:
    return [float(r["ref"]), float(r["min"]), float(r["max"])]


def got3(answer: dict[str, object]) -> list[object]:
    return [answer["ref_eur_m2"], answer["min_eur_m2"], answer["max_eur_m2"]]


# ------------------------------------------------------------------------------------------ the artifact
def test_artifact_is_small_deterministic_and_covers_the_table(artifact: bytes, table: LegalTable) -> None:
    assert len(artifact) < 1_000_000
    assert compile_legal_sample() == artifact  # same table, same bytes, same hash
    assert table.years("PARIS") == [2015, 2016, 2017] and table.years("LILLE") == [2017]
    assert len(table.cities["PARIS"].names) == 80 and len(table.cities["LILLE"].names) == 110
    assert sum(len(v) for c in table.cities.values() for v in c.years.values()) == 11_200


def test_a_cell_given_twice_compiles_once_and_two_values_are_refused() -> None:
    base = {
        "city": "LILLE",
        "quartier_code": "5935001",
        "iris_code": "593500101",
        "quartier_name": "Lille-Centre",
        "rooms": 1,
        "period": "Avant 1946",
        "furnished": False,
        "year": 2017,
        "ref_eur_m2": 17.2,
        "min_eur_m2": 12.0,
        "max_eur_m2": 20.6,
        "source_key": "landing/a.csv",
        "source_sha256": "ab" * 32,
    }
    # The same Lille cell from a later file without the (informational) grand-quartier code: one cell
    same = pd.DataFrame([base, {**base, "quartier_code": None, "source_key": "landing/b.csv"}])
    table = load_table(artifact_bytes(compile_lookup(same)))
    assert lookup(table, city="lille", quartier="593500101", rooms=1, built=1900)["ref_eur_m2"] == 17.2
    differing = pd.DataFrame([base, {**base, "quartier_code": None, "ref_eur_m2": 18.0}])
    with pytest.raises(ValueError, match="LILLE 593500101 1 Avant 1946 False 2017"):
        compile_lookup(differing)


def test_a_tampered_artifact_is_refused(artifact: bytes) -> None:
    with pytest.raises(LegalTableError, match="sha256"):
        load_table(artifact.replace(b"30.3", b"20.3", 1), sha256=hashlib.sha256(artifact).hexdigest())
    with pytest.raises(LegalTableError, match="format"):
        load_table(json.dumps({"format": "other"}).encode())


def test_every_sampled_key_answers_the_table_values(table: LegalTable, rows: list[dict[str, str]]) -> None:
    for r in pd.DataFrame(rows).sample(300, random_state=8).to_dict("records"):
        lille = r["ville"] == "LILLE"
        answer = lookup(
            table,
            city=r["ville"],
            quartier=r["code_iris"] if lille else r["code_grand_quartier"],
            rooms=r["piece"],
            built=r["epoque"],
            furnished=r["meuble"] == "1",
            year=r["annee"],
        )
        assert got3(answer) == triple(r) and answer["year"] == int(r["annee"])


def test_the_2025_table_compiles_on_its_own_and_answers_every_row() -> None:
    from rentlake.legal.compile import compile_file

    # GIVEN the 2025 Paris table (records-API shape, semicolons) compiled without a lake
    rows = list(csv.DictReader(io.StringIO(PARIS_2025.read_text(encoding="utf-8")), delimiter=";"))
    table = load_table(compile_file(PARIS_2025.read_bytes(), PARIS_2025.name))
    assert table.years("PARIS") == [2025] and table.years("LILLE") == []
    # THEN each of its 2 560 rows is a cell answering the row's values (none lost, none merged)
    assert len(rows) == 2_560 and len(table.cities["PARIS"].years[2025]) == 2_560
    for r in rows:
        answer = lookup(
            table,
            quartier=r["code_grand_quartier"],
            rooms=r["piece"],
            built=r["epoque"],
            furnished=r["meuble_txt"],
        )
        assert got3(answer) == triple(r) and answer["year"] == 2025
    # AND the demo's question (Belleville, 2 rooms, built 1965, unfurnished) reads its row
    belleville = row_of(
        rows, nom_quartier="Belleville", piece="2", epoque="1946-1970", meuble_txt="non meublé"
    )
    got = lookup(table, quartier="Belleville", rooms=2, built=1965, surface_m2=30, today=TODAY)
    assert got3(got) == triple(belleville) and got["quartier"]["code"] == belleville["code_grand_quartier"]
    assert PARIS_2025.name in got["source"]


# ------------------------------------------------------------------------------------------ quartier names
@pytest.mark.parametrize(
    "name",
    [
        "St-Germain-l'Auxerrois",
        "Saint-Germain-l'Auxerrois",
        "st germain l auxerrois",
        "SAINT GERMAIN L’AUXERROIS",
        "saint-germain-lauxerrois",
        "7510101",
        7510101,
    ],
)
def test_a_quartier_by_name_saint_or_st_apostrophes_or_code(
    table: LegalTable, rows: list[dict[str, str]], name: object
) -> None:
    answer = lookup(table, quartier=name, rooms=2, built="1946-1970", furnished=False)
    r = row_of(rows, code_grand_quartier="7510101", piece="2", epoque="1946-1970", meuble="0", annee="2017")
    assert got3(answer) == triple(r)
    assert answer["quartier"] == {"name": "St-Germain-l'Auxerrois", "code": "7510101"}


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("chaussee d'antin", "Chaussée-d'Antin"),
        ("Hopital Saint Louis", "Hôpital-Saint-Louis"),
        ("saint thomas d aquin", "Saint-Thomas-d'Aquin"),
        ("Javel", "Javel 15Art"),  # unique prefix
        ("PERE LACHAISE", "Père-Lachaise"),
    ],
)
def test_accents_and_apostrophes_are_ignored(
    table: LegalTable, rows: list[dict[str, str]], name: str, canonical: str
) -> None:
    answer = lookup(table, quartier=name, rooms=3, built=1980, furnished=True, year=2016)
    r = row_of(rows, nom_quartier=canonical, piece="3", epoque="1971-1990", meuble="1", annee="2016")
    assert got3(answer) == triple(r) and answer["quartier"]["name"] == canonical


def test_fold_reads_st_as_saint() -> None:
    assert fold("St-Germain-l'Auxerrois") == fold("Saint Germain l'Auxerrois") == "saintgermainlauxerrois"
    assert fold("Ste-Avoie") == fold("Sainte-Avoie")


# ------------------------------------------------------------------------------------------ classes
@pytest.mark.parametrize(
    ("year", "period"),
    [
        (1945, "Avant 1946"),
        (1946, "1946-1970"),
        (1970, "1946-1970"),
        (1971, "1971-1990"),
        (1990, "1971-1990"),
        (1991, "Apres 1990"),
        (1800, "Avant 1946"),
        (2024, "Apres 1990"),
    ],
)
def test_every_period_boundary(table: LegalTable, rows: list[dict[str, str]], year: int, period: str) -> None:
    assert period_of_year(year) == period
    answer = lookup(table, quartier="Belleville", rooms=1, built=year, today=TODAY)
    r = row_of(rows, nom_quartier="Belleville", piece="1", epoque=period, meuble="0", annee="2017")
    assert got3(answer) == triple(r) and answer["period"] == period


@pytest.mark.parametrize(
    "text", ["Avant 1946", "avant 1946", "1946 - 1970", "Après 1990", "Apres 1990", "1971-1990"]
)
def test_periods_as_words(text: str) -> None:
    assert canonical_period(text) is not None


def test_five_rooms_count_as_four_and_furnished_differs(
    table: LegalTable, rows: list[dict[str, str]]
) -> None:
    four = lookup(table, quartier="Gros-Caillou", rooms=4, built="Avant 1946", furnished=True)
    assert lookup(table, quartier="Gros-Caillou", rooms=5, built="Avant 1946", furnished=True) == four
    assert four["rooms"] == 4
    unfurnished = lookup(table, quartier="Gros-Caillou", rooms=4, built="Avant 1946", furnished=False)
    assert got3(four) == triple(
        row_of(rows, nom_quartier="Gros-Caillou", piece="4", epoque="Avant 1946", meuble="1", annee="2017")
    )
    assert got3(unfurnished) == triple(
        row_of(rows, nom_quartier="Gros-Caillou", piece="4", epoque="Avant 1946", meuble="0", annee="2017")
    )
    assert four["ref_eur_m2"] > unfurnished["ref_eur_m2"]


def test_lille_by_iris_code(table: LegalTable, rows: list[dict[str, str]]) -> None:
    answer = lookup(
        table, city="lille", quartier="593500101", rooms=2, built=1960, furnished=True, today=TODAY
    )
    r = row_of(rows, code_iris="593500101", piece="2", epoque="1946-1970", meuble="1", annee="2017")
    assert got3(answer) == triple(r)
    assert answer["city"] == "LILLE" and answer["year"] == 2017
    assert answer["quartier"] == {"name": "Lille-Centre", "code": "593500101"}


# ------------------------------------------------------------------------------------------ the answer
def test_rents_to_the_cent_verdicts_year_source_and_notice(table: LegalTable) -> None:
    base = lookup(table, quartier="7510101", rooms=1, built="Avant 1946", surface_m2=30)
    ref, lo, hi = base["ref_eur_m2"], base["min_eur_m2"], base["max_eur_m2"]
    assert base["ref_rent_eur"] == round(ref * 30, 2) and base["max_rent_eur"] == round(hi * 30, 2)
    assert base["min_rent_eur"] == round(lo * 30, 2) and "verdict" not in base
    assert base["year"] == 2017 and "encadrement_loyers_paris_lille_2015_2017.csv" in base["source"]
    assert base["notice"] == NOTICE and "not legal advice" in NOTICE

    def verdict(rent: float) -> str:
        return lookup(
            table, quartier="7510101", rooms=1, built="Avant 1946", surface_m2=30, current_rent_eur=rent
        )["verdict"]

    assert verdict(base["max_rent_eur"] + 0.01) == "above_max"
    assert verdict(base["max_rent_eur"]) == "within"
    assert verdict(base["min_rent_eur"]) == "within"
    assert verdict(base["min_rent_eur"] - 0.01) == "below_min"


def test_attach_adds_legal_or_a_hint_naming_the_fields(table: LegalTable) -> None:
    assert attach(table, {"surface_m2": 30}) == {"legal_hint": hint(["quartier", "rooms", "built"])}
    partial = attach(table, {"surface_m2": 30, "quartier": "Halles"})
    assert "rooms, built" in partial["legal_hint"] and "quartier" not in partial["legal_hint"].split(" (")[0]
    assert "unavailable" in attach(None, {"quartier": "Halles", "rooms": 2, "built": 1900})["legal_hint"]
    full = attach(
        table, {"surface_m2": 30, "quartier": "Halles", "rooms": 2, "built": 1900, "current_rent_eur": 2000}
    )
    assert full["legal"]["verdict"] == "above_max" and full["legal"]["quartier"]["code"] == "7510102"


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"quartier": "Montmartre-Village"}, "quartier", "closest"),
        ({"quartier": "Saint"}, "quartier", "several quartiers"),
        ({"quartier": "7519999"}, "quartier", "not in Paris"),
        ({"rooms": 0}, "rooms", "at least 1"),
        ({"rooms": -2}, "rooms", "at least 1"),
        ({"rooms": 2.5}, "rooms", "whole number"),
        ({"year": 2014}, "year", "2015, 2016, 2017"),
        ({"built": 2031}, "built", "future"),
        ({"built": "Moyen-Age"}, "built", "construction year"),
        ({"city": "Marseille"}, "city", "Paris and Lille"),
        ({"city": "lille", "quartier": "593509999"}, "quartier", "not in Lille"),
        ({"city": "lille", "quartier": None}, "quartier", "IRIS"),
        ({"city": "lille", "quartier": "Wazemmes"}, "quartier", "IRIS codes of Wazemmes"),
        ({"city": "lille", "year": 2016}, "year", "2017"),
        ({"furnished": "maybe"}, "furnished", "true or false"),
        ({"surface_m2": 0}, "surface_m2", "positive"),
    ],
)
def test_bad_input_names_the_field(
    table: LegalTable, fields: dict[str, object], field: str, fragment: str
) -> None:
    request = {
        "city": "paris",
        "quartier": "Halles",
        "rooms": 2,
        "built": 1900,
        "furnished": False,
        "today": TODAY,
        **fields,
    }
    if request["city"] == "lille" and "quartier" not in fields:
        request["quartier"] = "593500101"
    with pytest.raises(LegalLookupError) as err:
        lookup(table, **request)
    assert err.value.field == field and fragment in err.value.message


def test_unknown_quartier_proposes_the_three_closest(table: LegalTable) -> None:
    with pytest.raises(LegalLookupError) as err:
        lookup(table, quartier="Saint-Germain-des-Pres-Village", rooms=1, built=1900)
    closest = err.value.message.split("closest: ")[1].split(", ")
    assert len(closest) == 3 and closest[0] == "Saint-Germain-des-Prés"


class FakeLake:
    """Just what load_for_champion uses of a Lake, counting reads."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads = 0

    def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        return self.objects[key]


def test_champion_table_is_read_once_and_checked(artifact: bytes) -> None:
    sha = hashlib.sha256(artifact).hexdigest()
    lake = FakeLake({"models/v1/legal.json": artifact, "models/v2/legal.json": artifact + b" "})
    pointer = {"version": "v1", "legal_key": "models/v1/legal.json", "legal_sha256": sha}
    first = load_for_champion(lake, pointer)
    assert first is not None and load_for_champion(lake, pointer) is first and lake.reads == 1
    assert load_for_champion(lake, {"version": "v0"}) is None
    with pytest.raises(LegalTableError, match="does not match"):
        load_for_champion(lake, {"legal_key": "models/v2/legal.json", "legal_sha256": "0" * 64})
    with pytest.raises(LegalTableError, match="without its legal_sha256"):
        load_for_champion(lake, {"legal_key": "models/v1/legal.json"})


# ------------------------------------------------------------------------------------------ lightness
def test_the_light_module_imports_no_pandas(artifact: bytes, tmp_path: Path) -> None:
    path = tmp_path / "legal.json"
    path.write_bytes(artifact)
    code = (
        "import sys, pathlib\n"
        "from rentlake.legal import lookup as legal\n"
        f"t = legal.load_table(pathlib.Path({str(path)!r}).read_bytes())\n"
        "a = legal.lookup(t, quartier='Halles', rooms=2, built=1900, surface_m2=30, current_rent_eur=900)\n"
        "heavy = [m for m in ('pandas', 'numpy', 'pyarrow', 'awswrangler') if m in sys.modules]\n"
        "print(heavy, a['verdict'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(ROOT / "layers" / "rentlake"), "PATH": "/usr/bin:/bin"},
    )
    expected = lookup(
        load_table(artifact), quartier="Halles", rooms=2, built=1900, surface_m2=30, current_rent_eur=900
    )["verdict"]
    assert out.stdout.split() == ["[]", expected]


def test_a_file_with_invalid_rows_does_not_compile_on_its_own() -> None:
    # GIVEN a reference file whose one row has min above ref (the lake would quarantine it)
    from rentlake.legal.compile import compile_file

    header = SAMPLE.read_text(encoding="utf-8").splitlines()[0]
    bad = header + "\nPARIS,2,7510101,,St-Germain-l'Auxerrois,1,Avant 1946,0,2015,30.3,31.0,36.4\n"
    # WHEN compiled without a lake THEN it is refused, naming the contract's reason
    with pytest.raises(ValueError, match="bounds_inconsistent"):
        compile_file(bad.encode(), "bad.csv")
