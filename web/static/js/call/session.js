// One participant's side of a call: the WebSocket, the media leg and the in-call controls
// (mute, camera, hang-up with its End Call / Cancel / Refresh dialog), shared by the client
// and clinician pages. What differs between them (waiting room, admit, the ended screens,
// the client's end request) is left to the page through hooks.

import { CallConnection } from "./connection.js";
import { askChoice } from "./dialogs.js";
import { MediaLeg, setTrackEnabled, watchFrames } from "./media.js";
import { $ } from "./ui.js";

// If the media connection stays broken this long, rebuild it without asking anyone.
const DISCONNECTED_GRACE_MS = 4000;
const MIN_RESTART_GAP_MS = 5000;

const CLOSED_ELSEWHERE = {
  replaced: {
    title: "The call was opened in another window",
    message: "You are in the call in your other window or tab. You can close this one.",
  },
  ended: { title: "The call has ended", message: "" },
  abandoned: { title: "The call has ended", message: "" },
  closed: { title: "The waiting room is closed", message: "Your link still works: open it again at your appointment time." },
};

/**
 * @typedef {object} SessionHooks
 * @property {(snapshot: any) => void} onSnapshot        every whole-state snapshot
 * @property {(role: string, present: boolean) => void} onPresence
 * @property {(ended: any) => void} onEnded              call_ended, or a closed call on connect
 * @property {(message: any) => void} [onMessage]        role-specific messages
 * @property {(state: string) => void} [onConnection]    socket state for the banner
 * @property {(stats: any) => void} [onQuality]
 * @property {() => void} [onHangupAnswered]            after End Call / Cancel / Refresh is sent
 */

export class CallSession {
  /**
   * @param {object} options
   * @param {"clinician" | "client"} options.role
   * @param {() => Promise<string>} options.url            WebSocket URL (fresh per attempt)
   * @param {RTCIceServer[]} options.iceServers
   * @param {MediaStream | null} options.localStream
   * @param {SessionHooks} options.hooks
   */
  constructor({ role, url, iceServers, localStream, hooks }) {
    this.role = role;
    this.phase = null;
    this.present = new Set();
    this.hooks = hooks;
    this.localStream = localStream;
    this.ended = false;
    this._hangupDialog = null; // {confirmId, close}
    this._restartTimer = null;
    this._lastRestart = 0;
    this._waitingForConfirm = false;
    this.remoteVideo = $("#remote-video");
    this.connection = new CallConnection({
      url,
      onMessage: (message) => this._receive(message),
      onState: (state, detail) => this._connectionState(state, detail),
    });
    this.leg = new MediaLeg({
      localStream: localStream || new MediaStream(),
      iceServers,
      polite: role === "client",
      send: (message) => this.connection.send(message),
      onRemoteStream: (stream) => this._showRemote(stream),
      onState: (state) => this._mediaState(state),
    });
    watchFrames(this.remoteVideo);
    this._lastServerQuality = 0;
    this._qualityTimer = setInterval(() => this._sampleQuality(), 2000);
    this._wireControls();
    // Tests and support staff can reach the live objects from the console.
    window.callSession = this;
  }

  start() {
    this.connection.start();
  }

  /** Send a protocol message; tells the user when the connection is down. */
  send(message) {
    const sent = this.connection.send(message);
    if (!sent) this.alert("You are offline: reconnecting. Please try again in a moment.");
    return sent;
  }

