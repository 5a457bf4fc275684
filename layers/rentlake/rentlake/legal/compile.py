"""Reference rents, batch side: the clean ``reference_rents`` table compiled into the lookup artifact,
attached to a model version at promotion, and joined onto listings for exploration.

The artifact (``models/<version>/legal.json``, compact JSON, a few hundred kB) is read on the light side
by :mod:`rentlake.legal.lookup`; its layout::

    {"format": "rentlake-legal/1", "periods": [...4 periods...],
     "source": {"dataset", "table", "contract_version", "batches": [...], "files": [...]},
     "cities": {"PARIS": {"names": {code: [canonical name, other names seen...]},
                          "years": {"2017": {"source": "...", "values": {"7510101|1|0|0": [ref, min, max]}}}},
                "LILLE": {...keyed by IRIS code...}}}

Every clean year is compiled: a table for a later year ingested afterwards becomes the default answer
from the next promotion on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from rentlake import contracts
from rentlake.lake import Lake, keys
from rentlake.legal.lookup import FORMAT, PERIODS, key_of

DATASET = "reference_rents"
ARTIFACT_NAME = "legal.json"
_COLUMNS = [
    "city",
    "quartier_code",
    "iris_code",
    "quartier_name",
    "rooms",
    "period",
    "furnished",
    "year",
    "ref_eur_m2",
    "min_eur_m2",
    "max_eur_m2",
    "source_key",
    "source_sha256",
]


def _zone(df: pd.DataFrame) -> pd.Series:
    # Paris is keyed by quartier, Lille by IRIS (the contract's zone rule guarantees the one needed).
    return df["quartier_code"].where(df["city"] == "PARIS", df["iris_code"]).astype("string")


def _source_label(city: str, year: int, files: pd.DataFrame) -> str:
    parts = [
        f"{str(k).rsplit('/', 1)[-1]} (sha256 {str(s)[:12]})"
        for k, s in files[["source_key", "source_sha256"]].drop_duplicates().itertuples(index=False)
    ]
    return f"reference_rents {city} {year}: {', '.join(parts)}"


def compile_lookup(clean: pd.DataFrame, batches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The lookup document of a clean ``reference_rents`` table (see the module docstring).

    Parameters
    ----------
    clean
        The clean table (contract columns plus ``source_key`` and ``source_sha256``).
    batches
        The commit markers of the clean batches, recorded as provenance.

    Returns
    -------
    dict
        The artifact document; deterministic for a given table (same table, same bytes, same sha256).

    Raises
    ------
    ValueError
        When one cell (city, zone, rooms, period, furnished, year) has two different values.
    """
    df = clean[_COLUMNS].copy()
    df["zone"] = _zone(df)
    df["year"] = df["year"].astype("int64")
    df["rooms"] = df["rooms"].astype("int64")
    df["furnished"] = df["furnished"].astype(bool)
    # The clean stage keys Lille on (quartier code, IRIS code); a later file that omits the informational
    # quartier code of a Lille row gives another clean key for the same cell. The same values twice are
    # one cell; different values are a conflict nobody resolved, and are never silently picked.
    cell = ["city", "zone", "rooms", "period", "furnished", "year"]
    df = df.drop_duplicates([*cell, "ref_eur_m2", "min_eur_m2", "max_eur_m2"], keep="last")
    dup = df.duplicated(cell, keep=False)
    if dup.any():
        shown = df.loc[dup, cell].drop_duplicates().head(3).astype(str).agg(" ".join, axis=1).tolist()
        raise ValueError(
            f"{int(dup.sum())} clean reference rows give different values to the same cell "
            f"({'; '.join(shown)}): quarantine or remove one of the batches, then promote again"
        )
    cities: dict[str, Any] = {}
    for city, rows in df.groupby("city", sort=True):
        years: dict[str, Any] = {}
        for year, yrows in rows.groupby("year", sort=True):
            cells = {
                key_of(z, int(r), p, bool(f)): [float(a), float(b), float(c)]
                for z, r, p, f, a, b, c in yrows[
                    ["zone", "rooms", "period", "furnished", "ref_eur_m2", "min_eur_m2", "max_eur_m2"]
                ].itertuples(index=False)
            }
            years[str(int(year))] = {
                "source": _source_label(str(city), int(year), yrows),
                "rows": len(yrows),
                "values": dict(sorted(cells.items())),
            }
        # Canonical name = the latest year's; earlier spellings stay as aliases for name matching.
        named = rows.dropna(subset=["quartier_name"]).sort_values("year", ascending=False, kind="stable")
        names: dict[str, list[str]] = {}
        for zone, name in named[["zone", "quartier_name"]].drop_duplicates().itertuples(index=False):
            names.setdefault(str(zone), []).append(str(name))
        for zone in rows["zone"].unique():
            names.setdefault(str(zone), [str(zone)])
        cities[str(city)] = {"names": dict(sorted(names.items())), "years": years}
    files = (
        clean[["source_key", "source_sha256"]].drop_duplicates().sort_values("source_key").to_dict("records")
    )
    return {
        "format": FORMAT,
        "periods": list(PERIODS),
        "units": "EUR/m2/month, excluding charges",
        "source": {
            "dataset": DATASET,
            "table": keys.glue_table("clean", DATASET),
            "contract_version": contracts.get(DATASET).version,
            "batches": [
                {
                    "ingestion_id": b.get("ingestion_id"),
                    "source_key": b.get("source_key"),
                    "source_sha256": b.get("source_sha256"),
                    "rows_clean": b.get("rows", {}).get("clean"),
                }
                for b in (batches or [])
            ],
            "files": files,
        },
        "cities": cities,
    }


