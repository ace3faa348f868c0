// The appointment summary (R-B7): details and the client's video URL at the top, the
// communications history (sent and scheduled) below, and the move / cancel actions.
import { get, post, submitting } from "./api.js";
import { showCallAudit } from "./call-audit.js";
import { outcomeText } from "./outcome.js";
import { announce, el, formatDate, formatDateTime, formatTime, hhmm, isoDate, wallClock, zonedInstant } from "./shell.js";

const appointmentId = location.pathname.split("/").pop();
const TRIGGERS = {
  video_appointment_booked: "Booking confirmation",
  recurring_video_appointment_booked: "Series confirmation",
  appointment_reminder: "Reminder",
  appointment_cancelled: "Cancellation",
  appointment_moved: "Moved",
};
const LINK_STATES = {
  active: "Active",
  ended: "Used: the call has ended",
  abandoned: "Closed: abandoned at the waiting room",
  revoked: "Closed: the appointment was cancelled",
};

const errorNode = document.getElementById("summary-error");
const moveForm = document.getElementById("move-form");
const cancelForm = document.getElementById("cancel-form");
const rebookForm = document.getElementById("rebook-form");
let summary = null;

function stateBadge(state, text) {
  return el("span", { class: `state state-${state}`, text: text || state });
}

function renderDetails(appointment) {
  document.getElementById("summary-title").textContent = `${appointment.client_name} · ${appointment.type_name}`;
  document.getElementById("summary-when").textContent =
    `${formatDate(appointment.starts_at)}, ${formatTime(appointment.starts_at)}–${formatTime(appointment.ends_at)}`;
  const rows = [
    ["Client", appointment.client_name],
    ["Clinician", appointment.clinician_name],
    ["Type", `${appointment.type_name}${appointment.is_video ? " (video)" : ""}`],
    ["Date", formatDate(appointment.starts_at)],
    ["Time", `${formatTime(appointment.starts_at)}–${formatTime(appointment.ends_at)}`],
    ["Status", stateBadge(appointment.outcome, outcomeText(appointment))],
  ];
  if (appointment.series_position) rows.push(["Series", `Session ${appointment.series_position} of a recurring series`]);
  if (appointment.cancel_reason) rows.push(["Cancellation reason", appointment.cancel_reason]);
  document.getElementById("details").replaceChildren(
    ...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]),
  );
}

function renderLink(link, rebookedAs) {
  // A dead link is not offered for copying: the summary says why it is dead instead.
  const field = document.getElementById("video-url-field");
  const dead = document.getElementById("link-dead");
  field.hidden = !link || !link.available;
  dead.hidden = !link || link.available;
  if (!link) return;
  if (link.available) {
    document.getElementById("video-url").value = link.url;
    const badge = document.getElementById("link-state");
    badge.className = `state state-${link.state}`;
    badge.textContent = "Active";
    return;
  }
  const badge = document.getElementById("link-dead-state");
  badge.className = `state state-${link.state}`;
  badge.textContent = LINK_STATES[link.state] || "No longer available";
  document.getElementById("link-dead-reason").textContent = link.unavailable_because || "";
  document.getElementById("rebooked-as").hidden = !rebookedAs;
  if (rebookedAs) document.getElementById("rebooked-as-link").href = `/appointments/${rebookedAs}`;
}

// What the provider reported after taking the message (SMS status callbacks, email
// bounces): its own words, in the practice's.
const DELIVERY = {
  accepted: "Accepted by the provider",
  scheduled: "Accepted by the provider",
  queued: "Queued at the provider",
  sending: "Being sent",
  sent: "Sent to the phone network",
  delivered: "Delivered",
  undelivered: "Not delivered",
  failed: "Not delivered",
  canceled: "Cancelled by the provider",
  bounced: "Bounced",
};

function deliveryNote(message) {
  if (!message.delivery_status) return null;
  const words = DELIVERY[message.delivery_status] || message.delivery_status;
  const at = message.delivery_status_at ? ` (${formatDateTime(message.delivery_status_at)})` : "";
  const why = message.delivery_error && words !== "Delivered" ? `: ${message.delivery_error}` : "";
  return el("div", { class: "hint", "data-delivery": message.delivery_status, text: `${words}${at}${why}` });
}

function communicationRow(message) {
  const when = message.sent_at || message.send_at;
  let status = stateBadge(message.status, message.status[0].toUpperCase() + message.status.slice(1));
  const extra = [];
  if (message.status === "scheduled") extra.push(`due ${formatDateTime(message.send_at)}`);
  // A provider's report already says why (its note below the badge): not said twice.
  if (message.status === "failed" && message.last_error && !message.delivery_error) {
    extra.push(message.last_error);
  }
  if (message.status === "scheduled" && message.attempts > 0 && message.last_error) {
    extra.push(`retrying after: ${message.last_error}`);
  }
  if (message.status === "cancelled" && message.cancel_reason) extra.push(message.cancel_reason);
  const label = TRIGGERS[message.trigger] || message.trigger;
  return el(
    "tr",
    {
      "data-trigger": message.trigger,
      "data-status": message.status,
      "data-channel": message.channel,
      "data-delivery": message.delivery_status || "",
    },
    el("td", {}, el("time", { datetime: when, text: formatDateTime(when) })),
    el(
      "td",
      {},
      el(
        "details",
        {},
        // A subject that already says what it is ("Reminder: ...") is not labelled twice.
        el("summary", {
          text: !message.subject ? label : message.subject.startsWith(label) ? message.subject : `${label}: ${message.subject}`,
        }),
        el("div", { class: "preview-box", text: message.body }),
      ),
    ),
    el("td", { text: message.channel === "sms" ? "SMS" : "Email" }),
    el("td", { text: message.recipient }),
    el(
      "td",
      {},
      status,
      deliveryNote(message),
      extra.length ? el("div", { class: "hint", text: extra.join(" · ") }) : null,
    ),
  );
}

