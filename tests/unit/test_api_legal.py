"""The legal reference rent through the predict handler and ``rentlake estimate`` (issue 8), and the page.

A champion is published on moto with the legal artifact compiled from the 2015-2017 sample table, as the
registry does at promotion; every expected value is read from the sample CSV itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.support import ROOT, FakeContext, load_function, reference_rows, row_of

NOT_ADVICE = "not legal advice"
CONTEXT = FakeContext()  # Lambda's context: the handler's Powertools logger reads it


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def artifact(legal_artifact: bytes) -> bytes:
    """The sample table compiled as the promotion step does (tests/conftest.py)."""
    return legal_artifact


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return reference_rows()


# `lake`: tests/conftest.py's chain (fake credentials -> mock_aws() -> bucket -> Lake).
@pytest.fixture
def champion(lake: Any, artifact: bytes) -> dict[str, Any]:
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    return publish_champion(lake, "v1", make_onnx_model(), make_card("v1"), legal=artifact)


@pytest.fixture
def predict(lake: Any) -> ModuleType:
    """A fresh predict module: one container."""
    return load_function("predict")


def call(
    mod: ModuleType, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    from rentlake.runtime.events import http_api_event

    path, _, query = path.partition("?")
    hdrs = {"content-type": "application/json", **(headers or {})}
    event = http_api_event(
        method, path, None if body is None else json.dumps(body), headers=hdrs, query=query or None
    )
    resp = mod.handler(event, CONTEXT)
    heads = {k.lower(): v for k, v in resp.get("headers", {}).items()}
    payload = (
        json.loads(resp["body"])
        if heads.get("content-type", "").startswith("application/json")
        else resp["body"]
    )
    return resp["statusCode"], heads, payload


def refused(status: int, body: Any) -> list[dict[str, str]]:
    assert status == 422, body
    assert body["error"]["code"] == "invalid_request"
    return body["error"]["fields"]


# ------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize(
    ("request_fields", "where"),
    [
        (
            {"quartier": "Belleville", "rooms": 2, "built": 1965},
            {"ville": "PARIS", "nom_quartier": "Belleville", "piece": "2", "epoque": "1946-1970"},
        ),
        (
            {"quartier": "7510101", "rooms": 1, "built": "Avant 1946", "furnished": True, "year": 2016},
            {
                "ville": "PARIS",
                "code_grand_quartier": "7510101",
                "piece": "1",
                "epoque": "Avant 1946",
                "meuble": "1",
                "annee": "2016",
            },
        ),
        (
            {"quartier": "Saint-Germain-l'Auxerrois", "rooms": 7, "built": 1995},
            {"ville": "PARIS", "code_grand_quartier": "7510101", "piece": "4", "epoque": "Apres 1990"},
        ),
        (
            {"city": "lille", "quartier": "593500101", "rooms": 3, "built": 1980},
            {"ville": "LILLE", "code_iris": "593500101", "piece": "3", "epoque": "1971-1990"},
        ),
    ],
)
def test_legal_values_equal_the_table(
    predict: ModuleType,
    champion: dict[str, Any],
    rows: list[dict[str, str]],
    request_fields: dict[str, Any],
    where: dict[str, str],
) -> None:
    # GIVEN a 30 m2 listing with the legal fields (Paris by name, by code, furnished, 2016; Lille by IRIS)
    where = {"meuble": "0", "annee": "2017", **where}
    expected = row_of(rows, **where)
    # WHEN estimated through the handler
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30, **request_fields})
    # THEN the legal block holds the table's values, and the rents for 30 m2, beside the market answer
    assert status == 200, body
    lg = body["legal"]
    assert [lg["ref_eur_m2"], lg["min_eur_m2"], lg["max_eur_m2"]] == [
        float(expected["ref"]),
        float(expected["min"]),
        float(expected["max"]),
    ]
    assert lg["ref_rent_eur"] == pytest.approx(float(expected["ref"]) * 30, abs=0.006)
    assert lg["max_rent_eur"] == pytest.approx(float(expected["max"]) * 30, abs=0.006)
    assert lg["year"] == int(expected["annee"])
    assert lg["city"] == expected["ville"]
    assert lg["rooms"] == int(expected["piece"]) and lg["period"] == expected["epoque"]
    assert isinstance(lg["source"], str) and lg["source"]
    assert NOT_ADVICE in lg["notice"]
    assert "verdict" not in lg and "legal_hint" not in body
    assert body["rent_eur"] == 1192 and body["interval"]["level"] == 0.9


@pytest.mark.parametrize(
    ("rent", "legal_verdict"), [(2000.0, "above_max"), (810.0, "within"), (100.0, "below_min")]
)
def test_current_rent_gets_a_legal_verdict_beside_the_market_one(
    predict: ModuleType, champion: dict[str, Any], rows: list[dict[str, str]], rent: float, legal_verdict: str
) -> None:
    # GIVEN Belleville, 2 rooms, 1946-1970 (2017: max 27.7 €/m2, so 831 € for 30 m2) and a rent for 30 m2
    r = row_of(rows, nom_quartier="Belleville", piece="2", epoque="1946-1970", meuble="0", annee="2017")
    assert float(r["min"]) * 30 <= 810 <= float(r["max"]) * 30
    status, _, body = call(
        predict,
        "POST",
        "/estimates",
        {"surface_m2": 30, "current_rent_eur": rent, "quartier": "belleville", "rooms": 2, "built": "1965"},
    )
    # THEN the legal verdict follows the legal band and the market verdict the market interval
    assert status == 200, body
    assert body["legal"]["verdict"] == legal_verdict
    assert body["legal"]["current_rent_eur"] == rent
    assert NOT_ADVICE in body["legal"]["notice"]
    assert body["verdict"] == {2000.0: "above", 810.0: "within", 100.0: "below"}[rent]


def test_batch_answers_each_listing_with_legal_or_hint(predict: ModuleType, champion: dict[str, Any]) -> None:
    # GIVEN a batch: no legal field, all of them, a quartier alone
    listings = [
        {"surface_m2": 30},
        {"surface_m2": 30, "quartier": "Belleville", "rooms": 2, "built": 1965},
        {"surface_m2": 30, "quartier": "Belleville"},
    ]
    status, _, body = call(predict, "POST", "/estimates", {"listings": listings})
    assert status == 200, body
    first, second, third = body["estimates"]
    # THEN a listing without legal fields has neither; the batch says the hint once
    assert "legal" not in first and "legal_hint" not in first
    assert "quartier, rooms, built" in body["legal_hint"]
    assert second["legal"]["quartier"] == {"name": "Belleville", "code": "7512077"}
    assert "legal" not in third and third["legal_hint"].startswith("add rooms, built ")


def test_without_legal_fields_the_answer_is_the_market_one_with_a_hint(
    predict: ModuleType, champion: dict[str, Any]
) -> None:
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30, "current_rent_eur": 1500})
    assert status == 200
    assert (body["rent_eur"], body["verdict"]) == (1192, "within")
    assert "legal" not in body
    assert body["legal_hint"] == (
        "add quartier, rooms, built (and optionally city, furnished, year) to get the legal reference "
        "rent (encadrement des loyers) of Paris or Lille beside the estimate"
    )


# ------------------------------------------------------------------------------------------ refusals
BASE = {"surface_m2": 30, "quartier": "Belleville", "rooms": 2, "built": 1965}


@pytest.mark.parametrize(
    ("change", "field", "problem_parts"),
    [
        (
            {"quartier": "Bellevile"},
            "quartier",
            ["unknown Paris quartier 'Bellevile'", "closest: Belleville"],
        ),
        ({"rooms": 0}, "rooms", ["at least 1 main room, got 0"]),
        ({"rooms": -2}, "rooms", ["at least 1 main room, got -2"]),
        ({"year": 2030}, "year", ["no Paris reference rents for 2030", "the table has 2015, 2016, 2017"]),
        ({"built": 2999}, "built", ["construction year 2999 is in the future"]),
        ({"city": "lille", "quartier": "593509999"}, "quartier", ["IRIS code 593509999 is not in Lille's"]),
        ({"city": "lille", "year": 2015}, "year", ["the table has 2017"]),
        ({"city": "london"}, "city", ["no reference rents for 'london'"]),
        ({"built": "medieval"}, "built", ["expected a construction year or one of"]),
    ],
)
def test_bad_legal_input_is_422_naming_the_field(
    predict: ModuleType,
    champion: dict[str, Any],
    change: dict[str, Any],
    field: str,
    problem_parts: list[str],
) -> None:
    status, _, body = call(predict, "POST", "/estimates", {**BASE, **change})
    (problem,) = refused(status, body)
    assert problem["field"] == field
    for part in problem_parts:
        assert part in problem["problem"]
    assert field in body["error"]["message"]


def test_unknown_quartier_lists_three_closest_names(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "POST", "/estimates", {**BASE, "quartier": "Montparnase"})
    (problem,) = refused(status, body)
    closest = problem["problem"].split("closest: ", 1)[1].split(", ")
    assert len(closest) == 3 and "Montparnasse" in closest


def test_bad_field_in_a_batch_is_named_with_its_index(predict: ModuleType, champion: dict[str, Any]) -> None:
    listings = [dict(BASE) for _ in range(5)]
    listings[3]["quartier"] = "Nowhere-sur-Seine"
    listings[4]["rooms"] = 0
    status, _, body = call(predict, "POST", "/estimates", {"listings": listings})
    fields = refused(status, body)
    assert [f["field"] for f in fields] == ["listings[3].quartier", "listings[4].rooms"]


def test_a_wrong_field_is_refused_even_without_the_others(
    predict: ModuleType, champion: dict[str, Any]
) -> None:
    status, _, body = call(predict, "POST", "/estimates", {"surface_m2": 30, "rooms": 0})
    assert refused(status, body)[0]["field"] == "rooms"


def test_rooms_as_text_is_a_type_error_naming_rooms(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, body = call(predict, "POST", "/estimates", {**BASE, "rooms": "two"})
    assert status == 422 and body["error"]["fields"][0]["field"] == "rooms"


# ------------------------------------------------------------------------------------------ the table
def test_corrupt_table_is_logged_and_answered_as_a_hint(
    predict: ModuleType,
    lake: Any,
    artifact: bytes,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a champion whose pointer records another sha256 for its legal table
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    publish_champion(lake, "v2", make_onnx_model(), make_card("v2"), legal=artifact, legal_sha256="0" * 64)
    # WHEN a listing with the legal fields is estimated
    capfd.readouterr()
    status, _, body = call(predict, "POST", "/estimates", BASE)
    # THEN the market estimate is answered, the legal part is a hint, and the failure is logged
    assert status == 200 and body["rent_eur"] == 1192
    assert "legal" not in body
    assert body["legal_hint"].startswith("the legal reference table could not be loaded")
    logged = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    assert any(x["level"] == "ERROR" and "legal reference table unavailable" in x["message"] for x in logged)
    status, _, info = call(predict, "GET", "/model")
    assert status == 200 and info["legal"]["available"] is False


def test_table_is_loaded_once_with_the_model_and_refreshed_with_it(
    lake: Any, artifact: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.legal import lookup as legal
    from rentlake.runtime.champion import ChampionCache
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    reads: list[str] = []
    real_get = type(lake).get_bytes

    def counting_get(self: Any, key: str) -> bytes:
        reads.append(key)
        return real_get(self, key)

    monkeypatch.setattr(type(lake), "get_bytes", counting_get)
    now = [0.0]
    cache = ChampionCache(lake, refresh_seconds=60, clock=lambda: now[0])
    publish_champion(lake, "v1", make_onnx_model(), make_card("v1"), legal=artifact)
    # WHEN the champion is used many times within the refresh period
    for _ in range(5):
        model = cache.get()
    # THEN the table was read once, with the model
    assert reads.count("models/v1/legal.json") == 1
    assert model.legal is not None and model.legal.sha256 == hashlib.sha256(artifact).hexdigest()
    # GIVEN a new champion with another table (Belleville's 2017 reference raised)
    doc = json.loads(artifact)
    cell = "7512077|2|1|0"
    doc["cities"]["PARIS"]["years"]["2017"]["values"][cell] = [40.0, 30.0, 48.0]
    new = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    publish_champion(lake, "v2", make_onnx_model(), make_card("v2"), legal=new)
    now[0] = 61.0
    model = cache.get()
    # THEN the refresh swaps the table with the model
    assert model.version == "v2"
    assert legal.lookup(model.legal, quartier="Belleville", rooms=2, built=1965)["ref_eur_m2"] == 40.0


def test_champion_without_table_answers_hint_and_no_quartiers(predict: ModuleType, lake: Any) -> None:
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    publish_champion(lake, "v0", make_onnx_model(), make_card("v0"))
    status, _, body = call(predict, "POST", "/estimates", BASE)
    assert status == 200 and body["legal_hint"].startswith("no legal reference table is loaded")
    status, _, qs = call(predict, "GET", "/quartiers")
    assert status == 200 and qs["quartiers"] == [] and qs["hint"]


# ------------------------------------------------------------------------------------------ endpoints
def test_quartiers_lists_names_and_codes_of_both_cities(
    predict: ModuleType, champion: dict[str, Any]
) -> None:
    status, _, paris = call(predict, "GET", "/quartiers")
    assert status == 200 and paris["city"] == "PARIS" and paris["years"] == [2015, 2016, 2017]
    assert len(paris["quartiers"]) == 80
    assert {"name": "Belleville", "code": "7512077"} in paris["quartiers"]
    status, _, lille = call(predict, "GET", "/quartiers?city=lille")
    assert status == 200 and lille["years"] == [2017] and len(lille["quartiers"]) == 110
    assert {"name": "Lille-Centre", "code": "593500101"} in lille["quartiers"]
    status, _, body = call(predict, "GET", "/quartiers?city=london")
    assert refused(status, body)[0]["field"] == "city"
    status, _, body = call(predict, "GET", "/quartiers?city=" + "x" * 40)
    assert status == 422 and body["error"]["fields"][0]["field"] == "city"


def test_model_says_which_legal_years_it_serves(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, info = call(predict, "GET", "/model")
    assert status == 200
    assert info["legal"]["available"] is True
    assert info["legal"]["years"] == {"paris": [2015, 2016, 2017], "lille": [2017]}


def test_plot_data_is_the_model_band_over_the_surface_range(predict: ModuleType, lake: Any) -> None:
    import math

    from rentlake.runtime.testing import expected_rent, make_card, make_onnx_model, publish_champion

    points = [[20.0, 900.0], [45.0, 1500.0]]
    publish_champion(lake, "v1", make_onnx_model(), make_card("v1", plot_sample=points))
    status, _, plot = call(predict, "GET", "/plot-data")
    assert status == 200
    assert plot["surface_range"] == [9.0, 250.0] and plot["level"] == 0.9
    assert len(plot["band"]) == 48
    first, last = plot["band"][0], plot["band"][-1]
    assert (first["surface_m2"], last["surface_m2"]) == (9.0, 250.0)
    assert first["rent_eur"] == pytest.approx(expected_rent(9.0), rel=1e-4)
    assert last["high"] == pytest.approx(expected_rent(250.0) * math.exp(0.4), rel=1e-4)
    assert plot["points"] == points
    status, _, body = call(predict, "GET", "/plot-data?district=" + "x" * 65)
    assert status == 422 and body["error"]["fields"][0]["field"] == "district"


def test_openapi_documents_legal_and_the_new_routes(predict: ModuleType, champion: dict[str, Any]) -> None:
    status, _, text = call(predict, "GET", "/openapi.json")
    doc = json.loads(text) if isinstance(text, str) else text
    assert status == 200
    assert {"/quartiers", "/plot-data"} <= set(doc["paths"])
    assert [p["name"] for p in doc["paths"]["/quartiers"]["get"]["parameters"]] == ["city"]
    schemas = doc["components"]["schemas"]
    assert {"legal", "legal_hint"} <= set(schemas["Estimate"]["properties"])
    assert {"ref_eur_m2", "max_rent_eur", "verdict", "notice"} <= set(schemas["LegalAnswer"]["properties"])
    assert {"quartier", "rooms", "built", "furnished", "city", "year"} <= set(
        schemas["Listing"]["properties"]
    )


@pytest.mark.parametrize(
    ("path", "accept", "lang"),
    [
        ("/", "en-GB,en;q=0.9", "en"),
        ("/", "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("/?lang=en", "fr", "en"),
        ("/", None, "fr"),
    ],
)
def test_page_is_small_html_in_the_asked_language(
    predict: ModuleType, path: str, accept: str | None, lang: str
) -> None:
    # GIVEN no champion at all: the page must still be served
    status, headers, html = call(predict, "GET", path, headers={"accept-language": accept} if accept else {})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert len(html.encode()) < 60 * 1024
    assert f'<html lang="{lang}">' in html
    assert '<meta name="viewport"' in html and 'id="surface"' in html and "<svg" in html


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def ctx(lake: Any, champion: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(lake=lake, functions_dir=ROOT / "functions", out=io.StringIO())


def _args(**kw: Any) -> argparse.Namespace:
    base = {
        "surface": "30",
        "district": None,
        "current_rent": None,
        "json": True,
        "city": None,
        "quartier": None,
        "rooms": None,
        "built": None,
        "furnished": None,
        "year": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_cli_parses_the_legal_options() -> None:
    from rentlake.cli import cmd_estimate

    parser = argparse.ArgumentParser()
    cmd_estimate.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            *("estimate", "--surface", "30", "--quartier", "Belleville", "--rooms", "2", "--built", "1965"),
            *("--furnished", "--city", "lille", "--year", "2016", "--current-rent", "1200", "--json"),
        ]
    )
    assert (args.quartier, args.rooms, args.built, args.furnished, args.city, args.year, args.json) == (
        "Belleville",
        "2",
        "1965",
        True,
        "lille",
        "2016",
        True,
    )


@pytest.mark.parametrize(
    ("kw", "where"),
    [
        (
            {"quartier": "Belleville", "rooms": "2", "built": "1965"},
            {
                "ville": "PARIS",
                "nom_quartier": "Belleville",
                "piece": "2",
                "epoque": "1946-1970",
                "annee": "2017",
            },
        ),
        (
            {"city": "lille", "quartier": "593500101", "rooms": "1", "built": "1900", "furnished": True},
            {"ville": "LILLE", "code_iris": "593500101", "piece": "1", "epoque": "Avant 1946", "meuble": "1"},
        ),
    ],
)
def test_cli_json_carries_the_table_values(
    ctx: SimpleNamespace, rows: list[dict[str, str]], kw: dict[str, Any], where: dict[str, str]
) -> None:
    from rentlake.cli.cmd_estimate import run

    expected = row_of(rows, **{"meuble": "0", **where})
    assert run(_args(current_rent="1200", **kw), ctx) == 0
    lg = json.loads(ctx.out.getvalue())["legal"]
    assert [lg["ref_eur_m2"], lg["min_eur_m2"], lg["max_eur_m2"]] == [
        float(expected["ref"]),
        float(expected["min"]),
        float(expected["max"]),
    ]
    assert lg["verdict"] in ("above_max", "within", "below_min")


def test_cli_sentence_shows_the_legal_band_and_verdict(ctx: SimpleNamespace) -> None:
    from rentlake.cli.cmd_estimate import run

    run(_args(json=False, current_rent="1200", quartier="Belleville", rooms="2", built="1965"), ctx)
    text = ctx.out.getvalue()
    assert "Legal reference rent (Paris 2017, Belleville 7512077, 2 room(s), 1946-1970, unfurnished)" in text
    assert "legal band 486.00–831.00 €/month (16.2–27.7 €/m²)" in text
    assert "At 1 200 €/month you pay above the legal maximum." in text
    assert NOT_ADVICE in text


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (
            {"quartier": "Bellevile", "rooms": "2", "built": "1965"},
            "quartier: unknown Paris quartier 'Bellevile'",
        ),
        (
            {"quartier": "Belleville", "rooms": "0", "built": "1965"},
            "rooms: a dwelling has at least 1 main room",
        ),
        (
            {"quartier": "Belleville", "rooms": "2", "built": "1965", "year": "2030"},
            "year: no Paris reference",
        ),
        (
            {"quartier": "Belleville", "rooms": "2", "built": "2999"},
            "built: construction year 2999 is in the",
        ),
        ({"city": "lille", "quartier": "123456789", "rooms": "2", "built": "1965"}, "IRIS code 123456789"),
    ],
)
def test_cli_bad_legal_input_is_a_cli_error_naming_the_field(
    ctx: SimpleNamespace, kw: dict[str, Any], expected: str
) -> None:
    from rentlake.cli.cmd_estimate import run
    from rentlake.cli.errors import CliError

    with pytest.raises(CliError) as info:
        run(_args(json=False, **kw), ctx)
    assert expected in str(info.value)
    assert info.value.exit_code != 0 and "Traceback" not in str(info.value)


def test_cli_without_legal_fields_prints_the_hint(ctx: SimpleNamespace) -> None:
    from rentlake.cli.cmd_estimate import run

    run(_args(json=False), ctx)
    assert "legal: add quartier, rooms, built" in ctx.out.getvalue()
