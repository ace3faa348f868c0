"""A stand-in for PayPal's REST API on 127.0.0.1, answering the calls we make as documented.

OAuth client credentials, Orders v2 (create with PayPal-Request-Id, get, capture with
PayPal-Request-Id), and verify-webhook-signature. Webhook signatures are made with a key
only this fake holds (PayPal uses its own certificate), so a test cannot forge one by
accident and our server can only learn validity by asking, as with the real PayPal.
It is the EXTERNAL provider, faked for tests; nothing of ours is replaced.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.providers.fake_server import FakeProviderServer

CLIENT_ID = "fake-paypal-client"
CLIENT_SECRET = "fake-paypal-secret-" + "p" * 16
WEBHOOK_ID = "WH-FAKE-0001"


@dataclass
class FakePayPal(FakeProviderServer):
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies_by_request_id: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    verifications: int = 0
    stall_order_creations: int = 0  # made, but the caller never hears back
    _captured: dict[str, asyncio.Event] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    async def start(self) -> FakePayPal:
        app = web.Application()
        app.router.add_post("/v1/oauth2/token", self._token)
        app.router.add_post("/v2/checkout/orders", self._create_order)
        app.router.add_get("/v2/checkout/orders/{order_id}", self._get_order)
        app.router.add_post("/v2/checkout/orders/{order_id}/capture", self._capture)
        app.router.add_post("/v1/notifications/verify-webhook-signature", self._verify)
        await self._serve(app)
        return self

    # --- what the payer and PayPal do outside our API calls --------------------------------

    def approve(self, order_id: str) -> None:
        """The payer approves the order on PayPal's site."""
        order = self.orders[order_id]
        assert order["status"] == "PAYER_ACTION_REQUIRED"
        order["status"] = "APPROVED"

    async def wait_captured(self, order_id: str) -> None:
        """Until someone captured the order (PayPal sends CAPTURE.COMPLETED after that)."""
        await self._captured.setdefault(order_id, asyncio.Event()).wait()

    def capture_of(self, order_id: str) -> dict[str, Any]:
        captures: list[dict[str, Any]] = self.orders[order_id]["purchase_units"][0]["payments"][
            "captures"
        ]
        return captures[0]

    def refund(self, order_id: str) -> dict[str, Any]:
        """Refund the capture; returns the refund resource (as in the webhook)."""
        capture = self.capture_of(order_id)
        capture["status"] = "REFUNDED"
        return {
            "id": "RF" + secrets.token_hex(6).upper(),
            "status": "COMPLETED",
            "amount": capture["amount"],
            "custom_id": capture.get("custom_id"),
            "links": [
                {"rel": "self", "href": f"{self.url}/v2/payments/refunds/x", "method": "GET"},
                {
                    "rel": "up",
                    "href": f"{self.url}/v2/payments/captures/{capture['id']}",
                    "method": "GET",
                },
            ],
        }

    def event(self, event_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "WH-" + secrets.token_hex(8).upper(),
            "event_version": "1.0",
            "create_time": "2024-05-01T10:00:00Z",
            "resource_type": "capture" if "CAPTURE" in event_type else "checkout-order",
            "event_type": event_type,
            "summary": event_type,
            "resource": resource,
        }

    def signed_headers(self, event: dict[str, Any]) -> dict[str, str]:
        transmission_id = secrets.token_hex(8)
        when = "2024-05-01T10:00:01Z"
        return {
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": f"{self.url}/v1/notifications/certs/CERT-fake",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": self._signature(transmission_id, when, WEBHOOK_ID, event),
            "Content-Type": "application/json",
        }

    def _signature(
        self, transmission_id: str, when: str, webhook_id: str, event: dict[str, Any]
    ) -> str:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        message = f"{transmission_id}|{when}|{webhook_id}|{zlib.crc32(canonical)}".encode()
        return base64.b64encode(
            hmac.new(self._signing_key, message, hashlib.sha256).digest()
        ).decode()

    # --- the API ---------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = "A21" + secrets.token_hex(16)
        self._tokens.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 32400}
        )

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self._tokens:
            return web.json_response({"name": "AUTHENTICATION_FAILURE"}, status=401)
        return None

    async def _create_order(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        request_id = request.headers.get("PayPal-Request-Id")
        if request_id and request_id in self.replies_by_request_id:
            _first_status, body = self.replies_by_request_id[request_id]
            return web.json_response(body, status=200)  # PayPal answers a replay with 200
        data = await request.json()
        unit = (data.get("purchase_units") or [{}])[0]
        amount = unit.get("amount") or {}
        breakdown = amount.get("breakdown") or {}
        total = _pence(amount.get("value"))
        parts = _pence(breakdown.get("item_total", {}).get("value")) + _pence(
            breakdown.get("tax_total", {}).get("value")
        )
        if data.get("intent") != "CAPTURE" or total <= 0 or total != parts:
            return _unprocessable("AMOUNT_MISMATCH")
        order_id = secrets.token_hex(8).upper()
        order = {
            "id": order_id,
            "intent": "CAPTURE",
            "status": "PAYER_ACTION_REQUIRED",
            "purchase_units": [
                {
                    "reference_id": unit.get("reference_id"),
                    "custom_id": unit.get("custom_id"),
                    "amount": amount,
                }
            ],
            "links": [
                {"href": f"{self.url}/v2/checkout/orders/{order_id}", "rel": "self"},
                {"href": f"{self.url}/checkoutnow?token={order_id}", "rel": "payer-action"},
            ],
        }
        self.orders[order_id] = order
        if request_id:
            self.replies_by_request_id[request_id] = (201, order)
        if self.stall_order_creations > 0:
            self.stall_order_creations -= 1
            await self._never_answer()
        return web.json_response(order, status=201)

    async def _get_order(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"name": "RESOURCE_NOT_FOUND"}, status=404)
        return web.json_response(order)

    async def _capture(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        request_id = request.headers.get("PayPal-Request-Id")
        if request_id and request_id in self.replies_by_request_id:
            status, body = self.replies_by_request_id[request_id]
            return web.json_response(body, status=status)
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"name": "RESOURCE_NOT_FOUND"}, status=404)
        if order["status"] == "COMPLETED":
            return _unprocessable("ORDER_ALREADY_CAPTURED")
        if order["status"] != "APPROVED":
            return _unprocessable("ORDER_NOT_APPROVED")
        unit = order["purchase_units"][0]
        capture = {
            "id": "CAP" + secrets.token_hex(6).upper(),
            "status": "COMPLETED",
            "amount": {"currency_code": "GBP", "value": unit["amount"]["value"]},
            "custom_id": unit.get("custom_id"),
            "supplementary_data": {"related_ids": {"order_id": order["id"]}},
        }
        unit["payments"] = {"captures": [capture]}
        order["status"] = "COMPLETED"
        self._captured.setdefault(order["id"], asyncio.Event()).set()
        if request_id:
            self.replies_by_request_id[request_id] = (201, order)
        return web.json_response(order, status=201)

    async def _verify(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        self.verifications += 1
        data = await request.json()
        event = data.get("webhook_event")
        good = (
            isinstance(event, dict)
            and data.get("webhook_id") == WEBHOOK_ID
            and hmac.compare_digest(
                str(data.get("transmission_sig", "")),
                self._signature(
                    str(data.get("transmission_id")),
                    str(data.get("transmission_time")),
                    str(data.get("webhook_id")),
                    event,
                ),
            )
        )
        return web.json_response({"verification_status": "SUCCESS" if good else "FAILURE"})


def _pence(value: object) -> int:
    if not isinstance(value, str):
        return -1
    whole, _, part = value.partition(".")
    return int(whole) * 100 + int((part or "0").ljust(2, "0"))


def _unprocessable(issue: str) -> web.Response:
    body = {
        "name": "UNPROCESSABLE_ENTITY",
        "details": [{"issue": issue, "description": issue.replace("_", " ").lower()}],
    }
    return web.json_response(body, status=422)
