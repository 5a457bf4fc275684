"""``rentlake clean``: clean every pending raw batch."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake.cli import stages
from rentlake.cli.context import Context


def register(sub: Any) -> None:
    p = sub.add_parser(
        "clean",
        help="clean pending raw batches into the clean zone and quarantine",
        description="Run the clean function on every ingested batch not cleaned yet: types, units, "
        "duplicates, ranges and robust outliers. Every row ends in the clean zone or in quarantine with its "
        "reasons; a quality report per batch goes to reports/quality/.",
    )
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument("--mad-k", type=float, help="outlier threshold in scaled MADs (default 4)")
    p.add_argument("--min-group", type=int, help="smallest group with its own statistics (default 30)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    result = stages.clean(ctx, dataset=args.dataset, mad_k=args.mad_k, min_group=args.min_group)
    if args.json:
        ctx.emit_json(result)
    else:
        print("clean:", file=ctx.out)
        stages.print_clean(ctx, result)
    return 0
