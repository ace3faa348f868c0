// How the practice writes dates and times (en-GB: "Tuesday 15 December 2026", "11:00"),
// in a given time zone, whatever the browser's own locale. The signed-in pages get their
// zone from the boot data (shell.js); the call pages from the appointment's practice.
export const PRACTICE_LOCALE = "en-GB";

export function formatDateIn(zone, value, options = {}) {
  return new Intl.DateTimeFormat(PRACTICE_LOCALE, {
    timeZone: zone,
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
    ...options,
  }).format(new Date(value));
}

export function formatTimeIn(zone, value) {
  return new Intl.DateTimeFormat(PRACTICE_LOCALE, {
    timeZone: zone,
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).format(new Date(value));
}
