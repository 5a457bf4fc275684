"""``rentlake score FILE``: upload a file of listings to ``score/`` and run the score function on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rentlake.cli.context import LambdaContext, bound_handler, function_stdout
from rentlake.cli.errors import CliError
from rentlake.lake import keys


def register(sub: Any) -> None:
    """Add the ``score`` command."""
    p = sub.add_parser(
        "score",
        help="estimate the rent of every listing in a CSV or Parquet file",
        description="Upload FILE (CSV or Parquet with a surface_m2 column, optionally district) to the "
        "lake's score/ zone and run functions/score/app.py's handler on it: the same rows come back with "
        "rent_eur, low, high and a problem column, under scored/ (Parquet, and CSV for a CSV input).",
    )
    p.add_argument("file", help="CSV or Parquet file of listings")
    p.add_argument("--json", action="store_true", help="print the handler's result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Upload, score, print where the output is."""
    import json

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise CliError(f"{path}: only .csv and .parquet files can be scored")
    key = keys.score_input(path.name)
    ctx.lake.put_bytes(key, path.read_bytes())
    handler = bound_handler(ctx, "score")
    with function_stdout(ctx, "score"):  # its metric lines, not the command's output
        result = handler({"keys": [key]}, LambdaContext("score"))
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
    return 0
