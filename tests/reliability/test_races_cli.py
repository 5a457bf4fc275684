"""Races between real ``rentlake`` processes on one local lake, and pipelines killed half-way.

Each test ends with the same audit of the lake (:func:`audit`): every ingestion is there exactly once,
with the rows it read; every clean commit balances (rows in = clean + quarantined, and its files hold
those rows); each batch is committed once; the champion pointer names files that exist; and
``rentlake estimate`` answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, SAMPLES

RENTLAKE = [sys.executable, "-m", "rentlake.cli.main", "-q"]
COURSE = SAMPLES / "house_intact.csv"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENTLAKE_"))}
    return {**env, "POWERTOOLS_METRICS_DISABLED": "true", **extra}


def _ctrl_c_stops() -> None:
    # A test run started in the background by a script (`make test &`) ignores SIGINT, its children
    # inherit that, and Python then leaves Ctrl-C ignored: the processes here stop on it, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(lake: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """A ``rentlake`` process on ``lake``, running in the background (Ctrl-C, SIGINT, stops it)."""
    return subprocess.Popen(
        [*RENTLAKE, "--lake-dir", str(lake), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(**env),
        preexec_fn=_ctrl_c_stops if os.name == "posix" else None,  # noqa: PLW1509 - signal.signal only
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    """Wait for the process to end; one that does not end in ``timeout`` s is asked for its threads'
    stacks (``rentlake serve`` prints them on SIGUSR1), killed, and the test fails with them."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s; its stderr:\n{err[-8000:]}") from None
    return proc.returncode, out, err


