"""``rentlake diagnose FILE --x COL --y COL``: Anscombe's warning on any CSV, no lake needed.

Output with ``--json``:

* without ``--group``: ONE object ``{"intercept", "slope", "r2", "n", "verdict", "flags", "reasons",
  "rows_dropped"}``; ``verdict`` is ``"ok"`` or ``"flagged"``, ``flags`` a list drawn from
  ``nonlinearity``, ``outlier``, ``influential_point``, ``heteroscedasticity`` and ``reasons`` maps each
  raised flag to its explanation;
* with ``--group COL``: one such object per group, keyed by the group's value in order of first
  appearance (``{"I": {...}, "II": {...}, ...}`` for ``anscombe.csv --group dataset``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rentlake.cli.errors import CliError


def register(sub: Any) -> None:
    """Add the ``diagnose`` command."""
    p = sub.add_parser(
        "diagnose",
        help="fit y ~ x on a CSV and flag nonlinearity, outliers, influential points, heteroscedasticity",
        description="Fit the line y ~ x by least squares on a CSV file and run four checks (Ramsey RESET, "
        "Bonferroni outlier test, leverage / Cook's distance, Breusch-Pagan): the same R² can hide "
        "very different data (Anscombe's quartet). Rows with a missing or non-numeric x or y are dropped "
        "and counted. No lake is needed. With --json: one object (intercept, slope, r2, n, verdict "
        "'ok'/'flagged', flags, reasons, rows_dropped), or with --group one object per group keyed by "
        "the group's value.",
        epilog="example: rentlake diagnose data/samples/anscombe.csv --x x --y y --group dataset",
    )
    p.add_argument("file", metavar="FILE", help="CSV file with a header row")
    p.add_argument("--x", required=True, metavar="COL", help="predictor column (e.g. surface_m2)")
    p.add_argument("--y", required=True, metavar="COL", help="response column (e.g. rent_eur)")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COL=VALUE",
        help="keep only rows where COL equals VALUE (repeatable), e.g. --where dataset=IV",
    )
    p.add_argument("--group", metavar="COL", help="diagnose each value of COL separately")
    p.add_argument("--json", action="store_true", help="print JSON (see the description)")
    p.set_defaults(run=run, needs_lake=False)


def _read(path: str) -> Any:
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise CliError(f"no such file: {path}")
    try:
        return pd.read_csv(file, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise CliError(f"cannot read {path} as CSV: {exc}") from exc


def _filter(df: Any, where: list[str]) -> Any:
    for cond in where:
        col, sep, value = cond.partition("=")
        if not sep or not col:
            raise CliError(f"--where expects COL=VALUE, got {cond!r}")
        _need(df, col.strip())
        df = df[df[col.strip()].str.strip() == value.strip()]
        if df.empty:
            raise CliError(f"no row has {col.strip()} = {value.strip()!r}")
    return df


def _need(df: Any, col: str) -> None:
    if col not in df.columns:
        raise CliError(f"no column {col!r} in the file (columns: {', '.join(map(str, df.columns))})")


def diagnose_frame(df: Any, x: str, y: str) -> dict[str, Any]:
    """Diagnose ``y ~ x`` on a DataFrame of strings or numbers.

    Parameters
    ----------
    df
        The rows.
    x, y
        Column names.

    Returns
    -------
    dict
        ``intercept``, ``slope``, ``r2``, ``n``, ``verdict``, ``flags``, ``reasons`` (flag -> explanation)
        and ``rows_dropped`` (missing or non-numeric x or y).

    Raises
    ------
    CliError
        Too few usable rows, one distinct x, constant y (the diagnostics' own message).
    """
    import pandas as pd

    from rentlake.model import InsufficientDataError
    from rentlake.model.diagnostics import diagnose

    xs = pd.to_numeric(df[x].astype(str).str.replace(",", ".", regex=False), errors="coerce")
    ys = pd.to_numeric(df[y].astype(str).str.replace(",", ".", regex=False), errors="coerce")
    ok = xs.notna() & ys.notna() & xs.abs().lt(float("inf")) & ys.abs().lt(float("inf"))
    try:
        d = diagnose(xs[ok].to_numpy(float), ys[ok].to_numpy(float)).to_dict()
    except InsufficientDataError as exc:
        raise CliError(f"cannot diagnose {y} ~ {x}: {exc} ({int(ok.sum())} usable rows)") from exc
    return {
        "intercept": d["intercept"],
        "slope": d["slope"],
        "r2": d["r2"],
        "n": d["n"],
        "verdict": d["verdict"],
        "flags": d["flags"],
        "reasons": {f: d["details"][f].get("reason") for f in d["flags"]},
        "rows_dropped": int((~ok).sum()),
    }


def _line(label: str, r: dict[str, Any], x: str, y: str) -> str:
    head = (
        f"{label}{y} = {r['intercept']:.4g} + {r['slope']:.4g} × {x}   R² {r['r2']:.3f}, n {r['n']}"
        + (f" ({r['rows_dropped']} rows dropped)" if r["rows_dropped"] else "")
        + f": {r['verdict']}"
    )
    return "\n".join([head] + [f"    {flag}: {why}" for flag, why in r["reasons"].items()])


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Diagnose the file (one result, or one per group)."""
    import json
    import sys

    df = _filter(_read(args.file), args.where)
    for col in (args.x, args.y):
        _need(df, col)
    if args.group:
        _need(df, args.group)
        groups = list(dict.fromkeys(df[args.group].str.strip()))
        result: Any = {g: diagnose_frame(df[df[args.group].str.strip() == g], args.x, args.y) for g in groups}
    else:
        result = diagnose_frame(df, args.x, args.y)
    out = sys.stdout
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False), file=out)
    elif args.group:
        for g, r in result.items():
            print(_line(f"{args.group}={g}: ", r, args.x, args.y), file=out)
    else:
        print(_line("", result, args.x, args.y), file=out)
    return 0
