"""The ``rentlake`` command on the embedded local lake: one command after another, files you can open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SAMPLES

RENTLAKE = [sys.executable, "-m", "rentlake.cli.main"]


def rentlake(*args: str, lake: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RENTLAKE_BUCKET"}
    return subprocess.run(
        [*RENTLAKE, "--lake-dir", str(lake), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=check,
        timeout=300,
    )


def test_ingest_then_clean_in_two_commands_persists_the_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    # GIVEN a file ingested by one command
    first = rentlake("ingest", str(SAMPLES / "house_intact.csv"), "--json", lake=lake)
    out = json.loads(first.stdout)
    assert out["rows"] == {"ingested": 545} and out["outcomes"][0]["status"] == "ingested"
    # WHEN a second command cleans what is pending
    second = rentlake("clean", lake=lake)
    # THEN it found the batch the first one left, and says where the report is
    assert "545 rows in = 481 clean + 64 quarantined" in second.stdout
    report_path = Path(
        next(line.split("report: ")[1] for line in second.stdout.splitlines() if "report: " in line)
    )
    assert json.loads(report_path.read_text())["rows"]["clean"] == 481
    # AND the zones are plain files one can open, with the Glue catalog saved beside them
    bucket = lake / "s3" / "rentlake-local"
    assert (bucket / "landing" / "house_intact.csv").read_bytes() == (
        SAMPLES / "house_intact.csv"
    ).read_bytes()
    assert list((bucket / "clean" / "listings").rglob("*.parquet"))
    assert list((bucket / "quarantine" / "listings").rglob("*.parquet"))
    catalog = json.loads((lake / "glue.json").read_text())
    assert {"raw_listings", "clean_listings", "quarantine_listings"} <= set(
        catalog["databases"]["rentlake"]["tables"]
    )
    # AND long steps showed progress on stderr
    assert "rows" in second.stderr
    # AND a third command has nothing left to clean
    assert "nothing pending" in rentlake("clean", lake=lake).stdout


def test_pipeline_json_counts_this_run_only(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    # WHEN the pipeline runs on a good and an empty file, then again on the good one
    first = json.loads(
        rentlake("pipeline", str(SAMPLES / "house_intact.csv"), str(bad), "--json", lake=lake).stdout
    )
    again = json.loads(rentlake("pipeline", str(SAMPLES / "house_intact.csv"), "--json", lake=lake).stdout)
    # THEN the counts are integers for this run; the empty file is rejected with its reason
    assert first["rows"] == {"ingested": 545, "clean": 481, "quarantined": 64}
    assert [o["reason"] for o in first["objects"] if o["status"] == "rejected"] == ["empty_object"]
    assert again["rows"] == {"ingested": 0, "clean": 0, "quarantined": 0}


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    missing = rentlake("ingest", str(tmp_path / "nope.csv"), lake=tmp_path / "lake", check=False)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad_event = tmp_path / "event.json"
    bad_event.write_text('{"hello": "world"}')
    invoked = rentlake("invoke", "ingest", str(bad_event), lake=tmp_path / "lake", check=False)
    assert invoked.returncode == 2 and "ingest: expected an S3 ObjectCreated" in invoked.stderr
    assert "Traceback" not in invoked.stderr


def test_help_explains_each_command() -> None:
    top = subprocess.run([*RENTLAKE, "--help"], capture_output=True, text=True, check=True, cwd=ROOT)
    for command in ("ingest", "clean", "pipeline", "invoke"):
        assert command in top.stdout
        sub = subprocess.run(
            [*RENTLAKE, command, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
        )
        assert "usage: rentlake" in sub.stdout and len(sub.stdout) > 200


def test_demo_pipeline_shows_a_market_and_a_legal_answer(tmp_path: Path) -> None:
    # GIVEN what `make demo` runs: the course listings and the reference-rent table
    table = SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"
    lake = tmp_path / "lake"
    out = rentlake("pipeline", str(SAMPLES / "house_intact.csv"), str(table), lake=lake).stdout
    # THEN both land, each as its own dataset, and the summary answers the tenant's two questions
    assert "11,200 rows as 'reference_rents'" in out and "545 rows as 'listings'" in out
    assert "PROMOTED" in out
    assert "example:  30 m²: about" in out
    assert "Legal reference rent (Paris 2017, Belleville 7512077, 2 room(s), 1946-1970, unfurnished): " \
           "23.1 €/m²" in out
    assert "At 1 200 €/month you pay above the legal maximum." in out
    assert "not legal advice" in out
    # AND stdout is the command's result only: the predict function's EMF lines go to the lake's logs
    assert '"_aws"' not in out
    assert '"EstimatesServed"' in (lake / "logs" / "predict.log").read_text()
    # AND `estimate --json` prints exactly the API's body, parseable as is
    answer = json.loads(rentlake("estimate", "--surface", "30", "--json", lake=lake).stdout)
    assert answer["rent_eur"] > 0 and answer["interval"]["level"] == 0.9
