"""What the browser's own WebRTC statistics say during a call (`getStats`), sampled often
enough to see a frozen picture, and summed up for the test output and the benchmark.

`RECORD_PEER_CONNECTIONS` is an init script for a page: it keeps every RTCPeerConnection
the page makes (the call page's is private to its module) and, when the page sets
`window.__vcForceRelay`, forces `iceTransportPolicy: "relay"` (a browser that can only
reach the server through TURN).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.__vcRecorded) return;
  window.__vcPeerConnections = [];
  class Recorded extends Native {
    constructor(configuration, ...rest) {
      const config = Object.assign({}, configuration || {});
      if (window.__vcForceRelay) config.iceTransportPolicy = "relay";
      super(config, ...rest);
      window.__vcPeerConnections.push(this);
    }
  }
  Recorded.__vcRecorded = true;
  window.RTCPeerConnection = Recorded;
})();
"""

FORCE_RELAY = "window.__vcForceRelay = true;"

_SAMPLE = """
async () => {
  const pcs = window.__vcPeerConnections || [];
  const index = pcs.length - 1;
  const pc = pcs[index];
  if (!pc) return null;
  const out = { pc: index, state: pc.connectionState, video_in: null, audio_in: null,
                video_out: null, pair: null };
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.video_in = { frames_decoded: s.framesDecoded || 0, fps: s.framesPerSecond ?? null,
        freezes: s.freezeCount || 0, freeze_s: s.totalFreezesDuration || 0,
        lost: s.packetsLost || 0, received: s.packetsReceived || 0,
        nacks: s.nackCount || 0, plis: s.pliCount || 0, firs: s.firCount || 0,
        bytes: s.bytesReceived || 0, height: s.frameHeight ?? null };
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.audio_in = { received: s.packetsReceived || 0, lost: s.packetsLost || 0,
        concealed: s.concealedSamples || 0, samples: s.totalSamplesReceived || 0 };
    } else if (s.type === "outbound-rtp" && s.kind === "video") {
      out.video_out = { bytes: s.bytesSent || 0, packets: s.packetsSent || 0,
        retransmitted: s.retransmittedPacketsSent || 0, nacks: s.nackCount || 0,
        plis: s.pliCount || 0, target_bps: s.targetBitrate ?? null,
        limitation: s.qualityLimitationReason ?? null, fps: s.framesPerSecond ?? null,
        height: s.frameHeight ?? null };
    } else if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) {
        const local = byId.get(pair.localCandidateId);
        const rtt = pair.currentRoundTripTime;
        const available = pair.availableOutgoingBitrate;
        out.pair = { rtt_ms: rtt != null ? rtt * 1000 : null,
          available_out_kbps: available != null ? available / 1000 : null,
          local_type: local ? local.candidateType : null,
          local_address: local ? local.address : null };
      }
    }
  });
  return out;
}
"""


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    stats: dict[str, Any]

    def get(self, section: str, name: str, default: Any = 0.0) -> Any:
        part = self.stats.get(section) or {}
        value = part.get(name)
        return default if value is None else value


@dataclass
class StatsRecorder:
    """Samples one page's call statistics every `interval_s` in the background."""

    page: Page
    name: str
    interval_s: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def sample(self) -> Sample | None:
        try:
            stats = await self.page.evaluate(_SAMPLE)
        except PlaywrightError:
            return None  # the page is navigating or closed
        if stats is None:
            return None
        sample = Sample(time.monotonic(), stats)
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.sample()
                await asyncio.sleep(self.interval_s)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    # --- what people feel ----------------------------------------------------------------

    def frames_per_second(self, start: float, end: float) -> float:
        """Decoded video frames per second over the window (a Refresh's new connection
        starts counting from zero: windows are summed per connection)."""
        window = self.between(start, end)
        if len(window) < 2:
            return 0.0
        frames = 0.0
        for before, after in itertools.pairwise(window):
            if after.stats["pc"] == before.stats["pc"]:
                decoded = after.get("video_in", "frames_decoded")
                frames += max(0, decoded - before.get("video_in", "frames_decoded"))
        return frames / (window[-1].at - window[0].at)

    def longest_freeze_s(self, start: float, end: float) -> float:
        """The longest time the decoded-frame counter stood still in the window."""
        return _longest_still(self.between(start, end), "video_in", "frames_decoded")

    def longest_audio_gap_s(self, start: float, end: float) -> float:
        return _longest_still(self.between(start, end), "audio_in", "received")

    def first_frame_after(self, start: float) -> float | None:
        """Seconds from `start` until decoded frames advance again (media is back)."""
        previous: Sample | None = None
        for sample in self.samples:
            if sample.at < start:
                previous = sample
                continue
            if previous is not None and _advanced(previous, sample, "video_in", "frames_decoded"):
                return sample.at - start
            previous = sample
        return None

    def send_kbps(self, start: float, end: float) -> float:
        window = self.between(start, end)
        if len(window) < 2 or window[0].stats["pc"] != window[-1].stats["pc"]:
            return 0.0
        bytes_sent = window[-1].get("video_out", "bytes") - window[0].get("video_out", "bytes")
        return float(bytes_sent) * 8 / 1000 / (window[-1].at - window[0].at)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """The figures a test prints: fps, freezes, loss, NACK/PLI counts, RTT, bitrate."""
        window = self.between(start, end)
        if len(window) < 2:
            # The sampler was starved (a very busy machine): say so in every figure's place.
            raise AssertionError(
                f"{self.name}: {len(window)} stats samples between {start:.1f} and {end:.1f}"
            )
        first, last = window[0], window[-1]

        def delta(section: str, name: str) -> float:
            if first.stats["pc"] != last.stats["pc"]:
                return float(last.get(section, name))
            return float(last.get(section, name) - first.get(section, name))

        audio_samples = delta("audio_in", "samples")
        return {
            "fps": round(self.frames_per_second(start, end), 1),
            "longest_freeze_s": round(self.longest_freeze_s(start, end), 2),
            "chromium_freezes": int(delta("video_in", "freezes")),
            "chromium_freeze_s": round(delta("video_in", "freeze_s"), 2),
            "video_packets_lost": int(delta("video_in", "lost")),
            "video_packets_received": int(delta("video_in", "received")),
            "nacks_sent": int(delta("video_in", "nacks")),
            "plis_sent": int(delta("video_in", "plis")),
            "nacks_received": int(delta("video_out", "nacks")),
            "plis_received": int(delta("video_out", "plis")),
            "retransmitted_sent": int(delta("video_out", "retransmitted")),
            "audio_packets_lost": int(delta("audio_in", "lost")),
            "audio_concealed_pct": round(100 * delta("audio_in", "concealed") / audio_samples, 1)
            if audio_samples > 0
            else None,
            "longest_audio_gap_s": round(self.longest_audio_gap_s(start, end), 2),
            "send_kbps": round(self.send_kbps(start, end)),
            "rtt_ms": last.get("pair", "rtt_ms", -1),
            "path": last.get("pair", "local_type", ""),
            "limitation": last.get("video_out", "limitation", ""),
        }


def _advanced(before: Sample, after: Sample, section: str, name: str) -> bool:
    if after.stats["pc"] != before.stats["pc"]:
        return bool(after.get(section, name) > 0)
    return bool(after.get(section, name) > before.get(section, name))


def _longest_still(window: list[Sample], section: str, name: str) -> float:
    longest = 0.0
    since: float | None = window[0].at if window else None
    for before, after in itertools.pairwise(window):
        if _advanced(before, after, section, name):
            since = after.at
        elif since is not None:
            longest = max(longest, after.at - since)
    return longest
