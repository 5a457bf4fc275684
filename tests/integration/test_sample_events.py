"""Every sample event under infra/events/ runs its function as is (what `sam local invoke -e` and
`rentlake invoke` feed them), in the order of the cycle, on a moto S3 lake and on a local folder lake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import EVENTS, ROOT, SAMPLES, load_event

# function -> its sample events; the retrain_* files are the state machine's inputs (tests/infra).
EVENT_FILES = {
    "ingest": ["ingest_s3_put", "ingest_keys"],
    "clean": ["clean_pending"],
    "explore": ["explore"],
    "train": ["train"],
    "evaluate": ["evaluate"],
    "predict": ["predict_estimate", "predict_model"],
    "score": ["score_s3_put"],
}


def test_every_event_file_belongs_to_a_function() -> None:
    named = {n for names in EVENT_FILES.values() for n in names}
    on_disk = {p.stem for p in EVENTS.glob("*.json") if not p.stem.startswith("retrain_")}
    assert on_disk == named


@pytest.fixture(params=["s3", "local"])
def cycle_lake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The lake the functions open from their environment: the moto bucket, or a folder (RENTLAKE_LAKE)."""
    if request.param == "s3":
        return request.getfixturevalue("lake")
    from rentlake.lake import open_lake

    monkeypatch.delenv("RENTLAKE_BUCKET", raising=False)
    monkeypatch.setenv("RENTLAKE_LAKE", str(tmp_path / "lake"))
    return open_lake(tmp_path / "lake")


def test_sample_events_run_the_whole_cycle(function, cycle_lake, lambda_context) -> None:
    lake = cycle_lake
    # GIVEN the objects the S3 events name
    lake.put_bytes("landing/house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    lake.put_bytes("score/listings_to_score.csv", b"surface_m2\n30\n55\n-1\n")
    # WHEN each function gets its sample events, in the order of the cycle
    ingested = function("ingest").handler(load_event("ingest_s3_put"), lambda_context)
    again = function("ingest").handler(load_event("ingest_keys"), lambda_context)
    cleaned = function("clean").handler(load_event("clean_pending"), lambda_context)
    explored = function("explore").handler(load_event("explore"), lambda_context)
    trained = function("train").handler(load_event("train"), lambda_context)
    version = trained["version"]
    evaluated = function("evaluate").handler(load_event("evaluate", VERSION=version), lambda_context)
    predict = function("predict")
    estimate = predict.handler(load_event("predict_estimate"), lambda_context)
    model = predict.handler(load_event("predict_model"), lambda_context)
    scored = function("score").handler(load_event("score_s3_put"), lambda_context)
    # THEN every stage did its part
    assert ingested["rows"] == {"ingested": 545} and again["outcomes"][0]["status"] == "duplicate"
    assert cleaned["rows"] == {"in": 545, "clean": 481, "quarantined": 64}
    assert explored["explored"] and trained["trained"] and evaluated["promoted"]
    assert estimate["statusCode"] == 200 and json.loads(estimate["body"])["model_version"] == version
    assert model["statusCode"] == 200 and json.loads(model["body"])["version"] == version
    result = scored["scored"][0]
    assert (result["rows"], result["scored_rows"], result["problem_rows"]) == (3, 2, 1)
    assert result["model_version"] == version
    assert all(key.startswith("scored/") and lake.exists(key) for key in result["outputs"])


def test_rentlake_invoke_substitutes_the_newest_version(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    base = [sys.executable, "-m", "rentlake.cli.main", "-q", "--lake-dir", str(lake)]
    subprocess.run(
        [*base, "pipeline", str(SAMPLES / "house_intact.csv")],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    # WHEN the evaluate event (which names ${VERSION}) is invoked as is
    out = subprocess.run(
        [*base, "invoke", "evaluate", str(EVENTS / "evaluate.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    # THEN ${VERSION} is the newest version: already the champion, so nothing changes
    assert out.returncode == 0, out.stderr
    assert "is already the champion" in json.loads(out.stdout)["reason"]
    # AND an unknown version is refused in one line
    bad = subprocess.run(
        [*base, "invoke", "evaluate", str(EVENTS / "evaluate.json"), "--set", "VERSION=v0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode == 2 and "no model version 'v0'" in bad.stderr and "Traceback" not in bad.stderr
