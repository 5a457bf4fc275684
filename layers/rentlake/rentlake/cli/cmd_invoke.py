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
        "(see infra/events/), against the local lake or --bucket, and print its response. The string "
        "${BUCKET} in the event is replaced by the lake's bucket, ${VERSION} by the newest model version "
        "of the registry, and any ${KEY} by --set KEY=VALUE.",
    )
    p.add_argument("function", help="folder name under functions/ (ingest, clean, predict, ...)")
    p.add_argument("event", help="JSON event file ('-' for stdin)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace ${KEY} in the event by VALUE (repeatable)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    import sys

    text = sys.stdin.read() if args.event == "-" else _read(Path(args.event))
    for key, value in substitutions(ctx, args.set, text).items():
        text = text.replace("${" + key + "}", value)
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{args.event} is not valid JSON: {exc}") from exc
    ctx.emit_json(stages.invoke(ctx, args.function, event))
    return 0


def substitutions(ctx: Context, pairs: list[str], text: str) -> dict[str, str]:
    """The ``${KEY}`` replacements: BUCKET, VERSION (newest registry version, when the event uses it),
    then the user's ``KEY=VALUE`` pairs, which win."""
    out = {"BUCKET": ctx.lake.bucket}
    if "${VERSION}" in text:
        from rentlake import registry

        versions = registry.list_versions(ctx.lake)
        if versions:
            out["VERSION"] = versions[-1]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--set takes KEY=VALUE, not {pair!r}")
        out[key] = value
    missing = sorted({k for k in _placeholders(text) if k not in out})
    if missing:
        raise CliError(
            f"the event uses {', '.join('${' + k + '}' for k in missing)}: "
            f"give a value with --set {missing[0]}=..."
        )
    return out


def _placeholders(text: str) -> set[str]:
    import re

    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))


def _read(path: Path) -> str:
    if not path.is_file():
        raise CliError(f"no such event file: {path}")
    return path.read_text()
