// An appointment's outcome (R-C10), derived by the server from its call and link: the one
// wording every page shows for each (diary, modal, summary, a client's history).
import { billedDuration } from "./minutes-format.js";

const OUTCOMES = {
  booked: "Booked",
  waiting_room_open: "Waiting room open",
  in_call: "In call",
  completed: "Completed",
  abandoned: "Abandoned (did not attend)",
  cancelled: "Cancelled",
};

export function outcomeText(appointment) {
  const label = OUTCOMES[appointment.outcome] || appointment.outcome;
  if (appointment.outcome === "completed" && appointment.billed_seconds != null) {
    return `${label}, ${billedDuration(appointment.billed_seconds)} billed`;
  }
  return label;
}
