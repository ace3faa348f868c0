// The video minutes dashboard (R-A1), a page of the app for site admins: balance, buying a
// bundle, calls open now (pushed by the server), usage by day, clinician and call (each
// call names its client and opens its appointment), purchases.
import { get, post, put, submitting } from "./api.js";
import { announce, el, formatCalendarDay, formatDateTime, isoDate, parseIsoDate, wallClock } from "./shell.js";
import { formatBalance, formatDuration, pounds } from "./minutes-format.js";
import { askChoice } from "./modal-dialog.js";
import { buyBundle, listBundles, purchaseOutcome, purchaseQuestion } from "./minutes-purchase.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const notice = $("notice");
const pageError = $("minutes-error");
let liveCalls = [];
let clockSkewMs = 0; // server clock minus ours, so ticking durations match the server
let paymentMethod = "direct_debit";

function emptyRow(columns, text) {
  return el("tr", {}, el("td", { class: "muted", colspan: columns, text }));
}

function showBalance(seconds, display) {
  const balance = $("balance");
  balance.textContent = display || formatBalance(seconds);
  balance.classList.toggle("negative", seconds < 0);
}

function fail(error) {
  announce(pageError, error.message || String(error));
}

// --- balance and buying --------------------------------------------------------------------

async function loadSummary() {
  const data = await get("/api/minutes");
  showBalance(data.balance_seconds);
  paymentMethod = data.payment_method;
  const method = data.payment_method === "paypal" ? "PayPal" : "Direct Debit";
  $("method").textContent = data.payments_mode === "sandbox" ? `${method} (test mode)` : method;
  $("mandate-row").hidden = data.payment_method !== "direct_debit" || data.payments_mode === "sandbox";
}

async function loadBundles() {
  const data = await listBundles();
  $("bundles").replaceChildren(
    el("legend", { text: "Bundle (1p a minute, plus VAT)" }),
    ...data.bundles.map((bundle, index) =>
      el(
        "label",
        { class: "check" },
        el("span", {}, el("input", { type: "radio", name: "bundle", value: bundle.minutes, checked: index === 0, "data-label": bundle.label }), ` ${bundle.minutes} minutes`),
        el("span", { class: "muted", text: `${pounds(bundle.net_pence)} + VAT ${pounds(bundle.vat_pence)} = ${pounds(bundle.gross_pence)}` }),
      ),
    ),
  );
}

async function loadSettings() {
  const data = await get("/api/minutes/settings");
  $("mandate").value = data.gocardless_mandate_id || "";
}

async function saveMandate() {
  const value = $("mandate").value.trim();
  const form = $("buy-form");
  const saved = await submitting(form, () => put("/api/minutes/settings", { gocardless_mandate_id: value || null }));
  if (saved) announce(notice, "Direct Debit mandate saved.");
}

async function buy(event) {
  event.preventDefault();
  const form = $("buy-form");
  const chosen = form.querySelector("input[name=bundle]:checked");
  if (!chosen) return;
  // Price, VAT and total, and how it is paid, before anything is bought (R-M2).
  $("purchase-text").textContent = purchaseQuestion(chosen.dataset.label, paymentMethod);
  const choice = await askChoice($("purchase-dialog"), { focus: "buy", returnFocus: $("buy-button") }).answer;
  if (choice !== "buy") return;
  announce(notice, "");
  announce(pageError, "");
  const reply = await submitting(form, () => buyBundle(Number(chosen.value)));
  if (!reply) return; // refused or unreachable: shown on the form, the key kept for a retry
  const outcome = purchaseOutcome(reply);
  if (reply.leaving) return announce(notice, outcome.text, outcome.tone);
  announce(outcome.tone === "failure" ? pageError : notice, outcome.text, outcome.tone);
  await Promise.all([loadSummary(), loadPurchases()]);
}

// --- purchases -----------------------------------------------------------------------------

const PURCHASE_STATES = {
  pending: "Pending",
  awaiting_approval: "Waiting for approval",
  credited: "Paid",
  failed: "Failed",
  reversed: "Reversed",
};

