"""A benchmark's report: the machine it ran on, and where it goes - OUT.json (the figures, for tools)
and OUT.txt (the table, for people)."""

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort


def machine() -> dict[str, Any]:
    """What the figures depend on besides the code: platform, CPUs this process may use, runtime, load."""
    return {
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)),
        "onnxruntime": ort.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def write_report(out: Path | None, report: dict[str, Any], text: str) -> None:
    """Write ``report`` and ``text`` beside each other under ``out`` (its suffix replaced); None: nowhere."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text)


def command_line(module: str, argv: list[str] | None) -> str:
    """How the benchmark was run, for its report: ``python -m <module> <its arguments>``."""
    return f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])


def publish(report: dict[str, Any], text: str, out: Path | None) -> None:
    """Print the table and write both forms under ``out`` (see ``write_report``)."""
    print(text)
    write_report(out, report, text)
