"""The dependencies resolve to wheels for Lambda (python3.13, arm64 / manylinux_2_34_aarch64), and the
zip function fits in 250 MB unzipped with its layer. Downloads from PyPI: marked slow.

    .venv/bin/python -m pytest -m slow tests/infra/test_lambda_wheels.py -s   # prints the sizes
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

pytestmark = pytest.mark.slow

LIMIT = 250 * 1024 * 1024  # Lambda: function + layers, unzipped
PLATFORM = [
    "--platform",
    "manylinux_2_34_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--platform",
    "manylinux_2_17_aarch64",
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary",
    ":all:",
]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_predict_function_with_its_layer_fits_in_a_zip(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "function"
    reqs = ROOT / "functions" / "predict" / "requirements.txt"
    pip("download", *PLATFORM, "-d", str(wheels), "-r", str(reqs))
    assert all(w.name.endswith(("none-any.whl", "aarch64.whl")) for w in wheels.glob("*.whl")), sorted(
        w.name for w in wheels.glob("*.whl")
    )
    # --platform etc. again: the wheels are for cp313 aarch64, not for the interpreter running pip
    pip(
        "install",
        *PLATFORM,
        "--no-deps",
        "--no-index",
        "--target",
        str(target),
        *map(str, wheels.glob("*.whl")),
    )
    shutil.copy(ROOT / "functions" / "predict" / "app.py", target / "app.py")
    layer = tmp_path / "layer" / "python"
    shutil.copytree(
        ROOT / "layers" / "rentlake" / "rentlake",
        layer / "rentlake",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    function_size, layer_size = tree_size(target), tree_size(layer)
    total = function_size + layer_size
    print(
        f"\npredict: function {function_size / 2**20:.1f} MiB + rentlake layer {layer_size / 2**20:.1f} MiB "
        f"= {total / 2**20:.1f} MiB unzipped (limit 250 MB)"
    )
    assert total < LIMIT
    # numpy ships once: the layer carries no third-party package
    assert not [p for p in layer.iterdir() if p.name != "rentlake"]


@pytest.mark.parametrize("requirements", ["infra/image/requirements.txt", "functions/score/requirements.txt"])
def test_image_requirements_resolve_to_aarch64_wheels(requirements: str, tmp_path: Path) -> None:
    pip("download", *PLATFORM, "-d", str(tmp_path), "-r", str(ROOT / requirements))
    names = sorted(w.name for w in tmp_path.glob("*.whl"))
    assert names and all(n.endswith(("none-any.whl", "aarch64.whl")) for n in names), names
    size = sum((tmp_path / n).stat().st_size for n in names)
    print(f"\n{requirements}: {len(names)} wheels, {size / 2**20:.1f} MiB compressed")