async function loadPurchases() {
  const data = await get("/api/minutes/purchases?limit=50");
  $("purchases").replaceChildren(
    ...(data.length ? [] : [emptyRow(6, "No purchases yet.")]),
    ...data.map((purchase) =>
      el(
        "tr",
        {},
        el("td", { text: formatDateTime(purchase.created_at) }),
        el("td", { text: `${purchase.bundle_minutes} minutes` }),
        el("td", { class: "num", text: pounds(purchase.gross_pence) }),
        el("td", { text: purchase.method === "paypal" ? "PayPal" : "Direct Debit" }),
        el("td", {}, el("span", { class: `state state-${purchase.status}`, title: purchase.failure_reason || null, text: PURCHASE_STATES[purchase.status] || purchase.status })),
        el(
          "td",
          {},
          purchase.status === "pending" || purchase.status === "awaiting_approval"
            ? el("button", { type: "button", class: "button", text: "Check now", onclick: () => reconcile(purchase.id) })
            : null,
        ),
      ),
    ),
  );
}

async function reconcile(purchaseId) {
  try {
    const data = await post(`/api/minutes/purchases/${purchaseId}/reconcile`);
    announce(notice, `The purchase is ${(PURCHASE_STATES[data.purchase.status] || data.purchase.status).toLowerCase()}.`);
  } catch (error) {
    fail(error);
  }
  await Promise.all([loadSummary(), loadPurchases()]);
}

// --- usage ---------------------------------------------------------------------------------

async function loadUsage() {
  const form = $("period");
  const query = `from=${encodeURIComponent($("from").value)}&to=${encodeURIComponent($("to").value)}`;
  $("usage-csv").href = `/api/minutes/export/usage.csv?${query}`;
  const data = await submitting(form, () => get(`/api/minutes/usage?${query}`));
  if (!data) return;
  drawChart(data.by_day);
  $("by-clinician").replaceChildren(
    ...(data.by_clinician.length ? [] : [emptyRow(3, "No usage in this period.")]),
    ...data.by_clinician.map((item) =>
      el("tr", {}, el("td", { text: item.clinician_name || "—" }), el("td", { class: "num", text: item.calls }), el("td", { class: "num", text: formatBalance(item.seconds) })),
    ),
  );
  $("by-call").replaceChildren(
    ...(data.by_call.length ? [] : [emptyRow(4, "No calls in this period.")]),
    ...data.by_call.map((item) =>
      el(
        "tr",
        { "data-call-id": item.call_id },
        el("td", { text: formatDateTime(item.opened_at) }),
        el("td", {}, el("a", { href: `/appointments/${item.appointment_id}`, text: item.client_name || "Appointment" })),
        el("td", { text: item.clinician_name }),
        el("td", { class: "num", text: formatDuration(item.seconds) }),
      ),
    ),
  );
}

// "2026-11-02" as "Mon 2 Nov" (the day of the usage, not an instant: no time zone).
function dayLabel(day, options) {
  return formatCalendarDay(parseIsoDate(day), options);
}

