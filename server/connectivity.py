"""``videoconsult check``: can this node reach what its configuration names? One line each.

Each check connects the way the node itself would (asyncpg, redis.asyncio, aiosmtplib, a STUN
binding request to each TURN server, the payment provider's token or read endpoint, the SMS
provider's account resource) and turns any failure into one sentence, so an operator sees
every problem in one run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
import asyncpg
import redis.asyncio as redis

from server.config import Config
from server.sms import twilio

TIMEOUT_SECONDS = 5.0
_STUN_MAGIC = 0x2112A442


@dataclass(frozen=True)
class CheckResult:
    service: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.service:<10} {'ok' if self.ok else 'FAILED':<6} {self.detail}"


async def check_services(config: Config) -> list[CheckResult]:
    checks: list[tuple[str, Callable[[Config], Awaitable[tuple[bool, str]]]]] = [
        ("postgresql", _postgresql),
        ("redis", _redis),
        ("smtp", _smtp),
        ("turn", _turn),
        ("payments", _payments),
        ("sms", _sms),
    ]
    results = []
    for service, check in checks:
        try:
            ok, detail = await asyncio.wait_for(check(config), TIMEOUT_SECONDS * 2)
        except TimeoutError:
            ok, detail = False, f"no answer within {TIMEOUT_SECONDS * 2:g} s"
        except Exception as exc:  # any failure becomes its line
            ok, detail = False, _why(exc)
        results.append(CheckResult(service, ok, detail))
    return results


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _postgresql(config: Config) -> tuple[bool, str]:
    if not config.database_url:
        return True, "DATABASE_URL unset: serve starts an embedded PostgreSQL"
    connection = await asyncpg.connect(config.database_url, timeout=TIMEOUT_SECONDS)
    try:
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return True, f"PostgreSQL {version}"


async def _redis(config: Config) -> tuple[bool, str]:
    if not config.redis_url:
        return True, "REDIS_URL unset: serve starts an embedded Redis"
    client = redis.Redis.from_url(config.redis_url, socket_timeout=TIMEOUT_SECONDS)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return True, f"Redis {info.get('redis_version', '?')}"


async def _smtp(config: Config) -> tuple[bool, str]:
    if config.email_provider != "smtp":
        return True, f"EMAIL_PROVIDER={config.email_provider}: no SMTP server used"
    smtp = config.smtp
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.use_tls,
        start_tls=smtp.start_tls,
        timeout=TIMEOUT_SECONDS,
    )
    await client.connect()
    try:
        if smtp.username and smtp.password:
            await client.login(smtp.username, smtp.password)
        await client.noop()
    finally:
        client.close()
    login = f" as {smtp.username}" if smtp.username else ""
    return True, f"{smtp.host}:{smtp.port} answered{login}"


async def _turn(config: Config) -> tuple[bool, str]:
    urls = config.media.turn_urls
    if not urls:
        return True, "TURN_URLS unset: browsers get no relay (fine on open networks)"
    answered = []
    for url in urls:
        try:
            await _stun_binding(url)
        except (OSError, TimeoutError, ValueError, ssl.SSLError) as exc:
            return False, f"{url}: {_why(exc) if str(exc) else 'no STUN answer'}"
        answered.append(url)
    return True, "answered: " + ", ".join(answered)


def _turn_address(url: str) -> tuple[str, str, int, bool]:
    """``turn:host:port?transport=tcp`` -> (host, transport, port, tls)."""
    scheme, _, rest = url.partition(":")
    target, _, query = rest.partition("?")
    transport = "udp"
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "transport" and value in ("udp", "tcp"):
            transport = value
    tls = scheme == "turns"
    if tls:
        transport = "tcp"
    parts = urlsplit("//" + target)
    port = parts.port or (5349 if tls else 3478)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, transport, port, tls


async def _stun_binding(url: str) -> None:
    """Send a STUN Binding request (RFC 5389) and wait for the answer with its id."""
    host, transport, port, tls = _turn_address(url)
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, _STUN_MAGIC) + transaction
    if transport == "udp":
        reply = await _udp_exchange(host, port, request)
    else:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl.create_default_context() if tls else None),
            TIMEOUT_SECONDS,
        )
        try:
            writer.write(request)
            await writer.drain()
            reply = await asyncio.wait_for(reader.readexactly(20), TIMEOUT_SECONDS)
        finally:
            writer.close()
    kind, _, magic = struct.unpack("!HHI", reply[:8])
    if magic != _STUN_MAGIC or reply[8:20] != transaction or kind & 0x0110 != 0x0100:
        raise ValueError("answer is not a STUN Binding response")


async def _udp_exchange(host: str, port: int, request: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class _Exchange(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
            if not answer.done() and len(data) >= 20:
                answer.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not answer.done():
                answer.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(_Exchange, remote_addr=(host, port))
    try:
        for _attempt in range(3):  # UDP: resend a few times before giving up
            transport.sendto(request)
            try:
                return await asyncio.wait_for(asyncio.shield(answer), TIMEOUT_SECONDS / 3)
            except TimeoutError:
                continue
        raise TimeoutError(f"no STUN answer from {host}:{port} over UDP")
    finally:
        transport.close()


async def _payments(config: Config) -> tuple[bool, str]:
    payments = config.payments
    if payments.mode == "sandbox":
        return True, "PAYMENTS_PROVIDER=sandbox: no provider to reach"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    found: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if payments.gocardless_configured:
            async with session.get(
                payments.gocardless_base_url + "/creditors",
                headers={
                    "Authorization": f"Bearer {payments.gocardless_access_token}",
                    "GoCardless-Version": "2015-07-06",
                    "Accept": "application/json",
                },
            ) as reply:
                if reply.status != 200:
                    return False, f"GoCardless answered HTTP {reply.status} to the access token"
            found.append("GoCardless")
        if payments.paypal_configured:
            pair = f"{payments.paypal_client_id}:{payments.paypal_client_secret}".encode()
            async with session.post(
                payments.paypal_base_url + "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": "Basic " + base64.b64encode(pair).decode()},
            ) as reply:
                if reply.status != 200:
                    return False, f"PayPal answered HTTP {reply.status} to the client id/secret"
            found.append("PayPal")
    return True, " and ".join(found) + " accepted the credentials"


async def _sms(config: Config) -> tuple[bool, str]:
    """Twilio: the account resource, read with the configured credentials."""
    if config.sms_provider != "twilio":
        return True, f"SMS_PROVIDER={config.sms_provider}: no provider to reach"
    settings = config.twilio
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            twilio.account_url(settings),
            headers={"Authorization": twilio.authorization(settings), "Accept": "application/json"},
        ) as reply,
    ):
        if reply.status in (401, 403):
            return False, (
                f"Twilio answered HTTP {reply.status}: check TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN"
            )
        if reply.status == 404:
            return False, f"Twilio knows no account {settings.account_sid} (TWILIO_ACCOUNT_SID)"
        if reply.status != 200:
            return False, f"Twilio answered HTTP {reply.status} at {settings.base_url}"
        account = await reply.json(content_type=None)
    state = account.get("status") if isinstance(account, dict) else None
    if state != "active":
        return False, f"the Twilio account {settings.account_sid} is {state or 'in no known state'}"
    return True, f"Twilio accepted the credentials (account {settings.account_sid}, active)"
