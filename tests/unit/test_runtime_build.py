"""The predict function's SAM makefile build: Lambda wheels, then the unused parts deleted (size budget)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

PREDICT = ROOT / "functions" / "predict"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def make(*args: str) -> str:
    out = subprocess.run(
        ["make", "-C", str(PREDICT), *args], check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout


def test_build_target_installs_lambda_wheels_trims_and_copies_the_handler(tmp_path: Path) -> None:
    # GIVEN the target sam build runs WHEN dry-run with SAM's ARTIFACTS_DIR
    plan = make("-n", "build-PredictFunction", f"ARTIFACTS_DIR={tmp_path}")
    # THEN pip installs requirements.txt as python3.13 arm64 wheels into the artifacts folder
    pip = next(line for line in plan.splitlines() if " pip install " in line)
    for part in (
        "--only-binary=:all:",
        "--platform manylinux_2_28_aarch64",
        "--platform manylinux2014_aarch64",
        "--implementation cp",
        "--python-version 3.13",
        f'--target "{tmp_path}"',
        "-r requirements.txt",
    ):
        assert part in pip
    # AND the trim and the handler copy follow, in that order
    lines = plan.splitlines()
    trim = next(i for i, line in enumerate(lines) if "onnxruntime/quantization" in line)
    copy = next(i for i, line in enumerate(lines) if line.startswith("cp app.py"))
    assert lines.index(pip) < trim < copy
    assert f'"{tmp_path}/"' in lines[copy]


def test_trim_deletes_only_what_the_prediction_path_never_loads(tmp_path: Path) -> None:
    # GIVEN an installed tree with tooling, tests and caches beside the runtime modules
    files = [
        "bin/f2py",
        "onnxruntime/tools/convert.py",
        "onnxruntime/transformers/optimizer.py",
        "onnxruntime/quantization/quantize.py",
        "onnxruntime/capi/onnxruntime_pybind11_state.so",
        "numpy/_core/tests/test_a.py",
        "numpy/_core/multiarray.py",
        "numpy/testing/__init__.py",
        "pydantic/__pycache__/main.cpython-313.pyc",
        "pydantic/main.py",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    # WHEN trimmed
    make("-s", "trim", f"ARTIFACTS_DIR={tmp_path}")
    # THEN the runtime modules stay and the rest is gone
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "numpy/_core/multiarray.py",
        "numpy/testing/__init__.py",
        "onnxruntime/capi/onnxruntime_pybind11_state.so",
        "pydantic/main.py",
    ]
