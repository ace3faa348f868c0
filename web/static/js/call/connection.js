// The call's WebSocket: hello/resume, heartbeat, and reconnecting by itself after a drop.
//
// The server numbers every message it sends on this participant's stream (`seq`). After a
// drop we reconnect with `resume {stream_id, last_seq}` and the server replays what we
// missed, or starts a new stream with a whole-state `snapshot`. Either way the page is
// never reloaded: the call goes on in the same document (R-C8).

export const PROTOCOL_VERSION = 1;

const HEARTBEAT_MS = 10_000;
// No message at all (not even a pong) for this long means the socket is dead even if the
// browser has not noticed yet (a pulled cable can take minutes to surface as a close).
const SILENCE_LIMIT_MS = 25_000;
// Reconnecting backs off exponentially with jitter: a node that refuses the socket (it
// cannot serve the call now, or is draining), or a call that moves, must not bring every
// page back at the same 250 ms beat. A socket counts as served (and the back-off starts
// again from the first step) once the server has sent it a snapshot or it stayed open
// STABLE_OPEN_MS; one closed sooner was refused, however it opened.
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 10_000;
const STABLE_OPEN_MS = 5_000;
// The server closed the socket because the staff session ended (logout, access removed).
const CLOSE_SESSION_ENDED = 4401;

// Close reasons after which reconnecting would be wrong: the call is over, or another tab
// took this participant's place.
const FINAL_CLOSE_REASONS = new Set(["ended", "abandoned", "closed", "replaced", "call_over"]);

/**
 * @typedef {{type: string, seq?: number, [key: string]: unknown}} ServerMessage
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} ConnectionState
 */

export class CallConnection {
  /**
   * @param {object} options
   * @param {(failedOpens: number) => Promise<string>} options.url  a fresh WebSocket URL per
   *   attempt (tokens expire). `failedOpens` counts attempts in a row that never opened: a
   *   refused upgrade looks like a network error to a page, so the page checks its
   *   credentials again when it grows, and throws an error with `final` set to stop.
   * @param {(message: ServerMessage) => void} options.onMessage
   * @param {(state: ConnectionState, detail?: string) => void} options.onState
   */
  constructor({ url, onMessage, onState }) {
    this._url = url;
    this._onMessage = onMessage;
    this._onState = onState;
    /** @type {WebSocket | null} */
    this._socket = null;
    this._streamId = null;
    this._lastSeq = 0;
    this._stopped = false;
    this._attempt = 0;
    this._failedOpens = 0;
    this._retryTimer = null;
    this._stableTimer = null;
    this._heartbeatTimer = null;
    this._lastHeard = 0;
    this._nonce = 0;
    this._state = "closed";
    this._online = () => {
      // The network is back: try at once instead of waiting out the back-off.
      if (!this._stopped && this._state === "reconnecting") this._connectSoon(0);
    };
    window.addEventListener("online", this._online);
  }

  get state() {
    return this._state;
  }

  start() {
    this._stopped = false;
    this._setState("connecting");
    this._connect();
  }

