// What a connection-quality sample means to people: the server's quality_stats carry a
// level it judged from both directions of the link (good, fair, poor, reconnecting,
// absent); the browser's own fallback samples carry none, so the same thresholds apply
// here (server/calls/media_quality.py is the reference).

const FAIR_LOSS_PCT = 2;
const POOR_LOSS_PCT = 8;
const FAIR_RTT_MS = 250;
const POOR_RTT_MS = 500;

/** Worst first is last: the indicator's dot shows the worst of both connections. */
export const LEVEL_ORDER = ["good", "fair", "poor", "reconnecting", "absent"];

/** @returns {"good" | "fair" | "poor" | "reconnecting" | "absent"} */
export function levelOf(stats) {
  if (stats.level) return stats.level;
  const loss = stats.packet_loss_pct ?? 0;
  const rtt = stats.round_trip_ms ?? 0;
  if (loss > POOR_LOSS_PCT || rtt > POOR_RTT_MS) return "poor";
  if (loss > FAIR_LOSS_PCT || rtt > FAIR_RTT_MS) return "fair";
  return "good";
}

const WORDS = {
  good: "Good",
  fair: "Fair",
  poor: "Poor",
  reconnecting: "Reconnecting…",
  absent: "Not connected",
};

/** "Poor, 140 ms, 9.5% loss, 320 kbps in" — figures only while media is live. */
export function describe(stats) {
  const level = levelOf(stats);
  const parts = [WORDS[level] || level];
  if (level === "reconnecting" || level === "absent") return parts.join("");
  if (stats.round_trip_ms != null) parts.push(`${stats.round_trip_ms} ms`);
  if (stats.packet_loss_pct != null) parts.push(`${Number(stats.packet_loss_pct).toFixed(1)}% loss`);
  if (stats.inbound_kbps != null) parts.push(`${stats.inbound_kbps} kbps in`);
  return parts.join(", ");
}
