"""HTTP API of video minutes: balance, bundles, pre-call check, purchases, dashboard.

Who may do what: any staff member sees the balance, the bundles and runs the pre-call
check (clinicians switch to video); only a site admin buys (R-M3), sets the mandate, and
sees the dashboard, the purchase history and the exports (R-A1).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import DB
from server.auth.session import Staff, current_staff, held_open, require_role
from server.http import ApiError, json_response, not_found, parse_uuid, read_body
from server.query import int_in_range, invalid_parameter, query_day, query_int, query_text
from server.validation import EARLIEST_DAY
from server.wallet import dashboard, ledger, mandates
from server.wallet.bundles import format_balance, price_list
from server.wallet.checkout import (
    NoMandate,
    ReturnTokenMismatch,
    paypal_cancel,
    paypal_return,
    reconcile_purchase,
    start_purchase,
)
from server.wallet.payments.provider import (
    ProviderNotConfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from server.wallet.precall import appointment_length, precall_check
from server.wallet.purchases import IdempotencyKeyReused, Purchase, get_purchase, list_purchases
from server.wallet.services import WALLET, wallet_context

BUY = "buy video minutes"
VIEW = "see the video minutes dashboard"
LIVE_INTERVAL_SECONDS = 2.0
MAX_PERIOD_DAYS = 366

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
]
MandateId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class NewPurchase(msgspec.Struct, forbid_unknown_fields=True):
    bundle_minutes: Literal[300, 600, 1000, 2000, 5000]
    # One per purchase attempt, made by the page: a double click sends the same key twice.
    idempotency_key: IdempotencyKey


class WalletSettings(msgspec.Struct, forbid_unknown_fields=True):
    gocardless_mandate_id: MandateId | None


class PurchaseReply(msgspec.Struct):
    purchase: Purchase
    balance_seconds: int
    balance_display: str
    message: str | None = None


# --- balance, bundles, pre-call ------------------------------------------------------------


async def summary(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    db = request.app[DB]
    balance = await ledger.balance_seconds(db, staff.practice_id)
    practice = await _practice(request, staff)
    return json_response(
        {
            "balance_seconds": balance,
            "balance_display": format_balance(balance),
            "payment_method": practice.payment_method,
            "payments_mode": request.app[WALLET].providers.mode,
            "can_buy": staff.has("site_admin"),
        }
    )


async def bundles(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    practice = await _practice(request, staff)
    return json_response(
        {"vat_rate_bp": practice.vat_rate_bp, "bundles": price_list(practice.vat_rate_bp)}
    )


async def precall(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    db = request.app[DB]
    raw_appointment = query_text(request, "appointment_id", 36)
    raw_minutes = query_text(request, "duration_minutes", 20)
    exclude = None
    if raw_appointment:
        appointment_id = parse_uuid(raw_appointment, "appointment")
        length = await appointment_length(db, staff.practice_id, appointment_id)
        if length is None:
            not_found("appointment")
        if length.cancelled:
            raise ApiError(409, "appointment_cancelled", "this appointment was cancelled")
        if not length.is_video:
            raise ApiError(409, "not_video", "this is not a video appointment")
        seconds = length.seconds
        exclude = appointment_id
    elif raw_minutes:
        seconds = 60 * int_in_range("duration_minutes", raw_minutes, 1, 24 * 60)
    else:
        raise ApiError(
            400,
            "missing_parameter",
            "give appointment_id or duration_minutes",
            field="appointment_id",
        )
    result = await precall_check(
        db, staff.practice_id, seconds, staff.roles, exclude_appointment_id=exclude
    )
    return json_response(result)


# --- settings ------------------------------------------------------------------------------


async def get_settings(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="see the payment settings")
    mandate = await mandates.get_mandate(request.app[DB], staff.practice_id)
    return json_response(WalletSettings(mandate))


async def put_settings(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change the payment settings")
    body = await read_body(request, WalletSettings)
    await mandates.set_mandate(request.app[DB], staff.practice_id, body.gocardless_mandate_id)
    return json_response(body)


# --- purchases -----------------------------------------------------------------------------


async def create_purchase(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=BUY)
    body = await read_body(request, NewPurchase)
    services = request.app[WALLET]
    try:
        started = await start_purchase(
            services, staff.practice_id, staff.user_id, body.bundle_minutes, body.idempotency_key
        )
    except ProviderNotConfigured as exc:
        raise ApiError(503, "payments_not_configured", str(exc)) from None
    except NoMandate as exc:
        raise ApiError(409, "no_mandate", str(exc), field="gocardless_mandate_id") from None
    except IdempotencyKeyReused:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this key was used for another bundle; make a new key per purchase",
            field="idempotency_key",
        ) from None
    message = None
    status = 201 if started.created else 200
    if started.provider_unavailable:
        status = 202
        message = (
            "The payment provider did not answer in time. The purchase is pending and will be "
            "checked again; it will not be charged twice."
        )
    return json_response(await _reply(request, started.purchase, message), status=status)


async def list_purchase_history(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    limit = query_int(request, "limit", 100, 1, 1000)
    return json_response(await list_purchases(request.app[DB], staff.practice_id, limit))


async def get_one_purchase(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    return json_response(await _purchase(request, staff))


async def reconcile(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=BUY)
    purchase = await _purchase(request, staff)
    try:
        purchase = await reconcile_purchase(request.app[WALLET], purchase)
    except ProviderNotConfigured as exc:
        raise ApiError(503, "payments_not_configured", str(exc)) from None
    except ProviderUnavailable as exc:
        raise ApiError(503, "provider_unavailable", f"still no answer: {exc}") from None
    return json_response(await _reply(request, purchase))


async def paypal_returned(request: web.Request) -> web.StreamResponse:
    """PayPal sends the admin's browser back here after approval: capture, then show."""
    staff = await require_role(request, "site_admin", action=BUY)
    purchase = await _purchase(request, staff)
    token = _token_param(request)
    try:
        purchase = await paypal_return(request.app[WALLET], purchase, token)
    except ReturnTokenMismatch as exc:
        raise ApiError(400, "wrong_order", str(exc), field="token") from None
    except (ProviderUnavailable, ProviderRejected, ProviderNotConfigured):
        pass  # stays awaiting approval / pending; the page shows it, reconcile finishes it
    raise web.HTTPSeeOther(f"/admin/minutes?purchase={purchase.id}&status={purchase.status}")


