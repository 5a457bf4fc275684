"""What the read-only routes answer about the champion: ``GET /model``, ``GET /quartiers`` and
``GET /plot-data`` (plain dicts, documented by :mod:`rentlake.runtime.schemas`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rentlake.legal.lookup import REQUEST_FIELDS, LegalLookupError, normalise_city
from rentlake.runtime.champion import LoadedModel
from rentlake.runtime.errors import ApiError, FieldProblem
from rentlake.runtime.schemas import SURFACE_M2

PLOT_GRID = 48
MAX_PLOT_POINTS = 500


def model_info(model: LoadedModel) -> dict[str, Any]:
    """What ``GET /model`` answers about the champion: version, dates, metrics, features, legal table."""
    card = model.card.raw
    return {
        "version": model.version,
        "model_name": model.card.model_name,
        "trained_at": model.card.trained_at,
        "promoted_at": model.pointer.get("promoted_at"),
        "metrics": model.card.metrics,
        "features": model.card.features,
        "feature_ranges": card.get("feature_ranges") or {},
        "interval": card.get("interval") or {"level": model.card.interval_level},
        "small_sample": card.get("small_sample"),
        "legal": legal_info(model),
    }


def legal_info(model: LoadedModel) -> dict[str, Any]:
    """What ``GET /model`` says about the reference table served with the champion."""
    table = model.legal
    if table is None:
        return {"available": False, "problem": model.no_table_hint}
    return {
        "available": True,
        "years": {city.lower(): table.years(city) for city in table.cities},
        "source": table.source.get("dataset") if isinstance(table.source, dict) else None,
        "fields": list(REQUEST_FIELDS),
    }


def quartier_list(model: LoadedModel, city: str | None) -> dict[str, Any]:
    """``GET /quartiers``: names and codes of a city's quartiers (Lille: IRIS codes) in the legal table.

    Raises
    ------
    ApiError
        422 naming ``city`` for a city the table does not cover.
    """
    try:
        key = normalise_city(city)
    except LegalLookupError as exc:
        raise ApiError(422, "invalid_request", exc.args[0], [FieldProblem(exc.field, exc.message)]) from exc
    table = model.legal
    if table is None or key not in table.cities:
        return {"city": key, "years": [], "quartiers": [], "hint": model.no_table_hint}
    names = table.cities[key].names
    rows = sorted(({"name": n, "code": c} for c, n in names.items()), key=lambda q: (q["name"], q["code"]))
    return {"city": key, "years": table.years(key), "quartiers": rows, "hint": None}


def plot_data(model: LoadedModel, district: str | None) -> dict[str, Any]:
    """``GET /plot-data``: the model's band over the trained surface range, and training points if any.

    The band is evaluated by the ONNX model itself over a grid of :data:`PLOT_GRID` surfaces (one
    inference call); the points come from the card's ``plot_sample`` (see :func:`card_points`).
    """
    lo = model.card.surface_min if model.card.surface_min is not None else SURFACE_M2[0]
    hi = model.card.surface_max if model.card.surface_max is not None else 250.0
    lo, hi = max(lo, 1.0), max(hi, lo + 1.0)
    step = (hi - lo) / (PLOT_GRID - 1)
    grid = [lo + i * step for i in range(PLOT_GRID)]
    districts = [district or ""] * PLOT_GRID if model.uses_district else None
    rent, low, high = model.predict(grid, districts)  # type: ignore[arg-type]
    band = [
        {"surface_m2": round(s, 2), "rent_eur": round(r, 1), "low": round(a, 1), "high": round(b, 1)}
        for s, r, a, b in zip(grid, rent.tolist(), low.tolist(), high.tolist(), strict=True)
    ]
    return {
        "model_version": model.version,
        "level": model.card.interval_level,
        "surface_range": [lo, hi],
        "district": district if model.uses_district else None,
        "band": band,
        "points": card_points(model.card.raw.get("plot_sample")),
    }


def card_points(sample: Any) -> list[list[float]]:
    """Training points from the card's ``plot_sample`` (``[[surface_m2, rent_eur], ...]`` or
    ``[{"surface_m2", "rent_eur"}, ...]``), at most :data:`MAX_PLOT_POINTS`; anything else gives none."""
    out: list[list[float]] = []
    if not isinstance(sample, list):
        return out
    for p in sample[:MAX_PLOT_POINTS]:
        if isinstance(p, Mapping):
            s, r = p.get("surface_m2"), p.get("rent_eur")
        elif isinstance(p, (list, tuple)) and len(p) >= 2:
            s, r = p[0], p[1]
        else:
            continue
        if isinstance(s, (int, float)) and isinstance(r, (int, float)) and s > 0 and r > 0:
            out.append([float(s), float(r)])
    return out
