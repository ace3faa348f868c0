"""Every error status the OpenAPI description documents is one the server really answers.

For each route of ``server/api_routes.py`` and each documented 4xx/5xx: a request that gets
exactly that status from the live app (a scenario here), or the name of the test elsewhere
in the suite that produces it with the real provider fake it needs. A status the table
documents and nobody can produce fails the coverage test: the table must lose it.
401 and 403 are proven for every route by test_openapi.py (auth errors).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from server.api_routes import API_ROUTES, ApiRoute
from server.app import create_app
from server.appkeys import HEALTH
from server.config import Config, PaymentsConfig, TwilioConfig
from server.sms.twilio import signature as twilio_signature
from server.wallet.payments.paypal import WEBHOOK_HEADERS as PAYPAL_WEBHOOK_HEADERS
from tests.calls_fixtures import Booked, book_video, fund
from tests.diary_fixtures import (
    SmtpServer,
    booking_body,
    diary_config,
    next_weekday_at,
    running_smtp_server,
)
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import make_call, set_balance

Key = tuple[str, str, int]  # method, path, status
INTEGRATION = Path(__file__).parent

# Statuses that need a payment provider's fake server or a media fault: produced by these
# tests (file, test function), whose source must name the status.
PROVEN_ELSEWHERE: dict[Key, tuple[str, str]] = {
    ("POST", "/api/links/{token}/network-check", 503): (
        "test_network_check.py",
        "test_checks_are_capped_per_node",
    ),
    ("POST", "/api/minutes/purchases/{purchase_id}/reconcile", 503): (
        "test_wallet_gocardless.py",
        "test_a_provider_timeout_leaves_it_pending_then_reconcile_credits_once",
    ),
    ("POST", "/api/users/invite", 503): ("test_accounts.py", "test_no_email_no_invitation"),
    ("POST", "/api/users/{user_id}/invite", 503): (
        "test_accounts.py",
        "test_no_email_no_new_invitation_link",
    ),
    ("POST", "/webhooks/gocardless", 400): (
        "test_wallet_gocardless.py",
        "test_a_forged_or_malformed_webhook_changes_nothing",
    ),
    ("POST", "/webhooks/gocardless", 413): (
        "test_input_domain.py",
        "test_a_real_sized_webhook_batch_is_accepted_and_a_huge_one_refused",
    ),
    ("POST", "/webhooks/paypal", 400): (
        "test_wallet_paypal.py",
        "test_a_refund_webhook_reverses_once_and_a_forged_one_changes_nothing",
    ),
}
# Produced by test_provider_callbacks_answer_their_documented_errors, below.
PROVIDER_STATUSES: set[Key] = {
    ("POST", "/api/minutes/purchases", 503),
    ("POST", "/webhooks/paypal", 413),
    ("POST", "/webhooks/paypal", 503),
    ("POST", "/webhooks/sms/twilio", 400),
    ("POST", "/webhooks/sms/twilio", 403),
}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


def _documented() -> set[Key]:
    return {
        (route.method, route.path, status)
        for route in API_ROUTES
        for status in route.error_statuses()
        if status not in (401, 403)
    }


def _fill(path: str, **values: str) -> str:
    """The path with its parameters: given values, else a well-formed id that matches nothing."""
    for name in ("user_id", "client_id", "type_id", "appointment_id", "purchase_id"):
        path = path.replace("{" + name + "}", values.get(name, str(uuid.uuid4())))
    path = path.replace("{token}", values.get("token", "x" * 43))
    path = path.replace("{check_id}", values.get("check_id", "nothing"))
    path = path.replace("{trigger}", values.get("trigger", "no_such_trigger"))
    return path.replace("{channel}", values.get("channel", "email"))


class Probe:
    """Sends requests as the practice's site admin (every role-restricted route allows it)."""

    def __init__(self, client: ApiClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.seen: dict[Key, int] = {}

    async def send(
        self, route: ApiRoute, *, path: str | None = None, anonymous: bool = False, **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = {} if anonymous else dict(self.headers)
        headers.update(kw.pop("headers", {}))
        return await self.client.request(
            route.method, path or _fill(route.path), headers=headers, **kw
        )

    async def expect(self, route: ApiRoute, status: int, **kw: Any) -> None:
        response = await self.send(route, **kw)
        text = await response.text()
        assert response.status == status, (route.method, route.path, status, text[:300])
        if status in route.error_statuses():
            assert '"error"' in text, text[:300]  # the one error shape
        self.seen[(route.method, route.path, status)] = status


def _route(method: str, path: str) -> ApiRoute:
    return next(r for r in API_ROUTES if r.method == method and r.path == path)


async def _generic_statuses(probe: Probe, max_body_bytes: int, real: dict[str, str]) -> None:
    """400 (malformed body or query), 413 (body too large), 404 (nothing at that id).
    ``real``: path values that exist, so the body is what is wrong."""
    for route in API_ROUTES:
        documented = route.error_statuses()
        if route.body is not None:
            path = _fill(route.path, **real)
            json_type = {"Content-Type": "application/json"}
            anonymous = not route.authenticated
            await probe.expect(
                route, 400, path=path, data=b"{not json", headers=json_type, anonymous=anonymous
            )
            await probe.expect(
                route,
                413,
                path=path,
                anonymous=anonymous,
                data=io.BytesIO(b"[" + b" " * max_body_bytes + b"]"),
                headers={"Content-Type": "application/json"},
            )
        elif route.query and 400 in documented:
            params = BAD_QUERIES[f"{route.method} {route.path}"]
            await probe.expect(
                route, 400, path=_fill(route.path, **real), params=params, anonymous=False
            )
        if "{" in route.path and 404 in documented and route.body is None:
            await probe.expect(route, 404, anonymous=not route.authenticated)
        elif "{" in route.path and 404 in documented:
            await probe.expect(route, 404, json=_minimal_body(route))


# A query the route refuses: a value of the wrong kind, out of bounds, or missing.
BAD_QUERIES: dict[str, dict[str, str]] = {
    "GET /api/clients": {"q": "\x00"},
    "GET /api/appointments": {"from": "not-a-date", "to": "2030-01-01"},
    "GET /api/minutes/precall": {},  # neither an appointment nor a length
    "GET /api/minutes/purchases": {"limit": "0"},
    "GET /api/minutes/purchases/{purchase_id}/paypal-return": {},  # PayPal's token missing
    "GET /api/minutes/purchases/{purchase_id}/paypal-cancel": {},
    "GET /api/minutes/usage": {"from": "yesterday"},
    "GET /api/minutes/ledger": {"limit": "many"},
    "GET /api/minutes/export/usage.csv": {"to": "1999-13-01"},
}


def _minimal_body(route: ApiRoute) -> dict[str, Any]:
    """A body that decodes, for a 404 on the path (the id is checked after the body)."""
    later = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    bodies: dict[str, dict[str, Any]] = {
        "PATCH /api/users/{user_id}": {"name": "Someone"},
        "PATCH /api/clients/{client_id}": {"name": "Someone"},
        "PATCH /api/appointment-types/{type_id}": {"name": "Some type"},
        "POST /api/appointments/{appointment_id}/cancel": {},
        "POST /api/appointments/{appointment_id}/move": {"starts_at": later},
        "POST /api/appointments/{appointment_id}/rebook": {"starts_at": later},
        "PUT /api/message-templates/{trigger}/{channel}": {"subject": "s", "body": "b"},
        "POST /api/appointments/{appointment_id}/video/start": {},
        "POST /api/links/{token}/network-check": {"sdp": "v=0\r\n"},
    }
    return bodies[f"{route.method} {route.path}"]


Scenario = Callable[["World"], Awaitable[None]]


class World:
    """The practice, its data and the probe the scenarios share."""

    def __init__(
        self,
        probe: Probe,
        client: ApiClient,
        db: asyncpg.Pool,
        practice: PracticeFixture,
        config: Config,
        app: web.Application,
    ) -> None:
        self.probe, self.client, self.db = probe, client, db
        self.practice, self.config, self.app = practice, config, app

    async def booked(self, **kw: Any) -> Booked:
        # The admin is the clinician: the probe (an admin) may start its video.
        return await book_video(
            self.db, self.practice, self.config, clinician_role="site_admin", **kw
        )

    async def expect(self, method: str, route_path: str, status: int, **kw: Any) -> None:
        await self.probe.expect(_route(method, route_path), status, **kw)


async def _readyz_draining(w: World) -> None:
    w.app[HEALTH].draining = True  # what SIGTERM sets (R-A2)
    try:
        await w.expect("GET", "/readyz", 503, anonymous=True)
    finally:
        w.app[HEALTH].draining = False


async def _login_errors(w: World) -> None:
    email = w.practice.receptionist.email
    for _ in range(w.config.login_failures_per_account):
        await w.expect("POST", "/api/login", 401, json={"email": email, "password": "wrong"})
    await w.expect("POST", "/api/login", 429, json={"email": email, "password": "wrong"})


async def _user_conflicts(w: World) -> None:
    taken = {"email": w.practice.clinician.email, "name": "Twin", "roles": ["clinician"]}
    await w.expect("POST", "/api/users", 409, json={**taken, "password": "long-enough-pass"})
    await w.expect("POST", "/api/users/invite", 409, json=taken)
    path = _fill("/api/users/{user_id}", user_id=str(w.practice.receptionist.id))
    await w.expect(
        "PATCH",
        "/api/users/{user_id}",
        409,
        path=path,
        json={"email": w.practice.clinician.email},
    )


async def _account_errors(w: World) -> None:
    # Nothing to resend to a user who has set a password.
    resend = "/api/users/{user_id}/invite"
    path = _fill(resend, user_id=str(w.practice.receptionist.id))
    await w.expect("POST", resend, 409, path=path)
    clinician = await login_as(w.client, w.practice, "clinician")
    wrong = {"current_password": "not-the-password", "new_password": "whatever-else-1"}
    for _ in range(w.config.login_failures_per_account):
        response = await w.probe.send(
            _route("POST", "/api/password/change"), json=wrong, headers=clinician
        )
        assert response.status == 400
    await w.expect("POST", "/api/password/change", 429, json=wrong, headers=clinician)


async def _forgot_limit(w: World) -> None:
    body = {"email": "nobody@videoconsult.test"}
    for _ in range(w.config.accounts.resets_per_hour):
        response = await w.probe.send(_route("POST", "/api/password/forgot"), json=body)
        assert response.status == 202
    await w.expect("POST", "/api/password/forgot", 429, json=body)


async def _diary_errors(w: World) -> None:
    p = w.practice
    starts = next_weekday_at(10)
    await w.expect(
        "GET",
        "/api/appointments",
        404,
        params={
            "from": starts.date().isoformat(),
            "to": (starts + timedelta(days=1)).date().isoformat(),
            "clinician": str(uuid.uuid4()),
        },
    )
    nobody = booking_body(p, starts, client_id=str(uuid.uuid4()))
    await w.expect("POST", "/api/appointments", 404, json=nobody)
    await w.expect("POST", "/api/appointments/preview", 404, json=nobody)
    first = await w.client.post(
        "/api/appointments", json=booking_body(p, starts), headers=w.probe.headers
    )
    assert first.status == 201
    await w.expect("POST", "/api/appointments", 409, json=booking_body(p, starts))
    other = await w.client.post(
        "/api/appointments",
        json=booking_body(p, starts + timedelta(hours=2)),
        headers=w.probe.headers,
    )
    moved_id = (await other.json())["appointments"][0]["id"]
    await w.expect(
        "POST",
        "/api/appointments/{appointment_id}/move",
        409,
        path=_fill("/api/appointments/{appointment_id}/move", appointment_id=moved_id),
        json={"starts_at": starts.isoformat()},
    )
    # Rebook is for an abandoned appointment only.
    await w.expect(
        "POST",
        "/api/appointments/{appointment_id}/rebook",
        409,
        path=_fill("/api/appointments/{appointment_id}/rebook", appointment_id=moved_id),
        json={},
    )


async def _call_errors(w: World) -> None:
    p = w.practice
    start_path = "/api/appointments/{appointment_id}/video/start"
    close_path = "/api/appointments/{appointment_id}/video/close"
    precall = "/api/minutes/precall"
    # R-M7: no minutes, no waiting room.
    await set_balance(w.db, p.id, 0)
    booked = await w.booked()
    await w.expect(
        "POST",
        start_path,
        402,
        path=_fill(start_path, appointment_id=str(booked.appointment_id)),
        json={},
    )
    # R-C9: too early.
    later = await w.booked(starts_at=datetime.now(UTC) + timedelta(days=2))
    await fund(w.db, p, 3600 * 10)
    await w.expect(
        "POST",
        start_path,
        409,
        path=_fill(start_path, appointment_id=str(later.appointment_id)),
        json={},
    )
    await w.expect(
        "POST",
        close_path,
        409,
        path=_fill(close_path, appointment_id=str(later.appointment_id)),
    )
    in_person = await w.booked(video=False)
    await w.expect("GET", precall, 404, params={"appointment_id": str(uuid.uuid4())})
    await w.expect("GET", precall, 409, params={"appointment_id": str(in_person.appointment_id)})
    # R-C6: a cancelled appointment's link is dead (410) for join and checks.
    dead = await w.booked()
    cancelled = await w.client.post(
        f"/api/appointments/{dead.appointment_id}/cancel", json={}, headers=w.probe.headers
    )
    assert cancelled.status == 200, await cancelled.text()
    # A call in progress is not cancelled under the clinician's feet.
    call_id = await make_call(w.db, p, state="in_progress")
    held = await w.db.fetchval("SELECT appointment_id FROM calls WHERE id = $1", call_id)
    await w.expect(
        "POST",
        "/api/appointments/{appointment_id}/cancel",
        409,
        path=f"/api/appointments/{held}/cancel",
        json={},
    )
    token = dead.link_token
    await w.expect("POST", "/api/links/{token}/join", 410, path=f"/api/links/{token}/join")
    await w.expect(
        "POST",
        "/api/links/{token}/network-check",
        410,
        path=f"/api/links/{token}/network-check",
        json={"sdp": "v=0\r\n"},
        anonymous=True,
    )
    await w.expect(
        "GET",
        "/api/links/{token}/network-check/{check_id}",
        410,
        path=f"/api/links/{token}/network-check/nothing",
        anonymous=True,
    )


async def _purchase_errors(w: World) -> None:
    reused = {"bundle_minutes": 600, "idempotency_key": "openapi-errors-1"}
    await w.expect("POST", "/api/minutes/purchases", 409, json=reused)  # R-M4


async def _webhook_errors(w: World) -> None:
    await w.expect("POST", "/api/webhooks/test", 409)
    for path in ("/webhooks/gocardless", "/webhooks/paypal"):
        await w.expect("POST", path, 401, data=b"{}", anonymous=True)
    await w.expect("POST", "/webhooks/sms/twilio", 404, data={"a": "b"}, anonymous=True)


SCENARIOS: tuple[Scenario, ...] = (
    _readyz_draining,
    _login_errors,
    _user_conflicts,
    _forgot_limit,
    _account_errors,
    _diary_errors,
    _call_errors,
    _webhook_errors,
)


async def test_every_documented_error_status_is_produced(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    app: web.Application,
) -> None:
    probe = Probe(client, await login_as(client, practice, "site_admin"))
    client.session.cookie_jar.clear()  # Bearer only: no CSRF cookie in play
    world = World(probe, client, db, practice, config, app)
    booked = await world.booked()
    bought = await client.post(
        "/api/minutes/purchases",
        json={"bundle_minutes": 300, "idempotency_key": "openapi-errors-1"},
        headers=probe.headers,
    )
    assert bought.status == 201, await bought.text()  # the sandbox provider confirms at once
    real = {
        "purchase_id": (await bought.json())["purchase"]["id"],
        "user_id": str(practice.receptionist.id),
        "client_id": str(practice.client.id),
        "type_id": str(practice.video_type.id),
        "appointment_id": str(booked.appointment_id),
        "token": booked.link_token,
        "trigger": "video_appointment_booked",
    }
    await _generic_statuses(probe, config.max_body_bytes, real)
    for scenario in SCENARIOS:
        await scenario(world)
    await _purchase_errors(world)
    missing = _documented() - set(probe.seen) - set(PROVEN_ELSEWHERE) - PROVIDER_STATUSES
    assert not missing, "documented but not produced:\n" + "\n".join(map(str, sorted(missing)))


def test_statuses_proven_elsewhere_name_real_tests_that_produce_them() -> None:
    for (method, path, status), (file_name, test_name) in PROVEN_ELSEWHERE.items():
        assert (method, path, status) in _documented(), (method, path, status)
        tree = ast.parse((INTEGRATION / file_name).read_text())
        found = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == test_name
        ]
        assert found, f"{file_name} has no {test_name}"
        assert str(status) in ast.unparse(found[0]), f"{test_name} never sees {status}"


async def test_provider_callbacks_answer_their_documented_errors(
    config: Config, aiohttp_client: AiohttpClient, practice: PracticeFixture
) -> None:
    # PayPal configured, but nothing answers at its address; GoCardless not configured.
    payments = PaymentsConfig(
        mode="live",
        paypal_base_url="http://127.0.0.1:9",
        paypal_client_id="client",
        paypal_client_secret="secret",
        paypal_webhook_id="WH-1",
        timeout_seconds=0.5,
        reconcile_interval_seconds=0,
    )
    twilio = TwilioConfig(account_sid="AC" + "0" * 32, auth_token="token", sender="+15005550006")
    live = dataclasses.replace(config, payments=payments, sms_provider="twilio", twilio=twilio)
    client: ApiClient = await aiohttp_client(create_app(live))
    probe = Probe(client, await login_as(client, practice, "site_admin"))
    client.session.cookie_jar.clear()
    # The practice pays by Direct Debit, whose provider is not configured here.
    bundle = {"bundle_minutes": 300, "idempotency_key": "openapi-errors-2"}
    await probe.expect(_route("POST", "/api/minutes/purchases"), 503, json=bundle)
    paypal = _route("POST", "/webhooks/paypal")
    signed = {header: "x" for header in PAYPAL_WEBHOOK_HEADERS.values()}
    event = {"id": "WH-EV-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {}}
    await probe.expect(paypal, 503, json=event, headers=signed, anonymous=True)
    huge = b'{"id": "' + b"x" * live.webhook_max_body_bytes + b'"}'
    await probe.expect(paypal, 413, data=io.BytesIO(huge), headers=signed, anonymous=True)
    sms = _route("POST", "/webhooks/sms/twilio")
    fields = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    url = live.base_url + "/webhooks/sms/twilio?message=nonsense"
    headers = {"X-Twilio-Signature": twilio_signature("token", url, fields)}
    await probe.expect(
        sms, 400, path="/webhooks/sms/twilio?message=nonsense", data=fields, headers=headers
    )
    await probe.expect(sms, 403, data=fields, anonymous=True)
    assert set(probe.seen) == PROVIDER_STATUSES
