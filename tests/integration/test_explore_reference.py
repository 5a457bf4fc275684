"""The exploration report crosses the listings with the legal reference rents (issue 8, "Show it")."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support import SAMPLES

TABLE = "encadrement_loyers_paris_lille_2015_2017.csv"


def test_report_adds_reference_rents_per_arrondissement(function, put_landing, lake, lambda_context) -> None:
    # GIVEN the course listings and the reference table, ingested and cleaned by the functions
    for name in ("house_intact.csv", TABLE):
        function("ingest").handler(put_landing(name, (SAMPLES / name).read_bytes()), lambda_context)
    function("clean").handler({}, lambda_context)
    # WHEN the exploration runs
    out = function("explore").handler({}, lambda_context)
    # THEN the report has the plot and the medians of the latest Paris year, furnished and not
    files = out["keys"]
    assert "reference_rents_by_arrondissement.png" in files
    assert lake.get_bytes(files["reference_rents_by_arrondissement.png"]).startswith(b"\x89PNG")
    summary = lake.get_json(files["summary.json"])["reference_rents"]
    table = pd.read_csv(SAMPLES / TABLE)
    paris = table[(table["ville"] == "PARIS") & (table["annee"] == 2017)]
    first = paris[paris["code_grand_quartier"].astype(str).str[3:5] == "01"]
    assert summary["year"] == 2017
    assert summary["median_by_arrondissement"]["75001"]["unfurnished"] == pytest.approx(
        first[first["meuble"] == 0]["ref"].median()
    )
    assert summary["median_by_arrondissement"]["75001"]["furnished"] == pytest.approx(
        first[first["meuble"] == 1]["ref"].median()
    )
    assert len(summary["median_by_arrondissement"]) == 20
    # AND it sets the listings beside them: the course data sits far above the references
    assert summary["highest_paris_max_eur_m2"] == pytest.approx(paris["max"].max())
    assert 0.1 < summary["share_of_listings_above_highest_max"] < 0.3
    page = lake.get_bytes(files["report.html"]).decode()
    assert "Legal reference rents" in page and "not legal advice" in page


def test_card_carries_a_sample_of_listings_for_the_tenant_plot(
    function, put_landing, lake, lambda_context
) -> None:
    # GIVEN the course listings cleaned in the lake
    function("ingest").handler(
        put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()), lambda_context
    )
    function("clean").handler({}, lambda_context)
    # WHEN a model is trained
    out = function("train").handler({}, lambda_context)
    card = lake.get_json(out["card_key"])
    # THEN its card holds every clean listing (481 ≤ 500) as [surface, rent] points, from the clean zone
    clean = lake.read_clean("listings")
    assert len(card["plot_sample"]) == len(clean) == 481
    assert sorted(map(tuple, card["plot_sample"])) == sorted(
        zip(clean["surface_m2"].round(1), clean["rent_eur"].round(1), strict=True)
    )
