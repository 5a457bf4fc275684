"""Benchmark of the legal reference rent lookup (rentlake.legal.lookup): what it adds to one estimate.

Not a test: prints the figures and replaces the "Legal reference lookup" section of ``bench/RESULTS.md``.

    .venv/bin/python bench/bench_legal.py [--no-write]

The artifact is compiled from the sample table (batch side, with pandas) in this process; the measures run
in a fresh interpreter that imports only the light module, as the prediction function does:

* artifact size; load time (sha256 check + JSON parse + index), median of 30 loads;
* memory the loaded table adds: RSS delta of the fresh process, and tracemalloc's count of the table;
* warm cost per call: ``lookup`` by quartier name and by code, ``attach`` with and without the fields.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "rentlake"))
RESULTS = ROOT / "bench" / "RESULTS.md"
SAMPLE = ROOT / "data" / "samples" / "encadrement_loyers_paris_lille_2015_2017.csv"
TITLE = "Legal reference lookup (bench/bench_legal.py)"
TARGET_US = 20.0

PROBE = r"""
import gc, hashlib, json, resource, statistics, sys, time, timeit, tracemalloc
from pathlib import Path

def rss_kib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024

path = Path(sys.argv[1])
from rentlake.legal import lookup as legal
data = path.read_bytes()
sha = hashlib.sha256(data).hexdigest()
gc.collect()
before = rss_kib()
t0 = time.perf_counter()
table = legal.load_table(data, sha256=sha)
first_ms = (time.perf_counter() - t0) * 1e3
rss_added = rss_kib() - before
loads = []
for _ in range(30):
    t0 = time.perf_counter()
    legal.load_table(data, sha256=sha)
    loads.append((time.perf_counter() - t0) * 1e3)
del data
gc.collect()
tracemalloc.start()
raw = path.read_bytes()
snap0 = tracemalloc.take_snapshot()
t2 = legal.load_table(raw, sha256=sha)
del raw
gc.collect()
traced = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap0, "filename")) / 1024
tracemalloc.stop()

name = dict(quartier="Saint-Germain-l'Auxerrois", rooms=2, built=1965, furnished=True, surface_m2=32.5,
            current_rent_eur=1200)
code = dict(quartier="7510101", rooms=2, built="1946-1970", furnished=False, surface_m2=32.5)
request = dict(name, city="paris")
bare = {"surface_m2": 30}

def per_call_us(fn, n=20000):
    fn()
    runs = timeit.repeat(fn, number=n, repeat=7)
    return statistics.median(runs) / n * 1e6

out = {
    "first_load_ms": first_ms,
    "load_ms_median": statistics.median(loads),
    "rss_added_kib": rss_added,
    "traced_kib": traced,
    "lookup_name_us": per_call_us(lambda: legal.lookup(table, **name)),
    "lookup_code_us": per_call_us(lambda: legal.lookup(table, **code)),
    "attach_full_us": per_call_us(lambda: legal.attach(table, request)),
    "attach_hint_us": per_call_us(lambda: legal.attach(table, bare)),
    "heavy": sorted(m for m in ("pandas", "numpy", "pyarrow") if m in sys.modules),
}
print(json.dumps(out))
"""


def compile_artifact() -> bytes:
    """The sample table typed by its contract (as the clean stage does) and compiled (batch side)."""
    from rentlake.legal.compile import compile_file

    return compile_file(SAMPLE.read_bytes(), SAMPLE.name)


def record(body: str, command: str) -> None:
    """Replace (or append) this benchmark's section of bench/RESULTS.md, keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = (
        f"## {TITLE}\n\nRun: `{command}` on {time.strftime('%Y-%m-%d')}, Python "
        f"{platform.python_version()}, {platform.machine()}.\n\n{body.strip()}\n"
    )
    pattern = re.compile(rf"^## {re.escape(TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    artifact = compile_artifact()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "legal.json"
        path.write_bytes(artifact)
        env = {"PYTHONPATH": str(ROOT / "layers" / "rentlake"), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=600,
        )
    m = json.loads(proc.stdout)
    worst = max(m["lookup_name_us"], m["lookup_code_us"], m["attach_full_us"])
    rows = [
        (
            "artifact size (compact JSON, Paris 2015-2017 + Lille 2017, 11 200 cells)",
            f"{len(artifact) / 1024:.0f} KiB",
            "< 1 MB",
            len(artifact) < 1_000_000,
        ),
        (
            "artifact load: sha256 + parse + index, first / median of 30",
            f"{m['first_load_ms']:.1f} / {m['load_ms_median']:.1f} ms",
            "",
            None,
        ),
        (
            "memory added by the loaded table: RSS delta / tracemalloc",
            f"{m['rss_added_kib'] / 1024:.1f} / {m['traced_kib'] / 1024:.1f} MiB",
            "",
            None,
        ),
        (
            "warm lookup by quartier name (+ rents, verdict)",
            f"{m['lookup_name_us']:.1f} µs",
            f"≤ {TARGET_US:g} µs",
            m["lookup_name_us"] <= TARGET_US,
        ),
        (
            "warm lookup by quartier code",
            f"{m['lookup_code_us']:.1f} µs",
            f"≤ {TARGET_US:g} µs",
            m["lookup_code_us"] <= TARGET_US,
        ),
        (
            "warm `attach` with the fields (what an estimate adds)",
            f"{m['attach_full_us']:.1f} µs",
            f"≤ {TARGET_US:g} µs",
            m["attach_full_us"] <= TARGET_US,
        ),
        ("warm `attach` without the fields (hint only)", f"{m['attach_hint_us']:.2f} µs", "", None),
        ("heavy modules imported by the light side", ", ".join(m["heavy"]) or "none", "none", not m["heavy"]),
    ]
    lines = ["| measure | value | target | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {'' if d is None else ('yes' if d else 'NO')} |" for a, b, c, d in rows]
    body = (
        "\n".join(lines) + "\n\nIn a fresh interpreter importing only `rentlake.legal.lookup` (standard "
        "library), artifact from a local file (the S3 read of the champion's `legal_key` is one more GET at "
        "load, cached by sha256 afterwards). Per call: median of 7 × 20 000 calls. "
        f"Worst warm cost {worst:.1f} µs per estimate."
    )
    print(body)
    if not args.no_write:
        record(body, ".venv/bin/python bench/bench_legal.py")


if __name__ == "__main__":
    main()
