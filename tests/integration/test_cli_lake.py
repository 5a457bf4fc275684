"""The ``rentlake`` command on its local lake (a folder): one command after another, files you can open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, SAMPLES

RENTLAKE = [sys.executable, "-m", "rentlake.cli.main"]


def rentlake(*args: str, lake: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))}
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
    assert report_path.parent == lake / "reports" / "quality" / "listings"
    # AND the zones are plain files one can open, each key at <lake>/<key>, with the tables' catalog
    assert (lake / "landing" / "house_intact.csv").read_bytes() == (SAMPLES / "house_intact.csv").read_bytes()
    assert list((lake / "clean" / "listings").rglob("ingestion_id=*/part-00000-*.snappy.parquet"))
    assert list((lake / "quarantine" / "listings").rglob("*.parquet"))
    catalog = {p.stem for p in (lake / "_catalog").glob("*.json")}
    assert {"raw_listings", "clean_listings", "quarantine_listings"} <= catalog
    # AND no server copy is left beside them, nor any temp file
    assert not (lake / "s3").exists() and not (lake / "glue.json").exists()
    assert not [p for p in lake.rglob(".tmp-*")]
    # AND long steps showed progress on stderr
    assert "rows" in second.stderr
    # AND a third command has nothing left to clean
    assert "nothing pending" in rentlake("clean", lake=lake).stdout


def test_pipeline_json_counts_this_run_only(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    # WHEN the pipeline runs on a good and an empty file, then again on the good one
    run = rentlake("pipeline", str(SAMPLES / "house_intact.csv"), str(bad), "--json", lake=lake, check=False)
    assert run.returncode == 1  # a rejected file fails the command (the other stages still ran)
    first = json.loads(run.stdout)
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
    assert (
        "Legal reference rent (Paris 2017, Belleville 7512077, 2 room(s), 1946-1970, unfurnished): "
        "23.1 €/m²" in out
    )
    assert "At 1 200 €/month you pay above the legal maximum." in out
    assert "not legal advice" in out
    # AND stdout is the command's result only: the predict function's EMF lines go to the lake's logs
    assert '"_aws"' not in out
    assert '"EstimatesServed"' in (lake / "logs" / "predict.log").read_text()
    # AND `estimate --json` prints exactly the API's body, parseable as is
    answer = json.loads(rentlake("estimate", "--surface", "30", "--json", lake=lake).stdout)
    assert answer["rent_eur"] > 0 and answer["interval"]["level"] == 0.9


def test_the_lake_address_comes_from_options_then_environment() -> None:
    from rentlake.cli.local import lake_address

    env = {"RENTLAKE_LAKE": "s3://env-lake/p", "RENTLAKE_BUCKET": "env-bucket", "RENTLAKE_HOME": "/env/home"}
    # options win over the environment, --lake over --bucket over --lake-dir
    assert lake_address(lake="/a", bucket="b", lake_dir="/c", env=env) == "/a"
    assert lake_address(lake=None, bucket="b", lake_dir="/c", env=env) == "s3://b"
    assert lake_address(lake=None, bucket=None, lake_dir="/c", env=env) == "/c"
    # then RENTLAKE_LAKE, RENTLAKE_BUCKET (a real bucket), RENTLAKE_HOME, ./.rentlake
    assert lake_address(lake=None, bucket=None, lake_dir=None, env=env) == "s3://env-lake/p"
    env.pop("RENTLAKE_LAKE")
    assert lake_address(lake=None, bucket=None, lake_dir=None, env=env) == "s3://env-bucket"
    env.pop("RENTLAKE_BUCKET")
    assert lake_address(lake=None, bucket=None, lake_dir=None, env=env) == "/env/home"
    assert lake_address(lake=None, bucket=None, lake_dir=None, env={}) == ".rentlake"


def test_a_lake_written_by_the_embedded_server_is_adopted(tmp_path: Path) -> None:
    # GIVEN a folder in the layout of the moto-backed lake (bucket copy + Glue dump)
    lake = tmp_path / "lake"
    old = lake / "s3" / "rentlake-local"
    (old / "landing").mkdir(parents=True)
    (old / "landing" / "house_intact.csv").write_bytes((SAMPLES / "house_intact.csv").read_bytes())
    (lake / "glue.json").write_text("{}")
    # WHEN a command runs on it
    out = rentlake(
        "ingest",
        "--json",
        str(lake / "s3" / "rentlake-local" / "landing" / "house_intact.csv"),
        lake=lake,
        check=False,
    )
    # THEN the keys were moved to <lake>/<key> (said once on stderr) and the old folders are gone
    assert "moved the lake's files" in out.stderr
    assert (lake / "landing" / "house_intact.csv").exists()
    assert not (lake / "s3").exists() and not (lake / "glue.json").exists()


def test_the_command_line_still_runs_against_a_real_bucket(tmp_path: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "eu-west-3",
            "AWS_DEFAULT_REGION": "eu-west-3",
        }
        s3 = boto3.client(
            "s3",
            region_name="eu-west-3",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="team-lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))}, **aws}
        # WHEN ingest and clean run with --lake s3://bucket/prefix
        base = [*RENTLAKE, "--lake", "s3://team-lake/dev"]
        for args in (["ingest", str(SAMPLES / "house_intact.csv")], ["clean"]):
            done = subprocess.run(
                [*base, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
            )
            assert done.returncode == 0, done.stderr
        # THEN the objects are in the bucket under the prefix, and the report is named by its s3:// URI
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="team-lake")["Contents"]]
        assert "dev/landing/house_intact.csv" in listed
        assert any(k.startswith("dev/clean/listings/") and k.endswith(".parquet") for k in listed)
        assert "report: s3://team-lake/dev/reports/quality/listings/" in done.stdout
        # AND nothing was written to a local folder
        assert not (ROOT / "s3").exists()
    finally:
        server.stop()
