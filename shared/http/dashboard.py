"""The dashboard: a static page served by the app itself at ``GET /api/ui``.

Three files ship in ``shared/http/static`` (HTML, JavaScript, CSS; no build
step, nothing fetched from elsewhere). The route is anonymous because the page
holds no secret: the function key is pasted into it and kept in the browser's
session storage, and every API call the page makes carries it as
``x-functions-key``, so the data is exactly as protected as the API.

Only the names in ``FILES`` are served: a path is looked up, never joined to a
directory, so no request can reach another file. Every answer, a 404 included,
carries a Content-Security-Policy that allows scripts, styles and requests to
this origin only (no inline script, no other host), and forbids framing.
"""

from __future__ import annotations

import functools
from pathlib import Path

from shared.http.api import Reply, problem

STATIC = Path(__file__).resolve().parent / "static"
# Served name -> (file in STATIC, media type). "" is GET /api/ui itself.
FILES: dict[str, tuple[str, str]] = {
    "": ("index.html", "text/html"),
    "index.html": ("index.html", "text/html"),
    "app.js": ("app.js", "text/javascript"),
    "app.css": ("app.css", "text/css"),
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files: always revalidated, so a deployment's new page is seen at once.
    "Cache-Control": "no-cache",
}


@functools.cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def asset(name: str) -> Reply:
    """``GET /api/ui/{file?}``: one of the dashboard's files, or a 404 problem."""
    entry = FILES.get(name)
    if entry is None:
        detail = f"the dashboard has no file {name[:100]!r}; it is at /api/ui"
        found = problem("file-not-found", detail)
        return Reply(found.status, found.body, found.media_type, SECURITY_HEADERS)
    file, media_type = entry
    return Reply(200, {}, media_type, SECURITY_HEADERS, content=_read(file))
