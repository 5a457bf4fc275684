"""Load on loopback: p50/p99/throughput/errors of ``rentlake serve``'s server (the predict handler, champion
on a moto server on 127.0.0.1), with N concurrent keep-alive clients.

Not a test (``tests/reliability/test_load.py`` decides pass/fail). Prints the figures and, with --record,
writes the "Reliability (issue 6)" load table into bench/RESULTS.md.

    .venv/bin/python bench/bench_load.py [--requests 10000] [--clients 1 20] [--record]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "rentlake")]

from tests.reliability.loadgen import MIX, run_load  # noqa: E402
from tests.support import served_api  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, nargs="+", default=[20])
    ap.add_argument(
        "--nodelay", action="store_true", help="serve with TCP_NODELAY (the proposed fix), for comparison"
    )
    ap.add_argument("--record", action="store_true", help="print the Markdown table for bench/RESULTS.md")
    args = ap.parse_args()
    rows = []
    with served_api(nodelay=args.nodelay) as api:
        run_load(api.host, api.port, total=200, clients=4)  # warm-up: champion loaded, imports done
        for clients in args.clients:
            res = run_load(api.host, api.port, total=args.requests, clients=clients, timeout_s=900)
            summary = res.summary()
            print(json.dumps(summary), flush=True)
            rows.append(summary)
    table = [
        "| clients | requests | errors | p50 ms | p99 ms | max ms | req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['clients']} | {r['requests']:,} | {r['errors']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['max_ms']} | {r['throughput_rps']:,} |"
        )
    mix = ", ".join(f"{m} {p}" + (" (10 listings)" if b and "listings" in b else "") for m, p, b in MIX)
    note = " Server with TCP_NODELAY (patched)." if args.nodelay else " Server as shipped."
    text = (
        "\n".join(table) + f"\n\nRequest mix, in rotation: {mix}. {platform.machine()}, Python "
        f"{platform.python_version()}." + note
    )
    print(text)
    if args.record:
        (ROOT / "bench" / ".bench_load.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
