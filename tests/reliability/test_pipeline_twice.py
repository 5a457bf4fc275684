"""The whole pipeline run twice on the same input: the second run must change nothing in the lake."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.integration.test_cli_model import rentlake
from tests.support import SAMPLES

pytestmark = pytest.mark.slow


def lake_digest(lake_dir: Path) -> dict[str, str]:
    """sha256 of every object of the local lake (every file at ``<lake>/<key>``, its table catalog too).

    ``logs/`` (the CLI's own log files on this machine, appended by every run) is not part of the lake, nor
    are hidden files (the lock file)."""
    out = {}
    for path in sorted(p for p in lake_dir.rglob("*") if p.is_file()):
        key = path.relative_to(lake_dir)
        if key.parts[0] != "logs" and not any(part.startswith(".") for part in key.parts):
            out[key.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_pipeline_twice_on_the_same_input_leaves_the_lake_byte_identical(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    inputs = [
        str(SAMPLES / "house_intact.csv"),
        str(SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv"),
    ]
    # GIVEN the whole cycle run once on the course file and the reference rents
    first = rentlake(lake_dir, "pipeline", *inputs, "--json")
    assert first.returncode == 0, first.stderr
    before = lake_digest(lake_dir)
    assert any(k.startswith("models/") for k in before) and any(k.startswith("_catalog/") for k in before)
    # WHEN it runs again on the very same files
    second = rentlake(lake_dir, "pipeline", *inputs, "--json")
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    # THEN nothing was ingested (same content = same ingestion id), training was skipped, nothing promoted
    assert out["rows"]["ingested"] == 0
    assert out["model"]["skipped"] is True and out["model"]["promoted"] is False
    # AND every object of the lake (landing, raw, ledger, clean, quarantine, reports, registry, pointer and
    # history, table catalog) is byte-identical: no timestamp in the lake may move, because nothing was redone
    after = lake_digest(lake_dir)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed
