// Settings: organisation (name, phone shown to clients after a call, time zone), the
// reminder offset and appointment types. Everyone sees them; the server lets only a site
// admin change them, and the page reflects that by disabling the controls.
import { get, patch, post, submitting } from "./api.js";
import { el, hasRole, announce } from "./shell.js";

const isAdmin = hasRole("site_admin");
const practiceForm = document.getElementById("practice-form");
const reminderForm = document.getElementById("reminder-form");
const typesList = document.getElementById("types-list");
const newTypeForm = document.getElementById("new-type-form");

function status(form, message) {
  announce(form.querySelector("[data-status]"), message);
}

function describeMinutes(minutes) {
  if (!Number.isFinite(minutes) || minutes < 0) return "";
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  const parts = [];
  if (days) parts.push(`${days} day${days === 1 ? "" : "s"}`);
  if (hours) parts.push(`${hours} hour${hours === 1 ? "" : "s"}`);
  if (mins || !parts.length) parts.push(`${mins} minute${mins === 1 ? "" : "s"}`);
  return `That is ${parts.join(" ")} before the appointment.`;
}

function fillPractice(practice) {
  practiceForm.elements.name.value = practice.name;
  practiceForm.elements.phone.value = practice.phone || "";
  practiceForm.elements.timezone.value = practice.timezone;
  reminderForm.elements.reminder_offset_minutes.value = practice.reminder_offset_minutes;
  showReminderHint();
}

function showReminderHint() {
  const minutes = Number(reminderForm.elements.reminder_offset_minutes.value);
  reminderForm.querySelector("[data-reminder-hint]").textContent = describeMinutes(minutes);
}

function lockForNonAdmins() {
  if (isAdmin) return;
  document.getElementById("settings-readonly").hidden = false;
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = true;
  for (const control of document.querySelectorAll("#practice-form input, #reminder-form input")) {
    control.readOnly = true;
  }
}

practiceForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const phone = practiceForm.elements.phone.value.trim();
  const saved = await submitting(practiceForm, () =>
    patch("/api/practice", {
      name: practiceForm.elements.name.value.trim(),
      phone: phone === "" ? null : phone,
      timezone: practiceForm.elements.timezone.value.trim(),
    }),
  );
  if (saved) {
    fillPractice(saved);
    status(practiceForm, "Organisation saved.");
  }
});

reminderForm.elements.reminder_offset_minutes.addEventListener("input", showReminderHint);
reminderForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const raw = reminderForm.elements.reminder_offset_minutes.value;
  const saved = await submitting(reminderForm, () =>
    patch("/api/practice", { reminder_offset_minutes: raw === "" ? null : Number(raw) }),
  );
  if (saved) {
    fillPractice(saved);
    status(reminderForm, "Reminder time saved.");
  }
});

// --- appointment types ---------------------------------------------------------------

let rowCount = 0;
function labelled(labelText, control, extraClass = "") {
  control.id = `type-field-${++rowCount}`;
  return el("div", { class: `field ${extraClass}` }, el("label", { for: control.id, text: labelText }), control);
}

// One small form per type, so each is saved on its own and its errors land beside it.
function typeRow(type) {
  const form = el("form", { class: "type-row", novalidate: true, "data-type-id": type.id });
  const name = el("input", { name: "name", value: type.name, maxlength: 200, required: true });
  const duration = el("input", {
    name: "duration_minutes",
    type: "number",
    min: 5,
    max: 480,
    step: 5,
    value: type.duration_minutes,
  });
  const video = el("input", { name: "is_video", type: "checkbox", checked: type.is_video });
  const active = el("input", { name: "active", type: "checkbox", checked: type.active });
  const saved = el("p", { class: "status", role: "status", "data-status": true });
  form.append(
    el("p", { class: "form-error", "data-form-error": true, role: "alert", hidden: true }),
    labelled("Name", name, "grow"),
    labelled("Length (minutes)", duration),
    labelled("Video", video, "field-check"),
    labelled("In use", active, "field-check"),
  );
  if (type.is_video) form.classList.add("is-video");
  if (!isAdmin) {
    for (const control of [name, duration, video, active]) control.disabled = true;
    return el("li", {}, form);
  }
  form.append(el("div", { class: "actions" }, el("button", { type: "submit", class: "button", text: "Save" }), saved));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () =>
      patch(`/api/appointment-types/${type.id}`, {
        name: name.value.trim(),
        duration_minutes: Number(duration.value),
        is_video: video.checked,
        active: active.checked,
      }),
    );
    if (result) announce(saved, `Saved ${result.name}.`);
  });
  return el("li", {}, form);
}

async function loadTypes() {
  const types = await get("/api/appointment-types");
  typesList.replaceChildren(...types.map(typeRow));
}

newTypeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const created = await submitting(newTypeForm, () =>
    post("/api/appointment-types", {
      name: newTypeForm.elements.name.value.trim(),
      duration_minutes: Number(newTypeForm.elements.duration_minutes.value),
      is_video: newTypeForm.elements.is_video.checked,
    }),
  );
  if (created) {
    newTypeForm.reset();
    status(newTypeForm, `Added ${created.name}.`);
    await loadTypes();
  }
});

// Anyone's own password: the current one proves it is them. The server ends every other
// session and sets this one's new session cookies in its answer.
const ownPasswordForm = document.getElementById("own-password-form");
ownPasswordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = ownPasswordForm.elements;
  const changed = await submitting(ownPasswordForm, () =>
    post("/api/password/change", {
      current_password: f.current_password.value,
      new_password: f.new_password.value,
    }),
  );
  if (changed) {
    ownPasswordForm.reset();
    announce(
      ownPasswordForm.querySelector("[data-status]"),
      "Password changed. Your other sessions have been logged out.",
    );
  }
});

function fillTimezones() {
  const list = document.getElementById("timezones");
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  list.replaceChildren(...zones.map((zone) => el("option", { value: zone })));
}

lockForNonAdmins();
fillTimezones();
const [practice] = await Promise.all([get("/api/practice"), loadTypes()]);
fillPractice(practice);
document.body.dataset.ready = "true";
