// The one way the pages talk to the server: JSON in, JSON out, one error shape.
//
// Cookie sessions need the CSRF token echoed on every state-changing request; the server
// sets it in the readable `vc_csrf` cookie at login. Errors come back as
// {"error": {code, message, field}}; showError() puts the message next to that field.

import { announce } from "./notices.js";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  constructor(status, code, message, field, details, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.details = details || {};
    this.body = body || null; // the whole answer, {"error": {...}}
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "vc_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

// A page that handles a lost session itself (the call pages) passes {signInAgain: false};
// any other page goes back to the login form on a 401.
export async function api(method, path, body, { signInAgain = true } = {}) {
  const headers = { Accept: "application/json" };
  if (!SAFE_METHODS.has(method)) headers["X-CSRF-Token"] = csrfToken();
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check the connection and try again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.ok) return data;
  const error = (data && data.error) || {};
  const { code, message, field, ...details } = error;
  if (response.status === 401 && signInAgain && path !== "/api/login") {
    // The session ended (expired or logged out elsewhere): back to the login page.
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/login?next=${next}`);
  }
  throw new ApiError(response.status, code || `http_${response.status}`, readable(message, field, response.status), field, details, data);
}

// What a person reads: a sentence in plain English. A type checker's own words (they name
// JSON paths and patterns in backticks) become "check this field"; a server's lower-case
// phrase gets its capital and full stop.
export function readable(message, field, status) {
  if (!message) {
    return status >= 500
      ? "Something went wrong on the server. Try again in a moment."
      : "The request was not accepted. Check the form and try again.";
  }
  if (message.includes("`")) {
    const leaf = field ? field.split(".").pop().replace(/\[\d+\]$/, "").replace(/_/g, " ") : "";
    return leaf ? `Check the ${leaf}: it is not in the form expected.` : "The request was not in the form expected. Reload the page and try again.";
  }
  const text = message.trim();
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const patch = (path, body) => api("PATCH", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

// --- showing errors ------------------------------------------------------------------------

function fieldControl(form, field) {
  if (!field) return null;
  field = field.replace(/\[\d+\]/g, ""); // "roles[0]" is reported on the roles control
  const leaf = field.split(".").pop();
  return (
    form.querySelector(`[data-field="${CSS.escape(field)}"]`) ||
    form.querySelector(`[name="${CSS.escape(field)}"]`) ||
    form.querySelector(`[data-field="${CSS.escape(leaf)}"]`) ||
    form.querySelector(`[name="${CSS.escape(leaf)}"]`)
  );
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const node of form.querySelectorAll("[aria-invalid]")) {
    node.removeAttribute("aria-invalid");
    const described = (node.getAttribute("aria-describedby") || "")
      .split(" ")
      .filter((id) => id && !id.startsWith("err-"));
    if (described.length) node.setAttribute("aria-describedby", described.join(" "));
    else node.removeAttribute("aria-describedby");
  }
  const banner = form.querySelector("[data-form-error]");
  if (banner) {
    banner.textContent = "";
    banner.hidden = true;
  }
}

// Show an error from api() (or any Error) on a form: next to the named field when the
// form has it, else in the form's [data-form-error] banner.
export function showError(form, error) {
  clearErrors(form);
  const message = error && error.message ? error.message : String(error);
  const control = fieldControl(form, error && error.field);
  if (control) {
    const note = document.createElement("p");
    note.className = "field-error";
    note.id = `err-${control.id || control.name || Math.random().toString(36).slice(2)}`;
    note.textContent = message;
    note.setAttribute("role", "alert");
    control.setAttribute("aria-invalid", "true");
    const described = control.getAttribute("aria-describedby");
    control.setAttribute("aria-describedby", described ? `${described} ${note.id}` : note.id);
    const holder = control.closest(".field") || control.parentElement;
    holder.append(note);
    control.focus();
    return;
  }
  const banner = form.querySelector("[data-form-error]");
  if (banner) {
    banner.textContent = message;
    banner.hidden = false;
  } else {
    alert(message);
  }
}

// Run an action for a form: disables its submit button while waiting (no double
// submission) and shows any error on the form. Returns the action's result or null.
export async function submitting(form, action) {
  const buttons = form.querySelectorAll("button[type=submit]");
  for (const b of buttons) b.disabled = true;
  form.setAttribute("aria-busy", "true");
  clearErrors(form);
  // An earlier "Saved." must not stand beside this attempt's refusal.
  for (const node of form.querySelectorAll("[data-status]")) announce(node, "");
  try {
    return await action();
  } catch (error) {
    showError(form, error);
    return null;
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute("aria-busy");
  }
}
