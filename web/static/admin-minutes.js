// Admin minutes dashboard (R-A1): balance, buying a bundle, live calls, usage, purchases.
// An ES module with no dependencies: it works offline and needs no build step.
// It authenticates with the staff session cookie and echoes the `vc_csrf` cookie in
// X-CSRF-Token on every state-changing request.

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let practice = null;
let buyKey = null; // one idempotency key per purchase attempt: a double click reuses it
let liveCalls = [];
let clockSkewMs = 0; // server clock minus ours, so ticking durations match the server

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "vc_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { status: response.status, data };
}

// --- formatting ----------------------------------------------------------------------------

export function formatBalance(seconds) {
  // Minutes, or seconds where less than a minute (R-M1); whole minutes toward zero.
  const sign = seconds < 0 ? "-" : "";
  const magnitude = Math.abs(seconds);
  return magnitude < 60 ? `${sign}${magnitude} s` : `${sign}${Math.floor(magnitude / 60)} min`;
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export function pounds(pence) {
  const sign = pence < 0 ? "-" : "";
  const abs = Math.abs(pence);
  return `${sign}£${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

const dateTime = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
const when = (iso) => (iso ? dateTime.format(new Date(iso)) : "—");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

function emptyRow(columns, text) {
  const td = cell(text, "vm-muted");
  td.colSpan = columns;
  return row(td);
}

function notify(text, isError = false) {
  const notice = $("notice");
  notice.textContent = text;
  notice.classList.toggle("vm-error", isError);
  notice.hidden = !text;
}

// --- balance and buying --------------------------------------------------------------------

async function loadSummary() {
  const { data } = await api("GET", "/api/minutes");
  const balance = $("balance");
  balance.textContent = formatBalance(data.balance_seconds);
  balance.classList.toggle("vm-negative", data.balance_seconds < 0);
  const method = data.payment_method === "paypal" ? "PayPal" : "Direct Debit";
  $("method").textContent = data.payments_mode === "sandbox" ? `${method} (sandbox)` : method;
  $("mandate-row").hidden = data.payment_method !== "direct_debit" || data.payments_mode === "sandbox";
}

async function loadBundles() {
  const { data } = await api("GET", "/api/minutes/bundles");
  const fieldset = $("bundles");
  fieldset.querySelectorAll("label").forEach((label) => label.remove());
  data.bundles.forEach((bundle, index) => {
    const label = document.createElement("label");
    label.className = "vm-bundle";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "bundle";
    input.value = String(bundle.minutes);
    input.checked = index === 0;
    input.dataset.label = bundle.label;
    const title = document.createElement("strong");
    title.textContent = `${bundle.minutes} minutes`;
    const price = document.createElement("span");
    price.textContent = `${pounds(bundle.net_pence)} + VAT ${pounds(bundle.vat_pence)} = ${pounds(bundle.gross_pence)}`;
    label.append(input, " ", title, price);
    fieldset.append(label);
  });
}

async function loadSettings() {
  const { data } = await api("GET", "/api/minutes/settings");
  $("mandate").value = data.gocardless_mandate_id || "";
}

async function saveMandate() {
  const value = $("mandate").value.trim();
  try {
    await api("PUT", "/api/minutes/settings", { gocardless_mandate_id: value || null });
    notify("Mandate saved.");
  } catch (error) {
    notify(error.message, true);
  }
}

async function buy(event) {
  event.preventDefault();
  const chosen = document.querySelector("input[name=bundle]:checked");
  if (!chosen) return;
  const method = $("method").textContent;
  if (method.startsWith("Direct Debit") && !confirm(`Buy ${chosen.dataset.label}? It is charged to the practice's Direct Debit.`)) {
    return;
  }
  buyKey = buyKey || `buy-${crypto.randomUUID()}`;
  const button = $("buy-button");
  button.disabled = true;
  try {
    const { data } = await api("POST", "/api/minutes/purchases", {
      bundle_minutes: Number(chosen.value),
      idempotency_key: buyKey,
    });
    const purchase = data.purchase;
    if (purchase.status === "awaiting_approval" && purchase.approve_url) {
      location.assign(purchase.approve_url); // PayPal: approve there, come back here
      return;
    }
    buyKey = null; // settled or pending: the next click is a new purchase
    if (purchase.status === "credited") notify(`${purchase.bundle_minutes} minutes added. Balance: ${data.balance_display}.`);
    else if (purchase.status === "failed") notify(`The payment failed: ${purchase.failure_reason || "no reason given"}.`, true);
    else notify(data.message || "The payment is being confirmed.");
    await Promise.all([loadSummary(), loadPurchases()]);
  } catch (error) {
    // A network failure keeps the key: trying again cannot buy twice.
    if (error.status && error.status < 500) buyKey = null;
    notify(error.message, true);
  } finally {
    button.disabled = false;
  }
}

