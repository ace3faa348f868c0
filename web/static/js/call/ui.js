import { api } from "../api.js";

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

// The call pages talk to the server through the app's one API client. They show a lost
// session (401) and an unreachable server on their own screens, so neither redirects here
// and a network failure stays a TypeError, as fetch() reports it.
export { ApiError as ApiFailure } from "../api.js";

export async function requestJson(method, path, body) {
  try {
    return await api(method, path, body, { signInAgain: false });
  } catch (error) {
    if (error.status === 0) throw new TypeError(error.message);
    throw error;
  }
}

// Durations and balances are written by the one minutes module.
export { formatDuration, formatBalance as formatMinutes } from "../minutes-format.js";
