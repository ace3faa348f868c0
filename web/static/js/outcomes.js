// What happened to an appointment, in the words shown to staff (the server's derived
// outcome, R-C10): one list for the client's history, the diary's modal and the summary.
const OUTCOMES = {
  booked: "Booked",
  waiting_room_open: "Waiting room open",
  in_call: "In the call",
  completed: "Completed",
  abandoned: "Did not attend",
  cancelled: "Cancelled",
};

export function outcomeLabel(outcome) {
  return OUTCOMES[outcome] || "Unknown";
}
