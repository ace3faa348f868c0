// Users and roles (site admins only: the server answers 403 to anyone else, for the page
// and for every change).
import { get, patch, post, submitting } from "./api.js";
import { el, user as me, announce } from "./shell.js";

const ROLES = [
  ["site_admin", "Site admin"],
  ["clinician", "Clinician"],
  ["receptionist", "Receptionist"],
];
const tableBody = document.querySelector("#users-table tbody");
const newUserForm = document.getElementById("new-user-form");

function userRow(person) {
  const form = el("form", { id: `user-${person.id}`, class: "row-form", novalidate: true });
  const roleBoxes = ROLES.map(([value, label]) =>
    el(
      "label",
      { class: "check" },
      el("input", {
        type: "checkbox",
        name: "roles",
        value,
        form: form.id,
        checked: person.roles.includes(value),
      }),
      ` ${label}`,
    ),
  );
  const active = el("input", {
    type: "checkbox",
    name: "active",
    form: form.id,
    checked: person.active,
    "aria-label": `${person.name} can log in`,
  });
  const saved = el("span", { class: "status", role: "status" });
  const errors = el("p", { class: "form-error", "data-form-error": true, role: "alert", hidden: true });
  form.append(el("button", { type: "submit", class: "button", text: "Save" }), saved, errors);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const roles = [...document.querySelectorAll(`input[name=roles][form="${form.id}"]:checked`)].map(
      (box) => box.value,
    );
    const result = await submitting(form, () =>
      patch(`/api/users/${person.id}`, { roles, active: active.checked }),
    );
    if (result) announce(saved, `Saved ${result.name}.`);
  });
  const you = person.id === me.id ? el("span", { class: "tag", text: "you" }) : null;
  return el(
    "tr",
    { "data-user-id": person.id },
    el("th", { scope: "row" }, person.name, " ", you),
    el("td", { text: person.email }),
    el("td", {}, el("fieldset", { class: "inline-checks" }, el("legend", { class: "visually-hidden", text: `Roles of ${person.name}` }), roleBoxes)),
    el("td", {}, active),
    el("td", {}, form),
  );
}

async function loadUsers() {
  const people = await get("/api/users");
  tableBody.replaceChildren(...people.map(userRow));
}

newUserForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = newUserForm.elements;
  const roles = [...newUserForm.querySelectorAll("input[name=roles]:checked")].map((b) => b.value);
  const created = await submitting(newUserForm, () =>
    post("/api/users", {
      name: f.name.value.trim(),
      email: f.email.value.trim(),
      password: f.password.value,
      roles,
    }),
  );
  if (created) {
    newUserForm.reset();
    announce(newUserForm.querySelector("[data-status]"), `Added ${created.name}.`);
    await loadUsers();
  }
});

try {
  await loadUsers();
} catch (error) {
  announce(document.getElementById("users-status"), error.message);
}
document.body.dataset.ready = "true";
