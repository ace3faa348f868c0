"""The pre-call network check: before a client waits, a short test leg tells them whether
their media can reach the server at all (and which way: directly or through TURN).

``POST /api/links/{token}/network-check`` with ``{"sdp": <offer>}`` (a complete offer:
the page waits for its candidates, as this is one HTTP exchange, not a socket) answers
``{"check_id", "sdp", "expires_in_seconds"}`` from a fresh server leg built exactly like a
call's (same ICE servers, public address, port range). The page then sends its camera
and microphone for a few seconds and asks ``GET .../network-check/{check_id}`` what the
server received. The leg carries nothing to anyone and closes by itself after
``CHECK_LIFETIME_SECONDS``. Only a link whose client may enter the call can run a check;
one check per link at a time (a new one replaces the old), and a node runs at most
``MAX_CHECKS`` at once (503 busy beyond: a check must never crowd out calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from aiohttp import web
from aiortc import RTCConfiguration

from media.leg import LegSettings, MediaLeg
from media.stats import sample_leg_quality
from server.appkeys import CONFIG
from server.calls.client_entry import enterable_link
from server.calls.media_control import OFFER_TIMEOUT_SECONDS, ice_settings_for, leg_setup
from server.http import ApiError, json_response, read_body

log = logging.getLogger(__name__)

CHECK_LIFETIME_SECONDS = 20.0
MAX_CHECKS = 8
MAX_SDP_CHARS = 20_000
# Media counts as "reaching us" when RTP arrived this recently.
RECENT_MEDIA_SECONDS = 2.0


class CheckOffer(msgspec.Struct, forbid_unknown_fields=True):
    sdp: str


@dataclass
class _Check:
    check_id: str
    leg: MediaLeg
    expires_at: float


class TooManyChecks(Exception):
    pass


class NetworkChecks:
    """This node's test legs, by link; close them when the node stops."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        settings: LegSettings,
        *,
        max_checks: int = MAX_CHECKS,
        lifetime_s: float = CHECK_LIFETIME_SECONDS,
    ) -> None:
        self._configuration = configuration
        self._settings = settings
        self._max_checks = max_checks
        self.lifetime_s = lifetime_s
        self._checks: dict[str, _Check] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._checks)

    async def open(self, link_key: str, offer_sdp: str) -> tuple[str, str]:
        """A test leg for the link (replacing its previous one): (check id, answer SDP)."""
        await self._close(link_key)
        if len(self._checks) >= self._max_checks:
            raise TooManyChecks
        leg = MediaLeg(self._configuration, self._settings, label=f"check-{link_key[:8]}")
        check = _Check(secrets.token_urlsafe(12), leg, time.monotonic() + self.lifetime_s)
        self._checks[link_key] = check  # counted while it is being answered
        try:
            async with asyncio.timeout(OFFER_TIMEOUT_SECONDS):
                answer = await leg.accept_offer(offer_sdp)
        except BaseException:
            if self._checks.get(link_key) is check:
                del self._checks[link_key]
            await leg.close()
            raise
        self._start_reaper()
        return check.check_id, answer

    async def result(self, link_key: str, check_id: str) -> dict[str, object] | None:
        """What the server received on the check's leg, or None for no such check."""
        check = self._checks.get(link_key)
        if check is None or not secrets.compare_digest(check.check_id, check_id):
            return None
        quality = await sample_leg_quality(check.leg.peer_connection, None)
        last = check.leg.last_media_at()
        return {
            "connected": check.leg.status.connection_state == "connected",
            "media_received": last is not None and time.monotonic() - last < RECENT_MEDIA_SECONDS,
            "packets_received": quality.inbound_packets_received,
            "packets_lost": quality.inbound_packets_lost,
            "bytes_received": quality.bytes_received,
        }

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for link_key in list(self._checks):
            await self._close(link_key)

    async def _close(self, link_key: str) -> None:
        check = self._checks.pop(link_key, None)
        if check is not None:
            await check.leg.close()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name="network-check-reaper"
            )

    async def _reap(self) -> None:
        while self._checks:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for link_key, check in list(self._checks.items()):
                if check.expires_at <= now:
                    await self._close(link_key)


NETWORK_CHECKS = web.AppKey("network_checks", NetworkChecks)


async def _network_checks(app: web.Application) -> AsyncIterator[None]:
    configuration, settings = leg_setup(ice_settings_for(app[CONFIG]))
    app[NETWORK_CHECKS] = checks = NetworkChecks(configuration, settings)
    yield
    await checks.close()


def add_context(app: web.Application) -> None:
    """The node's network checks (their routes are in server/api_routes.py)."""
    app.cleanup_ctx.append(_network_checks)


async def start_check(request: web.Request) -> web.Response:
    _, link_id, _ = await enterable_link(request)
    body = await read_body(request, CheckOffer)
    if not body.sdp.startswith("v=0") or len(body.sdp) > MAX_SDP_CHARS:
        raise ApiError(400, "invalid_field", "sdp must be a WebRTC offer (v=0 ...)", field="sdp")
    checks = request.app[NETWORK_CHECKS]
    try:
        check_id, answer = await checks.open(str(link_id), body.sdp)
    except TooManyChecks:
        raise ApiError(
            503,
            "busy",
            "Too many connection checks right now: retry in a moment",
            headers={"Retry-After": "5"},
            retry_after_seconds=5,
        ) from None
    except TimeoutError:
        raise ApiError(
            503, "media_unavailable", "The check could not be set up: try again"
        ) from None
    except Exception as refused:
        log.info("network check offer refused: %s", str(refused)[:200] or type(refused).__name__)
        raise ApiError(
            400,
            "invalid_field",
            "The SDP offer could not be used: it must be a WebRTC offer with audio and/or "
            "video (Opus, VP8)",
            field="sdp",
        ) from None
    return json_response(
        {"check_id": check_id, "sdp": answer, "expires_in_seconds": checks.lifetime_s}
    )


async def check_result(request: web.Request) -> web.Response:
    _, link_id, _ = await enterable_link(request)
    result = await request.app[NETWORK_CHECKS].result(str(link_id), request.match_info["check_id"])
    if result is None:
        raise ApiError(404, "check_not_found", "No such connection check (it may have expired)")
    return json_response(result)
