"""Browsers on a call, for the media tests through the real server.

A ``CallPage`` is what a participant's call page does: one call WebSocket to the app and
one RTCPeerConnection (an aiortc ``BrowserPeer`` sending video and audio), negotiated over
that socket as web/static/js/call/media.js does: the page offers, the server answers,
candidates may trickle after the offer, Refresh builds a new peer connection and offers
again. A background reader keeps every server message and applies the server's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from aiortc import RTCSessionDescription

from server.calls.engine import CALL_ENGINE, CallEngine
from server.config import Config
from signalling.model import Role
from signalling.protocol import (
    Admit,
    ClientMessage,
    Hello,
    IceCandidate,
    SdpOffer,
    ServerMessage,
    ServerSdpAnswer,
    Snapshot,
    decode_server_message,
    encode_client_message,
)
from tests.calls_fixtures import Booked, book_video, client_call_token, fund, open_waiting_room
from tests.e2e.conftest_media import BrowserPeer, wait_for
from tests.support import ApiClient, PracticeFixture, login_as

M = TypeVar("M", bound=ServerMessage)

CLINICIAN_LUMA, CLIENT_LUMA = 60, 200


class PageClosed(Exception):
    """The page's socket closed (e.g. refused by a node that cannot serve the call)."""


class CallPage:
    def __init__(
        self,
        role: Role,
        ws: aiohttp.ClientWebSocketResponse,
        luma: int,
        *,
        receive_only: bool = False,
    ) -> None:
        self.role = role
        self.ws = ws
        self.luma = luma
        self.receive_only = receive_only
        self.peer = BrowserPeer(role.value, luma, receive_only=receive_only)
        self.messages: list[ServerMessage] = []
        self.answers_applied = 0
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            await self._read_frames()
        finally:
            self._arrived.set()  # wakes ``expect``: nothing more will come

    async def _read_frames(self) -> None:
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            message = decode_server_message(frame.data)
            self.messages.append(message)
            if isinstance(message, ServerSdpAnswer):
                pc = self.peer.pc
                if pc.signalingState == "have-local-offer":  # else: answers an older offer
                    await pc.setRemoteDescription(
                        RTCSessionDescription(sdp=message.sdp, type="answer")
                    )
                    self.answers_applied += 1
            self._arrived.set()

    async def send(self, message: ClientMessage) -> None:
        await self.ws.send_str(encode_client_message(message).decode())

    async def offer(self, *, trickle: bool = False) -> None:
        """Start media: the page's offer. ``trickle`` sends the candidates separately."""
        pc = self.peer.pc
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        if not trickle:
            await self.send(SdpOffer(v=1, sdp=sdp))
            return
        lines = sdp.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        bare = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-cand"))]
        await self.send(SdpOffer(v=1, sdp="\r\n".join(bare) + "\r\n"))
        for candidate in candidates:
            await self.send(IceCandidate(v=1, candidate=candidate, sdp_mid="0", sdp_mline_index=0))
        await self.send(IceCandidate(v=1, candidate=""))  # end of candidates

    async def rebuild_peer(self) -> None:
        """Refresh or a reloaded page: the old peer connection goes, a new one offers."""
        await self.peer.close()
        self.peer = BrowserPeer(self.role.value, self.luma, receive_only=self.receive_only)
        await self.offer()

    async def expect(
        self,
        kind: type[M],
        where: Callable[[M], bool] = lambda _: True,
        *,
        after: int = 0,
        within: float = 5.0,
    ) -> M:
        """The first message of ``kind`` (from index ``after`` on) that satisfies ``where``."""
        async with asyncio.timeout(within):
            while True:
                for message in self.messages[after:]:
                    if isinstance(message, kind) and where(message):
                        return message
                if self._reader.done():
                    raise PageClosed(f"the socket closed before a {kind.__name__} came")
                self._arrived.clear()
                await self._arrived.wait()

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._reader
        await self.peer.close()


async def open_clinician_page(
    client: ApiClient, practice: PracticeFixture, booked: Booked
) -> CallPage:
    headers = await login_as(client, practice, booked.clinician_role)
    ws = await client.ws_connect(f"/ws/appointments/{booked.appointment_id}/call", headers=headers)
    page = CallPage(Role.CLINICIAN, ws, CLINICIAN_LUMA)
    await page.send(Hello(v=1))
    await page.expect(Snapshot)
    return page


