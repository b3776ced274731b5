"""Unsubscribe links: the target of every marketing message's link and `List-Unsubscribe` header.

No bearer token: the signed token in the path is the credential (channels/unsubscribe.py), and
anything this workspace did not sign is a 404. `GET` shows a confirmation page and changes
nothing (mail scanners follow links); `POST` is the one-click unsubscribe of RFC 8058 (what a
mail client sends for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the page's
button): it records `consent.revoked` for the link's customer, channel and purpose through the
same ingest as `POST /v1/events`, so features, guardrails and running journeys see it.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import hashlib
import html

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from tenure.api.service import Service
from tenure.channels.unsubscribe import Unsubscribe, read, unsubscribe_key

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
padding: 0 1rem; color: #1d2430; }} button {{ font: inherit; padding: .4rem 1rem; }}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""
HEADERS = {
    # Nothing runs and nothing is fetched; the form posts back here only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the path
    "Cache-Control": "no-store",
}
HTML_OK = {
    200: {
        "description": "A page for the person who followed the link.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), headers=HEADERS)


def _what(what: Unsubscribe) -> str:
    return f"{html.escape(what.purpose)} messages by {html.escape(what.channel)}"


def router(svc: Service) -> APIRouter:
    """The unsubscribe routes of one service."""
    api = APIRouter(prefix="/v1/unsubscribe", tags=["unsubscribe"])
    key = unsubscribe_key(svc.settings.workspace)

    def link(token: str) -> Unsubscribe:
        found = read(key, token)
        if found is None:
            raise HTTPException(404, "this unsubscribe link is not valid")
        return found

    @api.get("/{token}", response_class=HTMLResponse, responses=HTML_OK)
    def confirm(token: str) -> HTMLResponse:
        """The confirmation page of an unsubscribe link (it changes nothing)."""
        what = link(token)
        form = (
            f"<p>Stop receiving {_what(what)}?</p>"
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            "<button>Unsubscribe</button></form>"
        )
        return _page("Unsubscribe", form)

    @api.post("/{token}", response_class=HTMLResponse, responses=HTML_OK)
    def unsubscribe(token: str) -> HTMLResponse:
        """Unsubscribe (one-click, RFC 8058): records `consent.revoked` for the link's customer,
        channel and purpose. Following it again records it again, which changes nothing."""
        what = link(token)
        now = svc.clock.now()
        digest = hashlib.sha256(token.encode()).hexdigest()[:24]
        event = {
            "event_id": f"unsubscribe-{digest}-{int(now.timestamp())}",
            "type": "consent.revoked",
            "customer_id": what.customer_id,
            "occurred_at": now.isoformat(),
            "source": "unsubscribe",
            "payload": {"channel": what.channel, "purpose": what.purpose},
        }
        (result,) = svc.ingest([event], source="unsubscribe")["results"]
        if result["status"] == "rejected":
            raise HTTPException(422, f"the revocation was refused: {result['reason']}")
        return _page("Unsubscribed", f"<p>You will get no more {_what(what)}.</p>")

    return api
