// What every screen of the clinician's call page shows above it: which client, which
// appointment (date, time, type) and the way back to the diary; once the call is over,
// the clinician's next appointment of the day.
import { get } from "../api.js";
import { formatDateIn, formatTimeIn } from "../dates.js";

const appointmentId = location.pathname.split("/")[2] || "";
const contextLine = document.getElementById("call-context");
const nextSlot = document.getElementById("next-appointment");
let zone = "Europe/London";
let appointment = null;

function dayBounds(instant) {
  // The practice's day around the appointment: at most 14 hours either side covers it.
  const at = new Date(instant).getTime();
  return [new Date(at - 14 * 3600_000), new Date(at + 14 * 3600_000)];
}

async function showNextAppointment() {
  if (!appointment || nextSlot.dataset.loaded) return;
  nextSlot.dataset.loaded = "true";
  const [from, to] = dayBounds(appointment.starts_at);
  const day = formatDateIn(zone, appointment.starts_at);
  let list = [];
  try {
    list = await get(
      `/api/appointments?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}&clinician=${appointment.clinician_id}`,
    );
  } catch {
    return; // the diary link still leads on
  }
  const next = list.find(
    (a) => a.id !== appointment.id && a.starts_at > appointment.starts_at && formatDateIn(zone, a.starts_at) === day,
  );
  nextSlot.replaceChildren();
  if (!next) {
    nextSlot.append("No more appointments today.");
  } else {
    const link = document.createElement("a");
    link.href = `/appointments/${next.id}`;
    link.id = "next-appointment-link";
    link.textContent = `${formatTimeIn(zone, next.starts_at)} ${next.client_name} (${next.type_name})`;
    nextSlot.append("Next appointment today: ", link);
  }
  nextSlot.hidden = false;
}

function watchScreens() {
  const finished = () => ["ended", "finished"].includes(document.body.dataset.screen);
  new MutationObserver(() => {
    if (finished()) showNextAppointment();
  }).observe(document.body, { attributes: true, attributeFilter: ["data-screen"] });
  if (finished()) showNextAppointment();
}

async function showContext() {
  try {
    const [practice, found] = await Promise.all([
      get("/api/practice"),
      get(`/api/appointments/${encodeURIComponent(appointmentId)}`),
    ]);
    zone = practice.timezone;
    appointment = found;
  } catch {
    return;
  }
  const when = `${formatDateIn(zone, appointment.starts_at)}, ${formatTimeIn(zone, appointment.starts_at)}–${formatTimeIn(zone, appointment.ends_at)}`;
  contextLine.replaceChildren();
  const name = document.createElement("strong");
  name.id = "context-client";
  name.textContent = appointment.client_name;
  contextLine.append(name, ` · ${when} · ${appointment.type_name}`);
  document.title = `${appointment.client_name} · Video consultation`;
  watchScreens();
}

showContext();