function renderCommunications(messages) {
  document.querySelector("#comms-table tbody").replaceChildren(...messages.map(communicationRow));
  document.getElementById("no-comms").hidden = messages.length > 0;
  document.getElementById("comms-table").hidden = messages.length === 0;
}

async function fillClinicians(selected) {
  const users = await get("/api/users");
  for (const id of ["move-clinician", "rebook-clinician"]) {
    document.getElementById(id).replaceChildren(
      ...users
        .filter((u) => u.active && u.roles.includes("clinician"))
        .map((u) => el("option", { value: u.id, text: u.name, selected: u.id === selected })),
    );
  }
}

function fillWhen(form, instant) {
  const start = wallClock(new Date(instant));
  form.elements.date.value = isoDate(start.year, start.month, start.day);
  form.elements.time.value = hhmm(start.hour, start.minute);
}

function formStartsAt(form) {
  const [year, month, day] = form.elements.date.value.split("-").map(Number);
  const [hour, minute] = form.elements.time.value.split(":").map(Number);
  return year && hour !== undefined ? zonedInstant(year, month, day, hour, minute).toISOString() : "";
}

function renderActions(appointment, link, rebookedAs) {
  // An open waiting room with nobody admitted may still be moved or cancelled (the server
  // closes it first); a call in progress, a completed or abandoned one may not (R-C9).
  const changeable = ["booked", "waiting_room_open"].includes(appointment.outcome);
  document.getElementById("change-card").hidden = !changeable;
  const rebookable = appointment.outcome === "abandoned" && !rebookedAs;
  document.getElementById("rebook-card").hidden = !rebookable;
  if (rebookable) fillWhen(rebookForm, appointment.starts_at); // default: same time (R-C7)
  const diaryLink = el("a", {
    class: "button",
    href: `/diary?${new URLSearchParams({ clinician: appointment.clinician_id, week: weekOf(appointment.starts_at) })}`,
    text: "Show in the diary",
  });
  document.getElementById("summary-actions").replaceChildren(diaryLink);
  if (!changeable) return;
  fillWhen(moveForm, appointment.starts_at);
  document.getElementById("cancel-scope").hidden = !appointment.series_id;
}

function weekOf(instant) {
  const w = wallClock(new Date(instant));
  const d = new Date(Date.UTC(w.year, w.month - 1, w.day));
  d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  return isoDate(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate());
}

async function load() {
  try {
    summary = await get(`/api/appointments/${appointmentId}/summary`);
  } catch (error) {
    errorNode.textContent = error.message;
    errorNode.hidden = false;
    return;
  }
  renderDetails(summary.appointment);
  renderLink(summary.video_link, summary.rebooked_as);
  renderCommunications(summary.communications);
  renderActions(summary.appointment, summary.video_link, summary.rebooked_as);
}

document.getElementById("copy-url").addEventListener("click", async () => {
  const input = document.getElementById("video-url");
  const status = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // No clipboard permission (e.g. plain http): select it so Ctrl+C copies.
    input.select();
    const copied = document.execCommand && document.execCommand("copy");
    if (!copied) {
      announce(status, "Press Ctrl+C to copy the selected link.");
      return;
    }
  }
  announce(status, "Link copied.");
});

moveForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { starts_at: formStartsAt(moveForm) };
  const clinician = moveForm.elements.clinician_id.value;
  if (clinician && clinician !== summary.appointment.clinician_id) body.clinician_id = clinician;
  const moved = await submitting(moveForm, () => post(`/api/appointments/${appointmentId}/move`, body));
  if (moved) {
    await load();
    announce(moveForm.querySelector("[data-status]"), "Appointment moved; its reminder moves with it.");
  }
});

rebookForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { starts_at: formStartsAt(rebookForm), clinician_id: rebookForm.elements.clinician_id.value };
  const result = await submitting(rebookForm, () => post(`/api/appointments/${appointmentId}/rebook`, body));
  if (result) location.assign(`/appointments/${result.appointments[0].id}`);
});

// Cancelling revokes the client's link: ask once more before doing it.
const cancelButton = cancelForm.querySelector("button[type=submit]");
let confirming = false;
cancelForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!confirming) {
    confirming = true;
    cancelButton.textContent = "Yes, cancel it";
    announce(
      cancelForm.querySelector("[data-status]"),
      "The client's video link will stop working. Press again to confirm.",
      "warning",
    );
    cancelButton.focus();
    return;
  }
  const reason = cancelForm.elements.reason.value.trim();
  const scope = cancelForm.querySelector("input[name=scope]:checked");
  const result = await submitting(cancelForm, () =>
    post(`/api/appointments/${appointmentId}/cancel`, {
      scope: scope ? scope.value : "this",
      reason: reason || null,
      notify_client: cancelForm.elements.notify_client.checked,
    }),
  );
  confirming = false;
  cancelButton.textContent = "Cancel appointment";
  if (result) {
    await load();
    const count = result.cancelled.length;
    const kept = result.kept.length ? ` ${result.kept.length} already held were kept.` : "";
    announce(document.getElementById("summary-status"), `Cancelled ${count} appointment${count === 1 ? "" : "s"}.${kept}`);
  }
});

await load();
if (summary) await Promise.all([fillClinicians(summary.appointment.clinician_id), showCallAudit(appointmentId)]);
document.body.dataset.ready = "true";
