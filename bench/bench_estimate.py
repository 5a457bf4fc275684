"""Benchmark: wall time of ``rentlake estimate --surface 30``, process start included, on a local lake.

Two lakes, built first (not measured): the demo lake (what ``make demo`` runs: the course listings and
the reference-rent tables, then train, gate, promote), and the same lake once its clean zone holds
``--rows`` more synthetic listings (ingested and cleaned by the ``rentlake`` command). The estimate is a
fresh ``rentlake`` process each time, as a user types it; the median of ``--repeat`` runs is reported.

Usage::

    .venv/bin/python bench/bench_estimate.py [--rows 3000000] [--repeat 7] [--workdir DIR]

Targets (this 2-core machine): < 1.5 s on the demo lake; the big lake within 1.2 x the demo lake.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
DEMO_FILES = [
    SAMPLES / "house_intact.csv",
    SAMPLES / "encadrement_loyers_paris_lille_2015_2017.csv",
    SAMPLES / "encadrement_loyers_paris_2025.csv",
]
ESTIMATE = ["estimate", "--surface", "30"]


def rentlake(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``rentlake`` command on ``lake`` (as the user would, from the repository)."""
    cmd = [sys.executable, "-m", "rentlake.cli.main", "-q", "--lake-dir", str(lake), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


def time_estimate(lake: Path, repeat: int) -> dict[str, float]:
    """Median, min and max wall time (s) of ``rentlake estimate --surface 30`` in a fresh process."""
    rentlake(lake, *ESTIMATE)  # warm the OS file cache, as a second command in a session would find it
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = rentlake(lake, *ESTIMATE, "--json")
        times.append(time.perf_counter() - t0)
        assert json.loads(out.stdout)["rent_eur"] > 0
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def clean_rows(lake: Path) -> int:
    """Rows in the lake's clean zone (what the estimate could have had to load before)."""
    sys.path.insert(0, str(ROOT / "layers" / "rentlake"))
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (lake / "clean" / "listings").rglob("*.parquet"))


def build(workdir: Path, rows: int) -> tuple[Path, Path]:
    """The demo lake, and a copy of it with ``rows`` more listings ingested and cleaned."""
    import shutil

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_ingest_clean import synthetic_csv

    demo = workdir / "demo"
    rentlake(demo, "pipeline", *map(str, DEMO_FILES))
    big = workdir / "big"
    shutil.copytree(demo, big)
    data = workdir / f"listings_{rows}.csv"
    data.write_bytes(synthetic_csv(rows, seed=1))
    rentlake(big, "ingest", str(data), "--dataset", "listings")
    rentlake(big, "clean")
    data.unlink()
    return demo, big


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3_000_000, help="listings added to the big lake")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where the lakes are built (default: a temp dir)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        demo, big = build(workdir, args.rows)
        print(f"lakes built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results = {}
        for name, lake in (("demo", demo), ("big", big)):
            results[name] = {"clean_rows": clean_rows(lake), **time_estimate(lake, args.repeat)}
    ratio = results["big"]["median_s"] / results["demo"]["median_s"]
    print("| lake | clean rows | median s | min s | max s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['clean_rows']:,} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} |")
    print(f"\nbig / demo = {ratio:.2f} (target <= 1.2); demo < 1.5 s: {results['demo']['median_s'] < 1.5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
