"""Benchmark: relayed 1:1 calls through our media server vs the same peers peer-to-peer.

K concurrent calls (a sweep, e.g. 1,4,8,12). Every call has two aiortc peers sending
pre-encoded VP8 640x480@30 and Opus (a clip encoded once at start and looped, so the
load generator costs little: the peers neither encode nor decode). The server side (legs
and relay) runs in a separate process so its CPU can be measured. For each K the same
peers run twice: through the server, then connected directly (the baseline), in the
same run.

Figures: server CPU % of one core per call, delivered fps at the receivers, join to first
frame, and per-packet latency (send -> receive, matched by payload bytes; both ends live
in this process, so one clock) relayed minus direct.

Progress goes to stderr; the last stdout line is one JSON object. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs.vpx import VpxPayloadDescriptor  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpCodecParameters  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from media.aiortc_adapter import IngressPort  # noqa: E402
from media.keyframes import is_vp8_keyframe_start  # noqa: E402
from media.kinds import MediaKind  # noqa: E402
from media.relay import Side  # noqa: E402

LOOPBACK = RTCConfiguration(iceServers=[])
VIDEO_CLOCK, AUDIO_RATE, FPS = 90000, 48000, 30
KEY_BYTES = 32  # payload prefix that identifies a frame / audio packet in the clip


def log(message: str) -> None:
    print(f"[bench_media {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the clip -------------------------------------------------------------------------------


@dataclass
class Clip:
    video: list[tuple[bytes, bool]]  # (VP8 frame, is keyframe)
    audio: list[bytes]  # Opus packets, 20 ms each


def encode_clip(seconds: float, width: int, height: int, bitrate: int) -> Clip:
    """A synthetic moving picture and a tone with noise, encoded once."""
    rng = np.random.default_rng(7)
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.bit_rate = bitrate
    encoder.gop_size = 2 * FPS  # a keyframe every 2 s, plus jumps to one on PLI
    encoder.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    yy, xx = np.mgrid[0:height, 0:width]
    video: list[tuple[bytes, bool]] = []
    frames = int(seconds * FPS)
    for i in range(frames):
        luma = ((xx + 4 * i) % 256 + (yy // 2 + 2 * i) % 64).astype(np.uint8)
        luma = np.clip(luma + rng.integers(0, 12, size=luma.shape), 0, 255).astype(np.uint8)
        image = np.concatenate([luma, np.full((height // 2, width), 128, dtype=np.uint8)])
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        for packet in encoder.encode(frame):
            video.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in encoder.encode(None):
        video.append((bytes(packet), bool(packet.is_keyframe)))

    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate = AUDIO_RATE
    opus.layout = "stereo"
    opus.format = "s16"
    opus.bit_rate = 32000
    samples_per_packet = AUDIO_RATE // 50
    audio: list[bytes] = []
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    wave = np.sin(2 * np.pi * 330 * t) * 4000 + rng.normal(0, 800, size=t.shape)
    pcm = np.repeat(wave.astype(np.int16), 2)  # interleaved stereo
    for i in range(len(t) // samples_per_packet):
        chunk = pcm[i * samples_per_packet * 2 : (i + 1) * samples_per_packet * 2]
        sound = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        sound.sample_rate = AUDIO_RATE
        sound.pts = i * samples_per_packet
        audio += [bytes(p) for p in opus.encode(sound)]
    return Clip(video, audio)


# --- peers --------------------------------------------------------------------------------


class LoopedTrack(MediaStreamTrack):
    """Returns pre-encoded packets (like MediaPlayer(decode=False)) paced in real time.

    Records when each packet leaves (aiortc's sender packs and sends it without yielding
    after `recv` returns), keyed by its first bytes, for the receiver to match.
    """

    def __init__(self, kind: MediaKind, packets: list[bytes], keyframes: list[int]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._keyframes = keyframes
        self._interval = 1 / FPS if kind == "video" else 0.02
        self._ticks = VIDEO_CLOCK // FPS if kind == "video" else AUDIO_RATE // 50
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK if kind == "video" else AUDIO_RATE)
        self._index = 0
        self._count = 0
        self._start: float | None = None
        self.sent_at: dict[bytes, float] = {}

    def jump_to_keyframe(self) -> None:
        """A keyframe was requested: continue the loop from the nearest keyframe."""
        if self._keyframes:
            self._index = min(self._keyframes, key=lambda k: (k - self._index) % len(self._packets))

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._count * self._interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = self._packets[self._index]
        self._index = (self._index + 1) % len(self._packets)
        packet = av.Packet(data)
        packet.pts = self._count * self._ticks
        packet.time_base = self._time_base
        self._count += 1
        self.sent_at[data[:KEY_BYTES]] = time.monotonic()
        return packet


@dataclass
class Reception:
    first_video_at: float | None = None
    frame_times: list[float] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"audio": [], "video": []})
    recording: bool = False


class ReceivedPackets:
    """A stream consumer for a peer's ingress port: hands parsed packets to a callback."""

    takes_bytes = False

    def __init__(self, sink: Callable[[RtpPacket, RTCRtpCodecParameters], None]) -> None:
        self._sink = sink

    def forward_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        self._sink(packet, codec)

    def forward_bytes(
        self, data: bytes, codec: RTCRtpCodecParameters, seq: int, ts: int, ssrc: int
    ) -> None:
        raise AssertionError("a peer's port has no fast path")

    def shed(self, seq: int) -> None:
        pass


