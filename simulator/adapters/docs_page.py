"""GET /docs: the HTTP API's description as a page to read and try.

One self-contained HTML file (``docs.html`` beside this module: its style and script inline) that
fetches /openapi.json from the same service and renders every operation — method, path, summary,
whether it needs the token, parameters, request body fields and answers — with a form that sends
the request.  It loads nothing from elsewhere (the machine may be offline), and its
Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
    "Cache-Control": "no-cache",
}


@cache
def docs_page() -> str:
    """The page's HTML."""
    return resources.files("simulator.adapters").joinpath("docs.html").read_text(encoding="utf-8")
