"""The tenant page served at ``GET /``: one small HTML file, inline CSS and JS, French or English.

The page (``static/index.html``) talks to the same API with relative URLs (``model``, ``quartiers``,
``plot-data``, ``estimates``), so it works behind any API Gateway stage path. It needs no model to be
served: a missing champion shows up as the API's 503 message inside the page, never as a broken page.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
PAGE_FILE = Path(__file__).with_name("static") / "index.html"


def pick_language(query: str | None, accept_language: str | None) -> str:
    """The page's language: ``?lang=`` first, then the best ``Accept-Language`` match, else French.

    Parameters
    ----------
    query
        The ``lang`` query parameter (``fr`` or ``en``), if any.
    accept_language
        The ``Accept-Language`` header (``"en-GB,en;q=0.9,fr;q=0.8"``), if any.

    Returns
    -------
    str
        ``"fr"`` or ``"en"``.
    """
    if query and query.strip().lower()[:2] in LANGUAGES:
        return query.strip().lower()[:2]
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower()[:2]
        if code not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        # Earlier tags win ties (browsers list them in order of preference): strictly greater only.
        if q > best_q:
            best, best_q = code, q
    return best


@lru_cache(maxsize=1)
def _template() -> str:
    return PAGE_FILE.read_text(encoding="utf-8")


def render(lang: str) -> str:
    """The page's HTML with its initial language set (the toggle switches it in the browser)."""
    return _template().replace("__LANG__", lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