def run(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``rentlake`` command to its end; it must succeed."""
    done = subprocess.run(
        [*RENTLAKE, "--lake-dir", str(lake), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=600,
    )
    assert done.returncode == 0, f"rentlake {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return done


def listings_file(folder: Path, seed: int, n: int = 2_000) -> Path:
    """A listings CSV of ``n`` synthetic rows, different for each seed (a distinct ingestion)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    surface = np.round(rng.lognormal(np.log(45), 0.45, n).clip(9, 250), 1)
    district = rng.integers(1, 21, n)
    rent = np.round(surface * 30 * np.exp(rng.normal(0, 0.2, n)), 2)
    lines = ["loyer,surface,arrondissement"]
    lines += [f"{r},{s},{d}" for r, s, d in zip(rent, surface, district, strict=True)]
    path = folder / f"listings_{seed}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------- the audit
def _parquet_rows(lake: Any, keys: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(lake.path(k)).metadata.num_rows for k in keys)


def audit(lake_dir: Path, *, sources: set[str]) -> dict[str, Any]:
    """Check the lake's invariants after a race; returns what it counted.

    Parameters
    ----------
    lake_dir
        The lake folder.
    sources
        Names of the listings files that were given to the pipelines (each must be ingested once).
    """
    from rentlake.lake import keys, open_lake
    from rentlake.records import IngestedBatch, ingestion_record_from_json

    run(lake_dir, "clean")  # what a killed or overtaken run left pending is cleaned now
    lake = open_lake(lake_dir)
    records = [
        ingestion_record_from_json(lake.get_json(k)) for k in lake.list_keys(keys.ingestion_records_prefix())
    ]
    listings = [r for r in records if isinstance(r, IngestedBatch) and r.dataset == "listings"]
    # every source ingested exactly once, its raw files holding the rows it read
    by_source = Counter(Path(r.source_key).name for r in listings)
    assert {s: by_source[s] for s in sources} == dict.fromkeys(sources, 1), by_source
    for rec in listings:
        assert _parquet_rows(lake, lake.committed_files(rec, "raw")) == rec.rows, rec.ingestion_id
    # every ingested batch committed to the clean zone exactly once, and each commit balances
    commits = lake.committed_batches("listings")
    per_batch = Counter(c.ingestion_id for c in commits)
    assert per_batch == Counter(r.ingestion_id for r in listings), per_batch
    rows_of = {r.ingestion_id: r.rows for r in listings}
    for c in commits:
        assert c.rows_in == c.rows_clean + c.rows_quarantined == rows_of[c.ingestion_id], c
        assert _parquet_rows(lake, lake.committed_files(c, "clean")) == c.rows_clean
        assert _parquet_rows(lake, lake.committed_files(c, "quarantine")) == c.rows_quarantined
    # the champion pointer names files that exist
    pointer = lake.get_json(keys.champion())
    for field in ("model_key", "card_key", "legal_key"):
        if pointer.get(field):
            assert lake.exists(pointer[field]), (field, pointer[field])
    # and the estimate answers from it
    answer = json.loads(run(lake_dir, "estimate", "--surface", "30", "--json").stdout)
    assert answer["rent_eur"] > 0 and answer["model_version"] == pointer["version"]
    return {"ingestions": len(listings), "commits": len(commits), "champion": pointer["version"]}


@pytest.fixture(scope="session")
def course_lake_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after one whole pipeline on the course file, built once per test process (never written)."""
    lake = tmp_path_factory.mktemp("course") / "lake"
    run(lake, "pipeline", str(COURSE))
    return lake


@pytest.fixture
def demo_lake(tmp_path: Path, course_lake_built: Path) -> Path:
    """A lake after one whole pipeline on the course file (a champion exists): a copy of the lake built once
    (a local lake is a folder whose keys are its relative paths)."""
    lake = tmp_path / "lake"
    shutil.copytree(course_lake_built, lake)
    return lake


# ------------------------------------------------------------------------------------------- the races
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served_version(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as resp:
            return json.loads(resp.read())["version"]
    except OSError:
        return None


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # an answer all the same
    except OSError:
        return False


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this system")
def test_serve_prints_its_threads_stacks_on_sigusr1(tmp_path: Path) -> None:
    # GIVEN `rentlake serve` answering on an empty lake
    port = _free_port()
    server = start(tmp_path / "lake", "serve", "--port", str(port))
    try:
        _wait_for(lambda: _answers(port), 60, "the server")
        # WHEN it gets SIGUSR1 (what a test does with a server that stops answering)
        server.send_signal(signal.SIGUSR1)
        time.sleep(1)
        answering = _answers(port)
    finally:
        server.send_signal(signal.SIGINT)
        code, _, err = finish(server, timeout=60)
    # THEN it printed where each of its threads is, the main one in its serving loop, and served on
    assert "serve_forever" in err and "thread 0x" in err
    assert answering and code == 0


@pytest.mark.slow
def test_serve_sees_a_promotion_by_another_process_and_does_not_undo_it(
    demo_lake: Path, tmp_path: Path
) -> None:
    from rentlake.lake import keys, open_lake

    lake = open_lake(demo_lake)
    first = lake.get_json(keys.champion())["version"]
    # GIVEN `rentlake serve` running on the lake, serving the champion (refreshed every second)
    port = _free_port()
    server = start(demo_lake, "serve", "--port", str(port), RENTLAKE_MODEL_REFRESH_SECONDS="1")
    try:
        assert _wait_for(lambda: _served_version(port), 60, "the server") == first
        # WHEN another process trains on new data and promotes the new version
        run(demo_lake, "pipeline", str(listings_file(tmp_path, seed=1)), "--force-train")
        newest = json.loads(run(demo_lake, "models", "list", "--json").stdout)[-1]["version"]
        if lake.get_json(keys.champion())["version"] != newest:
            run(demo_lake, "models", "promote", newest)
        # THEN the server answers with it at its next refresh
        _wait_for(lambda: _served_version(port) == newest, 30, f"the server to serve {newest}")
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        code, _, err = finish(server, timeout=60)
    assert code in (0, 130), err
    # AND stopping the server took nothing back: the promotion and its files are still in the lake
    assert lake.get_json(keys.champion())["version"] == newest
    audit(demo_lake, sources={COURSE.name, "listings_1.csv"})


@pytest.mark.slow
def test_two_pipelines_on_different_files_at_once(demo_lake: Path, tmp_path: Path) -> None:
    files = [listings_file(tmp_path, seed=s) for s in (2, 3)]
    procs = [start(demo_lake, "pipeline", str(f), "--json") for f in files]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    counted = audit(demo_lake, sources={COURSE.name, *(f.name for f in files)})
    assert counted["ingestions"] == 3


@pytest.mark.slow
def test_two_pipelines_on_the_same_file_at_once(demo_lake: Path, tmp_path: Path) -> None:
    same = listings_file(tmp_path, seed=4)
    procs = [start(demo_lake, "pipeline", str(same), "--json") for _ in range(2)]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    # THEN the file was ingested once: one run ingested its rows, the other found it done
    ingested = sorted(json.loads(out)["rows"]["ingested"] for _, out, _ in results)
    assert ingested[0] == 0 and ingested[1] > 0, ingested
    audit(demo_lake, sources={COURSE.name, same.name})


@pytest.mark.slow
def test_estimates_answer_while_a_pipeline_runs(demo_lake: Path, tmp_path: Path) -> None:
    pipeline = start(demo_lake, "pipeline", str(listings_file(tmp_path, seed=5)), "--force-train")
    answered = 0
    while pipeline.poll() is None:
        done = subprocess.run(
            [*RENTLAKE, "--lake-dir", str(demo_lake), "estimate", "--surface", "30", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=_env(),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["rent_eur"] > 0
        answered += 1
    code, _, err = finish(pipeline)
    assert code == 0, err[-3000:]
    assert answered >= 1
    audit(demo_lake, sources={COURSE.name, "listings_5.csv"})


def _count(lake_dir: Path, pattern: str) -> int:
    return sum(1 for _ in lake_dir.glob(pattern))


# Points at which a pipeline is killed: the moment the lake shows that it got there (polled every 5 ms).
KILL_POINTS = {
    "at_start": lambda lake, before: True,
    "raw_rows_written": lambda lake, before: _count(lake, "raw/listings/*/*/*.parquet") > before["raw"],
    "ingestion_recorded": lambda lake, before: _count(lake, "raw/_ingestions/*.json") > before["ledger"],
    "clean_rows_written": lambda lake, before: _count(lake, "clean/listings/*/*/*.parquet") > before["clean"],
    "clean_committed": lambda lake, before: (
        _count(lake, "clean/_batches/listings/*.json") > before["commits"]
    ),
    "training": lambda lake, before: _count(lake, "models/*/") > before["models"],
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_pipeline_killed_at_any_point_then_run_again(demo_lake: Path, tmp_path: Path, point: str) -> None:
    data = listings_file(tmp_path, seed=6, n=20_000)
    before = {
        "raw": _count(demo_lake, "raw/listings/*/*/*.parquet"),
        "ledger": _count(demo_lake, "raw/_ingestions/*.json"),
        "clean": _count(demo_lake, "clean/listings/*/*/*.parquet"),
        "commits": _count(demo_lake, "clean/_batches/listings/*.json"),
        "models": _count(demo_lake, "models/*/"),
    }
    # GIVEN a pipeline killed (SIGKILL: no cleanup of any kind) as soon as it reaches `point`
    victim = start(demo_lake, "pipeline", str(data), "--force-train")
    reached = KILL_POINTS[point]
    deadline = time.monotonic() + 300
    while not reached(demo_lake, before) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, f"the pipeline ended before {point}"
    victim.send_signal(signal.SIGKILL)
    finish(victim)
    # WHEN the same pipeline runs again (its training too), then clean and explore on their own, and train
    # again where the kill cut a training short
    run(demo_lake, "pipeline", str(data), "--force-train")
    for command in (["clean"], ["explore"], *([["train", "--force"]] if point == "training" else [])):
        run(demo_lake, *command)
    # THEN the lake is whole: the file ingested once, every batch committed once, the champion readable
    audit(demo_lake, sources={COURSE.name, data.name})
    # AND a temp file the kill may have left is no key, and is never read
    from rentlake.lake import open_lake

    lake = open_lake(demo_lake)
    assert not [k for k in lake.list_keys("") if Path(k).name.startswith(".")]


def test_a_zero_byte_temp_file_left_by_a_kill_breaks_nothing(demo_lake: Path) -> None:
    # GIVEN what a SIGKILL during a write left before: a 0-byte file in the clean commits' folder
    folder = next((demo_lake / "clean" / "_batches").iterdir())
    (folder / ".tmp-4242-deadbeef-0000000009.json").write_bytes(b"")
    # THEN clean, explore and train run, and the lake audits whole
    for command in (["clean"], ["explore"], ["train", "--force"]):
        run(demo_lake, *command)
    audit(demo_lake, sources={COURSE.name})
