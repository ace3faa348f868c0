// Camera and microphone: the device check, a microphone level meter, and the page's one
// RTCPeerConnection. Refresh (R-C1) builds a new connection and offers again.

/** What went wrong getting the camera or microphone, in words a client can act on. */
export class DeviceProblem extends Error {
  /**
   * @param {"denied" | "not_found" | "in_use" | "insecure" | "unsupported" | "other"} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const HELP = {
  denied:
    "Your browser is not allowing this page to use your camera and microphone. " +
    "Click the camera icon in the address bar (or your browser's site settings), choose " +
    "Allow, then press Try again.",
  not_found:
    "No camera or microphone was found. Check that one is plugged in and switched on, " +
    "then press Try again.",
  in_use:
    "Your camera or microphone is being used by another program. Close other video apps " +
    "(or other tabs with a call), then press Try again.",
  insecure: "Video calls need a secure (https) connection. Please open the link you were sent.",
  unsupported: "This browser cannot make video calls. Please use a recent Chrome, Edge, Firefox or Safari.",
  other: "Your camera or microphone could not be started. Press Try again, or restart your browser.",
};

function classify(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "not_found";
  if (name === "NotReadableError" || name === "AbortError") return "in_use";
  return "other";
}

const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };

/**
 * Ask for camera and microphone. With only one of them present, carry on with that one
 * (a call with audio only is better than no call); with neither, explain what to do.
 * Every failure is a `DeviceProblem` (each getUserMedia refusal is classified), so a page
 * has one thing to show.
 * @returns {Promise<MediaStream>}
 */
export async function openDevices() {
  if (!window.isSecureContext) throw new DeviceProblem("insecure", HELP.insecure);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new DeviceProblem("unsupported", HELP.unsupported);
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: VIDEO_CONSTRAINTS });
  } catch (error) {
    const kind = classify(error);
    if (kind !== "not_found") throw new DeviceProblem(kind, HELP[kind]);
  }
  for (const constraints of [{ audio: true }, { video: VIDEO_CONSTRAINTS }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (error) {
      const kind = classify(error);
      if (kind !== "not_found") throw new DeviceProblem(kind, HELP[kind]);
    }
  }
  throw new DeviceProblem("not_found", HELP.not_found);
}

/**
 * A microphone level meter drawn with WebAudio (headless Chromium reports no audioLevel
 * in its stats, and people need to see their microphone works before the call anyway).
 */
export class LevelMeter {
  /**
   * @param {MediaStream} stream
   * @param {HTMLElement} bar  its width shows the level; `data-level` holds 0..100
   */
  constructor(stream, bar) {
    this._bar = bar;
    this._frame = 0;
    this._context = null;
    const track = stream.getAudioTracks()[0];
    if (!track) {
      bar.dataset.level = "0";
      return;
    }
    this._context = new AudioContext();
    const source = this._context.createMediaStreamSource(new MediaStream([track]));
    this._analyser = this._context.createAnalyser();
    this._analyser.fftSize = 1024;
    source.connect(this._analyser);
    this._samples = new Float32Array(this._analyser.fftSize);
    // Autoplay policy may start the context suspended until the user interacts.
    this._context.resume().catch(() => {});
    this._tick = this._tick.bind(this);
    this._frame = requestAnimationFrame(this._tick);
    this._interval = setInterval(this._tick, 100); // rAF pauses in background tabs
  }

  _tick() {
    if (!this._analyser) return;
    this._analyser.getFloatTimeDomainData(this._samples);
    let sum = 0;
    for (const sample of this._samples) sum += sample * sample;
    const rms = Math.sqrt(sum / this._samples.length);
    // Speech sits around 0.01-0.1 RMS; a square-root scale makes quiet voices visible.
    const level = Math.min(100, Math.round(Math.sqrt(rms) * 220));
    this._bar.style.width = `${level}%`;
    this._bar.dataset.level = String(level);
    this._bar.parentElement?.setAttribute("aria-valuenow", String(level));
    cancelAnimationFrame(this._frame);
    this._frame = requestAnimationFrame(this._tick);
  }

