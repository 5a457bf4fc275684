"""Batch scoring: CSV/Parquet in, same rows plus estimates out, in chunks, bad rows flagged not dropped."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests.support import BUCKET, ROOT, FakeContext, load_function

CTX = FakeContext()  # Lambda's context, as the batch handler's logger reads it


@pytest.fixture
def lake(lake: Any) -> Any:
    """The conftest lake (fake credentials -> mock_aws() -> bucket) with a champion that uses the district."""
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    model = make_onnx_model(district_factors={"75006": 1.3})
    publish_champion(lake, "v1", model, make_card("v1", districts=["75006"]))
    return lake


@pytest.fixture
def score_app(lake: Any) -> ModuleType:
    return load_function("score")


CSV = (
    "id,surface_m2,district,zip\n"
    "a,30,75006,07500\n"
    "b,45.5,,07500\n"
    "c,,75006,07500\n"
    "d,abc,75006,07500\n"
    "e,-3,75006,07500\n"
    "f,NaN,75006,07500\n"
    "g,inf,75006,07500\n"
    "h,20000,75006,07500\n"
    "i,0,75006,07500\n"
)


def _read_parquet(lake: Any, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(lake.get_bytes(key)))


def test_csv_rows_come_back_with_estimates_and_problems(lake: Any, score_app: ModuleType) -> None:
    # GIVEN a CSV with good and bad surfaces uploaded under score/
    from rentlake.runtime.testing import expected_rent

    lake.put_bytes("score/listings.csv", CSV.encode())
    # WHEN the score function is invoked directly, with 4-row chunks
    score_app.CHUNK_ROWS = 4
    out = score_app.handler({"keys": ["score/listings.csv"]}, CTX)
    (res,) = out["scored"]
    # THEN every row is there, in order, estimates where valid, the problem where not
    assert (res["rows"], res["scored_rows"], res["problem_rows"]) == (9, 2, 7)
    assert res["outputs"] == ["scored/listings.scored.parquet", "scored/listings.scored.csv"]
    df = _read_parquet(lake, "scored/listings.scored.parquet")
    assert list(df.columns) == ["id", "surface_m2", "district", "zip", "rent_eur", "low", "high", "problem"]
    assert df["id"].tolist() == list("abcdefghi")
    assert df["zip"].tolist() == ["07500"] * 9  # text kept as it was
    assert df.loc[0, "rent_eur"] == pytest.approx(expected_rent(30, factor=1.3), abs=0.5)
    assert df.loc[1, "rent_eur"] == pytest.approx(expected_rent(45.5), abs=0.5)
    assert df.loc[0, "low"] == pytest.approx(expected_rent(30, factor=1.3) * math.exp(-0.4), abs=0.5)
    assert [None if pd.isna(p) else p for p in df["problem"]] == [
        None,
        None,
        "surface_m2 is missing",
        "surface_m2 is not a number",
        "surface_m2 must be between 9 and 1000 m²",
        "surface_m2 is NaN",
        "surface_m2 is not finite",
        "surface_m2 must be between 9 and 1000 m²",
        "surface_m2 must be between 9 and 1000 m²",
    ]
    assert df.loc[2:, ["rent_eur", "low", "high"]].isna().all().all()
    # AND the CSV output has the same rows, empty estimates for bad rows
    csv = pd.read_csv(
        io.BytesIO(lake.get_bytes("scored/listings.scored.csv")), dtype=str, keep_default_na=False
    )
    assert csv["id"].tolist() == list("abcdefghi")
    assert csv.loc[3, "rent_eur"] == "" and csv.loc[3, "problem"] == "surface_m2 is not a number"
    # AND a report names the model
    assert lake.get_json(res["report_key"])["model_version"] == "v1"


def test_parquet_input_is_chunked_and_written_as_parquet_only(lake: Any, score_app: ModuleType) -> None:
    # GIVEN 25 numeric rows, one NaN and one negative, in Parquet
    from rentlake.runtime.testing import expected_rent

    surfaces = [10.0 + i for i in range(25)]
    surfaces[7], surfaces[11] = float("nan"), -1.0
    buf = io.BytesIO()
    pd.DataFrame({"surface_m2": surfaces, "n": range(25)}).to_parquet(buf)
    lake.put_bytes("score/batch.parquet", buf.getvalue())
    # WHEN triggered by an S3 ObjectCreated event (chunks of 10 rows)
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": {"key": "score/batch.parquet", "size": 1},
                },
            }
        ]
    }
    score_app.CHUNK_ROWS = 10
    (res,) = score_app.handler(event, CTX)["scored"]
    # THEN 25 rows, 2 problems, Parquet output only
    assert (res["rows"], res["problem_rows"]) == (25, 2)
    assert res["outputs"] == ["scored/batch.scored.parquet"]
    df = _read_parquet(lake, res["outputs"][0])
    assert df["n"].tolist() == list(range(25))
    assert df.loc[7, "problem"] == "surface_m2 is missing"
    assert df.loc[11, "problem"] == "surface_m2 must be between 9 and 1000 m²"
    assert df.loc[24, "rent_eur"] == pytest.approx(expected_rent(34.0), abs=0.5)


def test_s3_event_keys_are_url_decoded_and_filtered() -> None:
    from rentlake.events import parse_score

    event = {
        "Records": [
            {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "score/my+file%C3%A9.csv"}}},
            {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "landing/other.csv"}}},
        ]
    }
    assert parse_score(event).keys == ["score/my fileé.csv"]


def test_unscorable_files_are_reported_not_raised(lake: Any, score_app: ModuleType) -> None:
    # GIVEN a text file, a missing key and a corrupt parquet
    lake.put_bytes("score/notes.txt", b"hello")
    lake.put_bytes("score/broken.parquet", b"PAR1 not really")
    out = score_app.handler({"keys": ["score/notes.txt", "score/missing.csv", "score/broken.parquet"]}, CTX)
    errors = [r["error"] for r in out["scored"]]
    assert "only .csv and .parquet" in errors[0]
    assert "does not exist" in errors[1]
    assert "cannot read the file as parquet" in errors[2]


def test_file_without_surface_column_flags_every_row(lake: Any, score_app: ModuleType) -> None:
    lake.put_bytes("score/nosurface.csv", b"id,rooms\n1,2\n2,3\n")
    (res,) = score_app.handler({"keys": ["score/nosurface.csv"]}, CTX)["scored"]
    df = _read_parquet(lake, res["outputs"][0])
    assert res["problem_rows"] == 2
    assert df["problem"].tolist() == ["no surface_m2 column in the file"] * 2


def test_no_champion_is_reported(lake: Any, score_app: ModuleType) -> None:
    from rentlake.lake import keys

    lake.delete_keys([keys.champion()])
    lake.put_bytes("score/x.csv", b"surface_m2\n30\n")
    (res,) = score_app.handler({"keys": ["score/x.csv"]}, CTX)["scored"]
    assert res["error"] == "no model has been promoted yet; run the training pipeline"


def test_cli_score_uploads_scores_and_prints_where(lake: Any, tmp_path: Path) -> None:
    # GIVEN a CSV on disk
    from rentlake.cli.cmd_score import run

    src = tmp_path / "mine.csv"
    src.write_text(CSV)
    ctx = SimpleNamespace(lake=lake, functions_dir=ROOT / "functions", out=io.StringIO())
    # WHEN scored through the CLI
    assert run(SimpleNamespace(file=str(src), json=False), ctx) == 0
    # THEN the file was uploaded to score/ and the outputs are named
    text = ctx.out.getvalue()
    assert lake.get_bytes("score/mine.csv") == CSV.encode()
    assert "scored 9 rows with model v1 (7 with a problem" in text
    assert f"s3://{BUCKET}/scored/mine.scored.parquet" in text
    ctx.out = io.StringIO()
    assert run(SimpleNamespace(file=str(src), json=True), ctx) == 0
    assert json.loads(ctx.out.getvalue())["scored"][0]["rows"] == 9


def test_cli_score_refuses_unknown_files(lake: Any, tmp_path: Path) -> None:
    from rentlake.cli.cmd_score import run
    from rentlake.cli.errors import CliError

    ctx = SimpleNamespace(lake=lake, functions_dir=ROOT / "functions", out=io.StringIO())
    with pytest.raises(CliError, match="no such file"):
        run(SimpleNamespace(file=str(tmp_path / "nope.csv"), json=False), ctx)


def test_a_failing_lake_fails_the_invocation_so_lambda_retries(
    lake: Any, score_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rentlake.lake import Lake, LakeError

    # GIVEN a file to score and S3 refusing the output write (after its own retries)
    lake.put_bytes("score/x.csv", b"surface_m2\n30\n")
    score_app.CHAMPION.get()

    def refuse(self: Lake, key: str, data: bytes, **kw: Any) -> str:
        raise LakeError(f"cannot write s3://{self.bucket}/{key}: SlowDown")

    monkeypatch.setattr(Lake, "put_bytes", refuse)
    # WHEN scored THEN the error is raised, not reported as a scored file's "error"
    with pytest.raises(LakeError, match="SlowDown"):
        score_app.handler({"keys": ["score/x.csv"]}, CTX)
