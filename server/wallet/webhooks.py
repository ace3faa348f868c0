"""Provider callbacks: ``POST /webhooks/gocardless`` and ``POST /webhooks/paypal``.

Nothing in a callback is believed until its signature is: GoCardless signs the raw body
with our endpoint secret (HMAC-SHA256, ``Webhook-Signature``); PayPal's is checked by asking
PayPal (verify-webhook-signature). A forged or unsigned callback gets 401 and changes
nothing; a malformed one gets 400. A verified event is applied once (event id recorded in
the same transaction as its effect); a replay is acknowledged with 200 and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web

from server.appkeys import CONFIG
from server.http import ApiError, field_in_error, json_response, read_limited
from server.wallet.checkout import WalletServices, WebhookEvent, apply_callback
from server.wallet.payments.gocardless import EVENT_OUTCOME, signature_valid
from server.wallet.payments.http_json import dig
from server.wallet.payments.paypal import WEBHOOK_HEADERS, capture_outcome
from server.wallet.payments.provider import (
    ProviderOutcome,
    ProviderRejected,
    ProviderUnavailable,
)
from server.wallet.purchases import Purchase, ReferenceMismatch, find_for_provider
from server.wallet.services import WALLET

log = logging.getLogger(__name__)


class GoCardlessLinks(msgspec.Struct):
    payment: str | None = None


class GoCardlessDetails(msgspec.Struct):
    description: str | None = None


class GoCardlessEvent(msgspec.Struct):
    id: str
    resource_type: str
    action: str
    links: GoCardlessLinks = msgspec.field(default_factory=GoCardlessLinks)
    details: GoCardlessDetails = msgspec.field(default_factory=GoCardlessDetails)


class GoCardlessBatch(msgspec.Struct):
    events: list[GoCardlessEvent]


class PayPalEvent(msgspec.Struct):
    id: str
    event_type: str
    resource: dict[str, Any]


def _decode(raw: bytes, body_type: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise ApiError(400, "invalid_body", message, field=field_in_error(message)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None


async def gocardless_webhook(request: web.Request) -> web.Response:
    services = request.app[WALLET]
    secret = services.providers.gocardless_webhook_secret
    if not secret:
        raise ApiError(401, "webhook_not_configured", "GoCardless webhooks are not configured")
    raw = await read_limited(request, request.app[CONFIG].webhook_max_body_bytes)
    signature = request.headers.get("Webhook-Signature", "")
    if not signature:
        raise ApiError(
            401, "missing_signature", "Webhook-Signature header missing", field="Webhook-Signature"
        )
    if not signature_valid(secret, raw, signature):
        raise ApiError(401, "invalid_signature", "webhook signature does not match")
    batch: GoCardlessBatch = _decode(raw, GoCardlessBatch)
    applied = 0
    for event in batch.events:
        kind = EVENT_OUTCOME.get(event.action)
        payment_id = event.links.payment
        if event.resource_type != "payments" or kind is None or payment_id is None:
            continue  # mandates, payouts, other payment actions: nothing to do with minutes
        purchase = await find_for_provider(services.pool, "gocardless", payment_id=payment_id)
        if purchase is None:
            # Not ours, or its creation's answer was lost: reconcile will learn the id.
            log.info("GoCardless event %s for unknown payment %s", event.id, payment_id)
            continue
        outcome = ProviderOutcome(
            kind,
            event.action,
            payment_id=payment_id,
            reason=event.details.description or f"GoCardless payment {event.action}",
        )
        webhook_event = WebhookEvent("gocardless", event.id, event.action)
        if await _apply(services, purchase, outcome, webhook_event):
            applied += 1
    return json_response({"received": len(batch.events), "applied": applied})


async def paypal_webhook(request: web.Request) -> web.Response:
    services = request.app[WALLET]
    paypal = services.providers.paypal
    if paypal is None:
        raise ApiError(401, "webhook_not_configured", "PayPal webhooks are not configured")
    headers: dict[str, str] = {}
    for header in WEBHOOK_HEADERS.values():
        value = request.headers.get(header)
        if not value:
            raise ApiError(401, "missing_signature", f"{header} header missing", field=header)
        headers[header] = value
    raw = await read_limited(request, request.app[CONFIG].webhook_max_body_bytes)
    event: PayPalEvent = _decode(raw, PayPalEvent)
    try:
        as_sent = msgspec.json.decode(raw)  # verified exactly as PayPal sent it
        verified = await paypal.webhook_verified(headers, as_sent)
    except ProviderUnavailable as exc:
        # PayPal retries a callback that did not get a 2xx; ask it to.
        raise ApiError(503, "provider_unavailable", f"cannot verify with PayPal: {exc}") from None
    if not verified:
        raise ApiError(401, "invalid_signature", "PayPal did not confirm this webhook")

    found = await _paypal_purchase(services, event)
    if found is None:
        log.info("PayPal event %s (%s) for no purchase of ours", event.id, event.event_type)
        return json_response({"received": 1, "applied": 0})
    purchase, outcome = found
    applied = await _apply(
        services, purchase, outcome, WebhookEvent("paypal", event.id, event.event_type)
    )
    return json_response({"received": 1, "applied": int(applied)})


async def _paypal_purchase(
    services: WalletServices, event: PayPalEvent
) -> tuple[Purchase, ProviderOutcome] | None:
    resource = event.resource
    kind = event.event_type
    custom_id = dig(resource, "custom_id")
    order_id: str | None = None
    capture_id: str | None = None
    if kind == "CHECKOUT.ORDER.APPROVED":
        order_id = dig(resource, "id")
        outcome = ProviderOutcome("approved", "APPROVED", payment_id=order_id)
        custom_id = custom_id or dig(resource, "purchase_units", 0, "custom_id")
    elif kind in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED"):
        order_id = dig(resource, "supplementary_data", "related_ids", "order_id")
        try:
            outcome = capture_outcome(resource, order_id)
        except ProviderUnavailable:
            raise ApiError(
                400, "invalid_body", "capture without id or status", field="resource"
            ) from None
        capture_id = outcome.capture_id
    elif kind in ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"):
        capture_id = _captured_in(resource)
        reason = f"PayPal {kind.rsplit('.', 1)[1].lower()}"
        outcome = ProviderOutcome("reversed", kind.rsplit(".", 1)[1], reason=reason)
    else:
        return None
    purchase = None
    if isinstance(custom_id, str):
        try:
            purchase = await find_for_provider(
                services.pool, "paypal", purchase_id=uuid.UUID(custom_id)
            )
        except ValueError:
            purchase = None
    if purchase is None and isinstance(order_id, str):
        purchase = await find_for_provider(services.pool, "paypal", payment_id=order_id)
    if purchase is None and capture_id is not None:
        purchase = await find_for_provider(services.pool, "paypal", capture_id=capture_id)
    return (purchase, outcome) if purchase is not None else None


def _captured_in(refund: dict[str, Any]) -> str | None:
    """The capture a refund or reversal belongs to: its ``up`` link names it."""
    for link in refund.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "up":
            href = link.get("href")
            if isinstance(href, str) and "/captures/" in href:
                return href.rstrip("/").rsplit("/", 1)[1]
    return None


async def _apply(
    services: WalletServices, purchase: Purchase, outcome: ProviderOutcome, event: WebhookEvent
) -> bool:
    try:
        transition = await apply_callback(services, purchase, outcome, event)
    except ReferenceMismatch as exc:
        log.error("webhook %s refused: %s", event.event_id, exc)
        return False
    except (ProviderUnavailable, ProviderRejected) as exc:
        # Capturing an approved order failed: the provider will call again, or reconcile.
        raise ApiError(503, "provider_unavailable", f"could not capture: {exc}") from None
    return transition is not None and transition.changed
