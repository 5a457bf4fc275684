"""Benchmark: ingest + clean of N synthetic listings through the real handlers on moto.

Each size runs in a fresh process (so peak RSS is that run's own), against a moto S3 + Glue server in
another process (as S3 is remote to a Lambda function: the handler process holds only its own data).

Usage::

    .venv/bin/python bench/bench_ingest_clean.py --rows 1000000 4000000 [--record]

Targets (issue 2, this 2-core machine): >= 100 000 rows/s end to end, peak RSS < 1.5 GB at 1 M rows,
peak RSS at 4 M <= 1.3 x that at 1 M.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def _env(n: int, endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_REGION": "eu-west-3",
            "AWS_ENDPOINT_URL": endpoint,
            "RENTLAKE_BUCKET": f"bench-{n}",
            "RENTLAKE_GLUE_DATABASE": f"bench_{n}",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )


def land(n: int, endpoint: str) -> dict[str, object]:
    """Generate n listings and upload them to landing/ (in the parent: not part of the measure)."""
    import boto3
    from rentlake.cli.stages import s3_put_event

    _env(n, endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=f"bench-{n}", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    data = synthetic_csv(n)
    etag = s3.put_object(Bucket=f"bench-{n}", Key="landing/bench.csv", Body=data)["ETag"].strip('"')
    return s3_put_event(f"bench-{n}", "landing/bench.csv", etag=etag, size=len(data))


def one_run(n: int, endpoint: str, event: dict[str, object]) -> dict[str, object]:
    """Ingest + clean n landed rows in this fresh process; returns timings and peak RSS."""
    import resource

    _env(n, endpoint)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import FakeContext, load_function

    ingest, clean = load_function("ingest"), load_function("clean")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = ingest.handler(event, FakeContext())
    t1 = time.perf_counter()
    rss_after_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cleaned = clean.handler({}, FakeContext())
    t2 = time.perf_counter()
    rows = cleaned["rows"]
    assert rows["in"] == n == rows["clean"] + rows["quarantined"], rows
    return {
        "rows": n,
        "ingest_s": round(t1 - t0, 2),
        "clean_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "rows_per_s": round(n / (t2 - t0)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": round(rss_before),
        "peak_rss_after_ingest_mb": round(rss_after_ingest),
        "clean": rows["clean"],
        "quarantined": rows["quarantined"],
        "ingested": out["rows"]["ingested"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--land", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    args = ap.parse_args()
    if args.land:
        print(json.dumps(land(args.land, args.endpoint)))
        return 0
    if args.child:
        event = json.loads(sys.stdin.read())
        print(json.dumps(one_run(args.child, args.endpoint, event)))
        return 0
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from moto.server import ThreadedMotoServer as S; import time; "
            f"s=S('127.0.0.1',{port},verbose=False); s.start(); time.sleep(1e9)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        time.sleep(2)
        for n in args.rows:
            # Generation runs in its own process: Linux carries a parent's peak RSS over to its children
            # (ru_maxrss survives fork + exec), so the measuring process must come from a lean parent.
            landed = subprocess.run(
                [sys.executable, __file__, "--land", str(n), "--endpoint", f"http://127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                check=True,
            )
            event = json.loads(landed.stdout.strip().splitlines()[-1])
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--endpoint", f"http://127.0.0.1:{port}"],
                input=json.dumps(event),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]))
    finally:
        server.terminate()
    lines = [
        "| rows | ingest s | clean s | total s | rows/s | peak RSS MB | clean | quarantined |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['rows']:,} | {r['ingest_s']} | {r['clean_s']} | {r['total_s']} | {r['rows_per_s']:,} | "
        f"{r['peak_rss_mb']} | {r['clean']:,} | {r['quarantined']:,} |"
        for r in results
    ]
    slowest = min(r["rows_per_s"] for r in results)
    lines.append(
        f"\nTargets (2-core machine): >= 100,000 rows/s end to end (slowest here: {slowest:,}); "
        f"peak RSS < 1,500 MB at 1 M rows."
    )
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        lines.append(
            f"Peak RSS ratio {results[-1]['rows']:,} / {results[0]['rows']:,} rows: {ratio:.2f} "
            f"(target <= 1.3: chunks of RENTLAKE_CHUNK_ROWS = 250,000 rows)."
        )
    lines.append(
        "\nThrough the real handlers (`functions/ingest`, `functions/clean`, S3 event in), each size in a "
        "fresh "
        "process whose peak RSS is its own (ru_maxrss), against a moto S3 + Glue server in another process "
        "(S3 is remote to a Lambda function). Synthetic CSV like the course's (rent ~ 30 €/m², log-normal "
        "noise, 20 arrondissements, dates), 1 % of rents written 'n/a': those are the quarantined rows, with "
        "the duplicates and outliers the generator happens to make."
    )
    table = "\n".join(lines)
    print(table)
    if args.record:
        from bench_results import record_section

        sizes = " ".join(str(n) for n in args.rows)
        command = f".venv/bin/python bench/bench_ingest_clean.py --rows {sizes} --record"
        record_section("Ingest + clean (issue 2)", command, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
