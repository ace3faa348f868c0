// The appointment modal: book one appointment or a recurring series (with a preview of
// every date and its clashes before saving), or open an existing appointment to move it,
// start its video call ("Switch to Video") or go to its summary (the eye icon).
import { get, post, showError, clearErrors, submitting } from "./api.js";
import { askNewClient } from "./client-form.js";
import { outcomeText } from "./outcome.js";
import { announce, el, user, formatDateTime, hhmm, isoDate, parseIsoDate as parseDate, wallClock, zonedInstant } from "./shell.js";
import { openModal } from "./modal-dialog.js";

const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const NTH = ["first", "second", "third", "fourth", "last"];

function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function parseTime(text) {
  const m = /^(\d{2}):(\d{2})/.exec(text || "");
  return m ? { hour: +m[1], minute: +m[2] } : null;
}
function addDaysIso(text, days) {
  const d = parseDate(text);
  const t = new Date(Date.UTC(d.year, d.month - 1, d.day + days));
  return isoDate(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate());
}

// Switch to Video is offered to the appointment's clinician only (others see its outcome);
// whether minutes allow the call, the server decides and the modal shows its answer.
export function createAppointmentModal({ clinicians, types, onChanged }) {
  const dialog = document.getElementById("appointment-modal");
  const form = document.getElementById("appointment-form");
  const title = document.getElementById("modal-title");
  const switchButton = document.getElementById("switch-to-video");
  const outcomeBadge = document.getElementById("appointment-outcome");
  const summaryLink = document.getElementById("open-summary");
  const videoStatus = document.getElementById("video-status");
  const clientInput = document.getElementById("client-search");
  const clientList = document.getElementById("client-options");
  const typeSelect = document.getElementById("type-select");
  const durationNote = document.getElementById("duration-note");
  const clinicianSelect = document.getElementById("modal-clinician");
  const dateInput = document.getElementById("appt-date");
  const timeInput = document.getElementById("appt-time");
  const recurrenceToggle = document.getElementById("recurrence-toggle");
  const recurrenceOn = document.getElementById("recurrence-on");
  const recurrenceFields = document.getElementById("recurrence-fields");
  const frequency = document.getElementById("frequency");
  const intervalField = document.getElementById("interval-field");
  const interval = document.getElementById("interval");
  const until = document.getElementById("until");
  const frequencyNote = document.getElementById("frequency-note");
  const previewSummary = document.getElementById("preview-summary");
  const previewList = document.getElementById("preview-list");
  const skipField = document.getElementById("skip-clashes-field");
  const skipClashes = document.getElementById("skip-clashes");
  const saveButton = document.getElementById("save-appointment");

  let mode = "new"; // "new" | "existing"
  let current = null; // the existing appointment
  let selectedClient = null; // {id, name}
  let opener = null;
  let previewSerial = 0;

  typeSelect.replaceChildren(
    el("option", { value: "", text: "Choose a type" }),
    ...types.map((t) =>
      el("option", {
        value: t.id,
        "data-video": t.is_video ? "true" : "false",
        text: `${t.name} — ${t.duration_minutes} min${t.is_video ? " (video)" : ""}`,
      }),
    ),
  );
  clinicianSelect.replaceChildren(...clinicians.map((c) => el("option", { value: c.id, text: c.name })));

  function chosenType() {
    return types.find((t) => t.id === typeSelect.value) || null;
  }

  function showDuration() {
    const type = chosenType();
    durationNote.textContent = type
      ? `Lasts ${type.duration_minutes} minutes.${type.is_video ? " Video: each appointment gets its own one-time link." : ""}`
      : "";
  }

  function describeFrequency() {
    const d = parseDate(dateInput.value);
    if (!d) return "";
    const weekday = WEEKDAYS[(new Date(Date.UTC(d.year, d.month - 1, d.day)).getUTCDay() + 6) % 7];
    switch (frequency.value) {
      case "daily":
        return "Every day until the end date.";
      case "weekly":
        return `Every ${weekday}.`;
      case "every_n_weeks":
        return `Every ${interval.value || "N"} weeks on ${weekday}.`;
      case "monthly_by_date":
        return `On day ${d.day} of each month (the month's last day when it is shorter).`;
      case "monthly_by_weekday":
        return `On the ${NTH[Math.min(4, Math.floor((d.day - 1) / 7))]} ${weekday} of each month.`;
      default:
        return "";
    }
  }

  function startsAt() {
    const d = parseDate(dateInput.value);
    const t = parseTime(timeInput.value);
    if (!d || !t) return null;
    return zonedInstant(d.year, d.month, d.day, t.hour, t.minute).toISOString();
  }

  function recurrenceBody() {
    if (!recurrenceOn.checked) return null;
    const every = frequency.value === "every_n_weeks";
    return {
      frequency: every ? "weekly" : frequency.value,
      until: until.value,
      interval: every ? Number(interval.value) : 1,
    };
  }

  function bookingBody() {
    const body = {
      clinician_id: clinicianSelect.value,
      client_id: selectedClient ? selectedClient.id : "",
      type_id: typeSelect.value,
      starts_at: startsAt(),
    };
    const recurrence = recurrenceBody();
    if (recurrence) body.recurrence = recurrence;
    if (recurrence && skipClashes.checked) body.skip_clashes = true;
    return body;
  }

  // --- recurrence preview --------------------------------------------------------------

  function renderPreview(occurrences, clashing) {
    previewList.replaceChildren(
      ...occurrences.map((o) => {
        const clashes = o.clashes_with || [];
        const item = el(
          "li",
          { class: clashes.length ? "clash" : "", "data-position": o.position },
          el("span", { text: formatDateTime(o.starts_at) }),
          clashes.length
            ? el("span", {
                text: `Clashes with ${clashes.map((c) => `${formatDateTime(c.starts_at, { weekday: undefined, year: undefined, day: undefined, month: undefined })}–${formatDateTime(c.ends_at, { weekday: undefined, year: undefined, day: undefined, month: undefined })}`).join(", ")}`,
              })
            : null,
        );
        return item;
      }),
    );
    const count = occurrences.length;
    previewSummary.textContent = clashing
      ? `${clashing} of ${count} dates clash with the clinician's diary.`
      : `${count} appointment${count === 1 ? "" : "s"} will be booked.`;
    previewSummary.classList.toggle("has-clash", clashing > 0);
    skipField.hidden = !clashing || clashing === count;
    if (skipField.hidden) skipClashes.checked = false;
  }

  const refreshPreview = debounce(async () => {
    if (mode !== "new" || !recurrenceOn.checked) return;
    const body = bookingBody();
    const serial = ++previewSerial;
    if (!body.client_id || !body.type_id || !body.starts_at || !body.recurrence.until) {
      previewSummary.textContent = "Choose the client, type, date, time and end date to see the dates.";
      previewSummary.classList.remove("has-clash");
      previewList.replaceChildren();
      return;
    }
    delete body.skip_clashes;
    previewSummary.textContent = "Checking the dates…";
    try {
      const preview = await post("/api/appointments/preview", body);
      if (serial !== previewSerial) return; // a newer preview is on its way
      renderPreview(preview.occurrences, preview.clashing);
      recurrenceFields.dataset.previewed = "true";
    } catch (error) {
      if (serial !== previewSerial) return;
      previewList.replaceChildren();
      previewSummary.textContent = error.message;
      previewSummary.classList.add("has-clash");
    }
  }, 250);

  function showRecurrence() {
    recurrenceFields.hidden = !recurrenceOn.checked;
    recurrenceOn.setAttribute("aria-expanded", String(recurrenceOn.checked));
    intervalField.hidden = frequency.value !== "every_n_weeks";
    frequencyNote.textContent = describeFrequency();
    if (recurrenceOn.checked && !until.value && dateInput.value) until.value = addDaysIso(dateInput.value, 28);
    if (!recurrenceOn.checked) {
      skipField.hidden = true;
      skipClashes.checked = false;
    }
    refreshPreview();
  }

  for (const control of [typeSelect, clinicianSelect, dateInput, timeInput, frequency, interval, until]) {
    control.addEventListener("input", () => {
      showDuration();
      showRecurrence();
    });
    control.addEventListener("change", () => {
      showDuration();
      showRecurrence();
    });
  }
  recurrenceOn.addEventListener("change", showRecurrence);

  // --- client search (combobox) ----------------------------------------------------------

  let options = [];
  let active = -1;
  function closeList() {
    clientList.hidden = true;
    clientInput.setAttribute("aria-expanded", "false");
    clientInput.removeAttribute("aria-activedescendant");
    active = -1;
  }
  function highlight(index) {
    active = index;
    [...clientList.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
    if (index >= 0 && clientList.children[index]) {
      clientInput.setAttribute("aria-activedescendant", clientList.children[index].id);
      clientList.children[index].scrollIntoView({ block: "nearest" });
    }
  }
  function choose(client) {
    selectedClient = { id: client.id, name: client.name };
    clientInput.value = client.name;
    closeList();
    clearErrors(form);
    refreshPreview();
  }
  const searchClients = debounce(async () => {
    const query = clientInput.value.trim();
    try {
      options = await get(`/api/clients?q=${encodeURIComponent(query)}`);
    } catch (error) {
      options = [];
      showError(form, error);
    }
    clientList.replaceChildren(
      ...(options.length
        ? options.map((c, i) =>
            el(
              "li",
              {
                id: `client-option-${i}`,
                role: "option",
                "aria-selected": "false",
                onmousedown: (event) => event.preventDefault(), // keep focus in the input
                onclick: () => choose(c),
              },
              c.name,
              c.email ? el("span", { class: "muted", text: ` · ${c.email}` }) : null,
            ),
          )
        : [el("li", { class: "empty", role: "option", "aria-disabled": "true", text: "No client matches: add them with New client." })]),
    );
    clientList.hidden = false;
    clientInput.setAttribute("aria-expanded", "true");
    highlight(options.length ? 0 : -1);
  }, 150);
  clientInput.addEventListener("input", () => {
    selectedClient = null;
    searchClients();
  });
  clientInput.addEventListener("focus", () => {
    if (mode === "new" && !selectedClient) searchClients();
  });
  clientInput.addEventListener("blur", () => setTimeout(closeList, 100));
  const newClientButton = document.getElementById("new-client");
  newClientButton.addEventListener("click", async () => {
    closeList();
    const created = await askNewClient(selectedClient ? "" : clientInput.value.trim());
    if (created) choose(created);
    (created ? typeSelect : clientInput).focus();
  });
  clientInput.addEventListener("keydown", (event) => {
    if (clientList.hidden) {
      if (event.key === "ArrowDown") searchClients();
      return;
    }
    if (event.key === "ArrowDown") {
      event.preventDefault();
      highlight(Math.min(options.length - 1, active + 1));
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      highlight(Math.max(0, active - 1));
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (active >= 0 && options[active]) choose(options[active]);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeList();
    }
  });
  // Escape closes the open list first, the dialog only when no list is open.
  dialog.addEventListener("cancel", (event) => {
    if (!clientList.hidden) {
      event.preventDefault();
      closeList();
    }
  });

  // --- open and close ------------------------------------------------------------------

  function reset() {
    form.reset();
    clearErrors(form);
    announce(videoStatus, "");
    selectedClient = null;
    closeList();
    previewList.replaceChildren();
    previewSummary.textContent = "";
    delete recurrenceFields.dataset.previewed;
    skipField.hidden = true;
    for (const control of [clientInput, typeSelect]) control.disabled = false;
    newClientButton.hidden = false;
  }

  function show(focusTarget, from) {
    opener = from || document.activeElement;
    showDuration();
    showRecurrence();
    openModal(dialog);
    focusTarget.focus();
  }

  function close() {
    dialog.close();
  }
  dialog.addEventListener("close", () => {
    if (opener && opener.isConnected) opener.focus();
    else document.getElementById("week-label").focus?.();
  });
  document.getElementById("close-modal").addEventListener("click", close);
  document.getElementById("cancel-modal").addEventListener("click", close);

  function openNew({ clinicianId, date, time }, from) {
    reset();
    mode = "new";
    current = null;
    title.textContent = "New appointment";
    switchButton.hidden = true;
    outcomeBadge.hidden = true;
    summaryLink.hidden = true;
    recurrenceToggle.hidden = false;
    saveButton.textContent = "Save";
    clinicianSelect.value = clinicianId;
    dateInput.value = date;
    timeInput.value = time;
    if (types.length === 1) typeSelect.value = types[0].id;
    show(clientInput, from);
  }

  function openExisting(appointment, from) {
    reset();
    mode = "existing";
    current = appointment;
    title.textContent = `${appointment.client_name} · ${appointment.type_name}`;
    selectedClient = { id: appointment.client_id, name: appointment.client_name };
    clientInput.value = appointment.client_name;
    clientInput.disabled = true;
    newClientButton.hidden = true;
    if (![...typeSelect.options].some((o) => o.value === appointment.type_id)) {
      typeSelect.append(el("option", { value: appointment.type_id, text: appointment.type_name }));
    }
    typeSelect.value = appointment.type_id;
    typeSelect.disabled = true;
    clinicianSelect.value = appointment.clinician_id;
    const start = wallClock(new Date(appointment.starts_at));
    dateInput.value = isoDate(start.year, start.month, start.day);
    timeInput.value = hhmm(start.hour, start.minute);
    recurrenceOn.checked = false;
    recurrenceToggle.hidden = true;
    // R-C10: a completed, abandoned or cancelled appointment has no call to start or time
    // to change (an abandoned one is rebooked from its summary).
    const booked = ["booked", "waiting_room_open"].includes(appointment.outcome);
    const callable = booked || appointment.outcome === "in_call";
    // Only the appointment's clinician can start its call (the server refuses anyone else);
    // everyone else sees where the appointment stands instead.
    const mine = appointment.clinician_id === user.id;
    switchButton.hidden = !(appointment.is_video && callable && mine);
    outcomeBadge.hidden = !switchButton.hidden;
    outcomeBadge.className = `state state-${appointment.outcome}`;
    outcomeBadge.textContent = outcomeText(appointment);
    summaryLink.hidden = false;
    summaryLink.href = `/appointments/${appointment.id}`;
    saveButton.textContent = "Save changes";
    saveButton.hidden = !booked;
    show(switchButton.hidden ? summaryLink : switchButton, from);
  }

  // --- Switch to Video -----------------------------------------------------------------

  async function startVideo(goAhead) {
    switchButton.disabled = true;
    clearErrors(form);
    announce(videoStatus, "Opening the waiting room…");
    try {
      const call = await post(`/api/appointments/${current.id}/video/start`, goAhead ? { go_ahead: true } : {});
      // Straight to the waiting room: the call page is where the clinician works now.
      announce(videoStatus, "The waiting room is open. Taking you there…");
      location.assign(`/calls/${encodeURIComponent(call.call_id)}`);
    } catch (error) {
      announce(videoStatus, "");
      showError(form, error);
      const banner = form.querySelector("[data-form-error]");
      if (error.code === "go_ahead_required") {
        banner.append(
          " ",
          el("button", { type: "button", class: "button", text: "Go ahead anyway", onclick: () => startVideo(true) }),
        );
      }
      const precall = error.details && error.details.precall;
      if (precall && precall.can_buy) {
        banner.append(" ", el("a", { href: "/admin/minutes", class: "button", text: "Buy more minutes" }));
      }
      switchButton.disabled = false; // on success it stays disabled while the call page loads
    }
  }
  switchButton.addEventListener("click", () => startVideo(false));

  // --- save ----------------------------------------------------------------------------

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (mode === "new") {
      if (!selectedClient) {
        showError(form, { message: "Choose a client from the list.", field: "client_id" });
        return;
      }
      const result = await submitting(form, () => post("/api/appointments", bookingBody()));
      if (!result) {
        renderClashesFromError();
        return;
      }
      const count = result.appointments.length;
      close();
      await onChanged(`Booked ${count} appointment${count === 1 ? "" : "s"}.`);
      return;
    }
    const changedClinician = clinicianSelect.value !== current.clinician_id;
    const body = { starts_at: startsAt() };
    if (changedClinician) body.clinician_id = clinicianSelect.value;
    if (body.starts_at === new Date(current.starts_at).toISOString() && !changedClinician) {
      close();
      return;
    }
    const moved = await submitting(form, () => post(`/api/appointments/${current.id}/move`, body));
    if (moved) {
      close();
      await onChanged("Appointment moved.");
    }
  });

  // A 409 on save lists the clashes: show them in the preview too.
  function renderClashesFromError() {
    const banner = form.querySelector("[data-form-error]");
    if (!banner || banner.hidden) return;
    if (recurrenceOn.checked) refreshPreview();
  }

  return { openNew, openExisting };
}
