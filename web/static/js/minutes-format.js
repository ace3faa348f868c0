// How minutes, durations and money are written, on the dashboard and the call pages alike.

/** Seconds as people read a balance: "264 min", "45 s" (R-M1); whole minutes toward zero. */
export function formatBalance(seconds) {
  const sign = seconds < 0 ? "-" : "";
  const magnitude = Math.abs(seconds);
  return magnitude < 60 ? `${sign}${magnitude} s` : `${sign}${Math.floor(magnitude / 60)} min`;
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(totalSeconds) {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Billed seconds in full: 45 -> "45 s", 3030 -> "50 min 30 s". */
export function billedDuration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

/** Integer pence as pounds: 1234 -> "£12.34". */
export function pounds(pence) {
  const sign = pence < 0 ? "-" : "";
  const abs = Math.abs(pence);
  return `${sign}£${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}
