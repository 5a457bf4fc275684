"""Benchmark: ingest of one large CSV, end to end, each run in a fresh process (process start included).

Three ways in, each into an empty lake:

* ``cli``: ``rentlake --lake-dir D -q ingest FILE`` (upload to landing/, then the ingest handler), timed
  from the parent around the whole child process: interpreter start, imports, upload, ingest, exit;
* ``handler``: a fresh process imports ``functions/ingest/app.py`` and calls its handler on the S3 event of
  an object already in ``landing/`` (local folder lake); the time from process start and the handler's own;
* ``moto``: the same handler on an ``S3Lake`` served by a moto server (the object put there beforehand).

The CSV is bench_scale's generator (listings as people write them, ~25 bytes a row), written once per row
count under ``--cache``. CPU seconds are user + system of the child (``RUSAGE_CHILDREN``); peak RSS is the
child's own ``ru_maxrss``. The machine is shared: compare CPU seconds, and runs of the same session.

Usage::

    .venv/bin/python bench/bench_ingest_profile.py --rows 4000000 [--modes cli handler moto] [--repeat 3]
    .venv/bin/python bench/bench_ingest_profile.py --rows 4000000 --profile   # pyinstrument, handler mode
    git archive <commit> | tar -x -C /tmp/before    # then, before and after in one session:
    .venv/bin/python bench/bench_ingest_profile.py --rows 4000000 --baseline /tmp/before [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto_lake import lake_environment

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


def csv_file(rows: int, cache: Path) -> Path:
    """bench_scale's new batch of ``rows`` listings as the CSV people upload (built once per count, in a
    child: Linux carries a parent's peak RSS over to the children it starts, so a parent that built 4 M rows
    itself would report its own peak for every measured process)."""
    path = cache / f"ingest-{rows}.csv"
    if not path.exists():
        code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import bench_ingest_profile as b; "
        code += f"b.write_csv({rows}, {str(path)!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


def write_csv(rows: int, path: str) -> None:
    """Write bench_scale's new batch of ``rows`` listings as a CSV at ``path`` (in the child)."""
    from bench_scale import week

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame = week(0, datetime.now(UTC).date(), rows)
    frame = frame.rename(columns={"rent_eur": "loyer", "surface_m2": "surface", "district": "arrondissement"})
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(frame.to_csv(index=False).encode())
    tmp.replace(target)


def environment(lake: str, endpoint: str | None = None) -> dict[str, str]:
    return lake_environment(lake, "bench_ingest", endpoint)


def timed(cmd: list[str], env: dict[str, str], *, show_stderr: bool = False) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU seconds of the child, and its last stdout line (a JSON object)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {**env, "BENCH_SPAWNED_AT": repr(time.time())}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if show_stderr:
        print(proc.stderr, file=sys.stderr)
    out = {
        "seconds": round(wall, 2),
        "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
    }
    lines = proc.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        out["child"] = json.loads(lines[-1])
    return out


# ``rentlake`` as its console script runs it, then the process's peak RSS on stderr.
_CLI = (
    "import json, resource, sys\n"
    "from rentlake.cli.main import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(json.dumps({'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))\n"
    "sys.exit(rc)"
)


def run_cli(csv: Path, workdir: Path, tree: dict[str, str]) -> dict[str, Any]:
    lake = workdir / "cli-lake"
    cmd = [sys.executable, "-c", _CLI, "--lake-dir", str(lake), "-q", "ingest", str(csv)]
    res = timed(cmd, {**environment(str(lake)), **tree})
    shutil.rmtree(lake, ignore_errors=True)
    return res


def _land(lake: Any, csv: Path) -> dict[str, Any]:
    from rentlake.cli.stages import s3_put_event

    key = "landing/" + csv.name
    etag = lake.put_bytes(key, csv.read_bytes(), content_type="text/csv")
    return s3_put_event(lake.bucket, key, etag=etag, size=csv.stat().st_size)


