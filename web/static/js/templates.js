// Message templates per trigger and channel, with a live preview rendered by the server
// (the same code that renders real messages), saved per practice or reset to the default.
import { api, get, post, put, submitting, clearErrors, showError } from "./api.js";
import { announce, el } from "./shell.js";

const TRIGGERS = {
  video_appointment_booked: "Video appointment booked",
  recurring_video_appointment_booked: "Recurring video appointments booked",
  appointment_reminder: "Appointment reminder",
  appointment_cancelled: "Appointment cancelled",
  appointment_moved: "Appointment moved",
};
const CHANNELS = { email: "Email", sms: "SMS" };

const nav = document.getElementById("template-nav");
const form = document.getElementById("template-form");
const subject = document.getElementById("template-subject");
const body = document.getElementById("template-body");
const enabled = document.getElementById("template-enabled");
const subjectField = document.getElementById("subject-field");
const previewSubject = document.getElementById("preview-subject");
const previewBody = document.getElementById("preview-body");
const previewError = document.getElementById("preview-error");
const statusNode = form.querySelector("[data-status]");

let templates = [];
let current = null;
let previewSerial = 0;
let previewTimer = 0;

const keyOf = (t) => `${t.trigger}/${t.channel}`;
const labelOf = (t) => `${TRIGGERS[t.trigger] || t.trigger} · ${CHANNELS[t.channel] || t.channel}`;

function renderNav() {
  nav.replaceChildren(
    ...templates.map((t) =>
      el(
        "li",
        {},
        el("button", {
          type: "button",
          "aria-current": current && keyOf(current) === keyOf(t) ? "true" : "false",
          "data-template": keyOf(t),
          text: `${labelOf(t)}${t.customised ? " (edited)" : ""}`,
          onclick: () => select(t),
        }),
      ),
    ),
  );
}

function select(template) {
  current = template;
  clearErrors(form);
  announce(statusNode, "");
  document.getElementById("template-title").textContent = labelOf(template);
  document.getElementById("template-origin").textContent = template.customised
    ? "Your practice's own wording."
    : "The default wording (not changed by your practice).";
  subjectField.hidden = template.channel !== "email";
  subject.value = template.subject;
  body.value = template.body;
  enabled.checked = template.enabled;
  document.getElementById("placeholder-list").replaceChildren(
    "Placeholders: ",
    el("span", { class: "placeholders" }, ...template.placeholders.map((p) => el("code", { text: `{${p}}` }))),
  );
  renderNav();
  refreshPreview(0);
}

function refreshPreview(delay = 300) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(async () => {
    const serial = ++previewSerial;
    try {
      const rendered = await post("/api/message-templates/preview", {
        trigger: current.trigger,
        channel: current.channel,
        subject: current.channel === "email" ? subject.value : "",
        body: body.value,
      });
      if (serial !== previewSerial) return;
      previewError.hidden = true;
      previewSubject.textContent = rendered.subject ? `Subject: ${rendered.subject}` : "";
      previewBody.textContent = rendered.body;
    } catch (error) {
      if (serial !== previewSerial) return;
      previewError.textContent = error.message;
      previewError.hidden = false;
    }
  }, delay);
}

subject.addEventListener("input", () => refreshPreview());
body.addEventListener("input", () => refreshPreview());

function replace(saved) {
  templates = templates.map((t) => (keyOf(t) === keyOf(saved) ? saved : t));
  select(saved);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const saved = await submitting(form, () =>
    put(`/api/message-templates/${current.trigger}/${current.channel}`, {
      subject: current.channel === "email" ? subject.value : "",
      body: body.value,
      enabled: enabled.checked,
    }),
  );
  if (saved) {
    replace(saved);
    announce(statusNode, "Template saved.");
  }
});

document.getElementById("reset-template").addEventListener("click", async () => {
  try {
    const fresh = await api("DELETE", `/api/message-templates/${current.trigger}/${current.channel}`);
    replace(fresh);
    announce(statusNode, "Back to the default wording.");
  } catch (error) {
    showError(form, error);
  }
});

templates = await get("/api/message-templates");
if (templates.length) select(templates[0]);
document.body.dataset.ready = "true";
