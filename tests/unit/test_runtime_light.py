"""The prediction path stays light: no pandas, scikit-learn, scipy or awswrangler in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import REGION, ROOT, fake_aws_env

# Its own bucket: the module's moto server shares moto's in-process backends with other tests' mock_aws().
BUCKET = "rentlake-light"
CREDS = fake_aws_env()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback (the subprocess talks to it; it never imports moto itself)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeded(s3_endpoint: str) -> str:
    from rentlake.lake import Lake
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    session.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    lake = Lake(BUCKET, boto3_session=session)
    lake._s3 = session.client("s3", endpoint_url=s3_endpoint)
    publish_champion(
        lake, "v1", make_onnx_model(district_factors={"75006": 1.3}), make_card("v1", districts=["75006"])
    )
    return s3_endpoint


def run_probe(python: str, endpoint: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))}
    env.update(CREDS, AWS_ENDPOINT_URL=endpoint, RENTLAKE_BUCKET=BUCKET)
    env["PYTHONPATH"] = str(ROOT / "layers" / "rentlake")
    out = subprocess.run(
        [
            python,
            "-m",
            "rentlake.runtime.lightcheck",
            str(ROOT / "functions/predict/app.py"),
            '{"surface_m2": 30, "district": "75006", "current_rent_eur": 1500}',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.stdout, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fresh_process_serves_an_estimate_without_heavy_modules(seeded: str) -> None:
    # GIVEN a champion in S3 and a fresh interpreter
    from rentlake.runtime.testing import expected_rent

    # WHEN it imports functions/predict/app.py by path and answers one estimate through the handler
    result = run_probe(sys.executable, seeded)
    # THEN the answer is right and none of the heavy modules was imported
    assert result["status"] == 200
    assert result["body"]["rent_eur"] == round(expected_rent(30, factor=1.3))
    assert result["body"]["verdict"] == "within"
    assert result["heavy"] == []


def test_lightcheck_flags_heavy_modules() -> None:
    # GIVEN a process that imported pandas THEN the probe's detector names it
    out = subprocess.run(
        [sys.executable, "-c", "import pandas, rentlake.runtime.lightcheck as l; print(l.heavy_modules())"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "pandas" in out.stdout


def _py313() -> str | None:
    """The Python 3.13 interpreter with numpy + onnxruntime to check (bench/check_py313.sh sets it)."""
    candidates = [os.environ.get("RENTLAKE_PY313"), str(ROOT / ".venv-313" / "bin" / "python")]
    for cand in candidates:
        if cand and Path(cand).exists():
            probe = subprocess.run(
                [
                    cand,
                    "-c",
                    "import sys, numpy, onnxruntime, pydantic, boto3, "
                    "aws_lambda_powertools; print(sys.version_info[:2] == (3, 13))",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if probe.stdout.strip() == "True":
                return cand
    return None


@pytest.mark.skipif(
    _py313() is None, reason="no .venv-313 with the predict requirements (bash bench/check_py313.sh)"
)
def test_light_path_on_python313(seeded: str) -> None:
    # GIVEN the Lambda runtime's Python with only functions/predict/requirements.txt (+ boto3)
    from rentlake.runtime.testing import expected_rent

    python = _py313()
    assert python is not None
    # WHEN it serves one estimate in a fresh process
    result = run_probe(python, seeded)
    # THEN it runs on 3.13, answers right, imports nothing heavy
    assert result["python"] == "3.13"
    assert result["status"] == 200
    assert result["body"]["rent_eur"] == round(expected_rent(30, factor=1.3))
    assert result["heavy"] == []