def land(csv: Path, env: dict[str, str]) -> dict[str, Any]:
    """Put the CSV in the lake's landing/ (in a child: the parent stays small); returns the S3 event."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path\n"
        "from bench_ingest_profile import _land\nfrom rentlake import config\n"
        "lake = config.open_lake()\n"
        "if lake.address.startswith('s3://'):\n"
        "    import boto3\n"
        "    boto3.client('s3').create_bucket(Bucket=lake.bucket, "
        "CreateBucketConfiguration={'LocationConstraint': 'eu-west-3'})\n"
        f"print(json.dumps(_land(lake, Path({str(csv)!r}))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def handler_child(event_path: str, profile: bool) -> None:
    """In a fresh process: import the handler, call it; seconds since process start and of the call."""
    import resource as _resource
    import time as _time

    started = float(os.environ["BENCH_SPAWNED_AT"])
    sys.path.insert(0, os.environ.get("BENCH_TREE", str(ROOT)))  # its tests.support loads its functions/
    from tests.support import FakeContext, load_function

    event = json.loads(Path(event_path).read_text())
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    handler = load_function("ingest").handler
    t0 = _time.perf_counter()
    out = handler(event, FakeContext())
    call = _time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    (outcome,) = out["outcomes"]
    assert outcome["status"] == "ingested", outcome
    peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024
    since = _time.time() - started
    print(
        json.dumps(
            {"handler_s": round(call, 2), "since_spawn_s": round(since, 2), "peak_rss_mb": round(peak)}
        )
    )


def run_handler(
    csv: Path, workdir: Path, lake: str, endpoint: str | None, profile: bool, tree: dict[str, str]
) -> dict[str, Any]:
    env = {**environment(lake, endpoint), **tree}
    event = land(csv, env)
    event_path = workdir / "event.json"
    event_path.write_text(json.dumps(event))
    cmd = [sys.executable, __file__, "--handler-child", str(event_path)] + (["--profile"] if profile else [])
    return timed(cmd, env, show_stderr=profile)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(BENCH))
    from moto_lake import start_moto as start

    return start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--modes", nargs="+", default=["cli", "handler"], choices=["cli", "handler", "moto"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-ingest-profile")
    ap.add_argument("--profile", action="store_true", help="print a pyinstrument profile of the handler")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="also run the code of this tree (e.g. `git archive <commit> | tar -x -C DIR`), interleaved",
    )
    ap.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    ap.add_argument("--handler-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.handler_child:
        handler_child(args.handler_child, args.profile)
        return 0
    csv = csv_file(args.rows, args.cache)
    size_mb = csv.stat().st_size / 2**20
    print(f"{csv}: {args.rows:,} rows, {size_mb:.1f} MB", flush=True)
    trees = {"this tree": {}}
    if args.baseline:
        base = args.baseline.resolve()
        trees = {
            "baseline": {"PYTHONPATH": str(base / "layers" / "rentlake"), "BENCH_TREE": str(base)},
            **trees,
        }
    server, endpoint = start_moto() if "moto" in args.modes else (None, None)
    results: list[dict[str, Any]] = []
    try:
        for i in range(args.repeat):
            for mode in args.modes:
                for code, tree in trees.items():  # interleaved: a busy spell of the machine falls on both
                    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=args.cache) as tmp:
                        work = Path(tmp)
                        if mode == "cli":
                            res = run_cli(csv, work, tree)
                        elif mode == "handler":
                            res = run_handler(csv, work, str(work / "lake"), None, args.profile, tree)
                        else:
                            # A bucket and a Glue database of its own: a Glue table lives in one bucket.
                            run = {**tree, "RENTLAKE_GLUE_DATABASE": f"bench_ingest_{len(results)}"}
                            bucket = f"s3://bench-ingest-{i}-{len(results)}"
                            res = run_handler(csv, work, bucket, endpoint, args.profile, run)
                    results.append({"mode": mode, "code": code, "run": i, "rows": args.rows, **res})
                    print(json.dumps(results[-1]), flush=True)
    finally:
        if server is not None:
            server.terminate()
    body = table(results, size_mb, args.rows)
    print(body)
    if args.record:
        from bench_results import record_section

        command = f".venv/bin/python bench/bench_ingest_profile.py --rows {args.rows}"
        command += (
            f" --modes {' '.join(args.modes)} --repeat {args.repeat}"
            + (" --baseline DIR" if args.baseline else "")
            + " --record"
        )
        record_section("Ingest of one large CSV, end to end (bench/bench_ingest_profile.py)", command, body)
    return 0


MODES = {
    "cli": "`rentlake ingest FILE` (local lake): upload to landing/, then the ingest handler",
    "handler": "ingest handler, local lake (object already in landing/)",
    "moto": "ingest handler, S3 lake on a moto server",
}


def table(results: list[dict[str, Any]], size_mb: float, rows: int) -> str:
    """The runs as a Markdown table: wall and CPU seconds of the whole process, and its peak RSS."""
    lines = [
        f"One CSV of {rows:,} listings ({size_mb:.0f} MB, bench_scale's generator), each run a fresh process "
        "timed from its spawn to its exit (interpreter start and imports included).",
        "",
        "| way in | code | run | wall s | CPU s | handler s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        child = r.get("child", {})
        lines.append(
            f"| {MODES[r['mode']]} | {r['code']} | {r['run'] + 1} | {r['seconds']} | {r['cpu_seconds']} | "
            f"{child.get('handler_s', '')} | {child.get('peak_rss_mb', r.get('peak_rss_mb', ''))} |"
        )
    lines += [
        "",
        "CPU s: user + system of the process (the moto server's own work is not in it). handler s: the "
        "handler call alone. The machine (2 cores) is shared: wall seconds vary with its load, CPU seconds "
        "less.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
