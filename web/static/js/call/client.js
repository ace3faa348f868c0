// The client's page behind the one-time link: device check, waiting room, the call, the
// hang-up request (R-C3) and the ended screen with the practice's phone (R-C4).
// Clients never log in: the link's token buys a short-lived token for this one call.

import { socketUrl } from "./connection.js";
import { flashNotice } from "./dialogs.js";
import { LevelMeter, openDevices } from "./media.js";
import { ADVICE, checkNetwork } from "./network_check.js";
import { levelOf } from "./quality.js";
import { CallSession } from "./session.js";
import { $, ApiFailure, requestJson, setText, showScreen } from "./ui.js";

const linkToken = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
// Re-use the call token for reconnects while it has this much life left.
const TOKEN_MARGIN_MS = 30_000;

let entry = null; // the last answer of the join endpoint
let entryFetchedAt = 0;
let localStream = null;
let meter = null;
let session = null;

class LinkClosed extends Error {
  constructor(message) {
    super(message);
    this.final = true;
  }
}

/** Exchange the link's token for a call token (again when the old one is near expiry). */
async function joinLink() {
  try {
    entry = await requestJson("POST", `/api/links/${encodeURIComponent(linkToken)}/join`, {});
    entryFetchedAt = Date.now();
    return entry;
  } catch (error) {
    if (error instanceof ApiFailure && error.status >= 400 && error.status < 500 && error.status !== 429) {
      showUnavailable(error.message);
      throw new LinkClosed(error.message);
    }
    throw error;
  }
}

function tokenStillFresh() {
  if (!entry) return false;
  const expiresAt = entry.expires_at ? entry.expires_at * 1000 : entryFetchedAt + 5 * 60_000;
  return expiresAt - Date.now() > TOKEN_MARGIN_MS;
}

async function currentSocketUrl(failedOpens) {
  // A refused socket (e.g. the call ended while we were offline) looks like a network
  // error: ask the link again, which says "no longer available" when that is the case.
  if (failedOpens > 0 || !tokenStillFresh()) await joinLink();
  return socketUrl(callSocketPath(entry));
}

/** The WebSocket path the join answer names, with the call token for authentication. */
function callSocketPath(answer) {
  // The path, not the absolute URL: the page's own origin is what the browser reached.
  const base = answer.websocket_path || answer.websocket_url;
  return `${base}${base.includes("?") ? "&" : "?"}token=${encodeURIComponent(answer.token)}`;
}

function showUnavailable(message) {
  if (session) session.ended = true;
  stopDevices();
  setText("#unavailable-title", "This call is no longer available");
  const detail = message && message !== "This call is no longer available" ? message : "";
  setText(
    "#unavailable-message",
    detail || "If you need to see your clinician, please contact the practice to rebook.",
  );
  showScreen("unavailable");
}

// --- device check -----------------------------------------------------------------------

async function checkDevices() {
  const help = $("#device-help");
  const join = /** @type {HTMLButtonElement} */ ($("#join-button"));
  help.hidden = true;
  join.disabled = true;
  stopDevices();
  try {
    localStream = await openDevices();
  } catch (problem) {
    setText("#device-help-text", problem.message);
    help.dataset.kind = problem.kind;
    help.hidden = false;
    localStream = new MediaStream();
    join.textContent = "Join without camera or microphone";
    join.disabled = false;
    runNetworkCheck();
    return;
  }
  const preview = /** @type {HTMLVideoElement} */ ($("#preview-video"));
  preview.srcObject = localStream;
  $("#preview-placeholder").hidden = localStream.getVideoTracks().length > 0;
  meter = new LevelMeter(localStream, $("#mic-level"));
  join.textContent = "Join the waiting room";
  join.disabled = false;
  join.focus();
  runNetworkCheck();
}

// --- network check ----------------------------------------------------------------------

let networkCheck = null; // the check in progress, so a retry click does not start two

/** Whether media can reach the server from here (a short test leg), and what to try. */
function runNetworkCheck() {
  if (networkCheck || !entry || !localStream) return networkCheck;
  const box = $("#network-check");
  const again = /** @type {HTMLButtonElement} */ ($("#network-check-again"));
  box.dataset.outcome = "checking";
  again.hidden = true;
  setText("#network-check-text", "Checking your connection to the practice…");
  networkCheck = checkNetwork({ linkToken, iceServers: entry.ice_servers || [], stream: localStream })
    .catch(() => ({ outcome: "unavailable", path: null, roundTripMs: null }))
    .then((result) => {
      networkCheck = null;
      if (document.body.dataset.screen !== "device-check") return;
      box.dataset.outcome = result.outcome;
      box.dataset.path = result.path || "";
      let text = ADVICE[result.outcome];
      if (result.outcome === "ok" && result.path === "relay") {
        text += " (through the practice's relay server, as your network blocks direct video).";
      }
      setText("#network-check-text", text);
      again.hidden = result.outcome === "ok";
    });
  return networkCheck;
}