class Peer:
    """A browser stand-in: sends the looped clip, counts what it receives without decoding."""

    def __init__(self, clip: Clip) -> None:
        self.pc = RTCPeerConnection(LOOPBACK)
        keyframes = [i for i, (_, key) in enumerate(clip.video) if key]
        self.video = LoopedTrack("video", [data for data, _ in clip.video], keyframes)
        self.audio = LoopedTrack("audio", clip.audio, [])
        self.reception = Reception()
        self.remote: Peer | None = None
        self.first_video = asyncio.Event()
        self._ports: list[IngressPort] = []
        for track in (self.audio, self.video):
            sender = self.pc.addTrack(track)
            if track.kind == "video":
                # The clip is pre-encoded: honour a PLI by jumping to a keyframe.
                setattr(sender, "_send_keyframe", track.jump_to_keyframe)  # noqa: B010
        for transceiver in self.pc.getTransceivers():
            kind: MediaKind = "video" if transceiver.kind == "video" else "audio"
            port = IngressPort(transceiver, kind)
            port.consumer = ReceivedPackets(
                self._video_sink if kind == "video" else self._audio_sink
            )
            self._ports.append(port)

    def _video_sink(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        payload = packet.payload
        if not payload or not payload[0] & 0x10 or payload[0] & 0x07:
            return  # not the first packet of a frame
        now = time.monotonic()
        reception = self.reception
        if reception.first_video_at is None:
            if not is_vp8_keyframe_start(payload):
                return  # a real browser could not show anything yet
            reception.first_video_at = now
            self.first_video.set()
        if reception.recording:
            reception.frame_times.append(now)
            _, data = VpxPayloadDescriptor.parse(payload)
            self._record_latency("video", data[:KEY_BYTES], now)

    def _audio_sink(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        if self.reception.recording:
            self._record_latency("audio", packet.payload[:KEY_BYTES], time.monotonic())

    def _record_latency(self, kind: str, key: bytes, now: float) -> None:
        remote = self.remote
        if remote is None:
            return
        sent = (remote.video if kind == "video" else remote.audio).sent_at.get(key)
        if sent is not None and 0 <= now - sent < 2.0:
            self.reception.latency_ms[kind].append((now - sent) * 1000)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        await self.pc.close()


# --- the server process ---------------------------------------------------------------------


async def serve() -> None:
    """Legs and relays only; driven over a local JSON-lines socket (port on stdout)."""
    from media.call import CallMedia

    calls: dict[str, CallMedia] = {}
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            reply: dict[str, Any] = {}
            op = request["op"]
            if op == "open":
                call = calls.setdefault(request["call"], CallMedia(LOOPBACK))
                reply["sdp"] = await call.open_leg(Side(request["side"]), request["sdp"])
            elif op == "close":
                call_media = calls.pop(request["call"], None)
                if call_media is not None:
                    await call_media.close()
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
            if op == "quit":
                done.set()
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    for call in calls.values():
        await call.close()
    server.close()
    await server.wait_closed()


class ServerClient:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self._reader, self._writer = reader, writer
        self._port = port
        self._lock = asyncio.Lock()

    async def connect(self) -> ServerClient:
        """Another connection, so that requests of different calls run concurrently."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        return ServerClient(reader, writer, self._port)

    async def request(self, **message: Any) -> dict[str, Any]:
        async with self._lock:
            self._writer.write((json.dumps(message) + "\n").encode())
            await self._writer.drain()
            reply: dict[str, Any] = json.loads(await self._reader.readline())
            return reply

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


# --- running a phase -----------------------------------------------------------------------


@dataclass
class PhaseResult:
    mode: str
    calls: int
    server_cpu_pct: float | None
    fps: list[float]
    join_ms: list[float]
    latency_ms: dict[str, list[float]]
    receivers_without_video: int


async def run_phase(
    mode: str,
    calls: int,
    clip: Clip,
    server: ServerClient | None,
    server_pid: int | None,
    warmup: float,
    duration: float,
) -> PhaseResult:
    pairs = [(Peer(clip), Peer(clip)) for _ in range(calls)]
    for a, b in pairs:
        a.remote, b.remote = b, a
    started = time.monotonic()
    try:

        async def connect(index: int, a: Peer, b: Peer) -> None:
            if mode == "p2p":
                await a.accept_answer(await b.answer(await a.offer()))
                return
            assert server is not None
            call = f"{mode}-{calls}-{index}"

            async def join(side: Side, peer: Peer) -> None:
                client = await server.connect()
                try:
                    offer = await peer.offer()
                    reply = await client.request(op="open", call=call, side=side.value, sdp=offer)
                    await peer.accept_answer(reply["sdp"])
                finally:
                    await client.close()

            await asyncio.gather(join(Side.CLINICIAN, a), join(Side.CLIENT, b))

        await asyncio.gather(*(connect(i, a, b) for i, (a, b) in enumerate(pairs)))
        peers = [p for pair in pairs for p in pair]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.first_video.wait() for p in peers)), 10)
        join_ms = [
            (p.reception.first_video_at - started) * 1000
            for p in peers
            if p.reception.first_video_at is not None
        ]
        await asyncio.sleep(warmup)

        for p in peers:
            p.reception.recording = True
        cpu_before = cpu_seconds(server_pid) if server_pid else None
        window_start = time.monotonic()
        await asyncio.sleep(duration)
        window = time.monotonic() - window_start
        cpu_after = cpu_seconds(server_pid) if server_pid else None
        for p in peers:
            p.reception.recording = False

        cpu_pct = None
        if cpu_before is not None and cpu_after is not None:
            cpu_pct = 100 * (cpu_after - cpu_before) / window
        fps = [len(p.reception.frame_times) / window for p in peers]
        latency: dict[str, list[float]] = {"audio": [], "video": []}
        for p in peers:
            for kind in latency:
                latency[kind] += p.reception.latency_ms[kind]
        return PhaseResult(
            mode,
            calls,
            cpu_pct,
            fps,
            join_ms,
            latency,
            sum(1 for p in peers if p.reception.first_video_at is None),
        )
    finally:
        for a, b in pairs:
            await a.close()
            await b.close()
        if server is not None:
            for index in range(calls):
                await server.request(op="close", call=f"{mode}-{calls}-{index}")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime), counted after the ")" that ends the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sweep = [int(k) for k in args.calls.split(",")]
    kbps = args.bitrate // 1000
    log(f"encoding a {args.clip_seconds:.0f} s clip (VP8 640x480@30 {kbps} kbps, Opus)")
    clip = encode_clip(args.clip_seconds, 640, 480, args.bitrate)
    kbytes = sum(len(d) for d, _ in clip.video) / 1024 / args.clip_seconds
    log(f"clip: {len(clip.video)} video frames ({kbytes:.0f} KiB/s), {len(clip.audio)} audio")

    command = [sys.executable, __file__, "--serve"]
    if args.profile_server:
        command += ["--profile-server", args.profile_server]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 20))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        server = ServerClient(reader, writer, port)
        idle = await measure_idle_cpu(proc.pid, 1.0)
        log(f"server idle: {idle:.1f}% of a core")

        rows: list[dict[str, Any]] = []
        for calls in sweep:
            results = {}
            for mode in ("relay", "p2p"):
                log(f"{calls} call(s), {mode}: connecting")
                result = await run_phase(
                    mode,
                    calls,
                    clip,
                    server if mode == "relay" else None,
                    proc.pid if mode == "relay" else None,
                    args.warmup,
                    args.duration,
                )
                results[mode] = result
                log(
                    f"{calls} call(s), {mode}: fps min {min(result.fps):.1f}, "
                    f"join p50 {pct(result.join_ms, 0.5)} ms, "
                    f"video p50 {pct(result.latency_ms['video'], 0.5)} ms, "
                    f"audio p50 {pct(result.latency_ms['audio'], 0.5)} ms"
                    + (
                        f", server {result.server_cpu_pct:.1f}% of a core"
                        if result.server_cpu_pct is not None
                        else ""
                    )
                )
            relay, p2p = results["relay"], results["p2p"]
            cpu = relay.server_cpu_pct
            row: dict[str, Any] = {
                "calls": calls,
                "server_cpu_pct": rounded(cpu),
                "server_cpu_pct_per_call": rounded(
                    None if cpu is None else max(0.0, cpu - idle) / calls
                ),
                "fps_delivered_min": rounded(min(relay.fps)),
                "fps_delivered_mean": rounded(statistics.fmean(relay.fps)),
                "fps_delivered_min_p2p": rounded(min(p2p.fps)),
                "join_ms_p50": pct(relay.join_ms, 0.5),
                "join_ms_p50_p2p": pct(p2p.join_ms, 0.5),
                "receivers_without_video": relay.receivers_without_video,
            }
            for kind in ("video", "audio"):
                r50, p50 = pct(relay.latency_ms[kind], 0.5), pct(p2p.latency_ms[kind], 0.5)
                r95, p95 = pct(relay.latency_ms[kind], 0.95), pct(p2p.latency_ms[kind], 0.95)
                row[f"latency_ms_{kind}_p50"] = r50
                row[f"latency_ms_{kind}_p50_p2p"] = p50
                row[f"latency_ms_{kind}_p95"] = r95
                row[f"latency_ms_{kind}_p95_p2p"] = p95
                row[f"added_latency_ms_{kind}"] = (
                    None if r50 is None or p50 is None else round(r50 - p50, 2)
                )
            rows.append(row)
        await server.request(op="quit")
        await server.close()
    finally:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    largest = rows[-1]
    summary: dict[str, Any] = {
        "calls_max": largest["calls"],
        "server_cpu_pct_per_call": largest["server_cpu_pct_per_call"],
        "server_cpu_pct_per_call_max": max((r["server_cpu_pct_per_call"] or 0.0) for r in rows),
        "server_idle_cpu_pct": round(idle, 2),
        "fps_delivered_min": min(r["fps_delivered_min"] for r in rows),
        "fps_delivered_min_p2p": min(r["fps_delivered_min_p2p"] for r in rows),
        "join_ms_p50": largest["join_ms_p50"],
        "join_ms_p50_p2p": largest["join_ms_p50_p2p"],
        "added_latency_ms_video": largest["added_latency_ms_video"],
        "added_latency_ms_audio": largest["added_latency_ms_audio"],
        "sweep": rows,
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="1,4,8,12", help="concurrent calls to sweep")
    parser.add_argument("--duration", type=float, default=5.0, help="measured s per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="s before measuring")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--bitrate", type=int, default=600_000, help="VP8 clip bits/s")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile-server", metavar="PATH", help="write a cProfile of the server process"
    )
    args = parser.parse_args(argv)
    if args.serve:
        if args.profile_server:
            import cProfile

            with cProfile.Profile() as profile:
                asyncio.run(serve())
            profile.dump_stats(args.profile_server)
        else:
            asyncio.run(serve())
        return
    summary = asyncio.run(run(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
