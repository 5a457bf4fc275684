"""Prove the prediction path is light: serve one estimate through the handler, list heavy modules.

Run in a fresh interpreter (``python -m rentlake.runtime.lightcheck functions/predict/app.py``) with
``RENTLAKE_BUCKET`` (and ``AWS_ENDPOINT_URL`` for a local S3) pointing at a lake with a champion. Prints one
JSON line: ``{"python", "status", "body", "heavy"}``; ``heavy`` must be empty. Used by
``tests/unit/test_runtime_light.py`` and ``bench/check_py313.sh``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HEAVY = (
    "pandas",
    "sklearn",
    "scipy",
    "awswrangler",
    "pyarrow",
    "matplotlib",
    "rentlake.model",
    "rentlake.stages",
    "rentlake.legal.compile",
    "rentlake.legal.contract",
)


class ProbeContext:
    """The attributes of Lambda's context object that the handler's Powertools decorators read."""

    function_name = "rentlake-predict"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-3:000000000000:function:rentlake-predict"
    aws_request_id = "lightcheck"


def heavy_modules() -> list[str]:
    """Heavy top-level modules (or rentlake batch-side modules) present in ``sys.modules``."""
    return sorted(h for h in HEAVY if h in sys.modules or any(m.startswith(h + ".") for m in sys.modules))


def probe(app_path: str | Path, body: str = '{"surface_m2": 30}') -> dict[str, Any]:
    """Import the predict function by path, answer one ``POST /estimates``, report heavy modules.

    Parameters
    ----------
    app_path
        Path of ``functions/predict/app.py``.
    body
        Request body.

    Returns
    -------
    dict
        ``python`` version, response ``status`` and decoded ``body``, and ``heavy`` modules loaded.
    """
    spec = importlib.util.spec_from_file_location("predict_app", app_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {app_path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from rentlake.runtime.events import http_api_event

    event = http_api_event("POST", "/estimates", body, headers={"content-type": "application/json"})
    resp = mod.handler(event, ProbeContext())
    return {
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "status": resp["statusCode"],
        "body": json.loads(resp["body"]),
        "heavy": heavy_modules(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``lightcheck APP_PATH [BODY]``; exit 1 when a heavy module was imported."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m rentlake.runtime.lightcheck functions/predict/app.py [BODY]", file=sys.stderr)
        return 2
    result = probe(args[0], *args[1:2])
    print(json.dumps(result))
    return 1 if result["heavy"] or result["status"] != 200 else 0


if __name__ == "__main__":
    sys.exit(main())
