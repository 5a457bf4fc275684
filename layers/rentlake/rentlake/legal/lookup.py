"""The legal reference rent of a dwelling (encadrement des loyers), beside the market estimate.

Light side: the standard library only (no pandas, not even numpy); the prediction function imports it.
The batch side (:mod:`rentlake.legal.compile`) compiles the clean ``reference_rents`` table into a compact
JSON artifact, ``models/<version>/legal.json``, whose key and sha256 the champion pointer carries
(``legal_key``, ``legal_sha256``); :func:`load_table` checks the hash and indexes it, :func:`lookup` answers.

The request fields, one :class:`LegalRequest` (the API body and ``rentlake estimate`` take the same):

``city``
    ``paris`` (default) or ``lille``.
``quartier``
    Paris: the quartier's name or its 7-digit ``code_grand_quartier``. Names match ignoring case,
    accents, hyphens, apostrophes and spaces, with ``St``/``Ste`` read as ``Saint``/``Sainte`` (the table
    writes "St-Germain-l'Auxerrois", people write "Saint-Germain-l'Auxerrois": both match), then as a
    unique prefix ("Javel" finds "Javel 15Art"). Lille: the 9-digit IRIS code.
``rooms``
    1–4; more than 4 counts as 4 (the table's last class is "4 rooms and more").
``built``
    One of the four periods, or a construction year (≤ 1945, 1946–1970, 1971–1990, ≥ 1991).
``furnished``
    Default false.
``year``
    Default: the latest year the table has for the city.

The answer is information read from the reference table, not legal advice (see :data:`NOTICE`).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import hashlib
import json
import operator
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

FORMAT = "rentlake-legal/1"
CITIES = ("PARIS", "LILLE")
PERIODS = ("Avant 1946", "1946-1970", "1971-1990", "Apres 1990")
MAX_ROOMS = 4
NOTICE = (
    "Information read from the official reference rents table (encadrement des loyers), not legal "
    "advice. Amounts exclude charges; the bounds hold for leases signed or renewed in the table's "
    "year, and a rent above the maximum may be lawful with a justified 'complément de loyer'."
)
# The hints an answer carries instead of ``legal`` when there is no table to read.
NO_TABLE = "no legal reference table is loaded with this model: the legal reference rent is unavailable"
TABLE_FAILED = (
    "the legal reference table could not be loaded with this model: the legal reference rent is "
    "unavailable for now (the market estimate is not affected)"
)

_PERIOD_INDEX = {"avant1946": 0, "19461970": 1, "19711990": 2, "apres1990": 3}
_SAINT = {"st": "saint", "ste": "sainte"}
_TOKEN = re.compile(r"[a-z0-9]+")
_DIGITS = re.compile(r"^\d+$")


class LegalLookupError(ValueError):
    """A request field the lookup cannot use; the API answers 4xx naming ``field``.

    Parameters
    ----------
    field
        The request field at fault (``quartier``, ``rooms``, ``built``, ``year``, ``city``...).
    message
        A sentence saying what is wrong and what is accepted.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LegalTableError(RuntimeError):
    """The artifact is corrupt, of an unknown format, or does not match its recorded sha256."""


# ------------------------------------------------------------------------------------------ normalising
@functools.lru_cache(maxsize=4096)  # requests name the same 80 quartiers over and over
def fold(text: str) -> str:
    """Comparison form of a quartier name: no accents, case, punctuation or spaces; St/Ste → Saint/Sainte.

    >>> fold("St-Germain-l'Auxerrois") == fold("saint germain l auxerrois") == "saintgermainlauxerrois"
    True
    """
    ascii_ = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    return "".join(_SAINT.get(tok, tok) for tok in _TOKEN.findall(ascii_))


def canonical_period(text: str) -> str | None:
    """The table's spelling of a construction period (``"après 1990"`` → ``"Apres 1990"``), or None.

    Parameters
    ----------
    text
        A period as written: any case, accents, spaces around the hyphen or underscores.
    """
    idx = _PERIOD_INDEX.get(fold(text))
    return None if idx is None else PERIODS[idx]


def period_of_year(year: int) -> str:
    """The construction period of a construction year (≤ 1945, 1946–1970, 1971–1990, ≥ 1991)."""
    if year <= 1945:
        return PERIODS[0]
    if year <= 1970:
        return PERIODS[1]
    if year <= 1990:
        return PERIODS[2]
    return PERIODS[3]


