"""Benchmark: the explore stage on a lake of many batches, bounded by a hash sample (Explore at scale).

The lake is bench/bench_train.py's (:func:`bench_train.build_lake`: B committed clean batches of
synthetic listings with ``row_hash``, 20 districts, in a local folder), plus, for each batch, a quarantine
file of the rows cleaning would have quarantined as duplicates (``--duplicates``, a share of the batch's
rows copied as received: strings, reason ``duplicate``), listed by the batch's commit, since the report's
course line counts them. Then the explore stage (:func:`rentlake.stages.explore.run`, what the explore
function runs) runs in a fresh process per cap; each reports wall time, CPU time (user + sys) and peak RSS
(``ru_maxrss``), compared with the explore function's memory and timeout in template.yaml.

``--before`` also runs the stage as it was before the sample (commit 91ac8d4: ``Lake.read_clean`` of the
whole clean zone and every quarantine part) on the same lake, in its own fresh process: use it on a lake
that fits (a few million rows), to compare with the sampled stage in the same run.

Usage::

    .venv/bin/python bench/bench_explore.py --rows 20000000 --batches 40 [--caps 1000000,2000000] [--record]
    .venv/bin/python bench/bench_explore.py --rows 2000000 --batches 4 --caps 2000000,500000 --before
    .venv/bin/python bench/bench_explore.py --rows 20000000 --batches 40 --backend moto [--record]

``--backend moto`` puts the lake in a bucket of a moto S3 server running in its own process (closer to
S3: every file read is an HTTP GET; the server's memory is not the stage's).

Targets: peak RSS within the explore function's 3 008 MB, wall well under its 900 s timeout.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_train  # noqa: E402  (the lake builder and the RESULTS.md writer)

TITLE = "Explore at scale: a lake of many batches, hash-sampled (bench/bench_explore.py)"
#: The explore function's memory (MB) and timeout (s), template.yaml.
EXPLORE_MEMORY_MB, EXPLORE_TIMEOUT_S = 3008, 900
#: The explore stage before the sample, for --before.
BEFORE_COMMIT = "91ac8d4"


def add_duplicates(folder: Path | str, share: float) -> int:
    """Give every committed batch a quarantine file of ``share`` of its rows, as received, quarantined as
    duplicates (rewriting its commit to list the file); returns the rows added."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rentlake.lake import keys, open_lake

    lake = open_lake(folder)
    added = 0
    for commit in lake.committed_batches("listings"):
        first = lake.committed_files(commit, "clean")[0]
        table = pq.read_table(io.BytesIO(lake.get_bytes(first)), columns=bench_train_columns())
        n = int(commit.rows_clean * share)
        taken = table.slice(0, n).to_pandas()
        raw = {
            "rent_eur": taken["rent_eur"].map("{:g}".format),
            "surface_m2": taken["surface_m2"].map("{:g}".format),
            "district": taken["district"].astype(str),
            "listed_at": taken["listed_at"].dt.strftime("%Y-%m-%d"),
        }
        out = pa.table({**{k: pa.array(v.tolist(), pa.string()) for k, v in raw.items()}})
        out = out.append_column("reasons", pa.array(["duplicate"] * n, pa.string()))
        key = (
            keys.batch_prefix("quarantine", "listings", commit.ingest_date, commit.ingestion_id)
            + "part-00000.parquet"
        )
        buf = io.BytesIO()
        pq.write_table(out, buf)
        lake.put_bytes(key, buf.getvalue())
        seq = commit.seq
        record = lake.get_json(keys.clean_commit("listings", int(seq or 0)))
        record["quarantine_files"] = [key]
        record["rows"] = {"in": commit.rows_clean + n, "clean": commit.rows_clean, "quarantined": n}
        lake.put_json(keys.clean_commit("listings", int(seq or 0)), record)
        added += n
    return added


def bench_train_columns() -> list[str]:
    return ["rent_eur", "surface_m2", "district", "listed_at"]


