"""``rentlake pipeline FILE...``: the whole cycle on the given files: ingest, clean, explore, train, evaluate
and promote, each through its function's handler, as the state machine chains them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rentlake.cli import stages
from rentlake.cli.cmd_explore import explore, print_explore
from rentlake.cli.cmd_ingest import add_map_option
from rentlake.cli.cmd_train import model_member, print_model, refusal, train_and_evaluate
from rentlake.cli.context import Context, function_stdout


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run the whole cycle on files: ingest, clean, explore, train, gate and promote",
        description="Upload and ingest each FILE, clean what is pending, write the exploration report, "
        "train a model on the clean listings, evaluate it against the champion on the same held-out rows "
        "and promote it when the quality gate passes. With no new clean data (no FILE, or files already "
        "ingested) the stages still run but change nothing: the report is reused, training is skipped "
        "('no new clean data since version V') and the champion stays. With --json, print one JSON object: "
        "'rows' (counts 'ingested', 'clean', 'quarantined' for this run), 'objects', 'batches', 'report' "
        "(where report.html is), 'model' ('version', 'trained', 'skipped', 'reason', 'promoted', "
        "'metrics', 'gate' with its 'decision' and 'reasons', 'champion', 'card') and 'lake'. Exit status "
        "2 when the clean data cannot support a model (the reason is printed); a challenger the gate keeps "
        "out is a normal outcome (status 0). Exit status 1 when a FILE was rejected (the other stages still "
        "run on what was ingested; the reason file is named).",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--dataset", help="force the dataset contract of every FILE")
    add_map_option(p)
    p.add_argument("--force-train", action="store_true", help="train even if the clean data has not changed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


# The tenant's question, asked of the new champion at the end of the run: the course's 30 m², paid
# 1 200 €/month, in Belleville (2 rooms, built in 1965) for the legal reference rent beside the market.
EXAMPLE = {"surface_m2": 30, "current_rent_eur": 1200, "quartier": "Belleville", "rooms": 2, "built": 1965}


def example_estimate(ctx: Context, request: dict[str, Any] | None = None) -> list[str]:
    """The answer of the predict function (as API Gateway would call it) to the example request, as the
    lines ``rentlake estimate`` prints; empty when the function cannot answer."""
    from rentlake.cli.cmd_estimate import predict_handler, sentence
    from rentlake.runtime.events import http_api_event, response_body

    body = dict(request or EXAMPLE)
    headers = {"content-type": "application/json"}
    event = http_api_event("POST", "/estimates", json.dumps(body), headers=headers)
    handler = predict_handler(ctx)
    with function_stdout(ctx, "predict"):
        resp = handler(event, None)
    if resp.get("statusCode") != 200:
        return []
    answer = json.loads(response_body(resp))
    return sentence(float(body["surface_m2"]), answer, body.get("current_rent_eur")).splitlines()


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run the cycle; exit status 2 when no model can be trained, 1 when a file was rejected, else 0."""
    column_map = stages.parse_map(args.map, args.dataset)
    outcomes = stages.ingest_files(ctx, args.files, args.dataset, column_map)
    cleaned = stages.clean(ctx)
    explored = explore(ctx)
    modelled = train_and_evaluate(ctx, force=args.force_train)
    model = model_member(ctx, modelled)
    result: dict[str, Any] = {
        "rows": {
            "ingested": sum(o["rows"] for o in outcomes if o["status"] == "ingested"),
            "clean": cleaned["rows"]["clean"],
            "quarantined": cleaned["rows"]["quarantined"],
        },
        "objects": outcomes,
        "batches": [
            {k: r[k] for k in ("dataset", "ingestion_id", "rows", "reasons")} for r in cleaned["reports"]
        ],
        "report": ctx.where(explored["report_key"]) if explored.get("explored") else None,
        "model": model,
        "lake": str(ctx.local_root) if ctx.local_root else ctx.lake.uri(""),
    }
    why = refusal(modelled)
    if args.json:
        ctx.emit_json(result)
    else:
        _print_human(ctx, outcomes, cleaned, explored, result)
    rejected = stages.rejected_status(ctx, outcomes)
    if why is not None:
        print(f"rentlake: no model: {why}", file=sys.stderr)
        return 2
    return rejected


def _print_human(
    ctx: Context,
    outcomes: list[dict[str, Any]],
    cleaned: dict[str, Any],
    explored: dict[str, Any],
    result: dict[str, Any],
) -> None:
    print("ingest:", file=ctx.out)
    stages.print_outcomes(ctx, outcomes)
    print("clean:", file=ctx.out)
    stages.print_clean(ctx, cleaned)
    print("explore:", file=ctx.out)
    print_explore(ctx, explored)
    model = result["model"]
    print("model:", file=ctx.out)
    print_model(ctx, model)
    rows = result["rows"]
    print(
        f"\nsummary: {rows['ingested']:,} rows ingested, {rows['clean']:,} clean, "
        f"{rows['quarantined']:,} quarantined",
        file=ctx.out,
    )
    print("where to look:", file=ctx.out)
    print(f"  report:   {result['report'] or 'none (' + str(explored.get('reason')) + ')'}", file=ctx.out)
    if model["card"]:
        print(f"  model:    {model['card']}", file=ctx.out)
    if model["champion"]:
        now = " (promoted by this run)" if model["promoted"] else ""
        print(f"  champion: {model['champion']}{now}", file=ctx.out)
        for i, line in enumerate(example_estimate(ctx)):
            print(f"  {'example:' if i == 0 else '':9} {line}", file=ctx.out)
    else:
        print("  champion: none", file=ctx.out)
    print(
        f"  lake:     {result['lake']}  (zones: landing/ raw/ clean/ quarantine/ reports/ models/)",
        file=ctx.out,
    )
