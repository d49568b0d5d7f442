"""Headless Chromium for the review page's tests: the system browser (Debian ``chromium``) driven by
Playwright, never a browser build Playwright downloads itself.

Playwright rather than Selenium: it records every request a page makes and every console message
(so "no request leaves the origin" and "no CSP violation" are checked, not assumed), sets files on
an <input type=file> without a file dialog, and waits on page state without sleeps.
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
# Generous: two cores shared with training runs; a film's first prediction also warms the model.
WAIT_MS = 60_000


def chromium_executable() -> str:
    """The system Chromium, or a skip that says how to get it."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no system Chromium: install the Debian package 'chromium' (make test does where apt works)")


def origin(url: str) -> str:
    """scheme://host:port of a URL; a blob: URL counts as the origin that made it."""
    if url.startswith("blob:"):
        url = url[len("blob:") :]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class PageLog:
    """Everything a page asked the network for, and what it printed to the console."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def foreign_requests(self, own_origin: str) -> list[str]:
        return [url for url in self.requests if not url.startswith("data:") and origin(url) != own_origin]

    def csp_violations(self) -> list[str]:
        # Chromium's words for a blocked inline style/script or resource, and for a Trusted Types block.
        return [line for line in self.console if "Content Security Policy" in line or "Trusted" in line]


def screenshot_dir() -> Path | None:
    """CXR_UI_SCREENSHOTS=docs/img makes the tests save each state there (docs/review-page.md)."""
    value = os.environ.get("CXR_UI_SCREENSHOTS")
    return Path(value) if value else None
