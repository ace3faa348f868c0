"""Every route of the JSON API in one table: path, method, who may call it, body and reply
types, and the error statuses it answers. The aiohttp routes are registered from this table
and ``GET /api/openapi.json`` (server/openapi.py) is generated from it, so the description
cannot drift from what is served; the suite runs schemathesis against the live app to hold
the replies to it.

Pages (HTML), the call WebSocket and static files are not part of the API and keep their own
``add_routes``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from aiohttp import web

from server import api_replies as replies
from server import health, practices, practices_api
from server.accounts import api as accounts_api
from server.auth import routes as auth_routes
from server.auth.session import Role
from server.calls import api as calls_api
from server.calls import client_entry, network_check, start
from server.diary import api as diary_api
from server.diary import links_api, templates_api
from server.diary.appointments import Appointment
from server.diary.summary import AppointmentSummary
from server.sms import reports as sms_reports
from server.wallet import api as wallet_api
from server.wallet import webhooks as payment_webhooks
from server.wallet.ledger import LedgerEntry
from server.wallet.precall import PrecallResult
from server.wallet.purchases import Purchase
from server.webhooks import api as webhooks_api
from server.webhooks.store import DeliveryLogEntry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

ANY_STAFF: tuple[Role, ...] = ("site_admin", "clinician", "receptionist")
ADMIN: tuple[Role, ...] = ("site_admin",)
PUBLIC: tuple[Role, ...] = ()


@dataclass(frozen=True)
class Query:
    name: str
    kind: Any  # str, int, bool, date, datetime, uuid.UUID
    description: str
    required: bool = False


@dataclass(frozen=True)
class ApiRoute:
    method: Method
    path: str
    handler: Handler
    summary: str
    roles: tuple[Role, ...]  # PUBLIC: no login; else the roles allowed
    tag: str
    body: Any = None  # the msgspec type read_body decodes, or None
    reply: Any = None  # the msgspec type of a 2xx JSON reply (server/api_replies.py)
    statuses: tuple[int, ...] = (200,)  # success statuses
    errors: tuple[int, ...] = ()  # beyond those implied (401, 403, 400/413, 404)
    query: tuple[Query, ...] = ()
    media_type: str = "application/json"  # of the success reply
    # Long-lived or session-ending: described, but not fuzzed by the suite.
    fuzz: bool = True

    @property
    def authenticated(self) -> bool:
        return bool(self.roles)

    @property
    def role_restricted(self) -> bool:
        return bool(self.roles) and set(self.roles) != set(ANY_STAFF)

    def error_statuses(self) -> tuple[int, ...]:
        implied: set[int] = set(self.errors)
        if self.authenticated:
            implied.add(401)
        if self.role_restricted:
            implied.add(403)
        if self.body is not None:
            implied.update((400, 413))
        if self.query:
            implied.add(400)
        if "{" in self.path:
            implied.add(404)
        return tuple(sorted(implied))


_LIMIT = Query("limit", int, "how many, newest first (1 to 1000; default 100)")
_PERIOD = (
    Query("from", date, "first day (the practice's local date; default 29 days before 'to')"),
    Query("to", date, "last day, inclusive (default today)"),
)

API_ROUTES: tuple[ApiRoute, ...] = (
    # --- health ---------------------------------------------------------------------------
    ApiRoute(
        "GET",
        "/healthz",
        health.healthz,
        "Liveness",
        PUBLIC,
        "health",
        reply=replies.Alive,
    ),
    ApiRoute(
        "GET",
        "/readyz",
        health.readyz,
        "Readiness: database and Redis reachable, node not draining",
        PUBLIC,
        "health",
        reply=replies.Readiness,
        statuses=(200, 503),  # 503 says why not, in the same shape
    ),
    ApiRoute(
        "GET",
        "/metrics",
        health.metrics,
        "Prometheus metrics",
        PUBLIC,
        "health",
        reply=str,
        media_type="text/plain",
    ),
    # --- sessions -------------------------------------------------------------------------
    ApiRoute(
        "POST",
        "/api/login",
        auth_routes.login,
        "Log in with email and password; sets the session and CSRF cookies",
        PUBLIC,
        "sessions",
        reply=replies.LoggedIn,
        body=auth_routes.LoginBody,
        errors=(401, 429),
    ),
    ApiRoute(
        "POST",
        "/api/logout",
        auth_routes.logout,
        "End this session",
        ANY_STAFF,
        "sessions",
        reply=replies.LoggedOut,
        fuzz=False,  # would end the token the suite runs with
    ),
    ApiRoute(
        "GET",
        "/api/me",
        auth_routes.me,
        "The user, their practice and a CSRF token",
        ANY_STAFF,
        "sessions",
        reply=replies.Me,
    ),
    # --- practice, users, clients, appointment types --------------------------------------
    ApiRoute(
        "GET",
        "/api/practice",
        practices_api.get_practice,
        "The practice's settings",
        ANY_STAFF,
        "practice",
        reply=practices.Practice,
    ),
    ApiRoute(
        "PATCH",
        "/api/practice",
        practices_api.update_practice,
        "Change the practice's settings",
        ADMIN,
        "practice",
        body=practices_api.PracticeChanges,
        reply=practices.Practice,
    ),
    ApiRoute(
        "GET",
        "/api/users",
        practices_api.list_users,
        "The practice's users",
        ANY_STAFF,
        "practice",
        reply=list[practices.User],
    ),
    ApiRoute(
        "POST",
        "/api/users",
        practices_api.create_user,
        "Add a user",
        ADMIN,
        "practice",
        body=practices_api.NewUser,
        reply=practices.User,
        statuses=(201,),
        errors=(409,),
    ),
    ApiRoute(
        "POST",
        "/api/users/invite",
        accounts_api.invite_user,
        "Invite a user: an account without a password, and an email to set one",
        ADMIN,
        "practice",
        body=accounts_api.Invitation,
        reply=practices.User,
        statuses=(201,),
        errors=(409, 503),
    ),
    ApiRoute(
        "POST",
        "/api/password/forgot",
        accounts_api.forgot_password,
        "Email a one-time reset link (202 whether or not the address has an account)",
        PUBLIC,
        "sessions",
        reply=replies.ResetAsked,
        body=accounts_api.ForgotPassword,
        statuses=(202,),
        errors=(429,),
    ),
    ApiRoute(
        "POST",
        "/api/password/reset",
        accounts_api.reset_password,
        "Set a password with an invitation or reset link; ends every session of the user",
        PUBLIC,
        "sessions",
        body=accounts_api.NewPassword,
        reply=accounts_api.PasswordSet,
    ),
    ApiRoute(
        "POST",
        "/api/password/change",
        accounts_api.change_password,
        "Change one's own password: every other session of the user ends, this one goes on "
        "with the new token in the reply (and cookies)",
        ANY_STAFF,
        "sessions",
        reply=replies.PasswordChanged,
        body=accounts_api.PasswordChange,
        errors=(429,),
        fuzz=False,  # ends the sessions the suite runs with
    ),
    ApiRoute(
        "POST",
        "/api/users/{user_id}/invite",
        accounts_api.resend_invitation,
        "Send a new invitation link to a user who has not set a password (the old one dies)",
        ADMIN,
        "practice",
        reply=practices.User,
        statuses=(202,),
        errors=(409, 503),
    ),
    ApiRoute(
        "GET",
        "/api/users/{user_id}",
        practices_api.get_user,
        "One user",
        ANY_STAFF,
        "practice",
        reply=practices.User,
    ),
    ApiRoute(
        "PATCH",
        "/api/users/{user_id}",
        practices_api.update_user,
        "Change a user (deactivating or removing a role ends their sessions)",
        ADMIN,
        "practice",
        body=practices_api.UserChanges,
        reply=practices.User,
        errors=(409,),
    ),
    ApiRoute(
        "GET",
        "/api/clients",
        practices_api.list_clients,
        "Search the practice's clients",
        ANY_STAFF,
        "practice",
        reply=list[practices.Client],
        query=(Query("q", str, "part of the name, email or phone"),),
    ),
    ApiRoute(
        "POST",
        "/api/clients",
        practices_api.create_client,
        "Add a client",
        ANY_STAFF,
        "practice",
        body=practices_api.NewClient,
        reply=practices.Client,
        statuses=(201,),
    ),
    ApiRoute(
        "GET",
        "/api/clients/{client_id}",
        practices_api.get_client,
        "One client",
        ANY_STAFF,
        "practice",
        reply=practices.Client,
    ),
    ApiRoute(
        "PATCH",
        "/api/clients/{client_id}",
        practices_api.update_client,
        "Change a client",
        ANY_STAFF,
        "practice",
        body=practices_api.ClientChanges,
        reply=practices.Client,
    ),
    ApiRoute(
        "GET",
        "/api/clients/{client_id}/appointments",
        practices_api.client_appointments,
        "The client's appointments, newest first, with their outcomes",
        ANY_STAFF,
        "practice",
        reply=list[Appointment],
    ),
    ApiRoute(
        "GET",
        "/api/appointment-types",
        practices_api.list_appointment_types,
        "The practice's appointment types",
        ANY_STAFF,
        "practice",
        reply=list[practices.AppointmentType],
    ),
    ApiRoute(
        "POST",
        "/api/appointment-types",
        practices_api.create_appointment_type,
        "Add an appointment type",
        ADMIN,
        "practice",
        body=practices_api.NewAppointmentType,
        reply=practices.AppointmentType,
        statuses=(201,),
    ),
    ApiRoute(
        "PATCH",
        "/api/appointment-types/{type_id}",
        practices_api.update_appointment_type,
        "Change an appointment type",
        ADMIN,
        "practice",
        body=practices_api.AppointmentTypeChanges,
        reply=practices.AppointmentType,
    ),
    # --- diary ----------------------------------------------------------------------------
    ApiRoute(
        "GET",
        "/api/appointments",
        diary_api.list_appointments,
        "Appointments in a period (at most 62 days)",
        ANY_STAFF,
        "diary",
        reply=list[Appointment],
        query=(
            Query("from", str, "YYYY-MM-DD (practice's zone) or ISO date-time", required=True),
            Query("to", str, "YYYY-MM-DD (practice's zone) or ISO date-time", required=True),
            Query("clinician", uuid.UUID, "only this clinician's"),
            Query("include_cancelled", bool, "also cancelled ones"),
        ),
        errors=(404,),
    ),
    ApiRoute(
        "POST",
        "/api/appointments",
        diary_api.book_appointments,
        "Book one appointment or a recurring series",
        ANY_STAFF,
        "diary",
        reply=replies.Booking,
        body=diary_api.BookingBody,
        statuses=(201,),
        errors=(404, 409),
    ),
    ApiRoute(
        "POST",
        "/api/appointments/preview",
        diary_api.preview_booking,
        "What a booking would book (dates, clashes), booking nothing",
        ANY_STAFF,
        "diary",
        reply=replies.BookingPreview,
        body=diary_api.BookingBody,
        errors=(404,),
    ),
    ApiRoute(
        "GET",
        "/api/appointments/{appointment_id}",
        diary_api.get_appointment,
        "One appointment",
        ANY_STAFF,
        "diary",
        reply=Appointment,
    ),
    ApiRoute(
        "GET",
        "/api/appointments/{appointment_id}/summary",
        diary_api.get_summary,
        "Appointment, video URL and communications",
        ANY_STAFF,
        "diary",
        reply=AppointmentSummary,
    ),
    ApiRoute(
        "POST",
        "/api/appointments/{appointment_id}/cancel",
        diary_api.cancel_appointment,
        "Cancel an appointment or the rest of its series",
        ANY_STAFF,
        "diary",
        reply=replies.Cancellation,
        body=diary_api.CancelBody,
        errors=(409,),
    ),
    ApiRoute(
        "POST",
        "/api/appointments/{appointment_id}/move",
        diary_api.move_appointment,
        "Move an appointment (same link; the reminder moves with it)",
        ANY_STAFF,
        "diary",
        body=diary_api.MoveBody,
        reply=Appointment,
        errors=(409,),
    ),
    ApiRoute(
        "POST",
        "/api/appointments/{appointment_id}/rebook",
        diary_api.rebook_appointment,
        "Rebook an abandoned appointment: a new appointment with a new link (R-C7)",
        ANY_STAFF,
        "diary",
        reply=replies.Booking,
        body=diary_api.RebookBody,
        statuses=(201,),
        errors=(409,),
    ),
    ApiRoute(
        "GET",
        "/api/message-templates",
        templates_api.list_templates,
        "The practice's message templates",
        ANY_STAFF,
        "diary",
        reply=list[replies.MessageTemplate],
    ),
    ApiRoute(
        "POST",
        "/api/message-templates/preview",
        templates_api.preview_template,
        "A template filled with sample values",
        ANY_STAFF,
        "diary",
        reply=replies.TemplatePreview,
        body=templates_api.PreviewBody,
    ),
    ApiRoute(
        "PUT",
        "/api/message-templates/{trigger}/{channel}",
        templates_api.save_template,
        "Change a template",
        ADMIN,
        "diary",
        reply=replies.MessageTemplate,
        body=templates_api.TemplateBody,
    ),
    ApiRoute(
        "DELETE",
        "/api/message-templates/{trigger}/{channel}",
        templates_api.reset_template,
        "Back to the default template",
        ADMIN,
        "diary",
        reply=replies.MessageTemplate,
    ),
    # --- calls ----------------------------------------------------------------------------
    ApiRoute(
        "POST",
        "/api/appointments/{appointment_id}/video/start",
        start.start_video,
        "Switch to Video: the pre-call check, then the waiting room opens",
        ("clinician", "site_admin"),
        "calls",
        reply=replies.VideoStarted,
        body=start.StartVideo,
        statuses=(200, 201),
        errors=(402, 409),
    ),
    ApiRoute(
        "POST",
        "/api/appointments/{appointment_id}/video/close",
        start.close_video,
        "Close the waiting room: no call took place, the link stays valid (R-C9)",
        ("clinician", "site_admin"),
        "calls",
        reply=replies.WaitingRoomClosed,
        errors=(409,),
    ),
    ApiRoute(
        "GET",
        "/api/appointments/{appointment_id}/audit",
        calls_api.call_audit,
        "Every phase change of the appointment's calls",
        ANY_STAFF,
        "calls",
        reply=replies.CallAudit,
    ),
    ApiRoute(
        "GET",
        "/api/links/{token}",
        links_api.link_status,
        "What a client's link opens (public: the link is the credential)",
        PUBLIC,
        "calls",
        reply=replies.LinkStatus,
    ),
    ApiRoute(
        "POST",
        "/api/links/{token}/join",
        client_entry.join_with_link,
        "A client's call token for the link's call",
        PUBLIC,
        "calls",
        reply=replies.CallToken,
        errors=(410,),
    ),
    ApiRoute(
        "POST",
        "/api/links/{token}/network-check",
        network_check.start_check,
        "Pre-call network check: a short test leg answers the client's offer",
        PUBLIC,
        "calls",
        reply=replies.NetworkCheckAnswer,
        body=network_check.CheckOffer,
        errors=(410, 503),
    ),
    ApiRoute(
        "GET",
        "/api/links/{token}/network-check/{check_id}",
        network_check.check_result,
        "Whether the network check's media reached the server",
        PUBLIC,
        "calls",
        reply=replies.NetworkCheckResult,
        errors=(410,),
    ),
    # --- video minutes --------------------------------------------------------------------
    ApiRoute(
        "GET",
        "/api/minutes",
        wallet_api.summary,
        "Balance and payment method",
        ANY_STAFF,
        "minutes",
        reply=replies.MinutesSummary,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/bundles",
        wallet_api.bundles,
        "Bundles with VAT",
        ANY_STAFF,
        "minutes",
        reply=replies.Bundles,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/precall",
        wallet_api.precall,
        "The pre-call check for an appointment or a length",
        ANY_STAFF,
        "minutes",
        reply=PrecallResult,
        query=(
            Query("appointment_id", uuid.UUID, "check this appointment"),
            Query("duration_minutes", int, "or check a length (1 to 1440)"),
        ),
        errors=(404, 409),
    ),
    ApiRoute(
        "GET",
        "/api/minutes/settings",
        wallet_api.get_settings,
        "Payment settings (the Direct Debit mandate)",
        ADMIN,
        "minutes",
        reply=wallet_api.WalletSettings,
    ),
    ApiRoute(
        "PUT",
        "/api/minutes/settings",
        wallet_api.put_settings,
        "Change the payment settings",
        ADMIN,
        "minutes",
        body=wallet_api.WalletSettings,
        reply=wallet_api.WalletSettings,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/purchases",
        wallet_api.list_purchase_history,
        "Purchases, newest first",
        ADMIN,
        "minutes",
        reply=list[Purchase],
        query=(_LIMIT,),
    ),
    ApiRoute(
        "POST",
        "/api/minutes/purchases",
        wallet_api.create_purchase,
        "Buy a bundle (idempotent per key)",
        ADMIN,
        "minutes",
        body=wallet_api.NewPurchase,
        reply=wallet_api.PurchaseReply,
        statuses=(200, 201),
        errors=(409, 503),
    ),
    ApiRoute(
        "GET",
        "/api/minutes/purchases/{purchase_id}",
        wallet_api.get_one_purchase,
        "One purchase",
        ADMIN,
        "minutes",
        reply=Purchase,
    ),
    ApiRoute(
        "POST",
        "/api/minutes/purchases/{purchase_id}/reconcile",
        wallet_api.reconcile,
        "Ask the provider again about an unsettled purchase",
        ADMIN,
        "minutes",
        reply=wallet_api.PurchaseReply,
        errors=(503,),
    ),
    ApiRoute(
        "GET",
        "/api/minutes/purchases/{purchase_id}/paypal-return",
        wallet_api.paypal_returned,
        "PayPal's return after approval (redirects to the dashboard)",
        ADMIN,
        "minutes",
        statuses=(303,),
        query=(Query("token", str, "PayPal's order id", required=True),),
        fuzz=False,  # a redirect, for browsers coming back from PayPal
    ),
    ApiRoute(
        "GET",
        "/api/minutes/purchases/{purchase_id}/paypal-cancel",
        wallet_api.paypal_cancelled,
        "PayPal's return after the payer cancelled (redirects to the dashboard)",
        ADMIN,
        "minutes",
        statuses=(303,),
        query=(Query("token", str, "PayPal's order id", required=True),),
        fuzz=False,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/usage",
        wallet_api.usage,
        "Usage by day, clinician and call",
        ADMIN,
        "minutes",
        reply=replies.Usage,
        query=_PERIOD,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/ledger",
        wallet_api.ledger_entries,
        "Ledger entries, newest first",
        ADMIN,
        "minutes",
        reply=list[LedgerEntry],
        query=(_LIMIT,),
    ),
    ApiRoute(
        "GET",
        "/api/minutes/live",
        wallet_api.live,
        "Server-sent events: calls live now and the balance, every ~2 s",
        ADMIN,
        "minutes",
        reply=str,
        media_type="text/event-stream",
        fuzz=False,  # a stream that lasts as long as the session
    ),
    ApiRoute(
        "GET",
        "/api/minutes/export/usage.csv",
        wallet_api.export_usage,
        "Usage by call as CSV",
        ADMIN,
        "minutes",
        reply=str,
        media_type="text/csv",
        query=_PERIOD,
    ),
    ApiRoute(
        "GET",
        "/api/minutes/export/purchases.csv",
        wallet_api.export_purchases,
        "Purchases as CSV",
        ADMIN,
        "minutes",
        reply=str,
        media_type="text/csv",
    ),
    # --- payment provider callbacks (signed by the provider, no login) ------------------------
    ApiRoute(
        "POST",
        "/webhooks/gocardless",
        payment_webhooks.gocardless_webhook,
        "GoCardless events (Webhook-Signature)",
        PUBLIC,
        "provider callbacks",
        reply=replies.PaymentEventsApplied,
        errors=(400, 401, 413),
    ),
    ApiRoute(
        "POST",
        "/webhooks/paypal",
        payment_webhooks.paypal_webhook,
        "PayPal events (verified with PayPal)",
        PUBLIC,
        "provider callbacks",
        reply=replies.PaymentEventsApplied,
        errors=(400, 401, 413, 503),
    ),
    ApiRoute(
        "POST",
        "/webhooks/sms/twilio",
        sms_reports.twilio_status_callback,
        "Twilio's SMS status callback (X-Twilio-Signature; form-encoded)",
        PUBLIC,
        "provider callbacks",
        reply=replies.StatusReportApplied,
        errors=(400, 403, 404),
    ),
    # --- outgoing webhooks ----------------------------------------------------------------
    ApiRoute(
        "GET",
        "/api/webhooks",
        webhooks_api.get_endpoint,
        "The practice's webhook endpoint and its signing secret",
        ADMIN,
        "webhooks",
        reply=replies.WebhookEndpoint,
    ),
    ApiRoute(
        "PUT",
        "/api/webhooks",
        webhooks_api.put_endpoint,
        "Set the webhook URL (and rotate the secret)",
        ADMIN,
        "webhooks",
        reply=replies.WebhookEndpoint,
        body=webhooks_api.EndpointSettings,
    ),
    ApiRoute(
        "DELETE",
        "/api/webhooks",
        webhooks_api.delete_endpoint,
        "Remove the webhook endpoint",
        ADMIN,
        "webhooks",
        reply=replies.WebhookRemoved,
    ),
    ApiRoute(
        "POST",
        "/api/webhooks/test",
        webhooks_api.send_test_event,
        "Queue a webhook.test event",
        ADMIN,
        "webhooks",
        reply=replies.WebhookTestQueued,
        statuses=(202,),
        errors=(409,),
    ),
    ApiRoute(
        "GET",
        "/api/webhooks/deliveries",
        webhooks_api.list_deliveries,
        "The delivery log: recent events, status, attempts, last answer",
        ADMIN,
        "webhooks",
        reply=list[DeliveryLogEntry],
    ),
)


def add_api_routes(app: web.Application, routes: tuple[ApiRoute, ...] = API_ROUTES) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
