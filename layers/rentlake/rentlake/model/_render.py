"""Small rendering helpers shared by the model card and the exploration report (PNG, HTML, JSON)."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np

__all__ = ["png", "html_page", "jsonable"]


def png(fig: Any, dpi: int = 90) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, timestamps and non-finite floats (→ None) into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def html_page(
    title: str, sections: list[tuple[str, str]], images: dict[str, bytes], data: dict[str, Any]
) -> bytes:
    """One self-contained HTML page: text sections, PNGs embedded as base64 data URIs, the JSON data.

    Parameters
    ----------
    title : str
        Page title.
    sections : list of (heading, html_fragment)
        Already-escaped HTML fragments (build them with :func:`html.escape`).
    images : dict
        ``file name -> PNG bytes``; each is embedded inline (no external file is referenced).
    data : dict
        JSON-serialisable data shown at the end of the page.

    Returns
    -------
    bytes
        UTF-8 encoded HTML.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}pre{background:#f6f6f6;padding:.5em;"
        "overflow:auto;font-size:12px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, fragment in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{fragment}")
    if images:
        parts.append("<h2>Figures</h2>")
        for name, blob in images.items():
            b64 = base64.b64encode(blob).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    parts.append(
        "<h2>Data</h2><pre>"
        + html.escape(json.dumps(jsonable(data), indent=2, ensure_ascii=False))
        + "</pre></body></html>"
    )
    return "".join(parts).encode("utf-8")
