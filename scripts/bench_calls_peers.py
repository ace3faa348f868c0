"""The synthetic participants of scripts/bench_calls.py, one process per group of calls.

Every participant sends the same pre-encoded clip (VP8 640x480@30 at 1 Mbps CBR with one
keyframe, and Opus at 64 kb/s, looped) through aiortc's `pack()` path, so the load
generator costs little CPU and every server gets the same bytes; a PLI restarts the loop
at its keyframe. What it receives is counted on the RTP packets (media/aiortc_adapter's
IngressPort with a counting consumer: no jitter buffer, no decoding): frames (first packet
of each VP8 frame, from the first keyframe on), audio packets, and the latency of each
frame and audio packet from the moment the other participant handed it to its sender.

Targets (`--target`):
- product: the whole product, as the browser pages drive it: Switch to Video
  (`POST /api/appointments/{id}/video/start`, go-ahead when asked), the client's link join
  (`POST /api/links/{token}/join`), both call sockets with hello, admit, an `sdp_offer`
  from each page on the in-progress snapshot, the `sdp_answer` applied, pings; the
  clinician hangs up at the end.
- janus: Janus VideoRoom, one room per call: each participant publishes (sendonly) and
  subscribes to the other's feed (4 PeerConnections per call on Janus, 2 on ours).
- p2p: the two participants connect to each other directly (the latency baseline).

Run by bench_calls.py: prints READY, then CONNECTED once every receiver saw video and
audio (or the connect timeout passed), then measures between two lines the driver writes
to its stdin, then prints RESULT (one JSON object per line on stdout) and hangs up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import random
import string
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import aioice.ice
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.aiortc_adapter import DatagramTap, IngressPort
from media.fastpath import payload_offset
from media.keyframes import is_vp8_keyframe_start
from media.kinds import MediaKind

# Loopback only: gather host candidates on 127.0.0.1 (stock aioice skips loopback).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
LOOPBACK = RTCConfiguration(iceServers=[])
WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
LATENCY_KEY_BYTES = 16


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# --- the clip -----------------------------------------------------------------------------


def encode_clip(seconds: int, bitrate: int) -> tuple[list[bytes], list[bytes]]:
    """(VP8 frames with only frame 0 a keyframe, Opus packets), encoded once."""
    rng = np.random.default_rng(1)
    frames = seconds * FPS
    yy, xx = np.mgrid[0:HEIGHT, 0 : WIDTH + frames * 4]
    texture = np.sin(xx / 23.0) * 50 + np.cos(yy / 17.0) * 40 + np.sin((xx + yy) / 41.0) * 30
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = 100000
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
        "undershoot-pct": "100",
        "overshoot-pct": "15",
    }
    video: list[bytes] = []
    for index in range(frames):
        luma = np.clip(texture[:, index * 4 : index * 4 + WIDTH] + 128, 0, 255)
        luma = luma + rng.integers(-3, 4, size=luma.shape)
        x = int((math.sin(index / frames * 2 * math.pi) * 0.4 + 0.5) * (WIDTH - 120))
        luma[HEIGHT // 3 : HEIGHT // 3 + 120, x : x + 120] = 230
        image = np.full((HEIGHT * 3 // 2, WIDTH), 128, dtype=np.uint8)
        image[:HEIGHT] = np.clip(luma, 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = index
        video += [bytes(p) for p in codec.encode(frame)]
    video += [bytes(p) for p in codec.encode(None)]

    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format, opus.bit_rate = 48000, "stereo", "s16", 64000
    opus.time_base = AUDIO_TIME_BASE
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    audio: list[bytes] = []
    for index in range(seconds * 50):
        t = (np.arange(960) + index * 960) / 48000.0
        samples = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 48000, index * 960, AUDIO_TIME_BASE
        for resampled in resampler.resample(chunk):
            audio += [bytes(p) for p in opus.encode(resampled)]
    return video, audio


def save_clip(path: Path, video: list[bytes], audio: list[bytes]) -> None:
    with path.open("wb") as out:
        for packets in (video, audio):
            out.write(struct.pack("!I", len(packets)))
            for packet in packets:
                out.write(struct.pack("!I", len(packet)) + packet)


def load_clip(path: Path) -> tuple[list[bytes], list[bytes]]:
    data = path.read_bytes()
    pos = 0
    kinds: list[list[bytes]] = []
    for _ in range(2):
        (count,) = struct.unpack_from("!I", data, pos)
        pos += 4
        packets = []
        for _ in range(count):
            (size,) = struct.unpack_from("!I", data, pos)
            packets.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        kinds.append(packets)
    return kinds[0], kinds[1]


class LoopedTrack(MediaStreamTrack):
    """Hands the clip's packets to aiortc's sender in real time (it only packetizes them)."""

    def __init__(self, kind: str, packets: list[bytes]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._period = 1 / FPS if kind == "video" else 0.02
        self._step = 90000 // FPS if kind == "video" else 960
        self._time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE
        self._start: float | None = None
        self._count = 0
        self._index = 0
        self.sent_at: dict[bytes, float] = {}
        self.keyframe_requests = 0

    @property
    def frames_sent(self) -> int:
        return self._count

    def restart_at_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        delay = self._start + self._count * self._period - now
        if delay > 0:
            await asyncio.sleep(delay)
        data = self._packets[self._index]
        self._index = (self._index + 1) % len(self._packets)
        packet = av.Packet(data)
        packet.pts = self._count * self._step
        packet.time_base = self._time_base
        self._count += 1
        self.sent_at[data[:LATENCY_KEY_BYTES]] = time.monotonic()
        if len(self.sent_at) > 3000:
            for key in list(self.sent_at)[:1000]:
                del self.sent_at[key]
        return packet


# --- one participant's media --------------------------------------------------------------


class Reception:
    """What a participant receives, counted on RTP packets (see the module docstring)."""

    def __init__(self) -> None:
        self.video_frames = 0
        self.audio_packets = 0
        self.rtp_packets = 0
        self.first_video_at: float | None = None
        self.first_audio_at: float | None = None
        self.keyframes = 0
        self.latency_ms: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}
        self.peer: Participant | None = None


class CountingConsumer:
    """A stream consumer for a participant's ingress port (counts, never forwards).

    It takes bytes: the participants use the product's own fast path to receive, which
    keeps the load generator cheap (the same for every server).
    """

    takes_bytes = True

    def __init__(self, kind: str, reception: Reception) -> None:
        self._kind = kind
        self._reception = reception

    def forward_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        self._count(packet.payload)

    def forward_bytes(
        self, data: bytes, codec: RTCRtpCodecParameters, seq: int, ts: int, ssrc: int, now: float
    ) -> None:
        self._count(data[payload_offset(data) :])

    def _count(self, payload: bytes) -> None:
        reception = self._reception
        reception.rtp_packets += 1
        now = time.monotonic()
        if self._kind == "audio":
            reception.audio_packets += 1
            if reception.first_audio_at is None:
                reception.first_audio_at = now
            self._latency("audio", payload[:LATENCY_KEY_BYTES], now)
            return
        if not payload or not payload[0] & 0x10 or payload[0] & 0x07:
            return  # not the first packet of a frame
        keyframe = is_vp8_keyframe_start(payload)
        if reception.first_video_at is None:
            if not keyframe:
                return  # a browser could show nothing yet
            reception.first_video_at = now
        reception.keyframes += keyframe
        reception.video_frames += 1
        _, frame = VpxPayloadDescriptor.parse(payload)
        self._latency("video", frame[:LATENCY_KEY_BYTES], now)

    def _latency(self, kind: str, key: bytes, now: float) -> None:
        peer = self._reception.peer
        if peer is None:
            return
        sent = peer.tracks[kind].sent_at.get(key)
        if sent is not None and 0 <= now - sent < 2.0:
            self._reception.latency_ms[kind].append((now, (now - sent) * 1000))

    def shed(self, seq: int) -> None:
        pass


class Participant:
    """Sends the clip; receives on one PeerConnection (ours, p2p) or a second one (Janus)."""

    def __init__(self, name: str, clip: tuple[list[bytes], list[bytes]]) -> None:
        self.name = name
        self.tracks = {
            "video": LoopedTrack("video", clip[0]),
            "audio": LoopedTrack("audio", clip[1]),
        }
        self.reception = Reception()
        self.error: str | None = None
        self.connections: list[RTCPeerConnection] = []
        self.taps: list[DatagramTap] = []
        self._ports: list[IngressPort] = []

    def connection(self, *, send: bool, receive: bool) -> RTCPeerConnection:
        pc = RTCPeerConnection(LOOPBACK)
        self.connections.append(pc)
        direction = "sendrecv" if send and receive else ("sendonly" if send else "recvonly")
        for kind in ("audio", "video"):
            track = self.tracks[kind] if send else None
            transceiver: RTCRtpTransceiver = pc.addTransceiver(track or kind, direction=direction)
            if send and kind == "video":
                # The clip is pre-encoded: honour a PLI by restarting it at its keyframe.
                setattr(  # noqa: B010
                    transceiver.sender, "_send_keyframe", self.tracks["video"].restart_at_keyframe
                )
            if receive:
                self.receive_on(transceiver)
        return pc

    def receive_on(self, transceiver: RTCRtpTransceiver) -> None:
        kind: MediaKind = "video" if transceiver.kind == "video" else "audio"
        port = IngressPort(transceiver, kind)
        port.consumer = CountingConsumer(kind, self.reception)
        self._ports.append(port)

    def tap(self, pc: RTCPeerConnection) -> None:
        """Once negotiated: receive on the fast path (see CountingConsumer)."""
        taps: dict[int, DatagramTap] = {}
        for port in self._ports:
            transport = port.transport
            if any(t.receiver is port.receiver for t in pc.getTransceivers()):
                if id(transport) not in taps:
                    taps[id(transport)] = DatagramTap(transport)
                    self.taps.append(taps[id(transport)])
                port.fast_routes = taps[id(transport)].routes

    def snapshot(self) -> tuple[int, int, int, int]:
        """Frames and packets received so far, and video frames handed to the sender."""
        r = self.reception
        return r.video_frames, r.audio_packets, r.rtp_packets, self.tracks["video"].frames_sent

    async def close(self) -> None:
        for pc in self.connections:
            await pc.close()


# --- the product --------------------------------------------------------------------------


class ProductPage:
    """A call page: its HTTP session, call socket and one RTCPeerConnection."""

    def __init__(self, participant: Participant, http: aiohttp.ClientSession) -> None:
        self.participant = participant
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.pc: RTCPeerConnection | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"v": 1, **message}))

    async def read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            self.messages.append(message)
            kind = message.get("type")
            if kind == "sdp_answer" and self.pc is not None:
                answer = RTCSessionDescription(sdp=message["sdp"], type="answer")
                await self.pc.setRemoteDescription(answer)
                self.participant.tap(self.pc)
            elif kind == "snapshot" and message.get("phase") == "in_progress" and self.pc is None:
                # As the page does: offer once the call is in progress.
                self.pc = self.participant.connection(send=True, receive=True)
                await self.pc.setLocalDescription(await self.pc.createOffer())
                await self.send({"type": "sdp_offer", "sdp": self.pc.localDescription.sdp})
            self.arrived.set()

    async def expect(
        self, wanted: Callable[[dict[str, Any]], bool], within: float
    ) -> dict[str, Any]:
        seen = 0
        async with asyncio.timeout(within):
            while True:
                for message in self.messages[seen:]:
                    if wanted(message):
                        return message
                seen = len(self.messages)
                self.arrived.clear()
                await self.arrived.wait()

    async def keep_alive(self) -> None:
        nonce = 0
        while True:
            await asyncio.sleep(10)
            nonce += 1
            await self.send({"type": "ping", "nonce": nonce})

    async def open_socket(self, url: str, **kwargs: Any) -> None:
        self.ws = await self.http.ws_connect(url, **kwargs)
        loop = asyncio.get_running_loop()
        self.tasks += [loop.create_task(self.read()), loop.create_task(self.keep_alive())]
        await self.send({"type": "hello"})

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()


class ProductCall:
    def __init__(
        self, base: str, credentials: dict[str, Any], slot: dict[str, str], clip: Any
    ) -> None:
        self.base = base
        self.credentials = credentials
        self.slot = slot
        self.clinician = Participant("clinician", clip)
        self.client = Participant("client", clip)
        self.clinician.reception.peer, self.client.reception.peer = self.client, self.clinician
        self.pages: list[ProductPage] = []
        self.admitted_at: float | None = None

    @property
    def participants(self) -> tuple[Participant, Participant]:
        return self.clinician, self.client

    async def start(self, within: float) -> None:
        staff_at = aiohttp.TCPConnector(local_addr=(self.slot["staff_address"], 0))
        staff_http, client_http = aiohttp.ClientSession(connector=staff_at), aiohttp.ClientSession()
        doc, client = ProductPage(self.clinician, staff_http), ProductPage(self.client, client_http)
        self.pages = [doc, client]
        login = {"email": self.slot["email"], "password": self.credentials["password"]}
        for attempt in range(5):
            async with staff_http.post(f"{self.base}/api/login", json=login) as answer:
                body = await answer.json()
                if answer.status == 200:
                    break
                # 503 busy (every hashing slot taken): come back when the server says so.
                if answer.status != 503 or attempt == 4:
                    raise RuntimeError(f"login: {answer.status} {body}")
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
        staff = {"Authorization": f"Bearer {body['token']}"}
        start_url = f"{self.base}/api/appointments/{self.slot['appointment_id']}/video/start"
        async with staff_http.post(start_url, json={}, headers=staff) as answer:
            body, status = await answer.json(), answer.status
        if status == 409:  # the pre-call check asks for a go-ahead
            async with staff_http.post(start_url, json={"go_ahead": True}, headers=staff) as answer:
                body, status = await answer.json(), answer.status
        if status not in (200, 201):
            raise RuntimeError(f"video/start: {status} {body}")
        join_url = f"{self.base}/api/links/{self.slot['link_token']}/join"
        async with client_http.post(join_url, json={}) as answer:
            joined = await answer.json()
            if answer.status != 200:
                raise RuntimeError(f"join: {answer.status} {joined}")
        socket_url = self.base.replace("http://", "ws://") + joined["websocket_path"]
        await doc.open_socket(socket_url, headers=staff)
        await client.open_socket(socket_url, params={"token": joined["token"]})

        def client_present(message: dict[str, Any]) -> bool:
            kind = message.get("type")
            if kind == "snapshot":
                return "client" in message.get("present", [])
            return kind == "presence" and message.get("role") == "client" and message["present"]

        await doc.expect(client_present, within)
        self.admitted_at = time.monotonic()
        await doc.send({"type": "admit"})
        for page in self.pages:
            await page.expect(lambda m: m.get("type") == "sdp_answer", within)

    async def close(self) -> None:
        if self.pages:
            doc = self.pages[0]
            try:
                await doc.send({"type": "hangup_request"})
                ask = await doc.expect(lambda m: m.get("type") == "hangup_confirm_required", 5)
                await doc.send(
                    {"type": "hangup_confirm", "confirm_id": ask["confirm_id"], "choice": "end"}
                )
                await doc.expect(lambda m: m.get("type") == "call_ended", 5)
            except (TimeoutError, aiohttp.ClientError, ConnectionError, AssertionError):
                pass
        for page in self.pages:
            await page.close()
        for participant in self.participants:
            await participant.close()


# --- Janus VideoRoom ----------------------------------------------------------------------


def _transaction() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=12))


class JanusSession:
    """A minimal Janus REST client: one session, its long-poll loop and keep-alives."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.session_id: int | None = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.webrtc_up: dict[int, asyncio.Future[float]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body.setdefault("transaction", _transaction())
        async with self.http.post(self.url + path, json=body) as answer:
            reply: dict[str, Any] = await answer.json(content_type=None)
            return reply

    async def create(self) -> None:
        reply = await self._post("", {"janus": "create"})
        self.session_id = reply["data"]["id"]
        loop = asyncio.get_running_loop()
        self.tasks += [loop.create_task(self._poll()), loop.create_task(self._keep_alive())]

    async def attach(self) -> int:
        reply = await self._post(
            f"/{self.session_id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        handle: int = reply["data"]["id"]
        self.webrtc_up[handle] = asyncio.get_running_loop().create_future()
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        transaction = _transaction()
        future = self.pending[transaction] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        reply = await self._post(f"/{self.session_id}/{handle}", message)
        if reply.get("janus") == "success":
            self.pending.pop(transaction, None)
            return reply.get("plugindata", {}).get("data", {}), None
        if reply.get("janus") != "ack":
            raise RuntimeError(f"janus: {reply}")
        event = await asyncio.wait_for(future, 15)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"janus: {data}")
        return data, event.get("jsep")

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(
                    f"{self.url}/{self.session_id}",
                    params={"rid": str(time.time_ns()), "maxev": "10"},
                    timeout=aiohttp.ClientTimeout(total=40),
                ) as answer:
                    events = await answer.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self.pending.pop(event.get("transaction"), None)
                if event.get("janus") == "event" and future is not None:
                    if not future.done():
                        future.set_result(event)
                elif event.get("janus") == "webrtcup":
                    up = self.webrtc_up.get(event.get("sender", 0))
                    if up is not None and not up.done():
                        up.set_result(time.monotonic())

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(20)
            await self._post(f"/{self.session_id}", {"janus": "keepalive"})

    async def destroy(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.session_id is not None:
            with contextlib.suppress(aiohttp.ClientError):
                await self._post(f"/{self.session_id}", {"janus": "destroy"})


class JanusCall:
    def __init__(self, url: str, room: int, clip: Any) -> None:
        self.url = url
        self.room = room
        self.a, self.b = Participant("a", clip), Participant("b", clip)
        self.a.reception.peer, self.b.reception.peer = self.b, self.a
        self.sessions: list[JanusSession] = []
        self.http: aiohttp.ClientSession | None = None
        self.admitted_at: float | None = None

    @property
    def participants(self) -> tuple[Participant, Participant]:
        return self.a, self.b

    async def start(self, within: float) -> None:
        self.http = aiohttp.ClientSession()
        admin = JanusSession(self.http, self.url)
        await admin.create()
        handle = await admin.attach()
        await admin.message(
            handle,
            {"request": "create", "room": self.room, "publishers": 2, "audiocodec": "opus",
             "videocodec": "vp8", "bitrate": 0, "fir_freq": 0, "notify_joining": False},
        )  # fmt: skip
        await admin.destroy()
        self.admitted_at = time.monotonic()
        feeds: dict[str, asyncio.Future[int]] = {
            "a": asyncio.get_running_loop().create_future(),
            "b": asyncio.get_running_loop().create_future(),
        }
        await asyncio.gather(
            self._join(self.a, feeds["a"], feeds["b"], within),
            self._join(self.b, feeds["b"], feeds["a"], within),
        )

    async def _join(
        self,
        participant: Participant,
        mine: asyncio.Future[int],
        theirs: asyncio.Future[int],
        within: float,
    ) -> None:
        assert self.http is not None
        session = JanusSession(self.http, self.url)
        self.sessions.append(session)
        await session.create()
        publisher = await session.attach()
        joined, _ = await session.message(
            publisher, {"request": "join", "ptype": "publisher", "room": self.room}
        )
        pc = participant.connection(send=True, receive=False)
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
        _, answer = await session.message(
            publisher, {"request": "publish", "audio": True, "video": True}, jsep=offer
        )
        assert answer is not None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await asyncio.wait_for(asyncio.shield(session.webrtc_up[publisher]), within)
        mine.set_result(joined["id"])
        feed = await asyncio.wait_for(asyncio.shield(theirs), within)
        subscriber = await session.attach()
        _, offered = await session.message(
            subscriber,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": self.room,
                "streams": [{"feed": feed}],
            },
        )
        assert offered is not None
        receiving = RTCPeerConnection(LOOPBACK)
        participant.connections.append(receiving)
        receiving.on("track", lambda track: None)
        await receiving.setRemoteDescription(
            RTCSessionDescription(sdp=offered["sdp"], type="offer")
        )
        for transceiver in receiving.getTransceivers():
            participant.receive_on(transceiver)
        await receiving.setLocalDescription(await receiving.createAnswer())
        participant.tap(receiving)
        answer_jsep = {"type": "answer", "sdp": receiving.localDescription.sdp, "trickle": False}
        await session.message(subscriber, {"request": "start"}, jsep=answer_jsep)

    async def close(self) -> None:
        for session in self.sessions:
            await session.destroy()
        if self.http is not None:
            await self.http.close()
        for participant in self.participants:
            await participant.close()


