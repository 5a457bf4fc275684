"""``rentlake pipeline FILE...``: every stage built so far, on the given files."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake.cli import stages
from rentlake.cli.context import Context


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run the whole cycle on files: ingest, clean, and the later stages",
        description="Upload and ingest each FILE, clean what is pending, then run the later stages of the "
        "cycle. With --json, print one JSON object whose 'rows' member holds the counts 'ingested', "
        "'clean' and 'quarantined' for this run.",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--dataset", help="force the dataset contract of every FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    outcomes = stages.ingest_files(ctx, args.files, args.dataset)
    cleaned = stages.clean(ctx)
    result: dict[str, Any] = {
        "rows": {
            "ingested": sum(o["rows"] for o in outcomes if o["status"] == "ingested"),
            "clean": cleaned["rows"]["clean"],
            "quarantined": cleaned["rows"]["quarantined"],
        },
        "objects": outcomes,
        "batches": [
            {k: r[k] for k in ("dataset", "ingestion_id", "rows", "reasons")} for r in cleaned["reports"]
        ],
        "lake": str(ctx.local_root) if ctx.local_root else ctx.lake.uri(""),
    }
    if args.json:
        ctx.emit_json(result)
        return 0
    print("ingest:", file=ctx.out)
    stages.print_outcomes(ctx, outcomes)
    print("clean:", file=ctx.out)
    stages.print_clean(ctx, cleaned)
    rows = result["rows"]
    print(f"\nsummary: {rows['ingested']:,} rows ingested, {rows['clean']:,} clean, "
          f"{rows['quarantined']:,} quarantined", file=ctx.out)
    print(f"lake: {result['lake']}  (zones: landing/ raw/ clean/ quarantine/ reports/ models/)", file=ctx.out)
    return 0
