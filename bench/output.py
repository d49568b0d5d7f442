"""Where a benchmark's result goes: OUT.json (the figures, for tools) and OUT.txt (the table, for people)."""

import json
from pathlib import Path
from typing import Any


def write_report(out: Path | None, report: dict[str, Any], text: str) -> None:
    """Write ``report`` and ``text`` beside each other under ``out`` (its suffix replaced); None: nowhere."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text)
