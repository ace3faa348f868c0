"""A stand-in for Twilio's Messages API on 127.0.0.1, answering as documented.

GET /2010-04-01/Accounts/{sid}.json (basic auth): the account and its status (what
``videoconsult check`` reads). POST /2010-04-01/Accounts/{sid}/Messages.json (form, basic
auth): 201 with the message
(``sid``, ``status: queued``), 400 with Twilio's error 21211 for a number that is not E.164,
401 for other credentials. ``report`` then POSTs a status callback to the StatusCallback URL
the message named, signed as Twilio signs (X-Twilio-Signature: base64 HMAC-SHA1 of the URL
and the sorted fields, keyed by the auth token) -- written here from Twilio's documentation,
not with our code, so a wrong signature on either side fails.
It is the EXTERNAL provider, faked for tests; nothing of ours is replaced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.providers.fake_server import FakeProviderServer

ACCOUNT_SID = "AC" + "0" * 30 + "fe"
AUTH_TOKEN = "fake-twilio-auth-token-" + "t" * 9
SENDER = "+447700900999"
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")


@dataclass
class FakeTwilio(FakeProviderServer):
    messages: dict[str, dict[str, str]] = field(default_factory=dict)  # sid -> form sent
    # The next N message creations answer this status instead (e.g. 500 or 429).
    fail_next: list[int] = field(default_factory=list)
    account_status: str = "active"  # or "suspended", "closed"

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}.json", self._account)
        await self._serve(app)
        return self

    def sid_for(self, to: str) -> str:
        return next(sid for sid, form in self.messages.items() if form["To"] == to)

    async def report(
        self, sid: str, status: str, error_code: str | None = None, *, signed_with: str = ""
    ) -> int:
        """Twilio's status callback for message ``sid``; returns our server's status."""
        form = self.messages[sid]
        fields = {
            "AccountSid": ACCOUNT_SID,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": form["To"],
            "From": form.get("From", ""),
            "ApiVersion": "2010-04-01",
        }
        if error_code:
            fields["ErrorCode"] = error_code
        url = form["StatusCallback"]
        signed = url + "".join(key + fields[key] for key in sorted(fields))
        key = (signed_with or AUTH_TOKEN).encode()
        digest = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha1).digest())
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=fields, headers={"X-Twilio-Signature": digest.decode()}
            ) as reply,
        ):
            return reply.status

    def _authenticated(self, request: web.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return request.headers.get("Authorization") == expected

    async def _account(self, request: web.Request) -> web.Response:
        """The account resource: 401 without this account's credentials, 404 for another."""
        if not self._authenticated(request):
            return _error(401, 20003, "Authenticate")
        if request.match_info["sid"] != ACCOUNT_SID:
            return _error(404, 20404, "The requested resource was not found")
        return web.json_response(
            {"sid": ACCOUNT_SID, "friendly_name": "Test account", "status": self.account_status}
        )

    async def _create(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != ACCOUNT_SID or not self._authenticated(request):
            return _error(401, 20003, "Authenticate")
        if self.fail_next:
            status = self.fail_next.pop(0)
            return _error(status, 20500 if status >= 500 else 20429, "try again later")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not _E164.match(form.get("To", "")):
            return _error(400, 21211, f"The 'To' number {form.get('To')} is not a valid phone")
        if not form.get("Body") or not (form.get("From") or form.get("MessagingServiceSid")):
            return _error(400, 21602, "Message body and sender are required")
        sid = "SM" + secrets.token_hex(16)
        self.messages[sid] = form
        return web.json_response(
            {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]},
            status=201,
        )


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)
