"""``rentlake train``: train on the clean zone, then evaluate and gate the new version (the train and
evaluate functions, as the state machine chains them). Also the helpers ``rentlake pipeline`` uses."""

from __future__ import annotations

import argparse
from typing import Any

from rentlake import registry
from rentlake.cli import stages
from rentlake.cli.context import Context
from rentlake.cli.errors import CliError
from rentlake.lake import keys


def register(sub: Any) -> None:
    """Add the ``train`` command."""
    p = sub.add_parser(
        "train",
        help="train a model on the clean listings, gate it and promote it when it passes",
        description="Run the train function on the clean zone (a registry version under models/<version>/: "
        "ONNX model, card, metrics, plots, held-out rows), then the evaluate function: held-out metrics, "
        "the champion scored on the same rows, the quality gate, and the switch of models/champion.json "
        "when the gate passes. With no new clean data since the champion (or since the last version the "
        "gate judged) training is skipped and nothing changes; --force trains anyway. Too little or "
        "degenerate data is refused with its reason (exit status 2).",
    )
    p.add_argument("--dataset", default="listings", help="dataset to train on (default: listings)")
    p.add_argument("--seed", type=int, default=None, help="seed of the split and folds (default 42)")
    p.add_argument("--force", action="store_true", help="train even if the clean data has not changed")
    p.add_argument(
        "--no-promote", action="store_true", help="evaluate and gate, but never switch the champion"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="allowed relative MAE degradation versus the champion (default 0.05)",
    )
    p.add_argument("--json", action="store_true", help="print the train and evaluate answers as JSON")
    p.set_defaults(run=run)


def train_and_evaluate(
    ctx: Context,
    *,
    dataset: str = "listings",
    seed: int | None = None,
    force: bool = False,
    promote: bool = True,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Invoke the train function, then the evaluate function on its answer.

    Parameters
    ----------
    ctx
        The CLI context.
    dataset, seed, force
        The train request.
    promote, tolerance
        The evaluate request (used when a version was trained).

    Returns
    -------
    dict
        ``{"train": <train answer>, "evaluate": <evaluate answer>}``.
    """
    request: dict[str, Any] = {"dataset": dataset, "force": force}
    if seed is not None:
        request["seed"] = seed
    ctx.progress(f"training on the clean {dataset}")
    trained = stages.invoke(ctx, "train", request)
    event: dict[str, Any] = trained
    if trained.get("trained"):
        event = {"version": trained["version"], "promote": promote}
        if tolerance is not None:
            event["tolerance"] = tolerance
        ctx.progress(f"evaluating {trained['version']} against the champion")
    evaluated = stages.invoke(ctx, "evaluate", event)
    return {"train": trained, "evaluate": evaluated}


def model_member(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` member of ``pipeline --json``: version, promoted, metrics, gate, champion, card.

    ``version`` is the trained version, or the one training was skipped for (no new data); None when the
    data was refused. ``metrics`` are that version's held-out metrics; ``small_sample`` the card's field;
    ``held`` / ``newly_held`` the batches held for review (all of them / by this run).
    """
    trained, evaluated = result["train"], result["evaluate"]
    version = trained.get("version")
    metrics = trained.get("metrics") or evaluated.get("metrics")
    if version and not metrics:
        card = registry.read_card(ctx.lake, version)
        metrics = {k: v for k, v in card.metrics.items() if k in registry.HEADLINE}
    pointer = registry.read_pointer(ctx.lake)
    return {
        "version": version,
        "trained": bool(trained.get("trained")),
        "skipped": bool(trained.get("skipped")),
        "reason": trained.get("reason"),
        "promoted": bool(evaluated.get("promoted")),
        "metrics": metrics,
        "gate": evaluated.get("gate"),
        "small_sample": trained.get("small_sample"),
        "held": trained.get("held") or [],
        "newly_held": trained.get("newly_held") or [],
        "champion": pointer.version if pointer else None,
        "card": ctx.where(keys.model_file(version, registry.CARD_HTML)) if version else None,
    }


def print_held(ctx: Context, model: dict[str, Any]) -> None:
    """One line per batch held for review, with how to accept it."""
    new = {b["ingestion_id"] for b in model.get("newly_held", [])}
    for b in model.get("held", []):
        when = "now held" if b["ingestion_id"] in new else "held"
        print(
            f"  {when:9} batch {b['ingestion_id']} ({b['rows']:,} rows) out of training: {b['reason']}",
            file=ctx.out,
        )
        print(f"            accept it with: rentlake batches accept {b['ingestion_id']}", file=ctx.out)


def print_model(ctx: Context, model: dict[str, Any]) -> None:
    """Human lines for the train + evaluate outcome."""
    print_held(ctx, model)
    if not model["trained"] and not model["skipped"]:
        print(f"  no model: {model['reason']}", file=ctx.out)
        return
    if model["skipped"]:
        print(f"  training skipped: {model['reason']}", file=ctx.out)
        return
    m = model["metrics"] or {}
    print(
        f"  trained   {model['version']}: held-out MAE {m.get('mae', float('nan')):.0f} €, "
        f"R² {m.get('r2', float('nan')):.2f}, 90 % interval coverage {m.get('coverage', float('nan')):.2f} "
        f"(n = {m.get('n')})",
        file=ctx.out,
    )
    gate = model["gate"] or {}
    verdict = "PROMOTED to champion" if model["promoted"] else f"not promoted (gate: {gate.get('decision')})"
    if model.get("small_sample"):
        verdict += f" — {model['small_sample']['message']}"
    print(f"  gate      {verdict}", file=ctx.out)
    for reason in gate.get("reasons", []):
        print(f"              - {reason}", file=ctx.out)


def refusal(result: dict[str, Any]) -> str | None:
    """The reason training was refused (bad data), or None."""
    trained = result["train"]
    if not trained.get("trained") and not trained.get("skipped"):
        return str(trained.get("reason"))
    return None


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Train, evaluate, maybe promote; a data refusal is a CLI error with the function's reason."""
    result = train_and_evaluate(
        ctx,
        dataset=args.dataset,
        seed=args.seed,
        force=args.force,
        promote=not args.no_promote,
        tolerance=args.tolerance,
    )
    if args.json:
        ctx.emit_json(result)
    why = refusal(result)
    if why is not None:
        raise CliError(f"cannot train: {why}")
    if not args.json:
        model = model_member(ctx, result)
        print("train:", file=ctx.out)
        print_model(ctx, model)
        if model["card"]:
            print(f"  card:     {model['card']}", file=ctx.out)
        print(f"  champion: {model['champion'] or 'none'}", file=ctx.out)
    return 0