def _int_like(value: Any) -> int | None:
    """An integer from an int, an integral float or a digit string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"[-+]?\d+", s):
            return int(s)
        if re.fullmatch(r"[-+]?\d+\.0*", s):
            return int(float(s))
    return None


def normalise_city(city: Any) -> str:
    """``"paris"``/``"Paris"``/None → ``"PARIS"``; :class:`LegalLookupError` for another city."""
    if city is None or (isinstance(city, str) and not city.strip()):
        return "PARIS"
    key = fold(str(city)).upper()
    if key not in CITIES:
        raise LegalLookupError(
            "city",
            f"no reference rents for {city!r}: the table covers {' and '.join(c.title() for c in CITIES)}",
        )
    return key


def normalise_rooms(rooms: Any) -> int:
    """Room count as the table's class: 1–4, more than 4 counts as 4."""
    n = _int_like(rooms)
    if n is None:
        raise LegalLookupError(
            "rooms", f"expected a whole number of main rooms (1, 2, 3, 4 or more), got {rooms!r}"
        )
    if n < 1:
        raise LegalLookupError("rooms", f"a dwelling has at least 1 main room, got {n}")
    return min(n, MAX_ROOMS)


def normalise_built(built: Any, *, today: _dt.date | None = None) -> str:
    """Construction period from one of the four periods or a construction year.

    Parameters
    ----------
    built
        ``"Avant 1946"``, ``"1946-1970"``, ``"1971-1990"``, ``"Apres 1990"`` (any case, accents,
        spacing) or a year (int or digit string).
    today
        Reference date for "in the future" (injectable for tests).
    """
    year = _int_like(built)
    if year is None:
        period = canonical_period(str(built)) if isinstance(built, str) else None
        if period is None:
            raise LegalLookupError(
                "built", f"expected a construction year or one of {', '.join(PERIODS)}; got {built!r}"
            )
        return period
    this_year = (today or _dt.date.today()).year
    if year > this_year:
        raise LegalLookupError(
            "built", f"construction year {year} is in the future (this year is {this_year})"
        )
    if year < 1000:
        raise LegalLookupError("built", f"expected a 4-digit construction year, got {year}")
    return period_of_year(year)


def normalise_furnished(furnished: Any) -> bool:
    """A boolean, or 0/1, or a word (true/false, oui/non, meublé/non meublé); None → False."""
    if furnished is None:
        return False
    if isinstance(furnished, bool):
        return furnished
    if isinstance(furnished, (int, float)) and furnished in (0, 1):
        return bool(furnished)
    if isinstance(furnished, str):
        key = fold(furnished)
        if key in ("1", "true", "yes", "oui", "y", "meuble", "furnished"):
            return True
        if key in ("0", "false", "no", "non", "n", "nonmeuble", "unfurnished", "vide", ""):
            return False
    raise LegalLookupError("furnished", f"expected true or false, got {furnished!r}")


# ------------------------------------------------------------------------------------------ the table
@dataclass
class _City:
    years: dict[int, dict[str, list[float]]]
    sources: dict[int, str]
    names: dict[str, str]  # code → canonical name (latest year's)
    by_name: dict[str, str]  # folded name (every name seen) → code
    codes_of_name: dict[str, list[str]]  # folded name → codes (Lille: a quartier spans several IRIS)


@dataclass
class LegalTable:
    """The compiled reference table, indexed for lookups (built by :func:`load_table`)."""

    sha256: str
    cities: dict[str, _City]
    source: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0

    def years(self, city: str) -> list[int]:
        """The years the table has for a city (``"PARIS"``), ascending."""
        c = self.cities.get(city)
        return sorted(c.years) if c else []


def key_of(zone: str, rooms: int, period: str, furnished: bool) -> str:
    """The artifact's key string of one cell: ``"<zone>|<rooms>|<period index>|<0/1>"``."""
    return f"{zone}|{rooms}|{PERIODS.index(period)}|{int(furnished)}"


