"""PayPal Orders v2: create an order, send the admin to approve it, capture on return.

Calls made (PayPal REST API):
  POST /v1/oauth2/token                        client credentials -> bearer token (cached)
  POST /v2/checkout/orders                     with ``PayPal-Request-Id`` (idempotent)
  GET  /v2/checkout/orders/{id}                where the order stands (reconcile)
  POST /v2/checkout/orders/{id}/capture        with ``PayPal-Request-Id`` (idempotent)
  POST /v1/notifications/verify-webhook-signature   is this callback really PayPal's?
The purchase id travels as the purchase unit's ``custom_id``, which PayPal copies onto the
capture and its refunds, so every webhook names the purchase it is about.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp

from server.wallet.bundles import decimal_amount, parse_decimal_amount
from server.wallet.payments.http_json import JsonReply, dig, request_json
from server.wallet.payments.provider import (
    OutcomeKind,
    PaymentRequest,
    ProviderOutcome,
    ProviderRejected,
    ProviderUnavailable,
)

# Headers PayPal signs a webhook with; all are needed to verify it.
WEBHOOK_HEADERS = {
    "auth_algo": "PAYPAL-AUTH-ALGO",
    "cert_url": "PAYPAL-CERT-URL",
    "transmission_id": "PAYPAL-TRANSMISSION-ID",
    "transmission_sig": "PAYPAL-TRANSMISSION-SIG",
    "transmission_time": "PAYPAL-TRANSMISSION-TIME",
}


class PayPalProvider:
    name = "paypal"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        client_id: str,
        client_secret: str,
        webhook_id: str,
        timeout: float,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._webhook_id = webhook_id
        self._timeout = timeout
        self._token: str | None = None
        self._token_expires = 0.0

    async def create_payment(self, request: PaymentRequest) -> ProviderOutcome:
        def money(pence: int) -> dict[str, str]:
            return {"currency_code": request.currency, "value": decimal_amount(pence)}

        amount = {
            **money(request.gross_pence),
            "breakdown": {
                "item_total": money(request.net_pence),
                "tax_total": money(request.vat_pence),
            },
        }
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": str(request.purchase_id),
                    "custom_id": str(request.purchase_id),
                    "description": request.description,
                    "amount": amount,
                }
            ],
            "payment_source": {
                "paypal": {
                    "experience_context": {
                        "return_url": request.return_url,
                        "cancel_url": request.cancel_url,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                    }
                }
            },
        }
        reply = await self._call(
            "POST", "/v2/checkout/orders", request_id=request.idempotency_key, body=body
        )
        if reply.status not in (200, 201):
            raise ProviderRejected(_error_message("create the order", reply))
        return _order_outcome(reply.body)

    async def capture_payment(self, request: PaymentRequest) -> ProviderOutcome:
        if not request.payment_id:
            raise ProviderRejected("no PayPal order to capture")
        reply = await self._call(
            "POST",
            f"/v2/checkout/orders/{request.payment_id}/capture",
            request_id=f"{request.idempotency_key}-capture",
            body={},
        )
        if reply.status in (200, 201):
            return _order_outcome(reply.body)
        issue = dig(reply.body, "details", 0, "issue")
        if reply.status == 422 and issue in ("ORDER_ALREADY_CAPTURED", "ORDER_NOT_APPROVED"):
            # Captured by a racing return/webhook, or not approved yet: report where it is.
            return await self._fetch_order(request.payment_id)
        raise ProviderRejected(_error_message("capture the payment", reply))

    async def current_status(self, request: PaymentRequest) -> ProviderOutcome:
        if request.payment_id:
            return await self._fetch_order(request.payment_id)
        # The create call's answer was lost: the same PayPal-Request-Id returns that order.
        return await self.create_payment(request)

    async def webhook_verified(self, headers: dict[str, str], event: object) -> bool:
        """Ask PayPal whether it sent this event (verify-webhook-signature)."""
        body: dict[str, object] = {name: headers[key] for name, key in WEBHOOK_HEADERS.items()}
        body["webhook_id"] = self._webhook_id
        body["webhook_event"] = event
        reply = await self._call("POST", "/v1/notifications/verify-webhook-signature", body=body)
        if reply.status != 200:
            return False
        return reply.body.get("verification_status") == "SUCCESS"

    async def _fetch_order(self, order_id: str) -> ProviderOutcome:
        reply = await self._call("GET", f"/v2/checkout/orders/{order_id}")
        if reply.status != 200:
            raise ProviderRejected(_error_message("look up the order", reply))
        return _order_outcome(reply.body)

    async def _access_token(self) -> str:
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        credentials = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        reply = await request_json(
            self._session,
            "POST",
            self._base_url + "/v1/oauth2/token",
            timeout_seconds=self._timeout,
            form={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
        )
        token = reply.body.get("access_token")
        if reply.status != 200 or not isinstance(token, str):
            raise ProviderUnavailable(f"PayPal refused our credentials (HTTP {reply.status})")
        expires_in = reply.body.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) else 300
        self._token = token
        self._token_expires = time.monotonic() + max(lifetime - 60, 30)
        return token

    async def _call(
        self, method: str, path: str, *, request_id: str | None = None, body: object | None = None
    ) -> JsonReply:
        headers = {
            "Authorization": f"Bearer {await self._access_token()}",
            "Accept": "application/json",
            "Prefer": "return=representation",
        }
        if request_id:
            headers["PayPal-Request-Id"] = request_id
        reply = await request_json(
            self._session,
            method,
            self._base_url + path,
            timeout_seconds=self._timeout,
            headers=headers,
            json_body=body,
        )
        if reply.status == 401:  # token revoked or expired early: forget it, ask next time
            self._token = None
            raise ProviderUnavailable("PayPal did not accept our access token")
        return reply


def _order_outcome(order: dict[str, Any]) -> ProviderOutcome:
    order_id = order.get("id")
    status = order.get("status")
    if not isinstance(order_id, str) or not isinstance(status, str):
        raise ProviderUnavailable("PayPal answered without an order id and status")
    if status in ("CREATED", "SAVED", "PAYER_ACTION_REQUIRED"):
        return ProviderOutcome(
            "awaiting_approval", status, payment_id=order_id, approve_url=_approve_link(order)
        )
    if status == "APPROVED":
        return ProviderOutcome("approved", status, payment_id=order_id)
    if status == "VOIDED":
        return ProviderOutcome("failed", status, payment_id=order_id, reason="order voided")
    capture = dig(order, "purchase_units", 0, "payments", "captures", 0)
    return capture_outcome(capture, order_id)


def capture_outcome(capture: Any, order_id: str | None) -> ProviderOutcome:
    """What a capture (in an order, or a webhook's resource) means for the minutes."""
    capture_id = dig(capture, "id")
    status = dig(capture, "status")
    if not isinstance(capture_id, str) or not isinstance(status, str):
        raise ProviderUnavailable("PayPal order has no capture yet")
    value = dig(capture, "amount", "value")
    try:
        amount = parse_decimal_amount(value) if isinstance(value, str) else None
    except ValueError:
        amount = None
    kind: OutcomeKind = "pending"
    reason = None
    if status == "COMPLETED":
        kind = "confirmed"
    elif status in ("REFUNDED", "PARTIALLY_REFUNDED", "REVERSED"):
        kind, reason = "reversed", f"PayPal capture {status.lower()}"
    elif status in ("DECLINED", "FAILED"):
        kind, reason = "failed", f"PayPal capture {status.lower()}"
    return ProviderOutcome(
        kind,
        status,
        payment_id=order_id,
        capture_id=capture_id,
        amount_pence=amount,
        reason=reason,
    )


def _approve_link(order: dict[str, Any]) -> str | None:
    for link in order.get("links") or []:
        if isinstance(link, dict) and link.get("rel") in ("payer-action", "approve"):
            href = link.get("href")
            return href if isinstance(href, str) else None
    return None


def _error_message(action: str, reply: JsonReply) -> str:
    detail = dig(reply.body, "details", 0, "issue") or reply.body.get("message") or "no message"
    return f"PayPal could not {action} (HTTP {reply.status}): {detail}"
