"""``rentlake quarantine``: what was kept out of the lake and why (files rejected whole, rows quarantined)."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rentlake.cli.context import Context
from rentlake.cli.errors import CliError
from rentlake.lake import Lake, keys

# Values shown per row: enough to recognise it, not a dump.
_SHOWN_CHARS = 40


def register(sub: Any) -> None:
    """Add the ``quarantine`` command."""
    p = sub.add_parser(
        "quarantine",
        help="list quarantined rows and rejected files with their reasons",
        description="List the files ingest rejected whole (kept under quarantine/objects/ with a "
        ".reason.json) and the rows clean sent to quarantine, with their reason codes, source file and "
        "row (source_row: the line after the header for CSV, the line for JSON Lines). Counts by reason "
        "cover every row; --limit bounds the rows printed.",
    )
    p.add_argument("--dataset", help="only this dataset's rows (rejected files have no dataset: not listed)")
    p.add_argument("--reason", help="only rows and files with this reason code (e.g. duplicate)")
    p.add_argument("--limit", type=int, default=50, help="rows printed at most (default 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


@dataclass
class Listing:
    """What the command found."""

    files: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    total_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        """The listing as the ``--json`` output."""
        return {
            "files": self.files,
            "rows": self.rows,
            "total_rows": self.total_rows,
            "counts": dict(self.counts.most_common()),
        }


def rejected_files(lake: Lake, reason: str | None = None) -> list[dict[str, Any]]:
    """The reason documents of the files rejected whole (with ``reason_at``), optionally of one reason."""
    # The folder of rejected objects, from the key builder (no other module builds keys).
    prefix = keys.rejected_object("_", "_").split("ingestion_id=", 1)[0]
    out = []
    for key in lake.list_keys(prefix):
        if not key.endswith(".reason.json"):
            continue
        doc = lake.get_json_or_none(key)
        if not isinstance(doc, dict) or (reason and doc.get("reason") != reason):
            continue
        out.append({**doc, "reason_at": key})
    return out


def quarantined_rows(lake: Lake, datasets: list[str], reason: str | None, limit: int) -> Listing:
    """Rows of the committed quarantine files of ``datasets``: all counted, ``limit`` kept."""
    from rentlake import contracts

    found = Listing()
    for dataset in datasets:
        columns = contracts.get(dataset).column_names
        for commit in lake.committed_batches(dataset):
            for key in lake.committed_files(commit, "quarantine"):
                frame = lake.read_parquet_key(key)
                codes = frame["reasons"].astype("string").fillna("").str.split(";")
                if reason:
                    keep = codes.map(lambda cell: reason in cell).to_numpy(dtype=bool)
                    frame, codes = frame[keep], codes[keep]
                found.counts.update(code for cell in codes for code in cell if code)
                found.total_rows += len(frame)
                for row in frame.head(max(0, limit - len(found.rows))).to_dict("records"):
                    found.rows.append(_row(dataset, commit.ingestion_id, row, columns))
    return found


def _row(dataset: str, ingestion_id: str, row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    values = {c: str(row[c]) for c in columns if isinstance(row.get(c), str) and row[c] != ""}
    return {
        "dataset": dataset,
        "ingestion_id": ingestion_id,
        "source_key": row.get("source_key"),
        "source_row": int(row["source_row"]) if row.get("source_row") is not None else None,
        "reasons": row.get("reasons"),
        "values": values,
    }


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List what was quarantined; exit status 0 (an empty quarantine says so)."""
    from rentlake import contracts

    if args.limit < 0:
        raise CliError("--limit must be 0 or more")
    try:
        datasets = (
            [contracts.get(args.dataset).name]
            if args.dataset
            else [c.name for c in contracts.all_contracts()]
        )
    except KeyError as exc:
        raise CliError(str(exc).strip('"')) from exc
    found = quarantined_rows(ctx.lake, datasets, args.reason, args.limit)
    if not args.dataset:
        found.files = rejected_files(ctx.lake, args.reason)
    if args.json:
        ctx.emit_json(found.to_json())
    else:
        _print(ctx, found)
    return 0


def _print(ctx: Context, found: Listing) -> None:
    out = ctx.out
    if found.files:
        print(f"files rejected whole ({len(found.files)}):", file=out)
        for doc in found.files:
            print(f"  {doc.get('source_key')}: {doc.get('reason')}: {doc.get('message')}", file=out)
            print(f"      reason: {ctx.where(doc['reason_at'])}", file=out)
    shown = f"; showing {len(found.rows)}" if len(found.rows) < found.total_rows else ""
    print(f"rows quarantined: {found.total_rows:,}{shown}", file=out)
    for r in found.rows:
        values = " ".join(f"{k}={v[:_SHOWN_CHARS]!r}" for k, v in r["values"].items())
        print(f"  {r['source_key']} row {r['source_row']}  [{r['reasons']}]  {values}", file=out)
    if found.counts:
        print(
            "by reason: " + ", ".join(f"{n:,} × {code}" for code, n in found.counts.most_common()), file=out
        )
    if not found.files and not found.total_rows:
        print("nothing in quarantine", file=out)