async def paypal_cancelled(request: web.Request) -> web.StreamResponse:
    staff = await require_role(request, "site_admin", action=BUY)
    purchase = await _purchase(request, staff)
    try:
        purchase = await paypal_cancel(request.app[WALLET], purchase, _token_param(request))
    except ReturnTokenMismatch as exc:
        raise ApiError(400, "wrong_order", str(exc), field="token") from None
    raise web.HTTPSeeOther(f"/admin/minutes?purchase={purchase.id}&status={purchase.status}")


# --- dashboard -----------------------------------------------------------------------------


async def usage(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    start, end = await _period(request, staff)
    db = request.app[DB]
    return json_response(
        {
            "from": start,
            "to": end,
            "by_day": await dashboard.usage_by_day(db, staff.practice_id, start, end),
            "by_clinician": await dashboard.usage_by_clinician(db, staff.practice_id, start, end),
            "by_call": await dashboard.usage_by_call(db, staff.practice_id, start, end),
        }
    )


async def ledger_entries(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    limit = query_int(request, "limit", 100, 1, 1000)
    return json_response(await ledger.list_entries(request.app[DB], staff.practice_id, limit))


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the calls open now and the balance, every ~2 s (R-A1).

    Ends at once, with a ``session_ended`` event, when the session ends or its user loses
    access (on any node).
    """
    staff = await require_role(request, "site_admin", action=VIEW)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",  # proxies must not hold the stream back
        }
    )
    await response.prepare(request)
    db = request.app[DB]
    ended = asyncio.Event()

    async def end_stream() -> None:
        ended.set()

    try:
        with held_open(request, staff, end_stream):
            while staff.expires_at > time.time() and not ended.is_set():
                snapshot = await dashboard.live_snapshot(db, staff.practice_id)
                payload = msgspec.json.encode(snapshot)
                await response.write(b"event: live\ndata: " + payload + b"\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), LIVE_INTERVAL_SECONDS)
            if ended.is_set():
                await response.write(b"event: session_ended\ndata: {}\n\n")
    except ConnectionResetError:
        pass  # the page was closed
    return response


async def export_usage(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    start, end = await _period(request, staff)
    calls = await dashboard.usage_by_call(
        request.app[DB], staff.practice_id, start, end, limit=100_000
    )
    return _csv_response(dashboard.usage_csv(calls), f"video-usage-{start}-to-{end}.csv")


async def export_purchases(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action=VIEW)
    text = await dashboard.purchases_csv(request.app[DB], staff.practice_id)
    return _csv_response(text, "video-minute-purchases.csv")


# --- helpers -------------------------------------------------------------------------------


async def _practice(request: web.Request, staff: Staff) -> practices.Practice:
    practice = await practices.get_practice(request.app[DB], staff.practice_id)
    if practice is None:
        not_found("practice")
    return practice


async def _purchase(request: web.Request, staff: Staff) -> Purchase:
    purchase_id = parse_uuid(request.match_info["purchase_id"], "purchase")
    purchase = await get_purchase(request.app[DB], staff.practice_id, purchase_id)
    if purchase is None:
        not_found("purchase")
    return purchase


async def _reply(
    request: web.Request, purchase: Purchase, message: str | None = None
) -> PurchaseReply:
    balance = await ledger.balance_seconds(request.app[DB], purchase.practice_id)
    if message is None and purchase.status == "failed":
        message = purchase.failure_reason
    return PurchaseReply(purchase, balance, format_balance(balance), message)


def _token_param(request: web.Request) -> str:
    token = query_text(request, "token", 100)
    if not token:
        raise ApiError(
            400, "missing_parameter", "PayPal's token parameter is required", field="token"
        )
    return token


async def _period(request: web.Request, staff: Staff) -> tuple[date, date]:
    """?from=&to= (the practice's local dates, inclusive); default the last 30 days."""
    practice = await _practice(request, staff)
    today = datetime.now(ZoneInfo(practice.timezone)).date()
    end = query_day(request, "to") or today
    start = query_day(request, "from") or max(end - timedelta(days=29), EARLIEST_DAY)
    if start > end:
        invalid_parameter("from", "from must not be after to")
    if (end - start).days >= MAX_PERIOD_DAYS:
        invalid_parameter("from", f"at most {MAX_PERIOD_DAYS} days at once")
    return start, end


def _csv_response(text: str, filename: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def add_routes(app: web.Application) -> None:
    """The wallet's background context (the API routes and provider callbacks are in
    server/api_routes.py; the dashboard page in server/pages.py)."""
    app.cleanup_ctx.append(wallet_context)
