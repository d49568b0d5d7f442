"""``/ui``: the radiologist's review page, static files (``service/api/ui/``) served by the service.

The files hold no data and no key, so they are served without one (see ``service.access``); the
page asks for a key and sends it with each API call. They are served from a fixed list read from
the package, never from a path the request names, under a Content-Security-Policy that allows
nothing but this origin: no inline script or style, no third-party origin, no framing.
"""

import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import RedirectResponse

router = APIRouter(tags=["ui"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "ui"  # package data (pyproject.toml)
INDEX = "index.html"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NAME = re.compile(r"[a-z][a-z0-9-]*\.(html|css|js|svg)")
# Films, overlays and previews are shown from blob: URLs the page makes itself; data: is not needed.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@cache
def static_files() -> dict[str, tuple[bytes, str]]:
    """Every servable file, name -> (bytes, media type); read once, a few tens of kilobytes."""
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and _NAME.fullmatch(path.name):
            files[path.name] = (path.read_bytes(), _MEDIA_TYPES[path.suffix])
    return files


def _serve(name: str) -> Response:
    found = static_files().get(name)
    if found is None:
        raise HTTPException(status_code=404, detail="No such file in the review page.")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # Relative, so the page also opens behind a proxy that mounts the service under a prefix.
    return RedirectResponse("ui/", status_code=308)


@router.get("/ui/")
async def ui_index() -> Response:
    return _serve(INDEX)


@router.get("/ui/{name}")
async def ui_file(name: str) -> Response:
    return _serve(name)