function stopDevices() {
  if (meter) meter.stop();
  meter = null;
  if (localStream) for (const track of localStream.getTracks()) track.stop();
}

// --- the call ---------------------------------------------------------------------------

function startSession() {
  if (meter) meter.stop();
  meter = null;
  for (const id of ["#waiting-video", "#local-video"]) {
    /** @type {HTMLVideoElement} */ ($(id)).srcObject = localStream;
  }
  session = new CallSession({
    role: "client",
    url: currentSocketUrl,
    iceServers: (entry && entry.ice_servers) || [],
    localStream,
    hooks: {
      onSnapshot: showPhase,
      onPresence: (role, present) => {
        if (role === "clinician") showClinicianPresence(present);
      },
      onEnded: showEnded,
      onMessage: (message) => {
        if (message.type === "end_request_cancelled") {
          $("#end-pending").hidden = true;
          flashNotice($("#carry-on-notice"), message.message || "Your clinician would like to carry on with the call.");
        }
      },
      onHangupAnswered: (choice) => {
        // R-C3: our End Call only asks; the clinician decides.
        if (choice === "end") $("#end-pending").hidden = false;
      },
      onQuality: showOwnConnection,
    },
  });
  session.start();
}

function showPhase(snapshot) {
  const clinicianHere = snapshot.present.includes("clinician");
  if (snapshot.phase === "in_progress") {
    if (document.body.dataset.screen !== "call") showScreen("call");
    $("#end-pending").hidden = !snapshot.end_request_pending;
    $("#other-away").hidden = clinicianHere;
  } else {
    if (document.body.dataset.screen !== "waiting") showScreen("waiting");
    showClinicianPresence(clinicianHere);
  }
}

// Two poor samples in a row (about 6 s) before the notice shows, one better one hides it:
// a single lost burst is not worth worrying someone about.
const POOR_SAMPLES_BEFORE_NOTICE = 2;
let poorSamples = 0;

/** A gentle notice when the client's own connection is poor (the server measures it). */
function showOwnConnection(stats) {
  if (stats.role !== "client") return;
  const level = levelOf(stats);
  poorSamples = level === "poor" ? poorSamples + 1 : 0;
  const notice = $("#connection-notice");
  notice.dataset.level = level;
  if (level === "poor" && poorSamples >= POOR_SAMPLES_BEFORE_NOTICE) notice.hidden = false;
  else if (level === "good" || level === "fair") notice.hidden = true;
}

function showClinicianPresence(present) {
  const line = $("#clinician-presence");
  line.dataset.present = String(present);
  line.textContent = present
    ? "Your clinician is here and will let you in shortly."
    : "Your clinician has not joined yet.";
  if (session && session.phase === "in_progress") $("#other-away").hidden = present;
}

function showEnded(ended) {
  stopDevices();
  if (ended.reason === "call_over") {
    // The call was already over when we connected (R-C6).
    showUnavailable(ended.title);
    return;
  }
  setText("#ended-title", ended.title || "Your appointment has ended");
  setText("#ended-message", ended.message || "");
  const phone = ended.practice_phone;
  $("#ended-phone").hidden = !phone;
  if (phone) {
    const link = /** @type {HTMLAnchorElement} */ ($("#ended-phone-link"));
    link.textContent = phone;
    link.href = `tel:${phone.replace(/[^+\d]/g, "")}`;
  }
  showScreen("ended");
}

// --- start ------------------------------------------------------------------------------

async function main() {
  try {
    const answer = await joinLink();
    const parts = [answer.practice_name, answer.clinician_name && `with ${answer.clinician_name}`];
    setText("#appointment-summary", parts.filter(Boolean).join(" "));
  } catch (error) {
    if (!(error instanceof LinkClosed)) {
      setText("#unavailable-title", "We could not reach the server");
      setText("#unavailable-message", "Check your internet connection, then reload this page.");
      showScreen("unavailable");
    }
    return;
  }
  showScreen("device-check");
  $("#device-retry").addEventListener("click", checkDevices);
  $("#network-check-again").addEventListener("click", runNetworkCheck);
  $("#join-button").addEventListener("click", (event) => {
    /** @type {HTMLButtonElement} */ (event.currentTarget).disabled = true;
    startSession();
  }, { once: true });
  await checkDevices();
}

main();