def before_module() -> types.ModuleType:
    """The explore stage as of :data:`BEFORE_COMMIT` (read from git), as a module."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:layers/rentlake/rentlake/stages/explore.py"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    module = types.ModuleType("explore_before")
    module.__file__ = f"explore_before@{BEFORE_COMMIT}"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def measure(folder: str, max_rows: int | None, before: bool) -> dict[str, Any]:
    """The explore stage in this (fresh) process: wall, CPU, peak RSS, its steps and what it answered."""
    from rentlake.events import ExploreRequest
    from rentlake.lake import keys, open_lake
    from rentlake.stages import explore as explore_stage

    lake = open_lake(folder)
    stage = before_module() if before else explore_stage
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    steps: list[tuple[str, float, float]] = []

    def progress(message: str) -> None:
        # Each progress line marks a step: when it began, and the peak RSS until then.
        steps.append((message.split(": ", 1)[1].split(" ")[0], time.perf_counter() - t0, peak_rss_mib()))

    run_id = f"bench-{'before' if before else max_rows}"
    kwargs: dict[str, Any] = {} if before else {"max_rows": max_rows}
    out = stage.run(lake, ExploreRequest(run_id=run_id), progress=progress, **kwargs)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    summary = lake.get_json(keys.report_file(run_id, "summary.json"))
    return {
        "max_rows": max_rows,
        "before": before,
        "wall_s": wall,
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "peak_rss_mib": peak_rss_mib(),
        "vm_hwm_mib": hwm_mib(),
        "steps": steps,
        "rows": summary["rows"],
        "sampling": summary.get("sampling"),
        "lake": summary.get("lake"),
        "ols": {k: summary["ols"][k] for k in ("slope", "intercept", "n")},
        "hypotheses": out["hypotheses"],
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def hwm_mib() -> float:
    """The peak RSS of this process's own memory (VmHWM: unlike ru_maxrss, not inherited at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fresh_process(folder: Path | str, max_rows: int | None, before: bool = False) -> dict[str, Any]:
    """:func:`measure` in a new Python process (its peak RSS is the stage's alone)."""
    cmd = [sys.executable, __file__, "--measure", "--lake", str(folder)]
    cmd += ["--before"] if before else ["--caps", str(max_rows)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(
    rows: int, batches: int, built: dict[str, float], runs: list[dict[str, Any]], where: str = "local folder"
) -> str:
    yes = {True: "yes", False: "**no**"}
    lines = [
        "| explore stage | rows explored | wall / CPU | peak RSS | < 3 008 MB | course line (n, slope) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        s = r["sampling"]
        if r["before"]:
            what = f"before the sample ({BEFORE_COMMIT}: `read_clean`)"
            explored = f"all {int(r['rows']):,}"
        else:
            what = f"cap {int(r['max_rows']):,}"
            c, d = s["clean"], s["duplicates"]
            explored = f"{c['sampled']:,} of {c['rows']:,} (+ {d['sampled']:,} of {d['rows']:,} duplicates)"
        at = {name: (sec, mib) for name, sec, mib in r["steps"]}
        phases = ""
        if "analysing" in at and "drawing" in at:
            phases = (
                f" (read + sample {at['analysing'][0]:.0f} s, analyse "
                f"{at['drawing'][0] - at['analysing'][0]:.0f} s, figures + page "
                f"{float(r['wall_s']) - at['drawing'][0]:.0f} s)"
            )
        mb = float(r["peak_rss_mib"]) * 1.048576
        lines.append(
            f"| {what} | {explored} | {float(r['wall_s']):.0f} s / {float(r['cpu_s']):.0f} s{phases} | "
            f"{float(r['peak_rss_mib']):,.0f} MiB | {yes[mb < EXPLORE_MEMORY_MB]} | "
            f"{r['ols']['n']:,}, {r['ols']['slope']:.3f} |"
        )
    made = f", built in {built['build_s']:.0f} s" if built["build_s"] else ""
    head = (
        f"Lake: {rows:,} clean rows in {batches} committed batches ({where}) and "
        f"{int(built['duplicates']):,} rows quarantined as duplicates{made}. "
        f"Each line is one fresh process (timeout of the function: {EXPLORE_TIMEOUT_S} s).\n\n"
    )
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of rows quarantined as such")
    parser.add_argument("--caps", default="1000000", help="comma-separated caps, one fresh process each")
    parser.add_argument("--before", action="store_true", help="also the stage before the sample")
    parser.add_argument("--lake", default="/tmp/rentlake-bench-explore", help="the local lake's folder")
    parser.add_argument(
        "--backend", choices=["local", "moto"], default="local", help="moto: a moto S3 server's bucket"
    )
    parser.add_argument("--reuse", action="store_true", help="explore the lake already in --lake")
    parser.add_argument("--keep-lake", action="store_true", help="leave the lake in --lake afterwards")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args(argv)
    caps = [int(c) for c in args.caps.split(",") if c]
    if args.measure:
        print(json.dumps(measure(args.lake, None if args.before else caps[0], args.before), default=str))
        return 0
    folder: Path | str = Path(args.lake) if not args.lake.startswith("s3://") else args.lake
    if args.build:
        import shutil

        if isinstance(folder, Path):
            shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        bench_train.build_lake(folder, args.rows, args.batches)
        added = add_duplicates(folder, args.duplicates)
        print(json.dumps({"build_s": time.perf_counter() - t, "duplicates": added}))
        return 0
    server = None
    if args.backend == "moto":
        # The lake in a bucket of a moto S3 server (another process): every file read is an HTTP GET, and
        # the server's memory is not the stage's.
        from moto_lake import moto_lake

        server, folder = moto_lake("bench-explore")
        args.reuse = False
    try:
        return run_and_report(args, folder, caps)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


def run_and_report(args: argparse.Namespace, folder: Path | str, caps: list[int]) -> int:
    """Build the lake (unless reused) in its own process, explore it once per cap in fresh processes."""
    built = {"build_s": 0.0, "duplicates": 0.0}
    if not args.reuse:
        # In its own process: Linux carries a process's peak RSS over fork and exec, so the measuring
        # processes are started from this small one, not from the one that built the lake.
        cmd = [sys.executable, __file__, "--build", "--lake", str(folder), "--rows", str(args.rows)]
        cmd += ["--batches", str(args.batches), "--duplicates", str(args.duplicates)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        built = json.loads(done.stdout.strip().splitlines()[-1])
    runs = [fresh_process(folder, cap) for cap in caps]
    if args.before:
        runs.append(fresh_process(folder, None, before=True))
    for r in runs:
        print(json.dumps(r, default=str), file=sys.stderr)
    if args.reuse:
        built["duplicates"] = float(runs[0]["lake"]["duplicates_quarantined"])
    elif not args.keep_lake and isinstance(folder, Path):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    moto = args.backend == "moto"
    body = table(args.rows, args.batches, built, runs, "moto S3 server" if moto else "local folder")
    print(body)
    if args.record:
        cmd = (
            f".venv/bin/python bench/bench_explore.py --rows {args.rows} --batches {args.batches} "
            f"--caps {args.caps}" + (" --before" if args.before else "") + (" --backend moto" if moto else "")
        )
        where = "a moto S3 server in its own process" if moto else "local folder"
        bench_train.record(
            cmd + " --record",
            body,
            title=TITLE + (", moto S3 server" if moto else ""),
            level="##",
            backend=f"lake = {where}, one fresh process per run",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