  stop() {
    cancelAnimationFrame(this._frame);
    clearInterval(this._interval);
    this._analyser = null;
    if (this._context) this._context.close().catch(() => {});
  }
}

/** Mute or unmute; camera on or off. Returns the new "on" state. */
export function setTrackEnabled(stream, kind, enabled) {
  const tracks = kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks();
  for (const track of tracks) track.enabled = enabled;
  return tracks.length > 0 && enabled;
}

/** The session id of an SDP's o= line: a new one means the other end is a new connection. */
function sessionIdOf(sdp) {
  const match = /^o=\S+ (\d+) /m.exec(sdp || "");
  return match ? match[1] : null;
}

/**
 * This page's one RTCPeerConnection, negotiated over the call's WebSocket.
 *
 * It works with either far end the server puts behind the socket: the server's own media
 * leg (which only ever answers our offers) or, until media legs are wired in, the other
 * browser (the server relays offers, answers and candidates). Both sides may offer at once
 * (both see the call start together), so it follows WebRTC's "perfect negotiation": the
 * polite side (the client) gives way to an offer that crosses its own, the impolite side
 * (the clinician) ignores it. An offer from a different SDP session means the far end is a
 * new connection (a reloaded page, a new server leg): we answer it on a fresh connection.
 */
export class MediaLeg {
  /**
   * @param {object} options
   * @param {MediaStream} options.localStream
   * @param {RTCIceServer[]} options.iceServers
   * @param {boolean} options.polite
   * @param {(message: object) => boolean} options.send
   * @param {(stream: MediaStream) => void} options.onRemoteStream
   * @param {(state: string) => void} options.onState  RTCPeerConnection.connectionState
   */
  constructor({ localStream, iceServers, polite, send, onRemoteStream, onState }) {
    this._localStream = localStream;
    this._iceServers = iceServers || [];
    this._polite = polite;
    this._send = send;
    this._onRemoteStream = onRemoteStream;
    this._onState = onState;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._pendingCandidates = [];
    this._work = Promise.resolve(); // negotiation steps run one at a time, in order
  }

  get started() {
    return this.pc !== null;
  }

  get connectionState() {
    return this.pc ? this.pc.connectionState : "new";
  }

  get signalingState() {
    return this.pc ? this.pc.signalingState : "closed";
  }

  /** A fresh connection and our offer: first start, Refresh (R-C1), or recovery. */
  start() {
    return this._serially(async () => {
      const pc = this._build();
      this._makingOffer = true;
      try {
        await pc.setLocalDescription(await pc.createOffer());
      } finally {
        this._makingOffer = false;
      }
      if (this.pc === pc) this._send({ type: "sdp_offer", sdp: pc.localDescription.sdp });
    });
  }

  /** An sdp_offer, sdp_answer or ice_candidate from the far end. */
  handle(message) {
    return this._serially(() => this._handle(message));
  }

  _serially(step) {
    const run = this._work.then(step);
    this._work = run.catch(() => {}); // one failed step must not block the next
    return run;
  }

  _build() {
    this.close();
    const pc = new RTCPeerConnection({ iceServers: this._iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this._pendingCandidates = [];
    this._ignoreOffer = false;
    const remote = new MediaStream();
    // One audio and one video transceiver always, so the far end can send both even when
    // this side has no camera (or no microphone).
    for (const kind of ["audio", "video"]) {
      const track = kind === "audio"
        ? this._localStream.getAudioTracks()[0]
        : this._localStream.getVideoTracks()[0];
      if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [this._localStream] });
      else pc.addTransceiver(kind, { direction: "recvonly" });
    }
    pc.ontrack = (event) => {
      if (this.pc !== pc) return;
      if (!remote.getTracks().includes(event.track)) remote.addTrack(event.track);
      this._onRemoteStream(remote);
    };
    pc.onicecandidate = (event) => {
      if (this.pc !== pc || !event.candidate || !event.candidate.candidate) return;
      this._send({
        type: "ice_candidate",
        candidate: event.candidate.candidate,
        sdp_mid: event.candidate.sdpMid,
        sdp_mline_index: event.candidate.sdpMLineIndex,
      });
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this._onState(pc.connectionState);
    };
    this._onState(pc.connectionState);
    return pc;
  }

