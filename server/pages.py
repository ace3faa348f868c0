"""The practice's pages (login, diary, appointment summary, settings) and ``/static/``.

The server decides who sees what: a page without a valid staff session redirects to
``/login``; a page for a role the user does not hold answers a 403 page; the navigation only
lists what the user may open. The pages' scripts then call the JSON API, which enforces the
same rules again for every action.

Pages are plain HTML files in ``web/pages/`` read once at start-up. The substitution below
is hand-written on purpose: a handful of ``{{name}}`` markers, every value HTML-escaped
(the boot data is JSON with ``<``, ``>`` and ``&`` escaped), no logic in templates, so no
template engine dependency is worth adding.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import DB
from server.auth.session import Role, current_staff
from server.diary import appointments
from server.http import ApiError
from server.wallet.bundles import format_balance
from server.wallet.ledger import balance_seconds

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGES_DIR = WEB_DIR / "pages"
STATIC_DIR = WEB_DIR / "static"
_STATIC_ROOT = STATIC_DIR.resolve()

# The video minutes dashboard (R-A1): a page of the app for site admins.
MINUTES_DASHBOARD_PATH = "/admin/minutes"


@dataclass(frozen=True)
class NavLink:
    key: str
    label: str
    path: str
    roles: tuple[Role, ...] = ()  # empty: every staff member


NAV_LINKS = (
    NavLink("diary", "Diary", "/diary"),
    NavLink("clients", "Clients", "/clients"),
    NavLink("settings", "Settings", "/settings"),
    NavLink("templates", "Message templates", "/settings/templates", ("site_admin",)),
    NavLink("users", "Users and roles", "/settings/users", ("site_admin",)),
    NavLink("minutes", "Video minutes", MINUTES_DASHBOARD_PATH, ("site_admin",)),
)


@dataclass(frozen=True)
class PageSpec:
    file: str  # in web/pages/
    title: str
    nav_key: str
    script: str  # ES module in /static/js/
    roles: tuple[Role, ...] = ()  # empty: every staff member
    refusal: str = ""  # shown on the 403 page


PAGES: dict[str, PageSpec] = {
    "diary": PageSpec("diary.html", "Diary", "diary", "diary.js"),
    "summary": PageSpec("summary.html", "Appointment summary", "diary", "summary.js"),
    "clients": PageSpec("clients.html", "Clients", "clients", "clients.js"),
    "client": PageSpec("client.html", "Client", "clients", "client.js"),
    "settings": PageSpec("settings.html", "Settings", "settings", "settings.js"),
    "templates": PageSpec(
        "templates.html",
        "Message templates",
        "templates",
        "templates.js",
        ("site_admin",),
        "Only a site admin can change the practice's message templates.",
    ),
    "minutes": PageSpec(
        "minutes.html",
        "Video minutes",
        "minutes",
        "minutes.js",
        ("site_admin",),
        "Only a site admin can see the video minutes and buy more.",
    ),
    "users": PageSpec(
        "users.html",
        "Users and roles",
        "users",
        "users.js",
        ("site_admin",),
        "Only a site admin can manage users and roles.",
    ),
}


class Viewer(msgspec.Struct, frozen=True):
    """Who is looking at a page: what the page's scripts get as boot data."""

    user: practices.User
    practice: practices.Practice
    minutes_dashboard: str
    # The practice's video minutes for the header (R-M7): clinicians and site admins only.
    balance_display: str | None = None


class _PageFiles:
    """The HTML files, read once: a page is served many times and changes only on deploy."""

    def __init__(self, directory: Path) -> None:
        self.layout = (directory / "layout.html").read_text(encoding="utf-8")
        self.login = (directory / "login.html").read_text(encoding="utf-8")
        self.bodies = {
            spec.file: (directory / spec.file).read_text(encoding="utf-8")
            for spec in PAGES.values()
        }


