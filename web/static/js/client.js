// One client: change their details; their appointments, newest first, with outcomes.
import { get, patch, submitting } from "./api.js";
import { clientBody, clientFields } from "./client-form.js";
import { outcomeText } from "./outcome.js";
import { announce, el, formatDate, formatTime } from "./shell.js";

const clientId = location.pathname.split("/").pop();
const form = document.getElementById("client-form");
const title = document.getElementById("client-title");
const saved = form.querySelector("[data-status]");

function showClient(client) {
  title.textContent = client.name;
  document.title = document.title.replace(/^[^·]*/, `${client.name} `);
  const holder = form.querySelector("[data-client-fields]") || form.querySelector(".client-fields");
  const fields = el("div", { class: "client-fields stack" }, clientFields(client));
  holder.replaceWith(fields);
}

function showAppointments(list) {
  document.getElementById("history-empty").hidden = list.length > 0;
  document.getElementById("client-appointments").hidden = list.length === 0;
  document.querySelector("#client-appointments tbody").replaceChildren(
    ...list.map((a) =>
      el(
        "tr",
        { "data-appointment-id": a.id },
        el("th", { scope: "row" }, el("a", { href: `/appointments/${a.id}`, text: formatDate(a.starts_at) })),
        el("td", { text: `${formatTime(a.starts_at)}–${formatTime(a.ends_at)}` }),
        el("td", { text: `${a.type_name}${a.is_video ? " (video)" : ""}` }),
        el("td", { text: a.clinician_name }),
        el("td", {}, el("span", { class: `state state-${a.outcome}`, text: outcomeText(a) })),
      ),
    ),
  );
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  announce(saved, "");
  const updated = await submitting(form, () => patch(`/api/clients/${clientId}`, clientBody(form)));
  if (updated) {
    showClient(updated);
    announce(saved, `Saved the details of ${updated.name}.`);
  }
});

async function load() {
  try {
    const [client, list] = await Promise.all([
      get(`/api/clients/${clientId}`),
      get(`/api/clients/${clientId}/appointments`),
    ]);
    showClient(client);
    showAppointments(list);
    if (new URLSearchParams(location.search).has("added")) announce(saved, `Added ${client.name}.`);
  } catch (error) {
    announce(document.getElementById("client-error"), error.message);
  }
}
load();
