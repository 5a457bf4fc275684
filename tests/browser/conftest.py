"""Browser fixtures: the estimates API served on 127.0.0.1 (champion on moto) and headless Chromium.

Chromium and its driver come from Debian (``apt-get install -y chromium chromium-driver``), the driver
binding from PyPI (``selenium``). Without them the browser tests are skipped, saying what is missing
(on CI, where the Makefile installs them, they fail instead).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support import BUCKET, REGION, ROOT, applied_env, compile_legal_sample, fake_aws_env, serve

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",  # the page talks to 127.0.0.1 only
)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so --strict-markers accepts it even before pyproject.toml lists it.
    config.addinivalue_line("markers", "browser: drives headless Chromium against a local server")


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return (
                f"{path} is missing: apt-get install -y chromium chromium-driver (Debian package {package})"
            )
    if importlib.util.find_spec("selenium") is None:
        return "the selenium package is missing: pip install selenium (requirements/dev.txt)"
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``rentlake serve`` in a thread: predict handler, champion + legal table on moto; yields the URL."""
    reason = _missing()
    if reason:
        # On CI the project's Makefile installs Chromium (make system-deps): a skip there would hide a
        # broken install step, so it fails instead.
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run on CI: {reason}")
        pytest.skip(reason)
    with applied_env(fake_aws_env(bucket=BUCKET)), mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        from types import SimpleNamespace

        from rentlake.cli.cmd_estimate import predict_handler
        from rentlake.lake import Lake
        from rentlake.runtime.testing import (
            expected_rent,
            make_card,
            make_onnx_model,
            publish_champion,
            sample_surfaces,
        )

        lake = Lake(BUCKET, boto3_session=boto3.Session(region_name=REGION))
        surfaces = sample_surfaces(300, seed=3)
        # Training-like points scattered around the model's curve, for the plot.
        points = [
            [round(float(s), 1), round(expected_rent(float(s)) * (0.8 + 0.4 * ((i * 37) % 100) / 100))]
            for i, s in enumerate(surfaces)
        ]
        publish_champion(
            lake,
            "v1",
            make_onnx_model(),
            make_card("v1", plot_sample=points),
            legal=compile_legal_sample(),
        )
        ctx = SimpleNamespace(lake=lake, functions_dir=ROOT / "functions")
        try:
            with serve(predict_handler(ctx)) as (host, port):
                yield f"http://{host}:{port}"
        finally:
            from rentlake.legal import lookup

            lookup._CACHE.clear()  # the process-wide table cache: leave none to later tests


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    """A headless Chromium driven through chromedriver (both from Debian)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rentlake-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,900")
    options.add_argument("--lang=en-GB")
    # The console, where Chromium reports what a Content-Security-Policy blocked.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