# --- peer to peer -------------------------------------------------------------------------


class DirectCall:
    def __init__(self, clip: Any) -> None:
        self.a, self.b = Participant("a", clip), Participant("b", clip)
        self.a.reception.peer, self.b.reception.peer = self.b, self.a
        self.admitted_at: float | None = None

    @property
    def participants(self) -> tuple[Participant, Participant]:
        return self.a, self.b

    async def start(self, within: float) -> None:
        self.admitted_at = time.monotonic()
        offerer = self.a.connection(send=True, receive=True)
        answerer = self.b.connection(send=True, receive=True)
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        self.a.tap(offerer)
        self.b.tap(answerer)

    async def close(self) -> None:
        for participant in self.participants:
            await participant.close()


# --- one group of calls -------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def run(args: argparse.Namespace, clip: Any, setup: dict[str, Any]) -> None:
    calls: list[Any]
    if args.target == "product":
        slots = setup["slots"][args.call_offset : args.call_offset + args.calls]
        calls = [ProductCall(args.base, setup, slot, clip) for slot in slots]
    elif args.target == "janus":
        calls = [JanusCall(args.base, 5000 + args.call_offset + i, clip) for i in range(args.calls)]
    else:
        calls = [DirectCall(clip) for _ in range(args.calls)]
    emit(event="READY")
    errors: list[str] = []

    async def start(call: Any) -> None:
        try:
            await call.start(args.connect_timeout)
        except Exception as exc:  # one failed call is reported, the others go on
            errors.append(repr(exc)[:300])

    await asyncio.gather(*(start(call) for call in calls))
    participants = [p for call in calls for p in call.participants]
    deadline = time.monotonic() + args.connect_timeout
    while time.monotonic() < deadline and not all(  # noqa: ASYNC110 - callbacks count
        p.reception.first_video_at and p.reception.first_audio_at for p in participants
    ):
        await asyncio.sleep(0.05)
    emit(event="CONNECTED", connected=sum(bool(p.reception.first_video_at) for p in participants))
    # The driver opens and closes the measuring window (the same one for every process).
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    before = {p: p.snapshot() for p in participants}
    started = time.monotonic()
    await reader.readline()
    ended = time.monotonic()
    seconds = ended - started
    middle = started + seconds / 2
    results = []
    for call in calls:
        for p in call.participants:
            video, audio, rtp, sent = (a - b for a, b in zip(p.snapshot(), before[p], strict=True))
            first = p.reception.first_video_at
            window = {
                kind: [(t, ms) for t, ms in p.reception.latency_ms[kind] if started <= t <= ended]
                for kind in ("video", "audio")
            }
            results.append(
                {
                    "video_fps": round(video / seconds, 2),
                    # Below 30: the load generator itself fell behind (the machine is busy).
                    "sent_video_fps": round(sent / seconds, 2),
                    "audio_pps": round(audio / seconds, 2),
                    "rtp_pps": round(rtp / seconds, 1),
                    "first_video_ms": round((first - call.admitted_at) * 1000)
                    if first and call.admitted_at
                    else None,
                    "keyframes": p.reception.keyframes,
                    "fast_datagrams": sum(t.datagrams_on_fast_path for t in p.taps),
                    "unprotect_failures": sum(t.unprotect_failures for t in p.taps),
                    "port_packets": [port.packets_received for port in p._ports],
                    "keyframe_requests_served": p.tracks["video"].keyframe_requests,
                    "latency_video": [ms for _, ms in window["video"]],
                    "latency_audio": [ms for _, ms in window["audio"]],
                    "latency_video_second_half": [ms for t, ms in window["video"] if t >= middle],
                }
            )
    quality = [
        m
        for call in calls
        for page in getattr(call, "pages", [])[:1]
        for m in page.messages[-12:]
        if m.get("type") == "quality_stats"
    ]
    emit(
        event="RESULT",
        window_s=round(seconds, 2),
        participants=results,
        errors=errors[:5],
        quality_stats=quality[-8:],
    )
    await asyncio.wait_for(
        asyncio.gather(*(call.close() for call in calls), return_exceptions=True), 20
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=["product", "janus", "p2p"], required=True)
    parser.add_argument("--base", default="", help="the product's URL, or Janus's REST URL")
    parser.add_argument("--setup", default="", help="product: JSON file with login and slots")
    parser.add_argument("--clip", required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--call-offset", type=int, default=0)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    args = parser.parse_args()
    setup = json.loads(Path(args.setup).read_text()) if args.setup else {}
    asyncio.run(run(args, load_clip(Path(args.clip)), setup))


if __name__ == "__main__":
    main()
