"""Dataset contracts: the columns, types, units, valid ranges and header aliases of each dataset.

A contract drives both stages: ingestion maps a file's header onto the contract's canonical columns
(:meth:`Contract.map_header`) and recognises which dataset a file holds (:func:`detect`); cleaning coerces
and checks every column from the same description (:mod:`rentlake.cleaning`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

Kind = Literal["float", "int", "str", "date", "bool"]
# A rule returns (reason code, boolean mask of the rows it rejects) pairs.
RowRule = Callable[["pd.DataFrame"], list[tuple[str, "np.ndarray"]]]


def normalise_name(name: str) -> str:
    """Header normal form: no accents, lower case, runs of non-alphanumerics as ``_``.

    >>> normalise_name(" Loyer (€/mois) ")
    'loyer_eur_mois'
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "_", text.lower().replace("m²", "m2"))
    return text.strip("_")


@dataclass(frozen=True)
class Alias:
    """Another name of a column, with the factor that converts its unit to the canonical one."""

    name: str
    factor: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class Column:
    """One canonical column of a dataset."""

    name: str
    kind: Kind
    description: str
    unit: str | None = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    aliases: tuple[Alias, ...] = ()
    choices: tuple[str, ...] | None = None
    normaliser: Callable[[pd.Series], pd.Series] | None = field(default=None, compare=False)

    def names(self) -> dict[str, Alias]:
        """Normalised header names that map to this column, with their unit factor."""
        out = {normalise_name(self.name): Alias(self.name)}
        for alias in self.aliases:
            out[normalise_name(alias.name)] = alias
        return out

    def describe(self) -> dict[str, object]:
        """JSON description, recorded in reports and the model card."""
        return {
            "name": self.name,
            "kind": self.kind,
            "unit": self.unit,
            "required": self.required,
            "min": self.min,
            "max": self.max,
            "aliases": [a.name for a in self.aliases],
            "choices": list(self.choices) if self.choices else None,
            "description": self.description,
        }


@dataclass(frozen=True)
class HeaderMapping:
    """How a file's header maps onto a contract."""

    dataset: str
    columns: dict[str, str]  # source header → canonical column
    factors: dict[str, float]  # canonical column → unit factor applied in cleaning
    unknown: list[str]  # source headers the contract does not know (kept in ``extra``)
    missing_required: list[str]
    ambiguous: list[str]  # canonical columns that two source headers map to

    @property
    def ok(self) -> bool:
        return not self.missing_required and not self.ambiguous

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "columns": self.columns,
            "unit_factors": {k: v for k, v in self.factors.items() if v != 1.0},
            "unknown_columns": self.unknown,
            "missing_required": self.missing_required,
            "ambiguous": self.ambiguous,
        }


@dataclass(frozen=True)
class RobustRule:
    """A statistical outlier check with robust statistics (median and MAD) within comparable groups.

    ``value`` maps the typed frame to the checked quantity (e.g. log rent per m²), ``group`` to the
    label of each row's comparable group (an array, or a Series; None: one group). Groups smaller than
    the configured minimum fall back to the whole pool.
    """

    code: str
    description: str
    value: Callable[[pd.DataFrame], np.ndarray]
    group: Callable[[pd.DataFrame], np.ndarray | pd.Series] | None = None


@dataclass(frozen=True)
class Contract:
    """The contract of one dataset.

    Parameters
    ----------
    name
        Dataset name; also names its tables (``clean_<name>``) and lake prefixes.
    version
        Bumped whenever a rule changes, and recorded in every batch report.
    columns
        Canonical columns.
    key
        Columns that identify a row: a key seen twice with different values is quarantined
        (``conflicting_key``); empty for datasets without a natural key.
    row_rules
        Extra per-row checks on the typed frame (beyond types, required and ranges).
    robust
        The statistical outlier check of the dataset, if any.
    """

    name: str
    version: int
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    row_rules: tuple[RowRule, ...] = field(default=(), compare=False)
    robust: RobustRule | None = field(default=None, compare=False)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def _lookup(self) -> dict[str, tuple[str, Alias]]:
        """Normalised name → (canonical column, alias) for every name and alias of every column."""
        lookup: dict[str, tuple[str, Alias]] = {}
        for col in self.columns:
            for norm, alias in col.names().items():
                lookup[norm] = (col.name, alias)
        return lookup

    def resolve(self, name: str) -> tuple[str, Alias] | None:
        """The canonical column (and unit) a field name means: a column's name or one of its aliases."""
        return self._lookup().get(normalise_name(name))

    def map_header(self, header: Sequence[str], overrides: Mapping[str, str] | None = None) -> HeaderMapping:
        """Map source header names to canonical columns by name or alias (ignoring case and accents).

        Parameters
        ----------
        header
            The names as the file writes them.
        overrides
            Source name → field (a column or an alias, whose unit factor applies), for names no alias
            knows; fields of other contracts are ignored here.
        """
        lookup = self._lookup()
        forced = {normalise_name(src): lookup.get(normalise_name(f)) for src, f in (overrides or {}).items()}
        columns: dict[str, str] = {}
        factors: dict[str, float] = {}
        unknown: list[str] = []
        ambiguous: list[str] = []
        for src in header:
            norm = normalise_name(src)
            hit = forced.get(norm) or lookup.get(norm)
            if hit is None:
                unknown.append(str(src))
                continue
            canon, alias = hit
            if canon in factors:
                ambiguous.append(canon)
                continue
            columns[str(src)] = canon
            factors[canon] = alias.factor
        missing = [c.name for c in self.columns if c.required and c.name not in factors]
        return HeaderMapping(self.name, columns, factors, unknown, missing, sorted(set(ambiguous)))

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "version": self.version,
            "description": self.description,
            "key": list(self.key),
            "columns": [c.describe() for c in self.columns],
        }


_REGISTRY: dict[str, Contract] = {}


def register(contract: Contract) -> Contract:
    """Add a contract to the registry (module import time)."""
    _REGISTRY[contract.name] = contract
    return contract


def get(name: str) -> Contract:
    """The contract of a dataset; ``KeyError`` names the known ones."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_contracts() -> list[Contract]:
    _load_builtin()
    return list(_REGISTRY.values())


def detect(header: Sequence[str], overrides: Mapping[str, str] | None = None) -> HeaderMapping | None:
    """Recognise the dataset of a header: the contract whose required columns all map, preferring the one
    that maps the most columns. None when no contract fits. ``overrides`` as in
    :meth:`Contract.map_header`."""
    best: HeaderMapping | None = None
    for contract in all_contracts():
        mapping = contract.map_header(header, overrides)
        if not mapping.ok:
            continue
        if best is None or len(mapping.columns) > len(best.columns):
            best = mapping
    return best


def check_column_map(column_map: Mapping[str, str], dataset: str | None = None) -> None:
    """Check a user's column map (source column → field): every field must be a column or an alias of the
    dataset's contract (of some contract when no dataset is given).

    Raises
    ------
    ValueError
        Naming the fields no contract knows, and the fields there are.
    """
    cands = [get(dataset)] if dataset else all_contracts()
    unknown = [f for f in column_map.values() if not any(c.resolve(f) for c in cands)]
    if unknown:
        known = ", ".join(sorted({n for c in cands for n in c.column_names}))
        raise ValueError(f"no field named {', '.join(map(repr, unknown))} (fields: {known})")


def _load_builtin() -> None:
    # Imported lazily: the contract modules import pandas for their normalisers, and the light side
    # must be able to import this package without pandas.
    from rentlake.contracts import listings  # noqa: F401
    from rentlake.legal import contract  # noqa: F401
