"""Benchmark: peak memory of ingesting one large object (CSV, JSON Lines, Parquet) into a local-folder lake.

Each format runs in a fresh process whose peak RSS (``ru_maxrss``) is its own: the object is generated in
another process and copied into the lake's ``landing/`` folder beforehand, so the measured process holds
only what the ingest stage holds (the object's bytes, read once, and its chunks).

Usage::

    .venv/bin/python bench/bench_ingest_memory.py --mb 200 [--formats csv jsonl parquet] [--record]

Target: peak RSS <= 2 x the object's size + 300 MB (CSV, JSON Lines and Parquet, up to the 512 MB limit of
one object), so that the ingest function (3 GB) can read any object it accepts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_MB = {"csv": 40_000, "csv-latin1": 16_000, "jsonl": 13_400, "parquet": 110_000}
_PIECE = 500_000


def _piece(n: int, seed: int, *, french: bool = False) -> object:
    """``n`` synthetic listings like the course's, as text (pandas frame); ``french``: the district written
    "11ème arrondissement" and a comment with accents, as a French spreadsheet export has them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    surface = np.round(rng.lognormal(np.log(50), 0.5, n).clip(9, 400), 1)
    days = pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    df = pd.DataFrame(
        {
            "loyer": np.round(surface * 30 * np.exp(rng.normal(0, 0.2, n)), 2).astype(str),
            "surface": surface.astype(str),
            "arrondissement": rng.integers(1, 21, n).astype(str),
            "date": (pd.Timestamp("2024-01-01") + days).astype(str),
        }
    )
    if french:
        df["loyer"] = df["loyer"].str.replace(".", ",", regex=False)
        df["surface"] = df["surface"].str.replace(".", ",", regex=False)
        df["arrondissement"] = df["arrondissement"] + "ème arrondissement"
        df["commentaire"] = np.where(rng.random(n) < 0.5, "très clair, étage élevé", "à rafraîchir")
    return df


def generate(fmt: str, mb: int, path: Path) -> None:
    """Write about ``mb`` MB of synthetic listings, piece by piece (the generator stays small too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = ROWS_PER_MB[fmt] * mb
    writer = None
    with path.open("wb") as fh:
        for i, start in enumerate(range(0, n, _PIECE)):
            df = _piece(min(_PIECE, n - start), i, french=fmt == "csv-latin1")
            if fmt == "csv":
                fh.write(df.to_csv(index=False, header=i == 0).encode())
            elif fmt == "csv-latin1":
                fh.write(df.to_csv(index=False, header=i == 0, sep=";").encode("latin-1"))
            elif fmt == "jsonl":
                fh.write(df.to_json(orient="records", lines=True, force_ascii=False).encode())
            else:
                table = pa.Table.from_pandas(df, preserve_index=False)
                writer = writer or pq.ParquetWriter(fh, table.schema)
                writer.write_table(table, row_group_size=1_000_000)
        if writer is not None:
            writer.close()


def measure(fmt: str, lake_dir: Path, name: str) -> dict[str, object]:
    """Ingest ``landing/<name>`` in this (fresh) process; peak RSS and time."""
    import resource

    from rentlake.lake import open_lake
    from rentlake.stages import ingest

    lake = open_lake(str(lake_dir))
    lake.ensure_database()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = ingest.ingest_object(lake, f"landing/{name}", progress=lambda _m: None)
    seconds = time.perf_counter() - t0
    size = (lake_dir / "landing" / name).stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "format": fmt,
        "size_mb": round(size / 2**20, 1),
        "rows": out.rows,
        "status": out.status,
        "seconds": round(seconds, 1),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(peak),
        "target_mb": round(2 * size / 2**20 + 300),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="object size in MB (default 200)")
    ap.add_argument("--formats", nargs="+", default=["csv", "jsonl"], choices=sorted(ROWS_PER_MB))
    ap.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    ap.add_argument("--child", nargs=3, metavar=("FORMAT", "LAKE", "NAME"), help=argparse.SUPPRESS)
    ap.add_argument("--generate", nargs=3, metavar=("FORMAT", "MB", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(args.generate[0], int(args.generate[1]), Path(args.generate[2]))
        return 0
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.child[2])))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-memory-") as tmp:
        for fmt in args.formats:
            lake = Path(tmp) / f"lake-{fmt}"
            (lake / "landing").mkdir(parents=True)
            name = f"listings.{fmt.split('-')[0]}"
            src = Path(tmp) / name
            # Generated in its own process: a parent's peak RSS carries over to its children.
            subprocess.run([sys.executable, __file__, "--generate", fmt, str(args.mb), str(src)], check=True)
            shutil.move(src, lake / "landing" / name)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", fmt, str(lake), name],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    lines = [
        "| format | object MB | rows | status | seconds | RSS after imports MB | peak RSS MB | target MB |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['format']} | {r['size_mb']} | {r['rows']:,} | {r['status']} | {r['seconds']} | "
        f"{r['rss_before_mb']} | {r['peak_rss_mb']} | {r['target_mb']} |"
        for r in results
    ]
    met = all(r["peak_rss_mb"] <= r["target_mb"] for r in results)
    lines.append(
        f"\nTarget: peak RSS <= 2 x object size + 300 MB: {'met' if met else 'NOT met'}. The ingest stage "
        "alone (rentlake.stages.ingest.ingest_object) on a local-folder lake, one fresh process per "
        "format (ru_maxrss), the object generated elsewhere and copied into landing/. The object's bytes "
        "are read once and held (its content hash and its parse need them); CSV goes to pyarrow without a "
        "decoded copy, JSON is gathered column by column, each in chunks of RENTLAKE_CHUNK_ROWS = 250,000 "
        "rows."
    )
    table = "\n".join(lines)
    print(table)
    if args.record:
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_results import record_section

        formats = " ".join(args.formats)
        command = f".venv/bin/python bench/bench_ingest_memory.py --mb {args.mb} --formats {formats} --record"
        record_section("Ingest memory (one large object)", command, table)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
