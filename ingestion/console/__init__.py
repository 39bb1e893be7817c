"""The web console, `GET /console`: a page of this folder's three files, served as they are
(no build step, nothing fetched from elsewhere). It calls the API of its own origin with the
key the user enters; the page itself holds no data, so it needs no key.

The files are read once, at start; a strict Content-Security-Policy keeps the page to its
own origin (scripts, styles, API calls and the WebSocket).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

FOLDER = Path(__file__).parent
#: Route -> (file, content type).
FILES = {
    "/console": ("index.html", "text/html"),
    "/console/console.js": ("console.js", "text/javascript"),
    "/console/console.css": ("console.css", "text/css"),
}
PATHS = frozenset(FILES)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_console_routes(app: web.Application) -> None:
    for route, (name, content_type) in FILES.items():
        body = (FOLDER / name).read_bytes()

        async def serve(
            _request: web.Request, body: bytes = body, content_type: str = content_type
        ) -> web.Response:
            return web.Response(
                body=body, content_type=content_type, charset="utf-8", headers=HEADERS
            )

        app.router.add_get(route, serve)
