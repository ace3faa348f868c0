import { post, submitting } from "./api.js";

// The set-password link carries its token after "#": it never reaches a server log.
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
history.replaceState(null, "", location.pathname);

const passwordForm = document.getElementById("password-form");
if (passwordForm) {
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = String(new FormData(passwordForm).get("password"));
    const done = await submitting(passwordForm, () => post("/api/password/reset", { token, password }));
    if (done) {
      passwordForm.hidden = true;
      document.getElementById("password-done").hidden = false;
    }
  });
}

const forgotForm = document.getElementById("forgot-form");
if (forgotForm) {
  forgotForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = String(new FormData(forgotForm).get("email"));
    const done = await submitting(forgotForm, () => post("/api/password/forgot", { email }));
    if (done) {
      forgotForm.hidden = true;
      document.getElementById("forgot-done").hidden = false;
    }
  });
}
