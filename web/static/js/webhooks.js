// Settings -> Webhooks (site admins): the endpoint, its signing secret, a test event and the
// delivery log. Everything is the API's: /api/webhooks, /api/webhooks/test, /deliveries.
import { get, post, put, submitting } from "./api.js";
import { el, hasRole, announce } from "./shell.js";

const card = document.getElementById("webhooks-card");
const form = document.getElementById("webhook-form");
const logBody = document.querySelector("#webhook-log tbody");

function status(message) {
  announce(form.querySelector("[data-status]"), message);
}

function fill(endpoint) {
  form.elements.url.value = endpoint.url || "";
  form.elements.enabled.checked = endpoint.url ? endpoint.enabled : true;
  form.elements.secret.value = endpoint.secret || "";
}

async function showLog() {
  const entries = await get("/api/webhooks/deliveries");
  logBody.replaceChildren(
    ...entries.map((entry) =>
      el(
        "tr",
        {},
        el("td", { text: entry.type }),
        el("td", { text: new Date(entry.created_at).toLocaleString() }),
        el("td", { text: entry.status.replace("_", " ") }),
        el("td", { text: String(entry.attempts) }),
        el("td", { text: entry.last_error || (entry.last_status ? `HTTP ${entry.last_status}` : "") }),
      ),
    ),
  );
}

async function save(rotate) {
  const saved = await submitting(form, () =>
    put("/api/webhooks", {
      url: form.elements.url.value.trim(),
      enabled: form.elements.enabled.checked,
      rotate_secret: rotate,
    }),
  );
  if (saved) {
    fill(saved);
    status(rotate ? "New secret saved." : "Webhook saved.");
  }
}

if (hasRole("site_admin")) {
  card.hidden = false;
  fill(await get("/api/webhooks"));
  await showLog();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(false);
  });
  document.getElementById("webhook-rotate").addEventListener("click", () => save(true));
  document.getElementById("webhook-test").addEventListener("click", async () => {
    const sent = await submitting(form, () => post("/api/webhooks/test"));
    if (sent) {
      status(`Test event ${sent.webhook_id} queued.`);
      setTimeout(showLog, 1500);
    }
  });
}
