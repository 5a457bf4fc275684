"""``rentlake models list | promote VERSION | rollback``: the model registry and the champion pointer."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake import registry
from rentlake.cli.context import Context
from rentlake.cli.errors import CliError
from rentlake.lake import keys
from rentlake.records import ChampionPointer


def register(sub: Any) -> None:
    """Add the ``models`` command and its subcommands."""
    p = sub.add_parser(
        "models",
        help="list model versions, promote one by hand, or roll back to the previous champion",
        description="The model registry (models/<version>/) and the serving pointer models/champion.json. "
        "Every switch is recorded in models/champion_history.json, then published as one write of the "
        "whole pointer, made after every file it names exists; both writes are compare-and-swap, so two "
        "switches at the same time are recorded one after the other, never lost.",
    )
    p.set_defaults(run=lambda args, ctx: _help(p), needs_lake=False)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    lp = msub.add_parser(
        "list",
        help="versions, training dates, held-out metrics, gate decision, champion",
        description="One line per registry version, oldest first; '*' marks the champion.",
    )
    lp.add_argument("--json", action="store_true", help="print a JSON list")
    lp.set_defaults(run=run_list, needs_lake=True)
    pp = msub.add_parser(
        "promote",
        help="make VERSION the champion (manual: the gate is not consulted)",
        description="Make VERSION the champion by hand: its files and sha256 are checked, the "
        "reference-rent lookup is attached when available, the switch is recorded in the history (so "
        "'models rollback' undoes it). The quality gate is NOT consulted: this is how a person accepts "
        "a challenger the gate refused for moving the estimates beyond its bound, or for being judged "
        "on too few held-out rows.",
    )
    pp.add_argument("version", metavar="VERSION")
    pp.add_argument("--json", action="store_true", help="print the new pointer")
    pp.set_defaults(run=run_promote, needs_lake=True)
    rp = msub.add_parser(
        "rollback",
        help="go back to the champion before the last promotion",
        description="Undo the last promotion: the previous champion in the history serves "
        "again (a new history entry records the rollback).",
    )
    rp.add_argument("--json", action="store_true", help="print the new pointer")
    rp.set_defaults(run=run_rollback, needs_lake=True)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print the registry."""
    rows = registry.describe(ctx.lake)
    if args.json:
        ctx.emit_json(rows)
        return 0
    if not rows:
        print("no model version yet: run 'rentlake train' or 'rentlake pipeline FILE'", file=ctx.out)
        return 0
    print(
        f"  {'version':32} {'trained at':20} {'model':13} {'MAE €':>7} {'R²':>5} {'cover':>5}  gate",
        file=ctx.out,
    )
    for r in rows:
        m = r["metrics"]
        mark = "*" if r["champion"] else " "
        cells = (
            f"{_num(m.get('mae'), '.0f'):>7} {_num(m.get('r2'), '.2f'):>5} "
            f"{_num(m.get('coverage'), '.2f'):>5}"
        )
        print(
            f"{mark} {r['version']:32} {str(r['trained_at'])[:19]:20} {str(r['model_name']):13} {cells}"
            f"  {r['gate'] or 'not evaluated'}",
            file=ctx.out,
        )
    champion = next((r["version"] for r in rows if r["champion"]), None)
    print(f"champion: {champion or 'none'} ({ctx.where(keys.champion())})", file=ctx.out)
    return 0


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def _switched(ctx: Context, args: argparse.Namespace, pointer: ChampionPointer, what: str) -> int:
    if args.json:
        ctx.emit_json(pointer.to_json())
    else:
        print(f"{what}: champion is now {pointer.version} (sha256 {pointer.sha256[:12]}…)", file=ctx.out)
        print(f"  pointer: {ctx.where(keys.champion())}", file=ctx.out)
    return 0


def run_promote(args: argparse.Namespace, ctx: Context) -> int:
    """Promote a version by hand; unknown versions and corrupted files are refused with the reason."""
    before = registry.read_pointer(ctx.lake)
    try:
        pointer = registry.promote(ctx.lake, args.version, reason="manual: rentlake models promote")
    except registry.RegistryError as exc:
        raise CliError(str(exc)) from exc
    if before is not None and before == pointer:
        print(f"{args.version} is already the champion: nothing changed", file=ctx.out)
        return 0
    return _switched(ctx, args, pointer, "promoted")


def run_rollback(args: argparse.Namespace, ctx: Context) -> int:
    """Roll back; a clear message when there is no previous champion."""
    try:
        pointer = registry.rollback(ctx.lake)
    except registry.RegistryError as exc:
        raise CliError(f"cannot roll back: {exc}") from exc
    return _switched(ctx, args, pointer, "rolled back")
