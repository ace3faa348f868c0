"""Twilio's Messages API: one form POST per SMS, delivery reported by status callbacks.

``POST {base}/2010-04-01/Accounts/{sid}/Messages.json`` with basic auth (account SID, auth
token) and the form fields To, From (or MessagingServiceSid), Body and StatusCallback. The
callback URL carries our outbox message id, so a report finds its message even if it comes
before we could have stored Twilio's id. Callbacks are signed (``X-Twilio-Signature``:
base64 HMAC-SHA1, keyed by the auth token, of the URL followed by every POST field's name
and value in name order).

A 4xx answer (a bad number, an unverified sender) is permanent: retrying cannot mend it. A
5xx, a 429, a timeout or a lost connection is temporary and the outbox retries it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping

import aiohttp

from server.config import TwilioConfig
from server.diary.delivery import DeliveryError

CALLBACK_PATH = "/webhooks/sms/twilio"
_NOT_DIGITS = re.compile(r"[\s().\-]")


def e164(number: str, default_country_code: str) -> str:
    """``07700 900123`` -> ``+447700900123``; ``0033 1 23`` -> ``+33123``; ``+...`` kept."""
    compact = _NOT_DIGITS.sub("", number)
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    elif compact.startswith("0"):
        digits = default_country_code + compact[1:]
    else:
        digits = compact
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise DeliveryError(f"not a phone number: {number!r}", permanent=True)
    return "+" + digits


def callback_url(base_url: str, message_id: uuid.UUID) -> str:
    return f"{base_url}{CALLBACK_PATH}?message={message_id}"


def signature(auth_token: str, url: str, fields: Mapping[str, str]) -> str:
    signed = url + "".join(name + fields[name] for name in sorted(fields))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def authorization(settings: TwilioConfig) -> str:
    """Twilio's basic auth: the account SID and the auth token."""
    credentials = f"{settings.account_sid}:{settings.auth_token}".encode()
    return "Basic " + base64.b64encode(credentials).decode()


def account_url(settings: TwilioConfig) -> str:
    """The account resource (``GET`` it to test the credentials)."""
    return f"{settings.base_url}/2010-04-01/Accounts/{settings.account_sid}.json"


class TwilioSmsSender:
    def __init__(self, settings: TwilioConfig, public_url: str, timeout_seconds: float) -> None:
        assert settings.account_sid and settings.auth_token and settings.sender
        self._settings = settings
        self._account = settings.account_sid
        self._authorization = authorization(settings)
        self._public_url = public_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def send_sms(self, message_id: uuid.UUID, to: str, body: str) -> None:
        sender = self._settings.sender
        assert sender is not None
        form = {
            "To": e164(to, self._settings.default_country_code),
            "Body": body,
            "StatusCallback": callback_url(self._public_url, message_id),
        }
        form["MessagingServiceSid" if sender.startswith("MG") else "From"] = sender
        url = f"{self._settings.base_url}/2010-04-01/Accounts/{self._account}/Messages.json"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(
                    url, data=form, headers={"Authorization": self._authorization}
                ) as reply,
            ):
                status = reply.status
                text = await reply.text()
        except TimeoutError:
            raise DeliveryError("Twilio: no answer in time") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"Twilio: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        detail = text[:300]
        if status == 429 or status >= 500:
            raise DeliveryError(f"Twilio: HTTP {status}: {detail}")
        raise DeliveryError(f"Twilio refused the message: HTTP {status}: {detail}", permanent=True)
