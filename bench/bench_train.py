"""Benchmark: train + evaluate + ONNX export on N synthetic clean listings (issue 3).

The N rows are written as one committed batch of the clean zone of an in-process moto S3 (Parquet files
plus the commit marker, as the clean stage leaves them). Then, in one fresh process:

* ``read``: ``Lake.read_clean`` of the N rows, timed alone;
* ``train stage``: :func:`rentlake.stages.train.run`, what the train function runs: read the clean
  zone, fit the candidates (cross-validation on the capped subsample), select, export to ONNX, score the
  held-out rows, diagnostics, plots, card, and write the registry version (held-out rows as Parquet);
* ``export``: the ONNX export of the chosen model inside that run (``FittedCandidate.to_onnx`` timed);
* ``evaluate stage``: :func:`rentlake.stages.evaluate.judge`: read the version back, score it and a
  champion (trained beforehand on other data) on the same held-out rows, gate, ``evaluation.json``,
  pointer switch.

Peak RSS is the process's ``ru_maxrss`` after everything (data generation included).

Usage::

    .venv/bin/python bench/bench_train.py [--rows 1000000] [--record]

Targets (issue 3, 2-core machine): train + evaluate + export < 60 s and peak RSS < 2 GB at 1 M rows.

Training at scale (``--batches B``, with ``--rows`` in all): a local-folder lake
(:mod:`rentlake.lake.local`, or ``--backend moto``) of B committed clean batches (Parquet with
``row_hash``, numbered commits, as the clean stage leaves them) and a champion trained on other data
are built first; then the train stage (review of the B batches, the two-pass hash sample, fit, version)
runs in one fresh process and the evaluate stage in another, as the two functions do. Each reports wall
time, CPU time (user + sys) and peak RSS (``ru_maxrss``), compared with the functions' memory in
template.yaml. Usage::

    .venv/bin/python bench/bench_train.py --rows 20000000 --batches 40 [--lake DIR] [--record]
    .venv/bin/python bench/bench_train.py --rows 20000000 --batches 40 --backend moto [--record]

``--backend moto`` puts the lake in a bucket of a moto S3 server running in its own process (closer to
S3: every read is an HTTP GET; the server's memory is not the stages').

Targets: peak RSS within the train function's 6 144 MB and the evaluate function's 3 008 MB, train +
evaluate < 15 min.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rentlake.lake import Lake

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
TITLE = "Training, evaluation and ONNX export (bench/bench_train.py)"
SCALE_TITLE = "Training at scale: a lake of many batches, hash-sampled (bench/bench_train.py --batches)"
#: The functions' memory (template.yaml, MB): the peaks measured are compared with them.
TRAIN_MEMORY_MB, EVALUATE_MEMORY_MB = 6144, 3008
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def synthetic_clean(n: int, seed: int = 0) -> pd.DataFrame:
    """Clean listings as the clean zone types them: rent ≈ 30 €/m² × district factor, log-normal noise,
    20 Paris districts, listing dates over two years."""
    rng = np.random.default_rng(seed)
    surface = np.round(rng.lognormal(np.log(50), 0.5, n).clip(9, 400), 1)
    district = rng.integers(1, 21, n)
    rent = np.round(surface * 30 * np.exp(rng.normal(0, 0.2, n)) * (1 + (20 - district) / 40), 2)
    start = np.datetime64("2024-01-01T00:00:00")
    listed = start + rng.integers(0, 730 * 86400, n).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "rent_eur": rent,
            "surface_m2": surface,
            "district": pd.Series([f"750{d:02d}" for d in district], dtype="string"),
            "listed_at": pd.to_datetime(listed, utc=True),
        }
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def run(rows: int) -> dict[str, float | str | int]:
    """Time each step; returns the figures."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_REGION": "eu-west-3",
        }
    )
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(var, None)
    import boto3
    from moto import mock_aws
    from rentlake import registry
    from rentlake.events import TrainRequest
    from rentlake.lake import Lake, keys
    from rentlake.model.train import FittedCandidate, train
    from rentlake.stages import evaluate as evaluate_stage
    from rentlake.stages import train as train_stage

    exports: list[float] = []
    real_to_onnx = FittedCandidate.to_onnx

    def timed_to_onnx(self: FittedCandidate, doc: str = "") -> bytes:
        t = time.perf_counter()
        out = real_to_onnx(self, doc)
        exports.append(time.perf_counter() - t)
        return out

    FittedCandidate.to_onnx = timed_to_onnx  # type: ignore[method-assign]
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket="bench", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
        )
        lake = Lake("bench")
        # A champion trained on other data, so that evaluate scores two models on the same rows.
        small = train(synthetic_clean(20_000, seed=1), seed=1, trained_at=T0, make_files=False)
        registry.save_version(lake, small)
        registry.promote(lake, small.version, reason="bench champion")
        write_clean_batch(lake, synthetic_clean(rows))
        exports.clear()

        t = time.perf_counter()
        n_read = len(lake.read_clean("listings"))
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        trained = train_stage.run(lake, TrainRequest(), now=lambda: T0 + timedelta(hours=1))
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        evaluated = evaluate_stage.judge(lake, trained["version"])
        t_eval = time.perf_counter() - t
        onnx_bytes = lake.head(keys.model_file(trained["version"], "model.onnx"))["size"]
    return {
        "rows": n_read,
        "model": str(trained["model_name"]),
        "test_rows": int(trained["sizes"]["test"]),
        "cv_rows": int(trained["sizes"]["cv_subsample"]),
        "read_s": t_read,
        "train_s": t_train,
        "export_s": sum(exports),
        "evaluate_s": t_eval,
        "total_s": t_train + t_eval,
        "peak_rss_mib": peak_rss_mib(),
        "onnx_kib": onnx_bytes / 1024,
        "mae": float(evaluated["metrics"]["mae"]),
        "coverage": float(evaluated["metrics"]["coverage"]),
        "gate": str(evaluated["gate"]["decision"]),
    }


