"""Delivery reports: what a provider says about a message after accepting it.

Twilio's status callbacks (``POST /webhooks/sms/twilio?message=<outbox id>``, signed) move
a message's ``delivery_status`` forward (queued < sending < sent < delivered | undelivered |
failed; a late report of an earlier stage changes nothing). A message the provider could
not deliver is ``failed`` in the outbox, with the provider's error, so the appointment
summary shows it as it is. The same columns record an email bounce reported by the SMTP
server (a permanent refusal of the recipient).
"""

from __future__ import annotations

import hmac
import uuid

from aiohttp import web

from server.appkeys import CONFIG, DB
from server.db import Executor
from server.http import ApiError, json_response
from server.sms.twilio import signature

# Twilio's MessageStatus values in the order they happen; the last ones are final.
_STAGE = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
}
_FAILED = {"undelivered", "failed"}
_MAX_FIELDS = 64


async def record_report(
    db: Executor,
    message_id: uuid.UUID,
    provider_message_id: str,
    status: str,
    error: str | None,
) -> bool:
    """Apply one report; False when it names no message of ours, or another provider id."""
    stage = _STAGE[status]
    updated = await db.fetchval(
        """UPDATE outbox_messages SET
               provider_message_id = coalesce(provider_message_id, $2),
               delivery_status = $3, delivery_error = $4, delivery_status_at = now(),
               status = CASE WHEN $5 AND status = 'sent' THEN 'failed' ELSE status END,
               sent_at = CASE WHEN $5 AND status = 'sent' THEN NULL ELSE sent_at END,
               last_error = CASE WHEN $5 THEN $6 ELSE last_error END
           WHERE id = $1 AND channel = 'sms'
             AND (provider_message_id IS NULL OR provider_message_id = $2)
             AND coalesce((SELECT s.stage FROM unnest($7::text[], $8::int[]) AS s(name, stage)
                           WHERE s.name = delivery_status), 0) <= $9
           RETURNING id""",
        message_id,
        provider_message_id,
        status,
        error,
        status in _FAILED,
        f"Twilio: {status}" + (f" (error {error})" if error else ""),
        list(_STAGE),
        list(_STAGE.values()),
        stage,
    )
    return updated is not None


async def twilio_status_callback(request: web.Request) -> web.Response:
    """Twilio's StatusCallback. 403 unless signed with our auth token; 200 once applied."""
    config = request.app[CONFIG]
    token = config.twilio.auth_token
    if config.sms_provider != "twilio" or not token:
        raise ApiError(404, "not_found", "SMS status callbacks are not configured")
    form = await request.post()
    if len(form) > _MAX_FIELDS:
        raise ApiError(400, "invalid_body", "too many form fields")
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    url = config.base_url + request.rel_url.path_qs
    given = request.headers.get("X-Twilio-Signature", "")
    if not hmac.compare_digest(given, signature(token, url, fields)):
        raise ApiError(403, "invalid_signature", "X-Twilio-Signature does not match")
    try:
        message_id = uuid.UUID(request.query.get("message", ""))
    except ValueError:
        raise ApiError(400, "invalid_query", "message: expected our message id") from None
    sid = fields.get("MessageSid", "")
    status = fields.get("MessageStatus", "")
    if not sid or status not in _STAGE:
        raise ApiError(400, "invalid_body", "MessageSid and a known MessageStatus are required")
    applied = await record_report(request.app[DB], message_id, sid, status, fields.get("ErrorCode"))
    # Twilio retries on errors only; a report for nothing we know is answered, not retried.
    return json_response({"applied": applied})
