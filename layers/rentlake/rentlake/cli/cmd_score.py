"""``rentlake score FILE``: upload a file of listings to ``score/`` and run the score function on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rentlake.cli.cmd_ingest import add_map_option
from rentlake.cli.context import LambdaContext, bound_handler, function_stdout
from rentlake.cli.errors import CliError
from rentlake.cli.stages import parse_map
from rentlake.lake import keys

# The files the score stage reads (rentlake.stages.score.EXTENSIONS, without importing pandas here).
EXTENSIONS = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def register(sub: Any) -> None:
    """Add the ``score`` command."""
    p = sub.add_parser(
        "score",
        help="estimate the rent of every listing in a CSV, JSON or Parquet file",
        description="Upload FILE (CSV, JSON Lines, a JSON array of records or Parquet, with a surface "
        "column, optionally a district) to the lake's score/ zone and run functions/score/app.py's handler "
        "on it: the same rows come back with rent_eur, low, high and a problem column, under scored/ "
        "(Parquet, and CSV for a CSV input). The file is read as ingest reads it: header aliases (surface, "
        "superficie, sqft...), separators, decimal commas, encodings; --map names a column no alias knows. "
        "In the CSV output, text cells that a spreadsheet would run as formulas start with a quote.",
    )
    p.add_argument("file", help="file of listings")
    add_map_option(p)
    p.add_argument("--json", action="store_true", help="print the handler's result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Upload, score, print where the output is."""
    import json

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    if path.suffix.lower() not in EXTENSIONS:
        raise CliError(
            f"{path}: only .csv and .parquet files (or JSON: .jsonl, .ndjson, .json) can be scored"
        )
    column_map = parse_map(getattr(args, "map", None), "listings")
    key = keys.score_input(path.name)
    ctx.lake.put_bytes(key, path.read_bytes())
    handler = bound_handler(ctx, "score")
    event: dict[str, object] = {"keys": [key]}
    if column_map:
        event["column_map"] = column_map
    with function_stdout(ctx, "score"):  # its metric lines, not the command's output
        result = handler(event, LambdaContext("score"))
    (item,) = result["scored"]
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False), file=ctx.out)
    if "error" in item:
        raise CliError(item["error"])
    where = getattr(ctx, "where", ctx.lake.uri)
    if not args.json:
        print(
            f"scored {item['rows']} rows with model {item['model_version']} "
            f"({item['problem_rows']} with a problem, see the 'problem' column):",
            file=ctx.out,
        )
        for out in item["outputs"]:
            print(f"  {where(out)}", file=ctx.out)
        used = ", ".join(f"{src!r} as {canon}" for src, canon in item.get("columns", {}).items())
        print(f"columns read: {used or 'none the listings contract knows'}", file=ctx.out)
    return 0
