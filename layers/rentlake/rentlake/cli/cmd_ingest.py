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
        "header unless --dataset says it (--map names the field of a column no alias knows). Ingesting the "
        "same content twice adds nothing. A file that cannot be ingested is rejected whole and kept in "
        "quarantine/objects/ with its reason (.reason.json); the other files go on. Exit status 1 when a "
        "file was rejected.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dataset", help="force the dataset contract instead of recognising the header")
    add_map_option(p)
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.set_defaults(run=run)


def add_map_option(p: Any) -> None:
    """The ``--map COLUMN=FIELD`` option (ingest, pipeline, score)."""
    p.add_argument(
        "--map",
        action="append",
        metavar="COLUMN=FIELD",
        help="read the file's column COLUMN as the contract field FIELD (a column or one of its aliases), "
        "for a header no alias knows: --map superficie=surface_m2 (repeatable)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Ingest the files; exit status 1 when one was rejected (its reason file is named)."""
    column_map = stages.parse_map(args.map, args.dataset)
    outcomes = stages.ingest_files(ctx, args.files, args.dataset, column_map)
    if args.json:
        ctx.emit_json({"rows": {"ingested": sum(o["rows"] for o in outcomes)}, "outcomes": outcomes})
    else:
        print("ingest:", file=ctx.out)
        stages.print_outcomes(ctx, outcomes)
        if any(o["status"] == "ingested" for o in outcomes):
            print("next: `rentlake clean` cleans what is pending", file=ctx.out)
    return stages.rejected_status(ctx, outcomes)
