"""`/docs`: a page from the package that lists every operation of /openapi.json, with nothing
fetched from elsewhere (FastAPI's own page loads Swagger UI from a CDN and is blank offline).

Its one script and one style block are allowed by their hashes in the page's
Content-Security-Policy; the only thing it fetches is the document, from the same origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).parent / "templates" / "docs.html"


def _hashes(html: str, tag: str) -> str:
    """The CSP sources that allow exactly the inline `tag` blocks of `html`."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
    return " ".join(f"'sha256-{d}'" for d in digests)


@cache
def page() -> tuple[str, dict[str, str]]:
    """The page and its headers (read once)."""
    html = PAGE.read_text(encoding="utf-8")
    policy = (
        f"default-src 'none'; script-src {_hashes(html, 'script')}; "
        f"style-src {_hashes(html, 'style')}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return html, headers


def router() -> APIRouter:
    """The docs route (not itself in the OpenAPI document)."""
    api = APIRouter(include_in_schema=False)

    @api.get("/docs")
    def docs() -> HTMLResponse:
        """The operations of /openapi.json, rendered in the browser."""
        html, headers = page()
        return HTMLResponse(html, headers=headers)

    return api
