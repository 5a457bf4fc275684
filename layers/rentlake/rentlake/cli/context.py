"""What a CLI command gets: the lake, the functions' handlers, and where to print."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from rentlake.cli.errors import CliError
from rentlake.lake import Lake
from rentlake.lake.local import LocalLake

# Imported handlers by (file, lake address): a handler reads its lake from the environment at import,
# so a process that runs commands on two lakes (tests) imports it once per lake.
_HANDLERS: dict[tuple[Path, str], ModuleType] = {}


def find_functions_dir(explicit: str | None = None) -> Path:
    """Locate the ``functions/`` folder: explicit, ``RENTLAKE_FUNCTIONS_DIR``, or beside the layer.

    The package lives in ``layers/rentlake/rentlake`` of the repository, so the functions are three levels
    up; the current directory is tried last.
    """
    import os

    candidates = [explicit, os.environ.get("RENTLAKE_FUNCTIONS_DIR")]
    here = Path(__file__).resolve()
    candidates += [str(here.parents[4] / "functions"), str(Path.cwd() / "functions")]
    for cand in candidates:
        if cand and (Path(cand) / "ingest" / "app.py").exists():
            return Path(cand).resolve()
    raise CliError(
        "cannot find the functions/ folder of rentlake; run from the repository or pass --functions-dir"
    )


@dataclass
class Context:
    """A command's view of the world: its lake, the functions, where to print.

    ``local_root`` is the folder of a local lake (None for an S3 lake).
    """

    lake: Lake
    functions_dir: Path
    local_root: Path | None
    quiet: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def create(cls, *, lake: Lake, functions_dir: Path, quiet: bool) -> Context:
        """The context of a command on ``lake``."""
        root = lake.root if isinstance(lake, LocalLake) else None
        return cls(lake=lake, functions_dir=functions_dir, local_root=root, quiet=quiet)

    def progress(self, message: str) -> None:
        """A progress line on stderr (long steps), unless --quiet."""
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def where(self, key: str) -> str:
        """Where a user finds a lake object: a local file path, or its s3:// URI."""
        return self.lake.uri(key)

    def handler(self, name: str) -> Any:
        """The ``handler`` of ``functions/<name>/app.py``, imported once (as Lambda would)."""
        path = self.functions_dir / name / "app.py"
        if not path.exists():
            raise CliError(f"no function named {name!r} (looked for {path})")
        mod = _HANDLERS.get((path, self.lake.address))
        if mod is None:
            spec = importlib.util.spec_from_file_location(f"rentlake_function_{name}", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _HANDLERS[(path, self.lake.address)] = mod
        return mod.handler

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        """Run a function's handler in process with a Lambda-like context (its stdout: see
        :func:`function_stdout`)."""
        handler = self.handler(name)
        with function_stdout(self, name):
            return handler(event, LambdaContext(name))

    def emit_json(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2, ensure_ascii=False, default=str), file=self.out)


def bound_handler(ctx: Any, name: str) -> Any:
    """``functions/<name>/app.py``'s handler serving ``ctx.lake``: its ``CHAMPION`` cache, if it has one,
    is bound to the lake the command was given, whatever the environment says.

    ``ctx`` is a :class:`Context` (the module is imported once per process) or any object with ``lake``
    and ``functions_dir`` (tests), for which the module is imported afresh.
    """
    if isinstance(ctx, Context):
        handler = ctx.handler(name)
    else:
        path = Path(ctx.functions_dir) / name / "app.py"
        if not path.exists():
            raise CliError(f"no {name} function at {path}")
        spec = importlib.util.spec_from_file_location(f"rentlake_function_{name}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        handler = mod.handler
    # The module's globals, under the wrappers of a batch handler (BatchFunction, Powertools).
    champion = getattr(inspect.unwrap(handler), "__globals__", {}).get("CHAMPION")
    if champion is not None:
        champion.bind(ctx.lake)
    return handler


@contextlib.contextmanager
def function_stdout(ctx: Any, name: str) -> Iterator[None]:
    """Where a function's stdout goes while its handler runs: its EMF metric lines (as CloudWatch would
    receive them) go to ``<lake>/logs/<name>.log`` for a local lake, to stderr otherwise, so that the
    command's stdout (``ctx.out``) stays its result (``--json`` output stays parseable).

    Parameters
    ----------
    ctx
        The command's context; its ``local_root`` (None, or absent, for a real bucket) picks the sink.
    name
        The function's name (``predict``...).
    """
    root = getattr(ctx, "local_root", None)
    if root is None:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    logs = Path(root) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield


class LambdaContext:
    """The few attributes of Lambda's context object that Powertools and the handlers read."""

    def __init__(self, name: str) -> None:
        self.function_name = f"rentlake-{name}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-3:000000000000:function:rentlake-{name}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = "local-" + str(int(time.time() * 1000))
        self.log_group_name = f"/aws/lambda/rentlake-{name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
