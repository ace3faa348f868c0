// What every signed-in page shares: who is looking (boot data rendered by the server),
// log out, and formatting in the practice's time zone.
import { post } from "./api.js";
import { formatDateIn, formatTimeIn } from "./dates.js";

export const boot = JSON.parse(document.getElementById("vc-boot").textContent);
export const user = boot.user;
export const practice = boot.practice;
export const timeZone = practice.timezone;

export function hasRole(role) {
  return user.roles.includes(role);
}

const logoutButton = document.getElementById("logout");
if (logoutButton) {
  logoutButton.addEventListener("click", async () => {
    logoutButton.disabled = true;
    try {
      await post("/api/logout");
    } finally {
      location.assign("/login");
    }
  });
}

// --- time in the practice's zone --------------------------------------------------------

const partsCache = new Map();
function partsFormatter(zone) {
  if (!partsCache.has(zone)) {
    partsCache.set(
      zone,
      new Intl.DateTimeFormat("en-GB", {
        timeZone: zone,
        hourCycle: "h23",
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
      }),
    );
  }
  return partsCache.get(zone);
}

// The wall-clock reading of an instant in a zone: {year, month, day, hour, minute}.
export function wallClock(instant, zone = timeZone) {
  const out = {};
  for (const p of partsFormatter(zone).formatToParts(instant)) {
    if (p.type !== "literal") out[p.type] = Number(p.value);
  }
  return out;
}

// The instant at a wall-clock time in a zone (DST-aware: the offset is read at that time).
export function zonedInstant(year, month, day, hour, minute, zone = timeZone) {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute);
  let guess = asUtc;
  for (let i = 0; i < 3; i++) {
    const w = wallClock(new Date(guess), zone);
    const seen = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute);
    const diff = asUtc - seen;
    if (diff === 0) break;
    guess += diff;
  }
  return new Date(guess);
}

const pad = (n) => String(n).padStart(2, "0");
export const isoDate = (y, m, d) => `${y}-${pad(m)}-${pad(d)}`;
export const hhmm = (h, m) => `${pad(h)}:${pad(m)}`;
/** A calendar day ({year, month, day}: no instant, so no time zone) the practice's way. */
export function formatCalendarDay(date, options) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", ...options }).format(new Date(Date.UTC(date.year, date.month - 1, date.day)));
}

/** "2026-12-15" (a date input's value) as {year, month, day}; anything else is null. */
export function parseIsoDate(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
  return match ? { year: +match[1], month: +match[2], day: +match[3] } : null;
}

// A calendar day (YYYY-MM-DD, no time zone: a date of birth) as the practice writes it.
export function formatDay(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
  return m ? `${m[3]}/${m[2]}/${m[1]}` : "";
}

// "15/03/1984" (or "1984-03-15") as YYYY-MM-DD when it is a real day; null otherwise.
export function parseDay(text) {
  const gb = /^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$/.exec(text.trim());
  const iso = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  const [y, m, d] = gb ? [+gb[3], +gb[2], +gb[1]] : iso ? [+iso[1], +iso[2], +iso[3]] : [0, 0, 0];
  const day = new Date(Date.UTC(y, m - 1, d));
  if (!y || day.getUTCFullYear() !== y || day.getUTCMonth() !== m - 1 || day.getUTCDate() !== d) return null;
  return isoDate(y, m, d);
}

export function formatDateTime(value, options = {}) {
  return new Intl.DateTimeFormat("en-GB", {
    timeZone,
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    ...options,
  }).format(new Date(value));
}

export function formatTime(value) {
  return formatTimeIn(timeZone, value);
}

export function formatDate(value, options = {}) {
  return formatDateIn(timeZone, value, options);
}

// Small DOM builder: el("p", {class: "x", text: "hi"}, child...). Text is never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export { announce } from "./notices.js";