  async _handle(message) {
    if (message.type === "ice_candidate") {
      const pc = this.pc;
      if (!pc || !message.candidate) return;
      if (!pc.remoteDescription) {
        this._pendingCandidates.push(message);
        return;
      }
      await this._addCandidate(pc, message);
      return;
    }
    const type = message.type === "sdp_offer" ? "offer" : "answer";
    let pc = this.pc;
    if (type === "answer") {
      if (!pc || pc.signalingState !== "have-local-offer") return; // answers an older offer
      await pc.setRemoteDescription({ type, sdp: message.sdp });
    } else {
      const collision = pc !== null && (this._makingOffer || pc.signalingState !== "stable");
      this._ignoreOffer = !this._polite && collision;
      if (this._ignoreOffer) return; // ours wins; the far end gives way
      const current = pc && pc.remoteDescription;
      if (!pc || (current && sessionIdOf(current.sdp) !== sessionIdOf(message.sdp))) {
        pc = this._build();
      }
      await pc.setRemoteDescription({ type, sdp: message.sdp }); // rolls back our own offer
      await pc.setLocalDescription();
      if (this.pc !== pc) return;
      this._send({ type: "sdp_answer", sdp: pc.localDescription.sdp });
    }
    for (const candidate of this._pendingCandidates.splice(0)) await this._addCandidate(pc, candidate);
  }

  async _addCandidate(pc, message) {
    try {
      await pc.addIceCandidate({
        candidate: message.candidate,
        sdpMid: message.sdp_mid ?? undefined,
        sdpMLineIndex: message.sdp_mline_index ?? undefined,
      });
    } catch (error) {
      // Candidates of an offer we ignored, or of a connection already replaced, are noise.
      if (!this._ignoreOffer && this.pc === pc) console.warn("ICE candidate refused", error);
    }
  }

  /**
   * Round trip, loss and bitrates measured by this browser since the last sample, in the
   * shape of the server's quality_stats (used when the server sends none, e.g. when the
   * media goes browser to browser).
   */
  async sampleQuality() {
    const pc = this.pc;
    if (!pc || pc.connectionState !== "connected") return null;
    const report = await pc.getStats();
    let rtt = null;
    let lost = 0;
    let received = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    report.forEach((entry) => {
      if (entry.type === "candidate-pair" && entry.nominated && entry.currentRoundTripTime != null) {
        rtt = Math.round(entry.currentRoundTripTime * 1000);
      } else if (entry.type === "inbound-rtp") {
        lost += entry.packetsLost || 0;
        received += entry.packetsReceived || 0;
        bytesIn += entry.bytesReceived || 0;
      } else if (entry.type === "outbound-rtp") {
        bytesOut += entry.bytesSent || 0;
      }
    });
    const now = performance.now();
    const last = this._lastSample;
    this._lastSample = { now, lost, received, bytesIn, bytesOut };
    if (!last) return null;
    const seconds = (now - last.now) / 1000;
    const packets = received - last.received + (lost - last.lost);
    return {
      round_trip_ms: rtt,
      packet_loss_pct: packets > 0 ? (100 * Math.max(0, lost - last.lost)) / packets : 0,
      inbound_kbps: Math.round((8 * (bytesIn - last.bytesIn)) / 1000 / seconds),
      outbound_kbps: Math.round((8 * (bytesOut - last.bytesOut)) / 1000 / seconds),
    };
  }

  close() {
    this._lastSample = null;
    if (this.pc) {
      this.pc.ontrack = null;
      this.pc.onicecandidate = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
  }
}

/**
 * Watch a <video> and report whether frames are arriving (used for "video paused" hints
 * and by the browser tests, which read `data-frames`).
 */
export function watchFrames(video) {
  const update = () => {
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    video.dataset.frames = String(quality ? quality.totalVideoFrames : 0);
  };
  return setInterval(update, 500);
}
