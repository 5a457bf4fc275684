"""The whole pipeline run twice on the same input: the second run must change nothing in the lake."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.integration.test_cli_model import rentlake

pytestmark = pytest.mark.slow


# The embedded lake re-creates its Glue catalog in a fresh moto at every command start (CreateTime and
# CreationTime are read-only, moto stamps them anew): those two fields are the only ones allowed to move.
CATALOG_STAMPS = {"CreateTime", "CreationTime", "UpdateTime"}


def _without_stamps(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _without_stamps(v) for k, v in doc.items() if k not in CATALOG_STAMPS}
    if isinstance(doc, list):
        return [_without_stamps(v) for v in doc]
    return doc


def lake_digest(lake_dir: Path) -> dict[str, str]:
    """sha256 of every object of the embedded lake, and of the Glue catalog without the moto stamps.

    ``logs/`` (the CLI's own log files on this machine, appended by every run) is not part of the lake."""
    out = {}
    for path in sorted(p for p in (lake_dir / "s3").rglob("*") if p.is_file()):
        out[str(path.relative_to(lake_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    catalog = json.dumps(_without_stamps(json.loads((lake_dir / "glue.json").read_text())), sort_keys=True)
    out["glue.json (without stamps)"] = hashlib.sha256(catalog.encode()).hexdigest()
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
    assert any(k.startswith("s3/rentlake-local/models/") for k in before)
    # WHEN it runs again on the very same files
    second = rentlake(lake_dir, "pipeline", *inputs, "--json")
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    # THEN nothing was ingested (same content = same ingestion id), training was skipped, nothing promoted
    assert out["rows"]["ingested"] == 0
    assert out["model"]["skipped"] is True and out["model"]["promoted"] is False
    # AND every object of the lake (landing, raw, ledger, clean, quarantine, reports, registry, pointer and
    # history) is byte-identical: no timestamp in the lake may move, because nothing was redone; the Glue
    # catalog is identical but for moto's creation stamps (see CATALOG_STAMPS)
    after = lake_digest(lake_dir)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed
