"""``rentlake ingest FILE...``: upload to landing/ and ingest into the raw zone."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake.cli import stages
from rentlake.cli.context import Context


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="upload files to landing/ and ingest them into the raw zone",
        description="Upload each FILE (CSV, JSON Lines or Parquet) to landing/ and run the ingest function "
        "on it, as the S3 event would. The dataset (listings, reference rents, ...) is recognised from the "
        "header unless --dataset says it. Ingesting the same content twice adds nothing.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dataset", help="force the dataset contract instead of recognising the header")
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    outcomes = stages.ingest_files(ctx, args.files, args.dataset)
    if args.json:
        ctx.emit_json({"rows": {"ingested": sum(o["rows"] for o in outcomes)}, "outcomes": outcomes})
    else:
        print("ingest:", file=ctx.out)
        stages.print_outcomes(ctx, outcomes)
        print("next: `rentlake clean` cleans what is pending", file=ctx.out)
    return 0