  /** Stop for good: no reconnect (the call ended, or the page is leaving). */
  stop(reason = "closed") {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._stableTimer);
    clearInterval(this._heartbeatTimer);
    window.removeEventListener("online", this._online);
    if (this._socket) {
      this._socket.onclose = null;
      this._socket.close(1000, reason);
      this._socket = null;
    }
    this._setState("closed", reason);
  }

  /**
   * Send one client message (the protocol version is added here). Returns false when the
   * socket is not open: the caller tells the user instead of pretending it was sent.
   * @param {{type: string, [key: string]: unknown}} message
   */
  send(message) {
    if (!this._socket || this._socket.readyState !== WebSocket.OPEN || this._state !== "open") {
      return false;
    }
    this._socket.send(JSON.stringify({ ...message, v: PROTOCOL_VERSION }));
    return true;
  }

  /** Test and diagnostics hook: drop the socket as a network failure would. */
  simulateDrop() {
    if (this._socket) this._socket.close(4000, "simulated drop");
  }

  async _connect() {
    let url;
    try {
      url = await this._url(this._failedOpens);
    } catch (error) {
      // The URL itself could not be had (e.g. the link's token endpoint refused): that is
      // an answer, not a network hiccup, unless we are offline.
      if (error && error.final) {
        this.stop("refused"); // the page has already shown why
        return;
      }
      this._scheduleRetry();
      return;
    }
    if (this._stopped) return;
    const socket = new WebSocket(url);
    this._socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this._failedOpens = 0;
      clearTimeout(this._stableTimer);
      this._stableTimer = setTimeout(() => {
        if (this._socket === socket) this._attempt = 0;
      }, STABLE_OPEN_MS);
      this._lastHeard = Date.now();
      const first =
        this._streamId !== null
          ? { type: "resume", stream_id: this._streamId, last_seq: this._lastSeq }
          : { type: "hello" };
      socket.send(JSON.stringify({ ...first, v: PROTOCOL_VERSION }));
      this._setState("open");
      this._startHeartbeat();
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => {
      clearInterval(this._heartbeatTimer);
      clearTimeout(this._stableTimer);
      if (this._socket === socket) this._socket = null;
      if (this._stopped) return;
      if (!opened) this._failedOpens += 1;
      if (event.code === CLOSE_SESSION_ENDED) {
        // Only a staff session ends so: reconnecting would be refused forever. Log in
        // again, then come back to this call.
        this.stop("session_ended");
        const next = encodeURIComponent(location.pathname + location.search);
        location.assign(`/login?next=${next}`);
        return;
      }
      if (FINAL_CLOSE_REASONS.has(event.reason)) {
        this.stop(event.reason);
        return;
      }
      this._scheduleRetry();
    };
  }

  _receive(data) {
    this._lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to show; the server only sends JSON
    }
    if (!message || typeof message.type !== "string") return;
    const seq = typeof message.seq === "number" ? message.seq : 0;
    if (message.type === "snapshot") this._attempt = 0; // served: a later drop retries fast
    if (message.type === "snapshot" && message.stream_id && message.stream_id !== this._streamId) {
      // A new stream: its snapshot is the whole truth and numbering starts again.
      this._streamId = message.stream_id;
      this._lastSeq = seq;
    } else if (seq > 0) {
      if (seq <= this._lastSeq) return; // already seen before the drop: replay overlap
      this._lastSeq = seq;
    }
    if (message.type === "pong") return;
    this._onMessage(message);
  }

  _startHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = setInterval(() => {
      if (Date.now() - this._lastHeard > SILENCE_LIMIT_MS) {
        this.simulateDrop();
        return;
      }
      this._nonce += 1;
      this.send({ type: "ping", nonce: this._nonce });
    }, HEARTBEAT_MS);
  }

  _scheduleRetry() {
    this._setState("reconnecting");
    const delay = retryDelayMs(this._attempt);
    this._attempt += 1;
    this._connectSoon(delay);
  }

  _connectSoon(delay) {
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this._socket) {
        this._socket.onclose = null;
        this._socket.close();
        this._socket = null;
      }
      this._connect();
    }, delay);
  }

  _setState(state, detail) {
    if (state === this._state && detail === undefined) return;
    this._state = state;
    this._onState(state, detail);
  }
}

/**
 * The pause before reconnect attempt `attempt` (0 = the first after a served socket):
 * exponential from RETRY_FIRST_MS up to RETRY_MAX_MS, of which a random half ("equal
 * jitter"), so pages refused together spread their retries.
 * @param {number} attempt
 * @param {() => number} [random]
 */
export function retryDelayMs(attempt, random = Math.random) {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** ws:// or wss:// URL for a path on this page's origin. */
export function socketUrl(path) {
  if (/^wss?:\/\//.test(path)) return path;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
