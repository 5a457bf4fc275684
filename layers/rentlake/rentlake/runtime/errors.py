"""Errors of the light side, and how each becomes one HTTP answer.

Every refusal is a 4xx (or a 503 while no model can be served) with the body
``{"error": {"code", "message", "fields": [{"field", "problem"}]}}``; nothing else leaks (no stack trace,
no internal path). :func:`validation_error` turns pydantic's errors into that shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of a request (``listings[3].surface_m2``)."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@dataclass
class ApiError(Exception):
    """A request the API refuses; rendered as ``{"error": {"code", "message", "fields"}}``.

    Parameters
    ----------
    status
        HTTP status (4xx, or 503 when the service cannot answer yet).
    code
        Stable machine-readable code (``invalid_request``, ``payload_too_large``...).
    message
        Sentence for people; never contains a stack trace or an internal path.
    fields
        The fields at fault, if any.
    """

    status: int
    code: str
    message: str
    fields: list[FieldProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, object]:
        """The JSON body of the error answer."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "fields": [f.as_dict() for f in self.fields],
            }
        }


class ModelUnavailable(RuntimeError):
    """No usable champion model: none promoted yet, or the first load failed (HTTP 503).

    Parameters
    ----------
    message
        Public sentence, safe in an HTTP answer (no bucket, key or library internals).
    detail
        What went wrong underneath, for the logs only.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail

    def __str__(self) -> str:
        return str(self.args[0])

    def for_logs(self) -> str:
        return f"{self.args[0]} ({self.detail})" if self.detail else str(self.args[0])


# ------------------------------------------------------------------------------ validation -> errors
_PROBLEMS: dict[str, str] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "finite_number": "must be a finite number (NaN and Infinity are refused)",
    "float_type": "must be a number (not a string, boolean or null)",
    "int_type": "must be a whole number (not a string, boolean or null)",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "union_tag_not_found": 'the body must be a JSON object: a listing or {"listings": [...]}',
    "union_tag_invalid": 'the body must be a JSON object: a listing or {"listings": [...]}',
}
_BOUNDS = ("greater_than", "greater_than_equal", "less_than_equal")


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "batch", "listings", 3, "surface_m2")`` -> ``"listings[3].surface_m2"``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query"):
        parts = parts[1:]
    if parts and parts[0] in ("listing", "batch"):  # discriminated-union tags, not fields
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _problem(err: Mapping[str, Any], domains: Mapping[str, str]) -> str:
    kind = str(err.get("type", ""))
    loc = tuple(err.get("loc", ()))
    if kind == "missing" and loc == ("body",):
        return 'the body is empty; send a listing such as {"surface_m2": 30}'
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS and loc and loc[-1] in domains:
        return domains[loc[-1]]
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must not be negative (at least {ctx.get('ge')})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}; this value is not plausible"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items per request"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s) required"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be empty"
    return _PROBLEMS.get(kind) or str(err.get("msg") or kind)


def validation_error(
    errors: Sequence[Mapping[str, Any]], domains: Mapping[str, str] | None = None
) -> ApiError:
    """Turn pydantic's (Powertools') validation errors into the API's error.

    Parameters
    ----------
    errors
        The validation errors (``type``, ``loc``, ``ctx``, ``msg``).
    domains
        Field name -> the problem to name when either of its bounds is crossed (a domain, like the
        surface's, rather than a plausibility limit).

    Returns
    -------
    ApiError
        400 for malformed JSON, otherwise 422 naming each field at fault once.
    """
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e.get("ctx") or {} for e in errors if e.get("type") == "json_invalid")
        where = next((e["loc"][1] for e in errors if len(e.get("loc", ())) > 1), None)
        at = f" at character {where}" if where is not None else ""
        return malformed(
            f"the body is not valid JSON: {ctx.get('error', 'invalid JSON')}{at}", "malformed JSON"
        )
    fields: list[FieldProblem] = []
    seen: set[FieldProblem] = set()
    for e in errors:
        fp = FieldProblem(field_path(e.get("loc", ())), _problem(e, domains or {}))
        if fp not in seen:  # unions may report one problem twice
            seen.add(fp)
            fields.append(fp)
    return ApiError(422, "invalid_request", f"invalid request: {field_names(fields)}", fields)


def field_names(fields: Sequence[FieldProblem]) -> str:
    """The fields at fault for a message: the first five, then an ellipsis."""
    return ", ".join(f.field for f in fields[:5]) + (" …" if len(fields) > 5 else "")


def malformed(message: str, problem: str) -> ApiError:
    """A 400 for a body that cannot be read as JSON at all."""
    return ApiError(400, "malformed_json", message, [FieldProblem("body", problem)])


def error_response(err: ApiError) -> dict[str, Any]:
    """The API Gateway v2 response of a refusal made outside routing (before, or instead of, it)."""
    return {
        "statusCode": err.status,
        "headers": {"Content-Type": JSON},
        "body": json.dumps(err.body(), ensure_ascii=False),
        "isBase64Encoded": False,
    }
