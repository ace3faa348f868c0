"""Security headers on every response, set at one place (``on_response_prepare``).

- Every response: ``X-Content-Type-Options: nosniff``.
- Every HTML page: a Content-Security-Policy with ``frame-ancestors 'none'`` (a page that
  sets its own policy keeps it, with ``frame-ancestors 'none'`` added if it lacks one),
  ``X-Frame-Options: DENY``, ``Cache-Control: no-store``, a same-origin referrer policy and
  a Permissions-Policy that gives no page the camera or microphone, unless the page set
  stricter ones.
- A call page (``response[PAGE_KIND] = PageKind.CALL``: the clinician's and the client's)
  may play media streams and use the camera and microphone of this origin; a page without
  scripts (``PageKind.NO_SCRIPT``, the dead-link page) may load only its own stylesheet.
- Every response whose URL carries a client's link token (``/v/``, ``/api/links/``): no
  referrer and ``noindex``, so the token leaks neither to other sites nor to search engines.
- Every API and WebSocket response (``/api/``, ``/ws/``; they carry tokens, links and
  personal data): ``Cache-Control: no-store`` and a policy that allows nothing to frame or
  run it, whatever the handler set.
Static files keep their own caching.
"""

from __future__ import annotations

import enum

from aiohttp import web

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CALL_PAGE_CSP = PAGE_CSP + "; media-src 'self' blob: mediastream:"
# A page without scripts (the client's dead-link page) gets nothing but its stylesheet.
NO_SCRIPT_PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_PERMISSIONS = "camera=(), microphone=(), display-capture=()"
CALL_PAGE_PERMISSIONS = "camera=(self), microphone=(self), display-capture=()"
_PRIVATE_PREFIXES = ("/api/", "/ws/")
_TOKEN_PREFIXES = ("/v/", "/api/links/")


class PageKind(enum.Enum):
    """What a page needs beyond every page's headers."""

    CALL = "call"  # camera, microphone and media streams
    NO_SCRIPT = "no_script"  # runs nothing: its policy allows only its own stylesheet


PAGE_KIND = web.ResponseKey("page_kind", PageKind)
_CSP_BY_KIND = {PageKind.CALL: CALL_PAGE_CSP, PageKind.NO_SCRIPT: NO_SCRIPT_PAGE_CSP}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(_TOKEN_PREFIXES):
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Robots-Tag"] = "noindex"
    if request.path.startswith(_PRIVATE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        headers.setdefault("Content-Security-Policy", API_CSP)
        return
    if response.content_type != "text/html":
        return
    kind: PageKind | None = response.get(PAGE_KIND)
    call_page = kind is PageKind.CALL
    policy = headers.get("Content-Security-Policy")
    if policy is None:
        headers["Content-Security-Policy"] = _CSP_BY_KIND.get(kind, PAGE_CSP) if kind else PAGE_CSP
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; frame-ancestors 'none'"
    headers.setdefault(
        "Permissions-Policy", CALL_PAGE_PERMISSIONS if call_page else PAGE_PERMISSIONS
    )
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Referrer-Policy", "same-origin")
