// The diary: one clinician's week in the practice's time zone. A free slot opens the
// appointment modal to book; an appointment opens the same modal to view, move or start
// its video call.
import { get } from "./api.js";
import { createAppointmentModal } from "./modal.js";
import { outcomeText } from "./outcome.js";
import { el, formatCalendarDay as dayLabel, formatTime, hhmm, isoDate, parseIsoDate as parseDate, user, wallClock, zonedInstant } from "./shell.js";

const DAY_START_HOUR = 7;
const DAY_END_HOUR = 20;
const SLOT_MINUTES = 30;
const SLOTS = ((DAY_END_HOUR - DAY_START_HOUR) * 60) / SLOT_MINUTES;

const weekNode = document.getElementById("week");
const weekLabel = document.getElementById("week-label");
const errorNode = document.getElementById("diary-error");
const clinicianSelect = document.getElementById("clinician-select");

// Calendar dates as plain {year, month, day}, moved with UTC arithmetic (no zone involved).
function addDays({ year, month, day }, days) {
  const d = new Date(Date.UTC(year, month - 1, day + days));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}
function mondayOf(date) {
  const weekday = (new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay() + 6) % 7;
  return addDays(date, -weekday);
}
const dateKey = (d) => isoDate(d.year, d.month, d.day);

const params = new URLSearchParams(location.search);
const today = wallClock(new Date());
const state = {
  monday: mondayOf(parseDate(params.get("week")) || today),
  clinicianId: params.get("clinician") || "",
  clinicians: [],
  types: [],
};


function showError(message) {
  errorNode.textContent = message;
  errorNode.hidden = !message;
}

function remember() {
  const query = new URLSearchParams({ clinician: state.clinicianId, week: dateKey(state.monday) });
  history.replaceState(null, "", `/diary?${query}`);
}

function slotButton(date, slotIndex, now) {
  const minutes = DAY_START_HOUR * 60 + slotIndex * SLOT_MINUTES;
  const hour = Math.floor(minutes / 60);
  const minute = minutes % 60;
  const time = hhmm(hour, minute);
  const instant = zonedInstant(date.year, date.month, date.day, hour, minute);
  const past = instant.getTime() + SLOT_MINUTES * 60000 <= now;
  const label = `${dayLabel(date, { weekday: "long", day: "numeric", month: "long" })} at ${time}`;
  if (past) {
    return el("div", { class: `slot past${minute === 30 ? " on-hour" : ""}`, "aria-hidden": "true" });
  }
  return el("button", {
    type: "button",
    class: `slot${minute === 30 ? " on-hour" : ""}`,
    "data-date": dateKey(date),
    "data-time": time,
    "aria-label": `Book ${label}`,
    text: time,
    onclick: (event) =>
      modal.openNew({ clinicianId: state.clinicianId, date: dateKey(date), time }, event.currentTarget),
  });
}

function appointmentButton(appointment, dayStartMinutes) {
  const start = wallClock(new Date(appointment.starts_at));
  const durationMinutes = (new Date(appointment.ends_at) - new Date(appointment.starts_at)) / 60000;
  const fromTop = start.hour * 60 + start.minute - dayStartMinutes;
  const top = Math.max(0, fromTop) / SLOT_MINUTES;
  const height = Math.max(0.8, Math.min(durationMinutes, SLOTS * SLOT_MINUTES - Math.max(0, fromTop)) / SLOT_MINUTES);
  const times = `${formatTime(appointment.starts_at)}–${formatTime(appointment.ends_at)}`;
  const kind = appointment.is_video ? "video appointment" : "appointment";
  const series = appointment.series_position ? `, session ${appointment.series_position} of a series` : "";
  const outcome = outcomeText(appointment);
  const button = el(
    "button",
    {
      type: "button",
      class: `appt${appointment.is_video ? " video" : ""} outcome-${appointment.outcome}`,
      "data-appointment-id": appointment.id,
      "data-outcome": appointment.outcome,
      title: outcome,
      "aria-label": `${times} ${appointment.client_name}, ${appointment.type_name} (${kind}${series}): ${outcome}`,
      onclick: (event) => modal.openExisting(appointment, event.currentTarget),
    },
    el("strong", { text: `${times} ${appointment.client_name}` }),
    // Past "booked", the outcome says more than the type (which the label still names).
    appointment.outcome === "booked"
      ? appointment.type_name
      : el("span", { class: `state state-${appointment.outcome}`, text: outcome }),
  );
  button.style.top = `calc(var(--slot-height) * ${top})`;
  button.style.height = `calc(var(--slot-height) * ${height} - 2px)`;
  return button;
}