def load_table(data: bytes, *, sha256: str | None = None) -> LegalTable:
    """Parse and index an artifact compiled by :func:`rentlake.legal.compile.compile_lookup`.

    Parameters
    ----------
    data
        The artifact's bytes.
    sha256
        The expected hex digest (from the champion pointer); a mismatch raises :class:`LegalTableError`.

    Returns
    -------
    LegalTable
    """
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise LegalTableError(f"legal table sha256 {digest[:12]}… does not match the recorded {sha256[:12]}…")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise LegalTableError(f"legal table is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LegalTableError(
            f"legal table format {doc.get('format') if isinstance(doc, dict) else None!r}, "
            f"expected {FORMAT!r}"
        )
    cities: dict[str, _City] = {}
    for city, body in doc["cities"].items():
        by_name: dict[str, str] = {}
        codes_of_name: dict[str, list[str]] = {}
        for code, names in body["names"].items():
            for name in names:
                folded = fold(name)
                by_name.setdefault(folded, code)
                codes_of_name.setdefault(folded, []).append(code)
        cities[city] = _City(
            years={int(y): v["values"] for y, v in body["years"].items()},
            sources={int(y): v["source"] for y, v in body["years"].items()},
            names={code: names[0] for code, names in body["names"].items()},
            by_name=by_name,
            codes_of_name={k: sorted(set(v)) for k, v in codes_of_name.items()},
        )
    return LegalTable(digest, cities, doc.get("source", {}), len(data))


_CACHE: dict[str, LegalTable] = {}
_LOCK = threading.Lock()


def load_for_champion(lake: Any, champion: Mapping[str, Any]) -> LegalTable | None:
    """The legal table a champion pointer names (``legal_key``, ``legal_sha256``), cached by sha256.

    Parameters
    ----------
    lake
        A :class:`rentlake.lake.Lake` (only ``get_bytes`` is used).
    champion
        The champion pointer (``models/champion.json``: ``legal_key``, ``legal_sha256``) or the model
        card (the same under ``legal``).

    Returns
    -------
    LegalTable or None
        None when the champion carries no legal table (promoted before one was ingested).
    """
    # The pointer carries the two fields at its top level, the model card under "legal".
    source = champion if champion.get("legal_key") else (champion.get("legal") or {})
    key, sha = source.get("legal_key"), source.get("legal_sha256")
    if not key:
        return None
    if not sha:  # an unchecked table could answer with values nobody promoted
        raise LegalTableError(f"the champion names the legal table {key} without its legal_sha256")
    with _LOCK:
        hit = _CACHE.get(str(sha))
    if hit is not None:
        return hit
    table = load_table(lake.get_bytes(key), sha256=sha)
    with _LOCK:
        _CACHE.clear()  # one champion at a time: the previous table is not needed any more
        _CACHE[table.sha256] = table
    return table


# ------------------------------------------------------------------------------------------ lookups
def _resolve_quartier(table: LegalTable, city: str, quartier: Any) -> str:
    c = table.cities[city]
    if quartier is None or (isinstance(quartier, str) and not quartier.strip()):
        what = "the quartier's name or its 7-digit code" if city == "PARIS" else "the 9-digit IRIS code"
        raise LegalLookupError("quartier", f"{city.title()} needs {what}")
    text = str(quartier).strip()
    if isinstance(quartier, float) and quartier.is_integer():
        text = str(int(quartier))
    if _DIGITS.match(text):
        if text in c.names:
            return text
        if city == "LILLE":
            raise LegalLookupError(
                "quartier",
                f"IRIS code {text} is not in Lille's reference table "
                f"({len(c.names)} IRIS codes, 9 digits, e.g. {min(c.names)})",
            )
        raise LegalLookupError(
            "quartier",
            f"quartier code {text} is not in Paris's reference table "
            f"(7-digit code_grand_quartier 751AAQQ, e.g. {min(c.names)})",
        )
    folded = fold(text)
    if city == "LILLE":
        codes = c.codes_of_name.get(folded)
        shown = f": the IRIS codes of {c.names[codes[0]]} are {', '.join(codes[:12])}" if codes else ""
        raise LegalLookupError(
            "quartier", f"Lille's table is keyed by IRIS code: give the 9-digit IRIS code{shown}"
        )
    code = c.by_name.get(folded)
    if code is not None:
        return code
    prefixed = sorted({cd for name, cd in c.by_name.items() if folded and name.startswith(folded)})
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        cands = sorted(c.names[cd] for cd in prefixed)
        raise LegalLookupError("quartier", f"{text!r} matches several quartiers: {', '.join(cands[:5])}")
    close = difflib.get_close_matches(folded, list(c.by_name), n=3, cutoff=0.0)
    names = list(dict.fromkeys(c.names[c.by_name[x]] for x in close))
    raise LegalLookupError("quartier", f"unknown Paris quartier {text!r}; closest: {', '.join(names)}")


