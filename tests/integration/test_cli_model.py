"""The model commands of the CLI: ``pipeline --json`` in a subprocess on an embedded lake, ``models``,
``train`` on bad data, and ``diagnose`` on Anscombe's quartet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, SAMPLES

ANSCOMBE = SAMPLES / "anscombe.csv"


def rentlake(lake_dir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a fresh process on an embedded lake (no AWS, no network); ``settings`` are
    environment variables (``RENTLAKE_...``) for that process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))} | settings
    return subprocess.run(
        [sys.executable, "-m", "rentlake.cli.main", "--lake-dir", str(lake_dir), "-q", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def models_files(lake_dir: Path) -> dict[str, bytes]:
    root = lake_dir / "models"  # the local lake keeps each key as a file under its folder
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pipeline_json_shows_rows_model_and_report_then_a_rerun_changes_nothing(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    # WHEN the whole cycle runs on the course file
    first = rentlake(lake_dir, "pipeline", str(SAMPLES / "house_intact.csv"), "--json")
    # THEN the JSON holds the row counts, the exploration report and the promoted model
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["rows"] == {"ingested": 545, "clean": 481, "quarantined": 64}
    assert out["report"].endswith("report.html") and Path(out["report"]).is_file()
    model = out["model"]
    assert model["promoted"] is True and model["trained"] is True and model["champion"] == model["version"]
    assert model["gate"]["decision"] == "promote" and model["gate"]["reasons"]
    assert set(model["metrics"]) >= {"mae", "rmse", "r2", "mape", "coverage", "mean_width"}
    assert Path(model["card"]).is_file()
    pointer = json.loads((lake_dir / "models" / "champion.json").read_text())
    assert pointer["version"] == model["version"]
    before = models_files(lake_dir)

    # WHEN it runs again with no new data
    again = rentlake(lake_dir, "pipeline", "--json")
    # THEN training is skipped with the reason, nothing is promoted and the registry is byte-identical
    assert again.returncode == 0, again.stderr
    model2 = json.loads(again.stdout)["model"]
    assert model2["skipped"] is True and model2["promoted"] is False
    assert model2["reason"] == f"no new clean data since version {model['version']} (the champion)"
    assert model2["champion"] == model["version"] and model2["metrics"]["mae"] == model["metrics"]["mae"]
    assert models_files(lake_dir) == before

    # AND the registry commands see one champion, and refuse what cannot be done, without a traceback
    listed = rentlake(lake_dir, "models", "list", "--json")
    assert [(r["version"], r["champion"], r["gate"]) for r in json.loads(listed.stdout)] == [
        (model["version"], True, "promote")
    ]
    rollback = rentlake(lake_dir, "models", "rollback")
    assert rollback.returncode == 2 and "Traceback" not in rollback.stderr
    assert "cannot roll back" in rollback.stderr and "no previous one" in rollback.stderr
    unknown = rentlake(lake_dir, "models", "promote", "20990101T000000Z-000000000000")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no model version '20990101T000000Z-000000000000'" in unknown.stderr
    assert models_files(lake_dir) == before


def test_pipeline_human_summary_says_where_to_look(tmp_path: Path) -> None:
    res = rentlake(tmp_path / "lake", "pipeline", str(SAMPLES / "house_intact.csv"))
    assert res.returncode == 0, res.stderr
    tail = res.stdout.split("where to look:", 1)[1]
    assert "report.html" in tail and "card.html" in tail and "(promoted by this run)" in tail
    assert "30 m²: about" in tail and "90 % interval" in tail


def test_explore_says_when_its_statistics_come_from_a_sample(tmp_path: Path) -> None:
    # GIVEN the course file cleaned into an embedded lake (481 clean rows)
    lake_dir = tmp_path / "lake"
    for step in (("ingest", str(SAMPLES / "house_intact.csv")), ("clean",)):
        assert rentlake(lake_dir, *step).returncode == 0
    # WHEN it is explored with a cap of 200 rows
    capped = rentlake(lake_dir, "explore", RENTLAKE_EXPLORE_MAX_ROWS="200")
    # THEN the summary line names the lake's rows and the sample the statistics were computed on
    assert capped.returncode == 0, capped.stderr
    line = next(x for x in capped.stdout.splitlines() if x.strip().startswith("report "))
    sampled = int(line.split("hash sample of ")[1].rstrip(")").replace(",", ""))
    assert "(481 rows, statistics on a hash sample of " in line and 0 < sampled <= 200


def test_too_little_data_is_refused_with_its_reason_and_no_traceback(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("loyer,surface\n900,30\n1000,32\n1100,35\n1200,40\n1300,45\n")
    # WHEN the pipeline runs on 5 listings
    res = rentlake(lake_dir, "pipeline", str(tiny), "--json")
    # THEN rows were cleaned, but no model: exit 2, the reason on stderr and in the JSON, no champion
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "rentlake: no model: only 5 usable rows" in res.stderr
    out = json.loads(res.stdout)
    assert out["rows"]["clean"] == 5
    assert out["model"]["trained"] is False and out["model"]["champion"] is None
    # no version, pointer or history: only the batch's review record (batches are reviewed once)
    stored = [p.relative_to(lake_dir / "models") for p in (lake_dir / "models").rglob("*") if p.is_file()]
    assert [str(p) for p in stored] == [f"_batches/listings/{out['batches'][0]['ingestion_id']}.json"]
    # AND `rentlake train` says the same
    train = rentlake(lake_dir, "train")
    assert train.returncode == 2 and "rentlake: cannot train: only 5 usable rows" in train.stderr
    assert "Traceback" not in train.stderr


# ------------------------------------------------------------------------------ review and acceptance
def estimate_30(lake_dir: Path) -> dict[str, Any]:
    res = rentlake(lake_dir, "estimate", "--surface", "30", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_a_poisoned_file_is_held_until_accepted_and_its_model_until_promoted_by_hand(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    lake_dir = tmp_path / "lake"
    assert rentlake(lake_dir, "pipeline", str(SAMPLES / "house_intact.csv")).returncode == 0
    before = estimate_30(lake_dir)
    # GIVEN a file of 3 000 listings at 150-195 €/m², five times the market
    rng = np.random.default_rng(0)
    s = np.round(rng.uniform(15, 90, 3_000))
    poisoned = tmp_path / "poison.csv"
    rents = np.round(s * rng.uniform(150, 195, 3_000))
    pd.DataFrame({"loyer": rents, "surface": s}).to_csv(poisoned, index=False)
    # WHEN the pipeline runs on it
    res = rentlake(lake_dir, "pipeline", str(poisoned))
    # THEN its clean rows are held out of training, the output says so and how to accept them
    assert res.returncode == 0, res.stderr
    held_line = next(line for line in res.stdout.splitlines() if line.strip().startswith("now held"))
    batch = held_line.split("batch ", 1)[1].split(" ", 1)[0]
    assert "robust SD" in held_line and f"rentlake batches accept {batch}" in res.stdout
    assert "training skipped" in res.stdout
    # AND the served answer has not moved
    assert estimate_30(lake_dir)["rent_eur"] == before["rent_eur"]
    listed = json.loads(rentlake(lake_dir, "batches", "list", "--json").stdout)
    assert [(b["ingestion_id"], b["status"]) for b in listed][1] == (batch, "held")

    # WHEN a person accepts the batch and trains
    accepted = rentlake(lake_dir, "batches", "accept", batch)
    assert accepted.returncode == 0 and f"accepted batch {batch}" in accepted.stdout
    train = rentlake(lake_dir, "train", "--json")
    out = json.loads(train.stdout)
    version = out["train"]["version"]
    # THEN the gate refuses the model trained on it: its estimates move beyond the bound
    assert out["evaluate"]["promoted"] is False
    assert any("refused unless accepted" in r for r in out["evaluate"]["gate"]["reasons"])
    # AND the served answer moves by at most the bound: not at all
    after = estimate_30(lake_dir)
    assert abs(after["rent_eur"] / before["rent_eur"] - 1) <= 0.15 and after == before
    # WHEN a person promotes it by hand THEN it serves (explicit acceptance)
    assert rentlake(lake_dir, "models", "promote", version).returncode == 0
    assert estimate_30(lake_dir)["model_version"] == version
    # AND an unknown batch cannot be accepted, and the message names the held ones (none now)
    unknown = rentlake(lake_dir, "batches", "accept", "nope")
    assert unknown.returncode == 2 and "no review of batch 'nope'" in unknown.stderr


# ------------------------------------------------------------------------------------------- diagnose
def diagnose(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    from rentlake.cli.main import main

    code = main(["diagnose", str(ANSCOMBE), "--x", "x", "--y", "y", *args])
    captured = capsys.readouterr()
    body = json.loads(captured.out) if "--json" in args and code == 0 else captured.out
    return code, body, captured.err


def test_diagnose_tells_the_four_anscombe_sets_apart(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN each set of the quartet is diagnosed (same line, same R²)
    code, out, _ = diagnose(capsys, "--group", "dataset", "--json")
    # THEN one object per set, keyed by set, each naming its own problem
    assert code == 0 and list(out) == ["I", "II", "III", "IV"]
    assert {k: (v["verdict"], v["flags"]) for k, v in out.items()} == {
        "I": ("ok", []),
        "II": ("flagged", ["nonlinearity"]),
        "III": ("flagged", ["outlier"]),
        "IV": ("flagged", ["influential_point"]),
    }
    for v in out.values():
        assert v["intercept"] == pytest.approx(3.0, abs=0.01) and v["slope"] == pytest.approx(0.5, abs=0.01)
        assert v["r2"] == pytest.approx(0.67, abs=0.01) and v["n"] == 11
        assert set(v["reasons"]) == set(v["flags"])


def test_diagnose_where_prints_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diagnose(capsys, "--where", "dataset=III", "--json")
    assert code == 0
    assert {"intercept", "slope", "r2", "verdict", "flags"} <= set(out)
    assert out["verdict"] == "flagged" and out["flags"] == ["outlier"]


def test_diagnose_human_output_has_one_line_per_group(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diagnose(capsys, "--group", "dataset")
    heads = [line for line in out.splitlines() if line.startswith("dataset=")]
    assert code == 0 and len(heads) == 4
    assert heads[0].endswith(": ok") and "influential_point:" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "dataset=V"], "no row has dataset = 'V'"),
        (["--group", "nope"], "no column 'nope'"),
        (["--where", "dataset"], "--where expects COL=VALUE"),
    ],
)
def test_diagnose_bad_arguments_are_clear_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = diagnose(capsys, *args)
    assert code == 2 and message in err


def test_diagnose_refuses_a_single_distinct_x(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rentlake.cli.main import main

    f = tmp_path / "flat.csv"
    f.write_text("x,y\n" + "".join(f"5,{i}\n" for i in range(10)))
    assert main(["diagnose", str(f), "--x", "x", "--y", "y"]) == 2
    assert "all x values are identical" in capsys.readouterr().err
