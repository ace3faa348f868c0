// The clinician's call page, opened by "Switch to Video" (R-B8): the pre-call check
// (R-M7), the waiting room with Admit and Abandon (R-C7), the call with its quality and
// duration, the hang-up dialog (R-C1, R-C2), the client's end request (R-C3) and the
// ended screens (R-C4, R-C6).
//
// The page lives at /appointments/{id}/video. Opening it (again) asks the server to start
// the video: an open call comes back as it is, a finished one as "Appointment has already
// finished", so reloading or re-opening the page is always safe.

import { socketUrl } from "./connection.js";
import { askChoice } from "./dialogs.js";
import { LevelMeter, openDevices } from "./media.js";
import { LEVEL_ORDER, describe, levelOf } from "./quality.js";
import { CallSession } from "./session.js";
import { buyBundle, listBundles, purchaseOutcome, purchaseQuestion } from "../minutes-purchase.js";
import { $, ApiFailure, formatDuration, requestJson, setText, showScreen } from "./ui.js";

const appointmentId = location.pathname.split("/")[2] || "";

let started = null; // the start answer: call_id, websocket_path, ...
let session = null;
let localStream = null;
let meter = null;
let callStartedAt = null;
let durationTimer = null;
let clientEndRequest = null; // {requestId, close}

// --- Switch to Video and the pre-call check ---------------------------------------------

async function startVideo(goAhead = false) {
  showScreen("loading");
  try {
    started = await requestJson(
      "POST",
      `/api/appointments/${encodeURIComponent(appointmentId)}/video/start`,
      goAhead ? { go_ahead: true } : {},
    );
  } catch (error) {
    showStartRefusal(error);
    return;
  }
  await enterWaitingRoom();
}

function showStartRefusal(error) {
  if (!(error instanceof ApiFailure)) {
    showProblem("We could not reach the server", "Check your connection, then reload this page.");
    return;
  }
  const detail = (error.body && error.body.error) || {};
  if (error.code === "minutes_exhausted") {
    showPrecall("blocked", detail.precall, error.message);
  } else if (error.code === "go_ahead_required") {
    showPrecall("warning", detail.precall, error.message);
  } else if (error.code === "too_early") {
    // R-C9: the waiting room opens a set time before the appointment (the server names when).
    showProblem("The waiting room is not open yet", `${error.message}.`);
  } else if (error.code === "call_finished") {
    setText("#finished-title", error.message || "Appointment has already finished");
    showScreen("finished");
  } else if (error.status === 401) {
    const login = /** @type {HTMLAnchorElement} */ ($("#problem-login"));
    login.href = `/login?next=${encodeURIComponent(location.pathname)}`;
    login.hidden = false;
    showProblem("Please log in again", "Your session has ended.");
  } else {
    showProblem("The video consultation could not start", error.message);
  }
}

function showProblem(title, message) {
  setText("#problem-title", title);
  setText("#problem-message", message);
  showScreen("problem");
}

/** R-M7: "blocked" (balance at or below zero) or "warning" (not enough for the length). */
function showPrecall(screen, precall, message) {
  const section = showScreen(screen);
  setText(`#${screen}-message`, message || (precall && precall.message) || "");
  setText(`#${screen}-balance`, precall ? precall.balance_display : "");
  const slot = section.querySelector(".bundles-slot");
  slot.replaceChildren();
  // A site admin may buy right here; everyone else sees the message only (R-M3).
  if (precall && precall.can_buy) {
    slot.append(bundleOffer(precall.bundles && precall.bundles.length ? precall.bundles : null));
  }
}

function bundleOffer(bundles) {
  const offer = /** @type {HTMLTemplateElement} */ ($("#bundles-template")).content.firstElementChild.cloneNode(true);
  const list = offer.querySelector(".bundles__list");
  const status = offer.querySelector(".bundles__status");
  const fill = (items) => {
    for (const bundle of items) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button bundle";
      button.dataset.minutes = String(bundle.minutes);
      button.textContent = `Buy ${bundle.label}`;
      button.addEventListener("click", () => buyFromOffer(bundle, button, status));
      item.append(button);
      list.append(item);
    }
  };
  if (bundles) fill(bundles);
  else {
    listBundles({ signInAgain: false })
      .then((answer) => fill(answer.bundles))
      .catch((error) => (status.textContent = error.message));
  }
  return offer;
}

