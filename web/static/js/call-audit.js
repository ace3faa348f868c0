// A call's audit trail on its appointment's summary: who did what, when (every transition
// of the appointment's calls, oldest first, as the server logged it).
import { get } from "./api.js";
import { el, formatDateTime } from "./shell.js";

const WHAT = {
  waiting_room_open: "Opened the waiting room",
  in_progress: "Admitted the client: the call started",
  ended: "Ended the call",
  abandoned: "Abandoned the appointment",
  closed: "Closed the waiting room",
};

function who(entry) {
  if (entry.actor_kind === "system") return "The system";
  return entry.actor_name || (entry.actor_kind === "client" ? "The client" : "The clinician");
}

function why(reason) {
  return reason ? reason.charAt(0).toUpperCase() + reason.slice(1).replace(/_/g, " ") : "";
}

export async function showCallAudit(appointmentId) {
  const card = document.getElementById("audit-card");
  if (!card) return;
  let answer;
  try {
    answer = await get(`/api/appointments/${appointmentId}/audit`);
  } catch {
    return; // the rest of the summary stands without it
  }
  const rows = answer.entries.map((entry) =>
    el(
      "tr",
      { "data-to-state": entry.to_state },
      el("td", {}, el("time", { datetime: entry.at, text: formatDateTime(entry.at) })),
      el("td", { text: who(entry) }),
      el("td", { text: WHAT[entry.to_state] || `Moved the call to ${entry.to_state.replace(/_/g, " ")}` }),
      el("td", { class: "muted", text: why(entry.reason) }),
    ),
  );
  document.querySelector("#audit-table tbody").replaceChildren(...rows);
  card.hidden = rows.length === 0;
}
