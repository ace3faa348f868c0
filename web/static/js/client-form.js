// A client's details as form fields (name, email, mobile, date of birth, preferred
// channel): the same fields on the Clients page, a client's own page and the "New client"
// dialog of the appointment modal. The server checks every field and names the one it
// refuses; showError() puts its sentence next to that field.
import { post, submitting } from "./api.js";
import { el, formatDay, parseDay } from "./shell.js";
import { openModal } from "./modal-dialog.js";

let serial = 0;

// The fields, filled from `client` (or empty), for a form of the page.
export function clientFields(client = null) {
  const id = `client-${++serial}`;
  const field = (name, label, attrs, hint) => {
    const hintId = hint ? `${id}-${name}-hint` : null;
    return el(
      "div",
      { class: "field" },
      el("label", { for: `${id}-${name}`, text: label }),
      el("input", { id: `${id}-${name}`, name, "data-field": name, "aria-describedby": hintId, ...attrs }),
      hint ? el("p", { class: "hint", id: hintId, text: hint }) : null,
    );
  };
  const channel = client ? client.preferred_channel : null;
  const radio = (value, label) =>
    el(
      "label",
      { class: "check" },
      el("input", { type: "radio", name: "preferred_channel", value, checked: channel === value }),
      ` ${label}`,
    );
  return [
    field("name", "Name", { required: true, maxlength: 200, autocomplete: "off", value: client?.name ?? "" }),
    el(
      "div",
      { class: "grid-2" },
      field("email", "Email", { type: "email", maxlength: 254, autocomplete: "off", value: client?.email ?? "" }),
      field(
        "phone",
        "Mobile",
        { type: "tel", maxlength: 40, autocomplete: "off", value: client?.phone ?? "" },
        "For text messages, e.g. 07700 900123.",
      ),
      field(
        "date_of_birth",
        "Date of birth",
        {
          inputmode: "numeric",
          autocomplete: "off",
          placeholder: "DD/MM/YYYY",
          value: client?.date_of_birth ? formatDay(client.date_of_birth) : "",
        },
        "Day, month and year, e.g. 15/03/1984.",
      ),
    ),
    el(
      "fieldset",
      { class: "field", "data-field": "preferred_channel" },
      el("legend", { text: "Send links and reminders as" }),
      el("div", { class: "inline-checks" }, radio("email", "Emails"), radio("sms", "Text messages")),
    ),
  ];
}

// The request body of a client form: blanks as null, the date of birth as YYYY-MM-DD when
// it reads as a day (else as typed, for the server to refuse next to the field).
export function clientBody(form) {
  const f = form.elements;
  const text = (name) => f[name].value.trim() || null;
  const born = text("date_of_birth");
  const body = {
    name: f.name.value.trim(),
    email: text("email"),
    phone: text("phone"),
    date_of_birth: born === null ? null : parseDay(born) ?? born,
  };
  const channel = form.querySelector("input[name=preferred_channel]:checked");
  if (channel) body.preferred_channel = channel.value;
  return body;
}

// The "New client" dialog, opened over the appointment modal: resolves with the created
// client, or null when closed without saving.
export function askNewClient(name = "") {
  const form = el(
    "form",
    { novalidate: true, method: "dialog" },
    el(
      "div",
      { class: "dialog-head" },
      el("h2", { id: "new-client-title", text: "New client" }),
    ),
    el(
      "div",
      { class: "dialog-body stack" },
      el("p", { class: "form-error", "data-form-error": true, role: "alert", hidden: true }),
      clientFields({ name, email: "", phone: "", date_of_birth: null, preferred_channel: null }),
    ),
    el(
      "div",
      { class: "dialog-foot" },
      el("button", { type: "button", class: "button", "data-close": true, text: "Cancel" }),
      el("button", { type: "submit", class: "button button-primary", text: "Add client" }),
    ),
  );
  const dialog = el("dialog", { id: "new-client-dialog", "aria-labelledby": "new-client-title" }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    let created = null;
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(created);
    });
    form.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await submitting(form, () => post("/api/clients", clientBody(form)));
      if (result) {
        created = result;
        dialog.close();
      }
    });
    openModal(dialog);
    form.elements.name.focus();
  });
}