def write_clean_batch(lake: Lake, df: pd.DataFrame, part_rows: int = 250_000) -> None:
    """Put ``df`` in the clean zone as one committed batch: Parquet parts, then the commit marker."""
    import io

    from rentlake.lake import keys

    iid, day = "bench0000000000000000", "2030-01-01"
    prefix = keys.batch_prefix("clean", "listings", day, iid)
    for part, start in enumerate(range(0, len(df), part_rows)):
        buf = io.BytesIO()
        df.iloc[start : start + part_rows].to_parquet(buf, index=False)
        lake.put_bytes(f"{prefix}part-{part:05d}.parquet", buf.getvalue())
    lake.put_json(
        keys.clean_batch_record("listings", iid),
        {
            "dataset": "listings",
            "ingestion_id": iid,
            "ingest_date": day,
            "cleaned_at": T0.isoformat(),
            "source_key": "landing/bench.csv",
            "source_sha256": "0" * 64,
            "rows": {"in": len(df), "clean": len(df), "quarantined": 0},
        },
    )


def table(r: dict[str, float | str | int]) -> str:
    ok_time = "yes" if float(r["total_s"]) < 60 else "**no**"
    ok_rss = "yes" if float(r["peak_rss_mib"]) * 1.048576 < 2000 else "**no**"
    return "\n".join(
        [
            "| measure | value | target | met |",
            "| --- | --- | --- | --- |",
            f"| read the clean zone ({int(r['rows']):,} rows, Parquet from S3), timed alone | "
            f"{float(r['read_s']):.1f} s | | |",
            f"| train stage: read + fit (chose {r['model']}; CV and heavy fits on "
            f"{int(r['cv_rows']):,} rows) + "
            f"export + held-out scoring + plots + card + registry version ({int(r['test_rows']):,} held-out "
            f"rows as Parquet) | {float(r['train_s']):.1f} s | | |",
            f"| of which ONNX export of the chosen model | {float(r['export_s']) * 1000:.0f} ms "
            f"({float(r['onnx_kib']):.1f} KiB) | | |",
            f"| evaluate stage: challenger + champion scored on the same held-out rows, gate, pointer | "
            f"{float(r['evaluate_s']):.1f} s | | |",
            f"| **train + evaluate stages, wall** | **{float(r['total_s']):.1f} s** | < 60 s | {ok_time} |",
            f"| peak RSS of the process (data generation included) | {float(r['peak_rss_mib']):.0f} MiB "
            f"| < 2 GB | {ok_rss} |",
            f"| held-out MAE / 90 % coverage / gate | {float(r['mae']):.0f} € / {float(r['coverage']):.3f} / "
            f"{r['gate']} | | |",
        ]
    )


