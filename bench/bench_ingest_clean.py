"""Benchmark: ingest + clean of N synthetic listings, three ways, beside the pyarrow floor, in one run.

For each size, in this order, each step in a fresh process whose peak RSS is its own (``ru_maxrss``):

* **floor**: what pyarrow alone takes to read the CSV, filter it (rents that are numbers within the
  contract's range) and write Parquet: no contract, no lineage, no quarantine, no commit. The process
  is timed from outside (start included), and the read-filter-write from inside.
* **CLI**: ``rentlake --lake-dir D ingest FILE`` then ``rentlake --lake-dir D clean`` on a new local lake,
  each command a subprocess timed from outside (interpreter start and imports included).
* **handlers**: the real ingest and clean handlers (``functions/ingest``, ``functions/clean``), S3 event
  in, both handlers in one process (a warm container after its cold start: imports and the clients made
  at cold start not timed), twice: on a local folder lake (the handlers' own work), and against a moto
  S3 + Glue server in another process (S3 is remote to a Lambda function, but moto's Python server
  shares this machine's cores: its CPU seconds are reported beside the handlers').

Every run checks that every row ended clean or quarantined (clean + quarantined == rows).

Usage::

    .venv/bin/python bench/bench_ingest_clean.py --rows 1000000 4000000 [--record]
    git archive c94723f | tar -x -C /tmp/before   # the same commands with an older commit's code, too:
    .venv/bin/python bench/bench_ingest_clean.py --rows 1000000 --before /tmp/before --before-commit c94723f

Target (2-core machine): ingest + clean of 4 M rows at >= 1 M rows/s end to end (process start included),
peak RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from moto_lake import lake_environment

ROOT = Path(__file__).resolve().parents[1]
BEFORE = (
    "Before (this section on 2026-11-30, same generator): through the handlers on moto, 1 M rows 1.44 s "
    "ingest + 5.56 s clean = 7.01 s (142,737 rows/s, 729 MB), 4 M rows 4.23 + 21.27 = 25.5 s (156,849 "
    "rows/s, 873 MB); `rentlake clean` alone on a local lake (bench_scale's generator, 'Clean and ingest "
    "memory per batch row', 2026-12-02): 9.84 s / 479 MB at 1 M rows, 36.79 s / 699 MB at 4 M."
)


def synthetic_csv(n: int, seed: int = 0) -> bytes:
    """Listings like the course's: rent ~ 30 €/m² with log-normal noise, 20 districts, dates, 1 % junk."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    surface = np.round(rng.lognormal(np.log(50), 0.5, n).clip(9, 400), 1)
    district = rng.integers(1, 21, n)
    rent = np.round(surface * 30 * np.exp(rng.normal(0, 0.2, n)) * (1 + (20 - district) / 40), 2)
    df = pd.DataFrame(
        {
            "loyer": rent.astype(str),
            "surface": surface.astype(str),
            "arrondissement": district.astype(str),
            "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        }
    )
    junk = rng.random(n) < 0.01
    df.loc[junk, "loyer"] = "n/a"
    return df.to_csv(index=False).encode()


# ------------------------------------------------------------------------------------ children
def child_generate(n: int, path: str) -> dict[str, Any]:
    """Write the CSV of n listings to ``path`` (in a process of its own: not measured)."""
    data = synthetic_csv(n)
    Path(path).write_bytes(data)
    return {"bytes": len(data)}


def child_floor(path: str, out: str) -> dict[str, Any]:
    """pyarrow alone: read the CSV, keep the rents that are numbers in range, write Parquet."""
    t0 = time.perf_counter()
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    t1 = time.perf_counter()
    table = csv.read_csv(path, convert_options=csv.ConvertOptions(null_values=["n/a", ""]))
    rent = table.column("loyer").cast(pa.float64())
    kept = table.filter(pc.and_(pc.greater_equal(rent, 50.0), pc.less_equal(rent, 100_000.0)))
    pq.write_table(kept, out, compression="snappy")
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "work_s": t2 - t1, "rows_out": kept.num_rows}


def child_handlers(
    n: int, endpoint: str | None, event: dict[str, Any], lake: str | None = None
) -> dict[str, Any]:
    """Ingest + clean n landed rows through the handlers in this fresh process (on the moto server at
    ``endpoint``, or on the local lake ``lake``)."""
    import resource

    if lake is not None:
        _local_env(lake)
    else:
        _env(n, str(endpoint))
    sys.path.insert(0, str(ROOT))
    from tests.support import FakeContext, load_function

    ingest, clean = load_function("ingest"), load_function("clean")
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = ingest.handler(event, FakeContext())
    t1 = time.perf_counter()
    cleaned = clean.handler({}, FakeContext())
    t2 = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_SELF)
    rows = cleaned["rows"]
    return {
        "ingest_s": t1 - t0,
        "clean_s": t2 - t1,
        "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "rss_mb": after.ru_maxrss / 1024,
        "in": rows["in"],
        "ingested": out["rows"]["ingested"],
        "clean": rows["clean"],
        "quarantined": rows["quarantined"],
    }


