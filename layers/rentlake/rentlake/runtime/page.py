"""The tenant page served at ``GET /``: one small HTML file, inline CSS and JS, French or English.

The page (``static/index.html``) talks to the same API with relative URLs (``model``, ``quartiers``,
``plot-data``, ``estimates``), so it works behind any API Gateway stage path. It needs no model to be
served: a missing champion shows up as the API's 503 message inside the page, never as a broken page.

The page is served with a Content-Security-Policy (:func:`content_security_policy`): its one inline script
runs because its sha256 is listed, and nothing else may run, load from elsewhere, or frame the page. Every
other answer carries :data:`SECURITY_HEADERS` (the API adds them, and so does ``rentlake serve``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

# What every answer tells a browser: never sniff another content type, never frame it; a JSON answer loads
# nothing at all (the pages replace the Content-Security-Policy with their own, see csp_for).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
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


_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@lru_cache(maxsize=1)
def _template() -> str:
    return PAGE_FILE.read_text(encoding="utf-8")


def script_hashes(html: str) -> list[str]:
    """The CSP sources (``'sha256-…'``) of the inline ``<script>`` blocks of an HTML page."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii") + "'"
        for body in _SCRIPT.findall(html)
    ]


def csp_for(html: str) -> str:
    """A Content-Security-Policy for a self-contained page: its own inline scripts (by hash), inline
    styles (the page and Swagger UI set ``style`` attributes), data: images, requests to its own origin;
    no plugin, no other script, no framing, no ``<base>`` rewriting."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src " + " ".join(script_hashes(html) or ["'none'"]),
            "style-src 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """The tenant page's Content-Security-Policy (the same in both languages: only ``lang`` differs)."""
    return csp_for(_template())


def render(lang: str) -> str:
    """The page's HTML with its initial language set (the toggle switches it in the browser)."""
    return _template().replace("__LANG__", lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