def record(command: str, body: str, *, title: str = TITLE, level: str = "##", backend: str = "") -> None:
    """Replace (or add) one section of RESULTS.md: ``title`` at ``level`` (``##``, or ``###`` inside the
    training section), up to the next heading of the same or a higher level; the rest is left as it is."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    where = backend or "one fresh process, S3 = moto in process"
    section = (
        f"{level} {title}\n\nRun: `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores ({platform.machine()}), "
        f"{where}.\n\n{body.strip()}\n"
    )
    # The training section ends at its first subsection; a subsection at the next heading.
    stop = r"^##+ |\Z"
    pattern = re.compile(rf"^{level} {re.escape(title)}\n.*?(?={stop})", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    elif level == "###":
        # A new subsection goes at the end of the training section.
        parent = re.compile(rf"^## {re.escape(TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = parent.sub(lambda m: m.group(0).rstrip() + "\n\n" + section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


# ----------------------------------------------------------------------------------- training at scale
def build_lake(folder: Path | str, rows: int, batches: int) -> dict[str, float]:
    """A local lake of ``batches`` committed clean batches of ``rows`` in all, and a promoted champion."""
    import io

    from rentlake import registry
    from rentlake.lake import keys, open_lake
    from rentlake.model.train import train

    t = time.perf_counter()
    lake = open_lake(folder)
    small = train(synthetic_clean(20_000, seed=10_001), seed=1, trained_at=T0, make_files=False)
    registry.save_version(lake, small)
    registry.promote(lake, small.version, reason="bench champion")
    per = -(-rows // batches)
    for b in range(batches):
        n = min(per, rows - b * per)
        df = synthetic_clean(n, seed=b)
        df["row_hash"] = pd.util.hash_pandas_object(df, index=False).to_numpy().view("int64")
        iid, day = f"bench{b:015d}", str((T0 + timedelta(days=b)).date())
        files = []
        for part, start in enumerate(range(0, n, 250_000)):
            key = keys.batch_prefix("clean", "listings", day, iid) + f"part-{part:05d}.parquet"
            buf = io.BytesIO()
            df.iloc[start : start + 250_000].to_parquet(buf, index=False)
            lake.put_bytes(key, buf.getvalue())
            files.append(key)
        lake.create_json(
            keys.clean_commit("listings", b + 1),
            {
                "dataset": "listings",
                "ingestion_id": iid,
                "ingest_date": day,
                "seq": b + 1,
                "cleaned_at": (T0 + timedelta(days=b)).isoformat(),
                "source_key": f"landing/bench{b}.csv",
                "rows": {"in": n, "clean": n, "quarantined": 0},
                "clean_files": files,
                "quarantine_files": [],
            },
        )
    return {"build_s": time.perf_counter() - t}


def measure_stage(stage: str, folder: Path | str, version: str | None) -> dict[str, object]:
    """Run one stage in this (fresh) process; wall, CPU and peak RSS, and what the stage answered."""
    from rentlake.events import TrainRequest
    from rentlake.lake import open_lake
    from rentlake.stages import evaluate as evaluate_stage
    from rentlake.stages import train as train_stage

    lake = open_lake(folder)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    steps: list[tuple[str, float, float]] = []

    def progress(message: str) -> None:
        # The stage's progress lines mark its steps: when each began, and the peak RSS until then.
        steps.append((message.split(": ", 1)[1].split(" ")[0], time.perf_counter() - t, peak_rss_mib()))

    if stage == "train":
        out = train_stage.run(lake, TrainRequest(), now=lambda: T0 + timedelta(days=400), progress=progress)
        answer = {k: out.get(k) for k in ("version", "model_name", "sizes", "sampling", "trained")}
        answer["steps"] = steps
    else:
        out = evaluate_stage.judge(lake, str(version))
        answer = {
            "mae": float(out["metrics"]["mae"]),
            "coverage": float(out["metrics"]["coverage"]),
            "n": int(out["metrics"]["n"]),
            "gate": out["gate"]["decision"],
        }
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak_rss_mib(), **answer}


def fresh_process(stage: str, folder: Path | str, version: str | None = None) -> dict[str, object]:
    """:func:`measure_stage` in a new Python process (its peak RSS is the stage's alone)."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--measure", stage, "--lake", str(folder)]
    if version:
        cmd += ["--version", version]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_build(folder: Path | str, rows: int, batches: int) -> dict[str, float]:
    """:func:`build_lake` in a new Python process (this one stays small: see :func:`run_scale`)."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--build", "--rows", str(rows), "--batches", str(batches)]
    done = subprocess.run(cmd + ["--lake", str(folder)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_scale(rows: int, batches: int, folder: Path, backend: str = "local") -> dict[str, object]:
    """Build the lake (a local folder, or a bucket of a moto S3 server in another process), then train and
    evaluate in two fresh processes."""
    import shutil

    server = None
    address: Path | str
    if backend == "moto":
        from moto_lake import moto_lake

        server, address = moto_lake("bench-train")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        address = folder
    try:
        # Built in a process of its own: Linux carries a process's peak RSS over fork and exec, so a
        # measuring process started by a parent that built the lake would report the parent's peak.
        built = fresh_build(address, rows, batches)
        trained = fresh_process("train", address)
        evaluated = fresh_process("evaluate", address, str(trained["version"]))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    return {
        "rows": rows,
        "batches": batches,
        "backend": backend,
        **built,
        "train": trained,
        "evaluate": evaluated,
    }


def scale_table(r: dict[str, object]) -> str:
    tr, ev = r["train"], r["evaluate"]
    assert isinstance(tr, dict) and isinstance(ev, dict)
    t, h = tr["sampling"]["train"], tr["sampling"]["heldout"]
    wall = float(tr["wall_s"]) + float(ev["wall_s"])
    tr_mb, ev_mb = float(tr["peak_rss_mib"]) * 1.048576, float(ev["peak_rss_mib"]) * 1.048576
    yes = {True: "yes", False: "**no**"}
    where = "moto S3 server" if r["backend"] == "moto" else "local folder"
    at = {name: float(sec) for name, sec, _ in tr["steps"]}
    rss = {name: float(mib) for name, _, mib in tr["steps"]}
    review, sample = at["sampling"], at["fitting"] - at["sampling"]
    fit, write = at["writing"] - at["fitting"], float(tr["wall_s"]) - at["writing"]
    return "\n".join(
        [
            "| measure | value | target | met |",
            "| --- | --- | --- | --- |",
            f"| lake: {int(r['rows']):,} clean rows in {r['batches']} committed batches ({where}), "
            f"built in | {float(r['build_s']):.0f} s | | |",
            f"| training sample: {t['sampled']:,} of {t['rows']:,} training rows (cap {t['max_rows']:,}, "
            f"floor {t['floor']:,} per district, base rate {t['base_rate']:.3f}) | | | |",
            f"| held-out sample: {h['sampled']:,} of {h['rows']:,} held-out rows (cap {h['max_rows']:,}) "
            "| | | |",
            f"| train stage (review of {r['batches']} batches against a history sample, two-pass hash "
            f"sample, fit: chose {tr['model_name']}, version) wall / CPU | {float(tr['wall_s']):.0f} s / "
            f"{float(tr['cpu_s']):.0f} s | | |",
            f"| of which: review {review:.0f} s (peak {rss['sampling']:.0f} MiB), hash sample (two passes) "
            f"{sample:.0f} s (peak {rss['fitting']:.0f} MiB), fit + export + held-out scoring {fit:.0f} s, "
            f"version written {write:.0f} s | | | |",
            f"| train stage peak RSS (fresh process) | {float(tr['peak_rss_mib']):.0f} MiB | "
            f"< {TRAIN_MEMORY_MB:,} MB | {yes[tr_mb < TRAIN_MEMORY_MB]} |",
            f"| evaluate stage (challenger + champion on {int(ev['n']):,} held-out rows, gate) wall / CPU | "
            f"{float(ev['wall_s']):.1f} s / {float(ev['cpu_s']):.1f} s | | |",
            f"| evaluate stage peak RSS (fresh process) | {float(ev['peak_rss_mib']):.0f} MiB | "
            f"< {EVALUATE_MEMORY_MB:,} MB | {yes[ev_mb < EVALUATE_MEMORY_MB]} |",
            f"| **train + evaluate, wall** | **{wall:.0f} s** | < 900 s | {yes[wall < 900]} |",
            f"| held-out MAE / 90 % coverage / gate | {float(ev['mae']):.0f} € / "
            f"{float(ev['coverage']):.3f} / {ev['gate']} | | |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=0, help="a lake of this many batches")
    parser.add_argument("--backend", choices=["local", "moto"], default="local", help="with --batches")
    parser.add_argument("--lake", default="/tmp/rentlake-bench-train", help="the local lake's folder")
    parser.add_argument("--measure", choices=["train", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.build:
        import json

        print(json.dumps(build_lake(args.lake, args.rows, args.batches)))
        return 0
    if args.measure:
        import json

        print(json.dumps(measure_stage(args.measure, args.lake, args.version), default=str))
        return 0
    if args.batches:
        figures = run_scale(args.rows, args.batches, Path(args.lake), args.backend)
        body = scale_table(figures)
        print(body)
        if args.record:
            cmd = f".venv/bin/python bench/bench_train.py --rows {args.rows} --batches {args.batches}"
            moto = args.backend == "moto"
            record(
                cmd + (" --backend moto" if moto else "") + " --record",
                body,
                title=SCALE_TITLE + (", moto S3 server" if moto else ""),
                level="###",
                backend=("lake = a moto S3 server in its own process" if moto else "lake = local folder")
                + ", each stage in its own fresh process",
            )
        return 0
    figures = run(args.rows)
    body = table(figures)
    print(body)
    if args.record:
        size = f" --rows {args.rows}" if args.rows != 1_000_000 else ""
        cmd = ".venv/bin/python bench/bench_train.py" + size
        record(cmd + " --record", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
