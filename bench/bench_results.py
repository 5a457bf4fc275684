"""Write one benchmark's section into bench/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record_section(title: str, command: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of RESULTS.md with the command and figures."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    section = f"## {title}\n\nCommand: `{command}`  \nMeasured {when} on {machine}.\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
