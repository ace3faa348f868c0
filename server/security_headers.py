"""Security headers on every response, set at one place (``on_response_prepare``).

- Every response: ``X-Content-Type-Options: nosniff``.
- Every HTML page: a Content-Security-Policy with ``frame-ancestors 'none'`` (a page that
  sets its own policy keeps it, with ``frame-ancestors 'none'`` added if it lacks one),
  ``X-Frame-Options: DENY``, ``Cache-Control: no-store`` and a same-origin referrer policy,
  unless the page set stricter ones.
- Every API and WebSocket response (``/api/``, ``/ws/``; they carry tokens, links and
  personal data): ``Cache-Control: no-store`` and a policy that allows nothing to frame or
  run it, whatever the handler set.
Static files keep their own caching.
"""

from __future__ import annotations

from aiohttp import web

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_PRIVATE_PREFIXES = ("/api/", "/ws/")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(_PRIVATE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        headers.setdefault("Content-Security-Policy", API_CSP)
        return
    if response.content_type != "text/html":
        return
    policy = headers.get("Content-Security-Policy")
    if policy is None:
        headers["Content-Security-Policy"] = PAGE_CSP
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; frame-ancestors 'none'"
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Referrer-Policy", "same-origin")
