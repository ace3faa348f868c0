"""Direct Debit through GoCardless: a one-off payment against the practice's mandate.

Calls made (GoCardless API, version 2015-07-06):
  POST /payments        {"payments": {amount, currency, description, metadata, links.mandate}}
                        with ``Idempotency-Key``; a repeat answers 409
                        ``idempotent_creation_conflict`` naming the payment already made.
  GET  /payments/{id}   the payment's current status.
Webhooks: ``POST`` with ``Webhook-Signature`` = hex HMAC-SHA256 of the raw body under the
endpoint secret; the body is ``{"events": [...]}``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp

from server.auth.tokens import constant_time_equal
from server.wallet.payments.http_json import JsonReply, dig, request_json
from server.wallet.payments.provider import (
    OutcomeKind,
    PaymentRequest,
    ProviderOutcome,
    ProviderRejected,
    ProviderUnavailable,
)

API_VERSION = "2015-07-06"

# Payment status -> what it means for the minutes. A payment GoCardless accepted against a
# live mandate is credited at once (the seed: confirm, then it is charged to the account);
# a later failure or charge-back reverses it.
_STATUS_OUTCOME: dict[str, OutcomeKind] = {
    "pending_customer_approval": "confirmed",
    "pending_submission": "confirmed",
    "submitted": "confirmed",
    "confirmed": "confirmed",
    "paid_out": "confirmed",
    "customer_approval_denied": "failed",
    "failed": "failed",
    "cancelled": "failed",
    "charged_back": "reversed",
}

# Webhook event action on a payment -> outcome. Other actions change nothing here.
EVENT_OUTCOME: dict[str, OutcomeKind] = {
    "confirmed": "confirmed",
    "paid_out": "confirmed",
    "failed": "failed",
    "cancelled": "failed",
    "charged_back": "reversed",
}


def signature_valid(secret: str, body: bytes, signature: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return constant_time_equal(expected, signature.strip().lower())


class GoCardlessProvider:
    name = "gocardless"

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, access_token: str, timeout: float
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._access_token = access_token
        self._timeout = timeout

    async def create_payment(self, request: PaymentRequest) -> ProviderOutcome:
        if not request.mandate_id:
            raise ProviderRejected("no Direct Debit mandate is set for this practice")
        reply = await self._call(
            "POST",
            "/payments",
            idempotency_key=request.idempotency_key,
            body={
                "payments": {
                    "amount": request.gross_pence,
                    "currency": request.currency,
                    "description": request.description,
                    "metadata": {"purchase_id": str(request.purchase_id)},
                    "links": {"mandate": request.mandate_id},
                }
            },
        )
        if reply.status == 409 and _conflict_reason(reply.body) == "idempotent_creation_conflict":
            existing = dig(reply.body, "error", "errors", 0, "links", "conflicting_resource_id")
            if not isinstance(existing, str):
                raise ProviderUnavailable("409 conflict without the existing payment's id")
            return await self._fetch(existing)
        if reply.status not in (200, 201):
            raise ProviderRejected(_error_message(reply))
        return _outcome(reply.body.get("payments"))

    async def capture_payment(self, request: PaymentRequest) -> ProviderOutcome:
        return await self.current_status(request)

    async def current_status(self, request: PaymentRequest) -> ProviderOutcome:
        if request.payment_id:
            return await self._fetch(request.payment_id)
        # Never heard back from the first attempt: repeating it with the same idempotency key
        # either creates the payment or names the one made before.
        return await self.create_payment(request)

    async def _fetch(self, payment_id: str) -> ProviderOutcome:
        reply = await self._call("GET", f"/payments/{payment_id}")
        if reply.status != 200:
            raise ProviderRejected(_error_message(reply))
        return _outcome(reply.body.get("payments"))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        body: object | None = None,
    ) -> JsonReply:
        headers = {
            "Authorization": f"Bearer {self._access_token}",
            "GoCardless-Version": API_VERSION,
            "Accept": "application/json",
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return await request_json(
            self._session,
            method,
            self._base_url + path,
            timeout_seconds=self._timeout,
            headers=headers,
            json_body=body,
        )


def _outcome(payment: Any) -> ProviderOutcome:
    payment_id = dig(payment, "id")
    status = dig(payment, "status")
    if not isinstance(payment_id, str) or not isinstance(status, str):
        raise ProviderUnavailable("GoCardless answered without a payment id and status")
    kind = _STATUS_OUTCOME.get(status, "pending")
    amount = dig(payment, "amount")
    return ProviderOutcome(
        kind=kind,
        provider_status=status,
        payment_id=payment_id,
        amount_pence=amount if isinstance(amount, int) else None,
        reason=f"GoCardless payment {status}" if kind in ("failed", "reversed") else None,
    )


def _conflict_reason(body: dict[str, Any]) -> str | None:
    reason = dig(body, "error", "errors", 0, "reason")
    return reason if isinstance(reason, str) else None


def _error_message(reply: JsonReply) -> str:
    message = dig(reply.body, "error", "message")
    return f"GoCardless refused the payment (HTTP {reply.status}): {message or 'no message'}"
