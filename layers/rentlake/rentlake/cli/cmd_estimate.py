"""``rentlake estimate --surface 30``: ask the predict function, exactly as API Gateway would.

With ``--quartier``, ``--rooms`` and ``--built`` (and optionally ``--city``, ``--furnished``, ``--year``)
the answer adds the legal reference rent (encadrement des loyers) beside the market estimate.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rentlake.cli.context import LambdaContext, bound_handler, function_stdout
from rentlake.cli.errors import CliError
from rentlake.legal.lookup import REQUEST_FIELDS
from rentlake.runtime.events import http_api_event, response_body

Handler = Callable[..., dict[str, Any]]


def register(sub: Any) -> None:
    """Add the ``estimate`` command."""
    p = sub.add_parser(
        "estimate",
        help="estimate the rent of one listing with the champion model",
        description="Send one listing to the predict function's handler (functions/predict/app.py) as an "
        "API Gateway HTTP API event, using the lake's champion model, and print the answer: a sentence, "
        "or with --json the API's JSON body exactly.",
    )
    p.add_argument("--surface", required=True, metavar="M2", help="living area in m² (e.g. 30)")
    p.add_argument("--district", default=None, help="district, when the champion uses it (e.g. 75011)")
    p.add_argument(
        "--current-rent",
        default=None,
        metavar="EUR",
        help="rent paid now, €/month: adds a verdict (above/within/below) and a percentile",
    )
    legal = p.add_argument_group(
        "legal reference rent (encadrement des loyers)",
        "give --quartier, --rooms and --built to add the legal reference, minimum and maximum rents "
        "(and, with --current-rent, a legal verdict); information from the reference table, not legal advice",
    )
    legal.add_argument("--city", default=None, help="paris (default) or lille")
    legal.add_argument(
        "--quartier",
        default=None,
        help="Paris: quartier name or 7-digit code (e.g. Belleville, 7512077); Lille: 9-digit IRIS code",
    )
    legal.add_argument("--rooms", default=None, help="main rooms, 1-4 (more than 4 counts as 4)")
    legal.add_argument(
        "--built",
        default=None,
        metavar="YEAR_OR_PERIOD",
        help="construction year (e.g. 1965) or period ('Avant 1946', '1946-1970', '1971-1990', 'Apres 1990')",
    )
    legal.add_argument("--furnished", action="store_true", default=None, help="furnished letting")
    legal.add_argument("--year", default=None, help="year of the reference table (default: the latest)")
    p.add_argument("--json", action="store_true", help="print the API's JSON body")
    p.set_defaults(run=run)


def predict_handler(ctx: Any) -> Handler:
    """The predict function's handler, imported by path from ``ctx.functions_dir``, serving ``ctx.lake``.

    Parameters
    ----------
    ctx
        The CLI context (``lake``, ``functions_dir``).

    Returns
    -------
    callable
        ``handler(event, context=None) -> response``; without a context it is called, as Lambda would,
        with a Lambda-like one (Powertools reads the function's name and request id from it).
    """
    handler = bound_handler(ctx, "predict")

    def invoke(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return handler(event, context if context is not None else LambdaContext("predict"))

    return invoke


def _number(text: str | None) -> float | str | None:
    """A number when the text is one; otherwise the text itself, so the API names the problem."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _integer(text: str | None) -> int | str | None:
    """An int when the text is a whole number; otherwise the text, so the API names the problem."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped.lstrip("+-").isdigit():
        return int(stripped)
    return text


def euros(x: float) -> str:
    """``1190`` -> ``'1 190'`` (French grouping)."""
    return f"{round(x):,}".replace(",", " ")


def sentence(surface: float, answer: dict[str, Any], current: float | None) -> str:
    """The human answer: estimate, interval, verdict and warnings."""
    iv = answer["interval"]
    lines = [
        f"{surface:g} m²: about {euros(answer['rent_eur'])} €/month, {iv['level'] * 100:g} % interval "
        f"{euros(iv['low'])}–{euros(iv['high'])} € (model {answer['model_version']})."
    ]
    if current is not None and "verdict" in answer:
        where = {"above": "above", "within": "within", "below": "below"}[answer["verdict"]]
        pct = answer.get("percentile")
        extra = f" (higher than {pct:.0f} % of comparable rents)" if pct is not None else ""
        lines.append(f"At {euros(current)} €/month you pay {where} the market interval{extra}.")
    lines += legal_lines(answer)
    lines += [f"warning: {w}" for w in answer.get("warnings", [])]
    return "\n".join(lines)


_LEGAL_VERDICT = {
    "above_max": "above the legal maximum",
    "within": "between the legal minimum and maximum",
    "below_min": "below the legal minimum",
}


def legal_lines(answer: dict[str, Any]) -> list[str]:
    """The legal reference rent's lines of the human answer (or the hint)."""
    lg = answer.get("legal")
    if not lg:
        hint = answer.get("legal_hint")
        return [f"legal: {hint}"] if hint else []
    q = lg["quartier"]
    lines = [
        f"Legal reference rent ({lg['city'].title()} {lg['year']}, {q['name']} {q['code']}, {lg['rooms']} "
        f"room(s), {lg['period']}, {'furnished' if lg['furnished'] else 'unfurnished'}): "
        f"{lg['ref_eur_m2']:g} €/m² -> {lg['ref_rent_eur']:.2f} €/month; legal band "
        f"{lg['min_rent_eur']:.2f}–{lg['max_rent_eur']:.2f} €/month "
        f"({lg['min_eur_m2']:g}–{lg['max_eur_m2']:g} €/m²)."
    ]
    if lg.get("verdict"):
        lines.append(f"At {euros(lg['current_rent_eur'])} €/month you pay {_LEGAL_VERDICT[lg['verdict']]}.")
    lines.append(lg["notice"])
    return lines


def error_message(payload: Any, status: int) -> str:
    """``message: field: problem; ...`` from the API's error body."""
    err = payload.get("error", {}) if isinstance(payload, dict) else {}
    msg = str(err.get("message") or f"the API answered {status}")
    fields = "; ".join(f"{f['field']}: {f['problem']}" for f in err.get("fields", []))
    return f"{msg} ({fields})" if fields else msg


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Estimate one listing; CliError with the API's message when it is refused."""
    listing: dict[str, Any] = {"surface_m2": _number(args.surface)}
    if args.district is not None:
        listing["district"] = args.district
    if args.current_rent is not None:
        listing["current_rent_eur"] = _number(args.current_rent)
    for name in REQUEST_FIELDS:  # the legal fields: whole numbers where the API takes them
        value = getattr(args, name, None)
        value = _integer(value) if name in ("rooms", "built", "year") else value
        if value is not None:
            listing[name] = value
    event = http_api_event(
        "POST", "/estimates", json.dumps(listing), headers={"content-type": "application/json"}
    )
    handler = predict_handler(ctx)
    with function_stdout(ctx, "predict"):  # its EMF lines must not precede the --json body
        resp = handler(event)
    raw = response_body(resp).decode("utf-8")
    payload = json.loads(raw)
    if args.json:
        print(raw, file=ctx.out)
    if resp["statusCode"] != 200:
        raise CliError(error_message(payload, resp["statusCode"]))
    if not args.json:
        print(sentence(float(listing["surface_m2"]), payload, listing.get("current_rent_eur")), file=ctx.out)
    return 0
