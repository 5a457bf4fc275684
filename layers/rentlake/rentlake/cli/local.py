"""Which lake a command works on, and the environment its functions' handlers read.

The command line's lake is a local folder by default (``./.rentlake``, a
:class:`~rentlake.lake.local.LocalLake`: every key is a file ``.rentlake/<key>``) or a real bucket.
Nothing is loaded at start and nothing is written back at exit: each command reads and writes the files
themselves, so commands run one after the other or at the same time on one folder, as functions do on
one bucket.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rentlake.lake import Lake, is_s3_address
from rentlake.lake.local import LOCAL_BUCKET, LocalLake

DEFAULT_LAKE_DIR = ".rentlake"
# Before the local backend, the folder held a moto bucket's copy and a Glue catalog dump.
_OLD_BUCKET_DIR = Path("s3") / LOCAL_BUCKET
_OLD_CATALOG = "glue.json"


def lake_address(
    *, lake: str | None, bucket: str | None, lake_dir: str | None, env: Mapping[str, str]
) -> str:
    """The address of the command's lake: its options first, then the environment, then ``./.rentlake``.

    Parameters
    ----------
    lake
        ``--lake`` (``s3://bucket[/prefix]`` or a folder).
    bucket
        ``--bucket`` (a real bucket).
    lake_dir
        ``--lake-dir`` (a folder).
    env
        The environment: ``RENTLAKE_LAKE``, ``RENTLAKE_BUCKET``, ``RENTLAKE_HOME``, in that order.

    Returns
    -------
    str
        An ``s3://`` address or a folder path.
    """
    if lake:
        return lake
    if bucket:
        return bucket if is_s3_address(bucket) else f"s3://{bucket}"
    if lake_dir:
        return lake_dir
    if env.get("RENTLAKE_LAKE"):
        return env["RENTLAKE_LAKE"]
    if env.get("RENTLAKE_BUCKET"):
        return f"s3://{env['RENTLAKE_BUCKET']}"
    return env.get("RENTLAKE_HOME") or DEFAULT_LAKE_DIR


@contextmanager
def handler_environment(lake: Lake) -> Iterator[None]:
    """Point the functions' handlers (which open their lake from the environment) at ``lake``.

    The previous values are restored on exit, so a command run in process leaves no trace.
    """
    env = {"RENTLAKE_LAKE": lake.address, "RENTLAKE_GLUE_DATABASE": lake.database}
    if is_s3_address(lake.address):
        env["AWS_REGION"] = os.environ.get("AWS_REGION") or "eu-west-3"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def adopt_old_layout(lake: LocalLake) -> int:
    """Move a folder written before the local backend (``<root>/s3/rentlake-local/<key>``) to
    ``<root>/<key>``; returns how many top-level entries moved (0 when there was nothing to move).

    An entry whose name already exists at the top is left where it is (and the old folder with it).
    """
    old = lake.root / _OLD_BUCKET_DIR
    if not old.is_dir():
        return 0
    moved = 0
    for entry in sorted(old.iterdir()):
        target = lake.root / entry.name
        if not target.exists():
            entry.rename(target)
            moved += 1
    for folder in (old, old.parent):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    catalog = lake.root / _OLD_CATALOG
    if catalog.exists() and not old.exists():
        catalog.unlink()  # the Glue dump of the moto lake; the local catalog is rebuilt as tables are written
    if moved:
        print(f"rentlake: moved the lake's files from {old} to {lake.root}", file=sys.stderr)
    return moved
