"""Benchmark of the prediction path (ONNX) against a joblib/scikit-learn baseline served by the same API.

Not a test: prints a table and replaces the "Prediction path" section of ``bench/RESULTS.md``.

    .venv/bin/python bench/bench_predict.py [--quick] [--skip-size]

Measures, with a moto S3 server on 127.0.0.1 holding both models:

* cold start: a fresh process imports the function by path and answers one request (model from S3);
* warm handler latency in process (API Gateway event in -> response out), 1 and 100 listings;
* peak RSS of the prediction process after its first response;
* batch scoring inference rows/s (I/O excluded);
* size of the prediction function's dependencies installed for Lambda (python3.13, arm64) + the layer.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "rentlake"))

from rentlake.lake import Lake  # noqa: E402
from rentlake.runtime.events import http_api_event  # noqa: E402
from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion, sample_surfaces  # noqa: E402

BUCKET = "rentlake-bench"
REGION = "eu-west-3"
PREDICT_APP = ROOT / "functions" / "predict" / "app.py"
BASELINE_APP = ROOT / "bench" / "baseline_sklearn.py"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Prediction path (bench/bench_predict.py)"

CHILD = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("app_under_bench", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
t_import = time.perf_counter()
from rentlake.runtime.events import http_api_event
resp = mod.handler(http_api_event("POST", "/estimates", '{"surface_m2": 30}',
                                  headers={"content-type": "application/json"}), None)
t1 = time.perf_counter()
assert resp["statusCode"] == 200, resp
# VmHWM: peak RSS of this image (ru_maxrss would carry the forking parent's peak across exec)
hwm_kib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"import_s": t_import - t0, "first_response_s": t1 - t0,
                  "maxrss_mb": hwm_kib / 1024}))
"""


def start_s3() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def seed(endpoint: str) -> Lake:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        RENTLAKE_BUCKET=BUCKET,
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    lake = Lake(BUCKET)
    publish_champion(lake, "bench-v1", make_onnx_model(), make_card("bench-v1"))
    sys.path.insert(0, str(ROOT / "bench"))
    import baseline_sklearn

    baseline_sklearn.train_and_upload(lake)
    return lake