async function renderWeek() {
  const days = Array.from({ length: 7 }, (_, i) => addDays(state.monday, i));
  const sunday = days[6];
  weekLabel.textContent = `Week of ${dayLabel(state.monday, { day: "numeric", month: "long" })} – ${dayLabel(sunday, { day: "numeric", month: "long", year: "numeric" })}`;
  remember();
  if (!state.clinicianId) {
    weekNode.replaceChildren(el("p", { class: "muted", text: "The practice has no clinicians yet." }));
    return;
  }
  let appointments = [];
  try {
    const query = new URLSearchParams({
      from: dateKey(state.monday),
      to: dateKey(addDays(state.monday, 7)),
      clinician: state.clinicianId,
      // Every outcome is shown, cancelled ones too (struck through): R-C10.
      include_cancelled: "true",
    });
    appointments = await get(`/api/appointments?${query}`);
    showError("");
  } catch (error) {
    showError(error.message);
  }
  const now = Date.now();
  const byDay = new Map(days.map((d) => [dateKey(d), []]));
  for (const appointment of appointments) {
    const start = wallClock(new Date(appointment.starts_at));
    const key = isoDate(start.year, start.month, start.day);
    if (byDay.has(key)) byDay.get(key).push(appointment);
  }
  const todayKey = dateKey(today);
  const cells = [el("div", { class: "week-head", "aria-hidden": "true" })];
  for (const d of days) {
    cells.push(
      el("div", {
        class: `week-head${dateKey(d) === todayKey ? " today" : ""}`,
        text: dayLabel(d, { weekday: "short", day: "numeric", month: "short" }),
        "data-day-head": dateKey(d),
      }),
    );
  }
  const hours = el("div", { class: "hours", "aria-hidden": "true" });
  for (let i = 0; i < SLOTS; i++) {
    const minutes = DAY_START_HOUR * 60 + i * SLOT_MINUTES;
    hours.append(el("div", { class: "hour-label", text: minutes % 60 === 0 ? hhmm(minutes / 60, 0) : "" }));
  }
  cells.push(hours);
  for (const d of days) {
    const column = el("div", {
      class: "day",
      role: "group",
      "aria-label": dayLabel(d, { weekday: "long", day: "numeric", month: "long" }),
      "data-day": dateKey(d),
    });
    // Appointments first: in keyboard order a day's bookings come before its free slots.
    for (const appointment of byDay.get(dateKey(d))) {
      column.append(appointmentButton(appointment, DAY_START_HOUR * 60));
    }
    for (let i = 0; i < SLOTS; i++) column.append(slotButton(d, i, now));
    cells.push(column);
  }
  weekNode.replaceChildren(...cells);
  weekNode.dataset.loaded = dateKey(state.monday);
}

function moveWeek(weeks) {
  state.monday = addDays(state.monday, weeks * 7);
  renderWeek();
}

document.getElementById("prev-week").addEventListener("click", () => moveWeek(-1));
document.getElementById("next-week").addEventListener("click", () => moveWeek(1));
document.getElementById("this-week").addEventListener("click", () => {
  state.monday = mondayOf(today);
  renderWeek();
});
clinicianSelect.addEventListener("change", () => {
  state.clinicianId = clinicianSelect.value;
  renderWeek();
});

const [users, types] = await Promise.all([get("/api/users"), get("/api/appointment-types")]);
state.clinicians = users.filter((u) => u.active && u.roles.includes("clinician"));
state.types = types.filter((t) => t.active);
if (!state.clinicians.some((c) => c.id === state.clinicianId)) {
  const mine = state.clinicians.find((c) => c.id === user.id);
  state.clinicianId = (mine || state.clinicians[0] || { id: "" }).id;
}
clinicianSelect.replaceChildren(
  ...state.clinicians.map((c) => el("option", { value: c.id, text: c.name, selected: c.id === state.clinicianId })),
);

const modal = createAppointmentModal({
  clinicians: state.clinicians,
  types: state.types,
  onChanged: async (message) => {
    await renderWeek();
    if (message) weekLabel.textContent = `${weekLabel.textContent}. ${message}`;
  },
});

await renderWeek();
document.body.dataset.ready = "true";
