"""Cleaning rules: the clean stage's decisions (pure: frames and arrays in, masks and reasons out; no I/O).

Row rules are vectorised and return ``(reason code, mask of rejected rows)`` pairs, so a row can carry
several reasons. The batch-wide decisions (exact duplicates, conflicting keys, robust outliers) take a
few arrays per row of the batch (:class:`BatchChecks`) and what they need of the clean rows already
committed (:class:`History`: the hashes the batch can match, and sketches of the checked value, see
:mod:`rentlake.summaries`), and return one mask each (:func:`decide`). The stage that drives these over a
batch (:mod:`rentlake.stages.clean`) keeps the invariant rows in = rows clean + rows quarantined.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rentlake.contracts import Column, Contract
from rentlake.parsing import LINEAGE, raw_dtype
from rentlake.summaries import Sketch, merge_groups, sketch_bounds, sketch_groups

_UNIT_TOKENS = re.compile(r"(?:€|eur(?:os?)?|m²|m2|/mois|/month|[\s\u00a0\u202f'’])", re.I)
_THOUSANDS_COMMA = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+$")
_THOUSANDS_DOT = re.compile(r"^[-+]?\d{1,3}(?:\.\d{3})+$")
# Numbers as most files write them: digits, then a decimal point and digits, at most 15 digits each side.
# Arrow's parser reads these to the same double as the rules below (both round correctly), at a fraction
# of their cost; every other value (signs, exponents, spaces, units, commas...) goes through the rules.
_PLAIN_NUMBER = r"^[0-9]{1,15}(?:\.[0-9]{0,15})?$"
# In a file that writes decimals with a comma, a point is a thousands separator: only digits are plain.
_PLAIN_INTEGER = r"^[0-9]{1,15}$"
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
    duplicate_window_days
        A row is a duplicate of a clean row with the same values seen at most this many days apart (seen:
        the listing date when the row has one, else the ingestion day; see :mod:`rentlake.summaries`).
    """

    mad_k: float = 4.0
    min_group: int = 30
    # Floor of the scaled MAD (in the checked quantity's units, here log €/m²: 5 %), so a pool of
    # near-identical values does not turn every small difference into an outlier.
    min_scale: float = 0.05
    duplicate_window_days: int = 180

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def as_strings(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Values as one Arrow string array: what the rules read (pandas' ``string`` of each value).

    Parameters
    ----------
    values
        An Arrow column (a raw file's), or a pandas Series of any type (converted as ``astype("string")``
        converts it).
    """
    if isinstance(values, pd.Series):
        values = pa.array(values.astype("string"))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return values


def _string_series(values: pa.Array) -> pd.Series:
    """An Arrow string array as the pandas ``string`` Series the rules take (no copy)."""
    return pd.Series(pd.arrays.ArrowStringArray(values))


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array as a numpy mask, null as False."""
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _distinct(text: pa.Array) -> tuple[pd.Series, np.ndarray]:
    """The distinct values of a column (as a pandas ``string`` Series, NA last) and each row's place in it."""
    encoded = pc.dictionary_encode(text)
    dictionary = encoded.dictionary
    codes = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False).astype(np.intp)
    return _string_series(pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])), codes


