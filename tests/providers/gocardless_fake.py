"""A stand-in for GoCardless's API on 127.0.0.1, answering the calls we make as documented.

POST /payments (Idempotency-Key; a repeat gets 409 idempotent_creation_conflict naming the
payment), GET /payments/{id}, GET /creditors (what ``videoconsult check`` reads); webhooks
signed HMAC-SHA256 over the body (Webhook-Signature).
It is the EXTERNAL provider, faked for tests; nothing of ours is replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.providers.fake_server import FakeProviderServer

ACCESS_TOKEN = "sandbox_test_token_" + "g" * 20
WEBHOOK_SECRET = "gc-webhook-secret-" + "s" * 20


@dataclass
class FakeGoCardless(FakeProviderServer):
    mandates: dict[str, str] = field(default_factory=dict)  # id -> status
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_idempotency_key: dict[str, str] = field(default_factory=dict)
    # The next N payment creations are made but their reply never comes (a lost answer).
    stall_after_create: int = 0

    async def start(self) -> FakeGoCardless:
        app = web.Application()
        app.router.add_post("/payments", self._create_payment)
        app.router.add_get("/payments/{payment_id}", self._get_payment)
        app.router.add_get("/creditors", self._list_creditors)
        await self._serve(app)
        return self

    def add_mandate(self, status: str = "active") -> str:
        mandate_id = "MD" + secrets.token_hex(6).upper()
        self.mandates[mandate_id] = status
        return mandate_id

    def set_status(self, payment_id: str, status: str) -> None:
        self.payments[payment_id]["status"] = status

    def signed_webhook(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"events": events}).encode()
        return body, self.signed_headers(body)

    @staticmethod
    def signed_headers(body: bytes) -> dict[str, str]:
        """Headers GoCardless sends with ``body``: any bytes, so malformed ones too."""
        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"Webhook-Signature": signature, "Content-Type": "application/json"}

    @staticmethod
    def payment_event(payment_id: str, action: str, event_id: str | None = None) -> dict[str, Any]:
        return {
            "id": event_id or "EV" + secrets.token_hex(6).upper(),
            "created_at": "2024-05-01T10:00:00.000Z",
            "resource_type": "payments",
            "action": action,
            "links": {"payment": payment_id},
            "details": {"origin": "gocardless", "cause": f"payment_{action}"},
        }

    # --- the API ---------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "invalid_api_usage", "access token not valid", "access_token")
        if request.headers.get("GoCardless-Version") != "2015-07-06":
            return _error(400, "invalid_api_usage", "version header missing", "version")
        return None

    async def _list_creditors(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        creditor = {"id": "CR000TEST", "name": "Test creditor"}
        return web.json_response({"creditors": [creditor], "meta": {"limit": 50}})

    async def _create_payment(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        key = request.headers.get("Idempotency-Key")
        if key and key in self.by_idempotency_key:
            existing = self.by_idempotency_key[key]
            body = {
                "error": {
                    "type": "invalid_state",
                    "code": 409,
                    "message": "A resource has already been created with this idempotency key",
                    "errors": [
                        {
                            "reason": "idempotent_creation_conflict",
                            "message": "A resource has already been created with this key",
                            "links": {"conflicting_resource_id": existing},
                        }
                    ],
                }
            }
            return web.json_response(body, status=409)
        data = (await request.json()).get("payments") or {}
        amount = data.get("amount")
        mandate = (data.get("links") or {}).get("mandate")
        if not isinstance(amount, int) or amount <= 0 or data.get("currency") != "GBP":
            return _error(422, "validation_failed", "amount or currency invalid", "amount")
        if mandate not in self.mandates:
            return _error(422, "invalid_api_usage", "mandate not found", "mandate_not_found")
        if self.mandates[mandate] != "active":
            return _error(422, "invalid_state", "mandate is not active", "mandate_is_inactive")
        payment_id = "PM" + secrets.token_hex(6).upper()
        payment = {
            "id": payment_id,
            "created_at": "2024-05-01T10:00:00.000Z",
            "charge_date": "2024-05-06",
            "amount": amount,
            "currency": "GBP",
            "status": "pending_submission",
            "description": data.get("description"),
            "metadata": data.get("metadata") or {},
            "links": {"mandate": mandate, "creditor": "CR123"},
        }
        self.payments[payment_id] = payment
        if key:
            self.by_idempotency_key[key] = payment_id
        if self.stall_after_create > 0:
            self.stall_after_create -= 1
            await self._never_answer()  # made, but the caller never hears back
        return web.json_response({"payments": payment}, status=201)

    async def _get_payment(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            return _error(404, "invalid_api_usage", "resource not found", "resource_not_found")
        return web.json_response({"payments": payment})


def _error(status: int, kind: str, message: str, reason: str) -> web.Response:
    body = {
        "error": {
            "type": kind,
            "code": status,
            "message": message,
            "errors": [{"reason": reason, "message": message}],
        }
    }
    return web.json_response(body, status=status)