def _year(table: LegalTable, city: str, year: Any) -> int:
    years = table.years(city)
    if year is None:
        return years[-1]
    y = _int_like(year)
    if y is None or y not in years:
        raise LegalLookupError(
            "year",
            f"no {city.title()} reference rents for {year!r}; the table has {', '.join(map(str, years))}",
        )
    return y


def _money(x: float) -> float:
    return round(x + 0.0, 2)


def lookup(
    table: LegalTable,
    *,
    quartier: Any,
    rooms: Any,
    built: Any,
    city: Any = None,
    furnished: Any = False,
    year: Any = None,
    surface_m2: float | None = None,
    current_rent_eur: float | None = None,
    today: _dt.date | None = None,
) -> dict[str, Any]:
    """The ``legal`` block of one dwelling.

    Parameters
    ----------
    table
        The loaded table.
    quartier, rooms, built, city, furnished, year
        The request fields (see the module docstring).
    surface_m2
        Surface; adds ``ref_rent_eur``, ``min_rent_eur`` and ``max_rent_eur`` (to the cent).
    current_rent_eur
        Monthly rent excluding charges; with ``surface_m2`` adds ``verdict`` (``"above_max"``,
        ``"within"`` or ``"below_min"``, bounds included in "within").
    today
        Reference date for construction years in the future (tests).

    Returns
    -------
    dict
        ``ref_eur_m2``, ``min_eur_m2``, ``max_eur_m2`` (as in the table), rents, ``year``, ``source``,
        ``city``, ``quartier`` ({name, code}), ``rooms``, ``period``, ``furnished``, ``notice``.

    Raises
    ------
    LegalLookupError
        A field the table cannot answer for; ``field`` names it.
    """
    c = normalise_city(city)
    if c not in table.cities or not table.cities[c].years:
        raise LegalLookupError("city", f"the reference table holds no {c.title()} rows")
    n_rooms = normalise_rooms(rooms)
    period = normalise_built(built, today=today)
    furn = normalise_furnished(furnished)
    y = _year(table, c, year)
    code = _resolve_quartier(table, c, quartier)
    cell = table.cities[c].years[y].get(key_of(code, n_rooms, period, furn))
    if cell is None:
        raise LegalLookupError(
            "quartier",
            f"the {c.title()} {y} table has no value for "
            f"{table.cities[c].names[code]} ({code}), {n_rooms} room(s), "
            f"{period}, {'furnished' if furn else 'unfurnished'}",
        )
    ref, lo, hi = cell
    out: dict[str, Any] = {
        "ref_eur_m2": ref,
        "min_eur_m2": lo,
        "max_eur_m2": hi,
        "year": y,
        "source": table.cities[c].sources[y],
        "city": c,
        "quartier": {"name": table.cities[c].names[code], "code": code},
        "rooms": n_rooms,
        "period": period,
        "furnished": furn,
    }
    if surface_m2 is not None:
        out.update(_rents(cell, surface_m2, current_rent_eur))
    out["notice"] = NOTICE
    return out


def _rents(cell: list[float], surface_m2: float, current_rent_eur: float | None) -> dict[str, Any]:
    """The reference, minimum and maximum rents of a surface (to the cent), and the legal verdict of a
    current rent against them (bounds included in "within")."""
    ref, lo, hi = cell
    s = float(surface_m2)
    if not s > 0:
        raise LegalLookupError("surface_m2", f"expected a positive surface, got {surface_m2!r}")
    out: dict[str, Any] = {
        "ref_rent_eur": _money(ref * s),
        "min_rent_eur": _money(lo * s),
        "max_rent_eur": _money(hi * s),
    }
    if current_rent_eur is not None:
        rent = float(current_rent_eur)
        out["current_rent_eur"] = rent
        out["verdict"] = (
            "above_max"
            if rent > out["max_rent_eur"]
            else "below_min"
            if rent < out["min_rent_eur"]
            else "within"
        )
    return out


