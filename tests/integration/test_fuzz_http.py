"""Property-based fuzzing of every HTTP route, taken from the app's own route table.

The routes come from aiohttp's router, so a route added later is fuzzed without anyone
listing it. Each example sends hypothesis-made path parameters, query strings and JSON
bodies (with the edge values that once broke things: NUL, lone surrogates, calendar-edge
dates, huge numbers, long text), as a site admin, a receptionist, a cookie session without
CSRF, or nobody. What must hold for every one: no 5xx, no unhandled exception in the loop
(the autouse fixture fails the test on one), the ledger adds up (R-M5) and the other
practice's data never changes.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from aiohttp import ClientTimeout
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.support import PASSWORD, ApiClient, PracticeFixture
from tests.wallet_fixtures import ledger_consistent

_PLACEHOLDER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
KNOWN_QUERY = [
    "appointment_id", "clinician", "duration_minutes", "from", "include_cancelled",
    "limit", "next", "q", "to", "token", "purchase", "status", "week",
]  # fmt: skip
KNOWN_FIELDS = [
    "name", "email", "phone", "password", "roles", "active", "timezone", "vat_rate_bp",
    "payment_method", "reminder_offset_minutes", "duration_minutes", "is_video",
    "client_id", "clinician_id", "type_id", "appointment_type_id", "starts_at", "ends_at",
    "recurrence", "frequency", "until", "interval", "reason", "notify_client", "scope",
    "skip_clashes", "bundle_minutes", "idempotency_key", "gocardless_mandate_id", "subject",
    "body", "channel", "trigger", "enabled", "events", "id", "event_type", "resource",
]  # fmt: skip
EDGE_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "{{content}}", "{{", "<script>", "0001-01-01",
    "9999-12-31", "0001-01-02", "9999-12-30", "2024-02-30", "2024-13-01",
    "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00", "2024-06-01T10:00:00",
    "-1", "0", "1e309", "99999999999999999999", "NaN", "x" * 5000, "é", "../../etc/passwd",
    "localtime", "posixrules", "Europe/London", "weekly", "site_admin", "true", "null",
]  # fmt: skip

_scalars = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.uuids().map(str),
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
)
_field_names = st.one_of(st.sampled_from(KNOWN_FIELDS), st.text(max_size=10))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KNOWN_FIELDS), st.text(max_size=10)), inner, max_size=6
        ),
    ),
    max_leaves=12,
)
_bodies = st.one_of(
    st.dictionaries(st.sampled_from(KNOWN_FIELDS), _json, max_size=8),
    _json,
    st.binary(max_size=64),
)
_query_values = st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=30), st.uuids().map(str))
_queries = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_QUERY), st.text(min_size=1, max_size=8)),
    _query_values,
    max_size=4,
)
WHO = ["site_admin", "receptionist", "cookie_without_csrf", "nobody"]


def route_table(client: ApiClient) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app; static folders as ``prefix/{file}``."""
    table: set[tuple[str, str]] = set()
    for route in client.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        template = info.get("path") or info.get("formatter")
        if template is None and "prefix" in info:
            template = str(info["prefix"]).rstrip("/") + "/{file}"
        assert isinstance(template, str), info
        table.add((route.method, template))
    return sorted(table)


def _wire(value: str) -> str:
    """Percent-encoded as a hostile client would send it (a lone surrogate as its bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _url(template: str, values: list[str], query: dict[str, str]) -> URL:
    path = template
    for value in values[: len(_PLACEHOLDER.findall(template))]:
        path = _PLACEHOLDER.sub(_wire(value).replace("\\", "\\\\"), path, count=1)
    if query:
        path += "?" + "&".join(f"{_wire(k)}={_wire(v)}" for k, v in query.items())
    return URL(path, encoded=True)


async def _other_practice_digest(db: asyncpg.Pool, practice_id: uuid.UUID) -> str:
    digest: str = await db.fetchval(
        """SELECT md5(concat_ws('|',
             (SELECT row(p.*)::text FROM practices p WHERE id = $1),
             (SELECT string_agg(row(u.*)::text, ',' ORDER BY id) FROM users u
              WHERE practice_id = $1),
             (SELECT string_agg(row(c.*)::text, ',' ORDER BY id) FROM clients c
              WHERE practice_id = $1),
             (SELECT string_agg(row(a.*)::text, ',' ORDER BY id) FROM appointments a
              WHERE practice_id = $1),
             (SELECT row(w.*)::text FROM wallets w WHERE practice_id = $1)))""",
        practice_id,
    )
    return digest


@pytest.mark.timeout(600)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_route_answers_5xx_or_changes_another_practice(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    data: st.DataObject,
) -> None:
    routes = route_table(client)
    assert ("POST", "/api/login") in routes and ("GET", "/api/minutes/usage") in routes
    before = await _other_practice_digest(db, other_practice.id)
    method, template = data.draw(st.sampled_from(routes), label="route")
    real_ids = [
        str(practice.clinician.id), str(practice.client.id), str(other_practice.admin.id),
        str(other_practice.client.id), str(practice.video_type.id),
    ]  # fmt: skip
    params = data.draw(
        st.lists(st.one_of(st.sampled_from(real_ids), _query_values), min_size=3, max_size=3),
        label="path parameters",
    )
    query = data.draw(_queries, label="query")
    url = _url(template, params, query)
    body = data.draw(_bodies, label="body") if method in ("POST", "PUT", "PATCH") else None
    who = data.draw(st.sampled_from(WHO), label="who")
    headers = await _credentials(client, practice, who)
    kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["data"] = _encode(body)
        headers["Content-Type"] = "application/json"
    try:
        async with client.request(
            method, url, timeout=ClientTimeout(total=20), **kwargs
        ) as response:
            status = response.status
    except ValueError:
        return  # the client library refused to send it (e.g. a header it cannot encode)
    assert status < 500, (method, str(url), body, who, status)
    assert await ledger_consistent(db)  # R-M5
    assert await _other_practice_digest(db, other_practice.id) == before


def _encode(body: object) -> bytes:
    # ensure_ascii: lone surrogates go out as \ud800 escapes, as a hostile client may send.
    return json.dumps(body, ensure_ascii=True).encode()


async def _credentials(client: ApiClient, practice: PracticeFixture, who: str) -> dict[str, str]:
    """Fresh enough credentials: a fuzzed request may have ended the last session (a logout,
    a new password), so a refused one is replaced by a new login when that still works."""
    client.session.cookie_jar.clear()
    if who == "nobody":
        return {}
    role = "site_admin" if who == "cookie_without_csrf" else who
    token = practice.tokens.get(role)
    if (
        token is None
        or (await client.get("/api/me", headers={"Authorization": token})).status != 200
    ):
        reply = await client.post(
            "/api/login", json={"email": practice.user(role).email, "password": PASSWORD}
        )
        client.session.cookie_jar.clear()
        if reply.status != 200:
            return {}  # the fuzz changed this user's password, or logins are throttled
        token = f"Bearer {(await reply.json())['token']}"
        practice.tokens[role] = token
    if who == "cookie_without_csrf":
        return {"Cookie": f"vc_session={token.removeprefix('Bearer ')}"}
    return {"Authorization": token}
