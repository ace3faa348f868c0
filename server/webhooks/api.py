"""HTTP API of a practice's webhook endpoint (site admins only: the secret is shown here).

``GET/PUT/DELETE /api/webhooks``, ``POST /api/webhooks/test`` (a ``webhook.test`` event
through the same outbox as every other event) and ``GET /api/webhooks/deliveries`` (the
delivery log: each event, its status, attempts and the receiver's last answer).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from server.appkeys import CONFIG, DB
from server.auth.session import require_role
from server.http import ApiError, json_response, read_body
from server.webhooks import store
from server.webhooks.events import EVENT_TYPES, emit_event, message_id
from server.webhooks.signing import endpoint_secret

WebhookUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]


class EndpointSettings(msgspec.Struct, forbid_unknown_fields=True):
    url: WebhookUrl
    enabled: bool = True
    rotate_secret: bool = False


def checked_webhook_url(raw: str, allow_private: bool) -> str:
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ApiError(400, "invalid_body", "url is not a valid URL", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "invalid_body", "url must be http(s)://host/...", field="url")
    if parts.username or parts.password:
        raise ApiError(400, "invalid_body", "url must not carry credentials", field="url")
    if not allow_private and _is_internal(parts.hostname):
        raise ApiError(400, "invalid_body", "url names a loopback or private address", field="url")
    return raw


def _is_internal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _endpoint_json(request: web.Request, endpoint: store.Endpoint | None) -> web.Response:
    if endpoint is None:
        return json_response({"url": None, "enabled": False, "secret": None, "events": []})
    secret = endpoint_secret(request.app[CONFIG].secret_key, endpoint.secret_salt)
    return json_response(
        {
            "url": endpoint.url,
            "enabled": endpoint.enabled,
            "secret": secret,
            "updated_at": endpoint.updated_at,
            "events": [t for t in EVENT_TYPES if t != "webhook.test"],
        }
    )


async def get_endpoint(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="see the webhook settings")
    return _endpoint_json(request, await store.get_endpoint(request.app[DB], staff.practice_id))


async def put_endpoint(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change the webhook settings")
    body = await read_body(request, EndpointSettings)
    url = checked_webhook_url(body.url, request.app[CONFIG].webhooks.allow_private_urls)
    endpoint = await store.save_endpoint(
        request.app[DB], staff.practice_id, url, body.enabled, body.rotate_secret
    )
    return _endpoint_json(request, endpoint)


async def delete_endpoint(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change the webhook settings")
    removed = await store.delete_endpoint(request.app[DB], staff.practice_id)
    return json_response({"removed": removed})


async def send_test_event(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="send a test webhook")
    pool = request.app[DB]
    async with pool.acquire() as conn, conn.transaction():
        endpoint = await store.get_endpoint(conn, staff.practice_id)
        if endpoint is None or not endpoint.enabled:
            raise ApiError(409, "no_webhook", "set and enable a webhook URL first")
        event_id = await emit_event(
            conn, staff.practice_id, "webhook.test", {"sent_by": str(staff.user_id)}
        )
    return json_response({"event_id": event_id, "webhook_id": message_id(event_id)}, status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="see the webhook deliveries")
    return json_response(await store.delivery_log(request.app[DB], staff.practice_id))
