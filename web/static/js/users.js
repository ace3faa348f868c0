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
const usersStatus = document.getElementById("users-status");
const inviteDialog = document.getElementById("invite-dialog");
const inviteForm = document.getElementById("invite-form");

function checkedRoles(container) {
  return [...container.querySelectorAll("input[name=roles]:checked")].map((box) => box.value);
}

// A user who has not used their invitation yet can be sent a new link (the old one dies).
function resendButton(person) {
  const button = el("button", {
    type: "button",
    class: "button",
    text: "Resend invitation",
    "aria-label": `Resend the invitation to ${person.name}`,
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await post(`/api/users/${person.id}/invite`);
      announce(usersStatus, `A new invitation was sent to ${person.email}. The previous link no longer works.`);
    } catch (error) {
      announce(usersStatus, error.message);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

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
  if (!person.password_set) form.append(resendButton(person));
  const you = person.id === me.id ? el("span", { class: "tag", text: "you" }) : null;
  const invited = person.password_set ? null : el("span", { class: "tag", text: "invited" });
  return el(
    "tr",
    { "data-user-id": person.id },
    el("th", { scope: "row" }, person.name, " ", you, invited),
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
  const roles = checkedRoles(newUserForm);
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

document.getElementById("invite-open").addEventListener("click", () => {
  inviteForm.reset();
  inviteDialog.showModal();
  inviteForm.elements.name.focus();
});
document.getElementById("invite-cancel").addEventListener("click", () => inviteDialog.close());
inviteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = inviteForm.elements;
  const invited = await submitting(inviteForm, () =>
    post("/api/users/invite", {
      name: f.name.value.trim(),
      email: f.email.value.trim(),
      roles: checkedRoles(inviteForm),
    }),
  );
  if (invited) {
    inviteDialog.close();
    announce(usersStatus, `Invitation sent to ${invited.email}.`);
    await loadUsers();
  }
});

try {
  await loadUsers();
} catch (error) {
  announce(document.getElementById("users-status"), error.message);
}
document.body.dataset.ready = "true";
