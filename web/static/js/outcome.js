// An appointment's outcome (R-C10), derived by the server from its call and link: the one
// wording the diary and the summary show for each.
const OUTCOMES = {
  booked: "Booked",
  waiting_room_open: "Waiting room open",
  in_call: "In call",
  completed: "Completed",
  abandoned: "Abandoned (did not attend)",
  cancelled: "Cancelled",
};

export function billedDuration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

export function outcomeText(appointment) {
  const label = OUTCOMES[appointment.outcome] || appointment.outcome;
  if (appointment.outcome === "completed" && appointment.billed_seconds !== null) {
    return `${label}, ${billedDuration(appointment.billed_seconds)} billed`;
  }
  return label;
}
