"""``rentlake invoke FUNCTION EVENT.json``: run one function's handler in process, like `sam local invoke`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rentlake.cli import stages
from rentlake.cli.context import Context
from rentlake.cli.errors import CliError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "invoke",
        help="run a function's handler with an event file (no Docker needed)",
        description="Run functions/FUNCTION/app.py's handler in this process with the JSON event in EVENT "
        "(see infra/events/), against the embedded lake or --bucket, and print its response. The string "
        "${BUCKET} in the event is replaced by the lake's bucket.",
    )
    p.add_argument("function", help="folder name under functions/ (ingest, clean, predict, ...)")
    p.add_argument("event", help="JSON event file ('-' for stdin)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    import sys

    text = sys.stdin.read() if args.event == "-" else _read(Path(args.event))
    try:
        event = json.loads(text.replace("${BUCKET}", ctx.lake.bucket))
    except ValueError as exc:
        raise CliError(f"{args.event} is not valid JSON: {exc}") from exc
    ctx.emit_json(stages.invoke(ctx, args.function, event))
    return 0


def _read(path: Path) -> str:
    if not path.is_file():
        raise CliError(f"no such event file: {path}")
    return path.read_text()
