// Small helpers shared by the client and clinician call pages: screens, JSON requests,
// and how durations are written.

/** Show `main > [data-screen=NAME]` and hide the others; focus its heading. */
export function showScreen(name) {
  let shown = null;
  for (const section of document.querySelectorAll("main > [data-screen]")) {
    const match = section.dataset.screen === name;
    section.hidden = !match;
    if (match) shown = section;
  }
  document.body.dataset.screen = name;
  // Moving focus to the new heading tells screen-reader users the page changed.
  const heading = shown && shown.querySelector("h1, h2");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  return shown;
}

export function $(selector, root = document) {
  const element = root.querySelector(selector);
  if (!element) throw new Error(`missing element ${selector}`);
  return element;
}

export function setText(selector, text, root = document) {
  $(selector, root).textContent = text;
}

/** An error answer from our API: `{"error": {"code", "message", "field"}}`. */
export class ApiFailure extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)vc_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/**
 * POST/GET JSON to our API with the staff session cookie (and its CSRF header).
 * Resolves with the decoded body; rejects with ApiFailure for any 4xx/5xx, or a
 * TypeError when the network is down.
 */
export async function requestJson(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const csrf = csrfToken();
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiFailure(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `The server answered ${response.status}.`,
      data,
    );
  }
  return data;
}

// Durations and balances are written by the one minutes module.
export { formatDuration, formatBalance as formatMinutes } from "../minutes-format.js";