async function buyFromOffer(bundle, button, status) {
  // Price, VAT and total are shown before the purchase (R-M2); the purchase itself is the
  // minutes dashboard's (minutes-purchase.js): same key per attempt, same PayPal hand-off.
  setText("#purchase-text", purchaseQuestion(bundle.label));
  const choice = await askChoice(/** @type {HTMLDialogElement} */ ($("#purchase-dialog")), { focus: "buy" }).answer;
  if (choice !== "buy") return;
  button.disabled = true;
  status.textContent = "Buying…";
  try {
    const reply = await buyBundle(bundle.minutes, { signInAgain: false });
    status.textContent = purchaseOutcome(reply).text;
    if (reply.purchase.status === "credited") setTimeout(() => startVideo(false), 600);
  } catch (error) {
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

// --- waiting room -----------------------------------------------------------------------

async function enterWaitingRoom() {
  showScreen("waiting");
  await prepareDevices();
  for (const id of ["#waiting-video", "#local-video"]) {
    /** @type {HTMLVideoElement} */ ($(id)).srcObject = localStream;
  }
  if (session) return;
  session = new CallSession({
    role: "clinician",
    url: socketPathChecked,
    iceServers: started.ice_servers || [],
    localStream,
    hooks: {
      onSnapshot: showPhase,
      onPresence: (role, present) => {
        if (role === "client") showClientPresence(present);
        if (role === "client" && !present && qualityByRole.client) {
          // Gone from the call: no figures from before they left.
          showQuality({ role: "client", level: "absent" });
        }
      },
      onEnded: showEnded,
      onMessage: (message) => {
        if (message.type === "client_wants_to_end") askAboutClientEnd(message.request_id);
      },
      onQuality: showQuality,
    },
  });
  session.start();
}

/** The call socket's URL; after refused attempts, first check the session still holds. */
async function socketPathChecked(failedOpens) {
  if (failedOpens >= 2) {
    try {
      await requestJson("GET", "/api/me");
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 401) {
        showStartRefusal(error);
        throw Object.assign(new Error(error.message), { final: true });
      }
      throw error;
    }
  }
  return socketUrl(started.websocket_path || `/ws/appointments/${appointmentId}/call`);
}

async function prepareDevices() {
  if (localStream) return;
  const help = $("#device-help");
  help.hidden = true;
  try {
    localStream = await openDevices();
    meter = new LevelMeter(localStream, $("#mic-level"));
  } catch (problem) {
    setText("#device-help-text", problem.message);
    help.hidden = false;
    localStream = new MediaStream();
  }
}

function showPhase(snapshot) {
  const clientHere = snapshot.present.includes("client");
  if (snapshot.phase === "in_progress") {
    if (document.body.dataset.screen !== "call") {
      showScreen("call");
      if (meter) meter.stop();
      meter = null;
      startDurationClock(snapshot.started_at);
    } else if (snapshot.started_at) {
      startDurationClock(snapshot.started_at); // a later snapshot (reconnect) knows the start
    }
    $("#other-away").hidden = clientHere;
    // Reconnected while the client's request was open: ask again (R-C3).
    if (snapshot.end_request_id && (!clientEndRequest || clientEndRequest.requestId !== snapshot.end_request_id)) {
      askAboutClientEnd(snapshot.end_request_id);
    } else if (!snapshot.end_request_id && clientEndRequest) {
      clientEndRequest.close();
    }
  } else {
    if (document.body.dataset.screen !== "waiting") showScreen("waiting");
    showClientPresence(clientHere);
  }
}

function showClientPresence(present) {
  const line = $("#client-presence");
  line.dataset.present = String(present);
  line.textContent = present ? "The client is in the waiting room." : "The client has not arrived yet.";
  /** @type {HTMLButtonElement} */ ($("#admit-button")).disabled = !present;
  if (session && session.phase === "in_progress") $("#other-away").hidden = present;
}

function wireWaitingRoom() {
  $("#admit-button").addEventListener("click", (event) => {
    const button = /** @type {HTMLButtonElement} */ (event.currentTarget);
    if (session && session.send({ type: "admit" })) button.disabled = true; // no double admit
  });
  $("#abandon-button").addEventListener("click", async () => {
    // R-C7: say plainly that the link dies, and make Cancel the easy answer.
    const choice = await askChoice(/** @type {HTMLDialogElement} */ ($("#abandon-dialog"))).answer;
    if (choice === "abandon" && session) session.send({ type: "abandon" });
  });
  $("#close-room-button").addEventListener("click", async (event) => {
    // R-C9: not Abandon. No call took place and the client's link keeps working.
    const button = /** @type {HTMLButtonElement} */ (event.currentTarget);
    button.disabled = true;
    try {
      await requestJson("POST", `/api/appointments/${encodeURIComponent(appointmentId)}/video/close`, {});
      // The server's call_ended (reason "closed") shows the screen; without a socket, say so.
      if (!session || session.ended) showEnded({ reason: "closed", title: "Waiting room closed", message: "No call took place. The client's link still works." });
    } catch (error) {
      button.disabled = false;
      setText("#close-room-status", error.message);
    }
  });
  $("#go-ahead-button").addEventListener("click", () => startVideo(true));
  for (const button of document.querySelectorAll("[data-action=retry-start]")) {
    button.addEventListener("click", () => startVideo(false));
  }
  for (const button of document.querySelectorAll("[data-action=close-page]")) {
    button.addEventListener("click", () => {
      if (history.length > 1) history.back();
      else location.assign("/diary");
    });
  }
}

// --- in the call ------------------------------------------------------------------------

/** @param {string | null | undefined} startedAt the server's start of the call (ISO 8601, UTC) */
function startDurationClock(startedAt) {
  // The server's start, when it says, so a page re-opened mid-call shows the real length.
  const fromServer = startedAt ? Date.parse(startedAt) : NaN;
  callStartedAt = Number.isFinite(fromServer) ? fromServer : callStartedAt || Date.now();
  clearInterval(durationTimer);
  const tick = () => setText("#call-duration", formatDuration(Math.max(0, Date.now() - callStartedAt) / 1000));
  tick();
  durationTimer = setInterval(tick, 1000);
}

function askAboutClientEnd(requestId) {
  if (clientEndRequest) clientEndRequest.close();
  const asked = askChoice(/** @type {HTMLDialogElement} */ ($("#client-end-dialog")), { focus: "cancel" });
  const entry = { requestId, close: asked.close };
  clientEndRequest = entry;
  asked.answer.then((decision) => {
    if (clientEndRequest === entry) clientEndRequest = null;
    if (decision === "dismissed" || !session || session.ended) return;
    session.send({ type: "end_request_decision", request_id: requestId, decision });
  });
}

const qualityByRole = {}; // role -> {level, text}

/**
 * Good / fair / poor for each side's connection, from the server's quality_stats (its
 * media legs measure both directions of both links, and say "reconnecting" when a side's
 * media stops), or from this browser's own stats when the server sends none. The dot
 * shows the worse of the two. A client who has left shows "Not connected", never their
 * last figures.
 */
function showQuality(stats) {
  qualityByRole[stats.role] = { level: levelOf(stats), text: describe(stats) };
  renderQuality(stats.source || "server");
}

function renderQuality(source) {
  const worst = Object.values(qualityByRole).reduce(
    (a, b) => (LEVEL_ORDER.indexOf(b.level) > LEVEL_ORDER.indexOf(a) ? b.level : a),
    "good",
  );
  const lines = [];
  if (qualityByRole.clinician) lines.push(`You: ${qualityByRole.clinician.text}`);
  if (qualityByRole.client) lines.push(`Client: ${qualityByRole.client.text}`);
  const quality = $("#quality");
  quality.dataset.level = worst;
  if (source) quality.dataset.source = source;
  quality.dataset.client = qualityByRole.client ? qualityByRole.client.level : "unknown";
  quality.textContent = `Connection — ${lines.join(" · ")}`;
}

function showEnded(ended) {
  clearInterval(durationTimer);
  if (meter) meter.stop();
  if (ended.reason === "call_over") {
    setText("#finished-title", ended.title || "Appointment has already finished");
    showScreen("finished");
    return;
  }
  setText("#ended-title", ended.title || "Appointment has ended");
  setText("#ended-message", ended.message || "");
  setText(
    "#ended-duration",
    callStartedAt ? `Call length: ${formatDuration((Date.now() - callStartedAt) / 1000)}` : "",
  );
  showScreen("ended");
}

wireWaitingRoom();
startVideo(false);