_MARKER = re.compile(r"\{\{(\w+)\}\}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{{name}}`` of the template with its already-escaped value, in one
    pass: a value is never searched for markers (a practice named "{{x" was a 500 on every
    staff page). A marker without a value is a bug."""

    def value_of(marker: re.Match[str]) -> str:
        name = marker.group(1)
        if name not in values:
            raise KeyError(f"unfilled page marker {marker.group(0)!r}")
        return values[name]

    return _MARKER.sub(value_of, template)


def _boot_json(viewer: Viewer) -> str:
    # Inside <script type="application/json">: escape what could close the element.
    raw = msgspec.json.encode(viewer).decode()
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _nav(viewer: Viewer, current: str) -> str:
    items = []
    for link in NAV_LINKS:
        if link.roles and not any(role in viewer.user.roles for role in link.roles):
            continue
        here = ' aria-current="page"' if link.key == current else ""
        items.append(
            f'<li><a href="{html.escape(link.path)}" data-nav="{link.key}"{here}>'
            f"{html.escape(link.label)}</a></li>"
        )
    return "\n".join(items)


def _balance(viewer: Viewer) -> str:
    """The practice balance in the header: read-only for clinicians, with Buy for site
    admins (R-M3: only they can buy)."""
    if viewer.balance_display is None:
        return ""
    shown = (
        '<span class="balance" data-testid="header-balance">Video minutes: '
        f"<strong>{html.escape(viewer.balance_display)}</strong></span>"
    )
    if "site_admin" in viewer.user.roles:
        shown += (
            f' <a class="button button-quiet" data-testid="buy-minutes" '
            f'href="{html.escape(viewer.minutes_dashboard)}">Buy</a>'
        )
    return shown


def _role_names(roles: list[str]) -> str:
    return ", ".join(role.replace("_", " ") for role in roles)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        # Their security headers (no-store, CSP, no framing) are set for every page at one
        # place, server/security_headers.py.
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
    )


async def viewer_of(request: web.Request) -> Viewer | None:
    """The signed-in staff member with their practice, or None (no, expired or revoked session)."""
    try:
        staff = await current_staff(request)
    except ApiError as exc:
        if exc.status_code == 401:
            return None
        raise
    member = await practices.active_member(request.app[DB], staff.practice_id, staff.user_id)
    if member is None:
        return None
    user, practice = member
    balance = None
    if "clinician" in user.roles or "site_admin" in user.roles:
        balance = format_balance(await balance_seconds(request.app[DB], practice.id))
    return Viewer(user, practice, MINUTES_DASHBOARD_PATH, balance)


async def signed_in_viewer(request: web.Request) -> Viewer:
    """The page's viewer; without a live staff session, a redirect to the login page that
    comes back here afterwards (raised)."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise web.HTTPFound("/login?next=" + quote(request.path_qs, safe="/"))
    return viewer


def path_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    """The id in the page's path, or None when it is malformed (the page is then a 404)."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        return None


async def own_appointment_in_path(request: web.Request, viewer: Viewer) -> bool:
    """Whether the path's ``{appointment_id}`` is one of the viewer's practice's appointments.

    Another practice's appointment is "not found", as in the API.
    """
    appointment_id = path_uuid(request, "appointment_id")
    if appointment_id is None:
        return False
    found = await appointments.get_appointment(request.app[DB], viewer.practice.id, appointment_id)
    return found is not None


class PageRenderer:
    def __init__(self, files: _PageFiles) -> None:
        self._files = files

    def render(self, viewer: Viewer, spec: PageSpec, body: str, status: int = 200) -> web.Response:
        page = fill(
            self._files.layout,
            {
                "title": html.escape(spec.title),
                "practice_name": html.escape(viewer.practice.name),
                "user_name": html.escape(viewer.user.name),
                "user_roles": html.escape(_role_names(viewer.user.roles)),
                "nav": _nav(viewer, spec.nav_key),
                "balance": _balance(viewer),
                "boot": _boot_json(viewer),
                "script": html.escape(spec.script) if status == 200 else "shell.js",
                "content": body,
            },
        )
        return _html(page, status)

    def page(self, viewer: Viewer, spec: PageSpec) -> web.Response:
        if spec.roles and not any(role in viewer.user.roles for role in spec.roles):
            body = (
                '<section class="refusal" aria-labelledby="refusal-title">'
                '<h1 id="refusal-title">Not available to your role</h1>'
                f'<p data-testid="refusal">{html.escape(spec.refusal)}</p>'
                '<p><a href="/diary">Back to the diary</a></p></section>'
            )
            return self.render(viewer, spec, body, status=403)
        return self.render(viewer, spec, self._files.bodies[spec.file])

    def not_found(self, viewer: Viewer, spec: PageSpec, what: str) -> web.Response:
        body = (
            '<section class="refusal" aria-labelledby="refusal-title">'
            f'<h1 id="refusal-title">{html.escape(what.capitalize())} not found</h1>'
            "<p>It may have been removed, or the link is wrong.</p>"
            '<p><a href="/diary">Back to the diary</a></p></section>'
        )
        return self.render(viewer, spec, body, status=404)


PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _staff_page(renderer: PageRenderer, key: str) -> PageHandler:
    spec = PAGES[key]

    async def handler(request: web.Request) -> web.StreamResponse:
        return renderer.page(await signed_in_viewer(request), spec)

    return handler


def _summary_page(renderer: PageRenderer) -> PageHandler:
    spec = PAGES["summary"]

    async def handler(request: web.Request) -> web.StreamResponse:
        viewer = await signed_in_viewer(request)
        if not await own_appointment_in_path(request, viewer):
            return renderer.not_found(viewer, spec, "appointment")
        return renderer.page(viewer, spec)

    return handler


def _client_page(renderer: PageRenderer) -> PageHandler:
    spec = PAGES["client"]

    async def handler(request: web.Request) -> web.StreamResponse:
        viewer = await signed_in_viewer(request)
        client_id = path_uuid(request, "client_id")
        # Another practice's client is "not found", as in the API.
        if (
            client_id is None
            or await practices.get_client(request.app[DB], viewer.practice.id, client_id) is None
        ):
            return renderer.not_found(viewer, spec, "client")
        return renderer.page(viewer, spec)

    return handler


def _login_page(files: _PageFiles) -> PageHandler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if await viewer_of(request) is not None:
            raise web.HTTPFound(safe_next(request.query.get("next", "")))
        return _html(files.login)

    return handler


# A path of this site: "/" then URL characters only. Browsers drop tabs and newlines and
# read "\\" as "/", so "/%09/evil.example" would leave the site: no whitespace, no control
# character, no backslash, and never "//" at the start.
_LOCAL_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]*")


def safe_next(raw: str) -> str:
    """Where to go after login: a path on this site only (no open redirect)."""
    return raw if _LOCAL_PATH.fullmatch(raw) else "/diary"


def _static_page(path: Path) -> PageHandler:
    """A page for people without a session (forgot password, set a password)."""
    text = path.read_text(encoding="utf-8")

    async def handler(request: web.Request) -> web.StreamResponse:
        return _html(text)

    return handler


async def _favicon(request: web.Request) -> web.StreamResponse:
    # Browsers ask for /favicon.ico whatever the page links; answer it rather than 404.
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _static_file(request: web.Request) -> web.StreamResponse:
    """A file under web/static/, or 404. (aiohttp's own static route let a file name too
    long for the file system escape as an OSError, answered 503 as if the database were
    down.) The name is resolved, symlinks included, and must stay inside the folder."""
    try:
        path = (STATIC_DIR / request.match_info["path"]).resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, too long, a NUL, a symlink loop
        raise web.HTTPNotFound() from None
    if not path.is_relative_to(_STATIC_ROOT) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/diary")


def add_routes(app: web.Application) -> None:
    files = _PageFiles(PAGES_DIR)
    renderer = PageRenderer(files)
    r = app.router
    r.add_get("/", _home)
    r.add_get("/favicon.ico", _favicon)
    r.add_get("/login", _login_page(files))
    r.add_get("/login/forgot", _static_page(PAGES_DIR / "forgot.html"))
    r.add_get("/account/password", _static_page(PAGES_DIR / "password.html"))
    r.add_get("/diary", _staff_page(renderer, "diary"))
    r.add_get("/appointments/{appointment_id}", _summary_page(renderer))
    r.add_get("/clients", _staff_page(renderer, "clients"))
    r.add_get("/clients/{client_id}", _client_page(renderer))
    r.add_get("/settings", _staff_page(renderer, "settings"))
    r.add_get("/settings/templates", _staff_page(renderer, "templates"))
    r.add_get("/settings/users", _staff_page(renderer, "users"))
    r.add_get(MINUTES_DASHBOARD_PATH, _staff_page(renderer, "minutes"))
    r.add_get("/static/{path:.+}", _static_file)