def coerce_number(
    raw: pd.Series | pa.Array | pa.ChunkedArray, *, decimal_comma: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse numbers written by people: ``"1 200,50 €"``, ``"1,200.5"``, ``"30 m²"``.

    Plain numbers (``"1200.50"``) are parsed by Arrow in one pass; the others go through the rules of
    :func:`_coerce_number_text`, which give a plain number the same value.

    Parameters
    ----------
    raw
        Values (as strings, or anything pandas' ``string`` type converts), missing values as NA.
    decimal_comma
        Whether the file writes decimals with a comma (a semicolon-separated file); decides ``"1,200"``
        (1.2 in such a file, 1 200 otherwise) and ``"1.200"`` (1 200 in such a file, 1.2 otherwise).

    Returns
    -------
    values, not_a_number, not_finite
        The float values (NaN where missing or invalid) and the masks of values that are present but not
        numbers, or numbers that are NaN or infinite.
    """
    text = as_strings(raw)
    n = len(text)
    values = np.full(n, np.nan)
    not_a_number = np.zeros(n, dtype=bool)
    not_finite = np.zeros(n, dtype=bool)
    plain = _mask(pc.match_substring_regex(text, _PLAIN_INTEGER if decimal_comma else _PLAIN_NUMBER))
    if plain.any():
        parsed = pc.cast(text.filter(pa.array(plain)), pa.float64())
        values[plain] = parsed.to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(~plain & _mask(text.is_valid()))
    if rest.size:
        # The other values are few and often the same ("n/a"): the rules see each distinct one once.
        uniques, codes = _distinct(text.take(pa.array(rest)))
        parsed, nan, inf = _coerce_texts(uniques, decimal_comma)
        values[rest], not_a_number[rest], not_finite[rest] = parsed[codes], nan[codes], inf[codes]
    return values, not_a_number, not_finite


# What _coerce_number_text made of each value met: a file's few non-plain values ("n/a", "1 200 €")
# come back in every chunk, and the rules cost a dozen passes of pandas however few values they see.
_TEXT_NUMBERS: dict[tuple[str, bool], tuple[float, bool, bool]] = {}
_TEXT_NUMBERS_MAX = 100_000


def _coerce_texts(texts: pd.Series, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_coerce_number_text` of distinct values, each worked out once per process."""
    keys = [(None if pd.isna(t) else str(t), decimal_comma) for t in texts.tolist()]
    found = {i: hit for i, key in enumerate(keys) if (hit := _TEXT_NUMBERS.get(key)) is not None}
    missing = [i for i in range(len(keys)) if i not in found]
    if missing:
        values, nan, inf = _coerce_number_text(texts.iloc[missing].reset_index(drop=True), decimal_comma)
        if len(_TEXT_NUMBERS) > _TEXT_NUMBERS_MAX:
            _TEXT_NUMBERS.clear()
        for j, i in enumerate(missing):
            found[i] = _TEXT_NUMBERS[keys[i]] = (float(values[j]), bool(nan[j]), bool(inf[j]))
    rows = [found[i] for i in range(len(keys))]
    parsed = np.array([r[0] for r in rows], dtype="float64")
    return parsed, np.array([r[1] for r in rows], dtype=bool), np.array([r[2] for r in rows], dtype=bool)


def _coerce_number_text(raw: pd.Series, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`coerce_number`'s rules, value by value: units, spaces, thousands and decimal separators."""
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
    col: Column, raw: pd.Series | pa.Array | pa.ChunkedArray, factor: float, decimal_comma: bool
) -> tuple[pd.Series, list[tuple[str, np.ndarray]]]:
    text = as_strings(raw)
    if col.kind in ("float", "int"):
        return _coerce_values(col, text, factor, decimal_comma)
    # Every rule of the other kinds is a function of the value alone, and such columns hold few distinct
    # values (districts, dates, flags): each distinct value is checked once, each row takes its result.
    uniques, codes = _distinct(text)
    series, reasons = _coerce_values(col, uniques, factor, decimal_comma)
    return series.take(codes).reset_index(drop=True), [(code, mask[codes]) for code, mask in reasons]


def _coerce_values(
    col: Column, raw: pd.Series | pa.Array, factor: float, decimal_comma: bool
) -> tuple[pd.Series, list[tuple[str, np.ndarray]]]:
    """The typed values of one column and the ``(reason, mask)`` pairs of its rules."""
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
    raw: pd.DataFrame | pa.Table,
    contract: Contract,
    *,
    factors: dict[str, float] | None = None,
    decimal_comma: bool = False,
) -> tuple[pd.DataFrame, list[tuple[str, np.ndarray]]]:
    """Coerce a raw chunk (strings) to the contract's types and check every column.

    Parameters
    ----------
    raw
        A raw chunk: canonical columns as strings, plus ``raw_problem`` (a frame, or an Arrow table as
        read from the raw zone).
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
    if isinstance(raw, pd.DataFrame):
        raw = raw.reset_index(drop=True)
    names = raw.column_names if isinstance(raw, pa.Table) else list(raw.columns)
    typed = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    reasons: list[tuple[str, np.ndarray]] = []
    for col in contract.columns:
        series, col_reasons = _coerce_column(col, raw[col.name], factors.get(col.name, 1.0), decimal_comma)
        typed[col.name] = series
        reasons += col_reasons
    if "raw_problem" in names:
        problem = as_strings(raw["raw_problem"])
        malformed = _mask(pc.starts_with(problem, "malformed_row"))
        # A row the parser could not split has no columns to check: its one reason is that.
        reasons = [(c, m & ~malformed) for c, m in reasons]
        reasons.append(("malformed_row", malformed))
        reasons.append(("field_too_long", _mask(pc.starts_with(problem, "field_too_long"))))
    for rule in contract.row_rules:
        reasons += rule(typed)
    return typed, [(c, m) for c, m in reasons if m.any()]


def row_hashes(typed: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (equal rows, equal hashes)."""
    if not columns:
        return np.zeros(len(typed), dtype="int64")
    return pd.util.hash_pandas_object(typed[columns], index=False).to_numpy().view("int64")


def reasons_at(rows: np.ndarray, reasons: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """The joined reason codes (``"a;b"``) of the given rows, in :func:`reasons_to_series`'s form.

    Parameters
    ----------
    rows
        Row positions (the quarantined rows of a chunk: a few of them, so the work is per row given).
    reasons
        ``(code, mask)`` pairs over the chunk.

    Returns
    -------
    numpy.ndarray
        One string per given row (None for a row without reasons).
    """
    out = np.full(len(rows), "", dtype=object)
    for code, mask in reasons:
        idx = np.flatnonzero(mask[rows])
        if idx.size:
            out[idx] = np.where(out[idx] == "", code, out[idx] + ";" + code)
    out[out == ""] = None
    return out


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
    if groups is not None and _small_codes(np.asarray(groups), bounds):
        return _coded_outliers(values, np.asarray(groups), bounds)
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


def _small_codes(groups: np.ndarray, bounds: dict[Any, dict[str, float]]) -> bool:
    """Whether the groups are group codes (:func:`group_codes`: integers from 0), as the bounds' labels."""
    labels = [label for label in bounds if label != "*"]
    return (
        groups.dtype.kind in "iu"
        and bool(groups.size)
        and int(groups.min()) >= 0
        and all(isinstance(label, int | np.integer) and label >= 0 for label in labels)
    )


def _coded_outliers(values: np.ndarray, codes: np.ndarray, bounds: dict[Any, dict[str, float]]) -> np.ndarray:
    """:func:`robust_outliers` for groups given as codes: each row's bounds (its group's, or the pool's)
    come from one table, instead of one pass over the rows per group."""
    labels = [label for label in bounds if label != "*"]
    size = max([int(codes.max()), *(int(label) for label in labels)]) + 1
    low, high = np.full(size, bounds["*"]["low"]), np.full(size, bounds["*"]["high"])
    for label in labels:
        low[int(label)], high[int(label)] = bounds[label]["low"], bounds[label]["high"]
    with np.errstate(invalid="ignore"):
        return (values < low[codes]) | (values > high[codes])


# ------------------------------------------------------------------------------------ table schemas
def clean_dtype(contract: Contract) -> dict[str, str]:
    """Athena types of the clean table: the contract's types, lineage and the row and key hashes."""
    kinds = {"float": "double", "int": "bigint", "str": "string", "date": "timestamp", "bool": "boolean"}
    dtype = {c.name: kinds[c.kind] for c in contract.columns}
    dtype.update({**dict.fromkeys(LINEAGE, "string"), "source_row": "bigint"})
    dtype.update({"row_hash": "bigint", "key_hash": "bigint"})
    return dtype


def quarantine_dtype(contract: Contract) -> dict[str, str]:
    """Athena types of the quarantine table: the raw row as received, plus its reasons."""
    return {**raw_dtype(contract), "reasons": "string"}


# ------------------------------------------------------------------------------------ one chunk
@dataclass
class CheckedChunk:
    """A raw chunk typed and checked: the typed rows, their reasons, and their hashes."""

    typed: pd.DataFrame
    reasons: list[tuple[str, np.ndarray]]
    row_hash: np.ndarray
    key_hash: np.ndarray | None

    @property
    def n(self) -> int:
        """Rows in the chunk."""
        return len(self.typed)


def check_chunk(
    raw: pd.DataFrame | pa.Table, contract: Contract, *, factors: dict[str, float], decimal_comma: bool
) -> CheckedChunk:
    """Type and check one raw chunk (:func:`type_chunk`) and hash its rows and keys (:func:`row_hashes`)."""
    typed, reasons = type_chunk(raw, contract, factors=factors, decimal_comma=decimal_comma)
    key_hash = row_hashes(typed, list(contract.key)) if contract.key else None
    return CheckedChunk(typed, reasons, row_hashes(typed, contract.column_names), key_hash)


def any_reason(n: int, reasons: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Mask of the rows that have at least one reason."""
    out = np.zeros(n, dtype=bool)
    for _, mask in reasons:
        out |= mask
    return out


def group_codes(labels: np.ndarray, names: dict[Any, int]) -> np.ndarray:
    """Small integer codes of group labels (4 bytes a row, not a string), the same across chunks and
    batches: ``names`` maps each label seen so far to its code, and learns the new ones."""
    inverse, uniques = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)
    table = np.array([names.setdefault(u, len(names)) for u in uniques.tolist()], dtype=np.int32)
    return table[inverse] if len(table) else np.zeros(len(labels), dtype=np.int32)


# ------------------------------------------------------------------------------------ batch-wide decisions
def _empty_int64() -> np.ndarray:
    return np.zeros(0, dtype="int64")


@dataclass
class BatchChecks:
    """What the decisions need of a batch: a few bytes per row, never the rows themselves.

    ``robust_value`` and ``robust_group`` (int32 codes, see :func:`group_codes`) are None when the
    contract has no robust check (or no group). ``seen`` (day numbers) and ``dated`` (seen on the row's
    own date) say when each row was seen (:func:`rentlake.summaries.seen_days`).
    """

    invalid: np.ndarray
    row_hash: np.ndarray
    key_hash: np.ndarray | None = None
    robust_value: np.ndarray | None = None
    robust_group: np.ndarray | None = None
    seen: np.ndarray | None = None
    dated: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Rows in the batch."""
        return len(self.invalid)

    @classmethod
    def concat(cls, parts: Sequence[BatchChecks]) -> BatchChecks:
        """The checks of a batch from those of its chunks, in order."""
        if not parts:
            return cls(np.zeros(0, dtype=bool), _empty_int64())

        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        return cls(
            np.concatenate([p.invalid for p in parts]),
            np.concatenate([p.row_hash for p in parts]),
            joined("key_hash"),
            joined("robust_value"),
            joined("robust_group"),
            joined("seen"),
            joined("dated"),
        )

    def clean_rows(self, decisions: Decisions) -> np.ndarray:
        """Mask of the rows that go to the clean zone under ``decisions``."""
        return ~(self.invalid | decisions.duplicate | decisions.conflicting_key | decisions.outlier)


@dataclass
class History:
    """What the decisions know of the clean rows committed before the batch.

    Not the rows: ``row_hash`` holds the hashes of the clean rows the batch's rows can be duplicates of
    (seen within the window, or sharing a key), ``key_hash`` / ``key_row`` the key and row hash of each
    clean row that shares a key with the batch, ``sketches`` the checked value of every clean row sketched
    per group code (``"*"`` without groups), and ``rows`` how many clean rows there are.
    """

    row_hash: np.ndarray = field(default_factory=_empty_int64)
    key_hash: np.ndarray = field(default_factory=_empty_int64)
    key_row: np.ndarray = field(default_factory=_empty_int64)
    sketches: dict[Any, Sketch] = field(default_factory=dict)
    rows: int = 0

    @property
    def n(self) -> int:
        """Clean rows in the history."""
        return self.rows

    @classmethod
    def of_rows(
        cls,
        row_hash: np.ndarray,
        key_hash: np.ndarray | None = None,
        robust_value: np.ndarray | None = None,
        robust_group: np.ndarray | None = None,
    ) -> History:
        """The history of whole clean rows: every row can be matched, every value is sketched.

        Parameters
        ----------
        row_hash
            Row hash of each clean row.
        key_hash
            Key hash of each clean row (None: a dataset without a key).
        robust_value, robust_group
            The checked value and group code of each clean row (None: no robust check, or no group).
        """
        sketches = {} if robust_value is None else sketch_groups(robust_value, robust_group)
        keys = _empty_int64() if key_hash is None else np.asarray(key_hash, dtype="int64")
        rows = np.asarray(row_hash, dtype="int64")
        return cls(rows, keys, rows if key_hash is not None else _empty_int64(), sketches, len(rows))

    def extend(self, other: History) -> History:
        """This history followed by ``other`` (what later commits add)."""
        return History(
            np.concatenate([self.row_hash, other.row_hash]),
            np.concatenate([self.key_hash, other.key_hash]),
            np.concatenate([self.key_row, other.key_row]),
            merge_groups(self.sketches, other.sketches),
            self.rows + other.rows,
        )


def duplicates(row_hash: np.ndarray, valid: np.ndarray, history_rows: np.ndarray) -> np.ndarray:
    """Valid rows equal to an earlier valid row of the batch or to a clean row (the first copy stays).

    Only valid rows count as first copies: equal typed values do not mean equal checks ("not a date" and
    an empty date are both NaT, but only the first is invalid), and a row is not a duplicate of a row that
    went to quarantine.
    """
    dup = np.zeros(len(row_hash), dtype=bool)
    rows = np.flatnonzero(valid)
    hashes = row_hash[rows]
    # Most rows are unique: a sort (fast on 64-bit integers) finds the hashes seen more than once, and
    # only the rows of those go through the order-keeping duplicate search.
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        again = rows[_isin_sorted(hashes, np.unique(repeated))]
        dup[again] = pd.Series(row_hash[again]).duplicated(keep="first").to_numpy()
    if len(history_rows):
        dup |= valid & pd.Series(row_hash).isin(history_rows).to_numpy()
    return dup


def _isin_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """Mask of the values (64-bit hashes) found in ``sorted_unique`` (sorted, distinct).

    A table of the wanted hashes' low 20 bits (1 MB, in cache) rules out most values first; only the
    others are searched for (a binary search per value is slow when most values are not there).
    """
    mask = (1 << 20) - 1
    maybe = np.zeros(mask + 1, dtype=bool)
    maybe[sorted_unique & mask] = True
    found = maybe[values & mask]
    rows = np.flatnonzero(found)
    position = np.minimum(np.searchsorted(sorted_unique, values[rows]), sorted_unique.size - 1)
    found[rows] = sorted_unique[position] == values[rows]
    return found


def conflicting_keys(
    key_hash: np.ndarray,
    row_hash: np.ndarray,
    candidates: np.ndarray,
    history_keys: np.ndarray,
    history_rows: np.ndarray,
) -> np.ndarray:
    """Candidate rows whose key has another row's values, in the batch or in the clean zone.

    A key seen with different values is never silently resolved: every candidate row of it is flagged.
    ``history_keys[i]`` is the key of the clean row whose hash is ``history_rows[i]``.
    """
    frame = pd.DataFrame({"k": key_hash[candidates], "r": row_hash[candidates]})
    multi = frame.groupby("k")["r"].nunique()
    bad_keys = set(multi[multi > 1].index.tolist())
    if len(history_keys):
        clean_row_of = dict(zip(history_keys.tolist(), history_rows.tolist(), strict=True))
        bad_keys |= {
            k
            for k, r in zip(frame["k"].tolist(), frame["r"].tolist(), strict=True)
            if k in clean_row_of and clean_row_of[k] != r
        }
    if not bad_keys:
        return np.zeros(len(key_hash), dtype=bool)
    return candidates & pd.Series(key_hash).isin(bad_keys).to_numpy()


def pooled_outliers(
    batch: BatchChecks, keep: np.ndarray, history: History, params: CleanParams
) -> tuple[np.ndarray, dict[Any, dict[str, float]]]:
    """Robust outliers among the rows still standing (``keep``), against the pool of clean rows + them.

    The pool's statistics come from sketches (the history's, merged with the kept rows'), within
    :func:`rentlake.summaries.sketch_error` of :func:`robust_bounds` on the values themselves.
    Returns the mask and the bounds per group code (``"*"`` for the whole pool).
    """
    if batch.robust_value is None:
        return np.zeros(batch.n, dtype=bool), {}
    grouped = batch.robust_group is not None
    own = sketch_groups(batch.robust_value[keep], batch.robust_group[keep] if grouped else None)
    bounds = sketch_bounds(merge_groups(history.sketches, own), params, grouped=grouped)
    return keep & robust_outliers(batch.robust_value, batch.robust_group, bounds), bounds


@dataclass
class Decisions:
    """The batch-wide decisions: one mask per reason, and the outlier bounds per group code."""

    duplicate: np.ndarray
    conflicting_key: np.ndarray
    outlier: np.ndarray
    bounds: dict[Any, dict[str, float]]

    def same_rows(self, other: Decisions) -> bool:
        """Whether ``other`` sends exactly the same rows to quarantine for the same reasons."""
        return all(
            np.array_equal(a, b)
            for a, b in [
                (self.duplicate, other.duplicate),
                (self.conflicting_key, other.conflicting_key),
                (self.outlier, other.outlier),
            ]
        )

    def labelled_bounds(self, names: dict[Any, int]) -> dict[str, dict[str, float]]:
        """The bounds keyed by group label (as the quality report shows them), ``names`` as in
        :func:`group_codes`."""
        label_of = {code: label for label, code in names.items()}
        return {k if k == "*" else str(label_of[k]): v for k, v in self.bounds.items()}


def decide(batch: BatchChecks, history: History, params: CleanParams) -> Decisions:
    """Take the batch-wide decisions for a batch checked against the clean rows of ``history``.

    Parameters
    ----------
    batch
        The batch's validity, hashes and robust statistic.
    history
        The same arrays for the clean rows committed before the batch.
    params
        Thresholds of the robust check.

    Returns
    -------
    Decisions
        Exact duplicates (the first valid copy stays, in the batch or among the clean rows the history
        holds), rows of a key seen with different values, and robust outliers among the rows left.
    """
    valid = ~batch.invalid
    dup = duplicates(batch.row_hash, valid, history.row_hash)
    conflict = np.zeros(batch.n, dtype=bool)
    if batch.key_hash is not None:
        conflict = conflicting_keys(
            batch.key_hash, batch.row_hash, valid & ~dup, history.key_hash, history.key_row
        )
    outlier, bounds = pooled_outliers(batch, valid & ~dup & ~conflict, history, params)
    return Decisions(dup, conflict, outlier, bounds)