def artifact_bytes(doc: dict[str, Any]) -> bytes:
    """The artifact's bytes: compact, key-sorted UTF-8 JSON (stable hash for a stable table)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def compile_file(data: bytes, name: str) -> bytes:
    """The lookup artifact of a reference-table file, without a lake: parsed by the ingest rules, typed
    and checked by the contract as the clean stage does, compiled as promotion does (tests, benchmarks,
    a quick look at a new table).

    Raises
    ------
    ValueError
        When rows fail the contract (the reason codes are named): the lake quarantines such rows, a file
        compiled on its own must be entirely valid.
    """
    from rentlake.cleaning import reasons_to_series, type_chunk
    from rentlake.parsing import parse_object

    raw = pd.concat(list(parse_object(data, name, dataset=DATASET).chunks), ignore_index=True)
    typed, reasons = type_chunk(raw, contracts.get(DATASET))
    if reasons:
        codes = sorted({c for cell in reasons_to_series(len(raw), reasons).dropna() for c in cell.split(";")})
        raise ValueError(f"{name}: rows fail the reference-rents contract ({', '.join(codes)})")
    typed = typed.assign(source_key=f"landing/{name}", source_sha256=hashlib.sha256(data).hexdigest())
    return artifact_bytes(compile_lookup(typed))


def read_reference(lake: Lake) -> pd.DataFrame:
    """The clean ``reference_rents`` table (every committed batch); empty when none was ingested."""
    return lake.read_clean(DATASET)


def build_artifact(lake: Lake) -> tuple[dict[str, Any], bytes] | None:
    """The lookup document and its bytes, compiled from the clean reference table (every committed
    batch: a later year ingested afterwards is in it); None when the table is empty. Deterministic: the
    same table gives the same bytes, so the sha256 tells whether anything changed."""
    clean = read_reference(lake)
    if clean.empty:
        return None
    doc = compile_lookup(clean, [c.to_json() for c in lake.committed_batches(DATASET)])
    return doc, artifact_bytes(doc)


def legal_summary(doc: dict[str, Any], key: str, data: bytes) -> dict[str, Any]:
    """What the pointer and the model card record of a lookup artifact written at ``key``."""
    return {
        "legal_key": key,
        "legal_sha256": hashlib.sha256(data).hexdigest(),
        "legal_years": {city: sorted(int(y) for y in body["years"]) for city, body in doc["cities"].items()},
        "legal_source": {
            **{k: doc["source"][k] for k in ("dataset", "table", "contract_version")},
            "files": doc["source"]["files"],
            "bytes": len(data),
        },
    }


def attach_to_model(lake: Lake, version: str) -> dict[str, Any] | None:
    """Compile the clean reference table into ``models/<version>/legal.json``; the registry calls this at
    promotion and merges the result into ``models/champion.json`` and the model card.

    Parameters
    ----------
    lake
        The lake.
    version
        The model version being promoted.

    Returns
    -------
    dict or None
        ``{"legal_key", "legal_sha256", "legal_years": {"PARIS": [2015, ...], ...}, "legal_source": {...}}``,
        or None when the clean reference table is empty (the model is served without a legal answer).
    """
    built = build_artifact(lake)
    if built is None:
        return None
    doc, data = built
    key = keys.model_file(version, ARTIFACT_NAME)
    lake.put_bytes(key, data, content_type="application/json")
    return legal_summary(doc, key, data)


def refreshed_artifact_name(sha256: str) -> str:
    """File name of a lookup recompiled for a champion after a new reference table: content-addressed,
    so the file the current pointer names is never overwritten while it is being served."""
    return f"legal-{sha256[:16]}.json"


def join_reference(
    listings: pd.DataFrame, reference: pd.DataFrame, *, year: int | None = None, furnished: bool = False
) -> pd.DataFrame:
    """Add to each listing the median reference rent per m² of its Paris arrondissement.

    The course's "crossing data sources": listings carry a ``district`` (``"75011"``), the reference table
    quartiers (``751AAQQ``, arrondissement AA). The median over the arrondissement's quartiers, room
    counts and periods of the unfurnished references (by default) of the latest Paris year summarises
    what the law considers normal there.

    Parameters
    ----------
    listings
        Clean listings (``district`` column, Paris postcodes).
    reference
        Clean reference rents.
    year
        Reference year (default: the latest Paris year).
    furnished
        Use the furnished references instead.

    Returns
    -------
    pandas.DataFrame
        ``listings`` with ``ref_median_eur_m2`` (NaN outside Paris or for unknown districts) and
        ``ref_year`` columns, same row order and index.
    """
    paris = reference[reference["city"] == "PARIS"]
    out = listings.copy()
    if paris.empty:
        out["ref_median_eur_m2"] = np.nan
        out["ref_year"] = pd.array([pd.NA] * len(out), dtype="Int64")
        return out
    chosen = int(paris["year"].max()) if year is None else int(year)
    if chosen not in set(paris["year"].astype("int64")):
        raise ValueError(
            f"no Paris reference rents for {chosen}; the table has "
            f"{sorted(set(paris['year'].astype('int64')))}"
        )
    sel = paris[(paris["year"].astype("int64") == chosen) & (paris["furnished"].astype(bool) == furnished)]
    # 751AAQQ → postcode 750AA
    district = "750" + sel["quartier_code"].astype("string").str.slice(3, 5)
    medians = sel["ref_eur_m2"].astype("float64").groupby(district.to_numpy()).median()
    out["ref_median_eur_m2"] = (
        out["district"].astype("string").map(medians).astype("float64") if "district" in out else np.nan
    )
    out["ref_year"] = pd.array([chosen] * len(out), dtype="Int64")
    return out
