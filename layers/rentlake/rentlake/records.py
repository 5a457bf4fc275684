"""What the lake stores as JSON records, typed: each a dataclass with ``to_json`` / ``from_json``.

``from_json`` validates what it reads (a record written by hand, truncated or from an older version names
the field that is wrong, as a :class:`RecordError`), so code above reads attributes, never built-up keys.
Only the standard library is imported: the light prediction side reads the champion pointer and card too.
"""

from __future__ import annotations


class RecordError(ValueError):
    """A stored record is not what its type says (missing or mistyped field)."""
