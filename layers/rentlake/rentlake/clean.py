"""Cleaning rules (pure: frames in, frames and reasons out; no S3).

Every rule is vectorised and returns ``(reason code, mask of rejected rows)`` pairs, so a row can carry
several reasons. The stage that drives these functions over a batch (:mod:`rentlake.jobs`) keeps the
invariant rows in = rows clean + rows quarantined.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from rentlake.contracts import Column, Contract

_UNIT_TOKENS = re.compile(r"(?:€|eur(?:os?)?|m²|m2|/mois|/month|[\s\u00a0\u202f'’])", re.I)
_THOUSANDS_COMMA = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+$")
_THOUSANDS_DOT = re.compile(r"^[-+]?\d{1,3}(?:\.\d{3})+$")
_TRUE = {"1", "true", "yes", "oui", "vrai", "y", "t", "meuble", "furnished"}
_FALSE = {"0", "false", "no", "non", "faux", "n", "f", "non_meuble", "unfurnished", "vide"}


@dataclass(frozen=True)
class CleanParams:
    """Thresholds of the statistical checks; recorded in every batch report.

    Parameters
    ----------
    mad_k
        A value is an outlier when it lies more than ``mad_k`` scaled MADs (1.4826 · MAD, a robust
        standard deviation) from its group's median. 4 keeps every plausible flat of the course data
        and rejects the 111 €/m² listing and every surface that lost a zero.
    min_group
        Groups with fewer rows than this use the statistics of the whole pool; a pool smaller than this
        is not checked at all (too few rows for a robust statistic to mean anything).
    min_scale
        Floor of the scaled MAD.
    """

    mad_k: float = 4.0
    min_group: int = 30
    # Floor of the scaled MAD (in the checked quantity's units, here log €/m²: 5 %), so a pool of
    # near-identical values does not turn every small difference into an outlier.
    min_scale: float = 0.05

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def coerce_number(raw: pd.Series, *, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse numbers written by people: ``"1 200,50 €"``, ``"1,200.5"``, ``"30 m²"``.

    Parameters
    ----------
    raw
        Values as strings (missing values as NA).
    decimal_comma
        Whether the file writes decimals with a comma (a semicolon-separated file); decides ``"1,200"``
        (1.2 in such a file, 1 200 otherwise) and ``"1.200"`` (1 200 in such a file, 1.2 otherwise).

    Returns
    -------
    values, not_a_number, not_finite
        The float values (NaN where missing or invalid) and the masks of values that are present but not
        numbers, or numbers that are NaN or infinite.
    """
    text = raw.astype("string").str.strip()
    present = text.notna().to_numpy() & (text.fillna("") != "").to_numpy()
    values = pd.to_numeric(text.where(present), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    slow = present & np.isnan(values)
    if decimal_comma:  # "1.200" is 1 200 in a file that writes decimals with a comma
        slow |= present & text.str.contains(".", regex=False).fillna(False).to_numpy()
    if slow.any():
        # Only the values the fast parser refused go through the string rules below.
        sub = text[slow].str.replace(_UNIT_TOKENS, "", regex=True)
        has_c = sub.str.contains(",", regex=False)
        has_d = sub.str.contains(".", regex=False)
        both = has_c & has_d
        last_comma = sub.str.rfind(",") > sub.str.rfind(".")
        fixed = sub.copy()
        fixed = fixed.mask(both & last_comma, sub.str.replace(".", "", regex=False).str.replace(",", "."))
        fixed = fixed.mask(both & ~last_comma, sub.str.replace(",", "", regex=False))
        only_c = has_c & ~has_d
        thousands_c = sub.str.match(_THOUSANDS_COMMA) & (not decimal_comma)
        fixed = fixed.mask(only_c & thousands_c, sub.str.replace(",", "", regex=False))
        fixed = fixed.mask(only_c & ~thousands_c, sub.str.replace(",", ".", regex=False))
        only_d = has_d & ~has_c
        thousands_d = sub.str.match(_THOUSANDS_DOT) & decimal_comma
        fixed = fixed.mask(only_d & thousands_d, sub.str.replace(".", "", regex=False))
        values[slow] = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    lowered = text.str.lower().str.lstrip("+-")
    nonfinite_text = lowered.isin(["nan", "inf", "infinity", "-inf", "+inf"]).fillna(False).to_numpy()
    not_finite = present & (np.isinf(values) | nonfinite_text)
    not_a_number = present & np.isnan(values) & ~not_finite
    values[not_finite] = np.nan
    return values, not_a_number, not_finite


def coerce_date(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse dates (ISO 8601 first, then day-first as written in France); returns values and invalid mask."""
    text = raw.astype("string").str.strip()
    present = text.notna().to_numpy() & (text.fillna("") != "").to_numpy()
    values = pd.to_datetime(text.where(present), errors="coerce", format="ISO8601", utc=True)
    retry = present & values.isna().to_numpy()
    if retry.any():
        values = values.copy()
        values[retry] = pd.to_datetime(text[retry], errors="coerce", dayfirst=True, utc=True, format="mixed")
    values = values.dt.tz_convert(None).astype("datetime64[us]")
    invalid = present & values.isna().to_numpy()
    return values, invalid


def coerce_bool(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse booleans written as 0/1, true/false, oui/non, meublé/non meublé."""
    from rentlake.contracts import normalise_name

    text = raw.astype("string").str.strip()
    present = text.notna().to_numpy() & (text.fillna("") != "").to_numpy()
    uniques = pd.unique(text.dropna())
    table: dict[str, object] = {}
    for u in uniques:
        norm = normalise_name(str(u))
        if norm.endswith("_0") or norm in ("1_0", "0_0"):
            norm = norm.split("_")[0]
        table[u] = True if norm in _TRUE else (False if norm in _FALSE else pd.NA)
    values = text.map(table).astype("boolean")
    invalid = present & values.isna().to_numpy()
    return values, invalid


def _coerce_column(
    col: Column, raw: pd.Series, factor: float, decimal_comma: bool
) -> tuple[pd.Series, list[tuple[str, np.ndarray]]]:
    reasons: list[tuple[str, np.ndarray]] = []
    n = len(raw)
    if col.kind in ("float", "int"):
        values, nan_mask, inf_mask = coerce_number(raw, decimal_comma=decimal_comma)
        values = values * factor
        reasons += [(f"{col.name}_not_a_number", nan_mask), (f"{col.name}_not_finite", inf_mask)]
        if col.kind == "int":
            frac = np.isfinite(values) & (values != np.round(values))
            # Beyond 64 bits ("1e30") is no integer a column can hold: casting it would fail the batch.
            huge = np.isfinite(values) & (np.abs(values) >= 2.0**63)
            reasons.append((f"{col.name}_not_an_integer", frac | huge))
            series = pd.Series(np.where(huge, np.nan, values)).round().astype("Int64")
        else:
            series = pd.Series(values, dtype="float64")
        known = np.isfinite(values)
        if col.min is not None:
            reasons.append((f"{col.name}_below_min", known & (values < col.min)))
        if col.max is not None:
            reasons.append((f"{col.name}_above_max", known & (values > col.max)))
        missing = ~known & ~nan_mask & ~inf_mask
    elif col.kind == "date":
        series, invalid = coerce_date(raw)
        reasons.append((f"{col.name}_invalid_date", invalid))
        now = pd.Timestamp.now(tz="UTC").tz_convert(None) + pd.Timedelta(days=1)
        vals = series.to_numpy()
        reasons.append((f"{col.name}_in_future", ~np.isnat(vals) & (vals > now.to_datetime64())))
        missing = series.isna().to_numpy() & ~invalid
    elif col.kind == "bool":
        series, invalid = coerce_bool(raw)
        reasons.append((f"{col.name}_not_a_boolean", invalid))
        missing = series.isna().to_numpy() & ~invalid
    else:
        series = raw.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
        series = series.mask(series == "")
        if col.normaliser is not None:
            series = col.normaliser(series)
        if col.choices:
            canon = {c.casefold(): c for c in col.choices}
            mapped = series.str.casefold().map(canon)
            unknown = series.notna().to_numpy() & mapped.isna().to_numpy()
            reasons.append((f"{col.name}_unknown_value", unknown))
            series = mapped.astype("string")
            # A value given but unknown is reported as such, not also as missing.
            missing = series.isna().to_numpy() & ~unknown
        else:
            missing = series.isna().to_numpy()
    if col.required:
        reasons.append((f"missing_{col.name}", missing & np.ones(n, dtype=bool)))
    return series.reset_index(drop=True), reasons


def type_chunk(
    raw: pd.DataFrame,
    contract: Contract,
    *,
    factors: dict[str, float] | None = None,
    decimal_comma: bool = False,
) -> tuple[pd.DataFrame, list[tuple[str, np.ndarray]]]:
    """Coerce a raw chunk (strings) to the contract's types and check every column.

    Parameters
    ----------
    raw
        A raw chunk: canonical columns as strings, plus ``raw_problem``.
    contract
        The dataset contract.
    factors
        Unit factors of the source header (e.g. 1/12 for a yearly rent column).
    decimal_comma
        Whether the source file writes decimals with a comma.

    Returns
    -------
    typed, reasons
        The typed frame (contract columns only, index 0..n-1) and ``(code, mask)`` pairs.
    """
    factors = factors or {}
    raw = raw.reset_index(drop=True)
    typed = pd.DataFrame(index=raw.index)
    reasons: list[tuple[str, np.ndarray]] = []
    for col in contract.columns:
        series, col_reasons = _coerce_column(col, raw[col.name], factors.get(col.name, 1.0), decimal_comma)
        typed[col.name] = series
        reasons += col_reasons
    if "raw_problem" in raw:
        problem = raw["raw_problem"].astype("string")
        malformed = problem.str.startswith("malformed_row").fillna(False).to_numpy()
        # A row the parser could not split has no columns to check: its one reason is that.
        reasons = [(c, m & ~malformed) for c, m in reasons]
        reasons.append(("malformed_row", malformed))
        reasons.append(("field_too_long", problem.str.startswith("field_too_long").fillna(False).to_numpy()))
    for rule in contract.row_rules:
        reasons += rule(typed)
    return typed, [(c, m) for c, m in reasons if m.any()]


def row_hashes(typed: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (equal rows, equal hashes)."""
    if not columns:
        return np.zeros(len(typed), dtype="int64")
    return pd.util.hash_pandas_object(typed[columns], index=False).to_numpy().view("int64")


def reasons_to_series(n: int, reasons: list[tuple[str, np.ndarray]]) -> pd.Series:
    """Join reason codes per row (``"a;b"``); NA for rows with none."""
    out = np.full(n, "", dtype=object)
    for code, mask in reasons:
        idx = np.flatnonzero(mask)
        if idx.size:
            out[idx] = np.where(out[idx] == "", code, out[idx] + ";" + code)
    series = pd.Series(out, dtype="string")
    return series.mask(series == "")


def robust_bounds(
    values: np.ndarray, groups: np.ndarray | None, params: CleanParams
) -> dict[Any, dict[str, float]]:
    """Median and scaled MAD per group label (and ``"*"`` for the whole pool), with the accepted bounds.

    Parameters
    ----------
    values
        The checked quantity for the pool (finite values only are used).
    groups
        Group label of each value, or None for one group.
    params
        Thresholds.
    """

    def stats(v: np.ndarray) -> dict[str, float]:
        med = float(np.median(v))
        mad = max(float(np.median(np.abs(v - med))) * 1.4826, params.min_scale)
        return {
            "n": int(v.size),
            "median": med,
            "scaled_mad": mad,
            "low": med - params.mad_k * mad,
            "high": med + params.mad_k * mad,
        }

    ok = np.isfinite(values)
    if ok.sum() < params.min_group:
        return {}
    out: dict[Any, dict[str, float]] = {"*": stats(values[ok])}
    if groups is not None:
        g = groups[ok]
        v = values[ok]
        labels, inverse = np.unique(g, return_inverse=True)
        for i, label in enumerate(labels.tolist()):
            sel = v[inverse == i]
            if sel.size >= params.min_group:
                out[label] = stats(sel)
    return out


def robust_outliers(
    values: np.ndarray, groups: np.ndarray | None, bounds: dict[Any, dict[str, float]]
) -> np.ndarray:
    """Mask of values outside their group's bounds (the pool's when the group is too small).

    Works group by group with boolean masks only, so the extra memory is a few bytes a row.
    """
    out = np.zeros(values.shape, dtype=bool)
    if not bounds:
        return out
    with np.errstate(invalid="ignore"):
        own = np.zeros(values.shape, dtype=bool)  # rows whose group has its own statistics
        if groups is not None:
            for label, b in bounds.items():
                if label == "*":
                    continue
                sel = groups == label
                own |= sel
                out |= sel & ((values < b["low"]) | (values > b["high"]))
        pool = bounds["*"]
        out |= ~own & ((values < pool["low"]) | (values > pool["high"]))
    return out