def cold_start(app_path: Path, runs: int) -> dict[str, float]:
    """Median over ``runs`` fresh processes: wall time to first response, and peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "layers" / "rentlake"))
    walls, rss, inner = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(app_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"cold start of {app_path.name} failed:\n{out.stderr[-3000:]}")
        walls.append(time.perf_counter() - t0)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rss.append(res["maxrss_mb"])
        inner.append(res["first_response_s"])
    return {
        "wall_s": statistics.median(walls),
        "inner_s": statistics.median(inner),
        "rss_mb": statistics.median(rss),
    }


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses in the module look themselves up there
    spec.loader.exec_module(mod)
    return mod


def warm(handler: Any, n_listings: int, iterations: int) -> dict[str, float]:
    """p50/p99 in ms of handler(event) for a body of ``n_listings`` listings."""
    surfaces = sample_surfaces(n_listings, seed=n_listings)
    body = (
        {"surface_m2": float(round(surfaces[0], 1)), "current_rent_eur": 1200.0}
        if n_listings == 1
        else {"listings": [{"surface_m2": float(round(s, 1)), "current_rent_eur": 1200.0} for s in surfaces]}
    )
    event = http_api_event(
        "POST", "/estimates", json.dumps(body), headers={"content-type": "application/json"}
    )
    for _ in range(200):
        assert handler(event, None)["statusCode"] == 200
    times = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        handler(event, None)
        times[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}


def batch_throughput(lake: Lake, rows: int) -> dict[str, float]:
    """Rows/s of the ONNX inference alone and of score_table (parse + validate + infer), no I/O."""
    import pyarrow as pa
    from rentlake.runtime.model import load_champion
    from rentlake.scoring import score_table

    model = load_champion(lake)
    surfaces = sample_surfaces(rows).astype(np.float32)
    model.predict(surfaces[:1000])
    t0 = time.perf_counter()
    model.predict(surfaces)
    infer = time.perf_counter() - t0
    table = pa.table({"surface_m2": surfaces.astype(np.float64)})
    chunk = 100_000
    t0 = time.perf_counter()
    for start in range(0, rows, chunk):
        score_table(model, table.slice(start, chunk))
    full = time.perf_counter() - t0
    return {"infer_rows_s": rows / infer, "score_table_rows_s": rows / full}


def dependency_size() -> dict[str, Any]:
    """Install functions/predict/requirements.txt for Lambda python3.13 arm64; sizes in MiB (unzipped)."""
    target = Path(tempfile.mkdtemp(prefix="rentlake-size-"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--only-binary",
        ":all:",
        "--platform",
        "manylinux_2_28_aarch64",
        "--platform",
        "manylinux_2_17_aarch64",
        "--platform",
        "manylinux2014_aarch64",
        "--implementation",
        "cp",
        "--python-version",
        "3.13",
        "--target",
        str(target / "python"),
        "-r",
        str(ROOT / "functions" / "predict" / "requirements.txt"),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        shutil.copytree(
            ROOT / "layers" / "rentlake" / "rentlake",
            target / "python" / "rentlake",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        raw = _size(target)
        # What a packaging step may drop without changing the runtime: tests, caches, console scripts and
        # the onnxruntime tooling (quantization, transformers optimiser) that InferenceSession never loads.
        for pattern in (
            "**/tests",
            "**/__pycache__",
            "python/bin",
            "python/onnxruntime/tools",
            "python/onnxruntime/transformers",
            "python/onnxruntime/quantization",
        ):
            for p in list(target.glob(pattern)):
                shutil.rmtree(p, ignore_errors=True)
        trimmed = _size(target)
        return {
            "raw_mib": raw,
            "trimmed_mib": trimmed,
            "command": " ".join(cmd[2:]).replace(str(target), "DIR").replace(str(ROOT) + "/", ""),
        }
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _size(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def write_results(text: str) -> None:
    """Replace (or append) this benchmark's section of bench/RESULTS.md, keeping the others."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in current:
        head, rest = current.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        current = head.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    RESULTS.write_text(current)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (smoke check)")
    ap.add_argument("--skip-size", action="store_true", help="skip the pip install for the size check")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    opts = ap.parse_args()
    cold_runs, it1, it100, rows = (2, 500, 100, 200_000) if opts.quick else (5, 5000, 1000, 2_000_000)

    server, endpoint = start_s3()
    try:
        lake = seed(endpoint)
        cold = {"onnx": cold_start(PREDICT_APP, cold_runs), "sklearn": cold_start(BASELINE_APP, cold_runs)}
        onnx_mod, base_mod = load(PREDICT_APP, "bench_predict_app"), load(BASELINE_APP, "bench_baseline_app")
        warm_res = {
            "onnx": {1: warm(onnx_mod.handler, 1, it1), 100: warm(onnx_mod.handler, 100, it100)},
            "sklearn": {1: warm(base_mod.handler, 1, it1), 100: warm(base_mod.handler, 100, it100)},
        }
        batch = batch_throughput(lake, rows)
    finally:
        server.stop()
    size = None if opts.skip_size else dependency_size()

    c_o, c_b = cold["onnx"], cold["sklearn"]
    w_o, w_b = warm_res["onnx"], warm_res["sklearn"]
    ok = lambda cond: "yes" if cond else "**no**"  # noqa: E731
    rows_md = [
        "| measure | ONNX (functions/predict) | sklearn baseline | target | met |",
        "| --- | --- | --- | --- | --- |",
        f"| cold start, fresh process -> first response (wall) | {c_o['wall_s'] * 1e3:.0f} ms | "
        f"{c_b['wall_s'] * 1e3:.0f} ms | ≤ 0.4 × baseline (ratio {c_o['wall_s'] / c_b['wall_s']:.2f}) | "
        f"{ok(c_o['wall_s'] <= 0.4 * c_b['wall_s'])} |",
        f"| of which import + first request (in process) | {c_o['inner_s'] * 1e3:.0f} ms | "
        f"{c_b['inner_s'] * 1e3:.0f} ms | | |",
        f"| warm p50 / p99, 1 listing | {w_o[1]['p50_ms']:.3f} / {w_o[1]['p99_ms']:.3f} ms | "
        f"{w_b[1]['p50_ms']:.3f} / {w_b[1]['p99_ms']:.3f} ms | p99 < 1 ms, faster (p99 ratio "
        f"{w_b[1]['p99_ms'] / w_o[1]['p99_ms']:.1f}×) | "
        f"{ok(w_o[1]['p99_ms'] < 1 and w_o[1]['p99_ms'] < w_b[1]['p99_ms'])} |",
        f"| warm p50 / p99, 100 listings | {w_o[100]['p50_ms']:.3f} / {w_o[100]['p99_ms']:.3f} ms | "
        f"{w_b[100]['p50_ms']:.3f} / {w_b[100]['p99_ms']:.3f} ms | p99 < 2 ms, faster (p99 ratio "
        f"{w_b[100]['p99_ms'] / w_o[100]['p99_ms']:.1f}×) | "
        f"{ok(w_o[100]['p99_ms'] < 2 and w_o[100]['p99_ms'] < w_b[100]['p99_ms'])} |",
        f"| peak RSS after first response | {c_o['rss_mb']:.0f} MiB | {c_b['rss_mb']:.0f} MiB | ≤ 150 MB | "
        f"{ok(c_o['rss_mb'] <= 150)} |",
        f"| batch inference, I/O excluded ({rows:,} rows, 1 thread) | "
        f"{batch['infer_rows_s'] / 1e6:.1f} M rows/s | "
        f"| ≥ 1 M rows/s | {ok(batch['infer_rows_s'] >= 1e6)} |",
        f"| batch score_table (parse + validate + infer, 100 k chunks) | "
        f"{batch['score_table_rows_s'] / 1e6:.1f} "
        "M rows/s | | | |",
    ]
    if size:
        rows_md.append(
            f"| predict deps for Lambda py3.13 arm64 + layer, unzipped | {size['raw_mib']:.1f} MiB = "
            f"{size['raw_mib'] * 1.048576:.1f} MB as installed; {size['trimmed_mib']:.1f} MiB = "
            f"{size['trimmed_mib'] * 1.048576:.1f} MB trimmed | | ≤ 150 MB | as installed "
            f"{ok(size['raw_mib'] * 1.048576 <= 150)}, trimmed {ok(size['trimmed_mib'] * 1.048576 <= 150)} |"
        )
    import platform

    text = "\n".join(
        [
            SECTION,
            "",
            f"Run: `.venv/bin/python bench/bench_predict.py{' --quick' if opts.quick else ''}` on "
            f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, {os.cpu_count()} cores "
            f"({platform.machine()}), moto S3 server on 127.0.0.1. Cold start: median of {cold_runs} fresh "
            f"processes; warm: {it1} / {it100} requests after 200 warm-up ones.",
            "",
            *rows_md,
            "",
            *(
                [
                    f"Size command: `{size['command']}` plus `layers/rentlake/rentlake`; "
                    "'trimmed' drops tests, `__pycache__`, `bin/` and onnxruntime's "
                    "tools/transformers/quantization (never loaded by InferenceSession). "
                    "boto3 is not counted: the Lambda runtime provides it."
                ]
                if size
                else []
            ),
        ]
    )
    print(text)
    if not opts.no_write:
        write_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
