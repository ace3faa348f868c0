// The pre-call network check on the client's device-check page: a short test connection
// to the server (POST /api/links/{token}/network-check), a few seconds of the camera and
// microphone on it, then the server says whether it received them. The client learns
// before waiting whether the call can work from this network, and what to try if not.

import { requestJson } from "./ui.js";

const GATHER_MS = 3000; // the check is one HTTP exchange: send the offer with its candidates
const CONNECT_MS = 8000;
const SEND_MS = 2500;

/**
 * @typedef {object} CheckResult
 * @property {"ok" | "no_media" | "no_path" | "unavailable"} outcome
 * @property {"direct" | "relay" | null} path
 * @property {number | null} roundTripMs
 */

/**
 * @param {object} options
 * @param {string} options.linkToken
 * @param {RTCIceServer[]} options.iceServers
 * @param {MediaStream} options.stream
 * @returns {Promise<CheckResult>}
 */
export async function checkNetwork({ linkToken, iceServers, stream }) {
  const base = `/api/links/${encodeURIComponent(linkToken)}/network-check`;
  const pc = new RTCPeerConnection({ iceServers: iceServers || [], bundlePolicy: "max-bundle" });
  try {
    for (const kind of ["audio", "video"]) {
      const track = kind === "audio" ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      if (track) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      else pc.addTransceiver(kind, { direction: "recvonly" });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(() => pc.iceGatheringState === "complete", GATHER_MS, pc, "icegatheringstatechange");
    let started;
    try {
      started = await requestJson("POST", base, { sdp: pc.localDescription.sdp });
    } catch {
      return { outcome: "unavailable", path: null, roundTripMs: null };
    }
    await pc.setRemoteDescription({ type: "answer", sdp: started.sdp });
    const connected = await waitFor(() => pc.connectionState === "connected", CONNECT_MS, pc, "connectionstatechange");
    if (!connected) return { outcome: "no_path", path: null, roundTripMs: null };
    const sending = stream.getTracks().length > 0;
    if (sending) await new Promise((resolve) => setTimeout(resolve, SEND_MS));
    const { path, roundTripMs } = await selectedPath(pc);
    let heard;
    try {
      heard = await requestJson("GET", `${base}/${encodeURIComponent(started.check_id)}`);
    } catch {
      return { outcome: "unavailable", path, roundTripMs };
    }
    // Without camera and microphone there is nothing to send: a connection is the answer.
    const ok = heard.connected && (heard.media_received || !sending);
    return { outcome: ok ? "ok" : "no_media", path, roundTripMs };
  } finally {
    pc.close();
  }
}

function waitFor(predicate, timeoutMs, target, eventName) {
  return new Promise((resolve) => {
    if (predicate()) return resolve(true);
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      target.removeEventListener(eventName, check);
      resolve(predicate());
    }
    function check() {
      if (predicate()) done();
    }
    target.addEventListener(eventName, check);
  });
}

async function selectedPath(pc) {
  const report = await pc.getStats();
  let pair = null;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) pair = report.get(entry.selectedCandidatePairId);
  });
  if (!pair) return { path: null, roundTripMs: null };
  const local = report.get(pair.localCandidateId);
  return {
    path: local && local.candidateType === "relay" ? "relay" : "direct",
    roundTripMs: pair.currentRoundTripTime != null ? Math.round(pair.currentRoundTripTime * 1000) : null,
  };
}

/** What the page says about a check's outcome. */
export const ADVICE = {
  ok: "Your connection works: video reaches the practice.",
  no_media:
    "We connected, but your video did not reach the practice. Your network may be too busy or " +
    "blocking video. Try pausing downloads or other video, moving closer to your Wi-Fi router, " +
    "or switching between Wi-Fi and mobile data, then check again.",
  no_path:
    "Video cannot get through from this network. Work, hospital, school and hotel networks " +
    "often block video calls: try another network (for example mobile data instead of Wi-Fi, " +
    "or the other way round), or ask the network's IT team to allow video calls. " +
    "Restarting your router can also help.",
  unavailable: "We could not check your connection just now. You can still join, or try again.",
};
