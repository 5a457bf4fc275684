"""Errors of the light side, each mapped to one HTTP answer by :mod:`rentlake.runtime.api`."""

from __future__ import annotations

from dataclasses import dataclass, field


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