// --- purchases -----------------------------------------------------------------------------

async function loadPurchases() {
  const { data } = await api("GET", "/api/minutes/purchases?limit=50");
  const body = $("purchases");
  body.replaceChildren();
  if (!data.length) body.append(emptyRow(6, "No purchases yet."));
  for (const purchase of data) {
    const status = document.createElement("span");
    status.className = `vm-status vm-status-${purchase.status}`;
    status.textContent = purchase.status.replace("_", " ");
    status.title = purchase.failure_reason || "";
    const statusCell = document.createElement("td");
    statusCell.append(status);
    const actions = document.createElement("td");
    if (purchase.status === "pending" || purchase.status === "awaiting_approval") {
      const check = document.createElement("button");
      check.type = "button";
      check.textContent = "Check now";
      check.addEventListener("click", () => reconcile(purchase.id));
      actions.append(check);
    }
    body.append(
      row(
        cell(when(purchase.created_at)),
        cell(`${purchase.bundle_minutes} min`),
        cell(pounds(purchase.gross_pence), "vm-num"),
        cell(purchase.method === "paypal" ? "PayPal" : "Direct Debit"),
        statusCell,
        actions,
      ),
    );
  }
}

async function reconcile(purchaseId) {
  try {
    const { data } = await api("POST", `/api/minutes/purchases/${purchaseId}/reconcile`);
    notify(`Purchase is ${data.purchase.status.replace("_", " ")}.`);
  } catch (error) {
    notify(error.message, true);
  }
  await Promise.all([loadSummary(), loadPurchases()]);
}

// --- usage ---------------------------------------------------------------------------------

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

async function loadUsage() {
  const from = $("from").value;
  const to = $("to").value;
  const query = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  $("usage-csv").href = `/api/minutes/export/usage.csv?${query}`;
  try {
    const { data } = await api("GET", `/api/minutes/usage?${query}`);
    drawChart(data.by_day);
    const clinicians = $("by-clinician");
    clinicians.replaceChildren();
    if (!data.by_clinician.length) clinicians.append(emptyRow(3, "No usage in this period."));
    for (const item of data.by_clinician) {
      clinicians.append(row(cell(item.clinician_name || "—"), cell(String(item.calls), "vm-num"), cell(formatBalance(item.seconds), "vm-num")));
    }
    const calls = $("by-call");
    calls.replaceChildren();
    if (!data.by_call.length) calls.append(emptyRow(4, "No calls in this period."));
    for (const item of data.by_call) {
      calls.append(row(cell(when(item.opened_at)), cell(item.clinician_name), cell(item.state.replace(/_/g, " ")), cell(formatDuration(item.seconds), "vm-num")));
    }
  } catch (error) {
    notify(error.message, true);
  }
}

