"""Helpers for media tests: aiortc peers standing in for browsers, wired to server legs.

Imported explicitly by the media test modules (not a pytest conftest).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media.leg import LegSettings, MediaLeg

LOOPBACK_CONFIG = RTCConfiguration(iceServers=[])
# Small frames keep the peers' own encoders and decoders cheap; the server never decodes.
WIDTH, HEIGHT = 160, 120
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000


class SolidVideoTrack(MediaStreamTrack):
    """30 fps frames of one luma value, so a receiver can tell whose video it got."""

    kind = "video"

    def __init__(self, luma: int, fps: int = 30) -> None:
        super().__init__()
        self._luma = luma
        self._fps = fps
        self._start: float | None = None
        self._count = 0
        image = np.full((HEIGHT * 3 // 2, WIDTH), 128, dtype=np.uint8)
        image[:HEIGHT, :] = luma
        self._image = image

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self._fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self._image, format="yuv420p")
        frame.pts = self._count * VIDEO_CLOCK // self._fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """20 ms frames of a quiet tone, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0
        samples = AUDIO_RATE // 50
        t = np.arange(samples) / AUDIO_RATE
        self._samples = (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * 0.02
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame.from_ndarray(self._samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._count * (AUDIO_RATE // 50)
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._count += 1
        return frame


@dataclass
class Received:
    video_frames: int = 0
    audio_frames: int = 0
    first_video_at: float | None = None
    last_video_at: float | None = None
    last_audio_at: float | None = None
    video_lumas: list[float] = field(default_factory=list)


class BrowserPeer:
    """An aiortc peer playing a browser: sends video + audio, records what it receives."""

    def __init__(self, name: str, luma: int, *, receive_only: bool = False) -> None:
        self.name = name
        self.luma = luma
        self.pc = RTCPeerConnection(LOOPBACK_CONFIG)
        self.video = SolidVideoTrack(luma)
        self.audio = ToneAudioTrack()
        if receive_only:
            # "Join without camera or microphone": it sends no RTP, only RTCP reports.
            self.pc.addTransceiver("audio", direction="recvonly")
            self.pc.addTransceiver("video", direction="recvonly")
        else:
            self.pc.addTrack(self.audio)
            self.pc.addTrack(self.video)
        self.received = Received()
        self.states: list[str] = []
        self._consumers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", lambda: self.states.append(self.pc.connectionState))

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._consumers.append(asyncio.get_running_loop().create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        received = self.received
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    received.video_frames += 1
                    received.last_video_at = now
                    if received.first_video_at is None:
                        received.first_video_at = now
                    if len(received.video_lumas) < 1000:
                        y = frame.to_ndarray(format="yuv420p")[:HEIGHT]
                        received.video_lumas.append(float(y.mean()))
                else:
                    received.audio_frames += 1
                    received.last_audio_at = now
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)


async def connect(peer: BrowserPeer, leg: MediaLeg) -> None:
    """The browser offers, the server leg answers (no trickle: candidates are in the SDP)."""
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    answer = await leg.accept_offer(peer.pc.localDescription.sdp)
    await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def reconnect(peer: BrowserPeer, name: str) -> BrowserPeer:
    """A browser page refresh: a brand-new peer connection."""
    await peer.close()
    return BrowserPeer(name, peer.luma)


async def wait_for(
    predicate: Callable[[], bool], within: float = 5.0, interval: float = 0.02
) -> float:
    """Poll until `predicate()`; returns the seconds it took, or fails the test."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


def new_leg(label: str, settings: LegSettings | None = None) -> MediaLeg:
    return MediaLeg(LOOPBACK_CONFIG, settings, label=label)


async def close_all(*closables: BrowserPeer | MediaLeg | None) -> None:
    for item in closables:
        if item is not None:
            await item.close()


AsyncCheck = Callable[[], Awaitable[bool]]