async def open_client_page(
    client: ApiClient, booked: Booked, *, receive_only: bool = False
) -> CallPage:
    token = await client_call_token(client, booked)
    ws = await client.ws_connect(
        f"/ws/appointments/{booked.appointment_id}/call", params={"token": token}
    )
    page = CallPage(Role.CLIENT, ws, CLIENT_LUMA, receive_only=receive_only)
    await page.send(Hello(v=1))
    await page.expect(Snapshot)
    return page


class LiveCall:
    """A call admitted and in progress, with both pages on it (media not started yet)."""

    def __init__(
        self,
        client: ApiClient,
        call_id: str,
        booked: Booked,
        clinician: CallPage,
        patient: CallPage,
        admitted_at: float,
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.booked = booked
        self.clinician = clinician
        self.patient = patient
        self.admitted_at = admitted_at  # time.monotonic() when the clinician sent admit

    @property
    def engine(self) -> CallEngine:
        return self.client.app[CALL_ENGINE]

    def billable_seconds(self) -> int:
        return self.engine.meter.billable_seconds(self.call_id, datetime.now(UTC))

    async def close(self) -> None:
        await self.clinician.close()
        await self.patient.close()


async def waiting_room(
    client: ApiClient,
    db: Any,
    practice: PracticeFixture,
    config: Config,
    *,
    client_receive_only: bool = False,
) -> tuple[str, Booked, CallPage, CallPage]:
    """Funded practice, booked appointment, waiting room open, both pages connected."""
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    started = await open_waiting_room(client, practice, booked)
    clinician = await open_clinician_page(client, practice, booked)
    patient = await open_client_page(client, booked, receive_only=client_receive_only)
    return str(uuid.UUID(started["call_id"])), booked, clinician, patient


async def admitted_call(
    client: ApiClient,
    db: Any,
    practice: PracticeFixture,
    config: Config,
    *,
    client_receive_only: bool = False,
) -> LiveCall:
    call_id, booked, clinician, patient = await waiting_room(
        client, db, practice, config, client_receive_only=client_receive_only
    )
    seen = len(patient.messages)
    admitted_at = time.monotonic()
    await clinician.send(Admit(v=1))
    await patient.expect(Snapshot, lambda s: s.phase == "in_progress", after=seen)
    await clinician.expect(Snapshot, lambda s: s.phase == "in_progress")
    return LiveCall(client, call_id, booked, clinician, patient, admitted_at)


async def start_media(call: LiveCall, *, trickle_client: bool = False) -> None:
    """Both pages offer (as they do on the in-progress snapshot); waits for video both ways."""
    await asyncio.gather(call.clinician.offer(), call.patient.offer(trickle=trickle_client))
    # A receive-only client sends nothing, so only it sees video then.
    clinician_sees = not call.patient.receive_only
    await wait_for(
        lambda: (frames(call.clinician) > 0 or not clinician_sees) and frames(call.patient) > 0,
        within=5,
    )


def frames(page: CallPage) -> int:
    return page.peer.received.video_frames


async def frames_grow(page: CallPage, by: int = 5, within: float = 2.0) -> float:
    """Seconds until ``by`` more video frames reached the page."""
    start = frames(page)
    return await wait_for(lambda: frames(page) >= start + by, within=within)


def last_luma(page: CallPage) -> float:
    lumas = page.peer.received.video_lumas
    return lumas[-1] if lumas else -1.0


class NetworkCut:
    """The page's network dies: nothing it sends over DTLS/SRTP reaches the server, while
    ICE keep-alives still pass, so ICE stays "connected" and only silence tells."""

    def __init__(self, page: CallPage) -> None:
        self._page = page
        self._patched: list[Any] = []

    def start(self) -> None:
        async def drop(data: bytes) -> None:
            return None

        for transceiver in self._page.peer.pc.getTransceivers():
            # RTCIceTransport binds `_send = connection.send` once: replace that binding.
            ice: Any = transceiver.sender.transport.transport
            if ice not in self._patched:
                ice._send = drop
                self._patched.append(ice)

    def stop(self) -> None:
        for ice in self._patched:
            ice._send = ice._connection.send
        self._patched.clear()
