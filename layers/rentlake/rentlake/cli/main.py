"""Entry point of the ``rentlake`` command.

By default every command runs against a local lake, the folder ``./.rentlake`` (no AWS account, no
server); with ``--bucket`` (or ``RENTLAKE_BUCKET``, or ``--lake s3://bucket/prefix``) it runs the same
handlers against a real S3 bucket.

Commands live in modules ``rentlake/cli/cmd_*.py``; each exposes ``register(subparsers)``, which adds a
subparser and sets ``run(args, ctx) -> int`` as its default.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rentlake import __version__
from rentlake.cli.context import Context, find_functions_dir
from rentlake.cli.errors import CliError
from rentlake.lake import LakeError

EPILOG = """\
The lake: by default the local folder ./.rentlake, every object a file (.rentlake/landing/...,
.rentlake/clean/..., .rentlake/models/champion.json); move it with --lake-dir or RENTLAKE_HOME.
With --bucket NAME (or RENTLAKE_BUCKET, or --lake s3://bucket/prefix) the same commands run against
real AWS (region from AWS_REGION, default eu-west-3).

Typical session:
  rentlake pipeline data/samples/house_intact.csv     # ingest, clean, explore, train, gate, promote
  rentlake estimate --surface 30 --current-rent 1200   # the champion's answer, as the API gives it
  rentlake serve                                       # the API and the tenant page on 127.0.0.1:8000
"""


def _command_modules() -> list[str]:
    pkg = importlib.import_module("rentlake.cli")
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every discovered command."""
    parser = argparse.ArgumentParser(
        prog="rentlake",
        description="rentlake: a serverless pipeline for estimating rents, runnable on your machine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lake",
        default=None,
        metavar="ADDRESS",
        help="the lake: s3://bucket[/prefix] or a folder (or set RENTLAKE_LAKE)",
    )
    parser.add_argument(
        "--lake-dir",
        default=None,
        help="folder of the local lake (default: ./.rentlake, or RENTLAKE_HOME)",
    )
    parser.add_argument(
        "--bucket",
        default=None,
        help="run against this real S3 bucket instead of the local lake (or set RENTLAKE_BUCKET)",
    )
    parser.add_argument("--database", default=None, help="Glue database (default: rentlake)")
    parser.add_argument(
        "--functions-dir", default=None, help="folder of the Lambda functions (default: found from here)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    parser.add_argument("--version", action="version", version=f"rentlake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        importlib.import_module(f"rentlake.cli.{name}").register(sub)
    return parser


# Commands that only read the lake: they skip the sweep of leftovers (and its walk of the folder).
READ_ONLY_COMMANDS = {"estimate", "serve"}


@contextmanager
def open_context(args: argparse.Namespace) -> Iterator[Context]:
    """Open the lake the options name, point the functions' handlers at it, and yield a :class:`Context`."""
    from rentlake.cli import local
    from rentlake.lake import open_lake
    from rentlake.lake.local import LocalLake

    functions_dir = find_functions_dir(args.functions_dir)
    # The functions' JSON logs stay on stderr but, in a terminal, only their warnings and errors;
    # POWERTOOLS_LOG_LEVEL=INFO shows everything, as CloudWatch would.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    address = local.lake_address(lake=args.lake, bucket=args.bucket, lake_dir=args.lake_dir, env=os.environ)
    database = args.database or os.environ.get("RENTLAKE_GLUE_DATABASE") or "rentlake"
    lake = open_lake(address, database=database)
    if isinstance(lake, LocalLake):
        local.adopt_old_layout(lake)
        if args.command not in READ_ONLY_COMMANDS:
            lake.sweep()
    with local.handler_environment(lake):
        yield Context.create(lake=lake, functions_dir=functions_dir, quiet=args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rentlake`` command; returns the exit status."""
    import warnings

    # Powertools warns when a handler published no metric; in a terminal that is noise, not news.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        if getattr(args, "needs_lake", True):
            from rentlake import progress

            with open_context(args) as ctx:
                progress.set_reporter(ctx.progress)
                try:
                    return int(args.run(args, ctx) or 0)
                finally:
                    progress.set_reporter(None)
        return int(args.run(args, None) or 0)
    except CliError as exc:
        print(f"rentlake: {exc}", file=sys.stderr)
        return exc.exit_code
    except LakeError as exc:  # no lake configured, a bucket one cannot reach: the message says which
        print(f"rentlake: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rentlake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
