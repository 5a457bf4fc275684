"""``rentlake batches list | accept ID``: the clean batches that train models and the ones held for review."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime
from typing import Any

from rentlake.cli.context import Context
from rentlake.cli.errors import CliError
from rentlake.lake import LakeError


def register(sub: Any) -> None:
    """Add the ``batches`` command and its subcommands."""
    p = sub.add_parser(
        "batches",
        help="list the clean batches and their review; accept a batch held for review",
        description="Training reviews every clean batch once against the earlier training batches: one "
        "whose rent per m² departs from them (a group median shifted by more than one robust standard "
        "deviation, or more than 10 %% of its rows beyond the history's 1st-99th percentiles) is held: "
        "cleaned, but no model is trained on it until it is accepted.",
    )
    p.set_defaults(run=lambda args, ctx: _help(p), needs_lake=False)
    bsub = p.add_subparsers(dest="batches_command", metavar="SUBCOMMAND")
    lp = bsub.add_parser(
        "list",
        help="every committed batch: rows, review status and reason",
        description="One line per committed clean batch, in commit order.",
    )
    lp.add_argument("--dataset", default="listings", help="dataset (default: listings)")
    lp.add_argument("--json", action="store_true", help="print a JSON list")
    lp.set_defaults(run=run_list, needs_lake=True)
    ap = bsub.add_parser(
        "accept",
        help="let a held batch train models (the next 'rentlake train' uses it)",
        description="Accept a batch held for review: the next training includes its rows. "
        "The gate still judges the model trained on it.",
    )
    ap.add_argument("ingestion_id", metavar="ID")
    ap.add_argument("--dataset", default="listings", help="dataset (default: listings)")
    ap.add_argument("--json", action="store_true", help="print the review")
    ap.set_defaults(run=run_accept, needs_lake=True)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def rows(ctx: Context, dataset: str) -> list[dict[str, Any]]:
    """One row per committed batch: id, rows, status (``not reviewed`` before the first training), reason."""
    from rentlake.stages import review  # pandas: imported by the batch commands only

    reviews = review.read_reviews(ctx.lake, dataset)
    out = []
    for commit in ctx.lake.committed_batches(dataset):
        r = reviews.get(commit.ingestion_id)
        out.append(
            {
                "ingestion_id": commit.ingestion_id,
                "source_key": commit.source_key,
                "rows": commit.rows_clean,
                "status": r.status if r else "not reviewed",
                "reason": r.reason if r else "reviewed by the next training",
                "accepted_by": r.accepted_by if r else None,
            }
        )
    return out


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print the batches and their review."""
    listed = rows(ctx, args.dataset)
    if args.json:
        ctx.emit_json(listed)
        return 0
    if not listed:
        print(f"no committed batch of {args.dataset!r} yet", file=ctx.out)
        return 0
    for b in listed:
        print(f"  {b['ingestion_id']:22} {b['rows']:>9,} rows  {b['status']:12} {b['reason']}", file=ctx.out)
    held = [b["ingestion_id"] for b in listed if b["status"] == "held"]
    if held:
        print(f"held for review: {len(held)}; accept one with: rentlake batches accept ID", file=ctx.out)
    return 0


def run_accept(args: argparse.Namespace, ctx: Context) -> int:
    """Accept a held batch; an unknown batch is refused with the held ones named."""
    from rentlake.stages import review  # pandas: imported by the batch commands only

    try:
        accepted = review.accept(
            ctx.lake, args.dataset, args.ingestion_id, by=_who(), now=lambda: datetime.now(UTC)
        )
    except LakeError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        ctx.emit_json(accepted.to_json())
    elif accepted.status == "accepted" and accepted.accepted_by:
        print(
            f"accepted batch {accepted.ingestion_id}: the next 'rentlake train' trains on its "
            f"{accepted.rows:,} rows (the gate still judges the model)",
            file=ctx.out,
        )
    else:
        print(
            f"batch {accepted.ingestion_id} is not held ({accepted.status}): nothing to accept", file=ctx.out
        )
    return 0


def _who() -> str:
    try:
        return f"{getpass.getuser()} (rentlake batches accept)"
    except (KeyError, OSError):  # no user name in a container without passwd entry
        return "rentlake batches accept"