def _env(n: int, endpoint: str) -> None:
    os.environ.clear()
    os.environ.update(lake_environment(f"s3://bench-{n}", f"bench_{n}", endpoint))


def _local_env(lake: str) -> None:
    os.environ.clear()
    os.environ.update(lake_environment(lake, "bench_local"))


def child_land_local(lake: str, path: str) -> dict[str, Any]:
    """Put the CSV under landing/ of a new local lake; returns the S3-style event (not measured)."""
    from rentlake.cli.stages import s3_put_event
    from rentlake.lake import open_lake

    data = Path(path).read_bytes()
    etag = open_lake(lake).put_bytes("landing/bench.csv", data)
    return s3_put_event("local", "landing/bench.csv", etag=etag, size=len(data))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_land(n: int, endpoint: str, path: str) -> dict[str, Any]:
    """Upload the CSV to landing/ of a new bucket; returns the S3 event (not measured)."""
    import boto3
    from rentlake.cli.stages import s3_put_event

    _env(n, endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=f"bench-{n}", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    data = Path(path).read_bytes()
    etag = s3.put_object(Bucket=f"bench-{n}", Key="landing/bench.csv", Body=data)["ETag"].strip('"')
    return s3_put_event(f"bench-{n}", "landing/bench.csv", etag=etag, size=len(data))


# ------------------------------------------------------------------------------------ the parent
# The parent stays lean (no pandas, no pyarrow): Linux carries a parent's peak RSS over to the children
# it forks (ru_maxrss survives fork + exec), so a heavy parent would inflate every figure.
def run(
    command: list[str], stdin: str = "", env: dict[str, str] | None = None
) -> tuple[dict[str, float], str]:
    """Run a command; its wall seconds, CPU seconds and peak RSS (the kernel's, from wait4), its output."""
    with (
        tempfile.TemporaryFile("w+") as inp,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        inp.write(stdin)
        inp.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdin=inp, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{err.read()[-3000:]}")
        measured = {
            "wall_s": seconds,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
        }
        return measured, out.read()


def run_child(args: list[str], stdin: str = "") -> dict[str, Any]:
    """This script as a child: its measures, and its JSON answer (the last line it prints)."""
    measured, out = run([sys.executable, __file__, *args], stdin)
    return {"process": measured, **json.loads(out.strip().splitlines()[-1])}


def cli(n: int, csv_path: Path, lake: Path, tree: Path | None = None) -> dict[str, Any]:
    """``rentlake ingest`` then ``rentlake clean`` on a new local lake (with the code of ``tree``, another
    checkout, when given: the same commands before a change)."""
    env = None
    functions = []
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": str(tree / "layers" / "rentlake")}
        functions = ["--functions-dir", str(tree / "functions")]
    common = [sys.executable, "-m", "rentlake.cli.main", "-q", *functions, "--lake-dir", str(lake)]
    ingest, _ = run([*common, "ingest", "--json", str(csv_path)], env=env)
    clean, out = run([*common, "clean", "--json"], env=env)
    rows = json.loads(out)["rows"]
    _check_rows(n, rows, "rentlake clean")
    shutil.rmtree(lake, ignore_errors=True)
    return {"ingest": ingest, "clean": clean, "rows": rows}


def measure(
    n: int, work: Path, endpoint: str, server_pid: int, before_tree: Path | None = None
) -> dict[str, Any]:
    """The floor, the CLI and the handlers for n rows (the same CSV); the CLI of ``before_tree`` too."""
    csv_path = work / f"listings-{n}.csv"
    run_child(["--generate", str(n), "--path", str(csv_path)])
    result: dict[str, Any] = {"rows": n}
    result["floor"] = run_child(["--floor", str(csv_path), "--path", str(work / "floor.parquet")])

    result["cli"] = cli(n, csv_path, work / f"lake-{n}")
    if before_tree is not None:
        result["before"] = cli(n, csv_path, work / f"lake-before-{n}", before_tree)

    lake = str(work / f"lake-handlers-{n}")
    event = run_child(["--land-local", lake, "--path", str(csv_path)])["event"]
    local = run_child(["--handlers", str(n), "--lake", lake], json.dumps(event))
    _check_rows(n, local, "handlers, local lake")
    result["handlers_local"] = local
    shutil.rmtree(lake, ignore_errors=True)

    event = run_child(["--land", str(n), "--endpoint", endpoint, "--path", str(csv_path)])["event"]
    server_cpu = cpu_seconds(server_pid)
    handlers = run_child(["--handlers", str(n), "--endpoint", endpoint], json.dumps(event))
    handlers["server_cpu_s"] = cpu_seconds(server_pid) - server_cpu
    _check_rows(n, handlers, "handlers")
    result["handlers"] = handlers
    csv_path.unlink()
    return result


def _check_rows(n: int, rows: dict[str, Any], path: str) -> None:
    if not (rows["in"] == n == rows["clean"] + rows["quarantined"]):
        raise RuntimeError(f"{path}: {n} rows but {rows}")


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (one line per size and path)."""
    lines = [
        "| rows | path | ingest s | clean s | total s | rows/s | CPU s | peak RSS MB | x floor | clean "
        "| quarantined |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, floor = r["rows"], r["floor"]
        base = floor["process"]["wall_s"]
        lines.append(
            f"| {n:,} | pyarrow floor (read, filter, write: {floor['work_s']:.2f} s in process) | | | "
            f"{base:.2f} | {n / base:,.0f} | {floor['process']['cpu_s']:.2f} | "
            f"{floor['process']['rss_mb']:.0f} | 1.0 | {floor['rows_out']:,} | |"
        )
        for key, path in (
            ("before", "before: the same commands"),
            ("cli", "`rentlake ingest` + `rentlake clean`"),
        ):
            if key not in r:
                continue
            cli = r[key]
            total = cli["ingest"]["wall_s"] + cli["clean"]["wall_s"]
            cpu = cli["ingest"]["cpu_s"] + cli["clean"]["cpu_s"]
            lines.append(
                f"| {n:,} | {path}, local lake | {cli['ingest']['wall_s']:.2f} | "
                f"{cli['clean']['wall_s']:.2f} | {total:.2f} | {n / total:,.0f} | {cpu:.2f} | "
                f"{cli['ingest']['rss_mb']:.0f} / {cli['clean']['rss_mb']:.0f} | {total / base:.1f} | "
                f"{cli['rows']['clean']:,} | {cli['rows']['quarantined']:,} |"
            )
        for key, path in (("handlers_local", "handlers, local lake"), ("handlers", "handlers, moto S3")):
            if key not in r:
                continue
            h = r[key]
            total = h["ingest_s"] + h["clean_s"]
            cpu = f"{h['cpu_s']:.2f}" + (f" + {h['server_cpu_s']:.2f} moto" if "server_cpu_s" in h else "")
            lines.append(
                f"| {n:,} | {path} | {h['ingest_s']:.2f} | {h['clean_s']:.2f} | {total:.2f} | "
                f"{n / total:,.0f} | {cpu} | {h['rss_mb']:.0f} | {total / base:.1f} | "
                f"{h['clean']:,} | {h['quarantined']:,} |"
            )
    return "\n".join(lines)


NOTES = """\
Each step in a fresh process (peak RSS: the kernel's ru_maxrss of that process; CPU: its user + system
seconds). Floor: pyarrow alone reads the CSV, keeps the rents that are numbers within 50-100,000 and writes
Parquet (no contract, lineage, quarantine or commit), timed from outside the process like the commands.
CLI: each command a subprocess timed from outside, interpreter start and imports included (ingest / clean
RSS). Handlers: the real ingest and clean handlers, S3 event in, in one process (timed from inside: a warm
container after its cold start), on a local folder lake, then against a moto S3 + Glue server in another
process, whose CPU seconds during the handlers are given after the handlers' own ('+ N moto'): the two
share this machine's two cores, where a Lambda function's S3 runs on AWS's machines. x floor: total
seconds over the floor's process seconds, measured in the same run. Synthetic CSV like the course's (rent
~ 30 €/m², log-normal noise, 20 arrondissements, dates), 1 % of rents written 'n/a': those are the
quarantined rows, with the outliers the generator makes; every run checks clean + quarantined == rows.
This 2-core machine is shared: wall seconds vary with its load, CPU seconds less."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    ap.add_argument(
        "--before",
        type=Path,
        help="another checkout (git worktree or archive of an older commit): its CLI is measured too",
    )
    ap.add_argument("--before-commit", help="the commit --before holds (named in the results)")
    ap.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--floor", help=argparse.SUPPRESS)
    ap.add_argument("--land", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--handlers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--land-local", help=argparse.SUPPRESS)
    ap.add_argument("--lake", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        print(json.dumps(child_generate(args.generate, args.path)))
        return 0
    if args.floor:
        print(json.dumps(child_floor(args.floor, args.path)))
        return 0
    if args.land:
        print(json.dumps({"event": child_land(args.land, args.endpoint, args.path)}))
        return 0
    if args.land_local:
        print(json.dumps({"event": child_land_local(args.land_local, args.path)}))
        return 0
    if args.handlers:
        event = json.loads(sys.stdin.read())
        print(json.dumps(child_handlers(args.handlers, args.endpoint, event, args.lake)))
        return 0
    from moto_lake import start_moto

    server, endpoint = start_moto(wait_s=2)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-clean-") as work:
            for n in args.rows:
                results.append(measure(n, Path(work), endpoint, server.pid, args.before))
                print(json.dumps(results[-1]), flush=True)
    finally:
        server.terminate()
        server.wait()
    before = (
        [f"Before: the code of {args.before_commit or args.before} (`--before`), same commands, same run."]
        if args.before
        else []
    )
    body = "\n".join([table(results), "", NOTES, "", *before, BEFORE])
    print(body)
    if args.record:
        from bench_results import record_section

        sizes = " ".join(str(n) for n in args.rows)
        before = f" --before {args.before}" if args.before else ""
        before += f" --before-commit {args.before_commit}" if args.before_commit else ""
        command = f".venv/bin/python bench/bench_ingest_clean.py --rows {sizes}{before} --record"
        record_section("Ingest + clean", command, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
