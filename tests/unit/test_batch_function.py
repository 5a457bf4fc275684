"""A batch function's container: one boto3 session, its clients and libraries made at cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

from tests.support import ROOT

LOAD = """
import json, sys
sys.path.insert(0, {root!r})
from tests.support import load_function
module = load_function({name!r})
found = {{"awswrangler": "awswrangler" in sys.modules, "session": module.FUNCTION.session is not None}}
print(json.dumps(found))
"""


def load_in_fresh_process(name: str, lake: str) -> dict[str, bool]:
    """Import ``functions/<name>/app.py`` in a new interpreter with the lake ``lake`` configured."""
    env = {
        **os.environ,
        "RENTLAKE_LAKE": lake,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    code = LOAD.format(root=str(ROOT), name=name)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_invocation_opens_its_lake_on_the_container_session(
    function: Callable[[str], ModuleType],
) -> None:
    # GIVEN the clean function of an S3 lake, loaded as at a cold start
    clean = function("clean")
    # WHEN two invocations open their lake
    first, second = clean.FUNCTION.lake(), clean.FUNCTION.lake()
    # THEN each has a lake of its own, on the one session of the container
    assert first is not second
    assert first.session is second.session is clean.FUNCTION.session is not None


def test_a_function_of_the_zone_tables_is_ready_at_cold_start_and_score_stays_light() -> None:
    # GIVEN an S3 lake; WHEN the clean and the score functions are loaded, each in a fresh process
    clean = load_in_fresh_process("clean", "s3://cold-start-bucket")
    score = load_in_fresh_process("score", "s3://cold-start-bucket")
    # THEN clean has made its session and imported the table library before any invocation
    assert clean == {"awswrangler": True, "session": True}
    # AND score has its session but not the table library (it reads and writes plain objects)
    assert score == {"awswrangler": False, "session": True}


def test_a_local_lake_needs_no_session(tmp_path: os.PathLike[str]) -> None:
    # GIVEN a lake in a folder; WHEN the clean function is loaded
    loaded = load_in_fresh_process("clean", str(tmp_path))
    # THEN no boto3 session is made, and nothing is imported for a catalog it does not have
    assert loaded == {"awswrangler": False, "session": False}