export function drawChart(days, svg = $("usage-chart")) {
  // Bars of minutes per day, drawn as SVG by hand: a chart library would need a build or a CDN.
  const width = 720, height = 240, left = 56, bottom = 30, top = 14;
  svg.replaceChildren();
  const minutes = days.map((d) => d.seconds / 60);
  const max = Math.max(1, Math.ceil(Math.max(0, ...minutes)));
  const plotWidth = width - left - 10;
  const plotHeight = height - top - bottom;
  const step = plotWidth / Math.max(1, days.length);
  const make = (name, attrs, text) => {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  make("line", { x1: left, y1: top + plotHeight, x2: width - 10, y2: top + plotHeight, class: "axis" });
  make("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, `${max} min`);
  make("text", { x: left - 6, y: top + plotHeight, "text-anchor": "end" }, "0 min");
  const labelEvery = Math.ceil(days.length / 8);
  const tip = $("chart-tip") || el("div", { id: "chart-tip", class: "chart-tip", role: "tooltip", hidden: true });
  svg.parentElement.append(tip);
  days.forEach((day, index) => {
    const barHeight = (minutes[index] / max) * plotHeight;
    const used = day.calls ? `${formatBalance(day.seconds)} in ${day.calls} call${day.calls === 1 ? "" : "s"}` : "no calls";
    const words = `${dayLabel(day.day, { weekday: "long", day: "numeric", month: "long" })}: ${used}`;
    const bar = make("rect", {
      x: left + index * step + step * 0.15,
      y: top + plotHeight - Math.max(barHeight, 1),
      width: Math.max(1, step * 0.7),
      height: Math.max(barHeight, 1),
      class: "bar",
      "data-day": day.day,
      role: "img",
      "aria-label": words,
      // One tab stop for the whole chart (today's bar); the arrow keys move between days.
      tabindex: index === days.length - 1 ? 0 : -1,
    });
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = words;
    bar.append(title);
    const show = () => {
      tip.textContent = words;
      tip.hidden = false;
      const box = svg.getBoundingClientRect();
      const scale = box.width / width;
      const offset = svg.getBoundingClientRect().left - svg.parentElement.getBoundingClientRect().left;
      tip.style.left = `${Math.min(offset + (left + index * step) * scale, svg.parentElement.clientWidth - tip.offsetWidth)}px`;
      tip.style.top = `${Math.max(0, (top + plotHeight - barHeight) * scale - 32)}px`;
    };
    bar.addEventListener("mouseenter", show);
    bar.addEventListener("mouseleave", () => (tip.hidden = true));
    bar.addEventListener("focus", show);
    bar.addEventListener("blur", () => (tip.hidden = true));
    bar.addEventListener("keydown", (event) => moveAlongChart(event, svg, tip));
    if (index % labelEvery === 0) {
      make("text", { x: left + index * step + step / 2, y: height - 8, "text-anchor": "middle" }, dayLabel(day.day, { weekday: undefined, day: "numeric", month: "short" }));
    }
  });
}

// Left/Right (Home/End) go from day to day, Escape hides the tooltip and keeps the focus.
function moveAlongChart(event, svg, tip) {
  if (event.key === "Escape") {
    tip.hidden = true;
    return;
  }
  const bars = [...svg.querySelectorAll("rect.bar")];
  const here = bars.indexOf(event.currentTarget);
  const target = { ArrowLeft: here - 1, ArrowRight: here + 1, Home: 0, End: bars.length - 1 }[event.key];
  if (target === undefined || !bars[target]) return;
  event.preventDefault();
  for (const bar of bars) bar.setAttribute("tabindex", bar === bars[target] ? "0" : "-1");
  bars[target].focus();
}

// --- live calls ----------------------------------------------------------------------------

function renderLive() {
  const now = Date.now() + clockSkewMs;
  $("live-calls").replaceChildren(
    ...(liveCalls.length ? [] : [emptyRow(5, "No calls open.")]),
    ...liveCalls.map((call) =>
      el(
        "tr",
        {},
        el("td", {}, el("a", { href: `/appointments/${call.appointment_id}`, text: call.client_name || "Appointment" })),
        el("td", { text: call.clinician_name }),
        el("td", { text: call.state === "in_progress" ? "In the call" : "Waiting room" }),
        el("td", { class: "num", text: call.started_at ? formatDuration((now - Date.parse(call.started_at)) / 1000) : "—" }),
        el("td", { class: "num", text: formatDuration(call.billed_seconds) }),
      ),
    ),
  );
}

function startLive() {
  const source = new EventSource("/api/minutes/live");
  source.addEventListener("live", (event) => {
    const snapshot = JSON.parse(event.data);
    clockSkewMs = Date.parse(snapshot.now) - Date.now();
    liveCalls = snapshot.calls;
    showBalance(snapshot.balance_seconds, snapshot.balance_display);
    $("live-state").textContent = "";
    renderLive();
  });
  source.addEventListener("error", () => {
    $("live-state").textContent = "(reconnecting…)";
  });
  setInterval(renderLive, 1000); // tick between server updates
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  const returned = params.get("status");
  if (returned === "credited") announce(notice, "Payment received: the minutes were added.");
  else if (returned === "failed") announce(pageError, "The payment was cancelled or failed, so nothing was charged.");
  else if (returned) announce(notice, "PayPal has not confirmed the payment yet. It will be checked again.", "warning");
  if (returned) history.replaceState(null, "", location.pathname);

  const today = wallClock(new Date());
  const monthAgo = wallClock(new Date(Date.now() - 29 * 86400000));
  $("to").value = isoDate(today.year, today.month, today.day);
  $("from").value = isoDate(monthAgo.year, monthAgo.month, monthAgo.day);
  $("buy-form").addEventListener("submit", buy);
  $("save-mandate").addEventListener("click", saveMandate);
  $("period").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsage();
  });
  try {
    await Promise.all([loadSummary(), loadBundles(), loadSettings(), loadPurchases(), loadUsage()]);
  } catch (error) {
    fail(error);
  }
  startLive();
  document.body.dataset.ready = "true";
}

start();