export function drawChart(days, svg = $("usage-chart")) {
  // Bars of minutes per day, drawn as SVG by hand: a chart library would need a build or a CDN.
  const width = 720, height = 220, left = 40, bottom = 24, top = 10;
  svg.replaceChildren();
  const minutes = days.map((d) => d.seconds / 60);
  const max = Math.max(1, ...minutes);
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
  make("line", { x1: left, y1: top + plotHeight, x2: width - 10, y2: top + plotHeight, class: "vm-axis" });
  make("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(Math.ceil(max)));
  make("text", { x: left - 6, y: top + plotHeight, "text-anchor": "end" }, "0");
  const labelEvery = Math.ceil(days.length / 8);
  days.forEach((day, index) => {
    const barHeight = (minutes[index] / max) * plotHeight;
    const bar = make("rect", {
      x: left + index * step + step * 0.15,
      y: top + plotHeight - barHeight,
      width: Math.max(1, step * 0.7),
      height: barHeight,
      class: "vm-bar",
    });
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${day.day}: ${formatBalance(day.seconds)} in ${day.calls} call(s)`;
    bar.append(title);
    if (index % labelEvery === 0) {
      make("text", { x: left + index * step + step / 2, y: height - 6, "text-anchor": "middle" }, day.day.slice(5));
    }
  });
}

// --- live calls ----------------------------------------------------------------------------

function renderLive() {
  const body = $("live-calls");
  body.replaceChildren();
  if (!liveCalls.length) {
    body.append(emptyRow(5, "No calls open."));
    return;
  }
  const now = Date.now() + clockSkewMs;
  for (const call of liveCalls) {
    const liveFor = call.started_at ? (now - Date.parse(call.started_at)) / 1000 : 0;
    body.append(
      row(
        cell(call.clinician_name),
        cell(call.state === "in_progress" ? "in progress" : "waiting room"),
        cell(call.started_at ? formatDuration(liveFor) : "—", "vm-num"),
        cell(formatDuration(call.billed_seconds), "vm-num"),
        cell(formatBalance(call.expected_seconds), "vm-num"),
      ),
    );
  }
}

function startLive() {
  const source = new EventSource("/api/minutes/live");
  source.addEventListener("live", (event) => {
    const snapshot = JSON.parse(event.data);
    clockSkewMs = Date.parse(snapshot.now) - Date.now();
    liveCalls = snapshot.calls;
    const balance = $("balance");
    balance.textContent = snapshot.balance_display;
    balance.classList.toggle("vm-negative", snapshot.balance_seconds < 0);
    $("live-state").textContent = "";
    renderLive();
  });
  source.addEventListener("error", () => {
    $("live-state").textContent = "(reconnecting…)";
  });
  setInterval(renderLive, 1000); // tick between server updates
}

// --- start ---------------------------------------------------------------------------------

function showSignedOut(title, text) {
  $("signed-out-title").textContent = title;
  $("signed-out-text").textContent = text;
  $("signed-out").hidden = false;
}

async function start() {
  let me;
  try {
    me = (await api("GET", "/api/me")).data;
  } catch (error) {
    if (error.status === 401) return showSignedOut("Please log in", "This page is for the practice's site administrators.");
    return showSignedOut("Cannot load", error.message);
  }
  if (!me.user.roles.includes("site_admin")) {
    $("login-link").hidden = true;
    return showSignedOut("Site administrators only", "Only a site admin can see the video minutes dashboard and buy minutes.");
  }
  practice = me.practice;
  $("practice-name").textContent = practice.name;
  $("app").hidden = false;

  const params = new URLSearchParams(location.search);
  const returned = params.get("status");
  if (returned === "credited") notify("Payment received: the minutes were added.");
  else if (returned === "failed") notify("The payment was cancelled or failed; nothing was charged.", true);
  else if (returned) notify("PayPal has not confirmed the payment yet; it will be checked again.");
  if (returned) history.replaceState(null, "", location.pathname);

  const today = new Date();
  $("to").value = isoDate(today);
  $("from").value = isoDate(new Date(today.getTime() - 29 * 86400000));
  $("buy-form").addEventListener("submit", buy);
  $("save-mandate").addEventListener("click", saveMandate);
  $("period").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsage();
  });
  await Promise.all([loadSummary(), loadBundles(), loadSettings(), loadPurchases(), loadUsage()]);
  startLive();
}

start();