# ------------------------------------------------------------------------------------------ requests
class LegalRequest(NamedTuple):
    """The legal fields of one dwelling, as the API body and ``rentlake estimate`` give them (unchecked).

    ``quartier``, ``rooms`` and ``built`` together (:attr:`REQUIRED`) add a ``legal`` block to an
    estimate; ``city``, ``furnished`` and ``year`` have defaults (see the module docstring). A named
    tuple, not a frozen dataclass: one is built per listing of every estimate, and a tuple is built in C.
    """

    city: Any = None
    quartier: Any = None
    rooms: Any = None
    built: Any = None
    furnished: Any = None
    year: Any = None

    # Not annotated: a class attribute, not a field.
    REQUIRED = ("quartier", "rooms", "built")

    @classmethod
    def of(cls, source: Any) -> LegalRequest:
        """The legal fields of a mapping (a JSON body) or of an object with attributes (a listing)."""
        if isinstance(source, Mapping):
            return cls._make(map(source.get, cls._fields))
        try:
            return cls._make(_FIELD_VALUES(source))
        except AttributeError:  # an object without every optional field
            return cls._make(getattr(source, f, None) for f in cls._fields)

    def missing(self) -> list[str]:
        """The :attr:`REQUIRED` fields not given (None or empty counts as absent)."""
        return [f for f in self.REQUIRED if getattr(self, f) in (None, "")]

    def check_given(self) -> None:
        """Refuse a given field with a wrong value even when the set is incomplete ("rooms": 0 is wrong
        whether or not the quartier is given); :class:`LegalLookupError` names it."""
        if self.city not in (None, ""):
            normalise_city(self.city)
        if self.rooms not in (None, ""):
            normalise_rooms(self.rooms)
        if self.built not in (None, ""):
            normalise_built(self.built)
        normalise_furnished(self.furnished)

    def answer(
        self,
        table: LegalTable | None,
        *,
        surface_m2: float | None = None,
        current_rent_eur: float | None = None,
        no_table: str = NO_TABLE,
    ) -> dict[str, Any]:
        """What an estimate answer gains: ``{"legal": {...}}`` or ``{"legal_hint": "..."}``.

        Parameters
        ----------
        table
            The champion's table (None when it has none).
        surface_m2, current_rent_eur
            The listing's surface and rent (see :func:`lookup`).
        no_table
            The hint when ``table`` is None (:data:`NO_TABLE`, or :data:`TABLE_FAILED`).

        Raises
        ------
        LegalLookupError
            When the legal fields are all given but one is wrong (the API answers 4xx naming the field).
        """
        missing = self.missing()
        if missing:
            return {"legal_hint": hint(missing)}
        if table is None:
            return {"legal_hint": no_table}
        return {
            "legal": lookup(
                table,
                quartier=self.quartier,
                rooms=self.rooms,
                built=self.built,
                city=self.city,
                furnished=self.furnished,
                year=self.year,
                surface_m2=surface_m2,
                current_rent_eur=current_rent_eur,
            )
        }


REQUEST_FIELDS: tuple[str, ...] = LegalRequest._fields
_FIELD_VALUES = operator.attrgetter(*REQUEST_FIELDS)


def hint(missing: Sequence[str] = LegalRequest.REQUIRED) -> str:
    """The sentence an answer without ``legal`` carries, naming the fields that would add it.

    Parameters
    ----------
    missing
        The fields the request lacks (see :meth:`LegalRequest.missing`).
    """
    return _hint(tuple(missing))


@functools.lru_cache(maxsize=16)  # at most 7 distinct sentences (subsets of REQUIRED)
def _hint(missing: tuple[str, ...]) -> str:
    return (
        f"add {', '.join(missing)} (and optionally city, furnished, year) to get the legal reference "
        "rent (encadrement des loyers) of Paris or Lille beside the estimate"
    )


def attach(table: LegalTable | None, request: Mapping[str, Any]) -> dict[str, Any]:
    """:meth:`LegalRequest.answer` for a request given as a mapping (legal fields, ``surface_m2`` and
    ``current_rent_eur``)."""
    return LegalRequest.of(request).answer(
        table, surface_m2=request.get("surface_m2"), current_rent_eur=request.get("current_rent_eur")
    )
