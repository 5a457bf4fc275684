"""One lake, two backends: the fixtures give the same tests a moto S3 lake and a local folder lake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(params=["s3", "s3-prefix", "local"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh, empty lake on each backend (S3 in moto, at the bucket's root or under a prefix)."""
    from rentlake.lake import open_lake

    if request.param == "local":
        return open_lake(tmp_path / "lake")
    request.getfixturevalue("bucket")  # moto bucket (its conditional writes atomic, as S3's)
    from tests.support import BUCKET

    address = f"s3://{BUCKET}" if request.param == "s3" else f"s3://{BUCKET}/team/lake"
    return open_lake(address, database="rentlake")


@pytest.fixture
def local_lake(tmp_path: Path) -> Any:
    """A local folder lake."""
    from rentlake.lake import open_lake

    return open_lake(tmp_path / "lake")
