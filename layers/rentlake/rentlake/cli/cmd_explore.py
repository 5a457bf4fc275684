"""``rentlake explore``: the exploration report of the clean zone, through the explore function."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake.cli import stages
from rentlake.cli.context import Context
from rentlake.cli.errors import CliError


def register(sub: Any) -> None:
    """Add the ``explore`` command."""
    p = sub.add_parser(
        "explore",
        help="write the exploration report of the clean listings (figures, hypotheses, one HTML page)",
        description="Run the explore function on the clean zone: statistics, the course's figures and "
        "plain-words hypotheses under reports/<run>/ (summary.json, PNGs, report.html). The default run id "
        "comes from the committed clean batches, so exploring unchanged data reuses the existing report.",
    )
    p.add_argument("--dataset", default="listings", help="dataset to explore (default: listings)")
    p.add_argument("--run-id", default=None, help="name of the report folder (always rewrites it)")
    p.add_argument("--json", action="store_true", help="print the function's answer as JSON")
    p.set_defaults(run=run)


def explore(ctx: Context, *, dataset: str = "listings", run_id: str | None = None) -> dict[str, Any]:
    """Invoke the explore function; returns its answer (``explored`` false with a ``reason`` on bad data).

    Parameters
    ----------
    ctx
        The CLI context.
    dataset
        Dataset to explore.
    run_id
        Report folder name (default: from the data).

    Returns
    -------
    dict
        The explore function's answer.
    """
    ctx.progress(f"exploring the clean {dataset}")
    event: dict[str, Any] = {"dataset": dataset}
    if run_id:
        event["run_id"] = run_id
    return stages.invoke(ctx, "explore", event)


def print_explore(ctx: Context, result: dict[str, Any]) -> None:
    """Human lines for an explore answer."""
    if not result.get("explored"):
        print(f"  no report: {result.get('reason')}", file=ctx.out)
        return
    rows, sampled = result.get("rows"), result.get("rows_sampled")
    how = f"{rows:,} rows"
    if isinstance(rows, int) and isinstance(sampled, int) and sampled < rows:
        how += f", statistics on a hash sample of {sampled:,}"
    if result.get("reused"):
        how = "unchanged data, report reused"
    print(f"  report {result['run_id']} ({how})", file=ctx.out)
    for hid, supported in (result.get("hypotheses") or {}).items():
        print(f"    {'supported' if supported else 'not supported':13}  {hid}", file=ctx.out)
    print(f"  open: {ctx.where(result['report_key'])}", file=ctx.out)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Explore; a refusal (no or degenerate clean data) is a CLI error with the function's reason."""
    result = explore(ctx, dataset=args.dataset, run_id=args.run_id)
    if args.json:
        ctx.emit_json(result)
    if not result.get("explored"):
        raise CliError(f"explore: {result.get('reason')}")
    if not args.json:
        print("explore:", file=ctx.out)
        print_explore(ctx, result)
    return 0