  alert(text) {
    const box = document.getElementById("call-alert");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  // --- incoming -------------------------------------------------------------------------

  _receive(message) {
    switch (message.type) {
      case "snapshot":
        this._snapshot(message);
        break;
      case "presence":
        if (message.present) this.present.add(message.role);
        else this.present.delete(message.role);
        this.hooks.onPresence(message.role, message.present);
        // The other side is back (reloaded page, new network). Offers made while it was
        // away were not delivered, so unless media still flows, offer again.
        if (message.present && this.phase === "in_progress" && this.leg.connectionState !== "connected") {
          this._restartMedia();
        }
        break;
      case "hangup_confirm_required":
        this._openHangupDialog(message.confirm_id);
        break;
      case "call_ended":
        this._finish(message);
        break;
      case "error":
        if (message.code === "call_over") {
          this._finish({ reason: "call_over", your_role: this.role, title: message.message, message: "" });
        } else {
          this.alert(message.message);
          this._enableHangup();
        }
        break;
      case "sdp_answer":
      case "sdp_offer":
      case "ice_candidate":
        this.leg.handle(message).catch((error) => {
          console.error("media negotiation failed", error);
          this._scheduleRestart(1000);
        });
        break;
      case "quality_stats":
        this._lastServerQuality = Date.now();
        if (this.hooks.onQuality) this.hooks.onQuality(message);
        break;
      default:
        if (this.hooks.onMessage) this.hooks.onMessage(message);
    }
  }

  _snapshot(snapshot) {
    this.phase = snapshot.phase;
    this.present = new Set(snapshot.present);
    this.alert("");
    if (["ended", "abandoned", "closed"].includes(snapshot.phase)) return; // call_ended follows
    this.hooks.onSnapshot(snapshot);
    if (snapshot.phase === "in_progress") {
      this._ensureMedia();
      // A dialog the server still holds open (we reconnected while it was up) comes back.
      if (snapshot.confirm_id && (!this._hangupDialog || this._hangupDialog.confirmId !== snapshot.confirm_id)) {
        this._openHangupDialog(snapshot.confirm_id);
      } else if (!snapshot.confirm_id && this._hangupDialog) {
        this._hangupDialog.close();
      }
    }
  }

  _connectionState(state, detail) {
    const banner = document.getElementById("connection-banner");
    if (banner) {
      banner.hidden = state !== "reconnecting";
      banner.textContent = state === "reconnecting" ? "Connection lost. Reconnecting…" : "";
    }
    document.body.dataset.connection = state;
    if (state === "open") this.alert("");
    if (state === "closed" && !this.ended && CLOSED_ELSEWHERE[detail]) {
      // The server closed us for good without a farewell we saw (e.g. another tab of the
      // same participant took over): say so instead of leaving a frozen call on screen,
      // and let go of the camera and microphone, which the page that has the call needs.
      this._finish({ reason: detail, your_role: this.role, ...CLOSED_ELSEWHERE[detail] });
    }
    if (this.hooks.onConnection) this.hooks.onConnection(state);
  }

  // --- media ----------------------------------------------------------------------------

  _ensureMedia() {
    const state = this.leg.connectionState;
    if (!this.leg.started || state === "failed" || state === "closed") this._restartMedia();
  }

  _restartMedia() {
    this._lastRestart = Date.now();
    clearTimeout(this._restartTimer);
    this.leg.start().catch((error) => {
      console.error("could not start the media connection", error);
      this.alert("Your video connection could not be started. Press hang up, then Refresh.");
    });
  }

  _scheduleRestart(delay) {
    clearTimeout(this._restartTimer);
    this._restartTimer = setTimeout(() => {
      if (this.ended || this.phase !== "in_progress") return;
      if (this.connection.state !== "open") return; // the socket's own recovery comes first
      const state = this.leg.connectionState;
      if (state === "connected") return;
      this._restartMedia();
    }, Math.max(delay, this._lastRestart + MIN_RESTART_GAP_MS - Date.now()));
  }

  _mediaState(state) {
    document.body.dataset.media = state;
    if (state === "failed") this._scheduleRestart(0);
    else if (state === "disconnected") this._scheduleRestart(DISCONNECTED_GRACE_MS);
  }

  async _sampleQuality() {
    // The server's figures win; without them (no server media leg), measure here.
    if (!this.hooks.onQuality || this.ended || Date.now() - this._lastServerQuality < 6000) return;
    const stats = await this.leg.sampleQuality().catch(() => null);
    if (stats) this.hooks.onQuality({ role: this.role, source: "browser", ...stats });
  }

  _showRemote(stream) {
    const placeholder = document.getElementById("remote-waiting");
    if (placeholder) placeholder.hidden = true;
    const video = this.remoteVideo;
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {
      // Autoplay with sound was refused (no click on this page yet): play muted and offer
      // a button to turn the sound on.
      video.muted = true;
      video.play().catch(() => {});
      const unmute = document.getElementById("sound-button");
      if (unmute) unmute.hidden = false;
    });
  }

  // --- controls -------------------------------------------------------------------------

  _wireControls() {
    const mute = document.getElementById("mute-button");
    const camera = document.getElementById("camera-button");
    const hangup = document.getElementById("hangup-button");
    const sound = document.getElementById("sound-button");
    mute?.addEventListener("click", () => {
      const muted = mute.getAttribute("aria-pressed") !== "true";
      setTrackEnabled(this.localStream || new MediaStream(), "audio", !muted);
      mute.setAttribute("aria-pressed", String(muted));
      mute.querySelector(".label").textContent = muted ? "Unmute" : "Mute";
    });
    camera?.addEventListener("click", () => {
      const off = camera.getAttribute("aria-pressed") !== "true";
      setTrackEnabled(this.localStream || new MediaStream(), "video", !off);
      camera.setAttribute("aria-pressed", String(off));
      camera.querySelector(".label").textContent = off ? "Camera on" : "Camera off";
      document.body.classList.toggle("camera-off", off);
    });
    hangup?.addEventListener("click", () => {
      // First step of R-C1: the server answers with the dialog's confirm id.
      if (this.send({ type: "hangup_request" })) hangup.disabled = true;
      setTimeout(() => this._enableHangup(), 5000);
    });
    sound?.addEventListener("click", () => {
      this.remoteVideo.muted = false;
      this.remoteVideo.play().catch(() => {});
      sound.hidden = true;
    });
  }

  _enableHangup() {
    const hangup = document.getElementById("hangup-button");
    if (hangup) hangup.disabled = false;
  }

  _openHangupDialog(confirmId) {
    if (this._hangupDialog) this._hangupDialog.close();
    const dialog = /** @type {HTMLDialogElement} */ ($("#hangup-dialog"));
    this._enableHangup();
    // The hang-up button was disabled while waiting for the server (so it lost focus):
    // name it as the place focus returns to.
    const asked = askChoice(dialog, {
      cancelValue: "cancel",
      focus: "cancel",
      returnFocus: document.getElementById("hangup-button") || undefined,
    });
    const entry = { confirmId, close: asked.close };
    this._hangupDialog = entry;
    asked.answer.then((choice) => {
      if (this._hangupDialog === entry) this._hangupDialog = null;
      if (choice === "dismissed" || this.ended) return;
      if (!this.send({ type: "hangup_confirm", confirm_id: confirmId, choice })) return;
      if (choice === "refresh") this._restartMedia();
      if (this.hooks.onHangupAnswered) this.hooks.onHangupAnswered(choice);
    });
  }

  // --- the end --------------------------------------------------------------------------

  _finish(ended) {
    if (this.ended) return;
    this.ended = true;
    if (this._hangupDialog) this._hangupDialog.close();
    for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
    this.connection.stop("ended");
    clearInterval(this._qualityTimer);
    this.leg.close();
    clearTimeout(this._restartTimer);
    if (this.localStream) for (const track of this.localStream.getTracks()) track.stop();
    this.hooks.onEnded(ended);
  }
}
